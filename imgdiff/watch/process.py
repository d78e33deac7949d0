"""The task of one dated scene: read, align, co-register, detect, count per zone.

``process_scene`` is a pure function of a :class:`~imgdiff.watch.manifest.SceneEntry` and the
:class:`~imgdiff.watch.cache.WatchParams` (and the files they name), run as a dask task; it
returns a JSON-ready dict and never raises on bad data. A reference grid larger than
:data:`TILED_ABOVE_PX` is processed window by window (:mod:`imgdiff.tiles`).

Positions: every detection is expressed on the reference scene's grid (pixels x = column,
y = row, and map coordinates of the reference CRS), after removing the scene's shift
(a feature at reference pixel (x, y) appears at scene pixel (x + dx, y + dy)).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImgdiffError, InputError
from ..io.layout import one_line
from .cache import WatchParams
from .manifest import SceneEntry, resolve_detector

log = logging.getLogger(__name__)

#: Zone name used when no zones are given (the whole reference grid).
WHOLE_SCENE = "scene"
#: Zone name for detections outside every zone.
OUTSIDE = "(outside zones)"


@lru_cache(maxsize=2)
def _reference_grid(path: str, bands: tuple[str, ...] | None, bbox: tuple | None) -> Any:
    """The reference's grid, once per worker process (every task of a run shares it)."""
    from ..tiles import work_grid

    return work_grid(path, bands, bbox)


@lru_cache(maxsize=2)
def _reference_scene(path: str, bands: tuple[str, ...] | None, bbox: tuple | None) -> Any:
    from ..io.read import read_scene

    return read_scene(path, bands=bands, bbox=bbox)


def _not_assessed(scene: Any) -> np.ndarray:
    """Pixels where an absence cannot be asserted: invalid, cloud or cloud shadow."""
    bad = ~scene.valid
    try:
        from ..radiometry import cloud_mask

        bad = bad | cloud_mask(scene)
    except (ImportError, ImgdiffError, KeyError, ValueError) as e:  # bands missing for the cloud test
        log.debug("no cloud mask: %s", e)
    return bad


def reduce_mask(mask: np.ndarray, f: int) -> np.ndarray:
    """A boolean mask reduced by ``f`` on both axes: a cell is True if any of its pixels is."""
    if f == 1:
        return mask
    h, w = math.ceil(mask.shape[0] / f), math.ceil(mask.shape[1] / f)
    padded = np.zeros((h * f, w * f), bool)
    padded[: mask.shape[0], : mask.shape[1]] = mask
    return padded.reshape(h, f, w, f).any(axis=(1, 3))


def pack_mask(mask: np.ndarray, max_cells: int = 256, *, factor: int = 1) -> dict[str, Any]:
    """A boolean mask reduced to at most ``max_cells`` per side and packed as base64 bits.

    ``factor`` is the reduction the mask already had (pixels per cell side).
    """
    f = max(1, math.ceil(max(mask.shape) / max_cells))
    small = reduce_mask(mask, f)
    return {"factor": f * factor, "shape": list(small.shape),
            "bits": base64.b64encode(np.packbits(small).tobytes()).decode()}


def unpack_mask(packed: Mapping[str, Any]) -> tuple[np.ndarray, int]:
    """(cells, factor) from :func:`pack_mask`; pixel (x, y) is cell (y // factor, x // factor)."""
    h, w = packed["shape"]
    bits = np.unpackbits(np.frombuffer(base64.b64decode(packed["bits"]), np.uint8))[: h * w]
    return bits.reshape(h, w).astype(bool), int(packed["factor"])


def process_scene(entry: SceneEntry, params: WatchParams) -> dict[str, Any]:
    """Detect and count the objects of one dated scene, on the reference grid.

    A pure function of its arguments (and the files they name): safe to run as a dask task,
    anywhere, any number of times. Data problems never raise: they come back as
    ``{"status": "error", "error": message}``.

    Returns
    -------
    dict
        JSON-ready: ``id``, ``date``, ``path``, ``status``, ``error``, ``registration``
        (dx, dy in pixels; dx_m, dy_m in metres), ``cloud_fraction`` (whole grid),
        ``zones`` (name -> pixels, not-assessed fraction), ``detections`` (on the reference
        grid: pixel ``box``/``centroid``, map ``x``/``y`` in ``crs``, ``lon``/``lat``,
        ``score``, ``cls``, ``zone``, sizes in metres), ``not_assessed`` (packed mask),
        ``path_radiance`` (band -> reflectance the vessel detector took off the scene; None for aircraft).
    """
    t0 = time.perf_counter()
    base = {"id": entry.id, "date": entry.date.isoformat(), "path": entry.path, "status": "ok", "error": None}
    try:
        out = _process(entry, params)
    except (ImgdiffError, OSError, ValueError, KeyError) as e:
        return {**base, "status": "error", "error": one_line(e) or type(e).__name__}
    except Exception as e:  # a detector bug must not stop the other scenes
        log.exception("scene %s failed", entry.id)
        return {**base, "status": "error", "error": f"{type(e).__name__}: {one_line(e)}"}
    return {**base, **out, "seconds": round(time.perf_counter() - t0, 3)}


#: A reference grid with more pixels than this is processed window by window.
TILED_ABOVE_PX = 4096 * 4096


def _process(entry: SceneEntry, params: WatchParams) -> dict[str, Any]:
    from dataclasses import replace

    from affine import Affine
    from rasterio.crs import CRS
    from rasterio.warp import transform as warp_transform

    from ..detect.vessels import path_radiance_record
    from ..grid import Grid
    from ..zones import WGS84, assign_zones, placed, zone_masks, zones_from_geojson

    try:
        ref_grid = _reference_grid(params.reference, params.bands, params.bbox)
    except ImgdiffError as e:
        raise InputError(f"reference scene {params.reference}: {one_line(e)}") from None
    if ref_grid.width * ref_grid.height > TILED_ABOVE_PX:
        dets, reg, note, bad, f, haze = _observe_tiled(entry, params, ref_grid)
    else:
        dets, reg, note, bad, f, haze = _observe(entry, params)
    grid = ref_grid
    # Detections were found on the scene's pixels: move them onto the reference (subtract the shift).
    moved = []
    for d in dets:
        x0, y0, x1, y1 = d.box
        c = d.center
        moved.append(replace(d, box=(x0 - reg.dx, y0 - reg.dy, x1 - reg.dx, y1 - reg.dy),
                             centroid=(c[0] - reg.dx, c[1] - reg.dy), zone=None))
    dets = replace(dets, items=tuple(moved), crs=grid.crs, transform=grid.transform)
    cells = Grid(grid.crs, grid.transform * Affine.scale(f), bad.shape[1], bad.shape[0])
    if params.zones:
        named = (params.zones.get("crs") or {}).get("properties", {}).get("name")
        zones = placed(zones_from_geojson(params.zones, crs=CRS.from_user_input(named) if named else WGS84),
                       grid.crs, where=entry.path)
        dets = assign_zones(dets, zones)
        masks = zone_masks(zones, cells.crs, cells.transform, cells.shape)
    else:
        masks = {WHOLE_SCENE: np.ones(cells.shape, bool)}
        dets = replace(dets, items=tuple(replace(d, zone=WHOLE_SCENE) for d in dets))
    zinfo = {n: {"pixels": int(m.sum()) * f * f, "not_assessed": float(bad[m].mean()) if m.any() else 1.0}
             for n, m in masks.items()}
    centres = dets.map_centers()
    lonlat = (None, None)
    if len(centres) and grid.crs is not None:
        lonlat = warp_transform(grid.crs, "EPSG:4326", list(centres[:, 0]), list(centres[:, 1]))
    items = []
    for i, d in enumerate(dets):
        items.append({
            "box": [float(v) for v in d.box], "centroid": [float(v) for v in d.center],
            "x": float(centres[i, 0]), "y": float(centres[i, 1]),
            "lon": float(lonlat[0][i]) if lonlat[0] is not None else None,
            "lat": float(lonlat[1][i]) if lonlat[1] is not None else None,
            "score": float(d.score), "cls": d.cls, "zone": d.zone if d.zone is not None else OUTSIDE,
            "length_m": _num(d.length_m), "width_m": _num(d.width_m), "heading_deg": _num(d.heading_deg),
            "extra": json.loads(json.dumps(d.extra, default=_json_default)),
        })
    reg_d = {k: _num(v) if isinstance(v, float) else v for k, v in reg.to_dict().items()}
    reg_d["note"] = note
    cloud = entry.cloud_fraction if entry.cloud_fraction is not None else float(bad.mean())
    return {
        "registration": reg_d, "cloud_fraction": cloud, "cloud_source": "manifest" if entry.cloud_fraction is not None
        else "cloud mask", "zones": zinfo, "detections": items,
        "path_radiance": path_radiance_record(haze),
        "grid": {"crs": grid.crs.to_string() if grid.crs else None, "transform": list(grid.transform)[:6],
                 "width": grid.width, "height": grid.height},
        "not_assessed": pack_mask(bad, factor=f),
    }


def _observe(entry: SceneEntry, params: WatchParams) -> tuple[Any, Any, str | None, np.ndarray, int, dict | None]:
    """A site-sized scene: read whole, align onto the reference, co-register, detect.

    Returns detections (scene pixels on the reference grid), registration, a note, the
    not-assessed mask, its reduction factor (1) and, for vessels, the path radiance the detector
    took off the scene (:func:`imgdiff.detect.vessels.path_radiance`; None for aircraft).
    """
    from rasterio.errors import RasterioError

    from ..grid import Grid, align
    from ..io.read import read_scene

    try:
        ref = _reference_scene(params.reference, params.bands, params.bbox)
    except (ImgdiffError, RasterioError) as e:
        raise InputError(f"reference scene {params.reference}: {one_line(e)}") from None
    try:
        scene = read_scene(entry.path, bands=params.bands, bbox=params.bbox, date=entry.date)
    except RasterioError as e:
        raise InputError(f"{entry.path}: {one_line(e)}") from None
    pair = align(ref, scene, grid=Grid.of(ref), bands=params.bands)
    reg, note = _register(entry, params, lambda: _coregister_pair(pair, params.max_shift))
    detector, haze = resolve_detector(params.detector), None
    if params.detector == "vessels":  # measured once: the path radiance reported is the one taken off
        from functools import partial

        from ..detect.vessels import path_radiance

        haze = path_radiance(pair.after)
        detector = partial(detector, haze=haze)
    dets = detector(pair.after)
    if params.min_score is not None:
        dets = dets.filter(min_score=params.min_score)
    return dets, reg, note, _not_assessed(pair.after), 1, haze


def _coregister_pair(pair: Any, max_shift: float) -> Any:
    from ..compare import register_pair  # clouds left out when they get in the way

    return register_pair(pair, max_shift=max_shift)


def _register(entry: SceneEntry, params: WatchParams, estimate: Callable[[], Any]) -> tuple[Any, str | None]:
    from ..coregister import Registration
    from ..errors import CoregistrationError

    if params.register and Path(entry.path).resolve() != Path(params.reference).resolve():
        try:
            return estimate(), None
        except CoregistrationError as e:
            return (Registration(0.0, 0.0, 0.0, 0.0, float("nan"), 0.0, method="none", max_shift_px=params.max_shift),
                    f"not co-registered: {e}")
    return Registration(0.0, 0.0, 0.0, 0.0, 0.0, 1.0 if params.register else 0.0, method="reference"), None


def _observe_tiled(entry: SceneEntry, params: WatchParams, grid: Any
                   ) -> tuple[Any, Any, str | None, np.ndarray, int, dict | None]:
    """A whole tile: shift from sample windows, detection and cloud mask window by window (returns
    as :func:`_observe`; the path radiance is measured once for the scene, :func:`imgdiff.tiles.vessel_inputs`).

    Each window is read once onto the reference grid; a detection is kept by the window
    whose core holds its centre (:mod:`imgdiff.tiles`). The not-assessed mask is kept
    reduced (a cell of ``f`` x ``f`` pixels is not assessed if any pixel is).
    """
    from functools import partial

    from ..detect.base import sorted_detections
    from ..io.read import find_band_sources
    from ..tiles import DETECT_OVERLAP, TILE_SIZE, StripReader, _shift_detection, estimate_on_samples, tile_grid

    names = list(params.bands) if params.bands else [s.name for s in find_band_sources(params.reference)]
    reg, note = _register(entry, params, lambda: estimate_on_samples(
        params.reference, entry.path, grid, names, register=True, max_shift=params.max_shift).registration)
    detector = resolve_detector(params.detector)
    haze = None
    if params.detector == "vessels":  # one input normalisation and haze offset for every window, as for the whole scene
        from ..tiles import vessel_inputs

        levels, haze = vessel_inputs(entry.path, params.bands, params.bbox)
        detector = partial(detector, levels=levels, haze=haze)
    f = max(1, math.ceil(max(grid.shape) / 1024))
    cells = np.ones((math.ceil(grid.height / f), math.ceil(grid.width / f)), bool)
    items = []
    with StripReader(entry.path, grid, params.bands) as reader:  # each compressed block decoded once
        for tile in tile_grid(grid.shape, TILE_SIZE - TILE_SIZE % f, DETECT_OVERLAP):
            scene = reader.read(tile.read)
            if scene is None:
                continue
            ox, oy = tile.read[0], tile.read[1]
            for d in detector(scene):
                cx, cy = d.center
                if tile.holds(cx + ox, cy + oy) and (params.min_score is None or d.score >= params.min_score):
                    items.append(_shift_detection(d, ox, oy))
            rows, cols = tile.core_slices
            x0, y0, x1, y1 = tile.core
            core_bad = reduce_mask(_not_assessed(scene)[rows, cols], f)
            cells[y0 // f:y0 // f + core_bad.shape[0], x0 // f:x0 // f + core_bad.shape[1]] = core_bad
    return sorted_detections(items, grid.crs, grid.transform, grid.pixel_size_m), reg, note, cells, f, haze


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
