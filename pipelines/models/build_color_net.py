"""Builds ``color_net``, the small model shipped with twinpipe's default model repository.

    python pipelines/models/build_color_net.py            # rewrites the shipped files
    python pipelines/models/build_color_net.py --out DIR  # writes DIR/model.pt, DIR/color_labels.txt

``color_net`` names an image's dominant average colour; it is a stand-in, with nothing learned,
until the trained shapes classifier of issue 8. Its input is what ``image.resize_crop_normalize``
makes with its default ImageNet mean/std (``pixels``: float32 ``[N, 3, 64, 64]``, CHW); per image it

1. undoes the normalisation (``x * std + mean``) and clamps to [0, 1]: sRGB values;
2. decodes the sRGB curve to linear light and averages over all pixels — the colour the image
   has seen from afar (a solid image's average is its colour);
3. converts that average to CIE L*a*b* (D65 white, the sRGB primaries);
4. scores each of 12 named colours (CSS's values: red ``#ff0000``, orange ``#ffa500``, …) by
   ``-ΔE² / 200``, ΔE the CIE76 distance to the colour's L*a*b*: a Gaussian of σ = 10 ΔE around
   each colour, so ``softmax(logits)`` is near 1 for a solid named colour and spread out between
   neighbours for a mixture.

The colour maths runs in float64 (the logits are float32), so a batch gives each image the same
logits as running it alone. The file is TorchScript (``torch.jit.script``); the same torch version
writes it byte for byte again (the test suite checks that), and the module carries the label
names (``labels``) and its constants as buffers so they can be read back.
"""

# no `from __future__ import annotations`: TorchScript reads ColorNet's class annotations as types
import argparse
import io
import linecache
import sys
import types
import warnings
from pathlib import Path

import torch

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "PALETTE", "TEMPERATURE", "ColorNet", "build", "main"]

#: image.resize_crop_normalize's default mean and std (a test checks they still are)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: ΔE² per logit unit: logits = -ΔE² / TEMPERATURE, i.e. a Gaussian of σ = 10 ΔE
TEMPERATURE = 200.0
#: the named colours, in output order, with their sRGB values (CSS's named colours; brown is
#: CSS's saddlebrown, CSS's own brown being a dark red)
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "orange": (255, 165, 0),
    "yellow": (255, 255, 0),
    "green": (0, 128, 0),
    "cyan": (0, 255, 255),
    "blue": (0, 0, 255),
    "purple": (128, 0, 128),
    "pink": (255, 192, 203),
    "brown": (139, 69, 19),
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
    "white": (255, 255, 255),
}
# linear sRGB → CIE XYZ (IEC 61966-2-1), and the D65 white point
_RGB_TO_XYZ = ((0.4124564, 0.3575761, 0.1804375), (0.2126729, 0.7151522, 0.0721750), (0.0193339, 0.1191920, 0.9503041))
_WHITE = (0.95047, 1.0, 1.08883)
_HERE = Path(__file__).resolve().parent
_MODULE, _FILE = "color_net", "build_color_net.py"  # the model's code, as TorchScript records it


class ColorNet(torch.nn.Module):
    """``pixels`` ``[N, 3, H, W]`` (normalised sRGB) → ``logits`` ``[N, K]``: -ΔE² / temperature
    from the images' average colour to each named colour, in CIE L*a*b*."""

    mean: torch.Tensor  # the buffers: float64
    std: torch.Tensor
    rgb_to_xyz: torch.Tensor
    white: torch.Tensor
    palette_lab: torch.Tensor  # [K, 3]

    def __init__(self, labels: list[str], srgb: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], temperature: float) -> None:
        super().__init__()
        self.labels = list(labels)
        self.temperature = float(temperature)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float64))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float64))
        self.register_buffer("rgb_to_xyz", torch.tensor(_RGB_TO_XYZ, dtype=torch.float64))
        self.register_buffer("white", torch.tensor(_WHITE, dtype=torch.float64))
        # rounded: pow and matmul may differ in the last bit between CPUs; the file must not
        self.register_buffer("palette_lab", self.lab(_linear(srgb.to(torch.float64))).round(decimals=6))

    def lab(self, linear: torch.Tensor) -> torch.Tensor:
        """Linear sRGB ``[..., 3]`` → CIE L*a*b* ``[..., 3]`` (D65)."""
        t = torch.matmul(linear, self.rgb_to_xyz.t()) / self.white
        delta = 6.0 / 29.0
        f = torch.where(t > delta**3, t.clamp(min=delta**3).pow(1.0 / 3.0), t / (3.0 * delta**2) + 4.0 / 29.0)
        fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
        return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.to(torch.float64) * self.std.view(1, 3, 1, 1) + self.mean.view(1, 3, 1, 1)
        average = _linear(x.clamp(0.0, 1.0)).mean(dim=(2, 3))  # [N, 3], linear light
        diff = self.lab(average).unsqueeze(1) - self.palette_lab.unsqueeze(0)  # [N, K, 3]
        return (-(diff * diff).sum(dim=-1) / self.temperature).to(torch.float32)


def _linear(srgb: torch.Tensor) -> torch.Tensor:
    """The sRGB transfer curve undone: sRGB values in [0, 1] → linear light."""
    return torch.where(srgb <= 0.04045, srgb / 12.92, ((srgb.clamp(min=0.04045) + 0.055) / 1.055).pow(2.4))


def build() -> tuple[bytes, str]:
    """The model file's bytes and the label file's text. Once per process (TorchScript renames a
    class compiled twice, which would change the bytes): run this file, or call it in a fresh process."""
    labels = list(PALETTE)
    srgb = torch.tensor([PALETTE[n] for n in labels], dtype=torch.float64) / 255.0
    # TorchScript records the defining module's name (in the qualified names) and file path (in the
    # debug info); both depend on how this file was started and where the checkout lies. This
    # file's code, run again as module _MODULE from a file named _FILE, makes them the same always.
    text = Path(__file__).read_text(encoding="utf-8")
    linecache.cache[_FILE] = (len(text), None, text.splitlines(keepends=True), _FILE)  # what inspect reads
    module = types.ModuleType(_MODULE)
    module.__file__ = _FILE
    sys.modules[_MODULE] = module
    try:
        exec(compile(text, _FILE, "exec"), module.__dict__)
        net = module.ColorNet(labels, srgb, IMAGENET_MEAN, IMAGENET_STD, TEMPERATURE).eval()
        buffer = io.BytesIO()
        with warnings.catch_warnings():  # torch ≥ 2.9 deprecates TorchScript; it is what the backend loads
            warnings.simplefilter("ignore", FutureWarning)
            scripted = torch.jit.script(net)
            # a second build in one process gets a renamed class (…___torch_mangle_N.ColorNet)
            name = scripted._c._type().qualified_name()
            if name != f"__torch__.{_MODULE}.ColorNet":
                raise RuntimeError(f"TorchScript named the model {name!r}, not as the shipped file: build() runs once per process")
            torch.jit.save(scripted, buffer)
    finally:
        del sys.modules[_MODULE]
        linecache.cache.pop(_FILE, None)
    return buffer.getvalue(), "".join(f"{n}\n" for n in labels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, help="write model.pt and color_labels.txt here instead of the shipped places")
    args = parser.parse_args(argv)
    model, labels = build()
    if args.out is not None:
        targets = {args.out / "model.pt": model, args.out / "color_labels.txt": labels.encode()}
    else:
        targets = {_HERE / "color_net" / "1" / "model.pt": model, _HERE.parent / "assets" / "color_labels.txt": labels.encode()}
    for path, data in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print(f"wrote {path} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
