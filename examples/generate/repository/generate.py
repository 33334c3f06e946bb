"""The steps of the generate pipeline. One prompt per request.

The next character is drawn from the model's counts (``temperature`` 1: in proportion to them)
with a generator seeded by the request parameter ``seed`` (default 0): the same prompt and seed
give the same text.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

CORPUS = Path(__file__).resolve().parent / "corpus.txt"


class Tokenize:
    """Text → character ids (the model's vocabulary: the corpus's characters, sorted)."""

    def setup(self) -> None:
        self.index = {c: i for i, c in enumerate(sorted(set(CORPUS.read_text())))}

    def __call__(self, inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
        if len(inputs["prompt"]) != 1:
            raise ValueError(f"one prompt per request, given {len(inputs['prompt'])}")
        prompt = inputs["prompt"][0]
        text = prompt.decode() if isinstance(prompt, bytes) else str(prompt)
        unknown = sorted(set(text) - set(self.index))
        if len(text) < 2 or unknown:
            raise ValueError(f"the prompt needs 2 or more characters the model knows; unknown: {unknown}")
        return {"ids": np.array([[self.index[c] for c in text]], np.int64)}


def generate(inputs: dict[str, Any], ctx: Any) -> Iterator[dict[str, Any]]:
    """Yields one token (and its position) at a time, until max_tokens or the client leaves."""
    ids = list(inputs["ids"][0])
    rng = np.random.default_rng(int(ctx.parameters.get("seed", 0)))
    for position in range(int(inputs["max_tokens"][0])):
        if ctx.cancelled:
            return
        logits = ctx.infer("charlm", {"context": np.array([ids[-2:]], np.int64)})["logits"][0]
        probs = np.exp(logits - logits.max())
        next_id = int(rng.choice(len(probs), p=probs / probs.sum()))
        ids.append(next_id)
        yield {"id": np.array([next_id], np.int64), "position": np.array([position], np.int32)}


class Detokenize:
    """A character id → its text."""

    def setup(self) -> None:
        self.vocab = sorted(set(CORPUS.read_text()))

    def __call__(self, inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
        return {"text": np.array([self.vocab[int(i)].encode() for i in inputs["id"]], dtype=object)}
