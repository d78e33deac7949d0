"""Aircraft on airfield aprons at Sentinel-2 resolution (10 m).

A 40-70 m transport is a 4-7 px bright cross-shaped blob on grey concrete.
Two detectors share one output (:class:`~imgdiff.detect.base.Detections`, class
``"aircraft"``):

* ``method="cnn"`` (default): a small fully convolutional network (CenterNet-style:
  a centre heat map plus box width, height and aircraft length per pixel) trained
  only on ``aircraft_s2sim`` by ``training/train_aircraft.py`` and shipped as ONNX
  (``imgdiff/detect/models/aircraft_cnn.onnx``); CPU inference with ONNX Runtime.
* ``method="classical"``: white top-hat on brightness, robust z-score, connected
  components. The baseline; it fires on much apron clutter.

Both read B02, B03, B04 and normalise each band by its local mean and standard
deviation, so they do not depend on absolute levels or on the DN scaling. When
B08 is present, candidates on vegetation (NDVI > 0.35) are dropped; when B11 is
present, candidates on water (MNDWI > 0.3) are dropped.

:data:`DETECTION_LIMITS` holds the measured recall per aircraft length bin
(grouped cross-validation by airport), for claims that rest on absence.

The network's outputs are averaged over the input and its half-turn rotation
(+0.02-0.03 F1 in cross-validation). Its sizes (box, length) are read from a second
run on the normalised input minus its local level (:data:`LEVELLED_SIZES`), so an
apron strip brighter than the fields around it does not lengthen what stands on it.
The length is the long side of the aircraft's axis-aligned box, as ``aircraft_s2sim``
labels it. Known limitation: on aprons much cleaner than the training chips (uniform
concrete), per-scene normalisation makes aircraft and bright vehicles look more
contrasted than anything seen in training: vehicles then give false alarms and
lengths come out long (see ``tests/test_aircraft.py``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import cv2
import numpy as np

from ..errors import BandError, EmptySceneError, InputError, check_type
from ..scene import Scene
from ..zones import ZONES_HINT, Zones, assign_zones
from .aircraft_features import (
    RGB_BANDS,
    axis_heading_deg,
    axis_headings_deg,
    fill_invalid,
    find_peaks,
    local_level,
    normalised_stack,
    subpixel_centres,
)
from .base import Detection, Detections, sorted_detections
from .onnx import run_network_file

MODEL_DIR = Path(__file__).resolve().parent / "models"
#: ONNX network (input: (1, 3, H, W) normalised B02 B03 B04; output: (1, 4, H, W)).
MODEL_PATH = MODEL_DIR / "aircraft_cnn.onnx"
#: Model card: score threshold, cross-validation figures, recall per length bin.
CARD_PATH = MODEL_DIR / "aircraft_limits.json"
#: Length bins (metres) of the detection limit, lower edge inclusive.
LENGTH_BINS_M: tuple[tuple[float, float], ...] = ((20, 30), (30, 40), (40, 50), (50, 70), (70, math.inf))
#: The network's input must be a multiple of this many pixels (two 2x poolings, padded up).
_MULTIPLE = 4
#: Tile size (pixels) for large scenes, and overlap between tiles.
_TILE, _OVERLAP = 1024, 48


def _load_card() -> Mapping[str, Any]:
    try:
        return json.loads(CARD_PATH.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


_CARD = _load_card()
#: Measured detection limit: ``{"bins_m": [[lo, hi], ...], "recall": [...], "n": [...], ...}``
#: (recall of the default detector per aircraft length bin, grouped cross-validation by
#: airport on ``aircraft_s2sim``). Empty when the model card is missing.
DETECTION_LIMITS: Mapping[str, Any] = MappingProxyType(dict(_CARD.get("detection_limits", {})))
#: Default score threshold of the network (chosen by cross-validation, see the model card).
DEFAULT_THRESHOLD: float = float(_CARD.get("score_threshold", 0.35))
#: Default threshold (robust z of the top-hat) of the classical detector.
CLASSICAL_THRESHOLD: float = 3.0


@dataclass(frozen=True)
class AircraftMaps:
    """Per-pixel outputs of the network on one scene grid.

    Attributes
    ----------
    heat : ndarray, float32, (rows, columns)
        Probability in [0, 1] that an aircraft centre lies in the pixel.
    width_px, height_px, length_px : ndarray, float32, (rows, columns)
        Predicted box width (x, columns), box height (y, rows) and aircraft length,
        in pixels, for an aircraft centred at the pixel.
    """

    heat: np.ndarray
    width_px: np.ndarray
    height_px: np.ndarray
    length_px: np.ndarray


@lru_cache(maxsize=8)
def norm_params(model_path: str) -> dict[str, float]:
    """Normalisation options of a network: its sidecar ``<model>.json`` (``{"norm": {...}}``), else none."""
    side = Path(model_path).with_suffix(".json")
    try:
        return dict(json.loads(side.read_text(encoding="utf-8")).get("norm", {}))
    except (OSError, ValueError):
        return {}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))).astype(np.float32)


def _run_net(x: np.ndarray, model_path: Path) -> np.ndarray:
    """Raw network output (4, rows, cols) for a normalised (3, rows, cols) input of any size."""
    _, h, w = x.shape
    ph, pw = (-h) % _MULTIPLE, (-w) % _MULTIPLE
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, ph), (0, pw)), mode="reflect")
    out = run_network_file(model_path, x[None])[0]
    return out[:, :h, :w]


def _run_tta(x: np.ndarray, model_path: Path) -> np.ndarray:
    """Network output averaged over the input and its half-turn (180 degree) rotation."""
    a = _run_net(x, model_path)
    b = _run_net(np.ascontiguousarray(x[:, ::-1, ::-1]), model_path)[:, ::-1, ::-1]
    return (a + b) / 2


def aircraft_maps(x: np.ndarray, *, model_path: Path | None = None) -> AircraftMaps:
    """Run the aircraft network on a normalised stack, tiling large scenes.

    Parameters
    ----------
    x : ndarray, float32, (3, rows, columns)
        B02, B03, B04 after :func:`~imgdiff.detect.aircraft_features.normalised_stack`.
        The network runs on the stack and on its half-turn rotation; outputs are averaged.
    model_path : Path, optional
        ONNX file; the packaged network by default.
    """
    model_path = model_path or MODEL_PATH
    if not Path(model_path).is_file():
        raise InputError(f"{model_path}: aircraft network missing; reinstall imgdiff or use method='classical'")
    _, h, w = x.shape
    if h <= _TILE + _OVERLAP and w <= _TILE + _OVERLAP:
        out = _run_tta(x, model_path)
    else:
        out = np.zeros((4, h, w), np.float32)
        step = _TILE
        for r in range(0, h, step):
            for c in range(0, w, step):
                r0, c0 = max(r - _OVERLAP, 0), max(c - _OVERLAP, 0)
                r1, c1 = min(r + step + _OVERLAP, h), min(c + step + _OVERLAP, w)
                o = _run_tta(x[:, r0:r1, c0:c1], model_path)
                rr1, cc1 = min(r + step, h), min(c + step, w)
                out[:, r:rr1, c:cc1] = o[:, r - r0:rr1 - r0, c - c0:cc1 - c0]
    heat = _sigmoid(out[0])
    size = np.exp(np.clip(out[1:4], -3, 4)).astype(np.float32)
    return AircraftMaps(heat=heat, width_px=size[0], height_px=size[1], length_px=size[2])


def _rgb(scene: Scene) -> list[np.ndarray]:
    missing = [b for b in RGB_BANDS if b not in scene.bands]
    if missing:
        raise BandError(
            f"aircraft detection needs bands {', '.join(RGB_BANDS)}; the scene lacks {', '.join(missing)}"
            f" (has {', '.join(scene.bands) or 'none'}); read the scene with bands B02,B03,B04"
        )
    return [np.asarray(scene.bands[b], np.float32) for b in RGB_BANDS]


#: Detections whose centre lies this close to no data (pixels) are dropped: false alarms along no-data edges.
NODATA_MARGIN_PX = 2
#: The network's sizes (box, length) are read from a second run on the normalised stack minus its
#: :func:`~imgdiff.detect.aircraft_features.local_level` (150 m running median), the heat map from the first.
#: In the training chips the pavement around an aircraft sits near the normalised level 0 (median 0.14,
#: p10-p90 -0.47 to 0.71 over 45-80 m aircraft); an apron strip brighter than the fields around it sits at
#: 1.4-1.6, and the network then sizes what stands on it long: real aircraft_s2sim aircraft of 45-60 m pasted
#: on the simulated Hmeimim apron measured 1.31 x their labelled length, 1.00 x after levelling; on the
#: chips themselves the median stays 1.0 (see ``benchmarks/aircraft.py --lengths``).
LEVELLED_SIZES = True


def _land_mask(scene: Scene) -> np.ndarray | None:
    """False on vegetation (NDVI > 0.35, from B08) and water (MNDWI > 0.3, from B03/B11); None if neither band."""
    bad = None
    with np.errstate(invalid="ignore", divide="ignore"):
        if "B08" in scene.bands:
            nir, red = fill_invalid(scene.bands["B08"]), fill_invalid(scene.bands["B04"])
            bad = (nir - red) / np.maximum(nir + red, 1e-6) > 0.35
        if "B11" in scene.bands:
            sw, gr = fill_invalid(scene.bands["B11"]), fill_invalid(scene.bands["B03"])
            water = (gr - sw) / np.maximum(gr + sw, 1e-6) > 0.3
            bad = water if bad is None else (bad | water)
    return None if bad is None else ~bad


def classical_score(x: np.ndarray, *, radius_px: int = 5) -> np.ndarray:
    """Robust z-score of the white top-hat of brightness (the classical baseline score map).

    Parameters
    ----------
    x : ndarray, (3, rows, columns)
        Normalised B02, B03, B04.
    radius_px : int
        Radius of the disk structuring element; blobs wider than about 2 r + 1 px vanish.
    """
    bright = x.mean(axis=0).astype(np.float32)
    se = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius_px + 1, 2 * radius_px + 1))
    th = cv2.morphologyEx(bright, cv2.MORPH_TOPHAT, se)
    med = float(np.median(th))
    mad = float(np.median(np.abs(th - med))) * 1.4826 or 1.0
    return ((th - med) / mad).astype(np.float32)


def _classical(x: np.ndarray, threshold: float) -> list[tuple[tuple[float, float], tuple[float, float, float, float],
                                                             float, float]]:
    """Components of the thresholded z map: (centre (x, y), box, score in [0, 1], length px)."""
    z = classical_score(x)
    mask = (z >= threshold).astype(np.uint8)
    n, lab, stats, cents = cv2.connectedComponentsWithStats(mask, connectivity=8)
    out = []
    for i in range(1, n):
        x0, y0, w, h, area = stats[i]
        if area < 3 or max(w, h) > 14:
            continue
        peak = float(z[lab == i].max())
        score = float(1.0 - math.exp(-(peak - threshold + 1.0) / 4.0))
        out.append(((float(cents[i][0]) + 0.5, float(cents[i][1]) + 0.5),
                    (float(x0), float(y0), float(x0 + w), float(y0 + h)), score, float(math.hypot(w, h))))
    return out


def detect_aircraft(
    scene: Scene,
    zones: Zones | None = None,
    *,
    method: str = "auto",
    threshold: float | None = None,
    min_length_m: float | None = None,
    keep_outside: bool = True,
    model_path: Path | None = None,
    min_score: float | None = None,
) -> Detections:
    """Detect aircraft in a scene.

    Parameters
    ----------
    scene : Scene
        Needs B02, B03, B04 (reflectance or any affine scaling of it); B08 and B11 are
        used to reject vegetation and water when present. Invalid pixels are ignored.
    zones : Zones, optional
        Named zones; each detection gets the zone holding its centroid.
    method : {"auto", "cnn", "classical"}
        The shipped network, the top-hat baseline, or (``"auto"``, default) the network
        when its ONNX file is installed, else the baseline.
    threshold : float, optional
        Minimum score (network: heat-map probability in [0, 1]; classical: robust z).
        Defaults to :data:`DEFAULT_THRESHOLD` / :data:`CLASSICAL_THRESHOLD`.
    min_length_m : float, optional
        Drop detections whose estimated length is below this many metres.
    keep_outside : bool
        With ``zones``, keep detections outside every zone (zone None).
    model_path : Path, optional
        Another ONNX network with the same input and output.
    min_score : float, optional
        Keep detections whose returned score (in [0, 1], either method) is at least this. With the
        network and no ``threshold`` it is also the heat-map threshold; the classical method's
        ``threshold`` stays a robust z (what ``imgdiff detect --min-score`` sets).

    Raises
    ------
    InputError
        ``model_path`` is not a file.
    ValueError
        An unknown ``method``, or ``min_score`` (or the network's ``threshold``) outside [0, 1].

    Returns
    -------
    Detections
        Class ``"aircraft"``: pixel-edge boxes (x = column, y = row), centroid (pixels),
        ``length_m`` / ``width_m`` in metres from the scene's true pixel size, axis
        heading in degrees clockwise from grid up, score in [0, 1], zone. Sorted by score.
    """
    check_type(scene, Scene, "detect_aircraft: scene", "read it with imgdiff.read_scene(path)")
    if zones is not None:
        check_type(zones, Zones, "detect_aircraft: zones", ZONES_HINT)
    if method not in ("auto", "cnn", "classical"):
        raise ValueError(f"method must be 'auto', 'cnn' or 'classical', not {method!r}")
    if model_path is not None and not Path(model_path).is_file():
        raise InputError(f"{model_path}: aircraft model not found")
    if min_score is not None and not 0.0 <= min_score <= 1.0:
        raise ValueError(f"detect_aircraft: min_score must be in [0, 1], not {min_score!r}")
    if method == "auto":
        method = "cnn" if Path(model_path or MODEL_PATH).is_file() else "classical"
    if method == "cnn" and threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"detect_aircraft: the network's threshold is a probability in [0, 1], not {threshold!r}")
    bands = _rgb(scene)
    valid = np.asarray(scene.valid, bool) & np.all([np.isfinite(b) for b in bands], axis=0)
    if not valid.any():
        raise EmptySceneError("the scene holds no valid pixel in B02, B03, B04; nothing to detect aircraft in")
    x = normalised_stack(bands, **(norm_params(str(model_path or MODEL_PATH)) if method == "cnn" else {}))
    land = _land_mask(scene)
    # a centre within NODATA_MARGIN_PX of no data is not kept: the network reads the no-data edge as an
    # object's outline (the edge of the array is no such edge)
    inside = cv2.erode(valid.astype(np.uint8), np.ones((2 * NODATA_MARGIN_PX + 1,) * 2, np.uint8),
                       borderType=cv2.BORDER_CONSTANT, borderValue=1).astype(bool) if not valid.all() else valid
    keep_px = inside if land is None else (inside & land)
    psx, psy = scene.pixel_size_m
    px_m = math.sqrt(abs(psx * psy))
    bright = x.mean(axis=0)
    items: list[Detection] = []

    def add(cx: float, cy: float, box: tuple[float, float, float, float], score: float, length_px: float,
            width_px: float, heading: float) -> None:
        r, c = min(int(cy), keep_px.shape[0] - 1), min(int(cx), keep_px.shape[1] - 1)
        if not keep_px[r, c]:
            return
        length_m = length_px * px_m
        if min_length_m is not None and length_m < min_length_m:
            return
        items.append(Detection(
            box=tuple(round(float(v), 3) for v in box),  # type: ignore[arg-type]
            score=round(float(min(max(score, 0.0), 1.0)), 4), cls="aircraft",
            length_m=round(float(length_m), 1), width_m=round(float(width_px * px_m), 1),
            heading_deg=float(heading), centroid=(round(float(cx), 3), round(float(cy), 3)),
            extra={"method": method},
        ))

    if method == "cnn":
        thr = threshold if threshold is not None else (DEFAULT_THRESHOLD if min_score is None else min_score)
        maps = aircraft_maps(x, model_path=model_path)
        h, w = maps.heat.shape
        peaks = find_peaks(maps.heat, thr, radius_px=1)
        rows, cols = peaks[:, 0], peaks[:, 1]
        cxs, cys = subpixel_centres(maps.heat, rows, cols)
        heads = axis_headings_deg(bright, cxs, cys)
        # sizes are read against the ground right around each aircraft (see LEVELLED_SIZES)
        sizes = aircraft_maps(x - local_level(x), model_path=model_path) if len(rows) and LEVELLED_SIZES else maps
        for r, c, cx, cy, hd in zip(rows, cols, cxs, cys, heads):
            bw, bh = float(sizes.width_px[r, c]), float(sizes.height_px[r, c])
            box = (max(cx - bw / 2, 0.0), max(cy - bh / 2, 0.0), min(cx + bw / 2, w), min(cy + bh / 2, h))
            add(cx, cy, box, float(maps.heat[r, c]), float(sizes.length_px[r, c]), min(bw, bh), hd)
    else:
        thr = CLASSICAL_THRESHOLD if threshold is None else threshold
        for (cx, cy), box, score, length in _classical(x, thr):
            bw, bh = box[2] - box[0], box[3] - box[1]
            add(cx, cy, box, score, length, min(bw, bh), axis_heading_deg(bright, cx, cy))

    if min_score is not None:
        items = [d for d in items if d.score >= min_score]
    dets = sorted_detections(items, scene.crs, scene.transform, (abs(psx), abs(psy)))
    if zones is not None:
        dets = assign_zones(dets, zones, keep_outside=keep_outside)
    return dets


def detection_limit(length_m: float) -> float | None:
    """Measured recall of the default detector for aircraft of this length (None if unmeasured)."""
    bins = DETECTION_LIMITS.get("bins_m") or []
    rec = DETECTION_LIMITS.get("recall") or []
    for (lo, hi), r in zip(bins, rec):
        hi = math.inf if hi is None else hi
        if lo <= length_m < hi:
            return None if r is None else float(r)
    return None
