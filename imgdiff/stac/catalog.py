"""Finding the Sentinel-2 acquisitions of a site with a STAC API (pystac-client), best first."""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rasterio.transform import from_origin
from rasterio.windows import transform as window_transform

from ..errors import ImgdiffError, InputError, NetworkError, NoOverlapError
from ..io.layout import one_line
from ..zones import Zones, inside_mask
from .aoi import aoi_geojson, bounds_window, snapped_bounds
from .items import SCL_CLOUD, SCL_NODATA, asset_grid, find_asset, item_id, summary
from .remote import DEFAULT_POLICY, RetryPolicy, raster_info, read_window, with_retries

log = logging.getLogger(__name__)

#: Element 84 Earth Search: public Sentinel-2 L2A as cloud-optimised GeoTIFFs, no account needed.
DEFAULT_CATALOG = "https://earth-search.aws.element84.com/v1"
DEFAULT_COLLECTION = "sentinel-2-l2a"


@dataclass(frozen=True)
class ZoneCover:
    """Cloud and no-data inside the zones of a site for one acquisition, from its SCL band.

    Fractions are of the zone pixels (20 m SCL pixels whose centre is inside), 0-1.
    """

    cloud_fraction: float
    nodata_fraction: float
    pixels: int
    by_zone: Mapping[str, dict[str, float]] = field(default_factory=dict)

    @property
    def unusable_fraction(self) -> float:
        return self.cloud_fraction + self.nodata_fraction

    def to_dict(self) -> dict[str, Any]:
        return {"cloud_fraction": self.cloud_fraction, "nodata_fraction": self.nodata_fraction,
                "pixels": self.pixels, "by_zone": dict(self.by_zone)}


@dataclass(frozen=True)
class Acquisition:
    """One STAC item found for a site.

    Attributes
    ----------
    item : Mapping
        The STAC item as a dictionary (as the API returned it).
    zone_cover : ZoneCover or None
        Cloud/no-data in the site's zones; None when SCL was not read (or could not be).
    note : str
        Why ``zone_cover`` is missing, when it is.
    """

    item: Mapping[str, Any]
    zone_cover: ZoneCover | None = None
    note: str = ""

    @property
    def id(self) -> str:
        return item_id(self.item)

    def to_dict(self) -> dict[str, Any]:
        d = summary(self.item)
        d["zone_cover"] = self.zone_cover.to_dict() if self.zone_cover else None
        if self.note:
            d["note"] = self.note
        return d


def scl_cover(item: Mapping[str, Any], aoi: Zones, policy: RetryPolicy, *,
              sleep: Callable[[float], None] = time.sleep) -> ZoneCover:
    """Cloud and no-data fractions inside the zones, read by window from the item's SCL asset.

    Only the tiles of the SCL raster covering the zones are fetched (HTTP range requests).
    Parts of the zones outside the image (beyond the tile's edge) count as no-data.
    """
    key, asset = find_asset(item, "SCL")
    href = str(asset["href"])
    info = raster_info(href, policy, sleep=sleep, known=asset_grid(item, key))
    if info.crs is None:
        raise InputError(f"{href}: SCL raster has no CRS")
    res = abs(info.transform.a)
    bounds = snapped_bounds(aoi, info.crs, (info.transform.c, info.transform.f), snap_m=res)
    # The grid of the whole area (possibly beyond the tile), filled with no-data, then the part inside read.
    tr = from_origin(bounds[0], bounds[3], res, res)
    scl = np.full((round((bounds[3] - bounds[1]) / res), round((bounds[2] - bounds[0]) / res)), SCL_NODATA, np.uint8)
    try:
        win = bounds_window(bounds, info.transform, info.shape, href)
    except NoOverlapError:
        win = None
    if win is not None:
        part = read_window(href, win, policy, sleep=sleep, expect=info)
        wtr = window_transform(win, info.transform)
        r0, c0 = round((bounds[3] - wtr.f) / res), round((wtr.c - bounds[0]) / res)
        scl[r0:r0 + part.shape[0], c0:c0 + part.shape[1]] = part
    zones = aoi.to_crs(info.crs)
    masks: dict[str, np.ndarray] = {}
    for name, geom in zones.geometries.items():
        m = inside_mask(geom, tr, scl.shape)
        if not m.any():  # a zone smaller than one SCL pixel: take the pixels it touches
            m = inside_mask(geom, tr, scl.shape, all_touched=True)
        masks[name] = m
    union = np.logical_or.reduce(list(masks.values()))

    def fractions(m: np.ndarray) -> dict[str, float]:
        n = int(m.sum())
        if n == 0:
            return {"cloud_fraction": float("nan"), "nodata_fraction": 1.0, "pixels": 0}
        v = scl[m]
        nodata = (v == SCL_NODATA) | ((v == info.nodata) if info.nodata not in (None, SCL_NODATA) else False)
        return {"cloud_fraction": float(np.isin(v, SCL_CLOUD).sum() / n), "nodata_fraction": float(nodata.sum() / n),
                "pixels": n}

    total = fractions(union)
    return ZoneCover(total["cloud_fraction"], total["nodata_fraction"], int(total["pixels"]),
                     {n: fractions(m) for n, m in masks.items()})


def rank_key(a: Acquisition) -> tuple:
    """Best first: least cloud + no-data in the zones, then least scene cloud, then the latest."""
    zc = a.zone_cover
    unusable = zc.unusable_fraction if zc is not None and np.isfinite(zc.unusable_fraction) else np.inf
    scene = summary(a.item)["scene_cloud_cover_pct"]
    date = summary(a.item)["datetime"] or ""
    return (unusable, scene if scene is not None else np.inf, _neg(date))


def _neg(text: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in text)


def search(
    aoi: Zones,
    start: _dt.date,
    end: _dt.date,
    *,
    catalog: str = DEFAULT_CATALOG,
    collection: str = DEFAULT_COLLECTION,
    max_cloud: float | None = None,
    max_items: int = 200,
    read_scl: bool = True,
    policy: RetryPolicy = DEFAULT_POLICY,
    workers: int = 4,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Acquisition]:
    """Sentinel-2 acquisitions covering the zones between two dates, best first.

    Parameters
    ----------
    aoi : Zones
        The site's zones (any CRS; searched by their union in lon/lat).
    start, end : datetime.date
        First and last day (UTC), both included.
    catalog, collection : str
        STAC API root URL and collection id.
    max_cloud : float, optional
        Drop items whose scene cloud cover (``eo:cloud_cover``, percent) exceeds this.
    max_items : int
        At most this many items are taken from the API (before ``max_cloud``); a warning is logged
        when more match, as the ranking then sees only the first ``max_items`` the API returned.
    read_scl : bool
        Read each item's SCL band over the zones (by window) to measure cloud and no-data there.
    policy : RetryPolicy
        Retries of the catalogue request and the SCL reads.
    workers : int
        Items whose SCL band is read at once (threads).
    sleep : callable
        Waits between retries (``time.sleep``; tests pass a fake).

    Returns
    -------
    list of Acquisition
        Ranked by :func:`rank_key`.

    Raises
    ------
    NetworkError
        The catalogue could not be reached or answered with an error after retries.
    """
    if end < start:
        raise InputError(f"search dates: --to {end} is before --from {start}")
    # one item more than asked: whether the catalogue holds more than the ranking will see
    items = search_items(aoi, start, end, catalog=catalog, collection=collection, max_items=max_items + 1,
                         policy=policy, sleep=sleep)
    if len(items) > max_items:
        items = items[:max_items]
        log.warning("%s (%s): more than %d items match; only the first %d the catalogue returned are "
                    "ranked, so better acquisitions may be left out: narrow the dates or raise --limit",
                    catalog, collection, max_items, max_items)
    if max_cloud is not None:
        items = [it for it in items if (summary(it)["scene_cloud_cover_pct"] or 0.0) <= max_cloud]

    def cover(it: Mapping[str, Any]) -> Acquisition:
        if not read_scl:
            return Acquisition(it)
        try:
            return Acquisition(it, scl_cover(it, aoi, policy, sleep=sleep))
        except ImgdiffError as e:
            log.warning("%s: zone cloud cover unknown: %s", item_id(it), e)
            return Acquisition(it, None, f"SCL not read: {one_line(e)}")

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        found = list(pool.map(cover, items))
    return sorted(found, key=rank_key)


def search_items(
    aoi: Zones, start: _dt.date, end: _dt.date, *, catalog: str = DEFAULT_CATALOG,
    collection: str = DEFAULT_COLLECTION, max_items: int = 200, ids: Sequence[str] | None = None,
    policy: RetryPolicy = DEFAULT_POLICY, sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """Raw STAC item dictionaries from ``catalog`` intersecting the zones between two dates (UTC, inclusive)."""
    when = f"{start.isoformat()}T00:00:00Z/{end.isoformat()}T23:59:59Z"
    return _api_search(catalog, collection, policy, sleep, intersects=aoi_geojson(aoi), datetime=when,
                       max_items=max_items, ids=list(ids) if ids else None)


def items_by_id(ids: Sequence[str], *, catalog: str = DEFAULT_CATALOG, collection: str = DEFAULT_COLLECTION,
                policy: RetryPolicy = DEFAULT_POLICY, sleep: Callable[[float], None] = time.sleep,
                ) -> list[dict[str, Any]]:
    """STAC items of a collection by their ids, in the order asked.

    Raises
    ------
    InputError
        When an id is not in the collection.
    """
    found = {item_id(it): it for it in _api_search(catalog, collection, policy, sleep, ids=list(ids),
                                                   max_items=len(ids) + 10)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise InputError(f"{catalog} ({collection}): no item {', '.join(missing)}; check the id or --catalog")
    return [found[i] for i in ids]


def _api_search(catalog: str, collection: str, policy: RetryPolicy, sleep: Callable[[float], None],
                **params: Any) -> list[dict[str, Any]]:
    from pystac_client import Client
    from pystac_client.errors import ClientTypeError
    from pystac_client.exceptions import APIError
    from pystac_client.stac_api_io import StacApiIO
    from pystac_client.warnings import DoesNotConformTo

    params = {k: v for k, v in params.items() if v is not None}

    def op() -> list[dict[str, Any]]:
        # pystac-client retries each request 5 times by itself (urllib3: connection errors,
        # GET timeouts, 429/503 with Retry-After); switched off so that ``policy.attempts`` is
        # the number of attempts in all, as the error message and --retries say.
        try:
            client = Client.open(catalog, timeout=policy.timeout_s, stac_io=StacApiIO(max_retries=None))
            s = client.search(collections=[collection], **params)
        except (ClientTypeError, DoesNotConformTo) as e:
            # a JSON document that is not a STAC catalogue, or one without item search: no retry mends it
            raise NetworkError(f"{catalog}: not a STAC API with item search ({one_line(e)}); "
                               "check --catalog (e.g. the default, " + DEFAULT_CATALOG + ")") from None
        return [dict(d) for d in s.items_as_dicts()]

    try:
        return with_retries(op, f"STAC search {catalog} ({collection})", policy, sleep=sleep)
    except NetworkError:
        raise
    except APIError as e:  # pragma: no cover - with_retries wraps every error
        raise NetworkError(f"{catalog}: {e}") from None
