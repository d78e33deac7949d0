"""Watch manifests: a site and its dated scenes, checked up front.

``read_manifest`` reads a YAML or CSV manifest into a :class:`Manifest` of :class:`SceneEntry`
(sorted by date) and refuses, in one line naming the file and the entry, anything that
would otherwise skip every scene later: unknown keys, bad dates, cloud fractions, bboxes,
bands, detectors, zones or ``max_shift``. ``resolve_detector`` turns a detector name into its function.
"""

from __future__ import annotations

import csv
import datetime as _dt
import importlib
import io
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..coregister import MAX_SHIFT_PX, parse_max_shift
from ..errors import InputError, check_type
from ..io.bands import parse_bands
from ..io.layout import one_line
from ..io.yamltext import load_yaml

log = logging.getLogger(__name__)

#: Detectors known by name; any other name must be ``"package.module:function"``.
DETECTORS: dict[str, str] = {
    "vessels": "imgdiff.detect.vessels:detect_vessels",
    "aircraft": "imgdiff.detect.aircraft:detect_aircraft",
}
#: Object class each named detector reports (rows with count 0 are written for it).
DETECTOR_CLASSES: dict[str, str] = {"vessels": "vessel", "aircraft": "aircraft"}


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
    max_shift : float
        The largest plausible shift of a scene against the reference, in pixels of the reference grid
        along either axis (the manifest's ``max_shift:``, default :data:`imgdiff.coregister.MAX_SHIFT_PX`;
        ``max_shift`` of :func:`imgdiff.watch.run_watch` and ``imgdiff watch --max-shift`` override it).
    stated : frozenset of str
        The site-wide keys the manifest file sets (a YAML manifest's, ``scenes`` aside; none for a CSV):
        a setting not among them holds its default (:func:`run_watch` warns of a ``max_shift:`` it
        does not use).
    """

    site: str
    scenes: tuple[SceneEntry, ...]
    zones: str | None = None
    detector: str = "vessels"
    reference: str | None = None
    bands: tuple[str, ...] | None = None
    bbox: tuple[float, float, float, float] | None = None
    source: str = ""
    max_shift: float = MAX_SHIFT_PX
    stated: frozenset[str] = frozenset()


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
MANIFEST_KEYS = ("site", "zones", "detector", "reference", "bands", "bbox", "max_shift", "scenes")
SCENE_KEYS = ("date", "path", "cloud_fraction")


def _unknown_keys(keys: Iterable[Any], known: Sequence[str], where: str) -> None:
    """Refuse a misspelt key (``zone:`` would silently count the whole scene); log the others
    (keys of the writer's own) as unused (:func:`imgdiff.keys.unused_keys`)."""
    from ..keys import unused_keys

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

    Numbers may be YAML numbers or numeric strings (``true`` is not a number); the four are then
    checked by the rules of every lon/lat bbox (:func:`imgdiff.io.georeferencing.lonlat_bbox_problem`).

    Raises
    ------
    InputError
        ``where`` (the manifest), ``bbox``, its value and the rule it breaks: not four numbers,
        longitude outside -180..180 or latitude outside -90..90, or west >= east, south >= north.
    """
    from ..io.georeferencing import lonlat_bbox_problem

    parts: list[Any] = value.replace(",", " ").split() if isinstance(value, str) else value
    nums = [_number(v) for v in parts] if isinstance(parts, (list, tuple)) else []
    bbox = tuple(float(v) for v in nums if v is not None) if len(nums) == 4 and None not in nums else ()
    problem = lonlat_bbox_problem(bbox, "bbox")
    if problem is not None:
        raise InputError(f"{where}: bbox {value!r}: {problem} (in YAML: bbox: [west, south, east, north])")
    w, s, e, n = bbox
    return (w, s, e, n)


def _site_zones(name: str) -> str | None:
    """The catalogue key when ``name`` is a site of :mod:`imgdiff.sites`, else None."""
    from ..sites import site_names

    key = name.strip().lower()
    return key if key in site_names() else None


def zones_geojson(spec: str) -> dict[str, Any]:
    """Zones as a GeoJSON FeatureCollection, from a zones file or the name of a catalogue site.

    Raises
    ------
    InputError
        No such file (and not a site name), or not valid zones.
    """
    from ..sites import get_site
    from ..zones import read_zones

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
        max_shift: 10                 # optional: largest plausible shift of a scene against the
                                      # reference (pixels, 0.5-50; default 5)
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
        detector, a missing zones file, ``max_shift`` not a number of pixels in 0.5-50.
    """
    check_type(path, (str, os.PathLike), "read_manifest: path", "the path of a YAML or CSV manifest")
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such manifest file")
    base = path.parent
    try:
        text = path.read_text(encoding="utf-8-sig")  # spreadsheets save "CSV UTF-8" with a byte-order mark
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the manifest ({e})") from None
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        import yaml

        try:
            doc = load_yaml(text) or {}
        except yaml.YAMLError as e:
            raise InputError(f"{path}: not valid YAML ({one_line(e)})") from None
        except ValueError as e:  # YAML's own date parsing: 2024-13-01
            raise InputError(f"{path}: bad value ({e}); write dates as YYYY-MM-DD") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("scenes"), list):
            raise InputError(f"{path}: a manifest needs a 'scenes:' list of {{date, path}} entries")
        _unknown_keys(doc, MANIFEST_KEYS, str(path))
        raw = doc["scenes"]
    elif path.suffix.lower() == ".csv":
        doc = {}
        reader = csv.DictReader(io.StringIO(text), skipinitialspace=True)  # "date, path": spaces after commas
        if reader.fieldnames:
            reader.fieldnames = [f.strip().lower() for f in reader.fieldnames]
        raw = list(reader)
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
                from ..sites import site_names

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
        max_shift=parse_max_shift(doc.get("max_shift", MAX_SHIFT_PX), str(path)),
        stated=frozenset(k for k in doc if k in MANIFEST_KEYS and k != "scenes"),
    )


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
