"""Finding the Sentinel-2 acquisitions of a site with a STAC API (pystac-client), best first."""

from __future__ import annotations

import datetime as _dt
import logging
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, SupportsIndex, overload

import numpy as np
from rasterio.transform import from_origin
from rasterio.windows import transform as window_transform

from ..errors import ImgdiffError, InputError, NetworkError, NoOverlapError
from ..io.layout import one_line
from ..zones import Zones, inside_mask
from .aoi import aoi_geojson, bounds_window, snapped_bounds
from .items import SCL_CLOUD, SCL_NODATA, asset_grid, cloud_cover, find_asset, item_id, summary
from .remote import (
    DEFAULT_POLICY,
    Deadline,
    RetryPolicy,
    bounded_session,
    http_status,
    raster_info,
    read_window,
    reason_of,
    short_reason,
    with_retries,
)

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


#: Without a cloud condition the server applies, at most this many items per item asked are read from the
#: catalogue (and at least :data:`MIN_SCAN`) while looking for items that pass ``max_cloud`` here.
SCAN_FACTOR = 5
MIN_SCAN = 100
#: Items asked per page of an item search (the ``limit`` parameter): at least :data:`MIN_PAGE` (a page
#: costs a request whatever it holds) and at most :data:`MAX_PAGE` (a page servers commonly allow).
MIN_PAGE = 10
MAX_PAGE = 100


def page_size(max_items: int, max_read: int, mode: str) -> int:
    """Items to ask per page of an item search, sized to what the search will read.

    Where every item read counts (no cloud condition, or the server applies it: ``mode`` ``"none"``,
    ``"query"``, ``"filter"``), ``max_items`` are read; filtering here (``"client"``), about twice that
    (a guess that half pass), up to the ``max_read`` cap and the one item more that shows whether the cap
    stopped the search. Then at least :data:`MIN_PAGE`, at most :data:`MAX_PAGE`: without a page size a
    server sends its own (often 10), and a search filtering here may take a hundred requests.

    Parameters
    ----------
    max_items : int
        Items the search keeps at most.
    max_read : int
        Items it reads at most.
    mode : str
        Where the cloud condition is applied (:func:`cloud_mode`, or ``"none"``).

    Returns
    -------
    int
        The ``limit`` of each page request (items).
    """
    need = max_items if mode != "client" else min(2 * max_items, max_read + 1)
    return max(MIN_PAGE, min(need, MAX_PAGE))


@dataclass(frozen=True)
class SearchNotes:
    """How a search went, besides the acquisitions it found: what a listing should tell.

    Attributes
    ----------
    cloud_filter : str
        Where ``max_cloud`` was applied first: ``"query"`` (the server, STAC API Query extension),
        ``"filter"`` (the server, CQL2 filter), ``"client"`` (here, on the items read; also when the server
        answered the condition it advertises with HTTP 400 and the search without it succeeded) or
        ``"none"`` (no ``max_cloud``). Every item is
        checked here as well.
    method : str
        HTTP method of the item search: ``"POST"``, or ``"GET"`` after the API refused POST (405).
    items_read : int
        Items read from the catalogue.
    unknown_cloud_left_out : int
        Items read without ``eo:cloud_cover`` that ``max_cloud`` left out (a server applying the cloud
        condition drops such items before they are read: they are not counted).
    more_match : bool
        More items pass than ``max_items``: only the first ones the catalogue returned are ranked.
    scan_bound_reached : bool
        The cap on items read (``max_read``) stopped the search before ``max_items`` passed the cloud filter.
    """

    cloud_filter: str = "none"
    method: str = "POST"
    items_read: int = 0
    unknown_cloud_left_out: int = 0
    more_match: bool = False
    scan_bound_reached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"cloud_filter": self.cloud_filter, "search_method": self.method, "items_read": self.items_read,
                "unknown_cloud_left_out": self.unknown_cloud_left_out, "more_match": self.more_match,
                "scan_bound_reached": self.scan_bound_reached}


class Found(list):
    """The acquisitions of a search, best first (a list of :class:`Acquisition`), with its :class:`SearchNotes`.

    A slice (``found[:3]``) and :meth:`copy` are a ``Found`` with the same ``notes``: they tell how the
    search went, whatever part of its answer is kept. Other list operations (``+``, ``sorted``, a
    comprehension) give a plain list, without notes.
    """

    notes: SearchNotes

    def __init__(self, acquisitions: Iterable[Acquisition] = (), notes: SearchNotes | None = None) -> None:
        super().__init__(acquisitions)
        self.notes = notes if notes is not None else SearchNotes()

    @overload
    def __getitem__(self, index: SupportsIndex) -> Acquisition: ...

    @overload
    def __getitem__(self, index: slice) -> Found: ...

    def __getitem__(self, index: SupportsIndex | slice) -> Acquisition | Found:
        got = super().__getitem__(index)
        return Found(got, self.notes) if isinstance(index, slice) else got

    def copy(self) -> Found:
        """A shallow copy, with the same ``notes``."""
        return Found(self, self.notes)


def cloud_passes(item: Mapping[str, Any], max_cloud: float | None, keep_unknown: bool = False) -> bool:
    """Whether an item's scene cloud cover (``eo:cloud_cover``, percent) is at most ``max_cloud``.

    Parameters
    ----------
    item : Mapping
        A STAC item dictionary.
    max_cloud : float or None
        Highest cloud cover kept, in percent; None keeps every item.
    keep_unknown : bool
        Keep items that state no cloud cover (else they are left out: their cover is unknown, not low).
    """
    if max_cloud is None:
        return True
    cover = cloud_cover(item)
    return keep_unknown if cover is None else cover <= max_cloud


def cloud_condition(max_cloud: float, keep_unknown: bool, mode: str, method: str) -> dict[str, Any]:
    """The item-search parameters asking the server for items of at most ``max_cloud`` percent cloud.

    Parameters
    ----------
    max_cloud : float
        Highest scene cloud cover, in percent.
    keep_unknown : bool
        Also ask for items without ``eo:cloud_cover`` (only a CQL2 filter can say so).
    mode : str
        ``"query"`` (STAC API Query extension), ``"filter"`` (CQL2) or ``"client"`` (no parameter).
    method : str
        ``"POST"`` (CQL2-JSON) or ``"GET"`` (CQL2-text).

    Returns
    -------
    dict
        Keyword arguments of pystac-client's ``Client.search``.
    """
    if mode == "query":
        if keep_unknown:
            raise ValueError("the Query extension cannot ask for items without eo:cloud_cover; use a CQL2 filter")
        return {"query": {"eo:cloud_cover": {"lte": max_cloud}}}
    if mode == "filter":
        if method == "GET":
            text = f"eo:cloud_cover <= {max_cloud:g}"
            return {"filter": f"({text} OR eo:cloud_cover IS NULL)" if keep_unknown else text,
                    "filter_lang": "cql2-text"}
        cond: dict[str, Any] = {"op": "<=", "args": [{"property": "eo:cloud_cover"}, max_cloud]}
        if keep_unknown:
            cond = {"op": "or", "args": [cond, {"op": "isNull", "args": [{"property": "eo:cloud_cover"}]}]}
        return {"filter": cond, "filter_lang": "cql2-json"}
    return {}


def cloud_mode(conforms: Callable[[str], bool], keep_unknown: bool) -> str:
    """Where a cloud condition is applied, from the API's conformance classes.

    The Query extension first (widely implemented), a CQL2 filter otherwise, or when items without
    ``eo:cloud_cover`` are to be kept (the Query extension cannot ask for them); ``"client"`` when the
    API offers neither.

    Parameters
    ----------
    conforms : callable
        Whether the API conforms to a pystac-client conformance class name (``"QUERY"``, ``"FILTER"``).
    keep_unknown : bool
        Items without ``eo:cloud_cover`` are to be kept.
    """
    if not keep_unknown and conforms("QUERY"):
        return "query"
    if conforms("FILTER"):
        return "filter"
    return "client"


def search(
    aoi: Zones,
    start: _dt.date,
    end: _dt.date,
    *,
    catalog: str = DEFAULT_CATALOG,
    collection: str = DEFAULT_COLLECTION,
    max_cloud: float | None = None,
    keep_unknown_cloud: bool = False,
    max_items: int = 200,
    max_read: int | None = None,
    read_scl: bool = True,
    policy: RetryPolicy = DEFAULT_POLICY,
    workers: int = 4,
    sleep: Callable[[float], None] = time.sleep,
) -> Found:
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
        Keep only items whose scene cloud cover (``eo:cloud_cover``, percent) is at most this. When the
        API offers the Query extension or a CQL2 filter, the condition is sent with the search, so that
        ``max_items`` counts items that pass it; otherwise pages are read until ``max_items`` pass here
        (at most ``max_read`` items).
    keep_unknown_cloud : bool
        With ``max_cloud``, keep items that state no ``eo:cloud_cover`` (left out by default, and counted
        in ``notes.unknown_cloud_left_out`` of the result).
    max_items : int
        At most this many items are ranked (after ``max_cloud``); a warning is logged when more match,
        as the ranking then sees only the first ``max_items`` the API returned.
    max_read : int, optional
        At most this many items are read from the catalogue while looking for ``max_items`` that pass
        ``max_cloud`` (a warning is logged when this stops the search); default
        ``max(SCAN_FACTOR * (max_items + 1), MIN_SCAN)``.
    read_scl : bool
        Read each item's SCL band over the zones (by window) to measure cloud and no-data there.
    policy : RetryPolicy
        Retries of the catalogue requests and the SCL reads; ``deadline_s`` (seconds) bounds the item
        search whole (its landing page and every page of items, retries and waits included: each
        request may take the time left) and each SCL read.
    workers : int
        Items whose SCL band is read at once (threads).
    sleep : callable
        Waits between retries (``time.sleep``; tests pass a fake).

    Returns
    -------
    Found
        A list of :class:`Acquisition` ranked by :func:`rank_key`, with ``notes`` (:class:`SearchNotes`).

    Raises
    ------
    NetworkError
        The catalogue could not be reached or answered with an error after retries, or the item search
        did not end within ``policy.deadline_s``: one line naming the deadline and ``catalog``, nothing
        returned.
    """
    if end < start:
        raise InputError(f"search dates: --to {end} is before --from {start}")
    if max_read is None:
        max_read = max(SCAN_FACTOR * (max_items + 1), MIN_SCAN)
    when = f"{start.isoformat()}T00:00:00Z/{end.isoformat()}T23:59:59Z"
    # one item more than asked: whether the catalogue holds more than the ranking will see
    scan = _api_search(catalog, collection, policy, sleep, intersects=aoi_geojson(aoi), datetime=when,
                       max_items=max_items + 1, max_read=max(max_read, max_items + 1), max_cloud=max_cloud,
                       keep_unknown_cloud=keep_unknown_cloud)
    items, notes = scan.items, scan.notes
    more = len(items) > max_items
    if more:
        items = items[:max_items]
        log.warning("%s (%s): more than %d items match; only the first %d the catalogue returned are "
                    "ranked, so better acquisitions may be left out: narrow the dates or raise --limit",
                    catalog, collection, max_items, max_items)
    if notes.scan_bound_reached:
        log.warning("%s (%s): %d of the %d items read have eo:cloud_cover <= %g; no more were read (at most %d), "
                    "so matching items further on may be left out: narrow the dates or raise --limit",
                    catalog, collection, len(items), notes.items_read, max_cloud, notes.items_read)
    if notes.unknown_cloud_left_out:
        log.info("%s (%s): %d item(s) without eo:cloud_cover left out (keep_unknown_cloud keeps them)",
                 catalog, collection, notes.unknown_cloud_left_out)
    notes = replace(notes, more_match=more)

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
    return Found(sorted(found, key=rank_key), notes)


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
                                                   max_items=len(ids) + 10).items}
    missing = [i for i in ids if i not in found]
    if missing:
        raise InputError(f"{catalog} ({collection}): no item {', '.join(missing)}; check the id or --catalog")
    return [found[i] for i in ids]


@dataclass(frozen=True)
class _Scan:
    """What one item search read: the items kept, and how (``notes``; ``more_match`` is :func:`search`'s)."""

    items: list[dict[str, Any]]
    notes: SearchNotes


def _api_search(catalog: str, collection: str, policy: RetryPolicy, sleep: Callable[[float], None], *,
                max_items: int, max_read: int | None = None, max_cloud: float | None = None,
                keep_unknown_cloud: bool = False, **params: Any) -> _Scan:
    """Items of an item search, read page by page until ``max_items`` pass ``max_cloud`` (or ``max_read`` are read).

    Pages are asked of :func:`page_size` items. The cloud condition goes to the server when the API
    says it can apply it (:func:`cloud_mode`) and is checked here on every item all the same. An API
    that says so but answers the search with HTTP 400 is searched again without the condition: when
    that search succeeds, its items are filtered here, with a one-line warning saying what the server
    answered (:func:`~imgdiff.stac.remote.short_reason`); when it fails too, the 400 was not (only)
    about the condition, and the error names both answers. POST is tried first; an API answering it
    with 405 is searched with GET (once per search, kept for the retries).

    ``policy.deadline_s`` bounds the search whole, its requests, retries and waits together: one
    :class:`~imgdiff.stac.remote.Deadline` started here, each request's bound the time left
    (:func:`~imgdiff.stac.remote.bounded_session`); past it, :class:`~imgdiff.errors.NetworkError`
    names the deadline and ``catalog`` (not retried).
    """
    from pystac_client import Client
    from pystac_client.errors import ClientTypeError
    from pystac_client.exceptions import APIError
    from pystac_client.stac_api_io import StacApiIO
    from pystac_client.warnings import DoesNotConformTo, PystacClientWarning

    params = {k: v for k, v in params.items() if v is not None}
    max_read = max_items if max_read is None or max_cloud is None else max_read
    method = "POST"
    url = catalog  # the search endpoint, once a search is opened
    what = f"STAC search {catalog} ({collection})"
    deadline = Deadline(policy.deadline_s)  # the whole search: its pages, retries and waits together

    def open_search(client: Any, how: str, mode: str) -> Any:
        nonlocal url
        cond = cloud_condition(max_cloud, keep_unknown_cloud, mode, how) if max_cloud is not None else {}
        with warnings.catch_warnings():  # GET after a 405: pystac-client warns when the landing page lists POST only
            warnings.simplefilter("ignore", PystacClientWarning)
            s = client.search(collections=[collection], method=how, limit=page_size(max_items, max_read, mode),
                              **params, **cond)
        url = s.url
        return s

    def scan(s: Any, mode: str) -> _Scan:
        kept: list[dict[str, Any]] = []
        read = unknown = 0
        bound = False
        for it in s.items_as_dicts():
            if read >= max_read:
                bound = True  # one item more than allowed was there: the cap, not the catalogue, stopped
                break
            read += 1
            if cloud_passes(it, max_cloud, keep_unknown_cloud):
                kept.append(dict(it))
                if len(kept) >= max_items:
                    break
            elif cloud_cover(it) is None:
                unknown += 1
        return _Scan(kept, SearchNotes(cloud_filter=mode, method=s.method, items_read=read,
                                       unknown_cloud_left_out=unknown, scan_bound_reached=bound))

    def search_with(client: Any, mode: str) -> _Scan:
        """One search with the cloud condition of ``mode``: POST, or GET after the API refused POST (405)."""
        nonlocal method
        s = open_search(client, method, mode)
        try:
            return scan(s, mode)
        except APIError as e:
            if method != "POST" or http_status(e) != 405:
                raise
            log.info("%s: POST answered HTTP 405 (method not allowed); searching with GET", s.url)
            method = "GET"
            try:
                return scan(open_search(client, method, mode), mode)
            except APIError as e2:
                if http_status(e2) == 400 and mode in ("query", "filter"):
                    raise  # the GET's answer to the condition: searched again without it (op)
                err = APIError(f"POST {s.url} answered HTTP 405 (method not allowed), then GET {s.url}: "
                               f"{reason_of(e2)}")
                err.status_code = http_status(e2)
                raise err from None

    def op() -> _Scan:
        # pystac-client retries each request 5 times by itself (urllib3: connection errors,
        # GET timeouts, 429/503 with Retry-After); switched off so that ``policy.attempts`` is
        # the number of attempts in all, as the error message and --retries say.
        try:
            stac_io = StacApiIO(max_retries=None)
            bounded_session(policy, stac_io.session, deadline=deadline, what=what)  # each request by the deadline
            client = Client.open(catalog, timeout=policy.timeout_s, stac_io=stac_io)
            mode = "none"
            if max_cloud is not None:
                mode = cloud_mode(lambda name: client.conforms_to(name), keep_unknown_cloud)
            try:
                return search_with(client, mode)
            except APIError as e:
                if mode not in ("query", "filter") or http_status(e) != 400:
                    raise
                with_condition, asked = e, method
            ext = "Query extension" if mode == "query" else "Filter extension, CQL2"
            try:
                found = search_with(client, "client")
            except APIError as e2:
                err = APIError(f"{asked} {url} with the cloud condition ({ext}) answered "
                               f"{short_reason(with_condition)}, then without it: {reason_of(e2)}")
                err.status_code = http_status(e2)
                raise err from None
            log.warning("%s: the search with the cloud condition (%s, which the catalogue lists) was refused with "
                        "%s and succeeded without it; filtering by cloud cover here instead", catalog, ext,
                        short_reason(with_condition))
            return found
        except (ClientTypeError, DoesNotConformTo) as e:
            # a JSON document that is not a STAC catalogue, or one without item search: no retry mends it
            raise NetworkError(f"{catalog}: not a STAC API with item search ({one_line(e)}); "
                               "check --catalog (e.g. the default, " + DEFAULT_CATALOG + ")") from None

    try:
        return with_retries(op, what, policy, sleep=sleep, deadline=deadline, wait_in_thread=False)
    except NetworkError:
        raise
    except APIError as e:  # pragma: no cover - with_retries wraps every error
        raise NetworkError(f"{catalog}: {e}") from None
