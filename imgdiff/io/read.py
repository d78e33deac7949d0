"""Reading Sentinel-2 scenes from the layouts users actually have.

Supported layouts
-----------------
* a folder of single-band files named by band: ``B02.tif``, ``*_B02.tif``,
  ``*_B02_10m.jp2``, Copernicus Browser exports ``..._Sentinel-2_L2A_B02_(Raw).tiff``;
* a SAFE product or granule (``GRANULE/*/IMG_DATA/[R10m/]*_B02[_10m].jp2``), with
  its ``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml`` read for date, baseline and offsets;
* one multi-band GeoTIFF/COG whose band descriptions name the bands, or any
  multi-band file with an explicit band list.

All bands are brought onto the grid of the finest band read (10 m for Sentinel-2),
bilinearly for coarser bands, and converted from digital numbers to float32
reflectance with NaN for no-data.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window

from ..errors import BandError, EmptySceneError, GridError, InputError, NoOverlapError
from ..scene import BAND_RESOLUTION_M, Scene, band_sort_key
from .bands import band_from_filename, normalise_band_name

#: Products acquired from this date on carry the +1000 DN offset (processing baseline 04.00).
BASELINE_04_DATE = _dt.date(2022, 1, 25)
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")
#: Reflectance x 65535: the scaling of Copernicus Browser "Raw" band exports.
RAW_EXPORT_SCALE = 1.0 / 65535.0
#: Integer bands whose 99th percentile (the highest over the bands) exceeds this many DN cannot be
#: reflectance x 10000 (2.0, brighter than any cloud or snow); without a name or metadata saying otherwise
#: they are read as reflectance x 65535. Measured: the highest band p99 is 2,200-4,800 DN on the ten
#: OSCD pairs and the aircraft_s2sim chips (x 10000), 24,500-33,100 on the seven sen2ships ports (x 65535).
RAW_LEVEL_DN = 20000.0
#: Digital numbers from here up are saturated (a cloud drawn white); they do not count in that percentile.
SATURATED_DN = 65000.0
_DEFAULT_RULE = "DN/10000"
_FLOAT_RULE = "float data taken as reflectance"
_RAW_NAME_RULE = "Copernicus Browser raw export"
#: Ratio of band medians between two dates read alike when one holds reflectance x 65535 and the other
#: x 10000 numbers: 6.55 times the dates' gain (0.6-1.6 allowed) ...
RAW_FACTOR_RANGE = (6.5536 * 0.6, 6.5536 * 1.6)
#: ... and the same in every band: the largest ratio at most this many times the smallest.
RAW_FACTOR_SPREAD = 1.5
#: Float bands whose 99th percentile exceeds this are digital numbers, not reflectance.
FLOAT_DN_LEVEL = 2.0

BBox = tuple[float, float, float, float]
#: ``bbox_crs`` value for a bbox in the coordinates of the scene's own transform (its CRS, or its
#: local frame when it has none), e.g. the map bounds of a window of the scene's grid.
SCENE_FRAME = "scene"


@dataclass(frozen=True)
class BandSource:
    """Where one band lives: a file and a 1-based band index in it."""

    name: str
    path: Path
    index: int = 1


@dataclass(frozen=True)
class Radiometry:
    """Conversion of digital numbers to reflectance: ``reflectance = dn * scale + offset``."""

    scale: float
    offset: float
    source: str  # where the numbers came from, for the report


def one_line(exc: BaseException) -> str:
    """An exception's message on a single line."""
    return " ".join(str(exc).split())


# --------------------------------------------------------------------------- layout
def find_band_sources(path: str | Path, bands: Sequence[str] | None = None) -> list[BandSource]:
    """Locate the band files of a scene, without reading pixels.

    Parameters
    ----------
    path : str or Path
        A band folder, a SAFE product/granule folder, or a multi-band raster file.
    bands : sequence of str, optional
        For a folder: the bands wanted. For a multi-band file without band
        descriptions: the names of its bands, in file order.

    Returns
    -------
    list of BandSource
        Sorted in Sentinel-2 band order.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or directory")
    if p.is_file():
        return _sources_in_file(p, bands)
    jp2 = _safe_band_files(p)
    files = jp2 if jp2 else sorted(f for f in p.iterdir() if f.suffix.lower() in RASTER_SUFFIXES)
    found: dict[str, list[Path]] = {}
    for f in files:
        name = band_from_filename(f.stem)
        if name:
            found.setdefault(name, []).append(f)
    if not found:
        if len(files) == 1:
            return _sources_in_file(files[0], bands)
        raise InputError(
            f"{p}: unknown band layout: no Sentinel-2 band files found "
            "(expected B02.tif, *_B02.tif, *_B02_(Raw).tiff, a SAFE granule or a multi-band GeoTIFF)"
        )
    # Several files for one band (SAFE L2A keeps B02 at 10, 20 and 60 m): take the finest (a file is
    # opened for its resolution only then).
    sources = [BandSource(n, fs[0] if len(fs) == 1 else min(fs, key=_resolution_of)) for n, fs in found.items()]
    return sorted(sources, key=lambda s: band_sort_key(s.name))


def select_bands(sources: Sequence[BandSource], bands: Sequence[str] | None, where: str | Path) -> list[BandSource]:
    """The sources of ``bands``, in that order (all of ``sources`` when ``bands`` is None).

    :func:`find_band_sources` lists every band of a folder whatever ``bands`` says; this picks the
    wanted ones as :func:`read_scene` does.

    Raises
    ------
    BandError
        A band is not a Sentinel-2 name, or ``where`` does not hold it (the message lists the bands it has).
    """
    if bands is None:
        return list(sources)
    wanted = [_canonical(b, Path(where)) for b in bands]
    by_name = {s.name: s for s in sources}
    missing = [b for b in wanted if b not in by_name]
    if missing:
        raise BandError(f"{where}: band(s) {', '.join(missing)} not found (has {', '.join(by_name) or 'none'})")
    return [by_name[b] for b in wanted]


def _safe_band_files(p: Path) -> list[Path]:
    granules = [p] if (p / "IMG_DATA").is_dir() else sorted((p / "GRANULE").glob("*"))
    out: list[Path] = []
    for g in granules:
        out += sorted((g / "IMG_DATA").rglob("*.jp2"))
    return out


def _resolution_of(f: Path) -> float:
    m = re.search(r"_(10|20|60)m$", f.stem)
    if m:
        return float(m.group(1))
    try:
        with open_raster(f) as ds:
            return abs(georeferencing(ds, band_from_filename(f.stem))[1].a)
    except (RasterioError, InputError):
        return math.inf


def _sources_in_file(f: Path, bands: Sequence[str] | None) -> list[BandSource]:
    with open_raster(f) as ds:
        count, descriptions = ds.count, ds.descriptions
    names = [normalise_band_name(d) if d else None for d in descriptions]
    if all(names) and len(set(names)) == count:
        return [BandSource(n, f, i + 1) for i, n in enumerate(names)]  # type: ignore[arg-type]
    if count == 1 and band_from_filename(f.stem):
        return [BandSource(band_from_filename(f.stem), f, 1)]  # type: ignore[arg-type]
    if bands is not None and len(bands) == count:
        return [BandSource(_canonical(b, f), f, i + 1) for i, b in enumerate(bands)]
    if bands is not None:
        raise BandError(
            f"{f}: has {count} band(s) without Sentinel-2 band descriptions but {len(bands)} band "
            f"names were given ({', '.join(bands)}); give one name per band, in file order"
        )
    raise InputError(
        f"{f}: unknown band layout: its {count} band(s) have no Sentinel-2 band descriptions; "
        "name them in order with bands=[...] (CLI: --bands B02,B03,...)"
    )


def _canonical(b: str, where: Path) -> str:
    n = normalise_band_name(b)
    if n is None:
        raise BandError(f"{where}: {b!r} is not a Sentinel-2 band name (B01..B12, B8A)")
    return n


def open_raster(f: Path) -> Any:
    """Open a raster for reading; a file without georeferencing opens silently (see :func:`georeferencing`)."""
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(f)
    except RasterioError as e:
        raise InputError(f"{f}: not a readable raster ({one_line(e)})") from None


#: How :func:`georeferencing` places a raster that has none, as ``scene.meta["georeferencing"]`` says it.
LOCAL_FRAME = "none in the file: local frame (x east, y north, metres), native Sentinel-2 pixel size assumed"


def is_georeferenced(ds: Any) -> bool:
    """Whether an open raster has any georeferencing (a CRS, a geotransform, GCPs or RPCs)."""
    return not (ds.crs is None and ds.transform.is_identity and not ds.gcps[0] and not ds.rpcs)


def georeferencing(ds: Any, band: str | None = None) -> tuple[CRS | None, Affine]:
    """CRS and transform of an open raster, with a local frame for a file that has none.

    A band written without any georeferencing (GDAL then reports the identity transform: one
    unit per pixel, rows running down) is taken as a Sentinel-2 band of unknown place: pixels
    of the band's native size (:data:`imgdiff.scene.BAND_RESOLUTION_M`; 10 m for an unknown
    band), x east and y north in metres, the lower-left corner at (0, 0). Every band of such a
    scene then covers the same extent, a 20 m band lines up with the 10 m ones, and a before
    date written with its transform and an after date written without one share their frame
    when the before's frame has this layout (as the aircraft_s2sim chips do).

    Parameters
    ----------
    ds : rasterio dataset
    band : str, optional
        Sentinel-2 band name of the raster (its pixel size when it has no georeferencing).

    Returns
    -------
    crs : CRS or None
    transform : Affine
        Pixel (column, row) -> map (x, y) in ``crs`` units, or in the local frame's metres.
    """
    if is_georeferenced(ds):
        return ds.crs, ds.transform
    res = float(BAND_RESOLUTION_M.get(band or "", 10))
    return None, Affine(res, 0.0, 0.0, 0.0, -res, ds.height * res)


# --------------------------------------------------------------------------- metadata
def find_product_metadata(sources: Sequence[BandSource]) -> Path | None:
    for parent in sources[0].path.parents:
        hits = sorted(parent.glob("MTD_MSIL*.xml"))
        if hits:
            return hits[0]
        if parent.suffix.upper() == ".SAFE":
            return None
    return None


def parse_product_metadata(mtd: Path) -> dict[str, Any]:
    """Date, processing baseline, quantification and per-band offsets of a SAFE product."""
    try:
        root = ET.parse(mtd).getroot()
    except (ET.ParseError, OSError) as e:
        raise InputError(f"{mtd}: unreadable product metadata ({one_line(e)})") from None
    out: dict[str, Any] = {"offsets": {}}
    for el in root.iter():
        tag = el.tag.split("}")[-1]
        if tag == "PRODUCT_START_TIME" and el.text:
            out["date"] = _dt.date.fromisoformat(el.text[:10])
        elif tag == "PROCESSING_BASELINE" and el.text:
            out["baseline"] = el.text.strip()
        elif tag in ("QUANTIFICATION_VALUE", "BOA_QUANTIFICATION_VALUE") and el.text:
            out["quantification"] = float(el.text)
        elif tag in ("RADIO_ADD_OFFSET", "BOA_ADD_OFFSET") and el.text:
            out["offsets"][int(el.get("band_id", "-1"))] = float(el.text)
    return out


_DATE_IN_NAME = re.compile(r"(?<!\d)(20\d{2})-?(0[1-9]|1[0-2])-?(0[1-9]|[12]\d|3[01])(?!\d)")
_DATE_TAGS = ("ACQUISITION_DATE", "DATE_ACQUIRED", "SENSING_TIME", "DATATAKE_SENSING_START", "DATE")


def date_from_text(text: str) -> _dt.date | None:
    """First plausible acquisition date (YYYY-MM-DD or YYYYMMDD) in a name, or None."""
    for m in _DATE_IN_NAME.finditer(text):
        try:
            return _dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            continue
    return None


def date_from_tags(tags: dict[str, str]) -> _dt.date | None:
    for key in _DATE_TAGS:
        if key in tags and tags[key]:
            d = date_from_text(tags[key])
            if d:
                return d
    return None


def date_from_sidecar(source: Path) -> _dt.date | None:
    """OSCD keeps dates in ``<city>/meta.json`` under the keys ``before`` / ``after``."""
    folder = source.parent
    meta = folder.parent / "meta.json"
    if not meta.is_file():
        return None
    try:
        entry = json.loads(meta.read_text()).get(folder.name, {})
        return _dt.date.fromisoformat(entry["date"][:10]) if isinstance(entry, dict) else None
    except (ValueError, KeyError, TypeError, OSError):
        return None


def _baseline_number(baseline: str | None) -> float | None:
    try:
        return float(baseline) if baseline else None
    except ValueError:
        return None


def choose_radiometry(
    dtype: str,
    *,
    band_scale: float = 1.0,
    band_offset: float = 0.0,
    source_name: str = "",
    date: _dt.date | None = None,
    baseline: str | None = None,
    quantification: float | None = None,
    dn_offset: float | None = None,
) -> Radiometry:
    """Decide how digital numbers of one band become reflectance.

    The first rule that applies wins: scale/offset stored with the band (GDAL
    metadata); SAFE metadata (quantification and ``RADIO_ADD_OFFSET`` /
    ``BOA_ADD_OFFSET``); float data (already reflectance); Copernicus Browser
    "Raw" exports (reflectance x 65535); otherwise Level-1C/2A DN = reflectance x
    10000, with the -1000 DN offset of processing baseline 04.00 and later
    (from the baseline where known, else from the acquisition date >= 2022-01-25).
    """
    if (band_scale, band_offset) != (1.0, 0.0):
        return Radiometry(band_scale, band_offset, "band metadata scale/offset")
    if quantification:
        off = dn_offset or 0.0
        return Radiometry(1.0 / quantification, off / quantification, "SAFE metadata")
    if np.dtype(dtype).kind == "f":
        return Radiometry(1.0, 0.0, _FLOAT_RULE)
    if "(Raw)" in source_name:
        return Radiometry(RAW_EXPORT_SCALE, 0.0, f"{_RAW_NAME_RULE}: reflectance x 65535")
    number = _baseline_number(baseline)
    if number is not None:
        new = number >= 4.0
        why = f"processing baseline {baseline}"
    elif date is not None:
        new = date >= BASELINE_04_DATE
        why = f"acquired {date.isoformat()} ({'on/after' if new else 'before'} 2022-01-25)"
    else:
        new, why = False, "date unknown: no baseline offset assumed"
    return Radiometry(1e-4, -0.1 if new else 0.0, f"{_DEFAULT_RULE}{' - 0.1' if new else ''}, {why}")


def by_default_rule(radiometry: dict[str, Any]) -> bool:
    """Whether a band's recorded radiometry (``scene.meta["radiometry"][band]``) is only the
    default reflectance x 10000 convention (no metadata, name or caller said how to scale it)."""
    return str(radiometry.get("source", "")).startswith(_DEFAULT_RULE)


def rescaled(scene: Scene, bands: Sequence[str], rad: Radiometry) -> Scene:
    """The scene with ``bands`` converted again from their digital numbers with ``rad``.

    The digital numbers are recovered from the reflectance and the scaling recorded in
    ``scene.meta["radiometry"]`` (exact up to float32 rounding); the record is updated.
    """
    meta = dict(scene.meta)
    record = {k: dict(v) for k, v in (meta.get("radiometry") or {}).items()}
    arrays = dict(scene.bands)
    for b in bands:
        old = record[b]
        dn = (arrays[b].astype(np.float64) - float(old["offset"])) / float(old["scale"])
        arrays[b] = (dn * rad.scale + rad.offset).astype(np.float32)
        record[b] = {"scale": rad.scale, "offset": rad.offset, "source": rad.source}
    meta["radiometry"] = record
    return replace(scene, bands=arrays, meta=meta)


def infer_raw_scaling(scene: Scene) -> Scene:
    """Read integer bands as reflectance x 65535 when their levels rule out x 10000.

    Applies only when every band was scaled by the default convention (nothing said
    otherwise) and the highest 99th percentile over the bands exceeds :data:`RAW_LEVEL_DN`
    digital numbers: then the file is most likely a renamed Copernicus Browser raw export.
    Otherwise the scene is returned unchanged.
    """
    record = scene.meta.get("radiometry") or {}
    if not record or not all(by_default_rule(r) for r in record.values()) or not scene.valid.any():
        return scene
    p99 = 0.0
    for b, r in record.items():
        top = RAW_LEVEL_DN * float(r["scale"]) + float(r["offset"])  # the level in reflectance
        sat = SATURATED_DN * float(r["scale"]) + float(r["offset"])  # saturated pixels (a white cloud) left out
        p99 = max(p99, (_high_p99(scene, [b], top, sat) - float(r["offset"])) / float(r["scale"]))
    if p99 <= RAW_LEVEL_DN:
        return scene
    rad = Radiometry(RAW_EXPORT_SCALE, 0.0, f"inferred from levels: 99th percentile {p99:.0f} DN cannot be reflectance "
                     "x 10000, read as reflectance x 65535 (Copernicus Browser raw export scaling)")
    return rescaled(scene, list(record), rad)


def harmonise_scaling(before: Scene, after: Scene) -> tuple[Scene, Scene]:
    """Give both dates of a pair one scaling where only one of them says what it is.

    Where the two dates' guessed baseline-04 offsets differ (a date unknown on one of them, the
    offset dropped as impossible on one only), both are read alike, as their levels say
    (:func:`_consistent_offsets`).
    A band read as reflectance x 65535 (a raw export's name, or :func:`infer_raw_scaling`)
    on one date and by the default x 10000 convention on the other (a renamed copy of the
    same export, darker than :data:`RAW_LEVEL_DN`) is read as x 65535 on both when its band
    medians are 6.55 times its partner's, by one factor in every such band
    (:data:`RAW_FACTOR_RANGE`, :data:`RAW_FACTOR_SPREAD`: it holds x 65535 numbers too). Both
    dates named as raw exports, one of them 6.55 times darker by one factor in every band: that
    one holds x 10000 numbers under the export's names and is read so. Any other combination is
    left as it is: a copy truly converted to x 10000 (as bright as its partner), and a date
    brighter by an offset rather than a factor (an L1C date, top of atmosphere, beside a
    surface-reflectance export: its blue over water 3-4 times brighter, its red far less; haze;
    sun glint).
    """
    rb, ra = before.meta.get("radiometry") or {}, after.meta.get("radiometry") or {}

    def raw(r: dict[str, Any]) -> bool:
        return abs(float(r.get("scale", 0.0)) - RAW_EXPORT_SCALE) < 1e-12

    def factor_apart(bright: Scene, dark: Scene, bands: Sequence[str]) -> bool:
        # the same place on two dates, one holding x 65535 numbers and the other x 10000 but read alike:
        # one is 6.55 times brighter, by the same factor in every band (up to the dates' gain); haze, glint
        # or a top-of-atmosphere date add an offset instead, which raises dark bands by far more than
        # bright ones; a copy really converted to x 10000 is about as bright as its partner
        if not bands or not bright.valid.any() or not dark.valid.any():
            return False
        r = []
        for b in bands:
            mb, md = (float(np.nanmedian(s.bands[b][s.valid])) for s in (bright, dark))
            if not (mb > 0 and md > 0):
                return False
            r.append(mb / md)
        return all(RAW_FACTOR_RANGE[0] <= v <= RAW_FACTOR_RANGE[1] for v in r) and max(r) / min(r) <= RAW_FACTOR_SPREAD

    rad = Radiometry(RAW_EXPORT_SCALE, 0.0, "as the other date of the pair: reflectance x 65535 (Copernicus Browser "
                     "raw export scaling)")
    common = [b for b in rb if b in ra]
    # a renamed copy holds x 65535 numbers in every band: one band brighter than its partner (blue
    # over water on a top-of-atmosphere L1C date against a surface-reflectance export) is no copy
    cand_b = [b for b in common if by_default_rule(rb[b]) and raw(ra[b])]
    cand_a = [b for b in common if by_default_rule(ra[b]) and raw(rb[b])]
    fix_b = cand_b if factor_apart(before, after, cand_b) else []
    fix_a = cand_a if factor_apart(after, before, cand_a) else []
    before, after = (rescaled(before, fix_b, rad) if fix_b else before), (rescaled(after, fix_a, rad) if fix_a else after)
    # both dates named as raw exports, one of them 6.55 times darker in every band: a script wrote reflectance
    # x 10000 numbers under the export's names on that date
    named = [b for b in common if raw(rb[b]) and raw(ra[b]) and str(rb[b]["source"]).startswith(_RAW_NAME_RULE)
             and str(ra[b]["source"]).startswith(_RAW_NAME_RULE)]

    def as_x10000(dark: Scene) -> Scene:
        r10 = choose_radiometry("uint16", date=dark.date)
        return drop_impossible_offset(rescaled(dark, named, Radiometry(
            r10.scale, r10.offset, f"{r10.source}; named as a raw export but 6.55 times darker than the other date: "
            "x 10000 numbers")))

    if factor_apart(after, before, named):
        before = as_x10000(before)
    elif factor_apart(before, after, named):
        after = as_x10000(after)
    return _consistent_offsets(before, after)


def _consistent_offsets(before: Scene, after: Scene) -> tuple[Scene, Scene]:
    """The pair with the baseline-04 offset read alike on both dates where nothing but a guess decides it.

    Only the default DN/10000 reading guesses the -1000 DN offset: from the acquisition date
    (none when it is unknown), dropped when the numbers cannot carry it (1 % or more of B02
    below DN 1000, :func:`drop_impossible_offset`); a processing baseline or metadata states it,
    and a stated reading is never changed (its partner may follow it).
    Such guesses can differ between the dates of one place: an undated copy of a dated scene
    reads 0.1 brighter than it; of two chips in date-named folders, the darker one drops the offset
    and the other keeps it, 0.1 darker. Where the guessed offsets of a band differ, three readings
    are weighed: as read, without the offset on both dates, with it on both (a date whose numbers
    cannot carry it cannot take it); the one whose band medians lie closest between the dates
    (summed absolute log ratios) is kept. As read can win: an L1C date (top of atmosphere, with the
    offset) beside an undated surface-reflectance chip (without it) is read right as it is.
    """
    rb, ra = before.meta.get("radiometry") or {}, after.meta.get("radiometry") or {}

    def guessed(r: dict[str, Any]) -> bool:
        return by_default_rule(r) and "processing baseline" not in r["source"]

    def x10000(r: dict[str, Any]) -> bool:  # DN/10000, with or without the offset, however decided
        return abs(float(r["scale"]) - 1e-4) < 1e-12 and float(r["offset"]) in (0.0, -0.1)

    bands = [b for b in rb if b in ra and x10000(rb[b]) and x10000(ra[b]) and (guessed(rb[b]) or guessed(ra[b]))
             and float(rb[b]["offset"]) != float(ra[b]["offset"])]
    if not bands or not before.valid.any() or not after.valid.any():
        return before, after

    def dn_offset_free(scene: Scene, b: str, r: dict[str, Any]) -> float:  # median reflectance without offset
        return float(np.nanmedian(scene.bands[b][scene.valid])) - float(r["offset"])

    def can_carry(scene: Scene, record: dict[str, Any]) -> bool:
        probe = next((b for b in ("B02", "B03") if b in record), None)
        return probe is None or below_dn1000(scene, probe) < IMPOSSIBLE_OFFSET_SHARE

    med = {b: (dn_offset_free(before, b, rb[b]), dn_offset_free(after, b, ra[b])) for b in bands}

    def apart(off_b: dict[str, float], off_a: dict[str, float]) -> float:
        total = 0.0
        for b, (mb, ma) in med.items():
            x, y = mb + off_b[b], ma + off_a[b]
            total += abs(math.log(x / y)) if x > 0 and y > 0 else math.inf
        return total

    as_read = ({b: float(rb[b]["offset"]) for b in bands}, {b: float(ra[b]["offset"]) for b in bands})
    options = [as_read]
    for off in (0.0, -0.1):  # one reading for both dates; an offset stated by metadata or baseline stays
        stated = all(float(r[b]["offset"]) == off for r in (rb, ra) for b in bands if not guessed(r[b]))
        if stated and (off == 0.0 or (can_carry(before, rb) and can_carry(after, ra))):
            options.append(({b: off for b in bands}, {b: off for b in bands}))
    def overruled(o: tuple[dict[str, float], dict[str, float]]) -> int:  # readings by a known date changed
        return sum(o[k][b] != float(r[b]["offset"]) and "acquired" in r[b]["source"]
                   for k, r in ((0, rb), (1, ra)) for b in bands)

    # closest levels first; on a tie (two copies of one scene) the reading its known date gives, then as read
    off_b, off_a = min(options, key=lambda o: (round(apart(*o), 4), overruled(o)))
    if (off_b, off_a) == as_read:
        return before, after

    def reread(scene: Scene, record: dict[str, Any], offsets: dict[str, float]) -> Scene:
        for off in (0.0, -0.1):
            change = [b for b in bands if offsets[b] == off and float(record[b]["offset"]) != off]
            if change:
                scene = rescaled(scene, change, Radiometry(
                    1e-4, off, f"{_DEFAULT_RULE}{' - 0.1' if off else ''}: the other date's levels (the two dates' "
                    "guessed baseline-04 offsets differed; this reading puts their medians closest)"))
        return scene

    return reread(before, rb, off_b), reread(after, ra, off_a)


# --------------------------------------------------------------------------- windows
def in_lonlat_range(bbox: Sequence[float]) -> bool:
    """Whether (west, south, east, north) lie within longitude -180..180 and latitude -90..90 degrees."""
    return all(-180 <= v <= 180 for v in bbox[0::2]) and all(-90 <= v <= 90 for v in bbox[1::2])


def bbox_window(
    bbox: BBox, bbox_crs: CRS | str | None, crs: CRS | None, transform: Affine, shape: tuple[int, int],
    where: str,
) -> Window:
    """Pixel window (whole pixels, clipped to the raster) covering a bbox.

    ``bbox`` is (minx, miny, maxx, maxy) in ``bbox_crs``: lon/lat (EPSG:4326) when None;
    :data:`SCENE_FRAME` for the coordinates of the raster's own transform.
    For a raster without CRS, a bbox with an explicit ``bbox_crs`` is taken in the coordinates
    of its transform; a lon/lat bbox (``bbox_crs`` None) is refused, as lon/lat zones are
    (:func:`imgdiff.zones.placed`), unless its numbers cannot be lon/lat (then they are the
    transform's coordinates).

    Raises
    ------
    GridError
        A lon/lat bbox outside [-180, 180] x [-90, 90] on a raster with CRS, or one that could
        be lon/lat on a raster without CRS.
    NoOverlapError
        The bbox does not intersect the raster.
    """
    lonlat = bbox_crs is None
    could_be_lonlat = in_lonlat_range(bbox)
    if crs is None and lonlat and could_be_lonlat:
        raise GridError(f"{where}: the scene has no CRS, so a lon/lat bbox {tuple(bbox)} cannot be placed on it; "
                        "use a georeferenced scene (GeoTIFF with a CRS) or read it whole")
    if crs is not None and not (isinstance(bbox_crs, str) and bbox_crs == SCENE_FRAME):
        if lonlat and not could_be_lonlat:
            raise GridError(f"{where}: bbox {tuple(bbox)} is not lon/lat degrees (west, south, east, north with "
                            "longitude -180..180, latitude -90..90); give lon/lat, or its CRS as bbox_crs")
        src_crs = CRS.from_user_input(bbox_crs) if bbox_crs is not None else CRS.from_epsg(4326)
        bbox = transform_bounds(src_crs, crs, *bbox, densify_pts=21)
    if not all(math.isfinite(v) for v in bbox):
        raise NoOverlapError(f"{where}: bbox does not intersect the scene (it cannot be projected to {crs}); "
                             "check the bbox and its CRS (lon/lat by default)")
    inv = ~transform
    xs, ys = zip(*(inv * (x, y) for x in (bbox[0], bbox[2]) for y in (bbox[1], bbox[3])))
    c0, c1 = max(0, math.floor(min(xs) + 1e-9)), min(shape[1], math.ceil(max(xs) - 1e-9))
    r0, r1 = max(0, math.floor(min(ys) + 1e-9)), min(shape[0], math.ceil(max(ys) - 1e-9))
    if c1 <= c0 or r1 <= r0:
        raise NoOverlapError(
            f"{where}: bbox {tuple(round(v, 6) for v in bbox)} does not intersect the scene; "
            "check the bbox and its CRS (lon/lat by default)"
        )
    return Window(c0, r0, c1 - c0, r1 - r0)


# --------------------------------------------------------------------------- reading
def read_scene(
    path: str | Path,
    bands: Sequence[str] | None = None,
    bbox: BBox | None = None,
    *,
    bbox_crs: CRS | str | None = None,
    date: _dt.date | str | None = None,
    scale: float | None = None,
    offset: float = 0.0,
) -> Scene:
    """Read a Sentinel-2 scene (or a window of it) as float32 reflectance.

    Parameters
    ----------
    path : str or Path
        A band folder, SAFE product/granule, or multi-band GeoTIFF/COG.
    bands : sequence of str, optional
        Bands to read (default: all found). For a multi-band file without band
        descriptions, the names of its bands in order.
    bbox : (minx, miny, maxx, maxy), optional
        Read only this window. In ``bbox_crs``; lon/lat (EPSG:4326) by default.
    bbox_crs : CRS or str, optional
        CRS of ``bbox``; :data:`SCENE_FRAME` for the coordinates of the scene's own transform.
        On a scene without CRS an explicit ``bbox_crs`` means the coordinates of its transform,
        and a lon/lat bbox (no ``bbox_crs``) is refused (:func:`bbox_window`).
    date : date or ISO string, optional
        Acquisition date; overrides what metadata and file names say.
    scale, offset : float, optional
        Force ``reflectance = dn * scale + offset`` for every band (e.g. for
        exports whose scaling the files do not record). Otherwise each band's scaling
        follows :func:`choose_radiometry`, then levels that rule it out: float digital
        numbers (:data:`FLOAT_DN_LEVEL`), numbers below the date-based offset
        (:func:`drop_impossible_offset`), renamed raw exports (:func:`infer_raw_scaling`).
        ``meta["radiometry"]`` records what was used and why.

    Returns
    -------
    Scene
        On the grid of the finest band read (window-cropped when ``bbox`` is given);
        coarser bands are resampled bilinearly. NaN and ``valid == False`` where any
        band is no-data (its declared nodata value) or the pixel is zero-filled (DN 0 in
        every band on the finest grid: outside the swath or the product). A DN of 0 in only
        some bands is a valid, very dark pixel (e.g. NIR over calm water) and reads as
        reflectance 0.

    Raises
    ------
    InputError, BandError, GridError, NoOverlapError, EmptySceneError
    """
    path = Path(path)
    sources = select_bands(find_band_sources(path, bands), bands, path)

    mtd = find_product_metadata(sources)
    product = parse_product_metadata(mtd) if mtd else {"offsets": {}}

    # Reference grid: the finest band.
    infos = {}
    unplaced = []  # bands without georeferencing, placed in the local frame
    for s in sources:
        with open_raster(s.path) as ds:
            if s.index > ds.count:
                raise BandError(f"{s.path}: has no band {s.index}")
            if not is_georeferenced(ds):
                unplaced.append(s.name)
            infos[s] = (*georeferencing(ds, s.name), ds.shape, ds.dtypes[s.index - 1], ds.nodata,
                        ds.scales[s.index - 1], ds.offsets[s.index - 1], ds.tags(), has_mask_band(ds, s.index))
    ref = min(sources, key=lambda s: abs(infos[s][1].a) * abs(infos[s][1].e))
    crs, transform, shape = infos[ref][0], north_up(infos[ref][1], infos[ref][2][0]), infos[ref][2]
    _check_compatible(sources, infos, ref)
    window = (
        bbox_window(bbox, bbox_crs, crs, transform, shape, str(path))
        if bbox is not None else Window(0, 0, shape[1], shape[0])
    )
    out_transform = rasterio.windows.transform(window, transform)
    out_shape = (int(window.height), int(window.width))

    if date is not None:
        acq = _dt.date.fromisoformat(date) if isinstance(date, str) else date
    else:
        acq = product.get("date") or date_from_tags(infos[ref][7]) or date_from_sidecar(ref.path)
        acq = acq or date_from_text(ref.path.name) or date_from_text(str(path.resolve()))

    arrays: dict[str, np.ndarray] = {}
    radiometry: dict[str, dict[str, Any]] = {}
    zero: np.ndarray | None = None  # DN 0 in every band read on the reference grid: fill
    for s in sources:
        s_crs, s_tr, s_shape, dtype, nodata, b_scale, b_offset, _, _ = infos[s]
        if scale is not None:
            rad = Radiometry(scale, offset, "given by caller")
        else:
            band_id = _safe_band_id(s.name)
            rad = choose_radiometry(
                dtype, band_scale=b_scale, band_offset=b_offset, source_name=s.path.name, date=acq,
                baseline=product.get("baseline"), quantification=product.get("quantification"),
                dn_offset=product["offsets"].get(band_id),
            )
        radiometry[s.name] = {"scale": rad.scale, "offset": rad.offset, "source": rad.source}
        if s_tr == transform and s_shape == shape and s_crs == crs:
            dn = _read(s, window)
            arrays[s.name] = masked(to_reflectance(dn, rad, nodata, zeros="keep"), s, window, infos[s][8])
            zero = zero_fill(dn, zero)
        else:
            arrays[s.name] = _read_resampled(s, infos[s], rad, crs, out_transform, out_shape)

    valid = np.logical_and.reduce([np.isfinite(a) for a in arrays.values()])
    if zero is not None:
        valid &= ~zero
    if not valid.any():
        empty = [s for s in sources if not np.isfinite(arrays[s.name]).any()]
        if empty and len(empty) < len(sources):  # one band's extent misses the others (or it is all no-data)
            raise EmptySceneError(
                f"{path}: band(s) {', '.join(s.name for s in empty)} ({', '.join(str(s.path) for s in empty)}) "
                f"hold no valid pixel on the grid of {ref.name}{' inside the bbox' if bbox is not None else ''}: "
                "their extent misses the other bands' or they are all no-data; check those files or leave them "
                "out with bands=[...] (CLI: --bands)"
            )
    for a in arrays.values():
        a[~valid] = np.nan
    if not valid.any():
        raise EmptySceneError(
            f"{path}: no valid pixel{' inside the bbox' if bbox is not None else ''} "
            "(all no-data or zero-filled)"
        )
    meta = {
        "source": str(path),
        "files": {s.name: str(s.path) for s in sources},
        "layout": "safe" if mtd else ("file" if path.is_file() else "folder"),
        "window": {"col_off": int(window.col_off), "row_off": int(window.row_off),
                   "width": out_shape[1], "height": out_shape[0]},
        "full_shape": list(shape),
        "processing_baseline": product.get("baseline") or infos[ref][7].get("PROCESSING_BASELINE") or None,
        "radiometry": radiometry,
    }
    if unplaced:
        meta["georeferencing"] = f"{LOCAL_FRAME} ({', '.join(unplaced)})"
    scene = Scene(bands=arrays, crs=crs, transform=out_transform, valid=valid, date=acq, meta=meta)
    if scale is not None:
        return scene
    floats = [s for s in sources if radiometry[s.name]["source"] == _FLOAT_RULE]
    if floats and _high_p99(scene, [s.name for s in floats], FLOAT_DN_LEVEL) > FLOAT_DN_LEVEL:
        # float digital numbers (e.g. a product converted to float to apply a gain): scale them as
        # the integer numbers they stand for, by name or convention
        for s in floats:
            rad = choose_radiometry("uint16", source_name=s.path.name, date=acq, baseline=product.get("baseline"))
            scene = rescaled(scene, [s.name], Radiometry(rad.scale, rad.offset, f"{rad.source} (float digital numbers)"))
    return infer_raw_scaling(drop_impossible_offset(scene))


#: Share of the valid B02 (else B03) pixels below DN 1000 from which the numbers cannot carry the
#: baseline-04 offset (their reflectance would be negative with it).
IMPOSSIBLE_OFFSET_SHARE = 0.01


def below_dn1000(scene: Scene, band: str) -> float:
    """Share of a DN/10000 band's valid pixels whose digital number lies below 1000 (reflectance
    below 0.1 without the baseline-04 offset, below 0 with it), whatever offset it was read with."""
    offset = float((scene.meta.get("radiometry") or {}).get(band, {}).get("offset", 0.0))
    return float(np.mean(scene.bands[band][scene.valid] - offset < 0.1))


def drop_impossible_offset(scene: Scene) -> Scene:
    """Read the bands without the baseline-04 offset when their numbers cannot carry it.

    The -1000 DN offset is assumed from the acquisition date alone (no metadata says it). With
    it, blue and green reflectance of water and land is positive, so their numbers lie above 1000;
    when 1 % or more of the valid B02 (else B03) pixels lie below, the numbers were written without
    the offset (a tool or a conversion that removed it) and the offset is dropped for every band.
    """
    record = scene.meta.get("radiometry") or {}
    dated = [b for b, r in record.items() if by_default_rule(r) and float(r["offset"]) != 0.0 and "acquired" in r["source"]]
    probe = next((b for b in ("B02", "B03") if b in dated), None)
    if probe is None or len(dated) != len(record) or not scene.valid.any():
        return scene
    below = below_dn1000(scene, probe)
    if below < IMPOSSIBLE_OFFSET_SHARE:
        return scene
    rad = Radiometry(1e-4, 0.0, f"DN/10000 without offset: {below:.0%} of {probe} lies below DN 1000, impossible with "
                     "the baseline-04 offset the acquisition date suggests")
    return rescaled(scene, dated, rad)


def _high_p99(scene: Scene, bands: Sequence[str], above: float, below: float = math.inf) -> float:
    """The highest 99th percentile over ``bands`` (valid pixels below ``below``, in the bands' own units);
    bands whose maximum is not above ``above`` count as 0 (the usual case, decided without a percentile)."""
    p99 = 0.0
    for b in bands:
        band = scene.bands[b]
        if not np.nanmax(band) > above:
            continue
        v = band[scene.valid]
        v = v[:: max(1, v.size // 200_000)]  # an even subsample: the decision needs no more
        v = v[v < below]
        if v.size:
            p99 = max(p99, float(np.percentile(v, 99)))
    return p99


def _safe_band_id(name: str) -> int:
    from ..scene import BAND_ORDER

    return BAND_ORDER.index(name) if name in BAND_ORDER else -1


def north_up(transform: Affine, height: int) -> Affine:
    """The north-up transform of a south-up raster (positive pixel height, as some xarray
    writers leave it): the same extent with rows running south; other transforms unchanged.
    A band read onto the north-up grid is resampled from its own rows (flipped exactly)."""
    if transform.b == 0 and transform.d == 0 and transform.e > 0:
        return Affine(transform.a, 0.0, transform.c, 0.0, -transform.e, transform.f + transform.e * height)
    return transform


def _check_compatible(sources: Sequence[BandSource], infos: dict, ref: BandSource) -> None:
    crs = infos[ref][0]
    for s in sources:
        if (infos[s][0] is None) != (crs is None) or (crs is not None and infos[s][0] != crs):
            # Different CRSs inside one scene are legal for reprojection but almost always a mistake.
            raise BandError(
                f"{s.path}: band {s.name} is in {infos[s][0]} but {ref.name} is in {crs}; "
                "all bands of a scene must share one CRS"
            )


def has_mask_band(ds: Any, index: int) -> bool:
    """Whether band ``index`` of an open raster has a mask band (a GDAL internal or ``.msk`` mask,
    or an alpha band), as opposed to a no-data value or none."""
    from rasterio.enums import MaskFlags

    flags = ds.mask_flag_enums[index - 1]
    return MaskFlags.per_dataset in flags or MaskFlags.alpha in flags


def masked(reflectance: np.ndarray, s: BandSource, window: Window, has_mask: bool) -> np.ndarray:
    """``reflectance`` with NaN where the band's mask band says no data (see :func:`has_mask_band`);
    unchanged for bands without one (no-data values are read apart)."""
    if not has_mask:
        return reflectance
    with open_raster(s.path) as ds:
        mask = ds.read_masks(s.index, window=window)
    reflectance[mask == 0] = np.nan
    return reflectance


def _read(s: BandSource, window: Window) -> np.ndarray:
    try:
        with open_raster(s.path) as ds:
            return ds.read(s.index, window=window)
    except RasterioError as e:
        raise InputError(f"{s.path}: cannot read band {s.name} ({one_line(e)}); the file may be truncated or corrupt") from None


def to_reflectance(dn: np.ndarray, rad: Radiometry, nodata: float | None, *, zeros: str = "nan") -> np.ndarray:
    """DN array -> float32 reflectance, NaN where no-data.

    Parameters
    ----------
    dn : ndarray
        Digital numbers of one band.
    rad : Radiometry
        ``reflectance = dn * scale + offset``.
    nodata : float or None
        The band's declared nodata value (NaN where it occurs).
    zeros : {"nan", "keep"}
        What DN 0 of an integer band is: ``"nan"`` no-data in this band alone (for a band read
        on its own), ``"keep"`` reflectance 0 (never below), leaving the decision to
        :func:`zero_fill` over all bands. A declared nodata of 0 follows the same rule.
    """
    if zeros not in ("nan", "keep"):
        raise ValueError(f"zeros must be 'nan' or 'keep', not {zeros!r}")
    out = dn.astype(np.float32) * np.float32(rad.scale) + np.float32(rad.offset)
    bad = ~np.isfinite(out)
    if dn.dtype.kind in "ui":
        z = dn == 0
        if zeros == "nan":
            bad |= z
        else:
            out[z] = max(float(rad.offset), 0.0)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        if not (zeros == "keep" and nodata == 0):
            bad |= dn == nodata
    out[bad] = np.nan
    return out


def zero_fill(dn: np.ndarray, so_far: np.ndarray | None = None) -> np.ndarray | None:
    """Accumulate the zero-fill mask over the bands of a scene: DN 0 in every band so far.

    Sentinel-2 products fill pixels outside the swath or the product with 0 in every band,
    while a single band can legitimately hold 0 over very dark targets (NIR over calm water in
    8-bit or L2A exports), so only a zero shared by all bands is fill.

    Parameters
    ----------
    dn : ndarray (rows, cols)
        Digital numbers of the next band (float bands carry no zero-fill and leave the mask as is).
    so_far : ndarray of bool or None
        The mask over the bands seen before (None for the first).

    Returns
    -------
    ndarray of bool or None
        None while no integer band has been seen.
    """
    if dn.dtype.kind not in "ui":
        return so_far
    z = dn == 0
    return z if so_far is None else so_far & z


def _read_resampled(
    s: BandSource, info: tuple, rad: Radiometry, dst_crs: CRS | None, dst_transform: Affine,
    dst_shape: tuple[int, int],
) -> np.ndarray:
    """Read the part of a coarser band covering the destination grid and resample it bilinearly."""
    s_crs, s_tr, s_shape, _, nodata = info[:5]
    from rasterio.transform import array_bounds

    west, south, east, north = array_bounds(dst_shape[0], dst_shape[1], dst_transform)
    inv = ~s_tr
    xs, ys = zip(*(inv * (x, y) for x in (west, east) for y in (south, north)))
    c0, c1 = max(0, math.floor(min(xs)) - 2), min(s_shape[1], math.ceil(max(xs)) + 2)
    r0, r1 = max(0, math.floor(min(ys)) - 2), min(s_shape[0], math.ceil(max(ys)) + 2)
    dst = np.full(dst_shape, np.nan, np.float32)
    if c1 <= c0 or r1 <= r0:
        return dst
    win = Window(c0, r0, c1 - c0, r1 - r0)
    src = masked(to_reflectance(_read(s, win), rad, nodata, zeros="keep"), s, win, info[8])
    # A grid without CRS is a local frame; any projected CRS stands in for it on both sides.
    local = CRS.from_epsg(3857)
    reproject(
        src, dst, src_transform=rasterio.windows.transform(win, s_tr), src_crs=s_crs or dst_crs or local,
        dst_transform=dst_transform, dst_crs=dst_crs or s_crs or local, src_nodata=np.nan, dst_nodata=np.nan,
        resampling=Resampling.bilinear,
    )
    return dst
