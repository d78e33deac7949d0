"""Matching detections to ground-truth boxes, and the scores built on it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MatchResult:
    """One-to-one matching of detections to ground truth in one image.

    Attributes
    ----------
    tp, fp, fn : int
        True positives, false alarms and misses (don't-care objects excluded).
    pairs : list of (int, int)
        (detection index, ground-truth index) of every match, don't-care ones included.
    """

    tp: int
    fp: int
    fn: int
    pairs: list[tuple[int, int]]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between every box of ``a`` (N, 4) and ``b`` (M, 4), boxes [x0, y0, x1, y1]."""
    a = np.asarray(a, float).reshape(-1, 4)
    b = np.asarray(b, float).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_detections(
    pred_boxes: np.ndarray,
    scores: np.ndarray,
    gt_boxes: np.ndarray,
    *,
    dont_care: Iterable[bool] | None = None,
    grow_px: float = 1.0,
    min_iou: float = 0.1,
) -> MatchResult:
    """Greedy one-to-one matching, highest score first.

    A detection matches a ground-truth box if its centre lies inside the box grown
    by ``grow_px`` pixels on every side, or their IoU is at least ``min_iou``. Among
    candidates the highest-IoU (then nearest-centre) free box is taken. A detection
    matched to a don't-care box counts neither as hit nor as false alarm; unmatched
    don't-care boxes are not misses.

    Raises
    ------
    ValueError
        ``scores`` does not hold one score per predicted box, or ``dont_care`` one flag per
        ground-truth box.
    """
    pred = np.asarray(pred_boxes, float).reshape(-1, 4)
    gt = np.asarray(gt_boxes, float).reshape(-1, 4)
    sc = np.asarray(scores, float).reshape(-1)
    dc = np.zeros(len(gt), bool) if dont_care is None else np.asarray(list(dont_care), bool).reshape(-1)
    if len(sc) != len(pred):
        raise ValueError(f"match_detections: {len(sc)} scores for {len(pred)} predicted boxes")
    if len(dc) != len(gt):
        raise ValueError(f"match_detections: {len(dc)} dont_care flags for {len(gt)} ground-truth boxes")
    order = np.argsort(-sc, kind="stable")
    iou = box_iou(pred, gt)
    cx = (pred[:, 0] + pred[:, 2]) / 2
    cy = (pred[:, 1] + pred[:, 3]) / 2
    gcx, gcy = (gt[:, 0] + gt[:, 2]) / 2, (gt[:, 1] + gt[:, 3]) / 2
    inside = (
        (cx[:, None] >= gt[None, :, 0] - grow_px) & (cx[:, None] <= gt[None, :, 2] + grow_px)
        & (cy[:, None] >= gt[None, :, 1] - grow_px) & (cy[:, None] <= gt[None, :, 3] + grow_px)
    )
    ok = inside | (iou >= min_iou)
    taken = np.zeros(len(gt), bool)
    pairs: list[tuple[int, int]] = []
    tp = fp = 0
    for i in order:
        cand = np.flatnonzero(ok[i] & ~taken)
        if cand.size == 0:
            fp += 1
            continue
        dist = np.hypot(gcx[cand] - cx[i], gcy[cand] - cy[i])
        j = int(cand[np.lexsort((dist, -iou[i, cand]))[0]])
        taken[j] = True
        pairs.append((int(i), j))
        if not dc[j]:
            tp += 1
    fn = int(np.sum(~taken & ~dc))
    return MatchResult(tp=tp, fp=fp, fn=fn, pairs=pairs)


def prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall and F1 (0 where undefined)."""
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f}


def binned_precision(scores: Iterable[float], real: Iterable[bool], edges: tuple[float, ...]) -> dict:
    """Calibration table of a detector: the fraction of its detections that are real, per score bin.

    Parameters
    ----------
    scores : iterable of float
        Scores of pooled out-of-fold detections, in [0, 1].
    real : iterable of bool
        Whether each detection matched a true object (:func:`match_detections`).
    edges : tuple of float
        Bin edges (lower edge inclusive; the last bin includes its upper edge).

    Returns
    -------
    dict
        ``{"bins": [[lo, hi], ...], "n": [...], "n_real": [...], "precision": [...] (None where
        empty), "mean_score": [...]}``.
    """
    s, y = np.asarray(list(scores), float), np.asarray(list(real), bool)
    out: dict[str, list] = {"bins": [], "n": [], "n_real": [], "precision": [], "mean_score": []}
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        m = (s >= lo) & ((s < hi) if k < len(edges) - 2 else (s <= hi))
        n = int(m.sum())
        out["bins"].append([lo, hi])
        out["n"].append(n)
        out["n_real"].append(int(y[m].sum()))
        out["precision"].append(float(y[m].mean()) if n else None)
        out["mean_score"].append(float(s[m].mean()) if n else None)
    return out
