"""Train ``shapes_net`` with the very pipeline that serves it, and ship it.

    python examples/shapes/train.py                 # ~1 minute on 2 CPU cores; rewrites the shipped model
    python examples/shapes/train.py --out DIR       # writes DIR/shapes_net{,_export}/… instead

The DataLoader's transform is the shipped ``classify`` pipeline (pipelines/classify.yaml) cut at
its pre-processing output (``pre.tensor``) and run in **train** mode: its random flip and colour
jitter steps augment each sample (seeded per sample and epoch), and everything else — decoding,
the fused resize/crop/normalise — is the code the server runs in serve mode. The trained network
is exported twice into the model repository: TorchScript (``shapes_net/1/model.pt``, what the
``classify`` pipeline calls) and ``torch.export`` (``shapes_net_export/1/model.pt2``), with the
validation accuracy, measured through the same pipeline in serve mode, in
``shapes_net/training.json``. Fixed seeds and one thread make a rerun write the same TorchScript
file byte for byte (the ``.pt2`` archive also stores a serialization id and trace metadata that
change from run to run; its weights do not).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shapes import CLASSES, SIZE, make_dataset

from twinpipe.dag import Location, ModelInfo, Pipeline, TensorDecl, load_pipeline
from twinpipe.pipelines import models_dir

__all__ = ["ShapesNet", "main", "preprocessing", "train"]

CONFIG_EXPORT = """\
# shapes_net exported with torch.export (the same weights as shapes_net's TorchScript file)
name: shapes_net_export
backend: torch_export
max_batch_size: 32
inputs:  {pixels: {datatype: FP32, shape: [3, 64, 64]}}
outputs: {logits: {datatype: FP32, shape: [6]}}
device: cpu
"""


class ShapesNet(nn.Module):
    """Three conv blocks (16, 32, 64 channels), global average pooling, a linear layer."""

    def __init__(self, classes: int = len(CLASSES)) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))

        self.features = nn.Sequential(block(3, 16), block(16, 32), block(32, 64), block(64, 64))
        self.head = nn.Linear(64, classes)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(pixels).mean(dim=(2, 3)))


def preprocessing() -> Pipeline:
    """The shipped ``classify`` pipeline up to ``pre.tensor`` (the model step is not needed)."""
    here = Location(str(models_dir() / "shapes_net" / "config.yaml"), 1, 1)
    info = ModelInfo("shapes_net", (TensorDecl("pixels", "FP32", (-1, 3, SIZE, SIZE), here),),
                     (TensorDecl("logits", "FP32", (-1, len(CLASSES)), here),))
    return load_pipeline("classify", models={"shapes_net": info}).select(outputs=["pre.tensor"])


def _accuracy(net: nn.Module, loader: DataLoader) -> float:  # type: ignore[type-arg]
    net.eval()
    right = total = 0
    with torch.inference_mode():
        for pixels, labels in loader:
            right += int((net(pixels).argmax(1) == labels).sum())
            total += len(labels)
    return right / total


def train(*, epochs: int, train_count: int, val_count: int, seed: int, workers: int) -> tuple[nn.Module, dict[str, float]]:
    """Train on ``train_count`` fresh images; validate on ``val_count`` others (serve mode)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same sums in the same order, the same weights on a rerun
    try:
        return _train(epochs=epochs, train_count=train_count, val_count=val_count, seed=seed, workers=workers)
    finally:
        torch.set_num_threads(threads)


def _train(*, epochs: int, train_count: int, val_count: int, seed: int, workers: int) -> tuple[nn.Module, dict[str, float]]:
    torch.manual_seed(seed)
    pre = preprocessing()
    images, labels = make_dataset(train_count + val_count, seed)
    train_set = pre.dataset(list(zip(images[:train_count], labels[:train_count])), mode="train", seed=seed)
    val_set = pre.dataset(list(zip(images[train_count:], labels[train_count:])), mode="serve")
    order = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(train_set, batch_size=64, shuffle=True, generator=order, num_workers=workers,
                              persistent_workers=False)
    val_loader = DataLoader(val_set, batch_size=128, num_workers=workers)
    net = ShapesNet()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=1e-4)
    steps = epochs * len(train_loader)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=steps)
    start = time.perf_counter()
    for epoch in range(epochs):
        train_set.set_epoch(epoch)
        net.train()
        for pixels, target in train_loader:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(pixels), target)
            loss.backward()
            opt.step()
            sched.step()
        print(f"epoch {epoch + 1}/{epochs}: last batch loss {loss.item():.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
    seconds = time.perf_counter() - start
    accuracy = _accuracy(net, val_loader)
    print(f"trained in {seconds:.0f} s", flush=True)  # (not in the record: a rerun writes the same files)
    return net.eval(), {"validation_accuracy": round(accuracy, 4), "validation_images": val_count,
                        "train_images": train_count, "epochs": epochs, "seed": seed}


def export(net: nn.Module, root: Path, record: dict[str, float]) -> None:
    """TorchScript into ``root/shapes_net/1``, torch.export into ``root/shapes_net_export/1``."""
    (root / "shapes_net" / "1").mkdir(parents=True, exist_ok=True)
    (root / "shapes_net_export" / "1").mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, 3, SIZE, SIZE)
    scripted = torch.jit.trace(net, example)  # type: ignore[no-untyped-call]
    torch.jit.save(scripted, str(root / "shapes_net" / "1" / "model.pt"))  # type: ignore[no-untyped-call]
    batch = torch.export.Dim("batch", min=1, max=32)
    program = torch.export.export(net, (example,), dynamic_shapes={"pixels": {0: batch}})
    torch.export.save(program, str(root / "shapes_net_export" / "1" / "model.pt2"))
    (root / "shapes_net_export" / "config.yaml").write_text(CONFIG_EXPORT)
    (root / "shapes_net" / "training.json").write_text(json.dumps(record, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=models_dir(), help="the model repository to write (default: the shipped one)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--train-count", type=int, default=6000)
    ap.add_argument("--val-count", type=int, default=1200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    net, record = train(epochs=args.epochs, train_count=args.train_count, val_count=args.val_count, seed=args.seed,
                        workers=args.workers)
    export(net, args.out, record)
    print(f"validation accuracy {record['validation_accuracy']:.2%} on {args.val_count} images; wrote {args.out}/shapes_net")


if __name__ == "__main__":
    main()
