"""text.tokenize / text.tokenize_pair: the kit, and the same ids as tokenizers' BertWordPieceTokenizer.

The peer is built from the same vocab file with the same settings; texts go to it as the str
that decoding their UTF-8 with errors="replace" gives (the op's documented input rule).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
from tokenizers import BertWordPieceTokenizer

from twinpipe.ops import InputError, ParamError
from twinpipe.ops.testing import check_op
from twinpipe.ops.text import tokenize, tokenize_pair
from twinpipe.ops.text._examples import random_settings, random_text, random_vocab_file


def _seed() -> int:
    return int.from_bytes(os.urandom(4), "little")


def _bytes_array(texts: list[bytes]) -> np.ndarray:
    arr = np.empty(len(texts), object)
    arr[:] = texts
    return arr


def _peer(vocab: str, max_length: int, truncation: bool = True, **settings: Any) -> BertWordPieceTokenizer:
    max_chars = settings.pop("max_chars_per_word", 100)
    hf = BertWordPieceTokenizer(vocab, **settings)
    hf._tokenizer.model.max_input_chars_per_word = max_chars
    if truncation:
        hf.enable_truncation(max_length)
    hf.enable_padding(length=max_length)
    return hf


def _rows(out: Any, name: str) -> np.ndarray:
    return np.stack(getattr(out, name))


def _assert_same(out: Any, encodings: list[Any], what: str) -> None:
    for name, attr in (("input_ids", "ids"), ("attention_mask", "attention_mask"), ("token_type_ids", "type_ids")):
        want = np.array([getattr(e, attr) for e in encodings])
        got = _rows(out, name)
        bad = np.flatnonzero((got != want).any(axis=1))
        assert bad.size == 0, f"{what}: {name} differs on {bad.size} of {len(want)} texts, first {bad[0]}: {got[bad[0]]} != {want[bad[0]]}"


def test_check_tokenize() -> None:
    check_op(tokenize, cases=16)


def test_check_tokenize_pair() -> None:
    check_op(tokenize_pair, cases=16)


@pytest.mark.parametrize(("lowercase", "strip_accents"), [(True, None), (False, None), (True, False), (False, True)])
def test_same_ids_as_tokenizers_on_the_cldr_corpus(corpus: tuple[str, ...], vocab: str, lowercase: bool, strip_accents: bool | None) -> None:
    # the default settings on the whole corpus (18,000 texts), the others on a fresh sample of it
    settings = {"lowercase": lowercase, "strip_accents": strip_accents}
    texts = list(corpus)
    if (lowercase, strip_accents) != (True, None):
        texts = [corpus[i] for i in np.random.default_rng(_seed()).choice(len(corpus), 4000, replace=False)]
    out = tokenize(_bytes_array([t.encode() for t in texts]), vocab=vocab, max_length=64, truncation=True, **settings)
    encodings = _peer(vocab, 64, **settings).encode_batch(texts)
    _assert_same(out, encodings, f"CLDR corpus, {settings}")
    ids = _rows(out, "input_ids")
    assert (ids == 1).mean() > 0.001, "the corpus has characters the vocab lacks: [UNK] must occur"
    assert (ids[:, -1] != 0).mean() > 0.1, "many texts are longer than 64 tokens: truncation must occur"


def test_pairs_same_ids_as_tokenizers_on_the_cldr_corpus(corpus: tuple[str, ...], vocab: str) -> None:
    rng = np.random.default_rng(_seed())
    picks = rng.choice(len(corpus), size=(1000, 2))
    a, b = [corpus[i] for i in picks[:, 0]], [corpus[i] for i in picks[:, 1]]
    for length in (16, 61, 128):
        out = tokenize_pair(_bytes_array([t.encode() for t in a]), _bytes_array([t.encode() for t in b]), vocab=vocab,
                            max_length=length, truncation=True, lowercase=False)
        _assert_same(out, _peer(vocab, length, lowercase=False).encode_batch(list(zip(a, b))), f"pairs, max_length {length}")


def test_pair_truncation_is_longest_first_as_tokenizers(vocab: str) -> None:
    # "a" is one token: n words give n tokens, so every split of the budget is exercised
    for length in range(3, 14):
        peer = _peer(vocab, length)
        firsts, seconds = [], []
        for n1 in range(0, 13):
            for n2 in range(0, 13):
                firsts.append(" ".join(["a"] * n1))
                seconds.append(" ".join(["b"] * n2))
        out = tokenize_pair([t.encode() for t in firsts], [t.encode() for t in seconds], vocab=vocab, max_length=length, truncation=True)
        _assert_same(out, peer.encode_batch(list(zip(firsts, seconds))), f"max_length {length}")


def test_random_texts_and_vocabs_same_as_tokenizers() -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    for _ in range(12):
        texts = [random_text(rng) for _ in range(24)]
        settings = random_settings(rng)
        vocab = random_vocab_file(rng, texts, settings)
        length = int(rng.choice([3, 7, 32, 512]))
        peer = _peer(vocab, length, **settings)
        strs = [t.decode("utf-8", "replace") for t in texts]
        out = tokenize(texts, vocab=vocab, max_length=length, truncation=True, **settings)
        _assert_same(out, peer.encode_batch(strs), f"seed {seed}, {settings}, {vocab}")
        out = tokenize_pair(texts[::2], texts[1::2], vocab=vocab, max_length=length, truncation=True, **settings)
        _assert_same(out, peer.encode_batch(list(zip(strs[::2], strs[1::2]))), f"pairs, seed {seed}, {settings}, {vocab}")


HARD = [
    "", " ", "\t\n\r ", "Hello, World!", "ΟΔΟΣ Σίσυφος ΣΑΣ", "İstanbul IŞIK", "straße Ærø ǅemal ﬁnance Ⅻ x²",
    "naïve café résumé e\u0301 \u0301a", "東京都北アメリカ大陸 世界 豈更", "한국어 ひらがな 𠀋𡈽", "مرحبا، العالم؟", "नमस्ते दुनिया",
    "😀 👍🏽 👨\u200d👩\u200d👧 🥲 🇫🇷", "a\u200bb a\u200db a\ufeffb a\u00adb", "x\x00y\x07z\x7f\ue000\U000f0000", "\x0b\x0c\x85\u2028\u3000\u00a0",
    "a" * 100, "a" * 101, "don't U.S.A. 3.14 $100 a_b e-mail", "[CLS] [SEP] [PAD] [UNK] [MASK] [cls] [SEP [[SEP]] x[MASK]y",
    "¡Hola! «Ça» — 「日本」。 \u2e43 \u166d \u061d", "ab\ufffdcd",
]


@pytest.mark.parametrize("lowercase", [True, False])
def test_hard_cases_same_as_tokenizers(vocab: str, lowercase: bool) -> None:
    out = tokenize([t.encode() for t in HARD], vocab=vocab, max_length=48, truncation=True, lowercase=lowercase)
    _assert_same(out, _peer(vocab, 48, lowercase=lowercase).encode_batch(HARD), f"lowercase={lowercase}")


def test_semantics_of_edge_cases(vocab: str) -> None:
    ids = {i: t for t, i in BertWordPieceTokenizer(vocab).get_vocab().items()}

    def tokens(text: bytes, **kw: Any) -> list[str]:
        out = tokenize(text, vocab=vocab, max_length=32, truncation=True, **kw)
        return [ids[int(i)] for i, m in zip(out.input_ids, out.attention_mask) if m]

    assert tokens(b"") == ["[CLS]", "[SEP]"]
    assert tokens(b"ab\xffcd\xe2\x82") == tokens(b"abcd")  # invalid UTF-8 → U+FFFD → dropped by clean_text
    assert tokens(b"ab\xffcd", clean_text=False) == ["[CLS]", "[UNK]", "[SEP]"]  # kept: the word is unknown
    assert tokens(("a" * 101).encode()) == ["[CLS]", "[UNK]", "[SEP]"]
    assert tokens(b"x[SEP]y") == ["[CLS]", "x", "[SEP]", "y", "[SEP]"]
    assert tokens("日本世界".encode()) == ["[CLS]", "日", "本", "[UNK]", "[UNK]", "[SEP]"]  # a word per ideograph; 世, 界: not in the vocab
    assert tokens("Ελλάδα".encode()) == tokens("ελλαδα".encode())  # lower-cased, accents stripped
    out = tokenize(b"a", vocab=vocab, max_length=5)
    assert [a.shape for a in out] == [(5,)] * 3 and all(a.dtype == np.int64 for a in out)
    assert out.attention_mask.tolist() == [1, 1, 1, 0, 0] and out.token_type_ids.tolist() == [0] * 5


def test_batch_forms_agree(vocab: str, corpus: tuple[str, ...]) -> None:
    texts = [t.encode() for t in corpus[:40]] + [b""]
    batch = tokenize(_bytes_array(texts), vocab=vocab, max_length=32, truncation=True)
    as_list = tokenize(texts, vocab=vocab, max_length=32, truncation=True)
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        rows = getattr(batch, name)  # a list of rows (the op model's ragged form for BYTES) or [N, L]
        assert len(rows) == len(texts)
        np.testing.assert_array_equal(np.stack(rows), np.stack(getattr(as_list, name)))
        for i in (0, 7, len(texts) - 1):
            single = getattr(tokenize(texts[i], vocab=vocab, max_length=32, truncation=True), name)
            np.testing.assert_array_equal(rows[i], single)
    same = tokenize(np.frombuffer(texts[3], np.uint8), vocab=vocab, max_length=32, truncation=True)
    np.testing.assert_array_equal(same.input_ids, batch.input_ids[3])
    np.testing.assert_array_equal(tokenize(np.bytes_(texts[3]), vocab=vocab, max_length=32, truncation=True).input_ids, batch.input_ids[3])


def test_too_long_without_truncation_is_an_error(vocab: str) -> None:
    texts = [b"short", b"a b c d e f g h", b"x"]
    with pytest.raises(InputError, match=r"text.tokenize: the text has 8 tokens, more than the 6 that fit in max_length=8 .*batch item 1 of 3"):
        tokenize(texts, vocab=vocab, max_length=8)
    with pytest.raises(InputError, match=r"text.tokenize_pair: the text has 3 \+ 3 tokens, more than the 5"):
        tokenize_pair(b"a b c", b"d e f", vocab=vocab, max_length=8)
    assert tokenize(b"a b c d e f", vocab=vocab, max_length=8).attention_mask.all()  # exactly fits


def test_bad_params_and_inputs(vocab: str, tmp_path: Any) -> None:
    with pytest.raises(ParamError, match=r"text.tokenize: parameter 'vocab': no vocab file 'nope.txt' \(looked for "):
        tokenize.bind(vocab="nope.txt")
    with pytest.raises(ParamError, match="parameter 'vocab' is required"):
        tokenize.bind()
    no_pad = tmp_path / "v.txt"
    no_pad.write_text("[UNK]\n[CLS]\n[SEP]\na\n")
    with pytest.raises(ParamError, match=r"text.tokenize: pad_token '\[PAD\]' is not in the vocab file"):
        tokenize.bind(vocab=str(no_pad))
    assert tokenize(b"a", vocab=str(no_pad), pad_token="a", max_length=4).input_ids.tolist() == [1, 3, 2, 3]
    with pytest.raises(ParamError, match="max_length"):
        tokenize.bind(vocab=vocab, max_length=1)
    with pytest.raises(ParamError, match="max_length"):
        tokenize_pair.bind(vocab=vocab, max_length=2)
    with pytest.raises(ParamError, match="wordpieces_prefix"):
        tokenize.bind(vocab=vocab, wordpieces_prefix="")
    with pytest.raises(InputError, match="text.tokenize: input 'text'"):
        tokenize("a str, not bytes", vocab=vocab)
    with pytest.raises(InputError, match="text.tokenize_pair: input 'text_pair' has a batch of 1, others have 2"):
        tokenize_pair([b"a", b"b"], [b"c"], vocab=vocab)
