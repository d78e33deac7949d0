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


# --------------------------------------------------------------------------- objects in a cloud's hazy rim
PLANE = (20, 44, 26, 47)  # x0, y0, x1, y1 (pixels): a 60 m x 30 m transport just below the cloud


def _cloud_alpha() -> np.ndarray:
    """The cloud's share of each pixel's light: 1 over rows 10-39, cols 10-39, fading out linearly over 10 px."""
    yy, xx = np.mgrid[:80, :80]
    d = np.hypot(np.maximum(0, np.maximum(10 - xx, xx + 1 - 40)), np.maximum(0, np.maximum(10 - yy, yy + 1 - 40)))
    return np.clip((10 - d) / 10, 0, 1)


def _haze_scene(*, plane: bool, cloud: bool, seed: int) -> Scene:
    """80 x 80 px RGB concrete apron (the same ground on both dates, noise from ``seed``; gain 1.08 on the
    cloudy date), an optional dark aircraft at PLANE and the cloud of :func:`_cloud_alpha`: the aircraft's
    place is in its hazy rim (alpha 0.4-0.6: seen through haze, not hidden)."""
    ground = np.random.default_rng(100)
    rng = np.random.default_rng(seed)
    alpha = _cloud_alpha() if cloud else np.zeros((80, 80))
    bands = {}
    for b in RGB:
        a = 0.25 + 0.07 * ground.random((80, 80))
        if plane:
            x0, y0, x1, y1 = PLANE
            a[y0:y1, x0:x1] = 0.10
        a = (1.08 if cloud else 1.0) * a * (1 - alpha) + 0.55 * alpha
        bands[b] = (a + rng.normal(0, 0.003, a.shape)).astype("float32")
    return Scene(bands, UTM, TR, np.ones((80, 80), bool))


def _haze_verdicts(before: Scene, after: Scene, look_before: float | None, look_after: float | None,
                   cloud_on: str | None):
    """The evidence steps of the pipeline on a pair with one look of the aircraft (detector threshold 0.28,
    evidence 0.5): objects place by place (reconcile) with the cloud on date ``cloud_on`` hidden where
    it is nearly opaque (alpha > 0.7) and its rim (alpha > 0.02) not comparable, as pair_clouds and
    cloud_haze mark them; then the verdicts of zone ``apron`` around the aircraft."""
    from shapely.geometry import box

    from imgdiff.claims import Claim, DetectorPerformance, evaluate_claim, zone_states
    from imgdiff.detect.base import Detection, Detections
    from imgdiff.match import reconcile
    from imgdiff.zones import Zones

    def looks(score):
        x0, y0, x1, y1 = PLANE
        items = () if score is None else (Detection(box=(x0, y0, x1, y1), score=score, cls="aircraft", length_m=60.0,
                                                    zone="apron", centroid=((x0 + x1) / 2, (y0 + y1) / 2)),)
        return Detections(items, UTM, TR, (10.0, 10.0))

    alpha = _cloud_alpha()
    none = np.zeros((80, 80), bool)
    cloud = alpha > 0.7 if cloud_on else none
    haze = (alpha > 0.02) & ~cloud if cloud_on else none
    cb, ca = (cloud, none) if cloud_on == "before" else (none, cloud)
    r = reconcile(looks(look_before), looks(look_after), before, after, evidence=0.5, look=0.14, threshold=0.28,
                  clear_before=~cb, clear_after=~ca, comparable=~haze)
    zx0, zy0 = TR * (12, 41)
    zx1, zy1 = TR * (38, 60)
    zones = Zones({"apron": box(zx0, zy1, zx1, zy0)}, UTM, {})
    sb, sa = zone_states(zones, before, cb)["apron"], zone_states(zones, after, ca)["apron"]
    perf = DetectorPerformance("aircraft", 0.9, 0.8, 25.0, "test")
    out = {}
    for kind in ("decreased", "absent_after", "present_before", "increased"):
        out[kind] = evaluate_claim(Claim("c", "", "aircraft", "apron", kind), r.before, r.after, sb, sa,
                                   registration_reliability=0.9, performance=perf,
                                   undecided_before=r.undecided_before, undecided_after=r.undecided_after)
    return r, out


def test_a_weak_aircraft_that_left_into_a_clouds_hazy_rim_makes_decreased_inconclusive_and_without_the_cloud_supported():
    from imgdiff.claims import INCONCLUSIVE, REFUTED, SUPPORTED

    before = _haze_scene(plane=True, cloud=False, seed=0)
    # the aircraft left; on the after date a cloud's hazy rim lies over its stand: the dates cannot be compared there
    r, v = _haze_verdicts(before, _haze_scene(plane=False, cloud=True, seed=1), 0.35, None, "after")
    assert len(r.before) == 0 and len(r.after) == 0             # the weak look is not counted ...
    assert len(r.undecided_before) == 1 and len(r.undecided_after) == 0  # ... but kept apart
    assert r.undecided_before.items[0].extra["pair"]["undecided"] == "not_comparable"
    d = v["decreased"]
    assert d.verdict == INCONCLUSIVE and (d.count_before, d.count_after) == (0, 0) and d.confidence == 0
    assert (d.undecided_before, d.undecided_after) == (1, 0)
    assert any("1 weak aircraft detection(s) in apron (1 on the before date) could not be confirmed" in s
               and "hazy rim" in s for s in d.reasons)
    pb = v["present_before"]  # a claim on the before date alone: the look counts as the detector alone would have it
    assert pb.verdict == SUPPORTED and (pb.count_before, pb.undecided_before) == (0, 1)
    assert any("counted on that date's evidence alone" in s for s in pb.reasons)
    assert v["absent_after"].verdict == SUPPORTED               # the undecided look is on the other date
    assert v["increased"].verdict == REFUTED                    # false with or without it
    assert any("could not be confirmed" in c for c in v["increased"].caveats)
    # the same pair without the cloud: the stand is plain concrete after, so the weak look is the aircraft leaving
    r, v = _haze_verdicts(before, _haze_scene(plane=False, cloud=False, seed=1), 0.35, None, None)
    assert len(r.before) == 1 and len(r.undecided_before) == 0
    assert v["decreased"].verdict == SUPPORTED and v["present_before"].verdict == SUPPORTED


def test_a_weak_aircraft_in_the_hazy_rim_of_a_cloud_on_the_before_date_refutes_absent_after_and_leaves_increased_open():
    from imgdiff.claims import INCONCLUSIVE, REFUTED

    after = _haze_scene(plane=True, cloud=False, seed=1)
    r, v = _haze_verdicts(_haze_scene(plane=False, cloud=True, seed=0), after, None, 0.35, "before")
    assert len(r.after) == 0 and len(r.undecided_after) == 1
    a = v["absent_after"]  # on the after date alone the weak look counts, as the detector would have it
    assert a.verdict == REFUTED and a.count_after == 0 and a.undecided_after == 1
    assert any("counted on that date's evidence alone" in s for s in a.reasons)
    i = v["increased"]  # a comparison cannot tell an arrival from what the haze hides on the before date
    assert i.verdict == INCONCLUSIVE and any("could not be confirmed" in s for s in i.reasons)
    # without the cloud the aircraft arrived on plain concrete: it counts, and absent_after is refuted
    r, v = _haze_verdicts(_haze_scene(plane=False, cloud=False, seed=0), after, None, 0.35, None)
    assert len(r.after) == 1 and v["absent_after"].verdict == REFUTED


def test_a_look_below_the_detector_threshold_in_the_hazy_rim_is_not_undecided_and_a_confident_one_counts():
    from imgdiff.claims import REFUTED, SUPPORTED

    before, after = _haze_scene(plane=True, cloud=False, seed=0), _haze_scene(plane=False, cloud=True, seed=1)
    r, v = _haze_verdicts(before, after, 0.2, None, "after")
    assert len(r.undecided_before) == 0 and v["decreased"].verdict == REFUTED
    r, v = _haze_verdicts(before, after, 0.8, None, "after")
    assert len(r.before) == 1 and len(r.undecided_before) == 0 and v["decreased"].verdict == SUPPORTED


def test_a_weak_look_at_a_place_hidden_on_the_other_date_counts_for_a_claim_on_its_own_date():
    from imgdiff.claims import SUPPORTED

    # the aircraft's stand under the opaque part of the cloud after: only the before date sees it, weakly
    from imgdiff.detect.base import Detection, Detections
    from imgdiff.match import reconcile

    before, after = _haze_scene(plane=True, cloud=False, seed=0), _haze_scene(plane=False, cloud=True, seed=1)
    hidden = np.zeros((80, 80), bool)
    hidden[35:55, 15:35] = True
    look = Detections((Detection(box=PLANE, score=0.35, cls="aircraft", length_m=60.0, zone="apron"),), UTM, TR)
    r = reconcile(look, Detections((), UTM, TR), before, after, evidence=0.5, look=0.14, threshold=0.28,
                  clear_after=~hidden)
    assert len(r.before) == 0 and r.undecided_before.items[0].extra["pair"]["undecided"] == "hidden"
    from imgdiff.claims import Claim, DetectorPerformance, ZoneState, evaluate_claim

    clear = ZoneState("apron", 1000, 1.0, 0.0, 0.0)
    v = evaluate_claim(Claim("c", "", "aircraft", "apron", "present_before"), r.before, r.after, clear, clear,
                       registration_reliability=0.9, performance=DetectorPerformance("aircraft", 0.9, 0.8, 25, "t"),
                       undecided_before=r.undecided_before, undecided_after=r.undecided_after)
    assert v.verdict == SUPPORTED and v.count_before == 0 and v.undecided_before == 1
    assert 0.0 < v.confidence < 1.0
