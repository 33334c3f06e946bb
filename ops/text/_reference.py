"""The reference tokenizer: plain Python that follows ``tokenizers``' BERT pipeline step by step.

Each function mirrors one Rust component of ``tokenizers`` (0.23): the added-vocabulary split
of special tokens, ``BertNormalizer`` (clean → CJK → strip accents → lower-case, each over the
whole text, per character), ``BertPreTokenizer``, the ``WordPiece`` model's longest-match loop
over substrings, ``BertProcessing`` and ``longest_first`` truncation, right padding. It is slow
and literal on purpose: the kernels are checked against it, and it against ``tokenizers``.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import numpy as np

from ._chars import CJK, FLAGS, MARK, PUNCT, REMOVE, SPACE
from ._encode import Settings, decode_text

__all__ = ["normalize", "pre_tokenize", "reference_ids", "truncate_pair", "wordpiece"]


def _is(c: str, flag: int) -> bool:
    return bool(FLAGS[ord(c)] & flag)


def split_specials(text: str, specials: dict[str, int]) -> list[tuple[str, int | None]]:
    """``(text before, id of the special token after or None)`` pieces: at each position the
    longest special token starting there is cut out, scanning left to right."""
    out: list[tuple[str, int | None]] = []
    start = i = 0
    while i < len(text):
        match = max((t for t in specials if text.startswith(t, i)), key=len, default=None)
        if match is None:
            i += 1
            continue
        out.append((text[start:i], specials[match]))
        i = start = i + len(match)
    out.append((text[start:], None))
    return out


def normalize(text: str, *, clean: bool, cjk: bool, strip: bool, lower: bool) -> str:
    """``BertNormalizer``: each step over the whole text, in tokenizers' order."""
    if clean:
        text = "".join(" " if _is(c, SPACE) else c for c in text if not _is(c, REMOVE))
    if cjk:
        text = "".join(f" {c} " if _is(c, CJK) else c for c in text)
    if strip:
        text = "".join(c for c in unicodedata.normalize("NFD", text) if not _is(c, MARK))
    if lower:
        text = "".join(c.lower() for c in text)  # per character: no final-sigma context
    return text


def pre_tokenize(text: str) -> list[str]:
    """``BertPreTokenizer``: split at White_Space (removed), every punctuation character alone."""
    words: list[str] = []
    current = ""
    for c in text:
        if _is(c, SPACE) or _is(c, PUNCT):
            if current:
                words.append(current)
            current = ""
            if _is(c, PUNCT):
                words.append(c)
        else:
            current += c
    if current:
        words.append(current)
    return words


def wordpiece(word: str, cfg: Settings) -> list[int]:
    """The ``WordPiece`` model: at each start, the longest vocab substring (prefixed after the
    first); the whole word is ``[UNK]`` when it is too long or some part matches nothing."""
    vocab = cfg.vocab.ids
    if len(word) > cfg.max_chars_per_word:
        return [cfg.unk]
    out: list[int] = []
    start = 0
    while start < len(word):
        end = len(word)
        found = None
        while start < end:
            sub = word[start:end] if start == 0 else cfg.prefix + word[start:end]
            if sub in vocab:
                found = vocab[sub]
                break
            end -= 1
        if found is None:
            return [cfg.unk]
        out.append(found)
        start = end
    return out


def sequence_ids(text: str, cfg: Settings) -> list[int]:
    """The token ids of one text, without [CLS]/[SEP]."""
    ids: list[int] = []
    for piece, special in split_specials(text, dict(cfg.specials)):
        normal = normalize(piece, clean=cfg.clean_text, cjk=cfg.handle_chinese_chars, strip=cfg.strip_accents, lower=cfg.lowercase)
        for word in pre_tokenize(normal):
            ids.extend(wordpiece(word, cfg))
        if special is not None:
            ids.append(special)
    return ids


def truncate_pair(n1: int, n2: int, budget: int) -> tuple[int, int]:
    """``TruncationStrategy::LongestFirst`` for a pair, as written in tokenizers' ``truncate_encodings``."""
    if n1 + n2 <= budget:
        return n1, n2
    swap = False
    if n1 > n2:
        swap = True
        n1, n2 = n2, n1
    n2 = n1 if n1 > budget else max(n1, budget - n1)
    if n1 + n2 > budget:
        n1 = budget // 2
        n2 = n1 + budget % 2
    if swap:
        n1, n2 = n2, n1
    return n1, n2


def reference_ids(text: Any, pair: Any | None, cfg: Settings) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, ...]]:
    """One sample's ``(input_ids, attention_mask, token_type_ids)`` and its untruncated lengths."""
    a = sequence_ids(decode_text(text), cfg)
    length = cfg.max_length
    if pair is None:
        lengths: tuple[int, ...] = (len(a),)
        a = a[: length - 2]
        ids = [cfg.cls, *a, cfg.sep]
        types = [0] * len(ids)
    else:
        b = sequence_ids(decode_text(pair), cfg)
        lengths = (len(a), len(b))
        n1, n2 = truncate_pair(len(a), len(b), length - 3)
        ids = [cfg.cls, *a[:n1], cfg.sep, *b[:n2], cfg.sep]
        types = [0] * (n1 + 2) + [1] * (n2 + 1)
    used = len(ids)
    out = np.full(length, cfg.pad, np.int64)
    out[:used] = ids
    mask = np.zeros(length, np.int64)
    mask[:used] = 1
    type_ids = np.zeros(length, np.int64)
    type_ids[:used] = types
    return out, mask, type_ids, lengths
