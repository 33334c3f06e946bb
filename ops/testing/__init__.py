"""The op testing kit: check an op in one line, without a server or a GPU.

    from twinpipe.ops.testing import check_op
    def test_my_op():
        check_op(my_op)

``check_op`` compares every kernel with the op's NumPy reference on random inputs (odd and
1-pixel sizes, every accepted dtype, fresh seeds, poisoned outputs), checks the declared
signature, dispatch (torch in → torch out, dense and ragged batches), reproducibility of random
ops, serve mode and pickling. ``images``/``dense_batches``/``ragged_batches`` are Hypothesis
strategies for property tests (import them from ``twinpipe.ops.testing.strategies``; they
need the ``dev`` extra's hypothesis).
"""

from ._check import CheckReport, OpCheckError, assert_close, check_op, example_case

__all__ = ["CheckReport", "OpCheckError", "assert_close", "check_op", "example_case"]
