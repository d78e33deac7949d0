"""Scoring the vessel detector on scenes laid out like ``sen2ships`` (GT boxes in ``vessels.json``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..scene import Scene
from .detection import match_detections, prf

#: Name of the ground-truth file in each scene folder.
GT_NAME = "vessels.json"


@dataclass(frozen=True)
class SceneScore:
    """Detection scores of one scene.

    Attributes
    ----------
    name : str
        Scene (port) folder name.
    n_gt, n_pred, tp, fp, fn : int
        Ground-truth and detected counts, hits, false alarms, misses.
    precision, recall, f1 : float
    count_error : float
        Relative count error ``(n_pred - n_gt) / n_gt`` (signed; NaN when ``n_gt`` is 0).

    In :meth:`to_dict`, a scene with no vessels and no detections has precision, recall and F1
    None (nothing to score; the attributes hold 0 as :func:`imgdiff.evaluate.prf` gives them), and
    a count error of NaN is None.
    """

    name: str
    n_gt: int
    n_pred: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    count_error: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if np.isnan(d["count_error"]):
            d["count_error"] = None
        if self.n_gt == 0 and self.n_pred == 0:
            d["precision"] = d["recall"] = d["f1"] = None
        return d


@dataclass(frozen=True)
class VesselEval:
    """Per-scene and pooled scores (pooled: TP/FP/FN summed over scenes)."""

    scenes: tuple[SceneScore, ...]
    pooled: SceneScore

    def to_dict(self) -> dict[str, Any]:
        return {"scenes": [s.to_dict() for s in self.scenes], "pooled": self.pooled.to_dict()}


def score(name: str, pred_boxes: np.ndarray, pred_scores: np.ndarray, gt_boxes: np.ndarray) -> SceneScore:
    """Score one scene with the issue's matching rule (centre in GT box grown by 1 px, or IoU >= 0.1)."""
    m = match_detections(pred_boxes, pred_scores, gt_boxes)
    return _make(name, len(gt_boxes), len(pred_boxes), m.tp, m.fp, m.fn)


def _make(name: str, n_gt: int, n_pred: int, tp: int, fp: int, fn: int) -> SceneScore:
    p = prf(tp, fp, fn)
    ce = (n_pred - n_gt) / n_gt if n_gt else float("nan")
    return SceneScore(name, n_gt, n_pred, tp, fp, fn, p["precision"], p["recall"], p["f1"], ce)


def pool(scores: Iterable[SceneScore], name: str = "pooled") -> SceneScore:
    """Pooled score: counts summed over scenes, then P/R/F1 and count error."""
    s = list(scores)
    return _make(name, sum(x.n_gt for x in s), sum(x.n_pred for x in s), sum(x.tp for x in s),
                 sum(x.fp for x in s), sum(x.fn for x in s))


def scene_dirs(data: str | Path) -> list[Path]:
    """Scene folders under ``data`` holding a ``vessels.json`` (``data`` itself if it holds one), sorted."""
    data = Path(data)
    if not data.is_dir():
        raise InputError(f"{data}: not a folder; pass a folder of scenes laid out like sen2ships/")
    if (data / GT_NAME).is_file():
        return [data]
    dirs = sorted(p.parent for p in data.glob(f"*/{GT_NAME}"))
    if not dirs:
        raise InputError(f"{data}: no */{GT_NAME} found; pass a folder of scenes laid out like sen2ships/")
    return dirs


def read_gt(scene_dir: str | Path) -> np.ndarray:
    """Ground-truth pixel-edge boxes (N, 4) [x0, y0, x1, y1] of one scene folder."""
    path = Path(scene_dir) / GT_NAME
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        boxes = [v["bbox_px"] for v in obj["vessels"]]
    except FileNotFoundError:
        raise InputError(f"{path}: no such ground-truth file") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not a vessels.json ({e}); expected {{'vessels': [{{'bbox_px': [...]}}]}}") from None
    for i, b in enumerate(boxes):
        ok = isinstance(b, (list, tuple)) and len(b) == 4 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in b)
        if not ok or not (b[0] < b[2] and b[1] < b[3]):
            raise InputError(f"{path}: vessel {i} (vessels[{i}]) has bbox_px {json.dumps(b)}; expected four pixel "
                             "edges [x0, y0, x1, y1] with x0 < x1, y0 < y1")
    return np.array(boxes, float).reshape(-1, 4)


def evaluate_vessels(
    data: str | Path,
    *,
    detector: Callable[[Scene], Any] | None = None,
    on_scene: Callable[[str], None] | None = None,
) -> VesselEval:
    """Run a detector on every scene under ``data`` and score it.

    Parameters
    ----------
    data : path
        Folder of scene folders (band files + ``vessels.json``), like ``sen2ships/``.
    detector : callable, optional
        ``Scene -> Detections``; default :func:`imgdiff.detect.vessels.detect_vessels`.
    on_scene : callable, optional
        Called with each scene name before it is processed (progress).
    """
    from ..detect.vessels import detect_vessels
    from ..io.read import read_scene

    detector = detector or detect_vessels
    out = []
    dirs = scene_dirs(data)
    truths = [read_gt(d) for d in dirs]  # every ground-truth file checked before the first detection
    for d, gt in zip(dirs, truths):
        if on_scene:
            on_scene(d.name)
        dets = detector(read_scene(d))
        out.append(score(d.name, dets.boxes, dets.scores, gt))
    return VesselEval(tuple(out), pool(out))
