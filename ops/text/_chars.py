"""Character classes of the BERT tokenizer, as one flag byte per code point.

The classes are exactly those of the ``tokenizers`` package (``BertNormalizer`` and
``BertPreTokenizer``), which uses Unicode 8.0 general categories (see ``_unicode8``) and Rust's
``char::is_whitespace`` (the Unicode White_Space property):

- ``REMOVE``: what ``clean_text`` drops: NUL, U+FFFD and categories Cc, Cf, Co other than
  tab, line feed and carriage return (so U+000B, U+000C, U+0085 are dropped, not spaces).
- ``SPACE``: White_Space: U+0009..U+000D, U+0020, U+0085, U+00A0, U+1680, U+2000..U+200A,
  U+2028, U+2029, U+202F, U+205F, U+3000.
- ``PUNCT``: ASCII punctuation (``!"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~``, symbols included, as
  BERT does) or general category P*.
- ``CJK``: the CJK ideograph blocks BERT pads with spaces (URO, extensions A–E in part,
  compatibility ideographs and their supplement).
- ``MARK``: general category Mn, which ``strip_accents`` removes after NFD.
"""

from __future__ import annotations

import numpy as np

from ._unicode8 import MARK_NONSPACING, OTHER, PUNCTUATION

__all__ = ["CJK", "CJK_RANGES", "FLAGS", "MARK", "PUNCT", "REMOVE", "SPACE", "WHITESPACE"]

REMOVE = 1
SPACE = 2
PUNCT = 4
CJK = 8
MARK = 16

#: Unicode White_Space (Rust's ``char::is_whitespace``).
WHITESPACE: tuple[int, ...] = (
    0x9, 0xA, 0xB, 0xC, 0xD, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000,
)

#: The "Chinese character" blocks of BERT's ``_is_chinese_char`` (inclusive ranges).
CJK_RANGES: tuple[tuple[int, int], ...] = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)

_ASCII_PUNCT = ((0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E))


def _table() -> np.ndarray:
    flags = np.zeros(0x110000, np.uint8)
    for a, b in OTHER:
        flags[a : b + 1] |= REMOVE
    flags[[0x9, 0xA, 0xD]] &= ~np.uint8(REMOVE)
    flags[[0x0, 0xFFFD]] |= REMOVE
    flags[list(WHITESPACE)] |= SPACE
    for a, b in (*_ASCII_PUNCT, *PUNCTUATION):
        flags[a : b + 1] |= PUNCT
    for a, b in CJK_RANGES:
        flags[a : b + 1] |= CJK
    for a, b in MARK_NONSPACING:
        flags[a : b + 1] |= MARK
    flags.setflags(write=False)
    return flags


#: ``FLAGS[code point]``: the bitwise OR of the classes the character belongs to.
FLAGS: np.ndarray = _table()
