"""Detector figures: measured precision, recall per length and score calibration of each detector.

Read from the detector modules and their model cards (:func:`detector_performance`), with
:data:`DEFAULT_PERFORMANCE` when a detector publishes none. They give a verdict its confidence
and say below which length an object's absence cannot be shown (:data:`MIN_USEFUL_RECALL`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..io.write import finite_or_null
from .evidence import MIN_EVIDENCE_SCORE

#: Recall below which objects of a length bin count as "below what the detector resolves": the
#: detector misses more of them than it finds, so not seeing one says little (its absence cannot
#: be shown). From the model card's measured recall per length bin.
MIN_USEFUL_RECALL = 0.5


@dataclass(frozen=True)
class ScoreCalibration:
    """A detector's measured fraction of real objects per score bin (its model card's table).

    Attributes
    ----------
    bins : tuple of (lo, hi)
        Score bins (lower edge inclusive).
    n, n_real : tuple of int
        Held-out detections in each bin, and how many of them were real objects.
    mean_score : tuple of float or None
        Mean score of each bin's detections (None where empty).
    source : str
        How the table was measured (protocol, data, command).

    Notes
    -----
    :meth:`probability` maps a score to the probability that the object is real: the bins'
    fractions are made non-decreasing in score by pooling adjacent violators (weighted by
    their counts), then interpolated linearly between the bins' mean scores, and held
    constant beyond the first and last bin.
    """

    bins: tuple[tuple[float, float], ...]
    n: tuple[int, ...]
    n_real: tuple[int, ...]
    mean_score: tuple[float | None, ...]
    source: str = ""

    @classmethod
    def from_card(cls, table: Mapping[str, Any], source: str = "") -> ScoreCalibration:
        """From a model card's ``score_calibration`` entry (``bins``, ``n``, ``n_real``, ``mean_score``)."""
        bins = tuple((float(lo), float(hi)) for lo, hi in table["bins"])
        n = tuple(int(v) for v in table["n"])
        n_real = tuple(int(v) for v in table["n_real"])
        ms = tuple(None if v is None else float(v) for v in table.get("mean_score") or [None] * len(bins))
        if not (len(bins) == len(n) == len(n_real) == len(ms)) or not any(n):
            raise ValueError("score_calibration: bins, n, n_real and mean_score must have one entry per bin")
        src = source or str(table.get("source", ""))
        if table.get("command"):
            src += f" ({table['command']})"
        return cls(bins, n, n_real, ms, src)

    def knots(self) -> tuple[np.ndarray, np.ndarray]:
        """(score, probability) of the monotone interpolation: one knot per non-empty bin."""
        x, y, w = [], [], []
        for (lo, hi), n, nr, m in zip(self.bins, self.n, self.n_real, self.mean_score):
            if n > 0:
                x.append(0.5 * (lo + hi) if m is None else m)
                y.append(nr / n)
                w.append(float(n))
        # pool adjacent violators: the fraction real never falls as the score rises
        blocks: list[list[float]] = []  # [sum of w*y, sum of w, number of knots]
        for yi, wi in zip(y, w):
            blocks.append([yi * wi, wi, 1])
            while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
                a = blocks.pop()
                blocks[-1] = [blocks[-1][0] + a[0], blocks[-1][1] + a[1], blocks[-1][2] + a[2]]
        mono = np.concatenate([np.full(int(k), sw / ws) for sw, ws, k in blocks])
        return np.asarray(x, float), mono

    def probability(self, score: float) -> float:
        """Probability that an object of this ``score`` is real (monotone in the score)."""
        x, y = self.knots()
        return float(np.interp(float(score), x, y))

    def score_at(self, probability: float) -> float:
        """The lowest score whose :meth:`probability` reaches ``probability`` (inf if none does)."""
        x, y = self.knots()
        if y[0] >= probability:
            return float(x[0])
        if not (y >= probability).any():
            return math.inf
        k = int(np.argmax(y >= probability))
        return float(x[k - 1] + (probability - y[k - 1]) / (y[k] - y[k - 1]) * (x[k] - x[k - 1]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (an open-ended bin edge, infinity, becomes None)."""
        x, y = self.knots()
        return finite_or_null({
            "source": self.source, "bins": [list(b) for b in self.bins], "n": list(self.n),
            "n_real": list(self.n_real),
            "precision": [None if n == 0 else round(r / n, 4) for n, r in zip(self.n, self.n_real)],
            "knots": {"score": [round(float(v), 4) for v in x], "probability": [round(float(v), 4) for v in y]},
            "score_at_min_evidence": round(self.score_at(MIN_EVIDENCE_SCORE), 4),
            "probability_at_min_score": round(self.probability(MIN_EVIDENCE_SCORE), 4),
        })


@dataclass(frozen=True)
class DetectorPerformance:
    """Measured figures of a detector, used for confidence and for the resolution limit.

    Attributes
    ----------
    object : str
    precision, recall : float
        At the default threshold, on labelled Sentinel-2(-like) data.
    min_length_m : float
        Shortest object length (metres) the detector finds with recall >= :data:`MIN_USEFUL_RECALL`.
    source : str
        Where the figures come from.
    recall_by_length : tuple of (lo_m, hi_m, recall)
        Recall per length bin, when measured.
    calibration : ScoreCalibration or None
        The detector's fraction of real objects per score bin, when measured: an object's
        evidence is its calibrated probability (:meth:`probability`).
    """

    object: str
    precision: float
    recall: float
    min_length_m: float
    source: str
    recall_by_length: tuple[tuple[float, float, float], ...] = ()
    calibration: ScoreCalibration | None = None

    def probability(self, score: float) -> float:
        """Probability that a detection of this score is real: the calibration table's, or the score itself."""
        return self.calibration.probability(score) if self.calibration is not None else float(score)

    def recall_at(self, length_m: float | None) -> float:
        """Recall for objects of at least ``length_m`` metres (the overall recall when unknown)."""
        if length_m is None or not self.recall_by_length:
            return self.recall
        rs = [r for lo, hi, r in self.recall_by_length if hi > length_m]
        return float(min(rs)) if rs else self.recall

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (an open-ended length bin's upper edge, infinity, becomes None)."""
        return finite_or_null({"object": self.object, "precision": self.precision, "recall": self.recall,
                               "min_length_m": self.min_length_m, "source": self.source,
                               "recall_by_length": [list(b) for b in self.recall_by_length],
                               "score_calibration": None if self.calibration is None else self.calibration.to_dict()})


#: Figures used when a detector module publishes none (see the report for the source).
#: Vessels: sen2ships, 7 ports, CNN detector (imgdiff eval vessels); aircraft: aircraft_s2sim
#: grouped cross-validation (imgdiff eval aircraft). Objects below ``min_length_m`` are
#: below what 10 m imagery resolves.
DEFAULT_PERFORMANCE: dict[str, DetectorPerformance] = {
    "vessels": DetectorPerformance("vessels", 0.80, 0.80, 25.0, "provisional figures (imgdiff.claims defaults)"),
    "aircraft": DetectorPerformance("aircraft", 0.60, 0.75, 30.0, "provisional figures (imgdiff.claims defaults)",
                                    ((20.0, 30.0, 0.2), (30.0, math.inf, 0.75))),
}


def detector_performance(obj: str) -> DetectorPerformance:
    """The measured figures of the detector for ``obj`` (``"vessels"`` or ``"aircraft"``).

    A detector module may publish them as ``PERFORMANCE`` (a mapping with ``precision``,
    ``recall``, ``min_length_m``, ``source``), as a model card (``CARD_PATH``, JSON with
    ``cross_validation.pooled.precision/recall``) and as ``DETECTION_LIMITS`` (recall per
    length bin; the limit is the shortest bin with recall >= :data:`MIN_USEFUL_RECALL`);
    otherwise :data:`DEFAULT_PERFORMANCE` applies.
    """
    base = DEFAULT_PERFORMANCE[obj]
    if obj == "vessels":
        from ..detect import vessels as mod
    else:
        from ..detect import aircraft as mod  # type: ignore[no-redef]
    perf = getattr(mod, "PERFORMANCE", None)
    card_path = getattr(mod, "CARD_PATH", None)
    calibration = None
    if card_path is not None:
        try:
            import json

            table = json.loads(Path(card_path).read_text(encoding="utf-8")).get("score_calibration")
            if table:
                calibration = ScoreCalibration.from_card(
                    table, f"model card {Path(card_path).name}: " + str(table.get("source", "")))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            calibration = None
    if perf is None and card_path is not None:
        try:
            import json

            card = json.loads(Path(card_path).read_text(encoding="utf-8"))
            if "cross_validation" in card:
                pooled = card["cross_validation"]["pooled"]
                scheme = card["cross_validation"].get("scheme", "")
            else:  # vessels: the leave-one-port-out figures at the shipped threshold
                pooled, scheme = card["selected"], "leave-one-port-out, pooled"
            perf = {"precision": pooled["precision"], "recall": pooled["recall"],
                    "source": f"model card {Path(card_path).name}: {scheme}"}
        except (OSError, ValueError, KeyError, TypeError):
            perf = None
    if isinstance(perf, Mapping) and perf.get("precision") is not None and perf.get("recall") is not None:
        base = DetectorPerformance(obj, float(perf["precision"]), float(perf["recall"]),
                                   float(perf.get("min_length_m", base.min_length_m)),
                                   str(perf.get("source", f"imgdiff.detect.{mod.__name__.rsplit('.', 1)[-1]}")))
    limits = getattr(mod, "DETECTION_LIMITS", None)
    if isinstance(limits, Mapping) and limits.get("bins_m") and limits.get("recall"):
        bins = []
        for (lo, hi), r in zip(limits["bins_m"], limits["recall"]):
            if r is not None:
                bins.append((float(lo), math.inf if hi is None else float(hi), float(r)))
        if bins:
            ok = [lo for lo, _, r in bins if r >= MIN_USEFUL_RECALL]
            min_len = min(ok) if ok else math.inf
            base = replace(base, recall_by_length=tuple(bins), min_length_m=min_len,
                           source=base.source + "; recall per length from the model card")
    return replace(base, calibration=calibration)
