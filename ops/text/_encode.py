"""The fast batch encoder behind ``text.tokenize`` and ``text.tokenize_pair``.

Per text, Python does only what CPython does in C: decode the UTF-8 (invalid bytes become
U+FFFD), find special tokens, and join. Then, for the whole batch at once: pass 1 (Numba) cleans
and pads CJK; NFD and lower-casing run on one string; pass 2 (Numba) strips accents, splits words
and runs WordPiece over a hash-table trie; a last kernel truncates, pads and writes the rows.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from .._spec import BYTES
from ._chars import FLAGS
from ._kernels import assemble_pair, assemble_single, encode, prepare
from ._vocab import Vocab, load_vocab

__all__ = ["Settings", "as_texts", "decode_text", "encode_batch", "settings"]


@dataclass(frozen=True)
class Settings:
    """The validated tokenizer params, resolved against a loaded vocab."""

    vocab: Vocab
    max_length: int
    lowercase: bool
    strip_accents: bool
    clean_text: bool
    handle_chinese_chars: bool
    truncation: bool
    max_chars_per_word: int
    prefix: str
    unk: int
    cls: int
    sep: int
    pad: int
    specials: tuple[tuple[str, int], ...]  # the special tokens matched in raw text, and their ids


_settings: dict[tuple[Any, ...], Settings] = {}


def settings(params: dict[str, Any]) -> Settings:
    """``Settings`` from validated params; ``ValueError`` if the vocab lacks a special token."""
    try:
        vocab = load_vocab(params["vocab"])  # cached; a changed file gives a new Vocab
    except ValueError as e:
        raise ValueError(f"parameter 'vocab': {e}") from None
    key = (id(vocab), *sorted(params.items()))
    cfg = _settings.get(key)
    if cfg is None or cfg.vocab is not vocab:
        if len(_settings) > 256:
            _settings.clear()
        cfg = _settings[key] = _make_settings(vocab, params)
    return cfg


def _make_settings(vocab: Vocab, params: dict[str, Any]) -> Settings:
    ids: dict[str, int] = {}
    for name in ("unk_token", "cls_token", "sep_token", "pad_token"):
        token = params[name]
        if token not in vocab.ids:
            raise ValueError(f"{name} {token!r} is not in the vocab file {vocab.path}")
        ids[name] = vocab.ids[token]
    # like tokenizers' BertWordPieceTokenizer: those of the five that the vocab has are special
    names = ("unk_token", "sep_token", "cls_token", "pad_token", "mask_token")
    specials = tuple((params[n], vocab.ids[params[n]]) for n in names if params[n] in vocab.ids)
    strip = params["strip_accents"]
    return Settings(
        vocab=vocab,
        max_length=params["max_length"],
        lowercase=params["lowercase"],
        strip_accents=params["lowercase"] if strip is None else strip,
        clean_text=params["clean_text"],
        handle_chinese_chars=params["handle_chinese_chars"],
        truncation=params["truncation"],
        max_chars_per_word=params["max_chars_per_word"],
        prefix=params["wordpieces_prefix"],
        unk=ids["unk_token"],
        cls=ids["cls_token"],
        sep=ids["sep_token"],
        pad=ids["pad_token"],
        specials=tuple(dict.fromkeys(specials)),
    )


def decode_text(x: Any) -> str:
    """One sample as text: ``bytes``-like or a uint8 array, UTF-8 with invalid bytes → U+FFFD."""
    if isinstance(x, np.ndarray):
        x = x.item() if x.dtype == BYTES else x.tobytes()
    return bytes(x).decode("utf-8", "replace")


def as_texts(x: Any) -> list[Any]:
    """The samples of a text input: one sample, a list, a BYTES array or rows of a uint8 array."""
    if isinstance(x, list):
        return x
    if isinstance(x, np.ndarray) and ((x.dtype == BYTES and x.ndim >= 1) or (x.dtype == np.uint8 and x.ndim == 2)):
        return list(x.reshape(-1) if x.dtype == BYTES else x)
    return [x]


@lru_cache(maxsize=64)
def _special_pattern(tokens: tuple[str, ...]) -> re.Pattern[str]:
    # longest first: at the leftmost match, the longest token wins (tokenizers' LeftmostLongest)
    return re.compile("|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)))


def _segments(texts: Sequence[str], cfg: Settings, seq: int, step: int, pieces: list[str], owner: list[int], after: list[int]) -> None:
    """Split each text at the special tokens it contains (matched in the raw text); text ``i`` is
    sequence ``seq + i * step``."""
    pattern = _special_pattern(tuple(t for t, _ in cfg.specials))
    ids = dict(cfg.specials)
    for text in texts:
        start = 0
        for m in pattern.finditer(text):
            pieces.append(text[start : m.start()])
            owner.append(seq)
            after.append(ids[m.group()])
            start = m.end()
        pieces.append(text[start:])
        owner.append(seq)
        after.append(-1)
        seq += step


def _normalise(pieces: list[str], cfg: Settings) -> tuple[np.ndarray, int]:
    """Normalised code points of all pieces, each followed by the separator; and the separator."""
    joined = "".join(pieces)
    cps = np.frombuffer(joined.encode("utf-32-le"), np.uint32)
    starts = np.zeros(len(pieces) + 1, np.int64)
    np.cumsum([len(p) for p in pieces], out=starts[1:])
    sep = 0 if cfg.clean_text else 0xD800  # NUL is gone after cleaning; lone surrogates never decode
    out = prepare(cps, starts, FLAGS, cfg.clean_text, cfg.handle_chinese_chars, sep)
    if not (cfg.strip_accents or cfg.lowercase):
        return out, sep
    errors = "strict" if sep == 0 else "surrogatepass"
    text = out.tobytes().decode("utf-32-le", errors)
    if cfg.strip_accents:
        text = unicodedata.normalize("NFD", text)
    if cfg.lowercase:
        # per character, as tokenizers does: no final-sigma rule (Python applies it to Σ only)
        text = text.replace("Σ", "σ").lower()
    return np.frombuffer(text.encode("utf-32-le", errors), np.uint32), sep


def _encode(pieces: list[str], owner: list[int], after: list[int], n_seq: int, cfg: Settings, cap: int,
            only: set[int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token ids of the segments (those of sequences ``only``, if given), per sequence."""
    if only is not None:
        keep = [k for k, s in enumerate(owner) if s in only]
        pieces, owner, after = [pieces[k] for k in keep], [owner[k] for k in keep], [after[k] for k in keep]
    cps, sep = _normalise(pieces, cfg)
    trie = cfg.vocab.trie(cfg.prefix)
    return encode(
        cps, sep, np.asarray(owner, np.int64), np.asarray(after, np.int64), n_seq, FLAGS, cfg.strip_accents,
        trie.keys, trie.child, trie.token_id, trie.bits, cfg.unk, cfg.max_chars_per_word, cap,
    )


def encode_batch(first: Sequence[Any], second: Sequence[Any] | None, cfg: Settings) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(input_ids, attention_mask, token_type_ids)`` as ``[N, max_length]`` int64 arrays, and
    each sequence's token count before truncation (``[N]``, or ``[N, 2]`` for pairs; with
    ``truncation`` on, counting may stop once a sequence has ``max_length - 2`` tokens)."""
    n = len(first)
    pieces: list[str] = []
    owner: list[int] = []
    after: list[int] = []
    texts = [decode_text(x) for x in first]
    if second is None:
        _segments(texts, cfg, 0, 1, pieces, owner, after)
    else:
        other = [decode_text(x) for x in second]
        for i in range(n):  # a pair's two sequences are consecutive: 2i, 2i + 1
            _segments([texts[i], other[i]], cfg, 2 * i, 1, pieces, owner, after)
    n_seq = n if second is None else 2 * n
    # with truncation, a sequence is tokenised no further than can be kept: max_length - 2 tokens
    # of a single text; for a pair, one more than the budget (max_length - 3) tells "too long"
    cap = cfg.max_length - 2 if cfg.truncation else -1
    tokens, seq_start, seq_count = _encode(pieces, owner, after, n_seq, cfg, cap)
    if second is not None and cap >= 0 and (cap - 1) % 2 == 1:
        # both longer than an odd budget: their exact lengths decide which keeps the odd token
        rows = np.flatnonzero((seq_count[0::2] >= cap) & (seq_count[1::2] >= cap))
        if rows.size:
            only = {int(s) for i in rows for s in (2 * i, 2 * i + 1)}
            exact = _encode(pieces, owner, after, n_seq, cfg, -1, only=only)[2]
            seq_count[list(only)] = exact[list(only)]
    shape = (n, cfg.max_length)
    ids, mask, types = np.empty(shape, np.int64), np.empty(shape, np.int64), np.empty(shape, np.int64)
    assemble = assemble_single if second is None else assemble_pair
    assemble(tokens, seq_start, seq_count, cfg.cls, cfg.sep, cfg.pad, ids, mask, types)
    return ids, mask, types, seq_count if second is None else seq_count.reshape(n, 2)
