"""Vessel detection in Sentinel-2 10 m bands, moored ships included.

The detector is a small fully convolutional network (a CenterNet-style centre
heat map with box sizes, trained on ``sen2ships`` by ``training/train_vessels.py``)
shipped as ONNX in ``imgdiff/detect/models/vessels.onnx`` and run on CPU with
ONNX Runtime (:mod:`imgdiff.detect.onnx`). Its input is normalised per scene (log of each band over
its 99th percentile), so it does not depend on the absolute scaling of the
digital numbers, and it accepts any subset of B02, B03, B04 and B08 (and B11 for a 10-channel model; missing
bands are replaced by the mean of the present ones and flagged).

The heat map is averaged over the eight mirrored and transposed versions of the image
(``tta=8``), local maxima above ``min_score`` become boxes (non-maximum suppression at IoU 0.2), and boxes with no open water
(NDWI > 0, large connected water bodies) within 4 pixels are dropped.

A second stage rescores the network's candidates (down to a network score of
:data:`RESCORE_LOW`): a small gradient-boosted tree ensemble (``models/vessels_rescore.json``,
trained by ``training/train_vessel_rescore.py`` on the leave-one-port-out candidates, evaluated with
numpy) over per-candidate features (:mod:`imgdiff.detect.vessel_features`: size in metres, contrast
against the surrounding water per band, NDWI/NDVI, water rings, whether the bright blob runs on
beyond the box, the length and straightness of the land edge beside it, texture) and the probability
that a small CNN gives the candidate's 32 x 32 px chip (:mod:`imgdiff.detect.vessel_chips`: a second look
trained on the candidates alone, ``models/vessels_chips.onnx``). Its vessel
probability is the detection score; ``rescore=False`` keeps the network's own score. The features
and the water mask read the bands without the path radiance of a top-of-atmosphere (L1C) or hazy
date (:func:`remove_haze`: whatever lifts the scene's darkest open water above that of the L2A
ports the rescorer was trained on).

Each detection is then measured on the image: the ship's pixels inside its box
give the centroid, length, width and axis heading; the offsets between the
band centroids, recorded a fraction of a second apart (B02, B08, B03, B04),
give the speed over ground and whether the ship is under way.

A classical baseline (NDWI water mask, NIR top-hat z-score, connected
components) is kept as ``method="classical"`` for comparison.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage as ndi

from ..errors import BandError, InputError, check_type
from ..scene import Scene
from ..zones import ZONES_HINT, Zones, assign_zones
from . import vessel_chips as vc
from . import vessel_features as vf
from .base import Detection, Detections, sorted_detections
from .onnx import load_network, run_session

#: Bands the network reads, in input order (the shipped 8-channel model: 4 bands + 4 presence flags).
MODEL_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B08")
#: Bands a model may read after :data:`MODEL_BANDS`, in input order (a 10-channel model reads B11 too).
EXTRA_BANDS: tuple[str, ...] = ("B11",)
#: Acquisition time of each 10 m band relative to B02, in seconds (MSI focal-plane layout).
BAND_TIME_S: dict[str, float] = {"B02": 0.0, "B08": 0.264, "B03": 0.527, "B04": 1.005}
#: Output stride of the network (heat-map cell = STRIDE x STRIDE input pixels).
STRIDE = 2
#: Input sides are padded to a multiple of this.
PAD_MULTIPLE = 8
#: Shipped model.
MODEL_PATH = Path(__file__).resolve().parent / "models" / "vessels.onnx"
#: Metres per second in one knot.
KNOT_MS = 0.514444
#: Default threshold of the network's own score when it runs alone (``rescore=False``, ``tta=8``): the best
#: pooled leave-one-port-out F1 with |count error| <= 15 % (``vessels.json``, key ``selected_network_alone``; the
#: fold networks of 2026-11-28, ``training/folds.py``).
NETWORK_MIN_SCORE = 0.29
#: Default threshold of the shipped pipeline (network + rescorer) on the rescored probability: the best
#: pooled nested leave-one-port-out F1 with |count error| <= 15 % (``vessels.json``, key ``selected``;
#: also ``threshold`` in the rescorer JSON).
CNN_MIN_SCORE = 0.26
#: The model card beside the weights: training settings and the leave-one-port-out tables.
#: The claims engine reads its measured precision and recall (key ``selected``) for confidences.
CARD_PATH = MODEL_PATH.with_suffix(".json")
#: Second-stage rescorer (gradient-boosted trees over per-candidate features, JSON, numpy at inference;
#: ``training/train_vessel_rescore.py``) and the network score above which candidates are rescored.
RESCORE_PATH = MODEL_PATH.with_name("vessels_rescore.json")
RESCORE_LOW = 0.05
#: Default score threshold of the classical baseline.
CLASSICAL_MIN_SCORE = 0.35
#: Tile side (input pixels) for large scenes, and the overlap between tiles.
TILE = 1536
TILE_OVERLAP = 96


@dataclass(frozen=True)
class VesselMaps:
    """Network outputs on the stride-2 grid.

    Attributes
    ----------
    heat : ndarray (rows/2, cols/2)
        Centre probability in [0, 1].
    offset : ndarray (2, rows/2, cols/2)
        Sub-cell centre offset (x, y) in cells.
    log_size : ndarray (2, rows/2, cols/2)
        Natural log of the box width and height (x, y) in input pixels.
    """

    heat: np.ndarray
    offset: np.ndarray
    log_size: np.ndarray


# --------------------------------------------------------------------------------------------
# input
# --------------------------------------------------------------------------------------------
def band_levels(band: np.ndarray) -> tuple[float, float] | None:
    """The levels :func:`normalise_band` scales a band by: its 1st and 99th percentiles.

    Parameters
    ----------
    band : ndarray
        Reflectance (any linear scaling), NaN where invalid; e.g. a decimated read of a
        whole tile, so that every window of it is normalised alike.

    Returns
    -------
    (low, reference) or None
        None when no pixel is valid and positive.
    """
    a = np.asarray(band, np.float32)
    vals = a[np.isfinite(a) & (a > 0)]
    if not vals.size:
        return None
    if vals.size > 200_000:
        vals = vals[:: vals.size // 200_000 + 1]
    lo, ref = np.percentile(vals, [1.0, 99.0])
    return float(lo), float(ref)


def normalise_band(band: np.ndarray, levels: tuple[float, float] | None = None) -> np.ndarray:
    """Scale-free version of one band: ``log(band / p99)`` with NaN filled as dark water.

    Parameters
    ----------
    band : ndarray (rows, cols)
        Reflectance (any linear scaling), NaN where invalid.
    levels : (low, reference), optional
        The band's 1st and 99th percentiles (:func:`band_levels`) measured on a larger
        area (a whole tile cut into windows); default those of ``band`` itself.

    Returns
    -------
    ndarray (rows, cols) float32
        About -4 (very dark) to 0.3 (brighter than the 99th percentile).
    """
    a = np.asarray(band, np.float32)
    ok = np.isfinite(a) & (a > 0)
    if levels is None:
        levels = band_levels(a) if ok.any() else None
    if levels is None:
        return np.full(a.shape, -4.0, np.float32)
    lo, ref = levels
    ref = max(float(ref), 1e-12)
    floor = max(float(lo), ref * 0.02)
    out = np.where(ok, a, floor)
    out = np.log(np.maximum(out, ref * 0.02) / ref)
    return out.astype(np.float32)


def vessel_input(scene: Scene, levels: dict[str, tuple[float, float]] | None = None,
                 bands: tuple[str, ...] = MODEL_BANDS) -> np.ndarray:
    """The network input of a scene.

    ``levels`` (band name -> (low, reference), :func:`band_levels`) replaces the scene's own
    percentiles for the bands it names (one normalisation for all windows of a large scene).
    ``bands`` are the bands the model reads, in input order (:func:`model_bands`); the first four
    are always B02, B03, B04, B08.

    Returns
    -------
    ndarray (2 * len(bands), rows, cols) float32
        Channels 0 to n-1: the normalised bands (a missing band is the mean of the present ones);
        channels n to 2n-1: 1 where the band is present, else 0 (n = ``len(bands)``, 4 or 5).

    Raises
    ------
    BandError
        If the scene has none of ``bands``.
    """
    present = [b for b in bands if b in scene.bands]
    if not present:
        raise BandError(
            f"vessel detection needs at least one of {', '.join(bands)}; the scene has "
            f"{', '.join(scene.bands) or 'no bands'}"
        )
    chans = {b: normalise_band(scene.bands[b], (levels or {}).get(b)) for b in present}
    fill = np.mean([chans[b] for b in present], axis=0).astype(np.float32)
    nb = len(bands)
    x = np.empty((2 * nb, *scene.shape), np.float32)
    for i, b in enumerate(bands):
        x[i] = chans.get(b, fill)
        x[nb + i] = 1.0 if b in chans else 0.0
    return x


def model_bands(model: str | Path | None = None) -> tuple[str, ...]:
    """The bands a vessel network reads, from its input channel count (two channels per band).

    8 channels: :data:`MODEL_BANDS` (B02 B03 B04 B08); 10 channels: those and B11.

    Raises
    ------
    InputError
        If the model file is missing, unreadable, or has another channel count.
    """
    path = Path(model) if model is not None else MODEL_PATH
    if not path.is_file():
        raise InputError(f"{path}: vessel model not found; reinstall imgdiff or run training/train_vessels.py")
    ch = load_network(path).get_inputs()[0].shape[1]
    options = {2 * (len(MODEL_BANDS) + k): MODEL_BANDS + EXTRA_BANDS[:k] for k in range(len(EXTRA_BANDS) + 1)}
    if ch not in options:
        raise InputError(f"{path}: vessel model has {ch} input channels; expected one of "
                         f"{', '.join(str(c) for c in sorted(options))}")
    return options[ch]


# --------------------------------------------------------------------------------------------
# network
# --------------------------------------------------------------------------------------------
#: Extra test-time passes: (flip rows, flip columns, transpose), in the order they are added.
_TTA_FLIPS: tuple[tuple[bool, bool, bool], ...] = (
    (False, True, False), (True, False, False), (True, True, False),
    (False, False, True), (False, True, True), (True, False, True), (True, True, True),
)


def _forward(net, tile: np.ndarray, tta: int) -> np.ndarray:
    """Raw network output (5, h/2, w/2) of one padded tile.

    With ``tta`` passes (2 to 8), the heat-map logits and sizes are averaged with those of the
    left-right, up-down and both mirrored tiles (2, 3, 4 passes), then of the transposed tile and its
    three mirrors (5 to 8 passes: the eight symmetries of the square); offsets come from the direct pass.
    """
    out = run_session(net, tile[None])[0].copy()
    transposed = None
    for fy, fx, tr in _TTA_FLIPS[: max(int(tta), 1) - 1]:
        if tr:
            # the transposed tile is made once (OpenCV's blocked transpose, about 3 x faster than
            # numpy's strided copy); a mirror before transposing is the other mirror after it
            if transposed is None:
                transposed = np.empty((tile.shape[0], tile.shape[2], tile.shape[1]), np.float32)
                for c in range(tile.shape[0]):
                    cv2.transpose(np.ascontiguousarray(tile[c], np.float32), dst=transposed[c])
            t = transposed[:, :, ::-1] if fy else transposed
            t = t[:, ::-1] if fx else t
        else:
            t = tile[:, ::-1] if fy else tile
            t = t[:, :, ::-1] if fx else t
        o = run_session(net, t[None])[0]
        o = o[[0, 2, 1, 4, 3]].transpose(0, 2, 1) if tr else o  # back to rows x cols, x/y channels swapped back
        o = o[:, ::-1] if fy else o
        o = o[:, :, ::-1] if fx else o
        out[0] += o[0]
        out[3:5] += o[3:5]
    n = min(max(int(tta), 1), len(_TTA_FLIPS) + 1)
    if n > 1:
        out[0] /= n
        out[3:5] /= n
    return out


def run_network(x: np.ndarray, model: str | Path | None = None, *, tta: int = 1) -> VesselMaps:
    """Run the vessel network on an input from :func:`vessel_input` (tiled when large).

    Parameters
    ----------
    x : ndarray (2 * bands, rows, cols)
        From :func:`vessel_input` with the model's bands (:func:`model_bands`).
    model : path, optional
        ONNX model; default the shipped one.
    tta : int
        Passes averaged, 1 to 8: 1 (image only), 2 (+ left-right mirror), 4 (+ up-down, both),
        8 (+ the transposed image and its mirrors).
    """
    path = Path(model) if model is not None else MODEL_PATH
    if not path.is_file():
        raise InputError(f"{path}: vessel model not found; reinstall imgdiff or run training/train_vessels.py")
    net = load_network(path)  # a broken model file fails here, with its name
    ch = net.get_inputs()[0].shape[1]
    if isinstance(ch, int) and ch != x.shape[0]:
        raise InputError(f"{path}: vessel model reads {ch} input channels, the input has {x.shape[0]} "
                         "(build it with vessel_input(scene, bands=model_bands(model)))")
    _, h, w = x.shape
    hh, wh = (h + 1) // STRIDE, (w + 1) // STRIDE
    heat = np.zeros((hh, wh), np.float32)
    offset = np.zeros((2, hh, wh), np.float32)
    log_size = np.zeros((2, hh, wh), np.float32)
    step = TILE - 2 * TILE_OVERLAP
    ys = list(range(0, max(h - TILE, 0) + step, step)) if h > TILE else [0]
    xs = list(range(0, max(w - TILE, 0) + step, step)) if w > TILE else [0]
    for y0 in ys:
        for x0 in xs:
            y1, x1 = min(y0 + TILE, h), min(x0 + TILE, w)
            tile = x[:, y0:y1, x0:x1]
            th, tw = tile.shape[1:]
            ph, pw = -th % PAD_MULTIPLE, -tw % PAD_MULTIPLE
            if ph or pw:
                tile = np.pad(tile, ((0, 0), (0, ph), (0, pw)), mode="reflect" if min(th, tw) > 8 else "edge")
            out = _forward(net, tile, tta)
            # keep the tile's interior (half the overlap from each shared edge)
            ky0 = 0 if y0 == 0 else TILE_OVERLAP
            kx0 = 0 if x0 == 0 else TILE_OVERLAP
            ky1 = th if y1 == h else th - TILE_OVERLAP
            kx1 = tw if x1 == w else tw - TILE_OVERLAP
            cy0, cy1 = (y0 + ky0) // STRIDE, (y0 + ky1 + 1) // STRIDE
            cx0, cx1 = (x0 + kx0) // STRIDE, (x0 + kx1 + 1) // STRIDE
            sy0, sx0 = cy0 - y0 // STRIDE, cx0 - x0 // STRIDE
            sl = (slice(sy0, sy0 + cy1 - cy0), slice(sx0, sx0 + cx1 - cx0))
            heat[cy0:cy1, cx0:cx1] = 1.0 / (1.0 + np.exp(-out[0][sl]))
            offset[:, cy0:cy1, cx0:cx1] = out[1:3][(slice(None), *sl)]
            log_size[:, cy0:cy1, cx0:cx1] = out[3:5][(slice(None), *sl)]
    return VesselMaps(heat, offset, log_size)


def decode_maps(maps: VesselMaps, *, min_score: float, shape: tuple[int, int],
                nms_iou: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and scores from the heat map: local maxima above ``min_score``, then box NMS.

    Returns
    -------
    boxes : ndarray (N, 4)
        Pixel-edge boxes [x0, y0, x1, y1] in input pixels, clipped to ``shape`` (rows, cols).
    scores : ndarray (N,)
    """
    heat = maps.heat
    peaks = (heat >= min_score) & (heat == ndi.maximum_filter(heat, size=3, mode="constant"))
    ry, rx = np.nonzero(peaks)
    scores = heat[ry, rx].astype(float)
    cx = (rx + np.clip(maps.offset[0, ry, rx], -0.5, 1.5)) * STRIDE
    cy = (ry + np.clip(maps.offset[1, ry, rx], -0.5, 1.5)) * STRIDE
    bw = np.exp(np.clip(maps.log_size[0, ry, rx], 0.0, 5.5))
    bh = np.exp(np.clip(maps.log_size[1, ry, rx], 0.0, 5.5))
    rows, cols = shape
    boxes = np.column_stack([
        np.clip(cx - bw / 2, 0, cols), np.clip(cy - bh / 2, 0, rows),
        np.clip(cx + bw / 2, 0, cols), np.clip(cy + bh / 2, 0, rows),
    ]).reshape(-1, 4)
    keep = _nms(boxes, scores, nms_iou)
    return boxes[keep], scores[keep]


def _nms(boxes: np.ndarray, scores: np.ndarray, iou_max: float) -> np.ndarray:
    from ..evaluate.detection import box_iou

    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    for i in order:
        if keep and np.max(box_iou(boxes[i:i + 1], boxes[keep])) > iou_max:
            continue
        keep.append(int(i))
    return np.array(keep, int)


#: Smallest connected body of open water (pixels; 20 ha at 10 m) :func:`water_mask` keeps: wet roofs,
#: shadows and ponds are not where ships lie.
MIN_WATER_BODY_PX = 2000


def water_mask(scene: Scene, *, min_area_px: int = MIN_WATER_BODY_PX, invalid_is_water: bool = True
               ) -> np.ndarray | None:
    """Open water by NDWI (B03 - B08) / (B03 + B08) > 0, invalid pixels counted as water.

    Only connected water bodies of at least ``min_area_px`` pixels are kept (wet roofs,
    shadows and ponds are not where ships lie).

    Scale-free (a ratio of two bands with one scaling). Small gaps (ships, buoys) are closed
    by the caller's distance test. None when B03 or B08 is missing. With ``invalid_is_water``
    False, invalid pixels (no data) are land: a no-data region then neither counts as water nor
    joins wet patches of land beside it into a water body (the rescorer's features read the mask
    with them as water, as it was trained; the rule that a vessel needs open water nearby without).
    """
    if "B03" not in scene.bands or "B08" not in scene.bands:
        return None
    g, n = scene.bands["B03"], scene.bands["B08"]
    with np.errstate(invalid="ignore", divide="ignore"):
        ndwi = (g - n) / (g + n)
    if invalid_is_water:
        water = ~np.isfinite(ndwi) | (ndwi > 0.0)
    else:
        water = np.isfinite(ndwi) & (ndwi > 0.0) & np.asarray(scene.valid, bool)
    water = water.astype(np.uint8)
    # opening by the 4-connected cross, outside the array counting as land (as
    # scipy.ndimage.binary_opening), then 4-connected bodies: OpenCV, several times faster
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    water = cv2.erode(water, cross, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    water = cv2.dilate(water, cross, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    _, lab, stats, _ = cv2.connectedComponentsWithStats(water, connectivity=4, ltype=cv2.CV_32S)
    big = stats[:, cv2.CC_STAT_AREA] >= min_area_px
    big[0] = False
    return big[lab]


def remove_haze(scene: Scene, water: np.ndarray | None, offsets: Mapping[str, float] | None = None
                ) -> tuple[Scene, np.ndarray | None]:
    """The scene without the path radiance of :func:`imgdiff.detect.vessel_features.haze_offsets`, and its
    open-water mask (:func:`water_mask`) recomputed from it.

    Path radiance lifts B03 more than B08, so it also lifts NDWI and the water mask takes in land;
    both the rescorer's features and the water mask read the bands without it. A scene with no
    offset (every L2A port the detector was trained on) is returned as it is, with ``water``.
    On a whole tile (``imgdiff detect`` window by window) the offsets are measured once on the whole
    scene and given to every window.

    Parameters
    ----------
    scene : Scene
        Reflectance.
    water : ndarray of bool or None
        :func:`water_mask` of ``scene`` (None: nothing to measure the darkest water on; returned as is).
    offsets : mapping, optional
        Band name -> offset (reflectance) measured on the whole scene when ``scene`` is one window of
        it (:func:`imgdiff.tiles.vessel_inputs`); default those of ``scene`` itself.
    """
    if offsets is None:
        if water is None:
            return scene, water
        offsets = vf.haze_offsets(scene.bands, water)
    if not any(offsets.values()):
        return scene, water
    bands = {b: (v - np.float32(offsets[b])).astype(np.float32) if offsets.get(b) else v
             for b, v in scene.bands.items()}
    clear = replace(scene, bands=bands, meta={**scene.meta, "haze_offsets": dict(offsets)})
    return clear, water_mask(clear)


def haze_free_chips(x: np.ndarray, scene: Scene, clear: Scene, boxes: np.ndarray,
                    levels: dict[str, tuple[float, float]] | None = None) -> np.ndarray:
    """The chips the chip classifier (:mod:`imgdiff.detect.vessel_chips`) reads around each candidate box.

    Cut from the network input ``x`` of ``scene`` (:func:`vessel_input`) when :func:`remove_haze` took nothing
    off (``clear`` is ``scene``); else cut from ``clear`` and normalised as :func:`vessel_input` would normalise
    it: the classifier was trained on L2A ports, and path radiance flattens the log-scaled input of dark water
    and hulls alike. ``levels`` (those of the whole scene, for a window of it) are moved down by the offsets
    taken off. Only the chips are normalised, not the whole scene.

    Returns
    -------
    ndarray (N, 4, CHIP_PX, CHIP_PX) float32
        B02 B03 B04 B08, as :func:`imgdiff.detect.vessel_chips.candidate_chips`.
    """
    if clear is scene:
        return vc.candidate_chips(x, boxes)
    off = clear.meta.get("haze_offsets", {})
    present = [b for b in MODEL_BANDS if b in clear.bands]
    raw = vc.candidate_chips(np.stack([clear.bands[b] if b in clear.bands else clear.bands[present[0]]
                                       for b in MODEL_BANDS]), boxes)
    chans = {}
    for i, b in enumerate(MODEL_BANDS):
        if b in present:
            lv = ((levels[b][0] - off.get(b, 0.0), levels[b][1] - off.get(b, 0.0)) if levels and b in levels
                  else band_levels(clear.bands[b]))
            chans[b] = normalise_band(raw[:, i], lv)
    fill = np.mean([chans[b] for b in present], axis=0)
    return np.stack([chans.get(b, fill) for b in MODEL_BANDS], axis=1).astype(np.float32)


#: Path radiance (reflectance, the largest band's) from which a scene's is worth telling a reader: 0 on the L2A
#: ports the detector was trained on, about 0.05 in B02 on top-of-atmosphere (L1C) scenes.
NOTABLE_PATH_RADIANCE = 0.01


def path_radiance_note(offsets: Mapping[str, float] | None) -> str | None:
    """``"B02 0.052, B03 0.037, ..."`` (reflectance) when the largest of ``offsets`` (:func:`path_radiance`)
    reaches :data:`NOTABLE_PATH_RADIANCE`, else None."""
    if not offsets or max(offsets.values()) < NOTABLE_PATH_RADIANCE:
        return None
    return ", ".join(f"{b} {x:.3f}" for b, x in offsets.items())


def path_radiance_record(offsets: Mapping[str, float] | None) -> dict[str, float] | None:
    """``offsets`` (:func:`path_radiance`, reflectance) as outputs record them: plain floats rounded to
    4 decimals (0.1 % reflectance, well below what the detector's figures can tell apart); None stays None."""
    return None if offsets is None else {b: round(float(x), 4) for b, x in offsets.items()}


def path_radiance(scene: Scene) -> dict[str, float]:
    """The path radiance :func:`detect_vessels` takes off ``scene`` before its rescorer scores vessels.

    :func:`imgdiff.detect.vessel_features.haze_offsets` over the scene's open water
    (:func:`water_mask`): band name -> reflectance by which the scene's darkest water lies above the
    darkest water of the L2A ports the detector was trained on. Every offset is 0 on a clear
    surface-reflectance scene; about 0.05 in B02 on a top-of-atmosphere (L1C) or hazy one. Empty when
    the scene has no B03 and B08 to find water with.
    """
    water = water_mask(scene)
    return {} if water is None else vf.haze_offsets(scene.bands, water)


def near_water(boxes: np.ndarray, water: np.ndarray, max_px: float) -> np.ndarray:
    """True for each box (pixel edges) with an open-water pixel within ``max_px`` pixels of it."""
    if not len(boxes):
        return np.zeros(0, bool)
    dist = ndi.distance_transform_edt(~water) if water.any() else np.full(water.shape, np.inf)
    rows, cols = water.shape
    keep = np.zeros(len(boxes), bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        c0, r0 = int(max(math.floor(x0), 0)), int(max(math.floor(y0), 0))
        c1, r1 = int(min(max(math.ceil(x1), c0 + 1), cols)), int(min(max(math.ceil(y1), r0 + 1), rows))
        keep[i] = dist[r0:r1, c0:c1].min() <= max_px if r1 > r0 and c1 > c0 else False
    return keep


# --------------------------------------------------------------------------------------------
# classical baseline
# --------------------------------------------------------------------------------------------
def classical_candidates(scene: Scene, *, z_min: float = 8.0, min_px: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Baseline: NDWI water mask, bright top-hat z-score inside water, connected components.

    Returns pixel-edge boxes (N, 4) and scores in [0, 1].
    """
    x = vessel_input(scene)
    bright = x[:4].mean(axis=0)
    if "B03" in scene.bands and "B08" in scene.bands:
        g, n = np.nan_to_num(scene.bands["B03"]), np.nan_to_num(scene.bands["B08"])
        ndwi = (g - n) / np.maximum(g + n, 1e-6)
        water = ndwi > 0.0
    else:
        water = bright < np.percentile(bright, 40)
    water = ndi.binary_opening(water, iterations=2)
    near = ndi.binary_dilation(water, iterations=3)
    tophat = cv2.morphologyEx(bright, cv2.MORPH_TOPHAT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (21, 21)))
    ref = tophat[water] if water.any() else tophat.ravel()
    med = float(np.median(ref))
    mad = float(np.median(np.abs(ref - med))) * 1.4826 + 1e-6
    z = (tophat - med) / mad
    cand = (z > z_min) & near
    lab, n = ndi.label(cand)
    boxes, scores = [], []
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None:
            continue
        m = lab[sl] == i
        if m.sum() < min_px:
            continue
        y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        if max(y1 - y0, x1 - x0) > 60:
            continue
        boxes.append((x0, y0, x1, y1))
        scores.append(1.0 - math.exp(-float(z[sl][m].max()) / (2 * z_min)))
    return np.array(boxes, float).reshape(-1, 4), np.array(scores, float)


# --------------------------------------------------------------------------------------------
# measuring each vessel
# --------------------------------------------------------------------------------------------
def _ship_mask(bright: np.ndarray, box: tuple[int, int, int, int], grow: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Pixels of the ship in a patch around the box: brighter than Otsu's split, component nearest the centre."""
    x0, y0, x1, y1 = box
    rows, cols = bright.shape
    px0, py0 = max(x0 - grow, 0), max(y0 - grow, 0)
    px1, py1 = min(x1 + grow, cols), min(y1 + grow, rows)
    patch = bright[py0:py1, px0:px1]
    if patch.size < 4 or np.ptp(patch) < 1e-6:
        return np.zeros(patch.shape, bool), (px0, py0)
    u8 = np.clip((patch - patch.min()) / np.ptp(patch) * 255, 0, 255).astype(np.uint8)
    t, _ = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    m = u8 > t
    inbox = np.zeros_like(m)
    inbox[y0 - py0:y1 - py0, x0 - px0:x1 - px0] = True
    m &= inbox
    lab, n = ndi.label(m)
    if n > 1:
        cy, cx = (y0 + y1) / 2 - py0, (x0 + x1) / 2 - px0
        best, best_d = 1, np.inf
        for i, (sy, sx) in enumerate(ndi.center_of_mass(m, lab, range(1, n + 1)), start=1):
            d = (sy - cy) ** 2 + (sx - cx) ** 2 - 0.5 * np.sum(lab == i)
            if d < best_d:
                best, best_d = i, d
        m = lab == best
    return m, (px0, py0)


#: A hull's length (and beam) from the standard deviation of its mask's pixels along that axis: sqrt(12), the
#: ratio for a rectangle (a hull seen from above; 4, the ratio for an ellipse, made every vessel about 15 %
#: longer). Measured 2026-11-28 on the 69 matched, clearly elongated, axis-aligned ships of the seven sen2ships
#: ports (shipped detector), the median ratio of the detected length to the labelled box's long side: 0.97
#: (IQR 0.88-1.01) with sqrt(12) against 1.12 (0.99-1.17) with 4; beam 0.82 against 0.94 (a 2-3 px wide
#: mask is narrower than its blurred label).
SIZE_FROM_SD = math.sqrt(12.0)


def _axes(mask: np.ndarray, psx: float, psy: float) -> tuple[float, float, float, tuple[float, float]]:
    """Length, width (m), axis heading (deg from up, clockwise, [0, 180)) and centroid (patch px) of a mask."""
    yy, xx = np.nonzero(mask)
    cx, cy = xx.mean() + 0.5, yy.mean() + 0.5
    if len(xx) < 3:
        return max(len(xx), 1) * psx, psy, math.nan, (cx, cy)
    dx, dy = (xx + 0.5 - cx) * psx, (yy + 0.5 - cy) * psy
    cov = np.cov(np.vstack([dx, dy]), bias=True) + np.eye(2) * (psx * psy / 12.0)  # the mask is all of the hull
    evals, evecs = np.linalg.eigh(cov)
    length = SIZE_FROM_SD * math.sqrt(max(evals[1], 0.0))
    width = SIZE_FROM_SD * math.sqrt(max(evals[0], 0.0))
    vx, vy = evecs[:, 1]
    heading = (math.degrees(math.atan2(vx, -vy)) + 360.0) % 180.0
    if length < 1.15 * width:
        heading = math.nan
    return length, width, heading, (cx, cy)


def band_displacement(scene: Scene, mask: np.ndarray, origin: tuple[int, int], grow: int = 2
                      ) -> tuple[float, float, float] | None:
    """Velocity of a target from its centroid in each 10 m band.

    Parameters
    ----------
    scene : Scene
    mask : ndarray of bool
        Ship pixels in a patch whose top-left pixel is ``origin`` (x, y).

    Returns
    -------
    (vx, vy, resid) or None
        Velocity in pixels per second (x = column, y = row) and the rms residual of the
        linear fit in pixels; None when fewer than two bands with distinct times exist.
    """
    bands = [b for b in BAND_TIME_S if b in scene.bands]
    if len(bands) < 2 or not mask.any():
        return None
    ox, oy = origin
    h, w = mask.shape
    support = ndi.binary_dilation(mask, iterations=grow)
    ring = ndi.binary_dilation(support, iterations=2) & ~support
    t, cxs, cys = [], [], []
    for b in bands:
        patch = np.nan_to_num(scene.bands[b][oy:oy + h, ox:ox + w], nan=0.0)
        bg = float(np.median(patch[ring])) if ring.any() else float(np.median(patch))
        wgt = np.clip(patch - bg, 0, None) * support
        s = wgt.sum()
        if s <= 0:
            continue
        yy, xx = np.mgrid[0:h, 0:w]
        t.append(BAND_TIME_S[b])
        cxs.append(float((wgt * xx).sum() / s))
        cys.append(float((wgt * yy).sum() / s))
    if len(set(t)) < 2:
        return None
    ta = np.array(t)
    a = np.column_stack([ta - ta.mean(), np.ones_like(ta)])
    (vx, bx), rx, *_ = np.linalg.lstsq(a, np.array(cxs), rcond=None)
    (vy, by), ry, *_ = np.linalg.lstsq(a, np.array(cys), rcond=None)
    fit = a @ np.array([[vx, vy], [bx, by]])
    resid = float(np.sqrt(np.mean((fit - np.column_stack([cxs, cys])) ** 2))) if len(t) > 2 else 0.0
    return float(vx), float(vy), resid


def open_water_mask(scene: Scene, water: np.ndarray | None) -> np.ndarray | None:
    """Water that is really seen: ``water`` (from :func:`water_mask`) with no data counted as land.

    The rules that ask for open water (a vessel needs water within ``water_px``; a vessel under way
    lies in open water) read this mask, so that no data beside land neither counts as water nor
    joins wet land beside it into a water body. On a scene without no data it is ``water`` itself.
    None when ``water`` is None.
    """
    if water is None:
        return None
    return water if np.asarray(scene.valid, bool).all() else water_mask(scene, invalid_is_water=False)


def measure_vessel(scene: Scene, bright: np.ndarray, box: tuple[float, float, float, float], score: float, *,
                   moving_kn: float = 6.0, water: np.ndarray | None = None) -> Detection:
    """A :class:`Detection` for one box: centroid, size, heading and motion measured on the image.

    A vessel counts as moving when its inter-band speed is at least ``moving_kn``, the centroids of
    three bands or more lie on a line, and it lies in open water (at least 80 % water in a 2-pixel ring
    around it): a ship alongside a quay is stationary. ``water`` should count no data as land
    (:func:`open_water_mask`): a ship beside a no-data edge is not known to lie in open water.
    Without a ``water`` mask (no B03 or B08) ``extra["open_water"]`` is None and no vessel counts
    as moving.
    """
    psx, psy = scene.pixel_size_m
    rows, cols = bright.shape
    ib = (int(math.floor(box[0])), int(math.floor(box[1])), int(math.ceil(box[2])), int(math.ceil(box[3])))
    ib = (max(ib[0], 0), max(ib[1], 0), min(max(ib[2], ib[0] + 1), cols), min(max(ib[3], ib[1] + 1), rows))
    mask, (ox, oy) = _ship_mask(bright, ib, grow=2)
    extra: dict = {"moving": False, "speed_kn": None}
    open_water: bool | None = None  # not measured without a water mask (B03 and B08)
    if water is not None and mask.any():
        h, w = mask.shape
        ring = ndi.binary_dilation(mask, iterations=3) & ~ndi.binary_dilation(mask, iterations=1)
        wpatch = water[oy:oy + h, ox:ox + w]
        open_water = bool(ring.any() and wpatch[ring].mean() >= 0.8)
    extra["open_water"] = open_water
    bw, bh = (box[2] - box[0]) * psx, (box[3] - box[1]) * psy
    if mask.sum() >= 2:
        length, width, heading, (mcx, mcy) = _axes(mask, psx, psy)
        centroid = (ox + mcx, oy + mcy)
        extra["size_from"] = "pixels"
    else:
        length, width, heading = max(bw, bh), min(bw, bh), math.nan
        centroid = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        extra["size_from"] = "box"
    if width > 0.45 * length or length > 1.2 * math.hypot(bw, bh):
        # a blob, not a hull (the mask took in quay or a neighbour): size from the box instead;
        # a near-square box holds a diagonal hull (length ~ its diagonal, beam ~ 1/6 of it)
        if max(bw, bh) >= 2 * min(bw, bh):
            length, width = max(bw, bh), min(bw, bh)
            heading = 0.0 if bh > bw else 90.0
        else:
            length, width, heading = 0.85 * math.hypot(bw, bh), 0.85 * math.hypot(bw, bh) / 6, math.nan
        extra["size_from"] = "box"
    vel = band_displacement(scene, mask, (ox, oy)) if mask.any() else None
    if vel is not None:
        vx, vy, resid = vel
        speed_ms = math.hypot(vx * psx, vy * psy)
        speed_kn = speed_ms / KNOT_MS
        # the inter-band shift as a speed, whatever its cause (a quay or a neighbour inside the mask
        # shifts it too); a speed only for a vessel judged under way
        extra["apparent_speed_kn"] = round(speed_kn, 1)
        extra["fit_residual_px"] = round(resid, 3)
        # a line through the band centroids is tested only with 3 timed bands or more (two always lie on one)
        timed = len({BAND_TIME_S[b] for b in BAND_TIME_S if b in scene.bands})
        moving = speed_kn >= moving_kn and resid < 0.35 and timed >= 3 and open_water is True
        extra["moving"] = bool(moving)
        if moving:
            extra["speed_kn"] = round(speed_kn, 1)
            extra["course_deg"] = round((math.degrees(math.atan2(vx * psx, -vy * psy)) + 360.0) % 360.0, 1)
    return Detection(
        box=tuple(float(v) for v in box), score=float(np.clip(score, 0.0, 1.0)), cls="vessel",
        length_m=float(length), width_m=float(width),
        heading_deg=float(extra.get("course_deg", heading)), centroid=(float(centroid[0]), float(centroid[1])),
        extra=extra,
    )


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def detect_vessels(
    scene: Scene,
    zones: Zones | None = None,
    *,
    min_score: float | None = None,
    method: str = "auto",
    model: str | Path | None = None,
    moving_kn: float = 6.0,
    min_length_m: float = 0.0,
    tta: int = 8,
    water_px: float | None = 4.0,
    levels: dict[str, tuple[float, float]] | None = None,
    rescore: bool = True,
    haze: Mapping[str, float] | None = None,
    rescorer: str | Path | None = None,
    chip_model: str | Path | None = None,
) -> Detections:
    """Detect vessels (at sea, at anchor, moored alongside quays, rafted) in a scene.

    Parameters
    ----------
    scene : Scene
        Any subset of B02, B03, B04, B08 (and B11 for a model that reads it, :func:`model_bands`) on a
        ~10 m grid, any linear scaling of reflectance.
    zones : Zones, optional
        Keep only vessels whose centroid lies in a zone, labelled with its name.
    min_score : float, optional
        Threshold in [0, 1] on the detection score: the rescored vessel probability (network +
        rescorer, default :data:`CNN_MIN_SCORE`), the network's centre probability with
        ``rescore=False`` (default :data:`NETWORK_MIN_SCORE`), or the baseline's score
        (:data:`CLASSICAL_MIN_SCORE`). The defaults are the best pooled leave-one-port-out F1
        with the count within 15 %.
    method : {"auto", "cnn", "classical"}
        ``"auto"``: the shipped network if present, else the classical baseline.
    model : path, optional
        ONNX model to use instead of the shipped one.
    moving_kn : float
        Speed in knots from the inter-band displacement above which a vessel counts as moving.
    min_length_m : float
        Drop vessels shorter than this (metres).
    tta : int
        Network passes averaged over mirrored/transposed images, 1 to 8 (time grows in proportion;
        the default threshold was chosen with 8).
    water_px : float or None
        Drop vessels with no open water (NDWI > 0, valid pixels: no-data is not water) within this
        many pixels of their box (needs B03 and B08; None: keep all).
    levels : dict, optional
        Band name -> (low, reference) input levels (:func:`band_levels`) measured on the whole
        scene, when ``scene`` is one window of it (:func:`imgdiff.tiles.detect_tiled`); default
        the levels of ``scene`` itself.
    rescore : bool
        With the network: rescore its candidates (network score >= :data:`RESCORE_LOW`) with the
        shipped second stage (:mod:`imgdiff.detect.vessel_features`, ``vessels_rescore.json``: size,
        contrast against the water, NDWI/NDVI, water rings, blob continuation, land edge, texture),
        whose probability becomes the score. False: the network's score alone. Ignored (network
        alone) when the rescorer file is absent.
    haze : mapping, optional
        Band name -> path radiance (reflectance) to take off before the rescorer reads the bands
        (:func:`remove_haze`), measured on the whole scene when ``scene`` is one window of it
        (:func:`imgdiff.tiles.vessel_inputs`); default measured on ``scene`` itself.
    rescorer : path, optional
        Rescorer JSON to use instead of the shipped one (:data:`RESCORE_PATH`), e.g. one trained
        without the port at hand (``training/train_vessel_rescore.py --write-folds``).
    chip_model : path, optional
        Chip classifier ONNX to use instead of the shipped one
        (:data:`imgdiff.detect.vessel_chips.CHIP_MODEL_PATH`), when the rescorer reads its probability.

    Returns
    -------
    Detections
        Class ``"vessel"``; pixel boxes on the scene grid, centroids (x = column, y = row),
        ``length_m``/``width_m`` in true ground metres, ``heading_deg`` clockwise from up
        (course if moving, else the hull axis in [0, 180)), ``extra["moving"]``, ``extra["speed_kn"]``
        (knots, for a moving vessel; None for a stationary one or where not measurable) and
        ``extra["apparent_speed_kn"]`` (the inter-band shift of the hull mask as a speed, also for a
        stationary vessel, where a quay or a neighbour in the mask makes it up), ``extra["open_water"]``
        (None without B03 and B08: not measured); with the rescorer, ``extra["network_score"]`` is the
        network's own centre probability.

    Raises
    ------
    ValueError
        An unknown ``method``; ``min_score`` outside [0, 1]; ``tta`` not 1 to 8; a negative ``water_px``
        or ``min_length_m``.
    """
    check_type(scene, Scene, "detect_vessels: scene", "read it with imgdiff.read_scene(path)")
    if min_score is not None and not 0.0 <= min_score <= 1.0:
        raise ValueError(f"detect_vessels: min_score must be in [0, 1], not {min_score!r}")
    whole = (not isinstance(tta, bool) and isinstance(tta, (int, float, np.integer, np.floating))
             and math.isfinite(tta) and float(tta).is_integer())
    if not (whole and 1 <= tta <= 8):
        raise ValueError(f"detect_vessels: tta must be 1 to 8 network passes, not {tta!r}")
    tta = int(tta)
    if (water_px is not None and not water_px >= 0) or not min_length_m >= 0:
        raise ValueError(f"detect_vessels: water_px and min_length_m must be >= 0, not {water_px!r} and {min_length_m!r}")
    if zones is not None:
        check_type(zones, Zones, "detect_vessels: zones", ZONES_HINT)
    if method not in ("auto", "cnn", "classical"):
        raise ValueError(f"method must be 'auto', 'cnn' or 'classical', not {method!r}")
    use_cnn = method == "cnn" or (method == "auto" and (model is not None or MODEL_PATH.is_file()))
    if rescorer is not None and not Path(rescorer).is_file():
        raise InputError(f"{rescorer}: vessel rescorer not found")
    rescorer_path = Path(rescorer) if rescorer is not None else RESCORE_PATH
    use_rescore = use_cnn and rescore and rescorer_path.is_file()
    if min_score is None:
        min_score = (CNN_MIN_SCORE if use_rescore else NETWORK_MIN_SCORE) if use_cnn else CLASSICAL_MIN_SCORE
    water = water_mask(scene)
    clear = scene
    net_scores = None
    if use_cnn:
        x = vessel_input(scene, levels, model_bands(model))
        maps = run_network(x, model, tta=tta)
        boxes, scores = decode_maps(maps, min_score=RESCORE_LOW if use_rescore else min_score, shape=scene.shape)
        bright = x[:4].mean(axis=0)
        if use_rescore:  # the rescorer reads the bands, the water mask NDWI, without path radiance
            clear, water = remove_haze(scene, water, haze)
        strict = open_water_mask(clear, water)
        if strict is not None and water_px is not None:
            keep = near_water(boxes, strict, water_px)
            boxes, scores = boxes[keep], scores[keep]
        if use_rescore:
            trees = vf.load_rescorer(rescorer_path)
            chip_p = (vc.chip_probability(haze_free_chips(x, scene, clear, boxes, levels), chip_model)
                      if "chip_probability" in trees["features"] else None)  # the second look, when read
            feats = vf.candidate_features(clear.bands, boxes, scores, maps.heat, water, scene.pixel_size_m,
                                          stride=STRIDE, chip_probability=chip_p)
            prob = vf.rescore(trees, feats)
            keep = prob >= min_score
            boxes, scores, net_scores = boxes[keep], prob[keep], scores[keep]
    else:
        boxes, scores = classical_candidates(scene)
        keep = scores >= min_score
        boxes, scores = boxes[keep], scores[keep]
        bright = vessel_input(scene, levels)[:4].mean(axis=0)
        strict = open_water_mask(clear, water)
    items = [measure_vessel(scene, bright, tuple(b), s, moving_kn=moving_kn, water=strict)
             for b, s in zip(boxes, scores)]
    if net_scores is not None:
        for d, s in zip(items, net_scores):
            d.extra["network_score"] = round(float(s), 4)
    if min_length_m > 0:
        items = [d for d in items if not d.length_m < min_length_m]
    dets = sorted_detections(items, scene.crs, scene.transform, scene.pixel_size_m)
    if zones is not None:
        dets = assign_zones(dets, zones, keep_outside=False)
    return dets
