"""Random texts and vocabs for the op testing kit: the hard cases of a BERT tokenizer, mixed.

Texts mix scripts (Latin with accents, Greek with final sigma, Cyrillic, Arabic, Devanagari,
Thai, CJK ideographs and kana, Hangul), emoji (with ZWJ and skin tones), ASCII and Unicode
punctuation (some whose category changed after Unicode 8.0), every kind of whitespace,
control and format characters, private use, lone combining marks, literal special tokens,
words longer than ``max_chars_per_word``, and invalid UTF-8. A vocab is drawn from a text's own
normalised words (whole-word and ``##`` pieces, some characters left out so that ``[UNK]``
happens) and written to a temporary file named by its content.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

from ._reference import normalize, pre_tokenize
from ._unicode8 import MARK_NONSPACING

__all__ = ["KNOWN_DIFFERENCES", "REORDERED_MARKS", "random_text", "random_settings", "random_vocab_file"]

#: The code points where twinpipe and ``tokenizers`` 0.23 disagree (found by running both over
#: every code point): 55 characters added in Unicode 16, which Rust lower-cases and Python 3.11
#: (Unicode 14) does not know, and U+11938, which Python's NFD decomposes and tokenizers' does not.
KNOWN_DIFFERENCES = frozenset(
    [0x1C89, 0xA7CB, 0xA7CC, 0xA7CE, 0xA7D2, 0xA7D4, 0xA7DA, 0xA7DC, *range(0x10D50, 0x10D66), *range(0x16EA0, 0x16EB9), 0x11938]
)

#: Combining marks unknown to Unicode 8.0 (U+07FD, U+0898…, in the range the random texts draw
#: from): alone they agree, but Python's NFD reorders a run of marks by its newer combining classes
#: where ``tokenizers`` (older tables) leaves them, so a word holding two of them can differ.
REORDERED_MARKS = frozenset(
    c for c in range(0x20, 0x3000)
    if unicodedata.combining(chr(c)) and not any(a <= c <= b for a, b in MARK_NONSPACING)
)

_WORDS = [
    "Hello", "WORLD", "naïve", "Café", "İstanbul", "straße", "ΟΔΟΣ", "Σίσυφος", "Москва", "ÉCOLE", "Ångström",
    "français", "Łódź", "Ærø", "ǅemal", "ﬁnance", "Ⅻ", "x²", "مرحبا", "नमस्ते", "สวัสดี", "東京都", "北アメリカ",
    "ひらがな", "한국어", "豈更", "𠀋𡈽", "\U0002b820", "don't", "e-mail", "U.S.A.", "3.14", "$100", "a_b",
    "😀", "👍🏽", "👨\u200d👩\u200d👧", "🥲", "🇫🇷", "e\u0301", "\u0301", "a\u200bb", "ᐊᓂ", "ᏣᎳᎩ",
]
_PUNCT = [*list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"), "¡", "¿", "«", "»", "—", "…", "、", "。", "「", "」", "⸃", "⹃", "᙭", "؝", "·"]
_SPACES = [" ", " ", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2028", "\u202f", "\x0b", "\x0c", "\x85", "\u1680"]
_CONTROLS = ["\x00", "\x07", "\x1f", "\x7f", "\u200d", "\ufeff", "\u00ad", "\ue000", "\U000f0000", "\ufffd", "\u0890", "\U00013430"]
_SPECIALS = ["[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]", "[cls]", "[SEP", "[[SEP]]"]
_INVALID = [b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\x80\x80"]


def random_text(rng: np.random.Generator) -> bytes:
    """UTF-8 text (sometimes with invalid bytes) of 0 to ~40 pieces."""
    if rng.random() < 0.06:
        return b""
    parts: list[bytes] = []
    for _ in range(int(rng.integers(1, 40))):
        r = rng.random()
        if r < 0.45:
            piece = str(rng.choice(_WORDS))
        elif r < 0.6:
            piece = str(rng.choice(_PUNCT))
        elif r < 0.66:
            piece = str(rng.choice(_CONTROLS))
        elif r < 0.7:
            piece = str(rng.choice(_SPECIALS))
        elif r < 0.72:
            piece = "".join(rng.choice(list("abcdefghijk"), size=int(rng.integers(95, 130))))
        elif r < 0.76:
            parts.append(bytes(rng.choice(_INVALID)))
            continue
        else:
            piece = "".join(chr(int(c)) for c in rng.integers(0x20, 0x3000, size=int(rng.integers(1, 6)))
                            if c not in KNOWN_DIFFERENCES and c not in REORDERED_MARKS)
        parts.append(piece.encode("utf-8", "surrogatepass"))
        parts.append(str(rng.choice(_SPACES)).encode() if rng.random() < 0.8 else b"")
    return b"".join(parts)


def random_settings(rng: np.random.Generator) -> dict[str, Any]:
    lowercase = bool(rng.random() < 0.6)
    return {
        "lowercase": lowercase,
        "strip_accents": [None, True, False][int(rng.integers(3))],
        "clean_text": bool(rng.random() < 0.8),
        "handle_chinese_chars": bool(rng.random() < 0.8),
        "max_chars_per_word": int(rng.choice([100, 100, 5, 20])),
    }


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed meanwhile by another test process
        return 0.0


def random_vocab_file(rng: np.random.Generator, texts: list[bytes], settings: dict[str, Any]) -> str:
    """A vocab from pieces of the texts' normalised words, written to a temp file; its path."""
    strip = settings["strip_accents"]
    flags = {
        "clean": settings["clean_text"], "cjk": settings["handle_chinese_chars"],
        "strip": settings["lowercase"] if strip is None else strip, "lower": settings["lowercase"],
    }
    words = [w for t in texts for w in pre_tokenize(normalize(t.decode("utf-8", "replace"), **flags))]
    words += [str(w).lower() for w in rng.choice(_WORDS, size=10)]
    tokens: list[str] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + (["[MASK]"] if rng.random() < 0.7 else [])
    chars = sorted({c for w in words for c in w})
    keep = rng.random(len(chars)) < 0.9
    tokens += [c for c, k in zip(chars, keep) if k]
    tokens += ["##" + c for c, k in zip(chars, keep) if k and rng.random() < 0.8]
    for w in words:
        for _ in range(int(rng.integers(0, 3))):
            a = int(rng.integers(0, len(w)))
            b = int(rng.integers(a + 1, len(w) + 1))
            tokens.append(w[a:b] if a == 0 else "##" + w[a:b])
    head, rest = tokens[:5], tokens[5:]
    rng.shuffle(rest)
    if rest and rng.random() < 0.3:
        rest.append(rest[0])  # a duplicate: the later line's id wins
    text = "\n".join(head + rest) + "\n"
    data = text.encode()
    folder = Path(tempfile.gettempdir()) / "twinpipe-text-kit"
    folder.mkdir(exist_ok=True)
    old = sorted(folder.glob("vocab-*.txt"), key=_mtime)
    for stale in old[: max(0, len(old) - 2000)]:  # keep the folder small across runs
        stale.unlink(missing_ok=True)
    path = folder / f"vocab-{hashlib.sha1(data).hexdigest()[:16]}.txt"
    if not path.is_file():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return str(path)
