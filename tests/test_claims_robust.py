"""Claim evidence that holds when the held-out pair is rendered differently (benchmarks/claims.py --sweep).

Each test is one failure mode the variant sweep found: a grey opaque cloud over bright concrete
found only in part (RGB scenes, two-date test only), and cloud shadows over bright concrete
taken for cloud on the clear date (or missed on the shadowed one).
"""

from __future__ import annotations

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from scipy import ndimage as ndi

from imgdiff.claims import pair_clouds, temporal_clouds
from imgdiff.scene import Scene

UTM = CRS.from_epsg(32636)
TR = Affine(10, 0, 767000, 0, -10, 3922000)
RGB = ("B02", "B03", "B04")


def apron(seed: int = 0) -> dict[str, np.ndarray]:
    """80 x 80 px RGB ground: bright concrete (0.22-0.25) on the right, dark asphalt (0.08) on the left."""
    rng = np.random.default_rng(seed)
    base = np.where(np.arange(80)[None, :] < 40, 0.08, 0.23) + np.zeros((80, 80))
    texture = ndi.gaussian_filter(rng.normal(0, 0.02, (80, 80)), 1.0)
    return {b: (base + texture + 0.01 * i).astype("float32") for i, b in enumerate(RGB)}


def test_a_grey_cloud_half_over_bright_concrete_is_found_whole_and_the_concrete_beside_it_stays_clear():
    before = apron()
    rng = np.random.default_rng(1)
    after = {}
    for b, a in before.items():
        x = a * 1.08  # the dates' gain difference
        x[20:60, 25:55] = 0.30  # a grey opaque cloud: 3x the asphalt, only 1.2x the concrete
        after[b] = (x + rng.normal(0, 0.003, x.shape)).astype("float32")
    sb = Scene(before, UTM, TR, np.ones((80, 80), bool))
    sa = Scene(after, UTM, TR, np.ones((80, 80), bool))
    _, cloud = temporal_clouds(sb, sa)
    assert cloud[20:60, 25:55].mean() > 0.98  # the part over the concrete too
    outside = np.ones((80, 80), bool)
    outside[17:63, 22:58] = False  # the cloud and its 2-pixel margin (+1)
    assert not cloud[outside].any()  # the concrete around it, brighter by the gain only, stays clear


def test_no_cloud_is_found_on_bright_ground_between_dates_of_different_gain():
    before = apron()
    rng = np.random.default_rng(2)
    after = {b: (a * 1.2 + rng.normal(0, 0.003, a.shape)).astype("float32") for b, a in before.items()}
    sb = Scene(before, UTM, TR, np.ones((80, 80), bool))
    sa = Scene(after, UTM, TR, np.ones((80, 80), bool))
    cb, ca = pair_clouds(sb, sa)
    assert not cb.any() and not ca.any()


def test_a_cloud_shadow_over_bright_concrete_hides_the_shadowed_date_not_the_clear_one():
    """An RGB apron pair whose after date has a cloud shadow over concrete (aircraft beside it): the
    clear before date looks 'brighter by 2.5x, white, above 0.2' there, like a cloud; the edge of the
    region (the shadow's, on the after date) and the dimmed texture say the after date changed."""
    before = apron()
    for a in before.values():
        for y, x in ((25, 50), (35, 62), (44, 55)):
            a[y:y + 3, x:x + 5] = 0.35  # parked aircraft
    rng = np.random.default_rng(4)
    factor = {"B02": 0.45, "B03": 0.40, "B04": 0.37}  # skylight: blue dimmed least
    after = {}
    for b, a in before.items():
        x = a * 1.08
        x[20:50, 45:75] *= factor[b]
        after[b] = (x + rng.normal(0, 0.003, x.shape)).astype("float32")
    sb = Scene(before, UTM, TR, np.ones((80, 80), bool))
    sa = Scene(after, UTM, TR, np.ones((80, 80), bool))
    cb, ca = pair_clouds(sb, sa)
    assert not cb.any()                     # the clear date is not taken for cloud
    assert ca[22:48, 47:73].all()           # the shadow hides the after date
    assert ca.sum() < 1.3 * 34 * 34         # and little else


def test_a_textured_cloud_with_a_soft_edge_over_parked_aircraft_is_cloud_not_a_shadow_on_the_clear_date():
    """The cloud/shadow decision of the two-date test: a cloud hides the ground's fine texture (its own
    low-frequency texture and hazy edge do not count), so it stays a cloud on its date and the clear
    date beside it gets no shadow."""
    before = apron()
    for a in before.values():
        for y, x in ((25, 50), (35, 62), (44, 55), (30, 30)):
            a[y:y + 3, x:x + 5] = 0.35
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:80, :80]
    d = np.hypot(np.maximum(0, np.maximum(28 - xx, xx + 1 - 68)), np.maximum(0, np.maximum(20 - yy, yy + 1 - 52)))
    alpha = np.clip((8 - d) / 8, 0, 1)
    field = ndi.gaussian_filter(rng.standard_normal((80, 80)), 12)
    texture = 1 + 0.2 * field / np.abs(field).max()  # +-20 % low-frequency brightness
    after = {b: (a * 1.08 * (1 - alpha) + alpha * 0.55 * texture + rng.normal(0, 0.003, a.shape)).astype("float32")
             for b, a in before.items()}
    sb = Scene(before, UTM, TR, np.ones((80, 80), bool))
    sa = Scene(after, UTM, TR, np.ones((80, 80), bool))
    cb, ca = pair_clouds(sb, sa)
    assert not cb.any()
    assert ca[20:52, 28:68].mean() > 0.98
