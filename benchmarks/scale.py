"""Scale benchmarks (issue 9), run by hand; prints figures, asserts nothing.

    python benchmarks/scale.py fulltile [--size 10980] [--method METHOD] [--tta 8] [--no-screen] [--workdir ...]
    python benchmarks/scale.py watch [--scenes 50] [--chip 384] [--workers 1,2,4]
    python benchmarks/scale.py site [--objects vessels|aircraft]   # a 4 x 4 km site on the full-tile pair

``fulltile`` builds a synthetic full Sentinel-2 tile pair (10 m B02 B03 B04 B08 at size x size,
20 m B11 B12 at size/2) by mirror-padding the real OSCD Beirut bands (before and after dates)
from the shared data folder, writes them as tiled deflate GeoTIFFs (UTM 36N, 10 m), then times

* reading every input band with rasterio alone (the floor),
* ``imgdiff.tiles.compare_tiled`` (2 threads) in a child process, with its peak RSS; the ratio to
  the read time uses the time of the call (the read is timed in a process that has imported
  rasterio already); the child's whole wall time, with Python start-up and imports, is printed too,
* ``imgdiff.tiles.detect_tiled`` with the vessel detector (2 threads, one network each; scene-wide
  input levels; the :func:`imgdiff.tiles.vessel_screen` cascade unless ``--no-screen``) in a child
  process, with its peak RSS.

Each child's CPU seconds are printed too, with the load average: on a busy machine the wall times
grow, the CPU seconds do not (about twice the wall time of a quiet 2-core run when both cores work).
Note that the synthetic tile (Beirut mirrored about 11 x 11 times) has far more coastline than a real
tile: the network sees about half of its area (marked blocks plus 48 px context, grouped into windows by
:func:`imgdiff.tiles.plan_windows`), much more than on an open-sea or inland tile. ``--tta 4`` times the
``imgdiff detect --tta 4`` option (half the network passes).

``watch`` cuts ``--scenes`` chips out of the real sen2ships and OSCD scenes (each a dated band
folder, with small shifts), writes a manifest and times ``imgdiff.watch.run_watch`` on a dask
LocalCluster with 1, 2 and 4 worker processes (4 on 2 cores are oversubscribed; fresh output folder
each, so nothing is cached), ``--repeat`` times interleaved, and prints the median wall times and
their ratios. Every local worker gets one core (OpenCV and BLAS single-threaded), whatever the number
of workers.
Run with ``nice``: the machine is shared.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from imgdiff.data import data_dir

BANDS_10 = ("B02", "B03", "B04", "B08")
BANDS_20 = ("B11", "B12")
PROFILE = {"driver": "GTiff", "dtype": "uint16", "count": 1, "crs": "EPSG:32636", "tiled": True,
           "blockxsize": 512, "blockysize": 512, "compress": "deflate", "predictor": 2, "nodata": 0}


def _mirror_tile(src: np.ndarray, size: int) -> np.ndarray:
    reps = int(np.ceil(size / min(src.shape))) + 1
    big = np.pad(src, ((0, reps * src.shape[0]), (0, reps * src.shape[1])), mode="symmetric")
    return np.ascontiguousarray(big[:size, :size])


def build_pair(workdir: Path, size: int) -> tuple[Path, Path]:
    """Write before/ and after/ band folders of a synthetic full tile; reuse them if present."""
    oscd = data_dir() / "oscd" / "beirut"
    out = []
    for date in ("before", "after"):
        folder = workdir / f"tile{size}" / date
        out.append(folder)
        if (folder / "B12.tif").is_file():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        for b in BANDS_10 + BANDS_20:
            res = 10 if b in BANDS_10 else 20
            n = size if res == 10 else size // 2
            with rasterio.open(oscd / date / f"{b}.tif") as ds:
                arr = _mirror_tile(ds.read(1), n)
            arr[arr == 0] = 1
            prof = dict(PROFILE, width=n, height=n, transform=from_origin(600000, 3900000, res, res))
            tmp = folder / f".{b}.tif.part"
            with rasterio.open(tmp, "w", **prof) as ds:
                ds.write(arr, 1)
            tmp.rename(folder / f"{b}.tif")
    return out[0], out[1]


def read_time(folders: list[Path]) -> float:
    t0 = time.perf_counter()
    for f in folders:
        for p in sorted(f.glob("B*.tif")):
            with rasterio.open(p) as ds:
                ds.read(1)
    return time.perf_counter() - t0


def child(code: str) -> tuple[float, float, str]:
    """Run Python code in a child process; (wall seconds, peak RSS in GB, stdout + its CPU seconds and load).

    The CPU seconds (user + system of the child) do not depend on what else runs on the machine:
    on a quiet 2-core machine the wall time would be about CPU / 2 when both cores are kept busy.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode:
        print(r.stderr[-3000:])
        raise SystemExit(f"child failed ({r.returncode})")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    peak = max(after.ru_maxrss, before.ru_maxrss)
    return wall, peak / 1024 / 1024, f"{r.stdout.strip()}; CPU {cpu:.1f} s; load {_load()}"


def fulltile(args: argparse.Namespace) -> None:
    wd = Path(args.workdir)
    t0 = time.perf_counter()
    b, a = build_pair(wd, args.size)
    print(f"synthetic pair {args.size} x {args.size} px (10 m: {', '.join(BANDS_10)}; 20 m: {', '.join(BANDS_20)}) "
          f"ready in {time.perf_counter() - t0:.1f} s at {b.parent}")
    read_time([b, a])  # warm the page cache so both sides are timed alike
    t_read = min(read_time([b, a]) for _ in range(2))
    print(f"rasterio alone reads all 12 input bands: {t_read:.1f} s (one thread; load {_load()})")
    if not args.skip_compare:
        out = wd / f"out{args.size}-{args.method}"
        shutil.rmtree(out, ignore_errors=True)
        code = (f"import json, time; from imgdiff.tiles import compare_tiled; t0 = time.perf_counter(); "
                f"r = compare_tiled({str(b)!r}, {str(a)!r}, {str(out)!r}, method={args.method!r}, "
                f"workers={args.workers}); s = time.perf_counter() - t0; "
                "print(json.dumps({'seconds': round(s, 2), 'tiles': r['tiling']['tiles'], "
                "'method': r['change']['method'], 'changed_fraction': r['change']['changed_fraction'], "
                "'dx': r['coregistration']['dx'], 'dy': r['coregistration']['dy']}))")
        wall, rss, info = child(code)
        call = json.loads(info.split(";")[0])["seconds"]
        # like for like: the read time is measured in a process with rasterio already imported, so the
        # ratio uses the time of the compare_tiled call (the child's wall time adds Python start-up and imports)
        print(f"compare_tiled ({args.workers} threads): {call:.1f} s = {call / t_read:.2f} x read time "
              f"({wall:.1f} s = {wall / t_read:.2f} x with the child's start-up and imports); "
              f"peak RSS {rss:.2f} GB; {info}")
    if not args.skip_detect:
        screen = "None" if args.no_screen else "vessel_screen"
        code = ("import json, time; from functools import partial; "
                "from imgdiff.tiles import detect_tiled, vessel_inputs, vessel_screen; "
                f"from imgdiff.detect.vessels import detect_vessels; bands = {list(BANDS_10)!r}; t0 = time.perf_counter(); "
                f"lv, hz = vessel_inputs({str(a)!r}, bands); t1 = time.perf_counter(); "
                f"d = detect_tiled({str(a)!r}, partial(detect_vessels, levels=lv, haze=hz, tta={args.tta}), bands=bands, "
                f"workers={args.workers}, detector_thread_safe=True, screen={screen}); "
                "print(json.dumps({'detections': len(d), 'levels_s': round(t1 - t0, 1)}))")
        wall, rss, info = child(code)
        print(f"detect_tiled vessels ({args.workers} threads, tta {args.tta}, "
              f"{'no screen' if args.no_screen else 'screened'}): {wall:.1f} s; peak RSS {rss:.2f} GB; {info}")


def site(args: argparse.Namespace) -> None:
    """A site of 4 x 4 km at the centre of the synthetic full-tile pair: ``compare --zones`` (the verify
    report without claims) reads only the zones' window plus 2 km (:func:`imgdiff.claims.read_for_zones`)."""
    wd = Path(args.workdir)
    b, a = build_pair(wd, args.size)
    code = ("import json, time; from rasterio.warp import transform; from imgdiff.claims import survey; "
            "from imgdiff.tiles import source_grid; from imgdiff.zones import zones_from_geojson; "
            f"g = source_grid({str(b)!r}); cx, cy = g.transform * (g.width / 2, g.height / 2); "
            "xs, ys = [cx - 2000, cx + 2000, cx + 2000, cx - 2000, cx - 2000], [cy - 2000, cy - 2000, cy + 2000, cy + 2000, cy - 2000]; "
            "lon, lat = transform(g.crs, 'EPSG:4326', xs, ys); "
            "z = zones_from_geojson({'type': 'FeatureCollection', 'features': [{'type': 'Feature', 'properties': "
            "{'name': 'harbour'}, 'geometry': {'type': 'Polygon', 'coordinates': [[list(p) for p in zip(lon, lat)]]}}]}); "
            f"t0 = time.perf_counter(); v = survey({str(b)!r}, {str(a)!r}, z, objects=[{args.objects!r}]); "
            "print(json.dumps({'seconds': round(time.perf_counter() - t0, 1), 'window_px': list(v.result.grid.shape)}))")
    wall, rss, info = child(code)
    print(f"site of 4 x 4 km on the {args.size} px tile pair, {args.objects}: {wall:.1f} s in all; peak RSS {rss:.2f} GB; {info}")


def _load() -> str:
    import os

    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def build_chips(workdir: Path, n: int, chip: int) -> Path:
    """``n`` dated band folders cut from real scenes (shifted crops of sen2ships ports), and a manifest."""
    root = workdir / f"chips{n}x{chip}"
    manifest = root / "watch.yaml"
    if manifest.is_file():
        return manifest
    ports = sorted((data_dir() / "sen2ships").iterdir())
    rng = np.random.default_rng(0)
    lines = ["site: benchmark", "detector: vessels", "scenes:"]
    day = dt.date(2024, 1, 1)
    port = next(p for p in ports if p.is_dir())
    files = {b: next(port.glob(f"*_{b}_(Raw).tiff")) for b in BANDS_10}
    arrays = {}
    for b, f in files.items():
        with rasterio.open(f) as ds:
            arrays[b] = ds.read(1)
            tr, crs = ds.transform, ds.crs
    h, w = arrays["B02"].shape
    y0, x0 = (h - chip) // 2, (w - chip) // 2
    for i in range(n):
        dy, dx = rng.integers(-2, 3, size=2)
        folder = root / f"s{i:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for b, arr in arrays.items():
            crop = arr[y0 + dy:y0 + dy + chip, x0 + dx:x0 + dx + chip]
            noisy = np.clip(crop.astype(np.float32) * rng.normal(1, 0.01) + rng.normal(0, 20, crop.shape), 1, 65535)
            with rasterio.open(folder / f"{day + dt.timedelta(days=5 * i)}_{b}_(Raw).tiff", "w", driver="GTiff",
                               width=chip, height=chip, count=1, dtype="uint16", crs=crs,
                               transform=tr * tr.translation(x0, y0)) as ds:
                ds.write(noisy.astype(np.uint16), 1)
        lines.append(f"  - {{date: {day + dt.timedelta(days=5 * i)}, path: {folder.name}}}")
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def watch(args: argparse.Namespace) -> None:
    from imgdiff.watch import read_manifest, run_watch

    wd = Path(args.workdir)
    manifest = build_chips(wd, args.scenes, args.chip)
    m = read_manifest(manifest)
    print(f"{len(m.scenes)} scene chips of {args.chip} x {args.chip} px ({manifest.parent})")
    counts = [int(v) for v in args.workers.split(",")]
    times: dict[int, list[float]] = {n: [] for n in counts}
    for rep in range(args.repeat):
        for n in counts:  # interleaved, so a change of machine load hits every worker count alike
            out = wd / f"watch-out-{n}"
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.perf_counter()
            res = run_watch(m, out, workers=n)
            times[n].append(time.perf_counter() - t0)
            task_s = sum(r.get("seconds") or 0 for r in res.results)
            print(f"run {rep + 1}: watch, LocalCluster {n} worker(s): {times[n][-1]:.1f} s wall "
                  f"(tasks {task_s:.1f} s of work), {res.summary['scenes_ok']} ok, "
                  f"{res.summary['scenes_failed']} failed, {len(res.slots)} slots; load {_load()}")
    med = {n: float(np.median(t)) for n, t in times.items()}
    if 1 in med:
        for n, t in med.items():
            if n != 1:
                ratios = [a / b for a, b in zip(times[1], times[n])]
                print(f"speed-up {n} workers vs 1 (median of {args.repeat} runs): {med[1] / t:.2f}x "
                      f"(per run: {', '.join(f'{r:.2f}' for r in ratios)})")
    print(json.dumps({str(k): round(v, 2) for k, v in med.items()}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fulltile")
    f.add_argument("--size", type=int, default=10980)
    f.add_argument("--method", default=None, help="change method (default: the library's default)")
    f.add_argument("--workers", type=int, default=2)
    f.add_argument("--skip-compare", action="store_true")
    f.add_argument("--skip-detect", action="store_true")
    f.add_argument("--tta", type=int, default=8, help="vessel network passes (the detector's default: 8)")
    f.add_argument("--no-screen", action="store_true", help="run the network on every window (no cascade)")
    f.add_argument("--workdir", default="/tmp/imgdiff-scale")
    w = sub.add_parser("watch")
    w.add_argument("--scenes", type=int, default=50)
    w.add_argument("--chip", type=int, default=384)
    w.add_argument("--workers", default="1,2,4")
    w.add_argument("--repeat", type=int, default=3, help="runs per worker count (the median is reported)")
    w.add_argument("--workdir", default="/tmp/imgdiff-scale")
    s = sub.add_parser("site")
    s.add_argument("--size", type=int, default=10980)
    s.add_argument("--objects", default="vessels", choices=["vessels", "aircraft"])
    s.add_argument("--workdir", default="/tmp/imgdiff-scale")
    args = p.parse_args()
    {"fulltile": fulltile, "watch": watch, "site": site}[args.cmd](args)


if __name__ == "__main__":
    main()
