"""Fetching the site window of a STAC item's bands into a scene folder imgdiff reads directly.

A fetched folder holds one GeoTIFF per band (``B02.tif`` ... at native resolution, the
digital numbers as published, with the item's scale/offset stored as GDAL band
scale/offset so that :func:`imgdiff.read_scene` turns them into reflectance), the
STAC item (``item.json``) and the provenance (``fetch.json``: item id and href, asset
hrefs, processing baseline, scale/offset per band, window, checksums, retries).

Every file is written under a temporary name and moved into place when complete;
``fetch.json`` comes last, so a folder with it is whole. Files already there with the
same content key (asset href + checksum + window + radiometry) are kept: an
interrupted fetch resumes where it stopped. A content-addressed cache (optional)
lets a second fetch of the same window skip the network.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import transform as window_transform
from shapely.geometry import box
from shapely.ops import unary_union

from ..errors import InputError, OutputError
from ..io.bands import normalise_band_name
from ..io.write import GTIFF_OPTIONS, atomic_path, check_written, write_json
from ..zones import Zones
from .aoi import bounds_window, snapped_bounds
from .catalog import DEFAULT_CATALOG, DEFAULT_COLLECTION, items_by_id
from .items import (
    DEFAULT_BANDS,
    BandRadiometry,
    asset_grid,
    band_radiometry,
    find_asset,
    item_datetime,
    item_id,
    processing_baseline,
    summary,
)
from .remote import DEFAULT_POLICY, RetryLog, RetryPolicy, get_json, raster_info, read_window

log = logging.getLogger(__name__)

ITEM_FILE = "item.json"
PROVENANCE_FILE = "fetch.json"
#: GeoTIFF tag holding the content key of a fetched band.
KEY_TAG = "IMGDIFF_FETCH_KEY"
CACHE_ENV = "IMGDIFF_CACHE_DIR"
#: The SCL band holds classes: no scaling, 0 = no data.
SCL_RADIOMETRY = BandRadiometry(1.0, 0.0, 0.0, "scene classification classes (no scaling)")


def default_cache_dir() -> Path:
    """``$IMGDIFF_CACHE_DIR``, else ``~/.cache/imgdiff/stac``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "imgdiff" / "stac"


@dataclass(frozen=True)
class FetchedBand:
    """One band written by :func:`fetch_item`."""

    name: str
    path: Path
    asset_key: str
    href: str
    scale: float
    offset: float
    nodata: float | None
    radiometry_source: str
    window: Mapping[str, int]  # col_off, row_off, width, height on the asset's own grid
    resolution_m: float
    sha256: str
    status: str  # "downloaded", "cached" or "kept"
    retries: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.path.name, "asset": self.asset_key, "href": self.href, "scale": self.scale,
                "offset": self.offset, "nodata": self.nodata, "radiometry_source": self.radiometry_source,
                "window": dict(self.window), "resolution_m": self.resolution_m, "sha256": self.sha256,
                "status": self.status, "retries": self.retries}


@dataclass(frozen=True)
class FetchResult:
    """What :func:`fetch_item` wrote into a scene folder."""

    folder: Path
    item_id: str
    item_href: str | None
    processing_baseline: str | None
    date: _dt.date | None
    crs: str
    bounds: tuple[float, float, float, float]  # west, south, east, north in ``crs`` (metres)
    bands: tuple[FetchedBand, ...]
    retries: int
    reasons: tuple[str, ...] = field(default_factory=tuple)
    zone_coverage: float = 1.0  # fraction of the zones' area inside the image (0-1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder), "item_id": self.item_id, "item_href": self.item_href,
            "processing_baseline": self.processing_baseline, "date": self.date.isoformat() if self.date else None,
            "crs": self.crs, "bounds": list(self.bounds), "bands": {b.name: b.to_dict() for b in self.bands},
            "retries": self.retries, "retry_reasons": list(self.reasons), "zone_coverage": self.zone_coverage,
        }


def load_item(ref: str | Mapping[str, Any], *, catalog: str = DEFAULT_CATALOG, collection: str = DEFAULT_COLLECTION,
              policy: RetryPolicy = DEFAULT_POLICY, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """A STAC item from a dictionary, an item URL, a local item JSON file, or an item id in ``collection``."""
    if isinstance(ref, Mapping):
        return dict(ref)
    if ref.startswith(("http://", "https://", "file://")) or ref.endswith(".json") or Path(ref).is_file():
        item = get_json(ref, policy, sleep=sleep)
        if (not isinstance(item, dict) or item.get("type") != "Feature" or not isinstance(item.get("assets"), dict)
                or not isinstance(item.get("id"), str) or not item["id"]):
            raise InputError(f"{ref}: not a STAC item (no Feature with an id and assets)")
        if not any(link.get("rel") == "self" for link in item.get("links", [])) and "://" in ref:
            item.setdefault("links", []).append({"rel": "self", "href": ref})
        return item
    return items_by_id([ref], catalog=catalog, collection=collection, policy=policy, sleep=sleep)[0]


def _content_key(item: Mapping[str, Any], asset: Mapping[str, Any], href: str, window: Any, rad: Any) -> str:
    ident = {
        "href": href.split("?")[0],
        "checksum": asset.get("file:checksum"),
        "updated": item.get("properties", {}).get("updated"),
        "window": [int(window.col_off), int(window.row_off), int(window.width), int(window.height)],
        "scale": rad.scale, "offset": rad.offset, "nodata": rad.nodata,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stored_key(path: Path) -> str | None:
    try:
        with rasterio.open(path) as ds:
            return ds.tags().get(KEY_TAG)
    except rasterio.errors.RasterioError:
        return None


def _stored_item(path: Path) -> str | None:
    try:
        with rasterio.open(path) as ds:
            return ds.tags().get("STAC_ITEM_ID")
    except rasterio.errors.RasterioError:
        return None


def _clear_other_item(outdir: Path, iid: str, wanted: Sequence[str], overwrite: bool) -> None:
    """Refuse (or, with ``overwrite``, remove) what an earlier fetch of another item left in ``outdir``."""
    if not outdir.is_dir():
        return
    prev = outdir / PROVENANCE_FILE
    prev_id = None
    if prev.is_file():
        try:
            prev_id = json.loads(prev.read_text()).get("item_id")
        except (OSError, ValueError):
            prev_id = None
    others = [p for p in sorted(outdir.glob("*.tif")) if _stored_item(p) not in (None, iid)]
    stale = [p for p in others if p.stem not in wanted]
    if prev_id not in (None, iid) or others:
        if not overwrite:
            raise OutputError(f"{outdir}: holds item {prev_id or _stored_item(others[0])} already; "
                              "pass --overwrite or choose another folder")
        for p in stale:  # bands of the other item that this fetch would not replace
            p.unlink()
        if prev_id not in (None, iid):
            prev.unlink()  # the folder is incomplete until this fetch writes its own provenance


def _write_band(path: Path, data: np.ndarray, crs: CRS, transform: Affine, *, nodata: float | None,
                scale: float, offset: float, name: str, tags: Mapping[str, str]) -> None:
    h, w = data.shape
    profile = dict(GTIFF_OPTIONS, width=w, height=h, count=1, dtype=data.dtype, crs=crs, transform=transform,
                   nodata=nodata)
    if w < 256 or h < 256:
        profile.pop("blockxsize"), profile.pop("blockysize")
        profile["tiled"] = False
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data, 1)
        ds.set_band_description(1, name)
        ds.scales = (scale,)
        ds.offsets = (offset,)
        ds.update_tags(**tags)
    check_written(path)


def fetch_item(
    item: Mapping[str, Any],
    outdir: str | Path,
    aoi: Zones,
    *,
    bands: Sequence[str] = DEFAULT_BANDS,
    scl: bool = True,
    margin_m: float = 500.0,
    cache_dir: str | Path | None = None,
    overwrite: bool = False,
    policy: RetryPolicy = DEFAULT_POLICY,
    on_band: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchResult:
    """Read the window of the zones from each band of a STAC item and write a scene folder.

    Parameters
    ----------
    item : Mapping
        A STAC item dictionary (see :func:`load_item`).
    outdir : str or Path
        The scene folder to write (created if needed).
    aoi : Zones
        Area of interest; the window is its bounding box grown by ``margin_m``.
    bands : sequence of str
        Sentinel-2 bands to fetch (``"B02"`` ...), each at its native resolution.
    scl : bool
        Also fetch the scene classification (``SCL.tif``, 20 m) for cloud masks.
    margin_m : float
        Ground margin around the zones, in metres (context for co-registration).
    cache_dir : str or Path, optional
        Content-addressed cache of fetched windows; None: no cache.
    overwrite : bool
        Replace a folder holding another item, or band files of other content.
    policy : RetryPolicy
        Retries and timeouts of the network reads.
    on_band : callable, optional
        Called with each band name as its fetch starts (progress).
    sleep : callable
        Waits between retries (``time.sleep``; tests pass a fake).

    Returns
    -------
    FetchResult

    Raises
    ------
    BandError, InputError, NoOverlapError, NetworkError, OutputError
    """
    outdir = Path(outdir)
    wanted = [normalise_band_name(b) or str(b).upper() for b in bands] + (["SCL"] if scl else [])
    if outdir.exists() and not outdir.is_dir():
        raise OutputError(f"{outdir}: exists and is not a directory")
    assets = {b: find_asset(item, b) for b in wanted}  # fail early on a missing band
    _clear_other_item(outdir, item_id(item), wanted, overwrite)
    outdir.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir is not None else None

    retry_log = RetryLog()
    # Grid and common bounds, from the finest band (snapped to 60 m so every band covers the same ground).
    infos = {b: raster_info(str(a[1]["href"]), policy, retry_log=retry_log, sleep=sleep, known=asset_grid(item, a[0]))
             for b, a in assets.items()}
    ref_band = min(wanted, key=lambda b: abs(infos[b].transform.a))
    ref = infos[ref_band]
    if ref.crs is None:
        raise InputError(f"{assets[ref_band][1]['href']}: remote raster has no CRS")
    bounds = snapped_bounds(aoi, ref.crs, (ref.transform.c, ref.transform.f), margin_m=margin_m)
    # Clip to the tile so that all bands keep one extent.
    tile = rasterio.transform.array_bounds(ref.shape[0], ref.shape[1], ref.transform)
    bounds = (max(bounds[0], tile[0]), max(bounds[1], tile[1]), min(bounds[2], tile[2]), min(bounds[3], tile[3]))
    zones_union = unary_union(list(aoi.to_crs(ref.crs).geometries.values()))
    coverage = zones_union.intersection(box(*tile)).area / zones_union.area if zones_union.area > 0 else 1.0
    if coverage < 0.999:
        log.warning("%s: only %.0f%% of the zones lie in this image (tile edge); fetch a neighbouring tile too",
                    item_id(item), 100 * coverage)

    when = item_datetime(item)
    baseline = processing_baseline(item)
    written: list[FetchedBand] = []
    for b in wanted:
        if on_band is not None:
            on_band(b)
        key, asset = assets[b]
        href = str(asset["href"])
        info = infos[b]
        if info.crs != ref.crs:
            raise InputError(f"{href}: band {b} is in {info.crs} but {ref_band} in {ref.crs}")
        win = bounds_window(bounds, info.transform, info.shape, href)
        rad = band_radiometry(item, key) if b != "SCL" else SCL_RADIOMETRY
        scale, offset, nodata, source = rad.scale, rad.offset, rad.nodata, rad.source
        ckey = _content_key(item, asset, href, win, rad)
        path = outdir / f"{b}.tif"
        before = retry_log.retries
        status = "kept"
        if path.exists() and _stored_key(path) != ckey:
            if not overwrite:
                raise OutputError(f"{path}: exists with other content; pass --overwrite to replace it")
            # the folder's provenance describes the band about to be replaced: until this fetch writes its
            # own, the folder is incomplete (a fetch stopped here must not leave it looking whole)
            (outdir / PROVENANCE_FILE).unlink(missing_ok=True)
        if not path.exists() or _stored_key(path) != ckey:
            cached = cache / ckey[:2] / f"{ckey}.tif" if cache is not None else None
            if cached is not None and cached.is_file() and _stored_key(cached) == ckey:
                with atomic_path(path) as tmp:
                    shutil.copyfile(cached, tmp)
                status = "cached"
            else:
                data = read_window(href, win, policy, retry_log=retry_log, sleep=sleep, expect=info)
                tags = {
                    KEY_TAG: ckey, "STAC_ITEM_ID": item_id(item), "STAC_ASSET": key, "SOURCE_HREF": href,
                    "PROCESSING_BASELINE": baseline or "", "RADIOMETRY_SOURCE": source,
                    "ACQUISITION_DATE": when.isoformat() if when else "",
                }
                with atomic_path(path) as tmp:
                    _write_band(tmp, data, info.crs, window_transform(win, info.transform), nodata=nodata,
                                scale=scale, offset=offset, name=b, tags=tags)
                status = "downloaded"
                if cached is not None:
                    try:
                        cached.parent.mkdir(parents=True, exist_ok=True)
                        with atomic_path(cached) as tmp:
                            shutil.copyfile(path, tmp)
                    except OSError as e:  # a cache that cannot be written is not fatal
                        log.warning("cache %s not written: %s", cached, e)
        written.append(FetchedBand(
            name=b, path=path, asset_key=key, href=href, scale=scale, offset=offset, nodata=nodata,
            radiometry_source=source,
            window={"col_off": int(win.col_off), "row_off": int(win.row_off), "width": int(win.width),
                    "height": int(win.height)},
            resolution_m=abs(info.transform.a), sha256=_sha256(path), status=status,
            retries=retry_log.retries - before,
        ))

    result = FetchResult(
        folder=outdir, item_id=item_id(item), item_href=summary(item)["href"], processing_baseline=baseline,
        date=when.date() if when else None, crs=ref.crs.to_string(), bounds=tuple(float(v) for v in bounds),
        bands=tuple(written), retries=retry_log.retries, reasons=tuple(retry_log.reasons or ()),
        zone_coverage=float(coverage),
    )
    with atomic_path(outdir / ITEM_FILE) as tmp:
        write_json(tmp, dict(item))
    prov = {"item": summary(item), **result.to_dict(),
            "earthsearch:boa_offset_applied": item.get("properties", {}).get("earthsearch:boa_offset_applied"),
            "fetched_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    prov.pop("folder")
    with atomic_path(outdir / PROVENANCE_FILE) as tmp:
        write_json(tmp, prov)
    return result

