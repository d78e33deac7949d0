"""Scoring aircraft detection on chips laid out like ``aircraft_s2sim``.

A data folder holds one sub-folder per chip with ``B02.tif``, ``B03.tif``, ``B04.tif``
(more bands allowed) and ``aircraft.json``::

    {"aircraft": [{"bbox_px": [x0, y0, x1, y1], "length_m": 59.5, "truncated": false}, ...]}

Aircraft shorter than ``min_length_m`` or truncated at the chip edge are "don't care".
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..detect.aircraft import LENGTH_BINS_M
from ..detect.base import Detections
from ..errors import InputError
from ..scene import Scene
from .detection import match_detections, prf


@dataclass(frozen=True)
class AircraftTruth:
    """Ground truth of one chip.

    Attributes
    ----------
    boxes : ndarray, (N, 4)
        Pixel-edge boxes [x0, y0, x1, y1] (x = column, y = row).
    length_m : ndarray, (N,)
        Aircraft length in metres.
    truncated : ndarray of bool, (N,)
        True where the aircraft is cut by the chip edge.
    """

    boxes: np.ndarray
    length_m: np.ndarray
    truncated: np.ndarray


@dataclass(frozen=True)
class ChipScore:
    """Scores of one chip (aircraft >= the minimum length, not truncated)."""

    chip: str
    tp: int
    fp: int
    fn: int
    n_truth: int
    n_detected: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"chip": self.chip, "tp": self.tp, "fp": self.fp, "fn": self.fn, "n_truth": self.n_truth,
                "n_detected": self.n_detected, **prf(self.tp, self.fp, self.fn), "seconds": round(self.seconds, 4)}


@dataclass(frozen=True)
class AircraftEvaluation:
    """Pooled and per-chip scores, and recall per aircraft length bin.

    ``recall_by_length`` counts every non-truncated aircraft in each bin (whatever
    ``min_length_m``): a hit is a one-to-one match by the usual rule.
    """

    min_length_m: float
    chips: tuple[ChipScore, ...]
    bins_m: tuple[tuple[float, float], ...]
    bin_hits: tuple[int, ...]
    bin_counts: tuple[int, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tp(self) -> int:
        return sum(c.tp for c in self.chips)

    @property
    def fp(self) -> int:
        return sum(c.fp for c in self.chips)

    @property
    def fn(self) -> int:
        return sum(c.fn for c in self.chips)

    @property
    def pooled(self) -> dict[str, float]:
        """Precision, recall and F1 over all chips pooled."""
        return prf(self.tp, self.fp, self.fn)

    @property
    def recall_by_length(self) -> list[float | None]:
        """Recall per length bin (None for an empty bin)."""
        return [h / n if n else None for h, n in zip(self.bin_hits, self.bin_counts)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "min_length_m": self.min_length_m,
            "n_chips": len(self.chips),
            "pooled": {"tp": self.tp, "fp": self.fp, "fn": self.fn, **self.pooled},
            "recall_by_length": [
                {"bin_m": [lo, None if math.isinf(hi) else hi], "n": n, "hits": h, "recall": r}
                for (lo, hi), n, h, r in zip(self.bins_m, self.bin_counts, self.bin_hits, self.recall_by_length)
            ],
            "chips": [c.to_dict() for c in self.chips],
            **self.extra,
        }


def read_truth(path: str | Path) -> AircraftTruth:
    """Read a chip's ``aircraft.json``."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        items = obj["aircraft"]
        boxes = np.array([a["bbox_px"] for a in items], float).reshape(-1, 4)
        length = np.array([float(a.get("length_m", math.nan)) for a in items], float)
        trunc = np.array([bool(a.get("truncated", False)) for a in items], bool)
    except FileNotFoundError:
        raise InputError(f"{path}: no such ground-truth file") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not an aircraft.json ({{'aircraft': [{{'bbox_px', 'length_m', "
                         f"'truncated'}}]}}): {e}") from None
    return AircraftTruth(boxes, length, trunc)


def merge_duplicates(truth: AircraftTruth, max_dist_px: float = 1.0) -> AircraftTruth:
    """Ground truth with near-identical boxes merged (centres closer than ``max_dist_px`` pixels).

    Some ``aircraft_s2sim`` chips list one aircraft twice (from overlapping source tiles);
    the first box of each cluster is kept, truncated if any member is.
    """
    b = truth.boxes
    c = np.column_stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2])
    keep = np.ones(len(b), bool)
    trunc = truth.truncated.copy()
    for i in range(len(b)):
        if not keep[i]:
            continue
        near = np.flatnonzero(np.hypot(c[:, 0] - c[i, 0], c[:, 1] - c[i, 1]) < max_dist_px)
        near = near[near > i]
        keep[near] = False
        trunc[i] = trunc[i] or bool(truth.truncated[near].any())
    return AircraftTruth(b[keep], truth.length_m[keep], trunc[keep])


def chip_dirs(data: str | Path) -> list[Path]:
    """Chip folders under ``data`` (those holding ``aircraft.json``), sorted by name."""
    data = Path(data)
    if not data.is_dir():
        raise InputError(f"{data}: not a folder; pass a folder of chips laid out like aircraft_s2sim")
    dirs = sorted(p.parent for p in data.glob("*/aircraft.json"))
    if not dirs and (data / "aircraft.json").is_file():
        dirs = [data]
    if not dirs:
        raise InputError(f"{data}: no chip folder with aircraft.json found")
    return dirs


def bin_index(length_m: float, bins: Sequence[tuple[float, float]] = LENGTH_BINS_M) -> int | None:
    """Index of the length bin holding ``length_m`` (lower edge inclusive), None outside every bin."""
    for i, (lo, hi) in enumerate(bins):
        if lo <= length_m < hi:
            return i
    return None


def score_chip(dets: Detections | tuple[np.ndarray, np.ndarray], truth: AircraftTruth, *, min_length_m: float = 40.0,
               chip: str = "", seconds: float = 0.0,
               bins: Sequence[tuple[float, float]] = LENGTH_BINS_M) -> tuple[ChipScore, np.ndarray, np.ndarray]:
    """Score one chip.

    Parameters
    ----------
    dets : Detections or (boxes (N, 4), scores (N,))
        Detections in the chip's pixel grid.
    truth : AircraftTruth
        The chip's aircraft (:func:`read_truth`).
    min_length_m : float
        Aircraft shorter than this (metres), or truncated at the chip edge, are "don't care":
        neither a miss when not found nor a false alarm when found.
    chip : str
        Name of the chip (for the score).
    seconds : float
        Detection time, recorded in the score.
    bins : sequence of (float, float)
        Length bins in metres for the recall by length (every non-truncated aircraft counts).

    Returns
    -------
    ChipScore, hits per bin (ndarray int), counts per bin (ndarray int)
    """
    boxes, scores = (dets.boxes, dets.scores) if isinstance(dets, Detections) else dets
    dc = (truth.length_m < min_length_m) | truth.truncated | ~np.isfinite(truth.length_m)
    m = match_detections(boxes, scores, truth.boxes, dont_care=dc)
    matched = np.zeros(len(truth.boxes), bool)
    for _, j in m.pairs:
        matched[j] = True
    hits = np.zeros(len(bins), int)
    counts = np.zeros(len(bins), int)
    # recall by length: every non-truncated aircraft counts, whatever min_length_m
    m_all = match_detections(boxes, scores, truth.boxes, dont_care=truth.truncated)
    matched_all = np.zeros(len(truth.boxes), bool)
    for _, j in m_all.pairs:
        matched_all[j] = True
    for j, (L, t) in enumerate(zip(truth.length_m, truth.truncated)):
        b = bin_index(float(L), bins)
        if t or b is None:
            continue
        counts[b] += 1
        hits[b] += int(matched_all[j])
    cs = ChipScore(chip=chip, tp=m.tp, fp=m.fp, fn=m.fn, n_truth=int((~dc).sum()), n_detected=len(boxes),
                   seconds=seconds)
    return cs, hits, counts


def evaluate_aircraft(
    data: str | Path,
    *,
    min_length_m: float = 40.0,
    detector: Callable[[Scene], Detections] | None = None,
    on_chip: Callable[[str], None] | None = None,
    dedupe: bool = False,
) -> AircraftEvaluation:
    """Run a detector over every chip under ``data`` and score it.

    Parameters
    ----------
    data : path
        Folder of chip folders (``B02.tif`` ... and ``aircraft.json`` each).
    min_length_m : float
        Aircraft shorter than this (metres) are don't-care, as are truncated ones.
    detector : callable, optional
        ``Scene -> Detections``; :func:`imgdiff.detect.aircraft.detect_aircraft` by default.
    on_chip : callable, optional
        Called with each chip name before it is processed (progress).
    dedupe : bool
        Merge duplicate ground-truth boxes first (:func:`merge_duplicates`); off by default,
        so that scores compare with the issue's figures.
    """
    import time

    from ..detect.aircraft import detect_aircraft
    from ..io.read import read_scene

    detector = detector or detect_aircraft
    chips = []
    hits = np.zeros(len(LENGTH_BINS_M), int)
    counts = np.zeros(len(LENGTH_BINS_M), int)
    for d in chip_dirs(data):
        if on_chip:
            on_chip(d.name)
        truth = read_truth(d / "aircraft.json")
        if dedupe:
            truth = merge_duplicates(truth)
        scene = read_scene(d)
        t0 = time.perf_counter()
        dets = detector(scene)
        dt = time.perf_counter() - t0
        cs, h, n = score_chip(dets, truth, min_length_m=min_length_m, chip=d.name, seconds=dt)
        chips.append(cs)
        hits += h
        counts += n
    return AircraftEvaluation(min_length_m, tuple(chips), LENGTH_BINS_M, tuple(int(v) for v in hits),
                              tuple(int(v) for v in counts), extra={"duplicates_merged": dedupe})
