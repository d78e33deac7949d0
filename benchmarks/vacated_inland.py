"""Do real pairs without ships give "departed vessels"? Run by hand (not a test); prints figures.

    python benchmarks/vacated_inland.py [--raw-ndwi]

:func:`imgdiff.water_changes` counts a vessel that left where the before date is bright over a compact
region and the after date shows open water there. On the OSCD pairs (real Sentinel-2, mostly inland
cities; several top-of-atmosphere L1C) every such region farther than 4 px from the vessel detector's
open water (:func:`imgdiff.detect.vessels.water_mask` of either date without its path radiance,
:func:`imgdiff.detect.vessels.remove_haze`: water bodies of at least 20 ha) is
a false departure: a roof, a yard or a street that changed. For each city the pair is compared
(:func:`imgdiff.compare`, co-registered) and the departures of its before date counted, all of them and
those far from open water, with the after date's path radiance (B03, B08) beside them.

``--raw-ndwi`` reads the after date's water as before 2026-11-27, for comparison: NDWI above 0 with the
path radiance left in, and no test of open water (:func:`imgdiff.vacated._water` replaced).

Measured 2026-11-27 (10 OSCD cities): 6 departures, all far from open water, with the old test (Beirut 1,
Nantes 2, Paris 3); 1 with the path radiance taken off (Paris); none with open water required too.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import ndimage as ndi

import imgdiff
import imgdiff.vacated as vacated
from imgdiff.data import data_dir
from imgdiff.detect.vessels import path_radiance, remove_haze, water_mask
from imgdiff.radiometry import ndwi

#: A departure farther than this (pixels) from both dates' open water is false.
NEAR_WATER_PX = 4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--raw-ndwi", action="store_true", help="the old water test: NDWI with the path radiance left in, no open-water body")
    args = ap.parse_args()
    if args.raw_ndwi:
        vacated._water = lambda s: (ndwi(s.bands["B03"], s.bands["B08"]), None)
    root = data_dir() / "oscd"
    total = far_total = 0
    print(f"{'city':12s} {'departures':>10s} {'far from water':>14s}  after-date path radiance B03 / B08")
    for city in sorted(p.name for p in root.iterdir() if p.is_dir()):
        result = imgdiff.compare(imgdiff.read_scene(root / city / "before"), imgdiff.read_scene(root / city / "after"))
        before, after = result.pair.before, result.pair.after
        left = imgdiff.water_changes(before, after, dates=("before",))[0]
        water = np.zeros(before.shape, bool)
        for scene in (before, after):
            w = remove_haze(scene, water_mask(scene))[1]  # the detector's water, path radiance taken off
            if w is not None:
                water |= w
        near = ndi.binary_dilation(water, iterations=NEAR_WATER_PX)
        far = sum(1 for d in left.items if not near[int(d.center[1]), int(d.center[0])])
        haze = path_radiance(after)
        total, far_total = total + len(left), far_total + far
        print(f"{city:12s} {len(left):10d} {far:14d}  {haze.get('B03', 0.0):.3f} / {haze.get('B08', 0.0):.3f}", flush=True)
    print(f"all: {total} departures, {far_total} far from open water "
          f"({'the old water test' if args.raw_ndwi else 'open water, path radiance taken off'})")


if __name__ == "__main__":
    main()
