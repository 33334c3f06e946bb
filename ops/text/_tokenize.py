"""``text.tokenize`` and ``text.tokenize_pair``: BERT WordPiece tokenisation to fixed-shape ids."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._errors import InputError
from .._op import Op
from .._params import REQUIRED, Bool, Int, Optional, Param
from .._spec import BYTES, TensorSpec
from ._encode import Settings, as_texts, encode_batch, settings
from ._examples import random_settings, random_text, random_vocab_file
from ._reference import reference_ids
from ._vocab import Token, VocabFile

__all__ = ["tokenize", "tokenize_pair"]

_SEMANTICS = """Exactly the ids of the ``tokenizers`` package's ``BertWordPieceTokenizer(vocab, lowercase=,
strip_accents=, clean_text=, handle_chinese_chars=)`` built from the same vocab file, with
``enable_padding(length=max_length)`` and, with ``truncation``, ``enable_truncation(max_length)``:

1. Text: each sample is UTF-8 bytes, decoded with invalid sequences replaced by U+FFFD (Python's
   ``errors="replace"``: one U+FFFD per maximal invalid subpart). With ``clean_text`` U+FFFD is
   then dropped like a control character, so invalid bytes vanish (they do not split words).
2. Special tokens (``unk/sep/cls/pad/mask_token``, those the vocab has) are found in the raw
   text, leftmost and longest first, and become their ids; the text around them is tokenised on
   its own. ``"[SEP]"`` in a text is the separator token; ``"[sep]"`` is not.
3. Normalisation, in this order: ``clean_text`` drops NUL, U+FFFD and control/format/private-use
   characters (Unicode 8.0 Cc, Cf, Co, except tab, LF, CR) and turns White_Space into spaces;
   ``handle_chinese_chars`` puts spaces around CJK ideographs; ``strip_accents`` (default: same as
   ``lowercase``) applies NFD and drops non-spacing marks (Unicode 8.0 Mn); ``lowercase`` maps
   each character to its full lower case (``İ`` → ``i̇``, ``Σ`` → ``σ`` always: no final-sigma rule).
4. Words: split at White_Space; each punctuation character (ASCII punctuation and symbols, and
   Unicode 8.0 category P*) is a word of its own.
5. WordPiece, per word: repeatedly the longest vocab token that matches at the current position
   (after the first piece, ``wordpieces_prefix`` + the rest); if some position matches nothing,
   or the word has more than ``max_chars_per_word`` characters, the whole word is ``unk_token``.

Character classes are ``tokenizers``' own: Unicode 8.0 general categories (so U+2E43 is not
punctuation, U+166D is). Lower-casing and NFD are Python's; on Python 3.11 (Unicode 14.0) they
disagree with ``tokenizers`` 0.23 on 56 code points only: 55 letters added in Unicode 16 (Garay,
Kirat Rai, U+1C89, …) that Rust lower-cases and Python does not know, and U+11938, which Python's
NFD decomposes and tokenizers' does not (checked over every code point); and NFD's order within a
run of combining marks that holds marks added after Unicode 8.0 (U+07FD, U+0898…), which Python
sorts by its newer combining classes and tokenizers leaves as written. An empty text gives ``[CLS] [SEP]``."""

_OUTPUTS = [
    TensorSpec("input_ids", (np.int64,), "L", "token ids, padded with pad_token's id to max_length"),
    TensorSpec("attention_mask", (np.int64,), "L", "1 for real tokens (specials included), 0 for padding"),
    TensorSpec("token_type_ids", (np.int64,), "L", "0 for the first sequence (with [CLS] and its [SEP]), 1 for the second, 0 for padding"),
]


def _params(pair: bool) -> list[Param]:
    return [
        Param("vocab", VocabFile(), REQUIRED, "the WordPiece vocab: one token per line, the id is the line number"),
        Param("max_length", Int(min=3 if pair else 2, max=1 << 20), 128, "the length of every output row, special tokens included"),
        Param("truncation", Bool(), False, "cut sequences that do not fit (right side; pairs: longest first); "
              "if false, a sample that does not fit is an InputError"),
        Param("lowercase", Bool(), True, "lower-case the text"),
        Param("strip_accents", Optional(Bool()), None, "NFD + drop non-spacing marks; null: the same as lowercase"),
        Param("clean_text", Bool(), True, "drop control characters and U+FFFD, turn all whitespace into spaces"),
        Param("handle_chinese_chars", Bool(), True, "make every CJK ideograph a word of its own"),
        Param("max_chars_per_word", Int(min=1, max=1 << 20), 100, "longer words become unk_token"),
        Param("wordpieces_prefix", Token(), "##", "the prefix of continuation pieces in the vocab"),
        Param("unk_token", Token(), "[UNK]", "must be in the vocab"),
        Param("cls_token", Token(), "[CLS]", "must be in the vocab"),
        Param("sep_token", Token(), "[SEP]", "must be in the vocab"),
        Param("pad_token", Token(), "[PAD]", "must be in the vocab"),
        Param("mask_token", Token(), "[MASK]", "recognised in the text when the vocab has it"),
    ]


def _check(params: dict[str, Any]) -> None:
    settings(params)  # loads the vocab (cached) and checks that it has the special tokens


def _infer(*inputs: Any, max_length: int, **params: Any) -> list[tuple[tuple[int, ...], np.dtype]]:
    return [((max_length,), np.dtype(np.int64))] * 3


def _too_long(name: str, cfg: Settings, counts: np.ndarray, batch: bool) -> None:
    """With truncation off, an ``InputError`` naming the first sample that does not fit."""
    if cfg.truncation:
        return
    room = cfg.max_length - (2 if counts.ndim == 1 else 3)
    totals = counts if counts.ndim == 1 else counts.sum(axis=1)
    over = np.flatnonzero(totals > room)
    if over.size:
        i = int(over[0])
        where = f" (batch item {i} of {len(totals)})" if batch else ""
        what = f"{totals[i]} tokens" if counts.ndim == 1 else f"{counts[i, 0]} + {counts[i, 1]} tokens"
        raise InputError(
            f"{name}: the text has {what}, more than the {room} that fit in max_length={cfg.max_length} "
            f"with the special tokens{where}; pass truncation=true to cut it, or a larger max_length"
        )


def _write(out: Any, results: Sequence[np.ndarray]) -> None:
    """Results ``[N, L]`` into ``out``: arrays ``[L]`` (one sample), ``[N, L]``, or lists of ``[L]``."""
    for o, r in zip(out, results):
        if isinstance(o, np.ndarray):
            o[...] = r.reshape(o.shape)
        else:
            for row, dst in zip(r, o):
                dst[...] = row


def _run(name: str, first: Any, second: Any | None, out: Any, params: dict[str, Any], batch: bool) -> None:
    cfg = settings(params)
    a = as_texts(first) if batch else [first]
    b = (as_texts(second) if batch else [second]) if second is not None else None
    if b is not None and len(a) != len(b):
        raise InputError(f"{name}: text has a batch of {len(a)}, text_pair of {len(b)}")
    ids, mask, types, counts = encode_batch(a, b, cfg)
    _too_long(name, cfg, counts, batch)
    _write(out, (ids, mask, types))


def _reference(name: str, text: Any, pair: Any | None, params: dict[str, Any]) -> tuple[np.ndarray, ...]:
    cfg = settings(params)
    ids, mask, types, lengths = reference_ids(text, pair, cfg)
    _too_long(name, cfg, np.asarray([lengths]) if pair is not None else np.asarray(lengths), False)
    return ids, mask, types


def _example_params(rng: np.random.Generator, *texts: Any) -> dict[str, Any]:
    params = random_settings(rng)
    params["vocab"] = random_vocab_file(rng, list(texts), params)
    params["max_length"] = int(rng.choice([3, 4, 5, 8, 16, 64, 300]))
    params["truncation"] = True
    if params["max_length"] >= 300 and rng.random() < 0.5:
        params["truncation"] = False  # every example fits: at most 3 tokens per byte
        params["max_length"] = 3 * sum(len(t) for t in texts) + 3
    return params


tokenize = Op(
    "text.tokenize",
    doc="""BERT WordPiece tokenisation of one UTF-8 text (or a batch) to ``max_length`` int64 ids.

Gives ``[CLS] tokens [SEP]`` then ``pad_token`` up to ``max_length``, the attention mask (1 on
real tokens) and token type ids (all 0). Too many tokens: with ``truncation`` the tokens are cut
on the right to ``max_length - 2``; without, an ``InputError`` names the sample and its count.

""" + _SEMANTICS + """

The vocab file is loaded once per path and cached (reloaded when the file changes); a missing
file, invalid UTF-8 in it, or a special token it lacks is a ``ParamError`` when the op is bound.
A batch (a BYTES array or a list) is tokenised in one call of the Numba kernels.""",
    inputs=[TensorSpec("text", (BYTES,), "", "one text: UTF-8 bytes (or a uint8 array of them)")],
    outputs=_OUTPUTS,
    params=_params(pair=False),
    reference=lambda text, **p: _reference("text.tokenize", text, None, p),
    infer=_infer,
    check=_check,
    example_inputs=lambda rng, dtype: (random_text(rng),),
    example_params=_example_params,
)


tokenize_pair = Op(
    "text.tokenize_pair",
    doc="""BERT WordPiece tokenisation of a pair of texts (question + passage, premise + hypothesis).

Gives ``[CLS] a [SEP] b [SEP]`` then padding, type ids 0 for ``[CLS] a [SEP]`` and 1 for
``b [SEP]``. Too many tokens: with ``truncation`` (``tokenizers``' ``longest_first``), if
``a`` and ``b`` do not fit in ``budget = max_length - 3``, with ``s`` the shorter and ``l`` the
longer (``b`` counts as the longer when they are equally long): ``l`` keeps
``max(s, budget - s)``, and if that still does not fit, ``s`` keeps ``budget // 2`` and ``l``
``budget // 2 + budget % 2``, cut on the right; without ``truncation`` an ``InputError``.

""" + _SEMANTICS,
    inputs=[
        TensorSpec("text", (BYTES,), "", "the first text: UTF-8 bytes"),
        TensorSpec("text_pair", (BYTES,), "", "the second text: UTF-8 bytes"),
    ],
    outputs=_OUTPUTS,
    params=_params(pair=True),
    reference=lambda text, text_pair, **p: _reference("text.tokenize_pair", text, text_pair, p),
    infer=_infer,
    check=_check,
    example_inputs=lambda rng, dtype: (random_text(rng), random_text(rng)),
    example_params=_example_params,
)


@tokenize.kernel("cpu")
def _tokenize_one(text: Any, *, out: Any, **params: Any) -> None:
    _run("text.tokenize", text, None, out, params, batch=False)


@tokenize.kernel("cpu", batched=True)
def _tokenize_batch(text: Any, *, out: Any, **params: Any) -> None:
    _run("text.tokenize", text, None, out, params, batch=True)


@tokenize_pair.kernel("cpu")
def _pair_one(text: Any, text_pair: Any, *, out: Any, **params: Any) -> None:
    _run("text.tokenize_pair", text, text_pair, out, params, batch=False)


@tokenize_pair.kernel("cpu", batched=True)
def _pair_batch(text: Any, text_pair: Any, *, out: Any, **params: Any) -> None:
    _run("text.tokenize_pair", text, text_pair, out, params, batch=True)
