"""The ``classifier`` model: the nearest colour prototype of a crop's mean colour, as a torch
``Linear`` + softmax with fixed weights (no training: the weights are written down below).

For a mean colour ``x`` (RGB in 0..1) and prototypes ``p_k``, the logit of class ``k`` is
``-|x - p_k|² / T``. Dropping ``-|x|² / T`` (the same for every class, so softmax ignores it) leaves
``(2 p_k · x - |p_k|²) / T``: a ``Linear(3, K)`` with weight ``2 p_k / T`` and bias ``-|p_k|² / T``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

#: the colour of each class, in the order of ../labels.txt (red, green, blue, yellow)
PROTOTYPES = ((0.85, 0.12, 0.12), (0.12, 0.75, 0.15), (0.12, 0.2, 0.85), (0.9, 0.85, 0.12))
#: softmax temperature: prototypes lie ~0.5 apart (squared), so a clear colour gets p ≈ 1
TEMPERATURE = 0.02


class NearestColour(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        p = torch.tensor(PROTOTYPES, dtype=torch.float32)
        self.linear = torch.nn.Linear(3, len(PROTOTYPES))
        with torch.no_grad():
            self.linear.weight.copy_(2 * p / TEMPERATURE)
            self.linear.bias.copy_(-(p * p).sum(dim=1) / TEMPERATURE)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``pixels`` [n, H, W, 3] uint8 → probabilities [n, K]."""
        mean = pixels.float().mean(dim=(1, 2)) / 255.0
        return torch.softmax(self.linear(mean), dim=1)


def build() -> Callable[..., dict[str, Any]]:
    net = NearestColour().eval()

    def run(pixels: torch.Tensor) -> dict[str, Any]:
        with torch.inference_mode():
            return {"probs": net(pixels)}
    return run
