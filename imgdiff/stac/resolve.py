"""Scene references that are STAC items: let ``compare``/``verify`` take an item URL or id where a path goes."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError
from ..zones import Zones
from .aoi import aoi_lonlat_bounds, resolve_aoi
from .catalog import DEFAULT_CATALOG, DEFAULT_COLLECTION
from .fetch import PROVENANCE_FILE, default_cache_dir, fetch_item, load_item
from .items import DEFAULT_BANDS
from .remote import DEFAULT_POLICY, RetryPolicy

#: Item ids of Earth Search (``S2B_36SYD_20241205_0_L2A``) and ESA product names (``S2B_MSIL2A_...``).
_ITEM_ID = re.compile(r"^S2[A-D]_(\d{2}[C-X][A-Z]{2}_\d{8}_\d+_L[12][AC]|MSIL[12][AC]_\w+)$")


def is_stac_ref(ref: str) -> bool:
    """Whether a scene argument names a STAC item (an http(s) URL or a Sentinel-2 item id) rather than a path."""
    if Path(ref).exists():
        return False
    return ref.startswith(("http://", "https://")) or bool(_ITEM_ID.match(ref))


def resolve_scene_path(
    ref: str,
    *,
    aoi: Zones | None = None,
    bbox: Sequence[float] | None = None,
    bands: Sequence[str] | None = None,
    catalog: str = DEFAULT_CATALOG,
    collection: str = DEFAULT_COLLECTION,
    cache_dir: str | Path | None = None,
    margin_m: float = 500.0,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> Path:
    """A local scene folder for ``ref``: the path itself, or the fetched window of a STAC item.

    Parameters
    ----------
    ref : str
        A scene path, a STAC item URL, or an item id of ``collection``.
    aoi, bbox : optional
        Area to fetch for a STAC item (zones, or lon/lat W, S, E, N); one is needed then.
    bands : sequence of str, optional
        Bands to fetch (default B02, B03, B04, B08, B11).
    catalog, collection : str
        STAC API root URL and collection id (for an item id).
    margin_m : float
        Ground margin around the area, in metres (context for co-registration).
    policy : RetryPolicy
        Retries and timeouts of the network reads.
    cache_dir : str or Path, optional
        Where fetched scenes are kept (``<cache>/scenes/<item id>-<area hash>``);
        default :func:`imgdiff.stac.default_cache_dir`.

    Returns
    -------
    Path
        A folder :func:`imgdiff.read_scene` reads.
    """
    if not is_stac_ref(ref):
        return Path(ref)
    if aoi is None:
        if bbox is None:
            raise InputError(f"{ref}: a STAC item needs an area to fetch; pass --bbox W,S,E,N (or a site's zones)")
        aoi = resolve_aoi(bbox=bbox)
    item = load_item(ref, catalog=catalog, collection=collection, policy=policy)
    wanted = list(bands) if bands else list(DEFAULT_BANDS)
    area = json.dumps([round(v, 7) for v in aoi_lonlat_bounds(aoi)] + [margin_m, sorted(wanted)])
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = cache / "scenes" / f"{item['id']}-{hashlib.sha256(area.encode()).hexdigest()[:12]}"
    if not (folder / PROVENANCE_FILE).is_file():
        fetch_item(item, folder, aoi, bands=wanted, margin_m=margin_m, cache_dir=cache, policy=policy)
    return folder
