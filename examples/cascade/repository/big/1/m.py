"""The big model: the sector logits of the small one, sharpened, plus a "centre" logit that
grows as the point nears the origin (radius below 0.5: centre)."""

import math

import torch


class Big(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        angles = [math.radians(a) for a in (90, 210, 330)]
        self.register_buffer("directions", torch.tensor([[math.cos(a), math.sin(a)] for a in angles]))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        radius = features.norm(dim=-1, keepdim=True)
        unit = features / radius.clamp_min(1e-6)
        sectors = 40 * unit @ self.directions.T  # which way it points, whatever its length
        centre = 4000 * (0.5 - radius) + 40  # above every sector logit inside the 0.5 ring, below them 0.005 outside
        return torch.softmax(torch.cat([sectors, centre], dim=-1), dim=-1)


def build() -> torch.nn.Module:
    return Big().eval()
