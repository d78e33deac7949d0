"""Where the bands of a scene live: the band-file layouts imgdiff reads, and opening their files.

:func:`find_band_sources` locates the band files of a scene without reading pixels: a folder of
single-band files named by band (``B02.tif``, ``*_B02.tif``, ``*_B02_10m.jp2``, Copernicus Browser
exports ``..._Sentinel-2_L2A_B02_(Raw).tiff``), a SAFE product or granule
(``GRANULE/*/IMG_DATA/[R10m/]*_B02[_10m].jp2``, the finest file of each band), or one multi-band
GeoTIFF/COG whose band descriptions (or an explicit band list) name its bands.
:func:`select_bands` picks the wanted bands; :func:`open_raster` opens a file, or raises an
:class:`~imgdiff.errors.InputError` naming it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rasterio
from rasterio.errors import RasterioError

from ..errors import BandError, InputError
from ..scene import band_sort_key
from .bands import band_from_filename, normalise_band_name
from .georeferencing import georeferencing

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")


@dataclass(frozen=True)
class BandSource:
    """Where one band lives: a file and a 1-based band index in it."""

    name: str
    path: Path
    index: int = 1


def one_line(exc: BaseException | str) -> str:
    """An exception's message (or any text) on a single line."""
    return " ".join(str(exc).split())


def read_failure(exc: BaseException) -> str:
    """Why GDAL could not read a raster, on one line: the GDAL error behind rasterio's
    "Read failed. See previous exception for details." (a truncated strip, a VRT's missing source)."""
    cause = exc.__cause__ or exc.__context__
    return one_line(cause) if cause is not None and "previous exception" in str(exc) else one_line(exc)


def unreadable(path: str | Path, exc: BaseException, band: str | None = None) -> InputError:
    """The error for a band file whose pixels cannot be decoded: the file (and band) named, GDAL's reason."""
    what = f"band {band} " if band else ""
    return InputError(f"{path}: cannot read {what}({read_failure(exc)}); the file may be truncated or corrupt")


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

    Raises
    ------
    InputError
        ``path`` is missing, holds no band files, or holds two files of one band at one resolution.
    BandError
        ``bands`` names a band twice or a name that is not a Sentinel-2 band.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or directory")
    if bands is not None:
        named = [_canonical(b, p) for b in bands]
        twice = sorted({b for b in named if named.count(b) > 1})
        if twice:
            raise BandError(f"{p}: band {', '.join(twice)} named twice in bands ({', '.join(bands)}); "
                            "name each band once, in order")
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
    sources = [BandSource(n, fs[0] if len(fs) == 1 else _finest(n, fs, p)) for n, fs in found.items()]
    return sorted(sources, key=lambda s: band_sort_key(s.name))


def _finest(band: str, files: list[Path], where: Path) -> Path:
    """The finest of several files of one band (SAFE L2A keeps B02 at 10, 20 and 60 m; a file is opened
    for its resolution only then).

    Raises
    ------
    InputError
        If two files share the finest resolution: two scenes in one folder (e.g. two dates' exports
        downloaded side by side), which one of them cannot be picked silently.
    """
    res = {f: _resolution_of(f) for f in files}
    best = min(res.values())
    tied = [f.name for f in files if res[f] == best]
    if len(tied) > 1:
        raise InputError(f"{where}: band {band} is in {len(tied)} files ({', '.join(tied)}): "
                         "put each scene in a folder of its own")
    return min(files, key=res.__getitem__)


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
        hint = "; unzip it and pass the .SAFE folder or the band files" if f.suffix.lower() == ".zip" else ""
        raise InputError(f"{f}: not a readable raster ({one_line(e)}){hint}") from None
