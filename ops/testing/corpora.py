"""Real text for testing and benchmarking text ops (needs ``babel``, a dev dependency).

``cldr_corpus()`` is Unicode CLDR data as ``babel`` ships it: for every base locale, its display
names of territories, languages, scripts and currencies, joined in chunks of 1 to 40 with that
locale's own list pattern (``format_list``: "A, B und C", "A、B、C", "A و B"), so texts are real,
in ~330 languages and every major script, and of every length from one word to a few hundred
tokens (~18,000 texts).
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["cldr_corpus"]

CHUNKS = (1, 2, 3, 5, 8, 13, 21, 40)


@lru_cache(maxsize=1)
def cldr_corpus() -> tuple[str, ...]:
    from babel import Locale, localedata
    from babel.lists import format_list

    texts: list[str] = []
    k = 0
    for ident in sorted(i for i in localedata.locale_identifiers() if "_" not in i):
        loc = Locale.parse(ident)
        for table in (loc.territories, loc.languages, loc.scripts, loc.currencies):
            names = [v for _, v in sorted(table.items()) if isinstance(v, str)]
            i = 0
            while i < len(names):
                n = CHUNKS[k % len(CHUNKS)]
                k += 1
                texts.append(format_list(names[i : i + n], locale=loc))
                i += n
    return tuple(texts)
