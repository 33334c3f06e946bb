"""The Numba kernels of the tokenizer: the vocab trie, the two passes over code points, assembly.

Texts travel as one ``uint32`` array of code points for a whole batch: each segment (a text, or
the part of a text between special tokens) is followed by a separator that cannot occur in the
prepared text and that NFD and lower-casing leave alone: NUL when ``clean_text`` has removed
every NUL, else U+D800 (a lone surrogate, which decoded UTF-8 never contains).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np

__all__ = ["assemble_pair", "assemble_single", "build_trie", "encode", "prepare"]

F = TypeVar("F", bound=Callable[..., Any])
jit = cast(Callable[[F], F], functools.partial(numba.njit, cache=True, nogil=True))

_MUL = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing
_REMOVE, _SPACE, _PUNCT, _CJK, _MARK = 1, 2, 4, 8, 16


@jit
def _slot(keys: np.ndarray, key: np.int64, bits: int) -> int:
    """The slot holding ``key``, or the empty slot where it would go (linear probing)."""
    mask = (1 << bits) - 1
    slot = np.int64((np.uint64(key) * _MUL) >> np.uint64(64 - bits))
    while keys[slot] != key and keys[slot] != -1:
        slot = (slot + 1) & mask
    return int(slot)


@jit
def build_trie(cps: np.ndarray, starts: np.ndarray, roots: np.ndarray, ids: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Insert word ``t`` (``cps[starts[t]:starts[t+1]]``) under root node ``roots[t]`` with ``ids[t]``."""
    keys = np.full(1 << bits, -1, np.int64)
    child = np.zeros(1 << bits, np.int32)
    token_id = np.full(len(cps) + 2, -1, np.int64)
    n_nodes = 2
    for t in range(len(roots)):
        node = roots[t]
        for k in range(starts[t], starts[t + 1]):
            key = (np.int64(node) << 21) | np.int64(cps[k])
            slot = _slot(keys, key, bits)
            if keys[slot] == key:
                node = child[slot]
            else:
                keys[slot] = key
                child[slot] = n_nodes
                node = n_nodes
                n_nodes += 1
        token_id[node] = ids[t]
    return keys, child, token_id[:n_nodes].copy()


@jit
def _child(keys: np.ndarray, child: np.ndarray, bits: int, node: int, cp: int) -> int:
    key = (np.int64(node) << 21) | np.int64(cp)
    slot = _slot(keys, key, bits)
    return int(child[slot]) if keys[slot] == key else -1


@jit
def prepare(cps: np.ndarray, starts: np.ndarray, flags: np.ndarray, clean: bool, cjk: bool, sep: int) -> np.ndarray:
    """Pass 1, in ``BertNormalizer``'s order: clean the text, pad CJK ideographs with spaces.

    Cleaning drops ``REMOVE`` characters and turns ``SPACE`` ones into U+0020. Each segment
    ``cps[starts[k]:starts[k+1]]`` is followed by ``sep`` in the result.
    """
    n_seg = len(starts) - 1
    out = np.empty(3 * len(cps) + n_seg, np.uint32)
    o = 0
    for k in range(n_seg):
        for i in range(starts[k], starts[k + 1]):
            c = cps[i]
            f = flags[c]
            if clean:
                if f & _REMOVE:
                    continue
                if f & _SPACE:
                    c = 32
            if cjk and f & _CJK:
                out[o] = 32
                out[o + 1] = c
                out[o + 2] = 32
                o += 3
            else:
                out[o] = c
                o += 1
        out[o] = sep
        o += 1
    return out[:o]


@jit
def _wordpiece(word: np.ndarray, n: int, keys: np.ndarray, child: np.ndarray, token_id: np.ndarray, bits: int,
               unk: int, max_chars: int, out: np.ndarray, at: int) -> int:
    """Greedy longest-match-first WordPiece of ``word[:n]`` into ``out[at:]``; the count written.

    A word longer than ``max_chars`` characters, or with a part no token matches, is one ``unk``.
    """
    if n > max_chars:
        out[at] = unk
        return 1
    start = 0
    count = 0
    while start < n:
        node = 0 if start == 0 else 1
        best_end = -1
        best_id = -1
        i = start
        while i < n:
            node = _child(keys, child, bits, node, word[i])
            if node < 0:
                break
            i += 1
            if token_id[node] >= 0:
                best_end = i
                best_id = token_id[node]
        if best_end < 0:
            out[at] = unk
            return 1
        out[at + count] = best_id
        count += 1
        start = best_end
    return count


@jit
def encode(cps: np.ndarray, sep: int, seg_seq: np.ndarray, seg_special: np.ndarray, n_seq: int, flags: np.ndarray, strip: bool,
           keys: np.ndarray, child: np.ndarray, token_id: np.ndarray, bits: int, unk: int, max_chars: int,
           cap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pass 2: split normalised segments into words and words into token ids.

    Segment ``k`` belongs to sequence ``seg_seq[k]`` (a sequence's segments are consecutive) and
    is followed by the special token ``seg_special[k]`` (-1: none). Words are split at ``SPACE``
    characters and every ``PUNCT`` character is a word of its own; with ``strip``, ``MARK``
    characters are dropped. A sequence stops once it has ``cap`` tokens (-1: no cap).
    Returns the token ids, and each sequence's start in them and token count.
    """
    tokens = np.empty(len(cps) + len(seg_seq), np.int64)
    seq_start = np.zeros(n_seq, np.int64)
    seq_count = np.zeros(n_seq, np.int64)
    word = np.empty(len(cps) + 1, np.uint32)
    pos = 0
    o = 0
    current = -1
    for k in range(len(seg_seq)):
        s = seg_seq[k]
        if s != current:
            current = s
            seq_start[s] = o
        end = pos
        while cps[end] != sep:
            end += 1
        n = 0
        i = pos
        while i <= end and (cap < 0 or seq_count[s] < cap):
            c = cps[i] if i < end else 32
            i += 1
            f = flags[c]
            if strip and f & _MARK:
                continue
            if f & (_SPACE | _PUNCT) or i > end:
                if n > 0:
                    wrote = _wordpiece(word, n, keys, child, token_id, bits, unk, max_chars, tokens, o)
                    o += wrote
                    seq_count[s] += wrote
                    n = 0
                if f & _PUNCT and i <= end:
                    word[0] = c
                    wrote = _wordpiece(word, 1, keys, child, token_id, bits, unk, max_chars, tokens, o)
                    o += wrote
                    seq_count[s] += wrote
                continue
            word[n] = c
            n += 1
        if seg_special[k] >= 0 and (cap < 0 or seq_count[s] < cap):
            tokens[o] = seg_special[k]
            o += 1
            seq_count[s] += 1
        pos = end + 1
    return tokens, seq_start, seq_count


@jit
def assemble_single(tokens: np.ndarray, seq_start: np.ndarray, seq_count: np.ndarray, cls: int, sep: int, pad: int,
                    ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> None:
    """``[CLS] tokens [SEP] [PAD]…`` per row, the tokens cut to ``length - 2`` (right side)."""
    length = ids.shape[1]
    for r in range(ids.shape[0]):
        n = min(seq_count[r], length - 2)
        a = seq_start[r]
        ids[r, 0] = cls
        for j in range(n):
            ids[r, 1 + j] = tokens[a + j]
        ids[r, n + 1] = sep
        for j in range(length):
            if j >= n + 2:
                ids[r, j] = pad
            mask[r, j] = 1 if j < n + 2 else 0
            types[r, j] = 0


@jit
def pair_lengths(n1: int, n2: int, budget: int) -> tuple[int, int]:
    """How many tokens of each sequence ``longest_first`` truncation keeps (``tokenizers``' rule).

    Nothing is cut when both fit in ``budget``. Otherwise, with ``a`` the shorter and ``b`` the
    longer: ``b`` is cut to ``max(a, budget - a)``, and if the two still do not fit, ``a`` keeps
    ``budget // 2`` and ``b`` keeps ``budget // 2 + budget % 2`` (the longer one, or the second
    when they are equally long, gets the odd token).
    """
    if n1 + n2 <= budget:
        return n1, n2
    swap = n1 > n2
    a, b = (n2, n1) if swap else (n1, n2)
    b = a if a > budget else max(a, budget - a)
    if a + b > budget:
        a = budget // 2
        b = a + budget % 2
    return (b, a) if swap else (a, b)


@jit
def assemble_pair(tokens: np.ndarray, seq_start: np.ndarray, seq_count: np.ndarray, cls: int, sep: int, pad: int,
                  ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> None:
    """``[CLS] a [SEP] b [SEP] [PAD]…`` per row (sequences ``2r`` and ``2r+1``), type ids 0 then 1."""
    length = ids.shape[1]
    for r in range(ids.shape[0]):
        n1, n2 = pair_lengths(seq_count[2 * r], seq_count[2 * r + 1], length - 3)
        a, b = seq_start[2 * r], seq_start[2 * r + 1]
        ids[r, 0] = cls
        for j in range(n1):
            ids[r, 1 + j] = tokens[a + j]
        ids[r, n1 + 1] = sep
        for j in range(n2):
            ids[r, n1 + 2 + j] = tokens[b + j]
        used = n1 + n2 + 3
        ids[r, used - 1] = sep
        for j in range(length):
            if j >= used:
                ids[r, j] = pad
            mask[r, j] = 1 if j < used else 0
            types[r, j] = 1 if n1 + 2 <= j < used else 0
