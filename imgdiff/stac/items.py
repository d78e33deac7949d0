"""What a Sentinel-2 STAC item says: band assets, radiometry, date, tile, processing baseline.

Works on plain item dictionaries (``pystac.Item.to_dict()`` or the JSON of an API)
so that both STAC 1.0 (``eo:bands``, ``raster:bands``) and STAC 1.1 (``bands`` with
``raster:scale`` / ``raster:offset``) items of the common catalogues are understood:
Element 84 Earth Search (assets ``blue``, ``nir``, ``scl``), Microsoft Planetary
Computer (``B02``, ``SCL``) and Copernicus Data Space (``B02_10m``, ``SCL_20m``).
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError

from ..errors import BandError, InputError
from ..io.bands import normalise_band_name
from .remote import RemoteInfo

#: STAC ``eo:common_name`` (and Earth Search asset key) of each Sentinel-2 band.
COMMON_NAMES: dict[str, str] = {
    "coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05", "rededge2": "B06",
    "rededge3": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09", "cirrus": "B10", "swir16": "B11",
    "swir22": "B12",
}
#: Scene classification (SCL) classes counted as cloud: shadow, medium and high probability, thin cirrus.
SCL_CLOUD = (3, 8, 9, 10)
#: SCL class of no-data pixels.
SCL_NODATA = 0
DEFAULT_BANDS = ("B02", "B03", "B04", "B08", "B11")


@dataclass(frozen=True)
class BandRadiometry:
    """How the digital numbers of one asset become reflectance: ``reflectance = dn * scale + offset``."""

    scale: float
    offset: float
    nodata: float | None
    source: str  # where the numbers came from, e.g. "raster:bands of asset blue"

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "offset": self.offset, "nodata": self.nodata, "source": self.source}


def item_id(item: Mapping[str, Any]) -> str:
    return str(item.get("id", "?"))


def item_datetime(item: Mapping[str, Any]) -> _dt.datetime | None:
    """Acquisition time (UTC) of an item: ``datetime``, else ``start_datetime``."""
    props = item.get("properties", {})
    text = props.get("datetime") or props.get("start_datetime")
    if not text:
        return None
    try:
        return _dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def processing_baseline(item: Mapping[str, Any]) -> str | None:
    """The ``s2:processing_baseline`` of an item (e.g. ``"05.11"``), or None."""
    props = item.get("properties", {})
    b = props.get("s2:processing_baseline") or props.get("processing:version")
    return str(b) if b is not None else None


def tile_id(item: Mapping[str, Any]) -> str | None:
    """The MGRS tile (e.g. ``"36SYD"``) from the ``mgrs:`` / ``s2:`` properties or the item id."""
    p = item.get("properties", {})
    if p.get("mgrs:utm_zone") and p.get("mgrs:latitude_band") and p.get("mgrs:grid_square"):
        return f"{int(p['mgrs:utm_zone']):02d}{p['mgrs:latitude_band']}{p['mgrs:grid_square']}"
    for key in ("s2:mgrs_tile", "s2:tile_id", "tile_id"):
        if p.get(key):
            m = re.search(r"T?(\d{2}[C-X][A-Z]{2})", str(p[key]))
            if m:
                return m.group(1)
    m = re.search(r"(?:^|_)T?(\d{2}[C-X][A-Z]{2})(?:_|$)", item_id(item))
    return m.group(1) if m else None


def cloud_cover(item: Mapping[str, Any]) -> float | None:
    """Scene cloud cover in percent (``eo:cloud_cover``), or None."""
    c = item.get("properties", {}).get("eo:cloud_cover")
    return float(c) if c is not None else None


def self_href(item: Mapping[str, Any]) -> str | None:
    for link in item.get("links", []):
        if link.get("rel") == "self" and link.get("href"):
            return str(link["href"])
    return None


def _asset_bands(asset: Mapping[str, Any]) -> list[str]:
    """Sentinel-2 band names an asset declares (``eo:bands`` / ``bands`` names and common names)."""
    out = []
    for entry in list(asset.get("eo:bands") or []) + list(asset.get("bands") or []):
        for key in ("name", "common_name", "eo:common_name"):
            v = entry.get(key)
            if not v:
                continue
            n = normalise_band_name(str(v)) or COMMON_NAMES.get(str(v).lower())
            if n:
                out.append(n)
    return out


def _key_band(key: str) -> str | None:
    k = key.lower()
    if k in COMMON_NAMES:
        return COMMON_NAMES[k]
    m = re.fullmatch(r"(b(?:0?[1-9]|1[0-2]|8a))(?:_\d+m)?", k)
    return normalise_band_name(m.group(1)) if m else None


def _is_cog(key: str, asset: Mapping[str, Any]) -> bool:
    href = str(asset.get("href", "")).split("?")[0].lower()
    return "tiff" in str(asset.get("type", "")).lower() or href.endswith((".tif", ".tiff"))


def find_asset(item: Mapping[str, Any], band: str) -> tuple[str, Mapping[str, Any]]:
    """The asset holding one band (``"B02"`` ... or ``"SCL"``), preferring cloud-optimised GeoTIFFs.

    Returns
    -------
    (key, asset)

    Raises
    ------
    BandError
        When the item has no such asset; the message lists the assets it has.
    """
    assets: Mapping[str, Mapping[str, Any]] = item.get("assets", {})
    want = normalise_band_name(band) or band.upper()
    hits: list[tuple[str, Mapping[str, Any]]] = []
    for key, asset in assets.items():
        if want == "SCL":
            if re.fullmatch(r"scl(?:_\d+m)?", key.lower()):
                hits.append((key, asset))
        elif _key_band(key) == want or (want in _asset_bands(asset) and len(_asset_bands(asset)) == 1):
            hits.append((key, asset))
    if not hits:
        raise BandError(
            f"STAC item {item_id(item)}: no asset for band {band} (assets: {', '.join(sorted(assets)) or 'none'})"
        )
    # COG first, then the finest resolution suffix (B02_10m before B02_20m), then key order.
    def rank(kv: tuple[str, Mapping[str, Any]]) -> tuple[int, int, str]:
        m = re.search(r"_(\d+)m$", kv[0])
        return (0 if _is_cog(*kv) else 1, int(m.group(1)) if m else 0, kv[0])

    return min(hits, key=rank)


def _first_band_fields(asset: Mapping[str, Any]) -> dict[str, Any]:
    rb = asset.get("raster:bands") or []
    if rb:
        return {"scale": rb[0].get("scale"), "offset": rb[0].get("offset"), "nodata": rb[0].get("nodata"),
                "where": "raster:bands"}
    bands = asset.get("bands") or []
    b0 = bands[0] if bands else {}
    scale = b0.get("raster:scale", asset.get("raster:scale"))
    offset = b0.get("raster:offset", asset.get("raster:offset"))
    nodata = b0.get("nodata", asset.get("nodata"))
    return {"scale": scale, "offset": offset, "nodata": nodata, "where": "bands (STAC 1.1)"}


def band_radiometry(item: Mapping[str, Any], key: str) -> BandRadiometry:
    """Scale and offset of one asset, from the item's metadata.

    The asset's ``raster:bands`` (STAC 1.0) or ``raster:scale`` / ``raster:offset``
    (STAC 1.1) win. Without them the processing baseline decides: DN / 10000, minus
    0.1 for baseline 04.00 and later (the +1000 DN offset introduced on 2022-01-25).

    Raises
    ------
    InputError
        When the item states neither scale/offset nor a processing baseline.
    """
    asset = item["assets"][key]
    f = _first_band_fields(asset)
    nodata = f["nodata"]
    nodata = float(nodata) if nodata is not None and str(nodata).lower() != "nan" else nodata
    if f["scale"] is not None or f["offset"] is not None:
        scale = float(f["scale"]) if f["scale"] is not None else 1.0
        offset = float(f["offset"]) if f["offset"] is not None else 0.0
        return BandRadiometry(scale, offset, nodata if nodata is not None else 0.0, f"{f['where']} of asset {key}")
    baseline = processing_baseline(item)
    try:
        number = float(baseline) if baseline else None
    except ValueError:
        number = None
    if number is None:
        raise InputError(
            f"STAC item {item_id(item)}: asset {key} states no scale/offset (raster:bands) and the item no "
            "s2:processing_baseline; cannot convert its digital numbers to reflectance safely"
        )
    offset = -0.1 if number >= 4.0 else 0.0
    return BandRadiometry(1e-4, offset, nodata if nodata is not None else 0.0,
                          f"s2:processing_baseline {baseline} (asset {key} has no raster:bands)")


def summary(item: Mapping[str, Any]) -> dict[str, Any]:
    """Date, tile, platform, baseline and scene cloud cover of an item, for listings and provenance."""
    t = item_datetime(item)
    props = item.get("properties", {})
    return {
        "id": item_id(item),
        "datetime": t.isoformat() if t else None,
        "date": t.date().isoformat() if t else None,
        "platform": props.get("platform"),
        "tile": tile_id(item),
        "processing_baseline": processing_baseline(item),
        "scene_cloud_cover_pct": cloud_cover(item),
        "scene_nodata_pct": props.get("s2:nodata_pixel_percentage"),
        "href": self_href(item),
    }


def asset_grid(item: Mapping[str, Any], key: str) -> RemoteInfo | None:
    """Grid of an asset from the item's projection metadata (``proj:transform``, ``proj:shape``, EPSG code).

    None when the item does not state all of them (the raster's header must then be read).
    """
    asset = item.get("assets", {}).get(key, {})
    props = item.get("properties", {})
    tr = asset.get("proj:transform") or props.get("proj:transform")
    shp = asset.get("proj:shape") or props.get("proj:shape")
    code = (asset.get("proj:code") or props.get("proj:code")
            or (f"EPSG:{asset.get('proj:epsg') or props.get('proj:epsg')}"
                if (asset.get("proj:epsg") or props.get("proj:epsg")) else None))
    if not (tr and shp and code) or len(tr) not in (6, 9) or len(shp) != 2:
        return None
    try:
        crs = CRS.from_user_input(code)
    except CRSError:
        return None
    transform = Affine(*[float(v) for v in tr[:6]])
    if transform.b != 0 or transform.d != 0 or transform.a <= 0 or transform.e >= 0:
        return None  # only north-up grids are trusted from metadata
    f = _first_band_fields(asset)
    rb = (asset.get("raster:bands") or asset.get("bands") or [{}])[0]
    dtype = rb.get("data_type") or asset.get("data_type") or "uint16"
    return RemoteInfo(crs, transform, (int(shp[0]), int(shp[1])), str(dtype), f["nodata"])
