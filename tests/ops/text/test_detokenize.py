"""text.detokenize: the kit, and the same text as tokenizers' decode."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from tokenizers import BertWordPieceTokenizer, decoders

from twinpipe.ops import InputError
from twinpipe.ops.testing import check_op
from twinpipe.ops.text import detokenize, tokenize


def _seed() -> int:
    return int.from_bytes(os.urandom(4), "little")


def test_check_detokenize() -> None:
    check_op(detokenize, cases=16)


@pytest.mark.parametrize("skip", [True, False])
def test_same_text_as_tokenizers_decode_on_the_cldr_corpus(corpus: tuple[str, ...], vocab: str, skip: bool) -> None:
    rng = np.random.default_rng(_seed())
    texts = [corpus[i] for i in rng.choice(len(corpus), 3000, replace=False)]
    lowercase = bool(rng.random() < 0.5)
    ids = np.stack(tokenize([t.encode() for t in texts], vocab=vocab, max_length=48, truncation=True, lowercase=lowercase).input_ids)
    got = detokenize(ids, vocab=vocab, skip_special_tokens=skip)
    assert got.shape == (len(texts),) and got.dtype == object
    want = BertWordPieceTokenizer(vocab, lowercase=lowercase).decode_batch(ids.tolist(), skip_special_tokens=skip)
    bad = [i for i, (g, w) in enumerate(zip(got, want)) if g.decode() != w]
    assert not bad, f"{len(bad)} differ, first {got[bad[0]].decode()!r} != {want[bad[0]]!r}"


def test_random_ids_same_as_tokenizers(vocab: str) -> None:
    seed = _seed()
    rng = np.random.default_rng(seed)
    peer = BertWordPieceTokenizer(vocab)
    plain = BertWordPieceTokenizer(vocab)
    plain._tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    size = peer.get_vocab_size()
    for _ in range(200):
        ids = rng.integers(-5, size + 5, size=int(rng.integers(1, 30)))
        if rng.random() < 0.5:  # punctuation and contractions, where the clean-up acts
            ids[rng.random(ids.size) < 0.3] = rng.choice([peer.token_to_id(t) for t in ".,!?'smt"])
        ids = ids.astype(np.int32 if rng.random() < 0.5 else np.int64)
        valid = [int(i) for i in ids if i >= 0]  # tokenizers takes u32: negatives cannot be passed (both skip them)
        for skip in (True, False):
            got = detokenize(ids, vocab=vocab, skip_special_tokens=skip).item().decode()
            assert got == peer.decode(valid, skip_special_tokens=skip), f"seed {seed}, {ids.tolist()}"
            got = detokenize(ids, vocab=vocab, skip_special_tokens=skip, cleanup=False).item().decode()
            assert got == plain.decode(valid, skip_special_tokens=skip), f"seed {seed}, {ids.tolist()}, cleanup off"


def test_semantics(vocab: str) -> None:
    ids = tokenize(b"Hello, World! Don't", vocab=vocab, max_length=20).input_ids
    # the clean-up works token by token: " ," and " !" lose their space, a lone "'" keeps both
    assert detokenize(ids, vocab=vocab).item() == b"hello, world! don ' t"
    assert detokenize(ids, vocab=vocab, skip_special_tokens=False).item().startswith(b"[CLS] hello, world! don ' t [SEP] [PAD]")
    assert detokenize(np.array([-1, 10**9, 2, 0]), vocab=vocab).item() == b""  # unknown ids and specials dropped
    from_torch = detokenize(torch.from_numpy(np.stack([ids, ids])), vocab=vocab)  # model outputs: BYTES stay NumPy
    assert isinstance(from_torch, np.ndarray) and from_torch.tolist() == [b"hello, world! don ' t"] * 2
    cont = next(i for t, i in BertWordPieceTokenizer(vocab).get_vocab().items() if t.startswith("##"))
    assert detokenize(np.array([cont, cont]), vocab=vocab).item().startswith(b"##")  # the first piece keeps its prefix
    with pytest.raises(InputError, match="text.detokenize: input 'ids' has dtype float32"):
        detokenize(np.zeros(3, np.float32), vocab=vocab)
    with pytest.raises(InputError, match="text.detokenize: input 'ids' is empty"):
        detokenize(np.zeros(0, np.int64), vocab=vocab)
