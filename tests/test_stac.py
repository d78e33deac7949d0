"""STAC search and windowed fetch, against a local HTTP server: never the internet.

The server (127.0.0.1, random port, stopped after the module) serves the recorded STAC
API responses of ``tests/data/stac`` (landing page, item search, items) and small
cloud-optimised GeoTIFFs made in a temporary folder, with HTTP range support and
injectable faults (5xx, truncated bodies, slow answers, trickled bytes: raster ranges and JSON
answers alike; search pages sent late, ``page_delay``) to exercise the retries and deadlines. Its item search pages its answer (the ``limit`` asked, at most ``page_size``;
``default_page`` without one) and applies a cloud condition sent as a STAC Query extension
``query`` or a CQL2 ``filter`` when its landing page says it conforms to them (``conforms``),
unless told to refuse them with HTTP 400 (``refuse``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin
from shapely.geometry import box, shape

import imgdiff
from imgdiff.errors import BandError, InputError, NetworkError, OutputError
from imgdiff.stac import (
    RetryPolicy,
    band_radiometry,
    fetch_item,
    find_asset,
    load_item,
    resolve_aoi,
    search,
)
from imgdiff.stac.remote import is_retryable, read_window, with_retries
from imgdiff.zones import Zones

DATA = Path(__file__).parent / "data" / "stac"
COLLECTION = "sentinel-2-l2a"
#: Corner and size of the small test "tile" (EPSG:32636, metres), matching tests/data/stac/items.json.
X0, Y0, SIZE = 756000.0, 3871200.0, 12000.0
#: Area of interest around the port of Tartus (lon/lat W, S, E, N).
AOI_BBOX = (35.865, 34.885, 35.885, 34.905)
FAST = RetryPolicy(attempts=4, backoff_s=0.01, timeout_s=5)
NEW, OLD, CLOUDY, HAZY = (
    "S2B_36SYD_20241205_0_L2A", "S2A_36SYD_20211208_0_L2A", "S2A_36SYD_20241210_0_L2A", "S2B_36SYD_20241215_0_L2A",
)
BANDS = {"B02": 10, "B03": 10, "B04": 10, "B08": 10, "B11": 20}


def truth_reflectance(band: str, res: int) -> np.ndarray:
    """Known reflectance of a band over the whole test tile (rows, cols) at ``res`` metres."""
    n = int(SIZE // res)
    y, x = np.mgrid[0:n, 0:n].astype(np.float64) * res
    k = list(BANDS).index(band)
    texture = np.random.default_rng(k).uniform(0.0, 0.02, (n, n))  # keeps the COGs from compressing to nothing
    return 0.03 + 0.02 * k + 0.2 * (0.5 + 0.5 * np.sin(x / 370.0) * np.cos(y / 530.0)) + texture


# --------------------------------------------------------------------------- server
@dataclass
class StacServer:
    """The running test server: its base URL, the faults to inject and a log of requests."""

    base: str
    root: Path
    faults: list[dict] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    #: The parameters of each item-search request (POST body or GET query), with its "method".
    searches: list[dict] = field(default_factory=list)
    #: The landing page's conformance classes; None: the recorded ones (they include the Query extension).
    conforms: list[str] | None = None
    #: Most items per page of an item search (a "next" link to the rest), whatever ``limit`` asks; None: no cap.
    page_size: int | None = None
    #: Items per page when the search sends no ``limit``; None: all (up to ``page_size``).
    default_page: int | None = None
    #: Item-search parameters (``"query"``, ``"filter"``) answered with HTTP 400 although the landing page
    #: advertises them (the search is logged in ``searches`` with ``"refused": True``).
    refuse: set[str] = field(default_factory=set)
    #: Items served without ``eo:cloud_cover``.
    unknown_cloud: set[str] = field(default_factory=set)
    #: Seconds each page of an item search waits before it is sent.
    page_delay: float = 0.0

    def served(self, fragment: str) -> int:
        """Bytes of raster data sent for paths containing ``fragment``."""
        return sum(r["bytes"] for r in self.requests if fragment in r["path"] and r["method"] == "GET")


def _items(base: str, unknown_cloud: set[str] = frozenset()) -> list[dict]:
    text = (DATA / "items.json").read_text().replace("{base}", base)
    feats = json.loads(text)["features"]
    for f in feats:
        if f["id"] in unknown_cloud:
            del f["properties"]["eo:cloud_cover"]
    return feats


#: Conformance classes of an API with item search and neither the Query nor the Filter extension.
PLAIN_API = ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"]
QUERY_EXT = "https://api.stacspec.org/v1.0.0/item-search#query"
FILTER_EXT = "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter"


def _query_passes(query: dict, props: dict) -> bool:
    """A STAC API Query extension condition (lt, lte, gt, gte, eq) on an item's properties; a missing one fails."""
    ops = {"lt": float.__lt__, "lte": float.__le__, "gt": float.__gt__, "gte": float.__ge__, "eq": float.__eq__}
    return all(props.get(name) is not None and ops[op](float(props[name]), float(v))
               for name, cond in query.items() for op, v in cond.items())


def _cql2_text_to_json(text: str) -> dict:
    """The two CQL2-text forms the client sends: ``p <= v`` and ``(p <= v OR p IS NULL)``."""
    m = re.fullmatch(r"\(?\s*([\w:]+)\s*(<=|<|>=|>|=)\s*([-\d.]+)\s*(?:OR\s+([\w:]+)\s+IS\s+NULL\s*)?\)?", text, re.I)
    assert m, f"the test server cannot read the CQL2 text {text!r}"
    cond = {"op": m.group(2), "args": [{"property": m.group(1)}, float(m.group(3))]}
    return {"op": "or", "args": [cond, {"op": "isNull", "args": [{"property": m.group(4)}]}]} if m.group(4) else cond


def _cql2_passes(expr: dict, props: dict) -> bool:
    """A CQL2-JSON expression (and, or, not, isNull, comparisons) on an item's properties."""
    op, args = expr["op"], expr["args"]
    if op in ("and", "or", "not"):
        vals = [_cql2_passes(a, props) for a in args]
        return all(vals) if op == "and" else any(vals) if op == "or" else not vals[0]

    def val(a):
        return props.get(a["property"]) if isinstance(a, dict) else a

    if op == "isNull":
        return val(args[0]) is None
    a, b = val(args[0]), val(args[1])
    if a is None or b is None:
        return False
    return {"<=": a <= b, "<": a < b, ">=": a >= b, ">": a > b, "=": a == b}[op]


def _landing(state: StacServer) -> dict:
    page = json.loads((DATA / "landing.json").read_text().replace("{base}", state.base))
    if state.conforms is not None:
        page["conformsTo"] = list(state.conforms)
    return page


def _make_handler(state: StacServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _fault(self) -> str | None:
            rng = self.headers.get("Range") or "bytes=0-"
            start = int(rng.split("=", 1)[1].split("-")[0] or 0)
            for f in list(state.faults):
                if f.get("until_reopen") and f.get("hits") and f["path"] in self.path and self.command == "HEAD":
                    state.faults.remove(f)  # a client opening the file again sees a healthy server
            for f in list(state.faults):
                if (f["path"] in self.path and self.command in f.get("methods", ("GET",))
                        and start >= f.get("from_byte", 0)):
                    f["hits"] = f.get("hits", 0) + 1
                    if not f.get("until_reopen") and not f.get("persist"):
                        state.faults.remove(f)
                    self.fault_headers = f.get("headers") or {}
                    self.fault_body = json.dumps(f["body"]).encode() if "body" in f else None
                    self.fault_kind = f["kind"]
                    return f["kind"]
            self.fault_kind = None
            return None

        def _send(self, code: int, body: bytes, ctype: str, extra: dict | None = None, *, truncate=False,
                  trickle=False) -> None:
            part = b"" if self.command == "HEAD" else (body[: len(body) // 2] if truncate else body)
            # logged before the client can see the response: a test that checks the log right after
            # its request returns must find it there (the handler thread may run later than the client)
            state.requests.append({"method": self.command, "path": self.path, "range": self.headers.get("Range"),
                                   "bytes": len(part)})
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if part and trickle:  # 32 bytes every 0.2 s until the client hangs up: never a pause of a timeout
                try:
                    for i in range(0, len(part), 32):
                        self.wfile.write(part[i:i + 32])
                        self.wfile.flush()
                        time.sleep(0.2)
                except OSError:
                    self.close_connection = True
                return
            if part:
                try:
                    self.wfile.write(part)
                except OSError:  # the client hung up (a page sent late, past its deadline)
                    self.close_connection = True
                    return
            if truncate:
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)

        def _json(self, obj: object) -> None:
            self._send(200, json.dumps(obj).encode(), "application/json",
                       trickle=getattr(self, "fault_kind", None) == "trickle")

        def _search(self, params: dict, get_query: dict | None = None) -> None:
            """Answer an item search; ``get_query``: the raw query string of a GET (for the next page's link)."""
            state.searches.append({"method": "GET" if get_query is not None else "POST", **params})
            feats = _items(state.base, state.unknown_cloud)
            if params.get("ids"):
                ids = params["ids"].split(",") if isinstance(params["ids"], str) else params["ids"]
                feats = [f for f in feats if f["id"] in ids]
            if params.get("collections"):
                cols = params["collections"]
                cols = cols.split(",") if isinstance(cols, str) else cols
                feats = [f for f in feats if f["collection"] in cols]
            if params.get("datetime"):
                a, b = params["datetime"].split("/")
                lo = dt.datetime.fromisoformat(a.replace("Z", "+00:00")) if a not in ("", "..") else None
                hi = dt.datetime.fromisoformat(b.replace("Z", "+00:00")) if b not in ("", "..") else None
                t = [dt.datetime.fromisoformat(f["properties"]["datetime"].replace("Z", "+00:00")) for f in feats]
                feats = [f for f, ti in zip(feats, t) if (lo is None or ti >= lo) and (hi is None or ti <= hi)]
            if params.get("intersects"):
                g = shape(params["intersects"])
                feats = [f for f in feats if shape(f["geometry"]).intersects(g)]
            conforms = state.conforms if state.conforms is not None else _landing(state)["conformsTo"]
            if params.get("query") and any("#query" in c for c in conforms):
                q = json.loads(params["query"]) if isinstance(params["query"], str) else params["query"]
                feats = [f for f in feats if _query_passes(q, f["properties"])]
            if params.get("filter") and any("#filter" in c for c in conforms):
                expr = params["filter"]
                if params.get("filter-lang", "cql2-text") == "cql2-text":
                    expr = _cql2_text_to_json(expr)
                elif isinstance(expr, str):
                    expr = json.loads(expr)
                feats = [f for f in feats if _cql2_passes(expr, f["properties"])]
            first = int(params.get("token") or 0)
            asked = int(params["limit"]) if params.get("limit") else state.default_page
            size = min([v for v in (asked, state.page_size) if v] or [len(feats) or 1])
            links = []
            if first + size < len(feats):
                if get_query is None:
                    links.append({"rel": "next", "href": f"{state.base}/search", "method": "POST",
                                  "body": {"token": str(first + size)}, "merge": True})
                else:
                    q = {k: v for k, v in get_query.items() if k != "token"}
                    links.append({"rel": "next", "href": f"{state.base}/search?{urlencode({**q, 'token': first + size})}",
                                  "method": "GET"})
            page = feats[first:first + size]
            time.sleep(state.page_delay)
            self._json({"type": "FeatureCollection", "features": page, "links": links,
                        "numberReturned": len(page), "numberMatched": len(feats)})

        def _refused(self, params: dict, method: str) -> bool:
            """Answer 400 to a search sending a parameter of ``state.refuse`` (before any injected fault)."""
            bad = sorted(k for k in state.refuse if params.get(k))
            if not bad:
                return False
            state.searches.append({"method": method, "refused": True, **params})
            self._send(400, json.dumps({"code": "BadRequest", "description": f"unsupported: {bad[0]}"}).encode(),
                       "application/json")
            return True

        def do_POST(self) -> None:  # noqa: N802
            n = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(n) or b"{}")
            if urlparse(self.path).path == "/search" and self._refused(body, "POST"):
                return None
            kind = self._fault()
            if kind and kind.isdigit():
                return self._send(int(kind), self.fault_body or b'{"code": "ServerError"}', "application/json",
                                  self.fault_headers)
            if urlparse(self.path).path == "/search":
                return self._search(body)
            self._send(404, b"{}", "application/json")

        def do_HEAD(self) -> None:  # noqa: N802
            self.do_GET()

        def do_GET(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            if url.path == "/search" and self._refused({k: v[0] for k, v in parse_qs(url.query).items()}, "GET"):
                return None
            kind = self._fault()
            if kind == "slow":
                time.sleep(2.5)
            elif kind and kind.isdigit():
                return self._send(int(kind), self.fault_body or b"error",
                                  "application/json" if self.fault_body else "text/plain", self.fault_headers)
            if url.path in ("/", ""):
                return self._json(_landing(state))
            if url.path == "/conformance":
                return self._json({"conformsTo": _landing(state)["conformsTo"]})
            if url.path == "/search":
                raw = {k: v[0] for k, v in parse_qs(url.query).items()}
                q = dict(raw)
                if "intersects" in q:
                    q["intersects"] = json.loads(q["intersects"])
                return self._search(q, get_query=raw)
            if url.path.startswith(f"/collections/{COLLECTION}/items/"):
                iid = url.path.rsplit("/", 1)[-1]
                hit = [f for f in _items(state.base, state.unknown_cloud) if f["id"] == iid]
                return self._json(hit[0]) if hit else self._send(404, b"{}", "application/json")
            if url.path.startswith("/cogs/"):
                f = state.root / url.path.lstrip("/")
                if not f.is_file():
                    return self._send(404, b"not found", "text/plain")
                data = f.read_bytes()
                rng = self.headers.get("Range")
                if rng and self.command == "GET":
                    a, b = rng.split("=", 1)[1].split(",")[0].split("-")
                    lo, hi = int(a), min(int(b) if b else len(data) - 1, len(data) - 1)
                    return self._send(206, data[lo:hi + 1], "image/tiff",
                                      {"Content-Range": f"bytes {lo}-{hi}/{len(data)}"}, truncate=kind == "truncate",
                                      trickle=kind == "trickle")
                return self._send(200, data, "image/tiff", truncate=kind == "truncate")
            self._send(404, b"not found", "text/plain")

    return Handler


def _write_cog(path: Path, arr: np.ndarray, res: int, block: int = 256) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="COG", width=arr.shape[1], height=arr.shape[0], count=1, dtype=arr.dtype,
                       crs="EPSG:32636", transform=from_origin(X0, Y0, res, res), nodata=0, blocksize=block,
                       compress="deflate", overviews="none") as ds:
        ds.write(arr, 1)


def _scl(cloud_box: tuple[int, int, int, int] | None) -> np.ndarray:
    rng = np.random.default_rng(7)
    scl = rng.choice(np.array([6, 7], np.uint8), (600, 600))  # water, unclassified
    scl[:, 350:] = rng.choice(np.array([4, 5], np.uint8), (600, 250))  # vegetation, bare soil inland
    if cloud_box:
        r0, r1, c0, c1 = cloud_box
        scl[r0:r1, c0:c1] = 9  # cloud, high probability
    return scl


@pytest.fixture(scope="module")
def stac_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StacServer]:
    """A local STAC API + COG server on 127.0.0.1 (random port), stopped after the module."""
    root = tmp_path_factory.mktemp("stac_server")
    offsets = {NEW: 1000, CLOUDY: 1000, HAZY: 1000, OLD: 0}  # DN offset: baseline >= 04.00 adds 1000
    for iid, dn_offset in offsets.items():
        for band, res in BANDS.items():
            dn = np.round(truth_reflectance(band, res) * 10000 + dn_offset).astype(np.uint16)
            _write_cog(root / "cogs" / iid / f"{band}.tif", dn, res)
    _write_cog(root / "cogs" / NEW / "SCL.tif", _scl(None), 20, block=128)
    _write_cog(root / "cogs" / OLD / "SCL.tif", _scl(None), 20, block=128)
    _write_cog(root / "cogs" / CLOUDY / "SCL.tif", _scl((150, 450, 150, 450)), 20, block=128)  # cloud over the port
    _write_cog(root / "cogs" / HAZY / "SCL.tif", _scl((0, 100, 0, 100)), 20, block=128)  # cloud far from the port
    state = StacServer(base="", root=root)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    srv.daemon_threads = True
    state.base = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


@pytest.fixture
def server(stac_server: StacServer, monkeypatch: pytest.MonkeyPatch) -> StacServer:
    """The module's server with no pending fault and an empty request log."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("IMGDIFF_CACHE_DIR", str(stac_server.root / "no-cache-here"))
    from imgdiff.stac.remote import clear_gdal_http_cache

    clear_gdal_http_cache()
    stac_server.faults.clear()
    stac_server.requests.clear()
    stac_server.searches.clear()
    stac_server.conforms = None
    stac_server.page_size = None
    stac_server.default_page = None
    stac_server.refuse = set()
    stac_server.unknown_cloud = set()
    stac_server.page_delay = 0.0
    return stac_server


@pytest.fixture
def aoi() -> Zones:
    return resolve_aoi(bbox=AOI_BBOX)


def _answered(server: StacServer, path: str, n: int) -> None:
    """Wait (at most 5 s) until the server has answered ``n`` requests of ``path``: an answer it was still
    delaying when the client hung up is logged late, and must not be logged into the next test."""
    end = time.monotonic() + 5
    while len([r for r in server.requests if r["path"] == path]) < n and time.monotonic() < end:
        time.sleep(0.05)


def _item(server: StacServer, iid: str) -> dict:
    return load_item(f"{server.base}/collections/{COLLECTION}/items/{iid}", policy=FAST)


# --------------------------------------------------------------------------- item metadata
def test_band_assets_prefer_cogs_and_map_common_names(server):
    item = _item(server, NEW)
    assert find_asset(item, "B02")[0] == "blue"
    assert find_asset(item, "B8")[0] == find_asset(item, "B08")[0] == "nir"
    assert find_asset(item, "B11")[0] == "swir16"
    assert find_asset(item, "SCL")[0] == "scl"
    with pytest.raises(BandError, match="no asset for band B05"):
        find_asset(item, "B05")


def test_radiometry_comes_from_raster_bands_of_the_item(server):
    new, old = _item(server, NEW), _item(server, OLD)
    r = band_radiometry(new, "blue")
    assert (r.scale, r.offset, r.nodata) == (0.0001, -0.1, 0.0)
    assert "raster:bands" in r.source
    assert band_radiometry(old, "blue").offset == 0.0


@pytest.mark.parametrize(("baseline", "offset"), [("05.11", -0.1), ("04.00", -0.1), ("02.14", 0.0)])
def test_radiometry_without_raster_bands_follows_processing_baseline(baseline, offset):
    item = {"id": "x", "properties": {"s2:processing_baseline": baseline},
            "assets": {"B02_10m": {"href": "B02.tif", "type": "image/tiff", "bands": [{"name": "B02"}]}}}
    r = band_radiometry(item, find_asset(item, "B02")[0])
    assert r.scale == pytest.approx(1e-4) and r.offset == pytest.approx(offset)
    assert baseline in r.source


def test_stac_1_1_band_fields_give_scale_and_offset():
    item = {"id": "x", "properties": {}, "assets": {"B04": {"href": "B04.tif", "type": "image/tiff",
                                                            "bands": [{"name": "B04", "nodata": 0,
                                                                       "raster:scale": 2e-4, "raster:offset": -0.2}]}}}
    r = band_radiometry(item, "B04")
    assert (r.scale, r.offset) == (2e-4, -0.2)


def test_radiometry_unknown_without_metadata_is_an_error():
    item = {"id": "x", "properties": {}, "assets": {"B04": {"href": "B04.tif"}}}
    with pytest.raises(InputError, match="no scale/offset"):
        band_radiometry(item, "B04")


# --------------------------------------------------------------------------- search
def test_search_lists_acquisitions_in_dates_best_first_with_zone_cloud(server, aoi):
    found = search(aoi, dt.date(2024, 12, 1), dt.date(2024, 12, 15), catalog=f"{server.base}/", max_cloud=20,
                   policy=FAST)
    # The 2021 item is out of the dates, the 64 % cloudy one above --max-cloud.
    assert [a.id for a in found] == [NEW, CLOUDY]
    best, cloudy = found
    assert best.zone_cover.cloud_fraction == pytest.approx(0.0)
    assert best.zone_cover.nodata_fraction == pytest.approx(0.0)
    assert cloudy.zone_cover.cloud_fraction == pytest.approx(1.0)  # SCL cloud covers the port
    d = best.to_dict()
    assert (d["date"], d["tile"], d["processing_baseline"], d["scene_cloud_cover_pct"]) == (
        "2024-12-05", "36SYD", "05.11", 12.5)
    # Only windows of SCL travelled: far less than the whole SCL raster.
    scl_size = (server.root / "cogs" / NEW / "SCL.tif").stat().st_size
    assert 0 < server.served(f"{NEW}/SCL.tif") < 0.6 * scl_size


def test_search_ranks_zone_cover_before_scene_cloud(server, aoi):
    found = search(aoi, dt.date(2024, 12, 1), dt.date(2024, 12, 31), catalog=f"{server.base}/", policy=FAST)
    ids = [a.id for a in found]
    # HAZY has 64 % scene cloud but none over the port: it beats CLOUDY (8 % scene cloud, all over the port).
    assert ids == [NEW, HAZY, CLOUDY]
    assert found[1].zone_cover.cloud_fraction == pytest.approx(0.0)


def test_zones_beyond_the_tile_edge_count_as_nodata(server, tmp_path):
    # A 2 x 2 km zone straddling the west edge of the test tile: half of it is outside the image.
    edge = Zones({"edge": box(X0 - 1000, 3864000, X0 + 1000, 3866000)}, rasterio.crs.CRS.from_epsg(32636))
    found = search(edge, dt.date(2024, 12, 5), dt.date(2024, 12, 5), catalog=f"{server.base}/", policy=FAST)
    assert [a.id for a in found] == [NEW]
    assert found[0].zone_cover.nodata_fraction == pytest.approx(0.5, abs=0.03)
    assert found[0].zone_cover.cloud_fraction == pytest.approx(0.0)
    res = fetch_item(found[0].item, tmp_path / "s", edge, bands=["B04"], scl=False, policy=FAST)
    assert res.zone_coverage == pytest.approx(0.5, abs=0.01)
    with rasterio.open(tmp_path / "s" / "B04.tif") as ds:
        assert ds.bounds.left == X0  # clipped at the tile edge


def test_search_retries_a_failing_catalogue(server, aoi):
    server.faults += [{"path": "/search", "kind": "503", "methods": ("POST", "GET")}]
    found = search(aoi, dt.date(2024, 12, 1), dt.date(2024, 12, 15), catalog=f"{server.base}/", read_scl=False,
                   policy=FAST)
    assert {a.id for a in found} == {NEW, CLOUDY, HAZY}


def test_search_gives_up_with_a_clear_error(server, aoi):
    server.faults += [{"path": "/search", "kind": "502", "methods": ("POST", "GET")} for _ in range(3)]
    with pytest.raises(NetworkError, match=r"failed after 3 attempt\(s\)"):
        search(aoi, dt.date(2024, 12, 1), dt.date(2024, 12, 15), catalog=f"{server.base}/", read_scl=False,
               policy=RetryPolicy(attempts=3, backoff_s=0.01, timeout_s=5))


def test_search_retries_counts_every_http_attempt_not_times_the_client_library_retries(server, aoi):
    """--retries N means N requests in all: pystac-client's own retries (503 with Retry-After) are off."""
    server.faults += [{"path": "/", "kind": "503", "methods": ("GET",), "headers": {"Retry-After": "0"}}
                      for _ in range(20)]
    with pytest.raises(NetworkError, match=r"failed after 2 attempt\(s\)"):
        search(aoi, dt.date(2024, 12, 1), dt.date(2024, 12, 15), catalog=f"{server.base}/", read_scl=False,
               policy=RetryPolicy(attempts=2, backoff_s=0.01, timeout_s=5))
    assert len(server.requests) == 2  # one landing-page request per attempt, none repeated underneath
    server.faults.clear()


def test_a_hung_catalogue_costs_attempts_times_timeout(aoi, monkeypatch):
    """A catalogue that accepts connections and never answers: N attempts of one timeout each, not 6 N."""
    import socket

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(32)
    listener.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])  # held open, never answered
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(NetworkError, match=r"failed after 2 attempt\(s\)"):
            search(aoi, dt.date(2024, 12, 1), dt.date(2024, 12, 15),
                   catalog=f"http://127.0.0.1:{listener.getsockname()[1]}/", read_scl=False,
                   policy=RetryPolicy(attempts=2, backoff_s=0.01, timeout_s=1))
        elapsed = time.perf_counter() - t0
    finally:
        stop.set()
        t.join(timeout=5)
        for c in accepted:
            c.close()
        listener.close()
    assert len(accepted) == 2
    assert 1.9 < elapsed < 4.0  # 2 attempts x 1 s timeout (+ backoff), not 12 x 1 s


def test_a_catalogue_that_is_not_a_stac_api_is_one_attempt_and_says_so(server, aoi):
    """A JSON document that is no STAC catalogue (here an item's URL given as --catalog) is no network
    failure: asking again cannot mend it, and the message points at --catalog, not at the network."""
    waits: list[float] = []
    with pytest.raises(NetworkError, match=r"not a STAC API with item search .*check --catalog") as e:
        search(aoi, dt.date(2024, 12, 1), dt.date(2024, 12, 15), read_scl=False, policy=FAST, sleep=waits.append,
               catalog=f"{server.base}/collections/{COLLECTION}/items/{NEW}")
    assert waits == [] and len(server.requests) == 1
    assert "check the network" not in str(e.value)


def test_search_says_when_more_items_match_than_the_limit(server, aoi, caplog):
    """--limit cuts the catalogue's answer before the ranking: the best acquisition may be beyond it,
    so the cut is said, not made silently (and not said when everything fitted)."""
    with caplog.at_level("WARNING", logger="imgdiff.stac.catalog"):
        found = search(aoi, dt.date(2021, 1, 1), dt.date(2024, 12, 31), catalog=f"{server.base}/", max_items=2,
                       read_scl=False, policy=FAST)
    assert len(found) == 2
    assert any("more than 2 items match" in r.getMessage() and "--limit" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING", logger="imgdiff.stac.catalog"):
        found = search(aoi, dt.date(2021, 1, 1), dt.date(2024, 12, 31), catalog=f"{server.base}/", max_items=4,
                       read_scl=False, policy=FAST)
    assert len(found) == 4 and not caplog.records


def test_cli_search_retries_1_makes_one_request_and_says_so(server):
    server.faults += [{"path": "/", "kind": "503", "methods": ("GET",), "headers": {"Retry-After": "0"}}
                      for _ in range(10)]
    r = CliRunner().invoke(_cli(), ["search", "--bbox", ",".join(map(str, AOI_BBOX)), "--from", "2024-12-01",
                                    "--to", "2024-12-15", "--catalog", f"{server.base}/", "--retries", "1", "--json"])
    server.faults.clear()
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.startswith("imgdiff: error:") and "failed after 1 attempt(s)" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert len(server.requests) == 1


# --------------------------------------------------------------------------- the cloud condition
WHOLE = (dt.date(2021, 1, 1), dt.date(2024, 12, 31))  # the catalogue in order: NEW 12.5 %, CLOUDY 8.0, HAZY 64.3, OLD 3.2


def test_max_cloud_leaves_out_items_without_cloud_cover_and_counts_them(server, aoi):
    """An item of unknown cloud cover is not an item of little cloud: --max-cloud leaves it out, and says so."""
    server.conforms = PLAIN_API  # filtered here, where the items without eo:cloud_cover are seen and counted
    server.unknown_cloud = {HAZY}
    found = search(aoi, dt.date(2024, 12, 1), dt.date(2024, 12, 15), catalog=f"{server.base}/", max_cloud=70,
                   read_scl=False, policy=FAST)
    assert sorted(a.id for a in found) == sorted([NEW, CLOUDY])
    assert found.notes.unknown_cloud_left_out == 1 and found.notes.cloud_filter == "client"
    kept = search(aoi, dt.date(2024, 12, 1), dt.date(2024, 12, 15), catalog=f"{server.base}/", max_cloud=70,
                  keep_unknown_cloud=True, read_scl=False, policy=FAST)
    assert sorted(a.id for a in kept) == sorted([NEW, CLOUDY, HAZY])
    assert kept.notes.unknown_cloud_left_out == 0
    # without --max-cloud nothing is filtered, whatever the cover
    every = search(aoi, dt.date(2024, 12, 1), dt.date(2024, 12, 15), catalog=f"{server.base}/", read_scl=False,
                   policy=FAST)
    assert len(every) == 3 and every.notes.cloud_filter == "none"


def test_keeping_unknown_cloud_asks_the_server_with_a_cql2_filter_the_query_extension_cannot_say(server, aoi):
    server.conforms = [*PLAIN_API, QUERY_EXT, FILTER_EXT]
    server.unknown_cloud = {HAZY}
    found = search(aoi, dt.date(2024, 12, 1), dt.date(2024, 12, 15), catalog=f"{server.base}/", max_cloud=10,
                   keep_unknown_cloud=True, read_scl=False, policy=FAST)
    assert sorted(a.id for a in found) == sorted([CLOUDY, HAZY])  # NEW's 12.5 % is above 10
    assert found.notes.cloud_filter == "filter"
    sent = server.searches[0]
    assert "query" not in sent and sent["filter-lang"] == "cql2-json"
    assert sent["filter"] == {"op": "or", "args": [
        {"op": "<=", "args": [{"property": "eo:cloud_cover"}, 10]},
        {"op": "isNull", "args": [{"property": "eo:cloud_cover"}]}]}
    # an API with the Query extension only: the condition stays here, unknown covers kept
    server.conforms = [*PLAIN_API, QUERY_EXT]
    server.searches.clear()
    found = search(aoi, dt.date(2024, 12, 1), dt.date(2024, 12, 15), catalog=f"{server.base}/", max_cloud=10,
                   keep_unknown_cloud=True, read_scl=False, policy=FAST)
    assert sorted(a.id for a in found) == sorted([CLOUDY, HAZY]) and found.notes.cloud_filter == "client"
    assert all("query" not in p and "filter" not in p for p in server.searches)


def test_limit_counts_items_under_max_cloud_when_the_server_filters_with_the_query_extension(server, aoi):
    server.page_size = 1
    found = search(aoi, *WHOLE, catalog=f"{server.base}/", max_cloud=10, max_items=2, read_scl=False, policy=FAST)
    assert sorted(a.id for a in found) == sorted([CLOUDY, OLD])  # the two items of 10 % or less, not one of them
    assert server.searches[0]["query"] == {"eo:cloud_cover": {"lte": 10}}
    assert found.notes.cloud_filter == "query" and found.notes.items_read == 2
    assert len(server.searches) == 2  # one page per item: only items that pass travelled


def test_limit_counts_items_under_max_cloud_when_the_server_filters_with_cql2(server, aoi):
    server.conforms = [*PLAIN_API, FILTER_EXT]
    server.page_size = 1
    found = search(aoi, *WHOLE, catalog=f"{server.base}/", max_cloud=10, max_items=2, read_scl=False, policy=FAST)
    assert sorted(a.id for a in found) == sorted([CLOUDY, OLD])
    assert server.searches[0]["filter"] == {"op": "<=", "args": [{"property": "eo:cloud_cover"}, 10]}
    assert found.notes.cloud_filter == "filter" and found.notes.items_read == 2


def test_without_a_server_side_filter_pages_are_read_until_limit_items_pass(server, aoi, caplog):
    """The API cannot filter by cloud: the limit must still count items that pass, not items read
    (the first two items read hold only one of 10 % cloud or less)."""
    server.conforms = PLAIN_API
    server.page_size = 1
    with caplog.at_level("WARNING", logger="imgdiff.stac.catalog"):
        found = search(aoi, *WHOLE, catalog=f"{server.base}/", max_cloud=10, max_items=2, read_scl=False, policy=FAST)
    assert sorted(a.id for a in found) == sorted([CLOUDY, OLD])
    assert all("query" not in p and "filter" not in p for p in server.searches)
    assert found.notes.cloud_filter == "client" and found.notes.items_read == 4 and not found.notes.scan_bound_reached
    assert not caplog.records


def test_reading_pages_for_the_cloud_filter_is_bounded_and_says_when_it_stopped(server, aoi, caplog):
    server.conforms = PLAIN_API
    server.page_size = 1
    with caplog.at_level("WARNING", logger="imgdiff.stac.catalog"):
        found = search(aoi, *WHOLE, catalog=f"{server.base}/", max_cloud=10, max_items=2, max_read=3,
                       read_scl=False, policy=FAST)
    assert [a.id for a in found] == [CLOUDY]  # OLD, the 4th item, is beyond the 3 read
    assert found.notes.scan_bound_reached and found.notes.items_read == 3
    assert len(server.searches) == 4  # the fourth page only showed that more items were there
    assert any("1 of the 3 items read" in r.getMessage() and "no more were read (at most 3)" in r.getMessage()
               for r in caplog.records)


def test_a_catalogue_refusing_post_is_searched_with_get(server, aoi):
    """Some APIs answer POST /search with 405: the search is made again with GET, the cloud condition too."""
    server.faults += [{"path": "/search", "kind": "405", "methods": ("POST",), "persist": True}]
    server.page_size = 1
    found = search(aoi, *WHOLE, catalog=f"{server.base}/", max_cloud=10, max_items=2, read_scl=False, policy=FAST)
    assert sorted(a.id for a in found) == sorted([CLOUDY, OLD])
    assert found.notes.method == "GET"
    assert [p["method"] for p in server.searches] == ["GET", "GET"]  # the 405 is answered before any search
    assert json.loads(server.searches[0]["query"]) == {"eo:cloud_cover": {"lte": 10}}
    posts = [r for r in server.requests if r["method"] == "POST"]
    assert len(posts) == 1  # POST tried once, not once per page or per retry


def test_a_get_search_sends_a_cql2_text_filter(server, aoi):
    server.faults += [{"path": "/search", "kind": "405", "methods": ("POST",), "persist": True}]
    server.conforms = [*PLAIN_API, FILTER_EXT]
    server.unknown_cloud = {HAZY}
    found = search(aoi, *WHOLE, catalog=f"{server.base}/", max_cloud=10, keep_unknown_cloud=True, read_scl=False,
                   policy=FAST)
    assert sorted(a.id for a in found) == sorted([CLOUDY, HAZY, OLD])
    assert server.searches[0]["filter"] == "(eo:cloud_cover <= 10 OR eo:cloud_cover IS NULL)"
    assert server.searches[0]["filter-lang"] == "cql2-text"


def test_a_catalogue_refusing_post_and_get_is_one_line_naming_the_url_and_both_answers(server, aoi):
    server.faults += [{"path": "/search", "kind": "405", "methods": ("POST",), "persist": True},
                      {"path": "/search", "kind": "404", "methods": ("GET",), "persist": True}]
    with pytest.raises(NetworkError) as e:
        search(aoi, *WHOLE, catalog=f"{server.base}/", read_scl=False, policy=FAST, sleep=lambda s: None)
    msg = str(e.value)
    assert f"POST {server.base}/search answered HTTP 405" in msg
    assert f"GET {server.base}/search: HTTP 404" in msg and "not retried" in msg
    assert "\n" not in msg


def test_a_slice_or_copy_of_found_keeps_the_search_notes():
    import copy
    import pickle

    from imgdiff.stac import Acquisition, Found, SearchNotes

    notes = SearchNotes(cloud_filter="client", method="GET", items_read=7, more_match=True)
    found = Found([Acquisition({"id": i}) for i in "abcd"], notes)
    for part in (found[:2], found[1:], found[::-1], found[5:], found.copy(), copy.copy(found),
                 pickle.loads(pickle.dumps(found))):
        assert isinstance(part, Found) and part.notes == notes
    assert [a.id for a in found[:2]] == ["a", "b"] and [a.id for a in found[::-1]] == ["d", "c", "b", "a"]
    assert found[-1].id == "d" and isinstance(found[0], Acquisition)  # an index is the acquisition itself
    assert type(found + found) is list and type(sorted(found, key=lambda a: a.id)) is list  # as documented


def test_page_size_is_sized_to_the_request_within_10_to_100_items():
    from imgdiff.stac.catalog import page_size

    assert page_size(3, 3, "none") == 10 and page_size(3, 100, "query") == 10  # a page costs a request anyway
    assert page_size(31, 200, "filter") == 31  # every item read counts: the items asked
    assert page_size(31, 200, "client") == 62  # filtered here: about twice that
    assert page_size(31, 40, "client") == 41  # ... but not beyond the items read at most (and the one after)
    assert page_size(201, 1005, "client") == 100 and page_size(201, 201, "none") == 100


def test_search_asks_pages_sized_to_the_request_so_filtering_here_takes_one_request_not_one_per_item(server, aoi):
    """A server paging by 1 item when no limit is sent: the 4 items read for 2 that pass come in one page."""
    server.conforms = PLAIN_API
    server.default_page = 1
    found = search(aoi, *WHOLE, catalog=f"{server.base}/", max_cloud=10, max_items=2, read_scl=False, policy=FAST)
    assert sorted(a.id for a in found) == sorted([CLOUDY, OLD]) and found.notes.items_read == 4
    assert len(server.searches) == 1 and server.searches[0]["limit"] == 10
    server.searches.clear()
    search(aoi, *WHOLE, catalog=f"{server.base}/", max_items=200, read_scl=False, policy=FAST)
    assert [p["limit"] for p in server.searches] == [100]


@pytest.mark.parametrize(("extension", "param"), [(QUERY_EXT, "query"), (FILTER_EXT, "filter")])
def test_a_server_refusing_the_cloud_condition_it_advertises_is_searched_again_filtering_here(
        server, aoi, caplog, extension, param):
    """An API whose landing page lists the Query or Filter extension but that answers the condition with
    HTTP 400, and the search without it with items: one warning line saying what the server answered (the
    status and the description of its JSON body), the items filtered here."""
    server.conforms = [*PLAIN_API, extension]
    server.refuse = {param}
    with caplog.at_level("WARNING", logger="imgdiff.stac.catalog"):
        found = search(aoi, *WHOLE, catalog=f"{server.base}/", max_cloud=10, max_items=2, read_scl=False,
                       policy=FAST, sleep=lambda s: None)
    assert sorted(a.id for a in found) == sorted([CLOUDY, OLD]) and found.notes.cloud_filter == "client"
    assert [(param in p, bool(p.get("refused"))) for p in server.searches] == [(True, True), (False, False)]
    warned = [r.getMessage() for r in caplog.records if r.name == "imgdiff.stac.catalog"]
    assert len(warned) == 1 and "\n" not in warned[0]
    assert f"was refused with HTTP 400 (unsupported: {param}) and succeeded without it" in warned[0]
    assert warned[0].endswith("filtering by cloud cover here instead")


def test_the_condition_is_asked_again_when_the_search_without_it_failed_and_is_retried(server, aoi, caplog):
    """The search without the condition answered 503: nothing shows yet that the 400 was about the condition,
    so the next attempt asks it again (refused again, then the search without it succeeds: one warning)."""
    server.conforms = [*PLAIN_API, QUERY_EXT]
    server.refuse = {"query"}
    server.faults += [{"path": "/search", "kind": "503", "methods": ("POST",), "headers": {"Retry-After": "0"}}]
    with caplog.at_level("WARNING", logger="imgdiff.stac.catalog"):
        found = search(aoi, *WHOLE, catalog=f"{server.base}/", max_cloud=10, max_items=2, read_scl=False,
                       policy=FAST, sleep=lambda s: None)
    assert sorted(a.id for a in found) == sorted([CLOUDY, OLD]) and found.notes.cloud_filter == "client"
    # refused, 503 (answered before the search is logged), refused, then the search without the condition
    assert [("query" in p, bool(p.get("refused"))) for p in server.searches] == [(True, True), (True, True),
                                                                                 (False, False)]
    assert len([r for r in server.requests if r["method"] == "POST"]) == 4
    assert len([r for r in caplog.records if r.name == "imgdiff.stac.catalog"]) == 1


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_a_400_that_the_search_without_the_condition_gets_too_is_one_line_naming_both_answers(
        server, aoi, caplog, method):
    """A 400 about something else (here the search's geometry): the search without the cloud condition is
    answered 400 too, so the condition is not blamed and nothing is filtered here: one error line naming
    the search URL and both answers, no warning, not retried."""
    server.conforms = [*PLAIN_API, QUERY_EXT]
    if method == "GET":
        server.faults += [{"path": "/search", "kind": "405", "methods": ("POST",), "persist": True}]
    body = {"code": "InvalidParameterValue", "description": "intersects: not a valid geometry"}
    server.faults += [{"path": "/search", "kind": "400", "methods": (method,), "persist": True, "body": body}]
    with caplog.at_level("WARNING", logger="imgdiff.stac.catalog"), pytest.raises(NetworkError) as e:
        search(aoi, *WHOLE, catalog=f"{server.base}/", max_cloud=10, read_scl=False, policy=FAST,
               sleep=lambda s: None)
    msg = str(e.value)
    assert "\n" not in msg and "not retried" in msg
    assert (f"{method} {server.base}/search with the cloud condition (Query extension) answered HTTP 400 "
            "(intersects: not a valid geometry), then without it: HTTP 400: ") in msg
    assert msg.count("intersects: not a valid geometry") == 2
    assert not [r for r in caplog.records if r.name == "imgdiff.stac.catalog"]
    assert len([r for r in server.requests if r["method"] == method and "/search" in r["path"]]) == 2


def test_short_reason_takes_the_description_of_a_json_error_body_else_the_body_cut_short():
    from pystac_client.exceptions import APIError

    from imgdiff.stac.remote import short_reason

    def answer(body: str, status: int | None = 400) -> APIError:
        e = APIError(body)
        e.status_code = status
        return e

    assert short_reason(answer('{"code": "BadRequest", "description": "unsupported: query"}')) == \
        "HTTP 400 (unsupported: query)"
    assert short_reason(answer('{"detail": "bad filter"}', 422)) == "HTTP 422 (bad filter)"
    assert short_reason(answer('{"code": "BadRequest"}')) == "HTTP 400 (BadRequest)"
    page = short_reason(answer("<html>\n<body>" + "x" * 500 + "</body></html>"))
    assert page.startswith("HTTP 400 (<html> <body>xxx") and page.endswith(" ...)") and len(page) < 150
    assert short_reason(answer("")) == "HTTP 400"


def test_cli_search_against_a_server_refusing_its_cloud_condition_warns_in_one_line_and_lists_the_items(server):
    import logging

    server.conforms = [*PLAIN_API, QUERY_EXT]
    server.refuse = {"query"}
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers = []  # as in a fresh `imgdiff` process: the CLI's own handler on stderr
    try:
        r = CliRunner().invoke(_cli(), ["search", "--bbox", ",".join(map(str, AOI_BBOX)), "--from", "2021-01-01",
                                        "--to", "2024-12-31", "--max-cloud", "10", "--no-scl", "--catalog",
                                        f"{server.base}/", "--json"])
    finally:
        root.handlers, root.level = saved
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert sorted(a["id"] for a in out["acquisitions"]) == sorted([CLOUDY, OLD]) and out["cloud_filter"] == "client"
    warned = [line for line in r.stderr.splitlines() if "the search with the cloud condition" in line]
    assert len(warned) == 1 and warned[0].startswith("imgdiff: WARNING:") and "HTTP 400 (unsupported: query)" in warned[0]


def test_cli_search_says_how_many_items_of_unknown_cloud_were_left_out(server):
    server.conforms = PLAIN_API
    server.unknown_cloud = {HAZY}
    args = ["search", "--bbox", ",".join(map(str, AOI_BBOX)), "--from", "2024-12-01", "--to", "2024-12-15",
            "--max-cloud", "70", "--no-scl", "--catalog", f"{server.base}/"]
    r = CliRunner().invoke(_cli(), args)
    assert r.exit_code == 0, r.output
    assert "1 item(s) without eo:cloud_cover left out; --keep-unknown-cloud keeps them" in r.stderr
    assert HAZY not in r.stdout
    r = CliRunner().invoke(_cli(), [*args, "--json"])
    out = json.loads(r.stdout)
    assert out["unknown_cloud_left_out"] == 1 and out["keep_unknown_cloud"] is False
    assert out["cloud_filter"] == "client" and "eo:cloud_cover" not in r.stderr
    r = CliRunner().invoke(_cli(), [*args, "--json", "--keep-unknown-cloud"])
    out = json.loads(r.stdout)
    assert out["unknown_cloud_left_out"] == 0 and HAZY in {a["id"] for a in out["acquisitions"]}


def test_cli_search_refused_post_and_get_is_one_line_exit_2(server):
    server.faults += [{"path": "/search", "kind": "405", "methods": ("POST", "GET"), "persist": True}]
    r = CliRunner().invoke(_cli(), ["search", "--bbox", ",".join(map(str, AOI_BBOX)), "--from", "2024-12-01",
                                    "--to", "2024-12-15", "--catalog", f"{server.base}/", "--json"])
    assert r.exit_code == 2 and r.stdout == ""
    err = [line for line in r.stderr.splitlines() if line.startswith("imgdiff: error:")]
    assert len(err) == 1 and f"{server.base}/search" in err[0] and "GET" in err[0] and "HTTP 405" in err[0]


# --------------------------------------------------------------------------- windowed reads and retries
def test_window_read_over_http_equals_the_file(server):
    href = f"{server.base}/cogs/{NEW}/B04.tif"
    win = rasterio.windows.Window(300, 400, 200, 150)
    got = read_window(href, win, FAST)
    with rasterio.open(server.root / "cogs" / NEW / "B04.tif") as ds:
        np.testing.assert_array_equal(got, ds.read(1, window=win))


@pytest.mark.parametrize(("fault", "from_byte", "retries"), [("500", 0, 1), ("503", 1, 1), ("truncate", 1, 1),
                                                             ("truncate", 0, None)])
def test_window_read_retries_5xx_and_truncated_transfers(server, fault, from_byte, retries):
    # from_byte 0: the header read fails; 1: reads of tile data fail. A cut header read
    # GDAL 3.10 repairs by itself (it asks again for the bytes it lacks); else ours retries once.
    href = f"{server.base}/cogs/{OLD}/B03.tif"
    # Reads of tile data fail until the file is opened again (GDAL itself falls back from one
    # request for all tiles of the window to one per tile, so a single failed request is not enough).
    server.faults += [{"path": f"{OLD}/B03.tif", "kind": fault, "from_byte": from_byte, "until_reopen": from_byte > 0}]
    waits: list[float] = []
    win = rasterio.windows.Window(500, 500, 300, 300)
    got = read_window(href, win, RetryPolicy(attempts=3, backoff_s=0.5), sleep=waits.append)
    with rasterio.open(server.root / "cogs" / OLD / "B03.tif") as ds:
        np.testing.assert_array_equal(got, ds.read(1, window=win))
    if retries is None:
        assert waits in ([], [0.5])
    else:
        assert waits == [0.5] * retries  # one retry, after the first backoff


def test_window_read_times_out_then_succeeds(server):
    href = f"{server.base}/cogs/{OLD}/B08.tif"
    server.faults += [{"path": f"{OLD}/B08.tif", "kind": "slow", "methods": ("HEAD", "GET")}]
    waits: list[float] = []
    got = read_window(href, rasterio.windows.Window(0, 0, 64, 64), RetryPolicy(attempts=2, backoff_s=0.01, timeout_s=1),
                      sleep=waits.append)
    assert got.shape == (64, 64) and len(waits) == 1


def test_missing_file_is_not_retried(server):
    waits: list[float] = []
    with pytest.raises(NetworkError, match="not retried"):
        read_window(f"{server.base}/cogs/{NEW}/B99.tif", rasterio.windows.Window(0, 0, 8, 8), FAST, sleep=waits.append)
    assert waits == []


def test_backoff_grows_and_is_bounded():
    calls = []

    def op():
        calls.append(1)
        raise OSError("HTTP response code: 503")

    waits: list[float] = []
    with pytest.raises(NetworkError, match="failed after 5 attempt"):
        with_retries(op, "x", RetryPolicy(attempts=5, backoff_s=1, factor=2, max_backoff_s=5), sleep=waits.append)
    assert len(calls) == 5 and waits == [1, 2, 4, 5]
    assert is_retryable(OSError("HTTP response code: 404")) is False
    assert is_retryable(OSError("transfer closed with 1000 bytes remaining to read")) is True


def test_a_refused_request_names_its_http_status_and_a_page_is_cut_short():
    """pystac-client's errors hold only the answer's body ("nope", an HTML page): the message says the status."""

    class APIError(Exception):
        status_code = 404

    with pytest.raises(NetworkError, match=r"STAC search: HTTP 404: nope \(not retried"):
        with_retries(lambda: (_ for _ in ()).throw(APIError("nope")), "STAC search", FAST, sleep=lambda s: None)
    page = "<html><body>" + "Service unavailable. " * 200 + "</body></html>"
    APIError.status_code = 503
    with pytest.raises(NetworkError) as e:
        with_retries(lambda: (_ for _ in ()).throw(APIError(page)), "STAC search", RetryPolicy(attempts=2),
                     sleep=lambda s: None)
    assert "last error: HTTP 503: <html>" in str(e.value) and len(str(e.value)) < 600


def test_a_host_name_that_does_not_resolve_is_one_attempt_and_one_line():
    calls = []

    def op():
        calls.append(1)
        raise OSError("Failed to resolve 'earth-search.aws.element84.com' ([Errno -2] Name or service not known)")

    with pytest.raises(NetworkError, match="host name does not resolve .*not retried"):
        with_retries(op, "STAC search", RetryPolicy(attempts=4), sleep=lambda s: None)
    assert len(calls) == 1
    assert is_retryable(OSError("Temporary failure in name resolution")) is True  # EAI_AGAIN may pass


def test_a_trickling_asset_fails_at_the_deadline_naming_its_url_and_writes_nothing(server, aoi, tmp_path):
    """A server trickling 32 bytes every 0.2 s: each request would run to its 5 s timeout, several requests
    per attempt, 4 attempts. The download's total deadline (1 s) ends it, with one line naming the asset,
    and no band file is left."""
    server.faults += [{"path": f"{NEW}/B04.tif", "kind": "trickle", "from_byte": 1, "persist": True}]
    out = tmp_path / "s"
    t0 = time.perf_counter()
    with pytest.raises(NetworkError) as e:
        fetch_item(_item(server, NEW), out, aoi, bands=["B04"], scl=False,
                   policy=RetryPolicy(attempts=4, backoff_s=0.01, timeout_s=5, deadline_s=1))
    elapsed = time.perf_counter() - t0
    msg = str(e.value)
    assert f"{server.base}/cogs/{NEW}/B04.tif" in msg and "deadline of 1 s" in msg and "\n" not in msg
    assert elapsed < 2.5  # not 4 attempts x 5 s
    assert list(out.iterdir()) == []  # neither the band, nor a temporary file, nor fetch.json


def test_no_attempt_starts_when_its_wait_would_pass_the_deadline():
    calls: list[int] = []
    waits: list[float] = []

    def op():
        calls.append(1)
        raise OSError("HTTP response code: 503")

    from imgdiff.stac.remote import Deadline

    with pytest.raises(NetworkError, match=r"x: not finished within the deadline of 0.5 s \(1 attempt\(s\); last "
                                           r"error: HTTP response code: 503\)"):
        with_retries(op, "x", RetryPolicy(attempts=4, backoff_s=1), sleep=waits.append, deadline=Deadline(0.5))
    assert calls == [1] and waits == []


def _search_past_deadline(server, aoi) -> tuple[str, float]:
    """Search the test catalogue with a 1 s deadline (4 attempts, 5 s timeouts) that it must miss: the one-line
    error message and the seconds it took."""
    t0 = time.perf_counter()
    with pytest.raises(NetworkError) as e:
        search(aoi, *WHOLE, catalog=f"{server.base}/", read_scl=False,
               policy=RetryPolicy(attempts=4, backoff_s=0.01, timeout_s=5, deadline_s=1))
    return str(e.value), time.perf_counter() - t0


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_a_trickled_search_page_fails_at_the_deadline_naming_its_url_and_is_not_retried(server, aoi, method):
    """A catalogue trickling its search answer (32 bytes every 0.2 s): a requests timeout bounds one wait for
    data only, so each attempt would run for minutes. The request's deadline (1 s) ends it, one line naming
    the request, not retried (4 attempts would take 4 s)."""
    if method == "GET":
        server.faults += [{"path": "/search", "kind": "405", "methods": ("POST",), "persist": True}]
    server.faults += [{"path": "/search", "kind": "trickle", "methods": (method,), "persist": True}]
    msg, elapsed = _search_past_deadline(server, aoi)
    url = f"{server.base}/search" + ("?..." if method == "GET" else "")  # a GET's query (its GeoJSON) left out
    assert msg.startswith(f"STAC search {server.base}/ ({COLLECTION}): not finished within the deadline of 1 s")
    assert f"; {method} {url} cut short)" in msg and "\n" not in msg
    assert elapsed < 2.5
    assert len([r for r in server.requests if r["method"] == method and "/search" in r["path"]]) == 1


def test_the_deadline_bounds_a_search_of_pages_each_in_time_together_late_naming_the_catalogue(server, aoi):
    """Four pages of one item, each sent 0.6 s late: every page well within the 1 s deadline, the search 2.4 s.
    The deadline bounds the search whole (each page may take the time left): it fails at about 1 s, in the
    second page, with one line naming the deadline and the catalogue, nothing returned and nothing retried."""
    server.page_size = 1
    server.page_delay = 0.6
    msg, elapsed = _search_past_deadline(server, aoi)
    assert msg.startswith(f"STAC search {server.base}/ ({COLLECTION}): not finished within the deadline of 1 s "
                          f"(all its requests together; POST {server.base}/search cut short)") and "\n" not in msg
    assert "raise --deadline" in msg
    assert elapsed < 1.8
    assert len(server.searches) == 2  # the second page cut short at the deadline, the search not asked again
    _answered(server, "/search", 2)
    server.page_delay = 0.0
    found = search(aoi, *WHOLE, catalog=f"{server.base}/", read_scl=False,
                   policy=RetryPolicy(attempts=1, timeout_s=5, deadline_s=1))
    assert found.notes.items_read == 4  # the same four pages, in time


def test_a_search_waits_for_no_retry_beyond_its_deadline(server, aoi):
    """The deadline counts the search's retries and waits too: a catalogue answering 503 is not asked again
    when the wait before the next attempt (5 s) would pass the 1 s deadline."""
    server.faults += [{"path": "/search", "kind": "503", "methods": ("POST",), "persist": True}]
    waits: list[float] = []
    with pytest.raises(NetworkError) as e:
        search(aoi, *WHOLE, catalog=f"{server.base}/", read_scl=False, sleep=waits.append,
               policy=RetryPolicy(attempts=4, backoff_s=5, timeout_s=5, deadline_s=1))
    assert str(e.value).startswith(f"STAC search {server.base}/ ({COLLECTION}): not finished within the deadline "
                                   "of 1 s (1 attempt(s); last error: ")
    assert waits == [] and len([r for r in server.requests if r["method"] == "POST"]) == 1


def test_a_trickled_item_json_fails_at_the_deadline_naming_its_url(server):
    url = f"{server.base}/collections/{COLLECTION}/items/{NEW}"
    server.faults += [{"path": f"/items/{NEW}", "kind": "trickle", "persist": True}]
    t0 = time.perf_counter()
    with pytest.raises(NetworkError) as e:
        load_item(url, policy=RetryPolicy(attempts=4, backoff_s=0.01, timeout_s=5, deadline_s=1))
    assert time.perf_counter() - t0 < 2.5
    assert str(e.value).startswith(f"GET {url}: not finished within the deadline of 1 s")
    assert len(server.requests) == 1
    server.faults.clear()
    assert load_item(url, policy=RetryPolicy(attempts=1, timeout_s=5, deadline_s=1))["id"] == NEW  # whole in time


# --------------------------------------------------------------------------- fetch
def _assert_reflectance(scene_dir: Path) -> imgdiff.Scene:
    """Reflectance read back from a fetched folder equals the known truth (10 m bands, then B11 at 20 m)."""
    ten = [b for b, r in BANDS.items() if r == 10]
    scene = imgdiff.read_scene(scene_dir, bands=ten)
    for bands, res in ((ten, 10), (["B11"], 20)):
        s = scene if res == 10 else imgdiff.read_scene(scene_dir, bands=bands)
        col, row = round((s.transform.c - X0) / res), round((Y0 - s.transform.f) / res)
        for band in bands:
            got = s.bands[band]
            exp = truth_reflectance(band, res)[row:row + got.shape[0], col:col + got.shape[1]]
            np.testing.assert_allclose(got, exp, atol=6e-5)
    return scene


@pytest.mark.parametrize("iid", [NEW, OLD])
def test_fetch_writes_a_scene_folder_with_reflectance_from_item_offsets(server, aoi, tmp_path, iid):
    item = _item(server, iid)
    res = fetch_item(item, tmp_path / "scene", aoi, bands=list(BANDS), policy=FAST)
    out = tmp_path / "scene"
    assert {p.name for p in out.iterdir()} == {*(f"{b}.tif" for b in BANDS), "SCL.tif", "item.json", "fetch.json"}
    scene = _assert_reflectance(out)  # offsets applied: -0.1 for 05.11, 0 for 03.01
    assert scene.meta["processing_baseline"] == ("05.11" if iid == NEW else "03.01")
    assert scene.meta["radiometry"]["B02"]["offset"] == pytest.approx(-0.1 if iid == NEW else 0.0)
    assert scene.date == dt.date.fromisoformat(res.date.isoformat())
    prov = json.loads((out / "fetch.json").read_text())
    assert prov["item_id"] == iid and prov["item_href"].endswith(f"/items/{iid}")
    assert prov["processing_baseline"] == ("05.11" if iid == NEW else "03.01")
    assert prov["bands"]["B02"]["offset"] == (-0.1 if iid == NEW else 0.0)
    assert prov["bands"]["B02"]["scale"] == 0.0001
    assert json.loads((out / "item.json").read_text())["id"] == iid
    # The window covers the zones plus the margin, snapped to 60 m: all bands cover the same ground.
    with rasterio.open(out / "B02.tif") as a, rasterio.open(out / "B11.tif") as b:
        assert a.bounds == pytest.approx(b.bounds)
        assert a.transform.c % 60 == 0 and a.transform.f % 60 == 0
        assert a.scales == (0.0001,) and a.offsets == (prov["bands"]["B02"]["offset"],)
    aoi_utm = aoi.to_crs(rasterio.crs.CRS.from_epsg(32636)).geometries["bbox"]
    assert box(*a.bounds).contains(aoi_utm.buffer(499))


def test_fetch_reads_only_the_window_not_the_tile(server, aoi, tmp_path):
    fetch_item(_item(server, NEW), tmp_path / "s", aoi, bands=["B04"], scl=False, policy=FAST)
    full = (server.root / "cogs" / NEW / "B04.tif").stat().st_size
    sent = server.served(f"{NEW}/B04.tif")
    assert 0 < sent < 0.5 * full


def test_fetch_resumes_and_keeps_finished_bands(server, aoi, tmp_path):
    item = _item(server, NEW)
    out = tmp_path / "s"
    # The second band fails for good: the first is kept, nothing half-written, no fetch.json yet.
    server.faults += [{"path": f"{NEW}/B03.tif", "kind": "500"} for _ in range(2)]
    with pytest.raises(NetworkError, match="B03.tif"):
        fetch_item(item, out, aoi, bands=["B02", "B03"], scl=False,
                   policy=RetryPolicy(attempts=2, backoff_s=0.01, timeout_s=5))
    assert sorted(p.name for p in out.iterdir()) == ["B02.tif"]
    server.requests.clear()
    res = fetch_item(item, out, aoi, bands=["B02", "B03"], scl=False, policy=FAST)
    assert [b.status for b in res.bands] == ["kept", "downloaded"]
    assert server.served(f"{NEW}/B02.tif") == 0
    assert (out / "fetch.json").is_file()
    _ = imgdiff.read_scene(out)


def test_a_stopped_overwrite_of_the_same_item_does_not_leave_the_folder_looking_whole(server, aoi, tmp_path):
    """Fetching the same item again with another window (--overwrite) replaces B02, then fails on B03: the
    folder holds bands of two windows, so the former fetch.json (whose presence means whole) must be gone."""
    item = _item(server, NEW)
    out = tmp_path / "s"
    fetch_item(item, out, aoi, bands=["B02", "B03"], scl=False, policy=FAST)
    from imgdiff.stac.remote import clear_gdal_http_cache

    clear_gdal_http_cache()  # B03's blocks read by the first fetch must come from the server again
    server.faults += [{"path": f"{NEW}/B03.tif", "kind": "500"} for _ in range(2)]
    with pytest.raises(NetworkError, match="B03.tif"):
        fetch_item(item, out, aoi, bands=["B02", "B03"], scl=False, margin_m=1500.0, overwrite=True,
                   policy=RetryPolicy(attempts=2, backoff_s=0.01, timeout_s=5))
    assert not (out / "fetch.json").exists()
    res = fetch_item(item, out, aoi, bands=["B02", "B03"], scl=False, margin_m=1500.0, overwrite=True, policy=FAST)
    assert [b.status for b in res.bands] == ["kept", "downloaded"]
    assert json.loads((out / "fetch.json").read_text())["bands"]["B03"]["window"] == res.bands[1].window


def test_fetch_reports_retries_in_provenance(server, aoi, tmp_path):
    server.faults += [{"path": f"{NEW}/B08.tif", "kind": k, "from_byte": 1, "until_reopen": True}
                      for k in ("truncate", "503")]
    res = fetch_item(_item(server, NEW), tmp_path / "s", aoi, bands=["B08"], scl=False, policy=FAST)
    assert res.retries == 2 and res.bands[0].retries == 2
    prov = json.loads((tmp_path / "s" / "fetch.json").read_text())
    assert prov["retries"] == 2 and len(prov["retry_reasons"]) == 2


def test_fetch_uses_the_content_cache(server, aoi, tmp_path):
    item = _item(server, OLD)
    fetch_item(item, tmp_path / "a", aoi, bands=["B04"], scl=False, cache_dir=tmp_path / "cache", policy=FAST)
    server.requests.clear()
    res = fetch_item(item, tmp_path / "b", aoi, bands=["B04"], scl=False, cache_dir=tmp_path / "cache", policy=FAST)
    assert res.bands[0].status == "cached" and server.served(f"{OLD}/B04.tif") == 0
    assert (tmp_path / "a" / "B04.tif").read_bytes() == (tmp_path / "b" / "B04.tif").read_bytes()


def test_fetch_refuses_a_folder_of_another_item(server, aoi, tmp_path):
    fetch_item(_item(server, OLD), tmp_path / "s", aoi, bands=["B04"], scl=False, policy=FAST)
    with pytest.raises(OutputError, match="--overwrite"):
        fetch_item(_item(server, NEW), tmp_path / "s", aoi, bands=["B04"], scl=False, policy=FAST)
    fetch_item(_item(server, OLD), tmp_path / "t", aoi, bands=["B03", "B04"], scl=False, policy=FAST)
    res = fetch_item(_item(server, NEW), tmp_path / "t", aoi, bands=["B04"], scl=False, overwrite=True, policy=FAST)
    assert res.item_id == NEW
    # Nothing of the other item is left behind: its B03 is gone, B04 replaced.
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["B04.tif", "fetch.json", "item.json"]
    assert json.loads((tmp_path / "t" / "fetch.json").read_text())["item_id"] == NEW


def test_load_item_by_id_through_the_search_api(server):
    item = load_item(NEW, catalog=f"{server.base}/", collection=COLLECTION, policy=FAST)
    assert item["id"] == NEW
    with pytest.raises(InputError, match="no item NOPE"):
        load_item("NOPE", catalog=f"{server.base}/", collection=COLLECTION, policy=FAST)


@pytest.mark.parametrize("text", ["[1, 2]", '"S2B_36SYD_20241205_0_L2A"', '{"type": "Feature", "assets": {}}',
                                  '{"type": "Feature", "id": "x", "assets": []}'])
def test_an_item_file_that_is_not_a_stac_item_object_is_a_one_line_error(tmp_path, text):
    """A JSON list (a saved search), a bare string, a Feature without an id: one line naming the file, exit 2."""
    f = tmp_path / "item.json"
    f.write_text(text)
    with pytest.raises(InputError, match=r"item\.json: not a STAC item"):
        load_item(str(f))
    r = CliRunner().invoke(_cli(), ["fetch", str(f), "-o", str(tmp_path / "s"), "--bbox", ",".join(map(str, AOI_BBOX)),
                                    "--no-cache"])
    assert r.exit_code == 2 and r.stderr.startswith("imgdiff: error:") and "not a STAC item" in r.stderr
    assert not (tmp_path / "s").exists()


def test_stac_item_urls_resolve_to_fetched_scenes_for_compare(server, tmp_path):
    from imgdiff.stac import is_stac_ref, resolve_scene_path

    before_url = f"{server.base}/collections/{COLLECTION}/items/{OLD}"
    assert is_stac_ref(before_url) and is_stac_ref(NEW) and not is_stac_ref(str(tmp_path))
    before = resolve_scene_path(before_url, bbox=AOI_BBOX, bands=["B03", "B04", "B08"], cache_dir=tmp_path, policy=FAST)
    after = resolve_scene_path(NEW, bbox=AOI_BBOX, bands=["B03", "B04", "B08"], catalog=f"{server.base}/",
                               cache_dir=tmp_path, policy=FAST)
    b, a = imgdiff.read_scene(before), imgdiff.read_scene(after)
    # Same ground, and the same reflectance once each item's own offset is applied (0 in 2021, -0.1 in 2024).
    assert b.transform == a.transform and b.shape == a.shape
    np.testing.assert_allclose(b.bands["B04"], a.bands["B04"], atol=1e-4)
    server.requests.clear()
    assert resolve_scene_path(before_url, bbox=AOI_BBOX, bands=["B03", "B04", "B08"], cache_dir=tmp_path,
                              policy=FAST) == before
    assert server.served("/cogs/") == 0
    with pytest.raises(InputError, match="needs an area"):
        resolve_scene_path(before_url, cache_dir=tmp_path, policy=FAST)


def test_aoi_needs_exactly_one_source():
    with pytest.raises(InputError, match="exactly one"):
        resolve_aoi()
    with pytest.raises(InputError, match="exactly one"):
        resolve_aoi(site="tartus", bbox=AOI_BBOX)
    z = resolve_aoi(bbox=AOI_BBOX)
    assert z.geometries["bbox"].bounds == pytest.approx(AOI_BBOX)


@pytest.mark.parametrize(("bbox", "problem"), [
    ((756000.0, 3871200.0, 768000.0, 3883200.0), "not map units"),   # UTM metres: was an OverflowError in fetch
    ((35.885, 34.905, 35.865, 34.885), "west < east"),                # corners swapped: was read as the same box
    ((170.0, -10.0, -170.0, 10.0), "west < east"),                    # across the antimeridian: was 340 degrees wide
    ((35.865, 34.885, 35.885), "four numbers"),
    ((35.865, float("nan"), 35.885, 34.905), "four numbers"),
])
def test_a_library_bbox_is_checked_as_the_cli_checks_it(bbox, problem):
    with pytest.raises(InputError, match=problem):
        resolve_aoi(bbox=bbox)


@pytest.mark.parametrize("bbox", [
    (756000.0, 3871200.0, 768000.0, 3883200.0), (35.885, 34.905, 35.865, 34.885), (170.0, -10.0, -170.0, 10.0),
    (35.865, 34.885, 35.885), (35.865, float("nan"), 35.885, 34.905), (35.865, 34.885, 35.885, 95.0),
])
def test_a_manifest_bbox_and_a_lon_lat_read_scene_bbox_are_refused_by_the_same_rules_in_the_same_words(bbox):
    """--bbox, resolve_aoi, a watch manifest's bbox: and read_scene's lon/lat bbox share one set of rules
    (imgdiff.io.georeferencing.lonlat_bbox_problem); each message keeps its own context."""
    from rasterio.crs import CRS

    from imgdiff.errors import ArgumentTypeError, GridError
    from imgdiff.io.georeferencing import bbox_window, lonlat_bbox_problem
    from imgdiff.watch import parse_bbox

    problem = lonlat_bbox_problem(bbox)
    assert problem is not None
    with pytest.raises(InputError) as e:
        parse_bbox(list(bbox), "m.yaml")
    assert str(e.value).startswith("m.yaml: bbox [") and problem in str(e.value)
    with pytest.raises(InputError) as e:
        resolve_aoi(bbox=bbox)
    assert problem in str(e.value)
    with pytest.raises((GridError, ArgumentTypeError)) as e:
        bbox_window(bbox, None, CRS.from_epsg(32636), from_origin(X0, Y0, 10, 10), (1200, 1200), "s.tif")
    if len(bbox) == 4 and all(np.isfinite(bbox)):  # four numbers: lon/lat rules; otherwise a wrong type in any CRS
        assert isinstance(e.value, GridError) and str(e.value).startswith("s.tif: bbox (") and problem in str(e.value)
    else:
        assert isinstance(e.value, ArgumentTypeError) and "four numbers" in str(e.value)


# --------------------------------------------------------------------------- CLI
def _cli():
    from imgdiff_cli.main import cli

    return cli


def test_cli_search_json_lists_best_first(server):
    r = CliRunner().invoke(_cli(), ["search", "--bbox", ",".join(map(str, AOI_BBOX)), "--from", "2024-12-01",
                                    "--to", "2024-12-15", "--max-cloud", "20", "--catalog", f"{server.base}/",
                                    "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert [a["id"] for a in out["acquisitions"]] == [NEW, CLOUDY]
    assert out["acquisitions"][1]["zone_cover"]["cloud_fraction"] == pytest.approx(1.0)


def test_cli_search_a_named_site_reports_each_zone(server):
    r = CliRunner().invoke(_cli(), ["search", "--site", "tartus", "--from", "2024-12-01", "--to", "2024-12-15",
                                    "--catalog", f"{server.base}/", "--json"])
    assert r.exit_code == 0, r.output
    first = json.loads(r.stdout)["acquisitions"][0]
    assert first["id"] == NEW
    assert set(first["zone_cover"]["by_zone"]) == set(resolve_aoi(site="tartus").names)
    assert all(z["pixels"] > 0 for z in first["zone_cover"]["by_zone"].values())


def test_cli_search_table(server):
    r = CliRunner().invoke(_cli(), ["search", "--bbox", ",".join(map(str, AOI_BBOX)), "--from", "2024-12-01",
                                    "--to", "2024-12-15", "--catalog", f"{server.base}/"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert "2024-12-05" in lines[1] and "36SYD" in lines[1] and "05.11" in lines[1]


def test_cli_fetch_item_url_then_read(server, tmp_path):
    url = f"{server.base}/collections/{COLLECTION}/items/{NEW}"
    r = CliRunner().invoke(_cli(), ["fetch", url, "-o", str(tmp_path / "s"), "--bbox", ",".join(map(str, AOI_BBOX)),
                                    "--bands", "B02,B03,B04,B08,B11", "--no-cache", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["fetched"][0]["item_id"] == NEW
    _assert_reflectance(tmp_path / "s")


def test_cli_fetch_best_of_a_query(server, tmp_path):
    args = ["fetch", "--bbox", ",".join(map(str, AOI_BBOX)), "--from", "2024-12-01", "--to", "2024-12-15",
            "--bands", "B04", "--no-scl", "--catalog", f"{server.base}/", "--no-cache"]
    r = CliRunner().invoke(_cli(), [*args, "-o", str(tmp_path / "one")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "one" / "fetch.json").read_text())["item_id"] == NEW
    # Several acquisitions: one folder each, named by item id, best first.
    r = CliRunner().invoke(_cli(), [*args, "-o", str(tmp_path / "two"), "--best", "2", "--json"])
    assert r.exit_code == 0, r.output
    assert [f["item_id"] for f in json.loads(r.stdout)["fetched"]] == [NEW, HAZY]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted([NEW, HAZY])


def test_cli_fetch_limit_bounds_the_items_ranked_as_search_limit_does(server, tmp_path, caplog):
    """--limit 2: only the first two items the catalogue returns (NEW, CLOUDY) are ranked, so HAZY, second
    best of the three, is not fetched; fetch and search rank the same items and say the cut the same way."""
    where = ["--bbox", ",".join(map(str, AOI_BBOX)), "--from", "2024-12-01", "--to", "2024-12-15", "--catalog",
             f"{server.base}/", "--limit", "2", "--json"]
    r = CliRunner().invoke(_cli(), ["fetch", *where, "--bands", "B04", "--no-scl", "--no-cache", "--best", "2",
                                    "-o", str(tmp_path / "two")])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert [f["item_id"] for f in out["fetched"]] == [NEW, CLOUDY] and out["search"]["more_match"] is True
    warned = [r.getMessage() for r in caplog.records if r.name == "imgdiff.stac.catalog"]
    assert len(warned) == 1 and "more than 2 items match" in warned[0] and "raise --limit" in warned[0]
    r = CliRunner().invoke(_cli(), ["search", *where])
    assert [a["id"] for a in json.loads(r.stdout)["acquisitions"]] == [NEW, CLOUDY]


def test_cli_fetch_refuses_best_beyond_limit(tmp_path):
    r = CliRunner().invoke(_cli(), ["fetch", "--bbox", ",".join(map(str, AOI_BBOX)), "--from", "2024-12-01", "--to",
                                    "2024-12-15", "--best", "3", "--limit", "2", "-o", str(tmp_path / "s")])
    assert r.exit_code == 2 and "--best 3 is more than --limit 2" in r.stderr
    assert not (tmp_path / "s").exists()


def test_cli_fetch_network_failure_is_one_line_exit_2(server, tmp_path):
    url = f"{server.base}/collections/{COLLECTION}/items/{NEW}"
    server.faults += [{"path": f"/items/{NEW}", "kind": "500"} for _ in range(2)]
    r = CliRunner().invoke(_cli(), ["fetch", url, "-o", str(tmp_path / "s"), "--bbox", ",".join(map(str, AOI_BBOX)),
                                    "--retries", "2", "--no-cache"])
    assert r.exit_code == 2
    assert r.stderr.startswith("imgdiff: error:") and "failed after 2 attempt" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s" / "fetch.json").exists()


def test_cli_fetch_needs_an_area(tmp_path):
    r = CliRunner().invoke(_cli(), ["fetch", "S2B_X", "-o", str(tmp_path / "s")])
    assert r.exit_code == 2 and "exactly one area" in r.stderr


def test_cli_fetch_refuses_search_options_it_would_ignore_with_items_given(tmp_path):
    r = CliRunner().invoke(_cli(), ["fetch", "S2B_X", "-o", str(tmp_path / "s"), "--bbox", ",".join(map(str, AOI_BBOX)),
                                    "--from", "2024-12-01", "--best", "2"])
    assert r.exit_code == 2
    assert "--from, --best only apply to a search" in r.stderr
    assert not (tmp_path / "s").exists()
    r = CliRunner().invoke(_cli(), ["fetch", "S2B_X", "-o", str(tmp_path / "s"), "--bbox", ",".join(map(str, AOI_BBOX)),
                                    "--limit", "200", "--best", "1"])  # given at their defaults: still refused
    assert r.exit_code == 2 and "--best, --limit only apply to a search" in r.stderr


def test_cli_fetch_of_a_trickling_asset_stops_at_the_deadline_one_line_exit_2(server, tmp_path):
    server.faults += [{"path": f"{NEW}/B04.tif", "kind": "trickle", "from_byte": 1, "persist": True}]
    url = f"{server.base}/collections/{COLLECTION}/items/{NEW}"
    r = CliRunner().invoke(_cli(), ["fetch", url, "-o", str(tmp_path / "s"), "--bbox", ",".join(map(str, AOI_BBOX)),
                                    "--bands", "B04", "--no-scl", "--no-cache", "--timeout", "5", "--deadline", "1"])
    assert r.exit_code == 2
    err = [line for line in r.stderr.splitlines() if line.startswith("imgdiff: error:")]
    assert len(err) == 1 and f"/cogs/{NEW}/B04.tif" in err[0] and "deadline of 1 s" in err[0]
    assert list((tmp_path / "s").iterdir()) == []


def test_cli_search_of_a_trickling_catalogue_stops_at_the_deadline_one_line_exit_2(server):
    server.faults += [{"path": "/search", "kind": "trickle", "methods": ("POST",), "persist": True}]
    r = CliRunner().invoke(_cli(), ["search", "--bbox", ",".join(map(str, AOI_BBOX)), "--from", "2024-12-01",
                                    "--to", "2024-12-15", "--no-scl", "--catalog", f"{server.base}/", "--timeout", "5",
                                    "--deadline", "1", "--json"])
    assert r.exit_code == 2 and r.stdout == ""
    err = [line for line in r.stderr.splitlines() if line.startswith("imgdiff: error:")]
    assert len(err) == 1 and f"STAC search {server.base}/ ({COLLECTION}): not finished within the deadline of 1 s" in err[0]
    assert f"POST {server.base}/search cut short" in err[0]


def test_cli_search_of_pages_that_add_up_past_the_deadline_is_one_line_exit_2_no_output(server):
    server.page_size = 1
    server.page_delay = 0.6
    r = CliRunner().invoke(_cli(), ["search", "--bbox", ",".join(map(str, AOI_BBOX)), "--from", "2021-01-01",
                                    "--to", "2024-12-31", "--no-scl", "--catalog", f"{server.base}/", "--timeout", "5",
                                    "--deadline", "1", "--json"])
    _answered(server, "/search", len(server.searches))
    assert r.exit_code == 2 and r.stdout == ""
    err = [line for line in r.stderr.splitlines() if line.startswith("imgdiff: error:")]
    assert len(err) == 1 and f"STAC search {server.base}/ ({COLLECTION}): not finished within the deadline of 1 s" in err[0]


@pytest.mark.parametrize("command", ["search", "fetch"])
def test_timeout_help_says_it_bounds_a_band_request_whole_and_each_wait_of_a_catalogue_request(command):
    """--timeout is GDAL's timeout of a band's request, connect and transfer together, and requests' timeout of a
    catalogue's JSON request, each wait to connect or for data (a trickled answer is ended by --deadline only):
    not the bound of "one HTTP request" alike."""
    r = CliRunner().invoke(_cli(), [command, "--help"])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    found = re.search(r"--timeout INTEGER RANGE (.*?) \[default: 30", text)
    assert found, text
    help_ = found.group(1)
    assert "band or SCL file" in help_ and "in all, connect and transfer" in help_
    assert "catalogue's JSON" in help_ and "for each piece of its answer" in help_ and "--deadline" in help_
    # --retries counts attempts of the search whole (its pages are not retried one by one)
    retries = re.search(r"--retries INTEGER RANGE (.*?) \[default: 4", text)
    assert retries and "the catalogue search as a whole" in retries.group(1), text


def test_cli_fetch_refuses_keep_unknown_cloud_with_items_given(tmp_path):
    r = CliRunner().invoke(_cli(), ["fetch", "S2B_X", "-o", str(tmp_path / "s"), "--bbox", ",".join(map(str, AOI_BBOX)),
                                    "--keep-unknown-cloud"])
    assert r.exit_code == 2 and "--keep-unknown-cloud only apply to a search" in r.stderr
