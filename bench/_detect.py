"""Detection post-processing rows for ``bench/ops_cpu.py``: twinpipe first, then the peer.

- per-class NMS (IoU 0.5) on 1000 and 5000 boxes spread over 80 classes, as a detector's
  candidates are (clusters of overlapping boxes around objects, plus scattered ones):
  ``detect.nms`` vs ``torchvision.ops.batched_nms`` (1000 boxes is torchvision's small-input path,
  5000 its per-class loop);
- a YOLOv5 COCO head output [25200, 85] to at most 300 detections (best class over 0.25, NMS at
  0.45): ``detect.decode_yolo`` + ``detect.multiclass_nms`` vs the same steps in torch as YOLOv5's
  ``non_max_suppression`` does them, with ``batched_nms``.

Run alone: ``.venv/bin/python bench/_detect.py`` (one thread, median ms).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch
from _table import print_table
from torchvision.ops import batched_nms, box_convert

from twinpipe.ops import detect

__all__ = ["rows"]

_NMS = detect.nms.bind(iou_threshold=0.5)


def _candidates(rng: np.random.Generator, n: int, classes: int = 80) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    objects = max(1, n // 40)
    centre, wh = rng.uniform(0, 640, (objects, 2)), rng.uniform(10, 200, (objects, 2))
    pick = rng.integers(0, objects, n)
    jitter = rng.normal(0, 0.1, (n, 4)) * np.tile(wh[pick], 2)
    boxes = np.concatenate([centre[pick] - wh[pick] / 2, centre[pick] + wh[pick] / 2], 1) + jitter
    scattered = rng.random(n) < 0.3
    xy = rng.uniform(0, 600, (n, 2))
    boxes[scattered] = np.concatenate([xy, xy + rng.uniform(5, 150, (n, 2))], 1)[scattered]
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    # an object's candidates mostly share its class
    cls = np.where(rng.random(n) < 0.8, pick % classes, rng.integers(0, classes, n))
    return np.clip(boxes, 0, 640).astype(np.float32), rng.random(n).astype(np.float32), cls.astype(np.int64)


def _yolo_head(rng: np.random.Generator) -> np.ndarray:
    pred = np.empty((25200, 85), np.float32)
    pred[:, :2], pred[:, 2:4] = rng.uniform(0, 640, (25200, 2)), rng.uniform(4, 300, (25200, 2))
    pred[:, 4] = rng.random(25200) ** 4  # most cells see background
    pred[:, 5:] = rng.random((25200, 80)) ** 3
    return pred


def _torch_yolov5_nms(x: torch.Tensor, conf_thres: float, iou_thres: float, max_det: int) -> torch.Tensor:
    x = x.clone()
    x[:, 5:] *= x[:, 4:5]  # conf = obj_conf * cls_conf
    box = box_convert(x[:, :4], "cxcywh", "xyxy")
    conf, j = x[:, 5:].max(1, keepdim=True)
    x = torch.cat((box, conf, j.float()), 1)[conf.view(-1) > conf_thres]
    keep = batched_nms(x[:, :4], x[:, 4], x[:, 5].long(), iou_thres)[:max_det]
    return x[keep]


def rows() -> list[tuple[str, str, Callable[[], Any]]]:
    rng = np.random.default_rng(0)
    out: list[tuple[str, str, Callable[[], Any]]] = []
    for n in (1000, 5000):
        boxes, scores, cls = _candidates(rng, n)
        tb, ts, tc = torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(cls)
        assert np.array_equal(_NMS(boxes, scores, cls), batched_nms(tb, ts, tc, 0.5).numpy())
        task = f"NMS {n} boxes × 80 classes"
        out.append((task, "twinpipe detect.nms", partial(_NMS, boxes, scores, cls)))
        out.append((task, "torchvision batched_nms", partial(batched_nms, tb, ts, tc, 0.5)))
    pred = _yolo_head(rng)
    tpred = torch.from_numpy(pred)
    decode = detect.decode_yolo.bind()
    select = detect.multiclass_nms.bind(score_threshold=0.25, iou_threshold=0.45, max_detections=300, multi_label=False)

    def twinpipe_yolo() -> Any:
        boxes, scores = decode(pred)
        return select(boxes, scores)

    got, want = twinpipe_yolo(), _torch_yolov5_nms(tpred, 0.25, 0.45, 300)
    k = int(got.num_detections[0])
    assert k == len(want) and np.array_equal(got.classes[:k], want[:, 5].long().numpy())
    task = "YOLOv5 head 25200×85 → detections"
    out.append((task, "twinpipe decode_yolo + multiclass_nms", twinpipe_yolo))
    out.append((task, "torch YOLOv5 non_max_suppression steps (batched_nms)", lambda: _torch_yolov5_nms(tpred, 0.25, 0.45, 300)))
    return out


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    print_table(rows(), args.repeat, "1 thread")


if __name__ == "__main__":
    main()
