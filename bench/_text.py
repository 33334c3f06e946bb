"""Benchmark rows for the text ops: twinpipe first, then the ``tokenizers`` package (Rust).

``rows()`` gives ``(task, implementation, fn)`` for ``bench/ops_cpu.py``; run this file on its
own (``.venv/bin/python bench/_text.py [--repeat N]``) to print the rows' median times and their
ratios to twinpipe. Both sides run on one thread: ``RAYON_NUM_THREADS=1`` and
``TOKENIZERS_PARALLELISM=false`` are set before ``tokenizers`` is imported (so import this module
before anything else imports it). The texts are real: Unicode CLDR display names (territories,
languages, scripts, currencies) in ~330 languages, joined with each locale's list pattern, as
``babel`` ships them (the corpus of the parity tests); the vocab is the shipped 20,000-token
WordPiece vocab trained on them. Both tokenizers give the same ids on every row (checked here).
"""

from __future__ import annotations

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np
from _table import print_table
from tokenizers import BertWordPieceTokenizer

from twinpipe.ops.testing.corpora import cldr_corpus
from twinpipe.ops.text import detokenize, tokenize, tokenize_pair
from twinpipe.ops.text._encode import encode_batch, settings
from twinpipe.pipelines import asset_path

LENGTH = 128


def _objects(items: list[bytes]) -> np.ndarray:
    arr = np.empty(len(items), object)
    arr[:] = items
    return arr


def rows() -> list[tuple[str, str, Callable[[], Any]]]:
    vocab = str(asset_path("wordpiece_cldr.txt"))
    corpus = list(cldr_corpus())
    rng = np.random.default_rng(0)
    batch = [corpus[i] for i in rng.choice(len(corpus), 256, replace=False)]
    pairs = [corpus[i] for i in rng.choice(len(corpus), 256, replace=False)]
    data, data_b = _objects([t.encode() for t in batch]), _objects([t.encode() for t in pairs])
    one, one_str = batch[0].encode(), batch[0]

    peer = BertWordPieceTokenizer(vocab, lowercase=True)
    peer.enable_truncation(LENGTH)
    peer.enable_padding(length=LENGTH)
    tok = tokenize.bind(vocab=vocab, max_length=LENGTH, truncation=True)
    tok_pair = tokenize_pair.bind(vocab=vocab, max_length=LENGTH, truncation=True)
    cfg = settings(tok.params)
    detok = detokenize.bind(vocab=vocab)

    ids = np.stack(tok(data).input_ids)
    assert ids.tolist() == [e.ids for e in peer.encode_batch(batch)], "twinpipe and tokenizers disagree"
    pair_ids = np.stack(tok_pair(data, data_b).input_ids)
    assert pair_ids.tolist() == [e.ids for e in peer.encode_batch(list(zip(batch, pairs)))]
    assert [t.decode() for t in detok(ids)] == peer.decode_batch(ids.tolist())
    id_lists = ids.tolist()

    def hf_batch() -> Any:
        return np.array([e.ids for e in peer.encode_batch(batch)])

    return [
        ("tokenize 256 CLDR texts → [256, 128]", "twinpipe text.tokenize", lambda: tok(data)),
        ("tokenize 256 CLDR texts → [256, 128]", "twinpipe batch kernels alone (no op dispatch)", lambda: encode_batch(list(data), None, cfg)),
        ("tokenize 256 CLDR texts → [256, 128]", "tokenizers encode_batch (Encoding objects)", lambda: peer.encode_batch(batch)),
        ("tokenize 256 CLDR texts → [256, 128]", "tokenizers encode_batch + ids to a NumPy array", hf_batch),
        ("tokenize 1 text → [128]", "twinpipe text.tokenize", lambda: tok(one)),
        ("tokenize 1 text → [128]", "tokenizers encode", lambda: peer.encode(one_str)),
        ("tokenize 256 pairs → [256, 128]", "twinpipe text.tokenize_pair", lambda: tok_pair(data, data_b)),
        ("tokenize 256 pairs → [256, 128]", "tokenizers encode_batch of pairs", lambda: peer.encode_batch(list(zip(batch, pairs)))),
        ("detokenize [256, 128] ids", "twinpipe text.detokenize", lambda: detok(ids)),
        ("detokenize [256, 128] ids", "tokenizers decode_batch", lambda: peer.decode_batch(id_lists)),
    ]


def main() -> None:

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    print_table(rows(), args.repeat, "1 thread")


if __name__ == "__main__":
    main()
