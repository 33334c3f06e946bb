"""Regenerate ``pipelines/assets/wordpiece_cldr.txt``: a real WordPiece vocab trained on real text.

The text is the Unicode CLDR display names (territories, languages, scripts, currencies) in every
base locale that ``babel`` (2.19) ships, each name as it is and lower-cased the way BERT's
normaliser does it, so the vocab serves both ``lowercase`` settings. It is trained with the
``tokenizers`` package's ``BertWordPieceTokenizer`` (0.23: cased, accents kept, 20,000 tokens,
an alphabet of the printable ASCII characters plus the most frequent others, 2,500 in all, so
that rare characters are ``[UNK]``). The trainer breaks ties between equally frequent pairs in
hash order, so a rerun gives an equivalent vocab, not a byte-identical one::

    python tests/ops/text/data/make_vocab.py
"""

from __future__ import annotations

from pathlib import Path

OUT = Path(__file__).resolve().parents[4] / "pipelines" / "assets" / "wordpiece_cldr.txt"


def cldr_names() -> list[str]:
    from babel import Locale, localedata

    names: list[str] = []
    for ident in sorted(i for i in localedata.locale_identifiers() if "_" not in i):
        loc = Locale.parse(ident)
        for table in (loc.territories, loc.languages, loc.scripts, loc.currencies):
            names.extend(v for v in table.values() if isinstance(v, str))
    return names


def main() -> None:
    from tokenizers import BertWordPieceTokenizer
    from tokenizers.normalizers import BertNormalizer

    names = cldr_names()
    lower = BertNormalizer(lowercase=True)
    texts = names + [lower.normalize_str(t) for t in names]
    tok = BertWordPieceTokenizer(lowercase=False, strip_accents=False)
    ascii_printable = [chr(c) for c in range(0x21, 0x7F)]
    tok.train_from_iterator(texts, vocab_size=20000, limit_alphabet=2500, min_frequency=2, initial_alphabet=ascii_printable)
    tokens = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    OUT.write_text("".join(t + "\n" for t, _ in tokens), encoding="utf-8")
    print(f"wrote {OUT}: {len(tokens)} tokens, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
