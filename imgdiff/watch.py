"""Time series of one site: many dated scenes -> counts per zone per date, and berth/stand occupancy.

The flow::

    manifest (YAML/CSV) ─► read_manifest ─► Manifest(scenes, zones, detector, reference)
    for each scene (a dask task, pure function of its inputs):
        read ─► align to the reference grid ─► co-register ─► detect ─► shift detections onto
        the reference ─► zones, cloud fraction per zone ─► SceneResult (JSON-ready dict)
    results ─► tidy table (date, zone, object class, count, cloud fraction, confidence)
            ─► slots (berths / stands: detections matched across dates) ─► occupancy per date
            ─► CSV, Parquet, timeline PNG, per-date GeoJSON, summary JSON

Each scene's result is cached under ``OUTDIR/.cache/<key>.json`` where the key is a hash
of the contents of its input files, of the reference scene, of the zones and of the
parameters: a rerun skips finished scenes, and an interrupted run resumes where it stopped.
A missing or corrupt scene becomes a row with ``status = "error"`` and its message; it
never stops the run.

Positions: every detection is expressed on the reference scene's grid (pixels x = column,
y = row, and map coordinates of the reference CRS), after removing the scene's shift
(a feature at reference pixel (x, y) appears at scene pixel (x + dx, y + dy)).
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import hashlib
import importlib
import io
import itertools
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import ImgdiffError, InputError
from .io.bands import parse_bands
from .io.write import atomic_path, check_outputs, write_json, write_outputs

log = logging.getLogger(__name__)

#: Detectors known by name; any other name must be ``"package.module:function"``.
DETECTORS: dict[str, str] = {
    "vessels": "imgdiff.detect.vessels:detect_vessels",
    "aircraft": "imgdiff.detect.aircraft:detect_aircraft",
}
#: Object class each named detector reports (rows with count 0 are written for it).
DETECTOR_CLASSES: dict[str, str] = {"vessels": "vessel", "aircraft": "aircraft"}
#: Files written into the output folder.
WATCH_OUTPUTS = ("counts.csv", "counts.parquet", "occupancy.csv", "timeline.png", "summary.json")
#: Zone name used when no zones are given (the whole reference grid).
WHOLE_SCENE = "scene"
#: Zone name for detections outside every zone.
OUTSIDE = "(outside zones)"
#: Zones with more than this fraction not assessed (cloud, no data) are drawn open in the timeline.
CLOUDY_ZONE = 0.2
#: Columns of the tidy table, in order.
COLUMNS = ("date", "scene", "zone", "object_class", "count", "cloud_fraction", "confidence", "mean_score",
           "shift_dx_px", "shift_dy_px", "shift_reliability", "status", "error", "source")


# --------------------------------------------------------------------------- manifest
@dataclass(frozen=True)
class SceneEntry:
    """One dated scene of a manifest.

    Attributes
    ----------
    id : str
        Unique name of the scene in the run (its date, with ``_2``, ``_3`` ... for repeats).
    date : datetime.date
    path : str
        Anything :func:`imgdiff.read_scene` reads (absolute, or relative to the manifest).
    cloud_fraction : float or None
        Cloud fraction stated by the manifest (e.g. from the product metadata), in [0, 1].
    """

    id: str
    date: _dt.date
    path: str
    cloud_fraction: float | None = None


@dataclass(frozen=True)
class Manifest:
    """A site and its dated scenes.

    Attributes
    ----------
    site : str
        A label (the manifest's ``site:``, else its file name).
    scenes : tuple of SceneEntry
        Sorted by date.
    zones : str or None
        GeoJSON file of named zones, or the name of a site of :mod:`imgdiff.sites` (a manifest
        whose ``site:`` is a catalogue site and that has no ``zones:`` gets that site's zones).
    detector : str
        ``"vessels"``, ``"aircraft"`` or ``"package.module:function"``.
    reference : str or None
        Scene id, date (ISO) or path of the reference scene; default the first scene.
    bands : tuple of str or None
    bbox : (west, south, east, north) or None
        Lon/lat window to read from every scene.
    source : str
        The manifest file.
    """

    site: str
    scenes: tuple[SceneEntry, ...]
    zones: str | None = None
    detector: str = "vessels"
    reference: str | None = None
    bands: tuple[str, ...] | None = None
    bbox: tuple[float, float, float, float] | None = None
    source: str = ""


def _parse_date(value: Any, where: str) -> _dt.date:
    if isinstance(value, _dt.datetime):
        return value.date()
    if isinstance(value, _dt.date):
        return value
    try:
        return _dt.date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise InputError(f"{where}: {value!r} is not a date; write dates as YYYY-MM-DD") from None


def _resolve(base: Path, p: Any) -> str:
    q = Path(str(p)).expanduser()
    return str(q if q.is_absolute() else (base / q))


#: Keys of a YAML manifest, and of one scene entry (YAML mapping or CSV column).
MANIFEST_KEYS = ("site", "zones", "detector", "reference", "bands", "bbox", "scenes")
SCENE_KEYS = ("date", "path", "cloud_fraction")


def _unknown_keys(keys: Iterable[Any], known: Sequence[str], where: str) -> None:
    """Refuse a misspelt key (``zone:`` would silently count the whole scene); log the others
    (keys of the writer's own) as unused (:func:`imgdiff.keys.unused_keys`)."""
    from .keys import unused_keys

    unused = unused_keys(keys, known, where)
    if unused:
        log.warning("%s: key(s) not used by imgdiff: %s", where, ", ".join(unused))


def _number(value: Any) -> float | None:
    """A finite float from a YAML number or a numeric string, else None (``True`` is not a number)."""
    if isinstance(value, bool):
        return None
    try:
        v = float(str(value).strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def parse_cloud_fraction(value: Any, where: str) -> float | None:
    """A manifest's ``cloud_fraction``: a number in [0, 1], or None when empty.

    Raises
    ------
    InputError
        Not a number, or outside 0-1 (``where`` names the manifest and the scene).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    v = _number(value)
    if v is None or not 0.0 <= v <= 1.0:
        raise InputError(f"{where}: cloud_fraction {value!r} is not a number in 0-1 (a fraction: 0.05 = 5 %)")
    return v


def parse_bbox(value: Any, where: str) -> tuple[float, float, float, float]:
    """A manifest's ``bbox``: ``[west, south, east, north]`` or ``"W,S,E,N"`` in lon/lat degrees.

    Raises
    ------
    InputError
        Not four numbers, longitude outside -180-180 or latitude outside -90-90, or
        west >= east, south >= north.
    """
    parts: list[Any] = value.replace(",", " ").split() if isinstance(value, str) else value
    nums = [_number(v) for v in parts] if isinstance(parts, (list, tuple)) else []
    if len(nums) != 4 or any(v is None for v in nums):
        raise InputError(f"{where}: bbox {value!r} is not four numbers; write bbox: [west, south, east, north] "
                         "in lon/lat degrees")
    from .io.read import in_lonlat_range

    w, s, e, n = (float(v) for v in nums)  # type: ignore[arg-type]
    if not in_lonlat_range((w, s, e, n)):
        raise InputError(f"{where}: bbox {value!r} is outside lon/lat (longitude -180-180, latitude -90-90); "
                         "write bbox: [west, south, east, north] in degrees")
    if not (w < e and s < n):
        raise InputError(f"{where}: bbox {value!r} needs west < east and south < north "
                         "([west, south, east, north] in degrees)")
    return (w, s, e, n)


def _site_zones(name: str) -> str | None:
    """The catalogue key when ``name`` is a site of :mod:`imgdiff.sites`, else None."""
    from .sites import site_names

    key = name.strip().lower()
    return key if key in site_names() else None


def zones_geojson(spec: str) -> dict[str, Any]:
    """Zones as a GeoJSON FeatureCollection, from a zones file or the name of a catalogue site.

    Raises
    ------
    InputError
        No such file (and not a site name), or not valid zones.
    """
    from .sites import get_site
    from .zones import read_zones

    p = Path(spec)
    if not p.exists() and not p.suffix and _site_zones(spec):
        return get_site(spec).to_geojson()
    read_zones(p)  # validates, with a message naming the file
    return json.loads(p.read_text(encoding="utf-8"))


def read_manifest(path: str | Path) -> Manifest:
    """Read and check a watch manifest.

    YAML (``.yaml``/``.yml``)::

        site: tartus
        zones: zones.geojson          # optional, named polygons (lon/lat)
        detector: vessels             # vessels | aircraft | package.module:function
        reference: 2024-01-05         # optional: a scene date or path (default: first scene)
        bands: [B02, B03, B04, B08]   # optional
        bbox: [35.86, 34.88, 35.90, 34.92]   # optional lon/lat window (or "W,S,E,N")
        scenes:
          - {date: 2024-01-05, path: scenes/20240105, cloud_fraction: 0.02}
          - {date: 2024-01-10, path: scenes/20240110}

    ``site:`` naming a site of the catalogue (:mod:`imgdiff.sites`: ``tartus``, ``hmeimim``)
    without ``zones:`` counts in that site's zones; any other site name is only a label.
    ``zones:`` may also name a catalogue site.

    CSV: a header with ``date`` and ``path`` (optional ``cloud_fraction``), one scene per
    row; site-wide settings then come from the command line. Relative paths are taken
    from the manifest's folder. A scene path that does not exist is not an error here: the
    run reports and skips that scene.

    Raises
    ------
    InputError
        One line naming the manifest, the scene entry where there is one, and the problem:
        missing or unreadable file, unknown key, no scenes, bad date, ``cloud_fraction``
        not a number in 0-1, ``bbox`` not four lon/lat numbers with west < east and
        south < north, a name in ``bands`` that is not a Sentinel-2 band, an unknown
        detector, a missing zones file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such manifest file")
    base = path.parent
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the manifest ({e})") from None
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        import yaml

        try:
            doc = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise InputError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
        except ValueError as e:  # YAML's own date parsing: 2024-13-01
            raise InputError(f"{path}: bad value ({e}); write dates as YYYY-MM-DD") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("scenes"), list):
            raise InputError(f"{path}: a manifest needs a 'scenes:' list of {{date, path}} entries")
        _unknown_keys(doc, MANIFEST_KEYS, str(path))
        raw = doc["scenes"]
    elif path.suffix.lower() == ".csv":
        doc = {}
        raw = list(csv.DictReader(io.StringIO(text)))
        if raw and not {"date", "path"} <= set(raw[0]):
            raise InputError(f"{path}: a CSV manifest needs the columns date,path (has {', '.join(map(str, raw[0]))})")
        if raw:
            _unknown_keys(raw[0], SCENE_KEYS, f"{path}: CSV header")
    else:
        raise InputError(f"{path}: unknown manifest type; use .yaml, .yml or .csv")
    if not raw:
        raise InputError(f"{path}: the manifest lists no scenes")
    entries = []
    for i, r in enumerate(raw, 1):
        where = f"{path}: scene {i}"
        if not isinstance(r, Mapping) or not r.get("path") or not r.get("date"):
            raise InputError(f"{where} needs a date and a path")
        where = f"{where} ({r['date']})"
        _unknown_keys((k for k in r if k is not None), SCENE_KEYS, where)
        if None in r:  # csv.DictReader: more cells than header columns
            raise InputError(f"{where}: more values than the header has columns")
        if not isinstance(r["path"], str):
            raise InputError(f"{where}: path {r['path']!r} is not a file or folder name")
        entries.append((_parse_date(r["date"], where), _resolve(base, r["path"]),
                        parse_cloud_fraction(r.get("cloud_fraction"), where)))
    entries.sort(key=lambda e: e[0])
    seen: dict[str, int] = {}
    scenes = []
    for d, p, cf in entries:
        k = d.isoformat()
        seen[k] = seen.get(k, 0) + 1
        scenes.append(SceneEntry(k if seen[k] == 1 else f"{k}_{seen[k]}", d, p, cf))
    site = str(doc["site"]).strip() if doc.get("site") is not None and str(doc["site"]).strip() else path.stem
    zones = None
    if doc.get("zones"):
        if not isinstance(doc["zones"], str):
            raise InputError(f"{path}: zones {doc['zones']!r} is not a file name or a site name")
        zones = _resolve(base, doc["zones"])
        if not Path(zones).exists():
            if Path(doc["zones"]).suffix or not _site_zones(doc["zones"]):
                from .sites import site_names

                raise InputError(f"{path}: zones: {zones}: no such zones file and not a known site "
                                 f"({', '.join(site_names())})")
            zones = _site_zones(doc["zones"])
    elif doc.get("site") is not None:
        zones = _site_zones(site)  # a catalogue site brings its zones; another name is a label
    detector = str(doc.get("detector") or "vessels").strip()
    try:
        resolve_detector(detector)
    except InputError as e:
        raise InputError(f"{path}: detector: {e}") from None
    return Manifest(
        site=site, scenes=tuple(scenes), zones=zones, detector=detector,
        reference=str(doc["reference"]) if doc.get("reference") is not None else None,
        bands=parse_bands(doc.get("bands"), str(path)),
        bbox=parse_bbox(doc["bbox"], str(path)) if doc.get("bbox") not in (None, "", []) else None,
        source=str(path),
    )


# --------------------------------------------------------------------------- parameters and keys
@dataclass(frozen=True)
class WatchParams:
    """Everything a scene task depends on besides the scene itself (all JSON-ready).

    Attributes
    ----------
    reference : str
        Path of the reference scene.
    detector : str
        Detector name or ``"package.module:function"``.
    zones : dict or None
        Zones as a GeoJSON FeatureCollection (lon/lat).
    bands : tuple of str or None
    bbox : (west, south, east, north) or None
    register : bool
        Co-register each scene to the reference.
    min_score : float or None
        Drop detections scoring below this (in [0, 1]).
    """

    reference: str
    detector: str = "vessels"
    zones: dict | None = None
    bands: tuple[str, ...] | None = None
    bbox: tuple[float, float, float, float] | None = None
    register: bool = True
    min_score: float | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)


def content_hash(path: str | Path, bands: Sequence[str] | None = None) -> str:
    """BLAKE2b hex digest of the contents of the files a scene is read from.

    Raises :class:`InputError` (missing path, unknown layout) like :func:`read_scene`.
    """
    from .io.read import find_band_sources

    sources = find_band_sources(path, bands)
    files = sorted({s.path for s in sources})
    for parent in files[0].parents:  # SAFE product metadata (date, offsets) is an input too
        mtd = sorted(parent.glob("MTD_MSIL*.xml"))
        if mtd or parent.suffix.upper() == ".SAFE" or parent == Path(path).parent:
            files += mtd[:1]
            break
    h = hashlib.blake2b(digest_size=20)
    for f in files:
        h.update(f.name.encode())
        try:
            with open(f, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
        except OSError as e:
            raise InputError(f"{f}: cannot read ({e.strerror})") from None
    return h.hexdigest()


def scene_key(entry: SceneEntry, params: WatchParams, reference_hash: str) -> str:
    """Cache key of one scene's result: hash of its contents, the reference, parameters and version."""
    h = hashlib.blake2b(digest_size=16)
    for part in (content_hash(entry.path, params.bands), reference_hash, params.to_json(), entry.date.isoformat(),
                 str(entry.cloud_fraction), __version__):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


# --------------------------------------------------------------------------- the task
def resolve_detector(name: str) -> Callable:
    """The detector function for a name (``vessels``, ``aircraft``) or ``package.module:function``."""
    target = DETECTORS.get(name, name)
    if ":" not in target:
        raise InputError(f"unknown detector {name!r}; use {', '.join(DETECTORS)} or package.module:function")
    mod, fn = target.split(":", 1)
    try:
        return getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as e:
        raise InputError(f"detector {name!r} cannot be loaded ({e})") from None


@lru_cache(maxsize=2)
def _reference_grid(path: str, bands: tuple[str, ...] | None, bbox: tuple | None) -> Any:
    """The reference's grid, once per worker process (every task of a run shares it)."""
    from .tiles import work_grid

    return work_grid(path, bands, bbox)


@lru_cache(maxsize=2)
def _reference_scene(path: str, bands: tuple[str, ...] | None, bbox: tuple | None) -> Any:
    from .io.read import read_scene

    return read_scene(path, bands=bands, bbox=bbox)


def _not_assessed(scene: Any) -> np.ndarray:
    """Pixels where an absence cannot be asserted: invalid, cloud or cloud shadow."""
    bad = ~scene.valid
    try:
        from .radiometry import cloud_mask

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
        ``score``, ``cls``, ``zone``, sizes in metres), ``not_assessed`` (packed mask).
    """
    t0 = time.perf_counter()
    base = {"id": entry.id, "date": entry.date.isoformat(), "path": entry.path, "status": "ok", "error": None}
    try:
        out = _process(entry, params)
    except (ImgdiffError, OSError, ValueError, KeyError) as e:
        return {**base, "status": "error", "error": " ".join(str(e).split()) or type(e).__name__}
    except Exception as e:  # a detector bug must not stop the other scenes
        log.exception("scene %s failed", entry.id)
        return {**base, "status": "error", "error": f"{type(e).__name__}: {' '.join(str(e).split())}"}
    return {**base, **out, "seconds": round(time.perf_counter() - t0, 3)}


#: A reference grid with more pixels than this is processed window by window.
TILED_ABOVE_PX = 4096 * 4096


def _process(entry: SceneEntry, params: WatchParams) -> dict[str, Any]:
    from dataclasses import replace

    from affine import Affine
    from rasterio.crs import CRS
    from rasterio.warp import transform as warp_transform

    from .grid import Grid
    from .zones import WGS84, assign_zones, placed, zone_masks, zones_from_geojson

    try:
        ref_grid = _reference_grid(params.reference, params.bands, params.bbox)
    except ImgdiffError as e:
        raise InputError(f"reference scene {params.reference}: {' '.join(str(e).split())}") from None
    if ref_grid.width * ref_grid.height > TILED_ABOVE_PX:
        dets, reg, note, bad, f = _observe_tiled(entry, params, ref_grid)
    else:
        dets, reg, note, bad, f = _observe(entry, params)
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
        "grid": {"crs": grid.crs.to_string() if grid.crs else None, "transform": list(grid.transform)[:6],
                 "width": grid.width, "height": grid.height},
        "not_assessed": pack_mask(bad, factor=f),
    }


def _observe(entry: SceneEntry, params: WatchParams) -> tuple[Any, Any, str | None, np.ndarray, int]:
    """A site-sized scene: read whole, align onto the reference, co-register, detect.

    Returns detections (scene pixels on the reference grid), registration, a note, the
    not-assessed mask and its reduction factor (1).
    """
    from rasterio.errors import RasterioError

    from .grid import Grid, align
    from .io.read import read_scene

    try:
        ref = _reference_scene(params.reference, params.bands, params.bbox)
    except (ImgdiffError, RasterioError) as e:
        raise InputError(f"reference scene {params.reference}: {' '.join(str(e).split())}") from None
    try:
        scene = read_scene(entry.path, bands=params.bands, bbox=params.bbox, date=entry.date)
    except RasterioError as e:
        raise InputError(f"{entry.path}: {' '.join(str(e).split())}") from None
    pair = align(ref, scene, grid=Grid.of(ref), bands=params.bands)
    reg, note = _register(entry, params, lambda: _coregister_pair(pair))
    dets = resolve_detector(params.detector)(pair.after)
    if params.min_score is not None:
        dets = dets.filter(min_score=params.min_score)
    return dets, reg, note, _not_assessed(pair.after), 1


def _coregister_pair(pair: Any) -> Any:
    from .coregister import coregister

    return coregister(pair.before, pair.after, mask=pair.overlap)


def _register(entry: SceneEntry, params: WatchParams, estimate: Callable[[], Any]) -> tuple[Any, str | None]:
    from .coregister import Registration
    from .errors import CoregistrationError

    if params.register and Path(entry.path).resolve() != Path(params.reference).resolve():
        try:
            return estimate(), None
        except CoregistrationError as e:
            return Registration(0.0, 0.0, 0.0, 0.0, float("nan"), 0.0, method="none"), f"not co-registered: {e}"
    return Registration(0.0, 0.0, 0.0, 0.0, 0.0, 1.0 if params.register else 0.0, method="reference"), None


def _observe_tiled(entry: SceneEntry, params: WatchParams, grid: Any) -> tuple[Any, Any, str | None, np.ndarray, int]:
    """A whole tile: shift from sample windows, detection and cloud mask window by window.

    Each window is read once onto the reference grid; a detection is kept by the window
    whose core holds its centre (:mod:`imgdiff.tiles`). The not-assessed mask is kept
    reduced (a cell of ``f`` x ``f`` pixels is not assessed if any pixel is).
    """
    from functools import partial

    from .detect.base import sorted_detections
    from .io.read import find_band_sources
    from .tiles import DETECT_OVERLAP, TILE_SIZE, StripReader, _shift_detection, estimate_on_samples, tile_grid

    names = list(params.bands) if params.bands else [s.name for s in find_band_sources(params.reference)]
    reg, note = _register(entry, params, lambda: estimate_on_samples(
        params.reference, entry.path, grid, names, register=True).registration)
    detector = resolve_detector(params.detector)
    if params.detector == "vessels":  # one input normalisation for every window, as for the whole scene
        from .tiles import vessel_levels

        detector = partial(detector, levels=vessel_levels(entry.path, params.bands, params.bbox))
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
    return sorted_detections(items, grid.crs, grid.transform, grid.pixel_size_m), reg, note, cells, f


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


# --------------------------------------------------------------------------- table
def tidy_rows(results: Sequence[Mapping[str, Any]], classes: Sequence[str]) -> list[dict[str, Any]]:
    """The tidy table: one row per scene x zone x object class (one row per failed scene).

    ``count`` is the number of detections whose centroid lies in the zone; ``cloud_fraction``
    the fraction of the zone's pixels that could not be assessed (cloud, shadow or no data);
    ``confidence`` = (1 - cloud_fraction) x mean score of the counted objects (1 when none):
    how far the count can be trusted, 1 meaning a clear zone and certain detections.
    """
    rows = []
    for r in results:
        common = {"date": r["date"], "scene": r["id"], "source": r["path"], "status": r["status"],
                  "error": r.get("error")}
        if r["status"] != "ok":
            rows.append({**common, "zone": None, "object_class": None, "count": None, "cloud_fraction": None,
                         "confidence": None, "mean_score": None, "shift_dx_px": None, "shift_dy_px": None,
                         "shift_reliability": None})
            continue
        reg = r["registration"]
        seen_classes = list(dict.fromkeys([*classes, *(d["cls"] for d in r["detections"])]))
        zones = list(r["zones"])
        if any(d["zone"] == OUTSIDE for d in r["detections"]):
            zones.append(OUTSIDE)
        for z in zones:
            cloud = r["zones"][z]["not_assessed"] if z in r["zones"] else None
            for c in seen_classes:
                ds = [d for d in r["detections"]  # nested zones: a detection counts in each holding it
                      if (d["zone"] == z or z in ((d.get("extra") or {}).get("zones") or ())) and d["cls"] == c]
                mean = float(np.mean([d["score"] for d in ds])) if ds else None
                conf = (1.0 - (cloud or 0.0)) * (mean if mean is not None else 1.0)
                rows.append({**common, "zone": z, "object_class": c, "count": len(ds),
                             "cloud_fraction": cloud, "confidence": round(conf, 4),
                             "mean_score": round(mean, 4) if mean is not None else None,
                             "shift_dx_px": reg.get("dx"), "shift_dy_px": reg.get("dy"),
                             "shift_reliability": reg.get("reliability")})
    return [{k: row.get(k) for k in COLUMNS} for row in rows]


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """Write rows as CSV (empty cells for None)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(columns))
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r.get(k) is None else r.get(k) for k in columns})


def write_parquet(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write the tidy table as Parquet with a fixed schema (date as a date32 column)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([
        ("date", pa.date32()), ("scene", pa.string()), ("zone", pa.string()), ("object_class", pa.string()),
        ("count", pa.int64()), ("cloud_fraction", pa.float64()), ("confidence", pa.float64()),
        ("mean_score", pa.float64()), ("shift_dx_px", pa.float64()), ("shift_dy_px", pa.float64()),
        ("shift_reliability", pa.float64()), ("status", pa.string()), ("error", pa.string()),
        ("source", pa.string()),
    ])
    data = [{**r, "date": _dt.date.fromisoformat(r["date"])} for r in rows]
    pq.write_table(pa.Table.from_pylist(data, schema=schema), path)


# --------------------------------------------------------------------------- tracking
@dataclass(frozen=True)
class Slot:
    """A place objects occupy across dates (a berth, a stand), found by matching detections.

    Attributes
    ----------
    id : str
    cls : str
        Object class.
    zone : str
    x, y : float
        Mean position in pixels of the reference grid (x = column, y = row).
    states : Mapping[str, str]
        Scene id -> ``"occupied"``, ``"vacant"`` or ``"unknown"`` (cloud, no data, failed scene).
    """

    id: str
    cls: str
    zone: str
    x: float
    y: float
    states: Mapping[str, str] = field(default_factory=dict)


def track_slots(results: Sequence[Mapping[str, Any]], *, radius_px: float = 3.0) -> list[Slot]:
    """Match detections across dates into slots and give each slot's state on each date.

    Dates are taken in order; each date's detections of one class are matched one-to-one
    (Hungarian, distance <= ``radius_px`` pixels of the reference grid) to the slots seen so
    far, whose positions are the running mean of their matches; unmatched detections open
    new slots. A slot is ``vacant`` on a date when nothing matched it and its pixel was
    assessed (clear sky, valid data), ``unknown`` otherwise.
    """
    from scipy.optimize import linear_sum_assignment

    ok = [r for r in results if r["status"] == "ok"]
    slots: list[dict[str, Any]] = []
    for r in ok:
        for cls in sorted({d["cls"] for d in r["detections"]}):
            dets = [d for d in r["detections"] if d["cls"] == cls]
            cand = [i for i, s in enumerate(slots) if s["cls"] == cls]
            matched: dict[int, int] = {}
            if cand and dets:
                p = np.array([d["centroid"] for d in dets])
                q = np.array([[slots[i]["sx"] / slots[i]["n"], slots[i]["sy"] / slots[i]["n"]] for i in cand])
                dist = np.hypot(p[:, None, 0] - q[None, :, 0], p[:, None, 1] - q[None, :, 1])
                cost = np.where(dist <= radius_px, dist, 1e9)
                for a, b in zip(*linear_sum_assignment(cost)):
                    if dist[a, b] <= radius_px:
                        matched[a] = cand[b]
            for k, d in enumerate(dets):
                if k in matched:
                    s = slots[matched[k]]
                else:
                    s = {"cls": cls, "zone": d["zone"], "sx": 0.0, "sy": 0.0, "n": 0, "seen": set()}
                    slots.append(s)
                s["sx"] += d["centroid"][0]
                s["sy"] += d["centroid"][1]
                s["n"] += 1
                s["seen"].add(r["id"])
    out = []
    masks = {r["id"]: unpack_mask(r["not_assessed"]) for r in ok if r.get("not_assessed")}
    for i, s in enumerate(sorted(slots, key=lambda s: (s["cls"], s["zone"], s["sy"] / s["n"], s["sx"] / s["n"]))):
        x, y = s["sx"] / s["n"], s["sy"] / s["n"]
        states = {}
        for r in results:
            if r["id"] in s["seen"]:
                states[r["id"]] = "occupied"
            elif r["status"] != "ok" or r["id"] not in masks:
                states[r["id"]] = "unknown"
            else:
                cells, f = masks[r["id"]]
                cy, cx = int(y // f), int(x // f)
                inside = 0 <= cy < cells.shape[0] and 0 <= cx < cells.shape[1]
                states[r["id"]] = "vacant" if inside and not cells[cy, cx] else "unknown"
        out.append(Slot(f"{s['cls']}-{i + 1:03d}", s["cls"], s["zone"], x, y, states))
    return out


def slot_runs(slot: Slot, order: Sequence[str]) -> dict[str, Any]:
    """Summary of one slot over the scenes in ``order``: counts, runs of occupancy, last state.

    A run is a maximal sequence of ``occupied`` dates not interrupted by a ``vacant`` one
    (``unknown`` dates neither extend nor break it).
    """
    runs, cur = [], []
    for sid in order:
        st = slot.states.get(sid, "unknown")
        if st == "occupied":
            cur.append(sid)
        elif st == "vacant" and cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    known = [(sid, slot.states[sid]) for sid in order if slot.states.get(sid, "unknown") != "unknown"]
    longest = max(runs, key=len) if runs else []
    return {
        "occupied": sum(st == "occupied" for st in slot.states.values()),
        "vacant": sum(st == "vacant" for st in slot.states.values()),
        "unknown": sum(st == "unknown" for st in slot.states.values()),
        "runs": [{"first": r[0], "last": r[-1], "dates": len(r)} for r in runs],
        "longest_run": {"first": longest[0], "last": longest[-1], "dates": len(longest)} if longest else None,
        "last_assessed": {"scene": known[-1][0], "state": known[-1][1]} if known else None,
    }


def occupancy_rows(slots: Sequence[Slot], results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Tidy occupancy table: one row per slot x scene."""
    from affine import Affine

    rows = []
    grid = next((r["grid"] for r in results if r["status"] == "ok"), None)
    tr = Affine(*grid["transform"]) if grid else None
    for s in slots:
        mx, my = tr * (s.x, s.y) if tr else (None, None)
        for r in results:
            rows.append({"slot": s.id, "object_class": s.cls, "zone": s.zone, "x_px": round(s.x, 2),
                         "y_px": round(s.y, 2), "map_x": mx, "map_y": my, "date": r["date"], "scene": r["id"],
                         "state": s.states.get(r["id"], "unknown")})
    return rows


OCCUPANCY_COLUMNS = ("slot", "object_class", "zone", "x_px", "y_px", "map_x", "map_y", "date", "scene", "state")


# --------------------------------------------------------------------------- plots and GeoJSON
def plot_timeline(path: str | Path, rows: Sequence[Mapping[str, Any]], slots: Sequence[Slot],
                  results: Sequence[Mapping[str, Any]], title: str = "") -> None:
    """Occupancy timeline PNG: counts per zone and class over dates (top), slot x date states (bottom)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    dates = [_dt.date.fromisoformat(r["date"]) for r in results]
    n_slots = len(slots)
    fig = Figure(figsize=(10, 4 + min(8, 0.18 * n_slots)), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(2, 1, sharex=False, gridspec_kw={"height_ratios": [1, max(1, min(3, n_slots / 12))]})
    series: dict[tuple[str, str], list[tuple[_dt.date, int, float]]] = {}
    for r in rows:
        if r["status"] == "ok":
            series.setdefault((r["zone"], r["object_class"]), []).append(
                (_dt.date.fromisoformat(r["date"]), r["count"], r["cloud_fraction"] or 0.0))
    for (z, c), pts in sorted(series.items()):
        pts.sort()
        (line,) = ax1.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=f"{z}: {c}")
        hidden = [p for p in pts if p[2] > CLOUDY_ZONE]
        if hidden:  # counts of zones mostly hidden by cloud: open markers
            ax1.plot([p[0] for p in hidden], [p[1] for p in hidden], ls="none", marker="o", ms=7, mfc="white",
                     mec=line.get_color())
    for r in results:
        if r["status"] != "ok":
            ax1.axvline(_dt.date.fromisoformat(r["date"]), color="red", lw=0.8, ls=":")
    ax1.set_ylabel("objects counted")
    ax1.set_title((title or "counts per zone") + f" (open: zone > {CLOUDY_ZONE:.0%} cloud; red dotted: scene failed)",
                  fontsize=10)
    if series:
        ax1.legend(fontsize=7, loc="upper left", ncol=2)
    code = {"unknown": 0, "vacant": 1, "occupied": 2}
    if n_slots:
        m = np.array([[code[s.states.get(r["id"], "unknown")] for r in results] for s in slots])
        ax2.imshow(m, aspect="auto", interpolation="nearest", vmin=0, vmax=2,
                   cmap=ListedColormap(["#d0d0d0", "#ffffff", "#1f4e9c"]))
        if n_slots <= 60:
            ax2.set_yticks(range(n_slots))
            ax2.set_yticklabels([f"{s.id} ({s.zone})" for s in slots], fontsize=6)
        else:
            ax2.set_ylabel(f"{n_slots} slots")
        step = max(1, len(dates) // 12)
        ax2.set_xticks(range(0, len(dates), step))
        ax2.set_xticklabels([dates[i].isoformat() for i in range(0, len(dates), step)], rotation=45, fontsize=7,
                            ha="right")
        ax2.set_title("slot occupancy (blue occupied, white vacant, grey unknown)", fontsize=9)
    else:
        ax2.text(0.5, 0.5, "no objects detected on any date", ha="center", va="center")
        ax2.set_axis_off()
    fig.subplots_adjust(left=0.12, right=0.98, top=0.95, bottom=0.12, hspace=0.35)
    fig.savefig(path, format="png")


def result_detections(result: Mapping[str, Any]) -> Any:
    """A scene result's detections as :class:`~imgdiff.detect.base.Detections` on the reference grid."""
    from affine import Affine
    from rasterio.crs import CRS

    from .detect.base import Detection, Detections

    g = result["grid"]
    crs = CRS.from_user_input(g["crs"]) if g["crs"] else None
    nan = float("nan")
    items = tuple(
        Detection(box=tuple(d["box"]), score=d["score"], cls=d["cls"], zone=d["zone"],
                  length_m=nan if d["length_m"] is None else d["length_m"],
                  width_m=nan if d["width_m"] is None else d["width_m"],
                  heading_deg=nan if d["heading_deg"] is None else d["heading_deg"],
                  centroid=tuple(d["centroid"]), extra={**d.get("extra", {}), "date": result["date"]})
        for d in result["detections"]
    )
    return Detections(items, crs, Affine(*g["transform"]))


def detections_geojson(result: Mapping[str, Any]) -> dict[str, Any]:
    """One scene's detections as GeoJSON, in the layout of ``imgdiff detect``
    (:func:`imgdiff.io.geojson.detections_to_geojson`): boxes as polygons in the reference
    scene's CRS, named in a ``crs`` member, positions already co-registered to the reference."""
    from .io.geojson import detections_to_geojson

    return detections_to_geojson(result_detections(result))


# --------------------------------------------------------------------------- the run
@dataclass(frozen=True)
class WatchResult:
    """What :func:`run_watch` did.

    Attributes
    ----------
    results : tuple of dict
        One per scene, in date order (see :func:`process_scene`).
    rows : tuple of dict
        The tidy table.
    slots : tuple of Slot
    summary : dict
        Also written as ``summary.json``.
    """

    results: tuple[dict, ...]
    rows: tuple[dict, ...]
    slots: tuple[Slot, ...]
    summary: dict


def pick_reference(manifest: Manifest, reference: str | None = None) -> str:
    """Path of the reference scene: a scene id, date or path given, else the first scene."""
    ref = reference or manifest.reference
    if ref is None:
        return manifest.scenes[0].path
    for s in manifest.scenes:
        if ref in (s.id, s.date.isoformat(), s.path):
            return s.path
    p = Path(ref)
    if not p.is_absolute() and manifest.source:
        p = Path(manifest.source).parent / p
    if p.exists():
        return str(p)
    raise InputError(f"{manifest.source}: reference {ref!r} is neither a scene of the manifest nor a path")


def run_watch(
    manifest: Manifest,
    outdir: str | Path,
    *,
    reference: str | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    processes: bool = True,
    register: bool = True,
    min_score: float | None = None,
    radius_px: float = 3.0,
    overwrite: bool = False,
    on_scene: Callable[[dict[str, Any], bool], None] | None = None,
) -> WatchResult:
    """Process every scene of a manifest on dask and write the tables, plot and detections.

    Parameters
    ----------
    manifest : Manifest
    outdir : str or Path
        Output folder (see :data:`WATCH_OUTPUTS`; also ``detections/<scene>.geojson`` and
        the cache ``.cache/``).
    reference : str, optional
        Scene id, date or path of the reference; default the manifest's, else the first scene.
    scheduler : str, optional
        Address of a running dask scheduler (``tcp://host:8786``); ``"synchronous"`` runs
        the tasks one by one in this process (tests, debugging); default a new
        ``LocalCluster`` of ``workers`` single-threaded workers.
    workers : int, optional
        Workers of the local cluster (single-threaded each); default one per core this process
        may use (:func:`usable_cores`).
    processes : bool
        Local workers as processes (default) or threads of this process.
    register : bool
        Co-register each scene to the reference.
    min_score : float, optional
        Drop detections below this score.
    radius_px : float
        Largest distance, in reference pixels, between detections of one slot on two dates.
    overwrite : bool
        Replace the outputs of a finished run (cached scene results are reused either way).
    on_scene : callable, optional
        ``on_scene(result, cached)`` as each scene finishes (progress bars).

    Returns
    -------
    WatchResult

    Raises
    ------
    InputError
        Before anything is written: bad zones, unknown detector, a reference scene that
        cannot be read, lacks the bands, or that the bbox misses.
    OutputError
        Outputs of a finished run exist and ``overwrite`` is False.
    """
    from rasterio.errors import RasterioError

    # Everything the whole run depends on is checked before anything is written: a bad
    # setting is one error line, not every scene skipped.
    check_outputs(outdir, WATCH_OUTPUTS, overwrite, create=False)
    zones = zones_geojson(manifest.zones) if manifest.zones else None
    resolve_detector(manifest.detector)  # fail early on an unknown detector
    ref_path = pick_reference(manifest, reference)
    params = WatchParams(reference=ref_path, detector=manifest.detector, zones=zones, bands=manifest.bands,
                         bbox=manifest.bbox, register=register, min_score=min_score)
    try:
        ref_hash = content_hash(ref_path, manifest.bands)
        _reference_grid(ref_path, manifest.bands, manifest.bbox)  # its bands, and the bbox on it
    except (ImgdiffError, RasterioError) as e:
        raise InputError(f"reference scene {ref_path}: {' '.join(str(e).split())}") from None
    out = check_outputs(outdir, WATCH_OUTPUTS, overwrite)
    cache = out / ".cache"
    cache.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    results: dict[str, dict] = {}
    counts = {"cached": 0, "computed": 0}

    def pending() -> Iterator[tuple[SceneEntry, str]]:
        """Scenes still to compute, as their keys come in; cached and unreadable scenes are recorded here."""
        for entry, key, error in _scene_keys(manifest.scenes, params, ref_hash):
            if key is None:
                results[entry.id] = {"id": entry.id, "date": entry.date.isoformat(), "path": entry.path,
                                     "status": "error", "error": error}
                if on_scene:
                    on_scene(results[entry.id], False)
                continue
            hit = cache / f"{key}.json"
            if hit.is_file():
                try:
                    results[entry.id] = json.loads(hit.read_text(encoding="utf-8"))
                    counts["cached"] += 1
                    if on_scene:
                        on_scene(results[entry.id], True)
                    continue
                except ValueError:
                    hit.unlink()
            counts["computed"] += 1
            yield entry, key

    def done(entry_key: tuple[SceneEntry, str], res: dict) -> None:
        entry, key = entry_key
        results[entry.id] = res
        if res["status"] == "ok":
            with atomic_path(cache / f"{key}.json") as p:
                write_json(p, res)
        if on_scene:
            on_scene(res, False)

    closing: list[threading.Thread] = []  # a local cluster shuts down while the tables are written
    try:
        engine = _run_tasks(pending(), params, done, scheduler=scheduler, workers=workers or usable_cores(),
                            processes=processes, closing=closing)
        ordered = tuple(results[s.id] for s in manifest.scenes)
        default_cls = DETECTOR_CLASSES.get(manifest.detector)
        rows = tuple(tidy_rows(ordered, [default_cls] if default_cls else []))
        slots = tuple(track_slots(ordered, radius_px=radius_px))
        order = [r["id"] for r in ordered]
        summary = {
            "imgdiff_version": __version__, "site": manifest.site, "manifest": manifest.source,
            "reference": ref_path, "detector": manifest.detector, "engine": engine,
            "scenes": [{"id": r["id"], "date": r["date"], "path": r["path"], "status": r["status"], "error": r.get("error"),
                        "detections": len(r.get("detections", [])), "seconds": r.get("seconds")} for r in ordered],
            "scenes_ok": sum(r["status"] == "ok" for r in ordered),
            "scenes_failed": sum(r["status"] != "ok" for r in ordered),
            "scenes_cached": counts["cached"],
            "scenes_computed": counts["computed"],
            "slots": [{"id": s.id, "object_class": s.cls, "zone": s.zone, "x_px": s.x, "y_px": s.y,
                       **slot_runs(s, order)} for s in slots],
            "seconds": round(time.perf_counter() - t0, 3),
        }
        det_dir = out / "detections"
        det_dir.mkdir(exist_ok=True)
        for r in ordered:
            if r["status"] == "ok":
                with atomic_path(det_dir / f"{r['id']}.geojson") as p:
                    p.write_text(json.dumps(detections_geojson(r), separators=(",", ":")) + "\n", encoding="utf-8")
        occ = occupancy_rows(slots, ordered)
        write_outputs(out, {
            "counts.csv": lambda p: write_csv(p, rows, COLUMNS),
            "counts.parquet": lambda p: write_parquet(p, rows),
            "occupancy.csv": lambda p: write_csv(p, occ, OCCUPANCY_COLUMNS),
            "timeline.png": lambda p: plot_timeline(p, rows, slots, ordered, title=f"{manifest.site}: objects per zone"),
            "summary.json": lambda p: write_json(p, summary),
        })
        return WatchResult(ordered, rows, slots, summary)
    finally:
        for t in closing:
            t.join()


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the system reports it)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _one_thread_per_worker() -> None:
    """Run in each worker process of a local cluster: one core each.

    OpenCV and the BLAS thread pools would otherwise start one thread per core in every
    worker (2 workers x 2 threads on 2 cores). The environment variables only reach
    libraries loaded later; threadpoolctl changes the pools already loaded (numpy's BLAS).
    """
    import os

    import cv2
    from threadpoolctl import threadpool_limits

    cv2.setNumThreads(1)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    threadpool_limits(1)  # applies now and stays (not used as a context manager)


#: dask settings for the local cluster: no statistical profiler sampling the task thread (it takes
#: the GIL every 10 ms; with one core per worker, that time is taken from the task), and fewer
#: housekeeping wake-ups (event-loop tick every 20 ms, system monitor every 0.5 s, memory monitor
#: every 0.1 s by default, in every worker, nanny and the scheduler): each wake-up preempts a task
#: when the workers fill the cores (``watch`` benchmark, 2 workers on 2 cores: ~2,500 involuntary
#: context switches per worker and run, 1,700 with these settings, run 6.8 -> 6.6 s). The memory
#: monitor still checks each worker's memory every second.
_LOCAL_CLUSTER_CONFIG: dict[str, Any] = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
}


#: glibc allocator settings of local workers (see :func:`_worker_environ`): temporaries up to
#: 32 MiB (the largest mmap threshold glibc accepts) come from the heap, and up to 128 MiB of
#: freed heap is kept for the next scene instead of being handed back to the system.
WORKER_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(128 * 2**20)}


def _worker_environ() -> dict[str, Any]:
    """Environment of local worker processes: dask's defaults, with glibc's heap kept warm.

    A worker runs one short scene after another, each allocating and freeing the same
    numpy temporaries. dask sets ``MALLOC_TRIM_THRESHOLD_=65536`` in its workers to hand freed
    memory back to the system; that also turns off glibc's adaptive mmap threshold, so every
    temporary above 128 KiB is mapped afresh and page-faulted in (one 384 px scene of the
    ``watch`` benchmark: 0.48 s instead of 0.36 s). Even glibc's defaults fault the tasks'
    temporaries in again and again (tasks run in a worker thread, whose arena is trimmed
    eagerly): about 20,000 page faults per 384 px scene. :data:`WORKER_MALLOC_ENV` keeps those
    temporaries in the heap: one worker runs the 50-scene benchmark's tasks 9-11 % faster
    (384 px chips: 11.9 -> 10.5 s; 768 px: 41.8 -> 37.5 s). A worker holds at most 128 MiB of
    freed memory beyond its peak. The single-thread settings (``OMP_NUM_THREADS`` ...) stay.
    """
    import dask
    import distributed  # noqa: F401  (registers distributed's configuration defaults)

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    env.update(WORKER_MALLOC_ENV)
    return env


#: Threads that compute the scenes' cache keys ahead of the tasks (file reads and hashlib release the GIL).
KEY_THREADS = 2


def _scene_keys(entries: Sequence[SceneEntry], params: WatchParams, ref_hash: str,
                threads: int = KEY_THREADS) -> Iterator[tuple[SceneEntry, str | None, str | None]]:
    """``(entry, cache key, None)`` or ``(entry, None, error)`` for each scene, in manifest order.

    The keys hash every input file (:func:`content_hash`): a few threads compute them ahead,
    so that hashing overlaps with starting the cluster and with the first scenes' work instead
    of delaying both.
    """
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="imgdiff-key")
    try:
        futures = [pool.submit(scene_key, e, params, ref_hash) for e in entries]
        for entry, f in zip(entries, futures):
            try:
                yield entry, f.result(), None
            except (ImgdiffError, OSError) as e:
                yield entry, None, " ".join(str(e).split())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _run_tasks(todo: Iterable[tuple[SceneEntry, str]], params: WatchParams,
               done: Callable[[tuple[SceneEntry, str], dict], None], *, scheduler: str | None, workers: int,
               processes: bool, closing: list[threading.Thread] | None = None) -> dict[str, Any]:
    """Run :func:`process_scene` over ``todo`` on dask; call ``done`` in this thread as each finishes.

    ``todo`` may be a lazy iterator: the engine starts with its first item and each further
    item is submitted as it comes. With ``closing`` (a list), a run that finished shuts its
    client and local cluster down in a thread appended to it (the caller joins it once its
    own work is done); an interrupted run shuts them down before returning.
    """
    items = iter(todo)
    if scheduler == "synchronous":
        for item in items:
            done(item, process_scene(item[0], params))
        return {"scheduler": "synchronous", "workers": 1}
    first = next(items, None)
    if first is None:
        return {"scheduler": scheduler or "none (all cached)", "workers": 0}
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    finished_all = False
    if scheduler:
        client = Client(scheduler)
    else:
        import dask

        with dask.config.set(_LOCAL_CLUSTER_CONFIG | {"distributed.nanny.pre-spawn-environ": _worker_environ()}):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes,
                                   dashboard_address=None)
        client = Client(cluster)
    try:
        if cluster is not None and processes:
            # one core per worker, however many: dask already starts its workers with
            # OMP_NUM_THREADS=1; OpenCV's own thread pool ignores that and is capped here.
            client.run(_one_thread_per_worker)
        n_workers = len(client.scheduler_info().get("workers", {}))
        futures = {}
        finished = as_completed()
        for entry, key in itertools.chain([first], items):
            f = client.submit(process_scene, entry, params, key=f"imgdiff-watch-{key}", pure=True)
            futures[f] = (entry, key)
            finished.add(f)
        for f in finished:
            entry, key = futures[f]
            try:
                res = f.result()
            except Exception as e:  # a worker died or the task could not run
                res = {"id": entry.id, "date": entry.date.isoformat(), "path": entry.path, "status": "error",
                       "error": f"task failed: {type(e).__name__}: {' '.join(str(e).split())}"}
            done((entry, key), res)
        finished_all = True
        if scheduler:
            return {"scheduler": scheduler, "workers": n_workers}
        return {"scheduler": "LocalCluster", "workers": n_workers, "processes": processes}
    finally:
        if finished_all and closing is not None:
            closing.append(threading.Thread(target=_shut_down, args=(client, cluster), name="imgdiff-dask-close"))
            closing[-1].start()
        else:
            _shut_down(client, cluster)


def _shut_down(client: Any, cluster: Any) -> None:
    client.close()
    if cluster is not None:
        cluster.close()


__all__ = [
    "COLUMNS", "DETECTORS", "Manifest", "SceneEntry", "Slot", "WatchParams", "WatchResult", "content_hash",
    "detections_geojson", "occupancy_rows", "parse_bands", "parse_bbox", "parse_cloud_fraction", "pick_reference",
    "plot_timeline", "process_scene", "read_manifest", "resolve_detector", "run_watch", "scene_key", "slot_runs",
    "tidy_rows", "track_slots", "usable_cores", "write_parquet", "zones_geojson",
]
