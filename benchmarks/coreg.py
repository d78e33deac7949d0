"""Co-registration benchmark: imgdiff vs scikit-image (and AROSICS when installed), and a full-tile timing.

Run by hand (it takes a few minutes; never in the tests)::

    /work/venv/bin/python benchmarks/coreg.py            # accuracy + full tile
    /work/venv/bin/python benchmarks/coreg.py --no-tile  # accuracy only
    /work/venv/bin/python benchmarks/coreg.py --edges    # shifts at and just beyond max_shift only

Accuracy cases (all with exact truth, see imgdiff/evaluate/coreg.py):

* same-date: OSCD red bands taken as the finer image, degraded twice (factor 4,
  different crop phase, PSF, gain, noise);
* cross-date: real OSCD pairs with the after image moved by known shifts (cubic spline),
  differential truth;
* edges (``--edges``): the same real pairs moved to a total shift of exactly ``max_shift`` (5 px) along
  an axis, and to 5.2-5.45 px: the first must be recovered with its tie points, the second must fail
  with an error that names ``--max-shift``;
* full tile: a 10980 x 10980 px pair made by mirror-tiling a real OSCD band, the
  target moved by a known shift (cubic spline); time of ``imgdiff coregister``
  relative to the time rasterio needs to read both files.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from imgdiff.data import data_dir
from imgdiff.evaluate import coreg as ec


def arosics_estimator():
    """AROSICS COREG as an estimator (None when not installed)."""
    try:
        from arosics import COREG  # type: ignore[import-not-found]
        from geoarray import GeoArray  # type: ignore[import-not-found]
    except ImportError:
        return None

    def est(a: np.ndarray, b: np.ndarray):
        gt = (0, 10, 0, 0, 0, -10)
        cr = COREG(GeoArray(a, gt, "EPSG:32636"), GeoArray(b, gt, "EPSG:32636"), q=True, nodata=(np.nan, np.nan))
        cr.calculate_spatial_shifts()
        # AROSICS reports the correction to apply to the target (map units): the shift is its negative.
        return (-cr.x_shift_px, cr.y_shift_px), 1.0

    return est


def accuracy(data: Path) -> None:
    fine, pairs, _ = ec.dev_inputs(data)
    methods = {"imgdiff": None, "skimage pcc(100)": ec.skimage_estimator}
    aro = arosics_estimator()
    if aro:
        methods["arosics"] = aro
    print(f"{'method':18s} {'same-date RMSE':>15s} {'cross-date RMSE':>16s} {'s/case':>8s}")
    for name, est in methods.items():
        t0 = time.perf_counter()
        same = ec.same_date_cases(fine, per_image=3, estimator=est)
        cross = ec.cross_date_cases(pairs, per_pair=3, estimator=est)
        sec = (time.perf_counter() - t0) / max(1, len(same) + len(cross) + len(pairs))
        print(f"{name:18s} {ec.rmse([c.error for c in same]):15.4f} {ec.rmse([c.error for c in cross]):16.4f} "
              f"{sec:8.2f}")
    t0 = time.perf_counter()
    _, errs, npts = ec.local_cases(ec.dev_inputs(data)[2])
    print(f"imgdiff local: RMSE {np.sqrt(np.mean(np.square(errs))):.4f} px over {len(errs)} scenes, "
          f"min {min(npts)} points per scene, {(time.perf_counter() - t0) / len(errs):.2f} s per scene")


AT_BOUND = ((5.0, 0.0), (0.0, -5.0), (-5.0, 5.0))  # total shifts (px) of exactly max_shift along an axis
BEYOND = ((5.2, 0.0), (-5.4, 0.3), (0.2, 5.45))  # just beyond it (the pooled start still within 0.5 px)


def edges(data: Path, max_shift: float = 5.0) -> None:
    """Shifts at and just beyond ``max_shift`` on the real OSCD pairs (global and local estimates).

    Each after image is moved so that its total shift (its own misregistration, measured first, plus
    the move) is the case's; a case at the bound is recovered when within 0.1 px, and its tie points
    are counted against the same pair moved to 0.4 x that shift (well inside the bound).
    """
    from imgdiff import CoregistrationError, coregister

    _, pairs, _ = ec.dev_inputs(data)
    for local in (False, True):
        t0 = time.perf_counter()
        ok = kept = kept_inside = n_bound = 0
        errs: list[tuple[float, float]] = []
        named = other = passed = n_beyond = 0
        for b, a in pairs.values():
            a0 = np.nan_to_num(a, nan=float(np.nanmedian(a)))
            ref = ec.as_scene(b)
            try:
                base = coregister(ref, ec.as_scene(a0), local=local)
            except CoregistrationError:
                continue
            for total in AT_BOUND:
                n_bound += 1
                runs = []
                for f in (1.0, 0.4):
                    move = (f * total[0] - base.dx, f * total[1] - base.dy)
                    try:
                        runs.append(coregister(ref, ec.as_scene(ec.shift_image(a0, *move)), local=local,
                                               max_shift=max_shift))
                    except CoregistrationError:
                        runs.append(None)
                at, inside = runs
                if inside is None:
                    n_bound -= 1
                    continue
                kept_inside += len(inside.points)
                if at is not None:
                    kept += len(at.points)
                    e = (at.dx - total[0], at.dy - total[1])
                    errs.append(e)
                    ok += max(abs(e[0]), abs(e[1])) <= 0.1
            for total in BEYOND:
                n_beyond += 1
                try:
                    coregister(ref, ec.as_scene(ec.shift_image(a0, total[0] - base.dx, total[1] - base.dy)),
                               local=local, max_shift=max_shift)
                    passed += 1
                except CoregistrationError as err:
                    if "--max-shift" in str(err):
                        named += 1
                    else:
                        other += 1
        kind = "local" if local else "global"
        print(f"edges {kind}: at max_shift={max_shift:g} px {ok}/{n_bound} recovered within 0.1 px "
              f"(RMSE {ec.rmse(errs) if errs else float('nan'):.4f} px over {len(errs)}), tie points kept "
              f"{kept}/{kept_inside} of those at 0.4 x the shift; 5.2-5.45 px: {named}/{n_beyond} fail naming "
              f"--max-shift, {other} fail otherwise, {passed} pass ({time.perf_counter() - t0:.0f} s)")


def make_tile(src: Path, out: Path, shift: tuple[float, float], n: int = 10980) -> None:
    """Mirror-tile a real band to n x n px and write a DEFLATE uint16 GeoTIFF, moved by ``shift`` px."""
    with rasterio.open(src) as ds:
        a = ds.read(1).astype(np.float32)
    a[a == 0] = np.nanmedian(a[a > 0])
    reps = (n // a.shape[0] + 2, n // a.shape[1] + 2)
    big = np.block([[a[::(-1 if i % 2 else 1), ::(-1 if j % 2 else 1)] for j in range(reps[1])]
                    for i in range(reps[0])])[:n + 16, :n + 16]
    if shift != (0.0, 0.0):
        from scipy import ndimage

        big = ndimage.shift(big, (shift[1], shift[0]), order=3, mode="mirror")
    big = big[8:n + 8, 8:n + 8]
    with rasterio.open(out, "w", driver="GTiff", width=n, height=n, count=1, dtype="uint16", crs="EPSG:32636",
                       transform=from_origin(600000, 3900000, 10, 10), compress="deflate", predictor=2,
                       tiled=False) as ds:
        ds.write(np.clip(big, 1, 65535).astype("uint16"), 1)


def full_tile(data: Path, shift: tuple[float, float] = (0.37, -0.62)) -> None:
    src = data / "oscd" / "beirut" / "before" / "B08.tif"
    with tempfile.TemporaryDirectory(prefix="imgdiff-tile-") as tmp:
        ref, tgt = Path(tmp) / "ref" / "B08.tif", Path(tmp) / "tgt" / "B08.tif"
        ref.parent.mkdir(), tgt.parent.mkdir()
        t0 = time.perf_counter()
        make_tile(src, ref, (0.0, 0.0))
        make_tile(src, tgt, shift)
        print(f"made the 10980 x 10980 px pair in {time.perf_counter() - t0:.0f} s")
        reads, read_cpu = [], []
        for _ in range(2):
            t0, c0 = time.perf_counter(), time.process_time()
            for p in (ref, tgt):
                with rasterio.open(p) as ds:
                    ds.read(1)
            reads.append(time.perf_counter() - t0)
            read_cpu.append(time.process_time() - c0)
        read = min(reads)
        runs, run_cpu = [], []
        for _ in range(2):
            t0 = time.perf_counter()
            u0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            r = subprocess.run([str(Path(sys.executable).parent / "imgdiff"), "coregister", str(ref.parent),
                                str(tgt.parent), "--json"], capture_output=True, text=True)
            runs.append(time.perf_counter() - t0)
            u1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            run_cpu.append(u1.ru_utime - u0.ru_utime + u1.ru_stime - u0.ru_stime)
        print(f"CPU seconds: rasterio read {min(read_cpu):.2f} s, imgdiff coregister (whole process, imports "
              f"included) {min(run_cpu):.2f} s ({min(run_cpu) / min(read_cpu):.2f}x)")
        import json

        out = json.loads(r.stdout)
        err = ((out["dx"] - shift[0]) ** 2 + (out["dy"] - shift[1]) ** 2) ** 0.5
        print(f"full tile: rasterio reads both in {read:.2f} s; imgdiff coregister {min(runs):.2f} s "
              f"({min(runs) / read:.2f}x read time); shift ({out['dx']:+.4f}, {out['dy']:+.4f}) px, "
              f"truth ({shift[0]:+.2f}, {shift[1]:+.2f}), error {err:.4f} px")
        t0 = time.perf_counter()
        r = subprocess.run([str(Path(sys.executable).parent / "imgdiff"), "coregister", str(ref.parent),
                            str(tgt.parent), "--json", "--local"], capture_output=True, text=True)
        out = json.loads(r.stdout)
        e = np.array([[p["dx"] - shift[0], p["dy"] - shift[1]] for p in out["points"]])
        print(f"full tile --local: {time.perf_counter() - t0:.2f} s, {len(e)} points, "
              f"point RMSE {np.sqrt(np.mean(e ** 2)):.4f} px")
        if "skimage" in sys.argv:
            from skimage.registration import phase_cross_correlation

            t0 = time.perf_counter()
            with rasterio.open(ref) as a, rasterio.open(tgt) as b:
                s, _, _ = phase_cross_correlation(a.read(1).astype(np.float32), b.read(1).astype(np.float32),
                                                  upsample_factor=100)
            e = ((-s[1] - shift[0]) ** 2 + (-s[0] - shift[1]) ** 2) ** 0.5
            print(f"skimage full tile: {time.perf_counter() - t0:.1f} s, error {e:.4f} px")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-tile", action="store_true", help="skip the full-tile timing")
    ap.add_argument("--no-accuracy", action="store_true", help="skip the accuracy comparison")
    ap.add_argument("--edges", action="store_true", help="only the shifts at and just beyond max_shift")
    args, _ = ap.parse_known_args()
    data = data_dir()
    if args.edges:
        edges(data)
        return
    if not args.no_accuracy:
        accuracy(data)
    if not args.no_tile:
        full_tile(data)


if __name__ == "__main__":
    main()
