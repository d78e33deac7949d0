"""Windowed fetch over HTTP: bytes moved, time, and retries under faults (run by hand, prints figures).

    python benchmarks/stac.py [--latency-ms 40] [--fault-rate 0.3] [--trials 10]

No internet: a full-size synthetic Sentinel-2 10 m band (10980 x 10980 uint16 COG, 1024 px tiles and
DEFLATE as Earth Search publishes them) is written to a temporary folder and served by a local HTTP
server with range support, an added latency per request (a stand-in for a real round trip), and
optionally a random share of requests answered 503. For the Tartus site (zones + 500 m margin) it prints
the bytes transferred and the time of `imgdiff.stac.read_window`, against the size of the whole file,
and the retries needed under faults, with the result checked against the file.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from imgdiff.errors import NetworkError
from imgdiff.stac import resolve_aoi
from imgdiff.stac.aoi import bounds_window, snapped_bounds
from imgdiff.stac.remote import RetryLog, RetryPolicy, clear_gdal_http_cache, read_window

TILE_ORIGIN = (699960.0, 3900000.0)  # MGRS 36SYD upper-left corner (EPSG:32636)


def make_tile(path: Path) -> None:
    n = 10980
    rng = np.random.default_rng(0)
    with rasterio.open(path, "w", driver="COG", width=n, height=n, count=1, dtype="uint16", crs="EPSG:32636",
                       transform=from_origin(*TILE_ORIGIN, 10, 10), nodata=0, blocksize=1024, compress="deflate",
                       predictor=2, overviews="none") as ds:
        for r0 in range(0, n, 1098):
            rows = min(1098, n - r0)
            block = (1000 + rng.normal(600, 150, (rows, n))).clip(1, 65535).astype(np.uint16)
            ds.write(block, 1, window=rasterio.windows.Window(0, r0, n, rows))


def serve(root: Path, latency_s: float, fault_rate: float, stats: dict) -> ThreadingHTTPServer:
    rnd = random.Random(1)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a: object) -> None:
            pass

        def do_HEAD(self) -> None:  # noqa: N802
            self.do_GET()

        def do_GET(self) -> None:  # noqa: N802
            time.sleep(latency_s)
            stats["requests"] += 1
            f = root / self.path.lstrip("/")
            size = f.stat().st_size
            if self.command == "GET" and rnd.random() < fault_rate:
                stats["faults"] += 1
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            rng = self.headers.get("Range")
            lo, hi = 0, size - 1
            if rng:
                a, b = rng.split("=", 1)[1].split(",")[0].split("-")
                lo, hi = int(a), min(int(b) if b else size - 1, size - 1)
            self.send_response(206 if rng else 200)
            self.send_header("Content-Length", str(hi - lo + 1))
            self.send_header("Accept-Ranges", "bytes")
            if rng:
                self.send_header("Content-Range", f"bytes {lo}-{hi}/{size}")
            self.end_headers()
            if self.command == "GET":
                with open(f, "rb") as fh:
                    fh.seek(lo)
                    self.wfile.write(fh.read(hi - lo + 1))
                stats["bytes"] += hi - lo + 1

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency-ms", type=float, default=40.0)
    ap.add_argument("--fault-rate", type=float, default=0.3)
    ap.add_argument("--trials", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        make_tile(root / "B04.tif")
        size = (root / "B04.tif").stat().st_size
        print(f"synthetic 10 m band: 10980 x 10980 uint16 COG, {size / 1e6:.1f} MB ({time.perf_counter() - t:.1f} s to make)")
        aoi = resolve_aoi(site="tartus")
        with rasterio.open(root / "B04.tif") as ds:
            tr, shape, full = ds.transform, ds.shape, None
            bounds = snapped_bounds(aoi, CRS.from_epsg(32636), (tr.c, tr.f), margin_m=500.0)
            win = bounds_window(bounds, tr, shape, "tile")
            full = ds.read(1, window=win)
        print(f"Tartus window (zones + 500 m, snapped to 60 m): {int(win.width)} x {int(win.height)} px")
        for rate, trials in ((0.0, 1), (args.fault_rate, args.trials)):
            stats = {"requests": 0, "bytes": 0, "faults": 0}
            srv = serve(root, args.latency_ms / 1000.0, rate, stats)
            href = f"http://127.0.0.1:{srv.server_address[1]}/B04.tif"
            times, retries, ok, failed = [], 0, 0, 0
            for _ in range(trials):
                clear_gdal_http_cache()
                log = RetryLog()
                t = time.perf_counter()
                try:
                    got = read_window(href, win, RetryPolicy(attempts=6, backoff_s=0.2), retry_log=log)
                    ok += int(np.array_equal(got, full))
                except NetworkError:
                    failed += 1
                times.append(time.perf_counter() - t)
                retries += log.retries
            srv.shutdown()
            print(f"503 on {rate:.0%} of data requests, {trials} fetch(es): {stats['bytes'] / trials / 1e6:.2f} MB moved "
                  f"per fetch = {stats['bytes'] / trials / size:.1%} of the file, {stats['requests'] / trials:.1f} requests, "
                  f"{stats['faults']} answered 503, {retries} retries of ours, median {np.median(times):.2f} s at "
                  f"{args.latency_ms:.0f} ms latency; identical to the file: {ok}/{trials}, failed: {failed}")


if __name__ == "__main__":
    main()
