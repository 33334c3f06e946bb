"""A trigram character model as a torch module: an embedding table whose row for a context
(two character ids) holds the log-counts of the characters that follow it in the corpus.
A context never seen in the corpus falls back to what follows its last character."""

from pathlib import Path

import numpy as np
import torch

CORPUS = Path(__file__).resolve().parents[2] / "corpus.txt"


class CharLM(torch.nn.Module):
    def __init__(self, text: str) -> None:
        super().__init__()
        vocab = sorted(set(text))
        index = {c: i for i, c in enumerate(vocab)}
        ids = np.array([index[c] for c in text])
        v = len(vocab)
        pairs = np.zeros((v, v), np.float64)
        np.add.at(pairs, (ids[:-1], ids[1:]), 1)
        triples = np.zeros((v * v, v), np.float64)
        np.add.at(triples, (ids[:-2] * v + ids[1:-1], ids[2:]), 1)
        unseen = triples.sum(axis=1) == 0
        triples[unseen] = pairs[np.arange(v * v)[unseen] % v]  # back off to the last character
        with np.errstate(divide="ignore"):
            logits = np.log(triples).astype(np.float32)  # -inf: never follows
        self.vocab_size = v
        self.table = torch.nn.Embedding(v * v, v, _weight=torch.from_numpy(logits))

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        return self.table(context[:, 0] * self.vocab_size + context[:, 1])


def build() -> torch.nn.Module:
    return CharLM(CORPUS.read_text()).eval()
