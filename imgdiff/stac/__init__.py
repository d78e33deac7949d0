"""Getting the imagery: STAC search and windowed fetch of Sentinel-2 for a site and dates.

::

    from imgdiff.stac import resolve_aoi, search, load_item, fetch_item
    aoi = resolve_aoi(site="tartus")
    found = search(aoi, date(2024, 12, 1), date(2024, 12, 15), max_cloud=20)
    fetch_item(found[0].item, "scenes/tartus-20241205", aoi)
    scene = imgdiff.read_scene("scenes/tartus-20241205")
"""

from __future__ import annotations

from .aoi import resolve_aoi, site_zones
from .catalog import (
    DEFAULT_CATALOG,
    DEFAULT_COLLECTION,
    Acquisition,
    Found,
    SearchNotes,
    ZoneCover,
    items_by_id,
    search,
)
from .fetch import FetchedBand, FetchResult, default_cache_dir, fetch_item, load_item
from .items import BandRadiometry, band_radiometry, find_asset, summary
from .remote import RetryPolicy, read_window
from .resolve import is_stac_ref, resolve_scene_path

__all__ = [
    "DEFAULT_CATALOG", "DEFAULT_COLLECTION", "Acquisition", "BandRadiometry", "FetchResult", "FetchedBand", "Found",
    "RetryPolicy", "SearchNotes", "ZoneCover", "band_radiometry", "default_cache_dir", "fetch_item", "find_asset",
    "is_stac_ref", "items_by_id", "load_item", "read_window", "resolve_aoi", "resolve_scene_path", "search",
    "site_zones", "summary",
]
