"""Change-map benchmark: accuracy on the labelled OSCD dev cities and speed on a 1200 x 1200 px pair.

Run by hand (not a test)::

    /work/venv/bin/python benchmarks/change.py [--data DIR] [--methods mlp,irmad,cva-otsu] [--speed-only]

Prints, per method, per-city and pooled precision / recall / F1 / IoU of band 2 of the
``change.tif`` that ``imgdiff compare`` writes (see :func:`imgdiff.evaluate.change.evaluate_change`),
and the time of the change step (masks, normalisation, method, minimum mapping unit) and
of the whole ``compare`` on a 1200 x 1200 px, 13-band pair. Note: the learned method's
scores on these cities are in-sample (it was trained on them); its leave-one-city-out
estimate is printed by ``training/train_change.py``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from affine import Affine

import imgdiff
from imgdiff.change import METHODS, scene_change_map
from imgdiff.data import data_dir
from imgdiff.evaluate.change import evaluate_change
from imgdiff.scene import BAND_ORDER, Scene


def speed_pair(size: int = 1200, seed: int = 0) -> tuple[Scene, Scene]:
    """A synthetic 13-band pair of ``size`` x ``size`` px with textured land and some change."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.normal(size=(size, size)), 20).astype(np.float32)
    field = (field - field.min()) / np.ptp(field)
    # vegetation and bare soil TOA spectra (B01..B12 incl. B8A), mixed by the field
    veg = dict(zip(BAND_ORDER, (0.10, 0.06, 0.08, 0.05, 0.12, 0.25, 0.30, 0.33, 0.35, 0.10, 0.004, 0.18, 0.09)))
    soil = dict(zip(BAND_ORDER, (0.12, 0.10, 0.13, 0.16, 0.19, 0.22, 0.24, 0.26, 0.27, 0.09, 0.006, 0.32, 0.26)))
    bands_b, bands_a = {}, {}
    for b in BAND_ORDER:
        base = (veg[b] * field + soil[b] * (1 - field)).astype(np.float32)
        bands_b[b] = base + rng.normal(0, 0.004, base.shape).astype(np.float32)
        a = 1.1 * base + rng.normal(0, 0.004, base.shape).astype(np.float32)
        if b in ("B08", "B8A", "B07", "B06"):  # a 2 x 2 km field cleared: NIR down, SWIR up
            a[100:300, 100:300] -= 0.1
        elif b in ("B11", "B12"):
            a[100:300, 100:300] += 0.06
        bands_a[b] = a
    tr = Affine(10, 0, 600000, 0, -10, 3870000)
    valid = np.ones((size, size), bool)
    return (Scene(bands_b, "EPSG:32636", tr, valid), Scene(bands_a, "EPSG:32636", tr, valid))


def main() -> None:
    ap = argparse.ArgumentParser(description="change-map accuracy and speed")
    ap.add_argument("--data", type=Path, default=data_dir() / "oscd")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--speed-only", action="store_true")
    args = ap.parse_args()
    methods = [m for m in args.methods.split(",") if m]

    b, a = speed_pair()
    print(f"speed: {b.width} x {b.height} px, {len(b.bands)} bands")
    for m in methods:
        scene_change_map(b, a, b.valid, method=m)  # warm-up (model loading)
        t0 = time.perf_counter()
        cm = scene_change_map(b, a, b.valid, method=m)
        t1 = time.perf_counter()
        imgdiff.compare(b, a, method=m)
        t2 = time.perf_counter()
        print(f"  {m:14s} change step {t1 - t0:5.2f} s   whole compare {t2 - t1:5.2f} s   "
              f"(changed {cm.mask.mean():.2%})")
    if args.speed_only:
        return
    for m in methods:
        res = evaluate_change(args.data, method=m)
        print(f"accuracy: method {res.method}")
        for c, s in res.per_city.items():
            print(f"  {c:10s} P {s['precision']:.3f} R {s['recall']:.3f} F1 {s['f1']:.3f} IoU {s['iou']:.3f} "
                  f"({s['seconds']:.1f} s)")
        p = res.pooled
        print(f"  {'pooled':10s} P {p['precision']:.3f} R {p['recall']:.3f} F1 {p['f1']:.3f} IoU {p['iou']:.3f}  "
              f"mean city F1 {res.to_dict()['mean_city_f1']:.3f}")


if __name__ == "__main__":
    main()
