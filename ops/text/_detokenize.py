"""``text.detokenize``: token ids back to text, as ``tokenizers``' WordPiece decoder does it."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from .._op import Op
from .._params import REQUIRED, Bool, Param
from .._spec import BYTES, TensorSpec
from ._examples import random_text, random_vocab_file
from ._vocab import Token, Vocab, VocabFile, load_vocab

__all__ = ["detokenize"]

_CLEANUP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
            (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))
_SPECIAL_NAMES = ("unk_token", "sep_token", "cls_token", "pad_token", "mask_token")


def _cleanup(token: str) -> str:
    for a, b in _CLEANUP:
        token = token.replace(a, b)
    return token


def _specials(vocab: Vocab, params: dict[str, Any]) -> set[str]:
    return {params[n] for n in _SPECIAL_NAMES if params[n] in vocab.ids}


def _as_bytes_scalar(text: str) -> np.ndarray:
    out = np.empty((), BYTES)
    out[()] = text.encode("utf-8")
    return out


def _reference(ids: np.ndarray, **params: Any) -> np.ndarray:
    """tokenizers' ``decode``: ids → tokens (unknown ids and, if asked, special tokens dropped),
    then the ``WordPiece`` decoder's ``decode_chain`` and ``"".join``."""
    vocab = load_vocab(params["vocab"])
    specials = _specials(vocab, params)
    prefix = params["wordpieces_prefix"]
    tokens = []
    for i in ids.tolist():
        token = vocab.tokens[i] if 0 <= i < len(vocab.tokens) else None
        if token is None or (params["skip_special_tokens"] and token in specials):
            continue
        tokens.append(token)
    pieces = []
    for k, token in enumerate(tokens):
        if k != 0:
            token = token.replace(prefix, "", 1) if token.startswith(prefix) else " " + token
        if params["cleanup"]:
            token = _cleanup(token)
        pieces.append(token)
    return _as_bytes_scalar("".join(pieces))


class _Table:
    """Per vocab and settings: each id's text as the first token and as a later one, and whether
    it is dropped, as arrays that one fancy index turns a row of ids into."""

    def __init__(self, vocab: Vocab, params: dict[str, Any]) -> None:
        specials = _specials(vocab, params)
        prefix = params["wordpieces_prefix"]
        clean = _cleanup if params["cleanup"] else (lambda t: t)
        n = len(vocab.tokens)
        self.first = np.empty(n + 1, BYTES)
        self.later = np.empty(n + 1, BYTES)
        self.keep = np.zeros(n + 1, bool)  # slot n: every id out of range
        for i, token in enumerate(vocab.tokens):
            if token is None:
                continue
            self.first[i] = clean(token)
            self.later[i] = clean(token[len(prefix):] if token.startswith(prefix) else " " + token)
            self.keep[i] = not (params["skip_special_tokens"] and token in specials)

    def decode(self, ids: np.ndarray) -> str:
        ids = np.asarray(ids, np.int64)
        n = len(self.keep) - 1
        slots = np.where((ids >= 0) & (ids < n), ids, n)
        kept = slots[self.keep[slots]]
        if kept.size == 0:
            return ""
        return str(self.first[kept[0]]) + "".join(self.later[kept[1:]])


_tables: dict[tuple[int, tuple[tuple[str, Any], ...]], tuple[Vocab, _Table]] = {}
_lock = threading.Lock()


def _table(params: dict[str, Any]) -> _Table:
    vocab = load_vocab(params["vocab"])
    key = (id(vocab), tuple(sorted(params.items())))
    with _lock:
        hit = _tables.get(key)
        if hit is not None and hit[0] is vocab:
            return hit[1]
    table = _Table(vocab, params)
    with _lock:
        if len(_tables) > 64:
            _tables.clear()
        _tables[key] = (vocab, table)
    return table


def _check(params: dict[str, Any]) -> None:
    try:
        load_vocab(params["vocab"])
    except ValueError as e:
        raise ValueError(f"parameter 'vocab': {e}") from None


def _example_ids(rng: np.random.Generator, dtype: np.dtype) -> tuple[np.ndarray]:
    return (rng.integers(-2, 80, size=int(rng.integers(1, 40))).astype(dtype),)


def _example_params(rng: np.random.Generator, ids: np.ndarray) -> dict[str, Any]:
    texts = [random_text(rng) for _ in range(3)]
    settings = {"lowercase": bool(rng.random() < 0.5), "strip_accents": None, "clean_text": True, "handle_chinese_chars": True}
    return {
        "vocab": random_vocab_file(rng, texts, settings),
        "skip_special_tokens": bool(rng.random() < 0.7),
        "cleanup": bool(rng.random() < 0.7),
    }


detokenize = Op(
    "text.detokenize",
    doc="""Token ids back to text (UTF-8 bytes), as the ``tokenizers`` package decodes a
``BertWordPieceTokenizer``'s ids (``tokenizer.decode(ids, skip_special_tokens=)``).

Ids that name no token (negative, ``>=`` the vocab size, or the earlier line of a token that the
vocab file repeats) are dropped. With ``skip_special_tokens``, the special tokens that the vocab
has (``unk/sep/cls/pad/mask_token``: padding, ``[CLS]``, ``[SEP]``, and ``[UNK]`` too, as
tokenizers does) are dropped. Then the first remaining token is taken as it is (even if it
starts with the prefix) and every later one is glued on without its ``wordpieces_prefix``, or
after a space if it has none. With ``cleanup``, each token then has tokenizers' clean-up
replacements applied (``" ."`` → ``"."``, likewise ``?``, ``!``, ``,``, ``" ' "`` → ``"'"``,
``" n't"``, ``" 'm"``, ``" 's"``, ``" 've"``, ``" 're"``, ``" do not"`` → ``" don't"``): one
token at a time, as tokenizers does, so ``"don't"`` (tokens ``don ' t``) comes back as ``"don ' t"``.

Lower-casing, accent stripping and the splitting of punctuation are not undone: decoding gives
the normalised text (``"Hello, World!"`` comes back as ``"hello, world!"`` from an uncased vocab).
A dense batch ``[N, L]`` gives ``N`` texts.""",
    inputs=[TensorSpec("ids", (np.int64, np.int32), "L", "token ids, e.g. input_ids or a model's predictions")],
    outputs=[TensorSpec("text", (BYTES,), "", "the decoded text, UTF-8")],
    params=[
        Param("vocab", VocabFile(), REQUIRED, "the WordPiece vocab the ids come from (see text.tokenize)"),
        Param("skip_special_tokens", Bool(), True, "drop special tokens and padding"),
        Param("cleanup", Bool(), True, "tokenizers' clean-up of spaces before punctuation and contractions"),
        Param("wordpieces_prefix", Token(), "##", "the prefix of continuation pieces"),
        Param("unk_token", Token(), "[UNK]", "special when in the vocab"),
        Param("cls_token", Token(), "[CLS]", "special when in the vocab"),
        Param("sep_token", Token(), "[SEP]", "special when in the vocab"),
        Param("pad_token", Token(), "[PAD]", "special when in the vocab"),
        Param("mask_token", Token(), "[MASK]", "special when in the vocab"),
    ],
    reference=_reference,
    check=_check,
    example_inputs=_example_ids,
    example_params=_example_params,
)


@detokenize.kernel("cpu")
def _detokenize_cpu(ids: np.ndarray, **params: Any) -> np.ndarray:
    return _as_bytes_scalar(_table(params).decode(ids))
