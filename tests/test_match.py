"""Objects across dates: stayed, departed, arrived."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from imgdiff.detect.base import Detection, Detections
from imgdiff.errors import GridError
from imgdiff.match import difference_noise, match_objects, persistence, zone_match

from .conftest import water_scene

TR = Affine(10, 0, 700000, 0, -10, 3900000)
UTM = CRS.from_epsg(32636)


def dets(*objs, crs=UTM):
    """Detections from (x_px, y_px, length_m, zone) tuples."""
    items = tuple(Detection(box=(x - 5, y - 1, x + 5, y + 1), score=0.9, cls="vessel", length_m=L, zone=z,
                            centroid=(x, y)) for x, y, L, z in objs)
    return Detections(items, crs, TR, (10.0, 10.0))


def test_objects_within_the_gate_stay_and_the_rest_depart_or_arrive():
    b = dets((10, 10, 120, "a"), (50, 50, 120, "a"), (90, 20, 80, "b"))
    a = dets((50.8, 50.3, 118, "a"), (10.4, 9.5, 125, "a"), (200, 200, 100, "b"))
    m = match_objects(b, a)
    assert m.stayed == ((0, 1), (1, 0))
    assert m.departed == (2,) and m.arrived == (2,)
    assert m.distance_m[0] == pytest.approx(((0.4 * 10) ** 2 + (0.5 * 10) ** 2) ** 0.5, abs=0.01)
    assert m.counts() == {"stayed": 2, "departed": 1, "arrived": 1}


def test_a_ship_moved_by_more_than_the_gate_departed_and_another_arrived():
    b = dets((10, 10, 120, "a"))
    a = dets((30, 10, 120, "a"))  # 200 m away: a different berth
    m = match_objects(b, a)
    assert m.stayed == () and m.departed == (0,) and m.arrived == (0,)


def test_lengths_differing_by_more_than_the_ratio_do_not_match():
    b = dets((10, 10, 150, "a"))
    a = dets((10, 10, 40, "a"))
    assert match_objects(b, a).stayed == ()
    assert match_objects(b, a, max_length_ratio=5).stayed == ((0, 0),)


def test_one_to_one_assignment_prefers_the_nearest_pairs():
    b = dets((10, 10, 100, "a"), (12, 10, 100, "a"))
    a = dets((12.2, 10, 100, "a"))
    m = match_objects(b, a)
    assert m.stayed == ((1, 0),) and m.departed == (0,)


def test_empty_dates_and_zone_view():
    e = dets()
    b = dets((10, 10, 100, "a"), (60, 60, 100, "b"))
    assert match_objects(b, e).departed == (0, 1)
    assert match_objects(e, b).arrived == (0, 1)
    a = dets((60.2, 60, 100, "b"))
    z = zone_match(b, a, "a")
    assert z.departed == (0,) and z.stayed == () and z.arrived == ()
    zb = zone_match(b, a, "b")
    assert zb.stayed == ((1, 0),) and zb.departed == ()


def test_different_crs_is_refused():
    with pytest.raises(GridError, match="CRS"):
        match_objects(dets((1, 1, 10, "a")), dets((1, 1, 10, "a"), crs=CRS.from_epsg(3857)))


SHIP = (10, 10, 22, 12)


def test_persistence_is_high_where_the_object_stayed_and_low_where_it_left():
    from imgdiff.match import persistence

    before = water_scene([SHIP])
    assert persistence(before, water_scene([SHIP], seed=1), SHIP) > 0.8
    assert persistence(before, water_scene([], seed=1), SHIP) < 0.2


def test_an_offset_between_the_dates_does_not_make_an_object_that_stayed_look_changed():
    """After date with path radiance over dark water (an L1C date beside a surface-reflectance one):
    every pixel +0.06 and contrasts x 1.1. A local ratio of levels cannot absorb that offset."""
    from imgdiff.match import _brightness, contrast_gain

    before = water_scene([SHIP])

    def toa(scene):
        return replace(scene, bands={k: v * 1.1 + 0.06 for k, v in scene.bands.items()})

    stayed, left = toa(water_scene([SHIP], seed=1)), toa(water_scene([], seed=1))
    gain = contrast_gain(_brightness(before), _brightness(stayed))
    assert gain == pytest.approx(1.1, rel=0.1)
    assert persistence(before, stayed, SHIP) < 0.7  # the ratio alone: judged changed
    assert persistence(before, stayed, SHIP, gain=gain) > 0.8
    assert persistence(before, left, SHIP, gain=gain) < 0.2
    # a gain alone, no offset: both ways of matching agree
    plain = replace(water_scene([SHIP], seed=1), bands={k: v * 1.2 for k, v in water_scene([SHIP], seed=1).bands.items()})
    assert persistence(before, plain, SHIP, gain=1.2) > 0.8


def scored(*objs):
    """Detections from (x_px, y_px, score) tuples around SHIP-sized boxes (12 x 2 px, 120 m)."""
    items = tuple(Detection(box=(x - 6, y - 1, x + 6, y + 1), score=s, cls="vessel", length_m=120.0, zone="a",
                            centroid=(x, y)) for x, y, s in objs)
    return Detections(items, UTM, TR, (10.0, 10.0))


def pair(b, a, sb, sa, **kw):
    from imgdiff.match import reconcile

    r = reconcile(b, a, sb, sa, evidence=0.5, look=0.14, **kw)
    return r.before, r.after


def test_a_ship_that_leaves_its_berth_departed_and_is_not_carried_over():
    b, a = pair(scored((16, 11, 0.8)), scored(), water_scene([SHIP]), water_scene([], seed=1))
    assert len(b) == 1 and len(a) == 0
    assert b.items[0].extra["pair"]["place"] == "changed"
    m = match_objects(b, a)
    assert m.departed == (0,) and m.stayed == ()


def test_a_look_below_the_threshold_at_an_unchanged_place_takes_the_other_dates_box():
    # confident before (the whole hull); after only a weak look at a few pixels of its stern, 4 px off centre
    weak = Detections((Detection(box=(8, 10, 12, 12), score=0.3, cls="vessel", length_m=40.0, zone="b",
                                 centroid=(10, 11)),), UTM, TR, (10.0, 10.0))
    b, a = pair(scored((16, 11, 0.8)), weak, water_scene([SHIP]), water_scene([SHIP], seed=1), threshold=0.35)
    assert len(a) == 1 and a.items[0].extra["pair"]["place"] == "unchanged"
    assert a.items[0].box == b.items[0].box and a.items[0].length_m == 120.0 and a.items[0].zone == "a"
    assert a.items[0].score == pytest.approx(0.3) and a.items[0].extra["carried_from"] == "before"
    # a look from the threshold up is a detection of its own: it keeps its box
    b, a = pair(scored((16, 11, 0.8)), weak, water_scene([SHIP]), water_scene([SHIP], seed=1), threshold=0.25)
    assert a.items[0].box == (8, 10, 12, 12) and "carried_from" not in a.items[0].extra


def test_a_ship_missed_on_one_date_at_an_unchanged_place_stayed():
    # confident before, only a weak look after (0.3): the place did not change, so it is one object seen twice
    b, a = pair(scored((16, 11, 0.8)), scored((16, 11, 0.3)), water_scene([SHIP]), water_scene([SHIP], seed=1))
    assert len(b) == 1 and len(a) == 1 and match_objects(b, a).stayed == ((0, 0),)
    assert a.items[0].score == pytest.approx(0.3) and a.items[0].extra["pair"]["place"] == "unchanged"
    # no look at all on the after date (at most 0.14 there): a confident object is carried over ...
    b, a = pair(scored((16, 11, 0.9)), scored(), water_scene([SHIP]), water_scene([SHIP], seed=1))
    assert len(a) == 1 and a.items[0].extra["carried_from"] == "before" and match_objects(b, a).stayed == ((0, 0),)
    b, a = pair(scored(), scored((16, 11, 0.9)), water_scene([SHIP], seed=2), water_scene([SHIP], seed=1))
    assert len(b) == 1 and b.items[0].extra["carried_from"] == "after"
    # ... one the detector was unsure of (0.6 on one date, nothing on the other) counts on neither
    b, a = pair(scored((16, 11, 0.6)), scored(), water_scene([SHIP]), water_scene([SHIP], seed=1))
    assert len(b) == 0 and len(a) == 0


def test_a_ship_missed_on_one_date_is_carried_over_past_a_fragment_that_does_not_count():
    # the hull is found before (0.9); on both dates the detector also scores a 40 m piece of its bow weakly
    # (0.2): the two pieces pair up as a place of their own, judged clutter; the hull, missed after, stayed
    bow = Detection(box=(10, 10, 14, 12), score=0.2, cls="vessel", length_m=40.0, zone="a", centroid=(12, 11))
    hull = scored((16, 11, 0.9)).items[0]
    before = Detections((hull, bow), UTM, TR, (10.0, 10.0))
    after = Detections((replace(bow, score=0.22),), UTM, TR, (10.0, 10.0))
    b, a = pair(before, after, water_scene([SHIP]), water_scene([SHIP], seed=1), threshold=0.35)
    assert len(b) == 1 and len(a) == 1 and a.items[0].extra["carried_from"] == "before"
    assert a.items[0].box == hull.box and match_objects(b, a).stayed == ((0, 0),)
    # a piece that counts on its date (confident there) is where the object is counted: nothing is carried
    after = Detections((replace(bow, score=0.9, length_m=120.0),), UTM, TR, (10.0, 10.0))
    b, a = pair(before, after, water_scene([SHIP]), water_scene([SHIP], seed=1), threshold=0.35)
    assert len(a) == 1 and "carried_from" not in a.items[0].extra


def test_an_object_that_stayed_is_in_the_same_zones_on_both_dates_from_the_mean_of_its_looks():
    from shapely.geometry import box as shp_box

    from imgdiff.match import one_zone_per_object
    from imgdiff.zones import Zones, assign_zones

    # a tight zone whose east edge runs at x = 16.2 px: the before look's centroid (16.0) lies in it, the
    # after look's (16.6) a little outside, their mean (16.3) too; a ship further east is in neither
    x_edge = TR.c + 16.2 * TR.a
    zones = Zones({"berth": shp_box(TR.c, TR.f - 40 * 10, x_edge, TR.f)}, UTM, {})

    def look(x, score, place="unchanged", pid=0):
        return Detection(box=(x - 6, 10, x + 6, 12), score=score, cls="vessel", length_m=120.0, centroid=(x, 11),
                         extra={"pair": {"id": pid, "place": place}})

    b = assign_zones(Detections((look(16.0, 0.9),), UTM, TR, (10.0, 10.0)), zones)
    a = assign_zones(Detections((look(16.6, 0.8),), UTM, TR, (10.0, 10.0)), zones)
    assert b.items[0].zone == "berth" and a.items[0].zone is None  # as measured: the ship would have left
    b2, a2 = one_zone_per_object(b, a, zones)
    assert b2.items[0].zone is None and a2.items[0].zone is None
    assert b2.items[0].box == b.items[0].box and a2.items[0].box == a.items[0].box  # boxes as measured
    # mean inside: both in the zone
    a = assign_zones(Detections((look(16.3, 0.8),), UTM, TR, (10.0, 10.0)), zones)
    b = assign_zones(Detections((look(15.9, 0.9),), UTM, TR, (10.0, 10.0)), zones)
    b2, a2 = one_zone_per_object(b, a, zones)
    assert b2.items[0].zone == "berth" and a2.items[0].zone == "berth"
    # looks at a changed place are two objects: each keeps its own zone
    b = assign_zones(Detections((look(16.0, 0.9, "changed"),), UTM, TR, (10.0, 10.0)), zones)
    a = assign_zones(Detections((look(16.6, 0.8, "changed"),), UTM, TR, (10.0, 10.0)), zones)
    b2, a2 = one_zone_per_object(b, a, zones)
    assert b2.items[0].zone == "berth" and a2.items[0].zone is None


def test_static_clutter_scored_inconsistently_counts_on_neither_date():
    # 0.55 on one date, 0.2 on the other at a place that looks the same: mean 0.375 < 0.5
    b, a = pair(scored((16, 11, 0.2)), scored((16, 11, 0.55)), water_scene([SHIP]), water_scene([SHIP], seed=1))
    assert len(b) == 0 and len(a) == 0
    # a weak detection on both dates at an unchanged place is clutter too
    b, a = pair(scored((16, 11, 0.35)), scored((16, 11, 0.4)), water_scene([SHIP]), water_scene([SHIP], seed=1))
    assert len(b) == 0 and len(a) == 0


def test_two_weak_looks_at_an_unchanged_place_count_from_the_static_evidence():
    # a ship that stayed, scored 0.4 and 0.5: mean 0.45, below the single-look evidence (0.5) ...
    looks = scored((16, 11, 0.4)), scored((16, 11, 0.5)), water_scene([SHIP]), water_scene([SHIP], seed=1)
    b, a = pair(*looks)
    assert len(b) == 0 and len(a) == 0
    # ... counts on both dates, as one object that stayed, when two looks may ask less of each
    b, a = pair(*looks, static_evidence=0.4)
    assert len(b) == 1 and len(a) == 1 and match_objects(b, a).stayed == ((0, 0),)
    assert a.items[0].extra["pair"]["place"] == "unchanged"
    # the same two looks where the ship left count on neither date: the bar is for unchanged places only
    b, a = pair(scored((16, 11, 0.4)), scored((16, 11, 0.5)), water_scene([SHIP]), water_scene([], seed=1),
                static_evidence=0.4)
    assert len(b) == 0


def test_at_a_changed_place_a_weak_detection_counts_only_where_the_other_date_is_plain_background():
    # the ship left; the after detector still scores the remains 0.35: not an object
    b, a = pair(scored((16, 11, 0.8)), scored((16, 11, 0.35)), water_scene([SHIP]), water_scene([], seed=1), threshold=0.28)
    assert len(b) == 1 and len(a) == 0
    # a confident detection of something new counts
    b, a = pair(scored(), scored((16, 11, 0.7)), water_scene([], seed=2), water_scene([SHIP], seed=1))
    assert len(b) == 0 and len(a) == 1 and a.items[0].extra["pair"]["place"] == "changed"
    # a weak one counts where the before date shows plain water there (it arrived) ...
    b, a = pair(scored(), scored((16, 11, 0.35)), water_scene([], seed=2), water_scene([SHIP], seed=1), threshold=0.28)
    assert len(a) == 1
    # ... and so does a weak departure (water after)
    b, a = pair(scored((16, 11, 0.35)), scored(), water_scene([SHIP], seed=2), water_scene([], seed=1), threshold=0.28)
    assert len(b) == 1
    # but not a weak blob beside a ship that left (the before date is not background there)
    blob = (13, 10, 25, 12)
    b, a = pair(scored(), scored((19, 11, 0.35)), water_scene([SHIP], seed=2), water_scene([blob], seed=1), threshold=0.28)
    assert len(a) == 0
    # below the detector's own threshold a look never counts
    b, a = pair(scored(), scored((16, 11, 0.2)), water_scene([], seed=2), water_scene([SHIP], seed=1), threshold=0.28)
    assert len(a) == 0


def test_the_stronger_of_two_weak_looks_at_a_changed_place_counts_where_the_other_date_is_plain_background():
    # a weak departure (0.4, below the evidence 0.5) whose filled berth the after detector still scores 0.3:
    # the after look is its answer to plain water, so the ship was there before and is gone after
    b, a = pair(scored((16, 11, 0.4)), scored((16, 11, 0.3)), water_scene([SHIP], seed=2), water_scene([], seed=1),
                threshold=0.28)
    assert len(b) == 1 and len(a) == 0 and b.items[0].extra["pair"]["place"] == "changed"
    assert match_objects(b, a).departed == (0,)
    # likewise a weak arrival over plain water before
    b, a = pair(scored((16, 11, 0.3)), scored((16, 11, 0.4)), water_scene([], seed=2), water_scene([SHIP], seed=1),
                threshold=0.28)
    assert len(b) == 0 and len(a) == 1
    # two weak looks where the other date is not plain background (a ship moored 5 px further along): neither counts
    moved = (15, 10, 27, 12)
    b, a = pair(scored((16, 11, 0.4)), scored((16, 11, 0.3)), water_scene([SHIP], seed=2), water_scene([moved], seed=1),
                threshold=0.28)
    assert len(b) == 0 and len(a) == 0
    # the stronger look still has to reach the detector's threshold
    b, a = pair(scored((16, 11, 0.26)), scored((16, 11, 0.2)), water_scene([SHIP], seed=2), water_scene([], seed=1),
                threshold=0.28)
    assert len(b) == 0


def test_a_place_hidden_on_one_date_is_neither_carried_nor_averaged():
    import numpy as np

    hidden = np.ones((40, 40), bool)
    hidden[5:20, 5:30] = False
    b, a = pair(scored((16, 11, 0.8)), scored(), water_scene([SHIP]), water_scene([], cloud=(5, 5, 30, 20), seed=1),
                clear_after=hidden)
    assert len(b) == 1 and len(a) == 0 and b.items[0].extra["pair"]["place"] == "hidden"
    b, a = pair(scored((16, 11, 0.35)), scored(), water_scene([SHIP]), water_scene([], cloud=(5, 5, 30, 20), seed=1),
                clear_after=hidden)
    assert len(b) == 0


def test_a_fragment_overlapping_an_object_of_the_other_date_is_not_counted_twice():
    # before: the ship (0.8) and a weak fragment next to it (0.35) whose box overlaps the ship's after box
    b, a = pair(scored((16, 11, 0.8), (24, 11, 0.35)), scored((16, 11, 0.8)), water_scene([SHIP]), water_scene([SHIP], seed=1))
    assert len(b) == 1 and len(a) == 1 and b.items[0].score == pytest.approx(0.8)


def test_objects_decided_place_by_place_pair_by_place_id_even_when_re_measured():
    from dataclasses import replace

    # a hull measured 150 m before and 40 m after (half hidden by a crane) at one place: the same object
    b = dets((10, 10, 150, "a"))
    a = dets((10.3, 10, 40, "a"))
    assert match_objects(b, a).stayed == ()
    tag = {"pair": {"id": 7}}
    b = replace(b, items=tuple(replace(d, extra=tag) for d in b.items))
    a = replace(a, items=tuple(replace(d, extra=tag) for d in a.items))
    m = match_objects(b, a)
    assert m.stayed == ((0, 0),) and m.distance_m[0] == pytest.approx(3.0, abs=0.01)


def _smudged(seed=1, quay=True):
    """The after date of a ship that left a berth alongside a quay (rows 0-9), its place smoothed over:
    the quay's light smeared into the berth (a gradient, as inpainting or a blurred wake leaves)."""
    import numpy as np
    from scipy import ndimage as ndi

    s = water_scene([], seed=seed)
    bands = {}
    for b, a in s.bands.items():
        a = a.copy()
        if quay:
            a[:10, :] = 0.15
        smear = ndi.gaussian_filter(np.where(np.arange(40)[:, None] < 12, 0.15, float(np.median(a[20:]))) * np.ones((1, 40)),
                                    3)
        a[8:16, 6:26] = smear[8:16, 6:26]
        bands[b] = a.astype("float32")
    return type(s)(bands, s.crs, s.transform, s.valid)


def _berth(seed=0):
    """A ship (SHIP) moored alongside a quay (rows 0-9)."""
    s = water_scene([SHIP], seed=seed)
    bands = {b: a.copy() for b, a in s.bands.items()}
    for a in bands.values():
        a[:10, :] = 0.15
    return type(s)(bands, s.crs, s.transform, s.valid)


def test_structure_is_high_on_a_hull_and_low_on_a_smoothed_over_berth():
    from imgdiff.match import _brightness, structure

    hull, smudge = structure(_brightness(_berth()), SHIP), structure(_brightness(_smudged()), SHIP)
    assert hull > 0.02                 # a 2 px hull 0.1 brighter than water: detail at the pixel scale
    assert smudge < 0.3 * hull         # the smeared berth holds little more than noise (0.002)
    assert math.isnan(structure(_brightness(_berth()), (50, 50, 60, 60)))  # a box outside the image


def test_a_detection_on_the_smoothed_over_place_of_a_departed_ship_is_not_an_object():
    # the detector scores the smudge 0.65 (higher than the ship's 0.55): the place changed, the after box is smooth
    b, a = pair(scored((16, 11, 0.55)), scored((16, 11, 0.65)), _berth(), _smudged())
    assert len(b) == 1 and len(a) == 0
    assert match_objects(b, a).departed == (0,)
    st = b.items[0].extra["pair"]["structure"]
    assert st[1] < 0.5 * st[0]
    # a weak look at the ship (0.35) counts when its place is smoothed over after (the change is the ship leaving)
    b, a = pair(scored((16, 11, 0.35)), scored(), _berth(), _smudged(), threshold=0.28)
    assert len(b) == 1 and len(a) == 0
    # another ship at the same berth is an object on both dates (sharp on both)
    other = water_scene([(12, 10, 20, 12)], seed=3)
    b, a = pair(scored((16, 11, 0.8)), scored((16, 11, 0.7)), water_scene([SHIP]), other)
    assert len(b) == 1 and len(a) == 1


def test_a_faint_object_that_stayed_is_persistent_beyond_the_pair_noise_and_one_that_left_is_not():
    import numpy as np

    rng = np.random.default_rng(0)
    size, sigma = 200, 0.003  # reflectance noise of each date
    obj = np.zeros((size, size))
    boxes = [(x, y, x + 4, y + 4) for y in range(20, 180, 20) for x in (40, 120)]
    for x0, y0, x1, y1 in boxes:
        obj[y0:y1, x0:x1] = 0.012  # a faint 4 px object: contrast 4 sigma
    before = 0.1 + obj + rng.normal(0, sigma, obj.shape)
    stayed = 0.1 + obj + rng.normal(0, sigma, obj.shape)
    left = 0.1 + rng.normal(0, sigma, obj.shape)
    noise = difference_noise(before, stayed)
    assert noise == pytest.approx(math.sqrt(2 / math.pi) * sigma * math.sqrt(2), rel=0.05)
    kept = [persistence(before, stayed, b, noise=noise) for b in boxes]
    gone = [persistence(before, left, b, noise=difference_noise(before, left)) for b in boxes]
    assert min(kept) >= 0.9 and max(gone) <= 0.5
    # without the noise level, the same unchanged objects sit near the 0.7 "unchanged" cut
    assert np.median([persistence(before, stayed, b) for b in boxes]) < 0.85


def test_gated_assignment_equals_one_dense_assignment_over_all_objects():
    """The k-d tree + per-group assignment pairs exactly as a single Hungarian assignment would."""
    from scipy.optimize import linear_sum_assignment

    from imgdiff.match import _assign

    rng = np.random.default_rng(3)
    for trial in range(20):
        nb, na = rng.integers(5, 80, size=2)
        pb = rng.uniform(0, 600, (nb, 2))
        pa = np.concatenate([pb[: na // 2] + rng.normal(0, 12, (min(na // 2, nb), 2)),
                             rng.uniform(0, 600, (na - min(na // 2, nb), 2))])[:na]
        lb, la = rng.uniform(10, 150, nb), rng.uniform(10, 150, len(pa))
        lb[rng.random(nb) < 0.1] = np.nan
        got = _assign(pb, pa, lb, la, gate_m=30.0, gate_length_frac=0.5, max_length_ratio=2.0)
        dist = np.hypot(*(pb[:, None, :] - pa[None, :, :]).transpose(2, 0, 1))
        gate = np.fmax(30.0, 0.5 * np.nan_to_num(np.fmax(lb[:, None], la[None, :]), nan=0.0))
        with np.errstate(invalid="ignore"):
            ratio = np.fmax(lb[:, None] / la[None, :], la[None, :] / lb[:, None])
        ok = (dist <= gate) & ~(ratio > 2.0)
        cost = np.where(ok, dist, 1e12)
        r, c = linear_sum_assignment(cost)
        want = sorted((int(a), int(b)) for a, b in zip(r, c) if ok[a, b])
        assert len(got) == len(want), trial
        assert sum(dist[a, b] for a, b in got) == pytest.approx(sum(dist[a, b] for a, b in want)), trial


def test_a_ship_on_a_blurred_darker_after_date_stayed_and_one_that_left_still_departed():
    """Fine detail is compared relative to each date's overall detail: a bilinear-resampled, darker
    after date (less detail everywhere) does not make a ship that stayed look smoothed over."""
    from scipy import ndimage as ndi

    from imgdiff.match import detail_level

    def blurred(scene, gain=0.85):  # resampled (a sigma 0.8 px blur: structure x 0.4) and darker
        bands = {b: (gain * ndi.gaussian_filter(a, 0.8, mode="nearest")).astype("float32") for b, a in scene.bands.items()}
        return replace(scene, bands=bands)

    other = (4, 30, 16, 32)  # a second ship, here on both dates, so the scene has detail to compare
    sb, sa = water_scene([SHIP, other]), blurred(water_scene([SHIP, other], seed=1))
    mb = np.mean([sb.bands[k] for k in ("B02", "B03", "B04")], axis=0)
    ma = np.mean([sa.bands[k] for k in ("B02", "B03", "B04")], axis=0)
    ok = np.ones(mb.shape, bool)
    assert detail_level(ma, ok) < 0.5 * detail_level(mb, ok)  # the resampled date holds less detail
    b, a = pair(scored((16, 11, 0.8), (10, 31, 0.8)), scored((16, 11, 0.75), (10, 31, 0.75)), sb, sa)
    assert len(b) == 2 and len(a) == 2 and len(match_objects(b, a).stayed) == 2
    gone = blurred(water_scene([other], seed=1))
    b, a = pair(scored((16, 11, 0.8), (10, 31, 0.8)), scored((10, 31, 0.75)), sb, gone)
    assert len(b) == 2 and len(a) == 1



def test_under_sun_glint_texture_a_ship_that_left_changed_and_one_that_stayed_did_not():
    """After date with glint and waves on the water (0.012 spread against a 0.016 hull): the pair's noise
    then swamps a pixel-by-pixel change (departures read 0.6-0.9, "unchanged"); the box's mean contrast
    with its ring still shows which hulls left."""
    from scipy import ndimage as ndi

    from imgdiff.match import NOISY_PAIR, contrast_gain

    rng = np.random.default_rng(3)
    h, w = 240, 300
    land = np.zeros((h, w), bool)
    land[:, :110] = True  # quays and town, the same on both dates
    static = 0.12 + 0.2 * ndi.gaussian_filter(rng.standard_normal((h, w)), 2.0)
    obj = np.zeros((h, w))
    boxes = [(x, y, x + 9, y + 8) for y in range(20, 220, 40) for x in (140, 200, 260)]
    for x0, y0, x1, y1 in boxes:
        obj[y0:y1, x0:x1] = 0.016  # small hulls on dark water
    before = np.where(land, static, 0.025 + obj) + rng.normal(0, 0.001, (h, w))
    waves = ndi.gaussian_filter(rng.standard_normal((h, w)), 1.0)
    glint = 0.05 + 0.012 * waves / waves.std()
    stayed = np.where(land, static, glint + obj) + rng.normal(0, 0.001, (h, w))
    left = np.where(land, static, glint) + rng.normal(0, 0.001, (h, w))

    def persisting(after):
        noise, gain = difference_noise(before, after), contrast_gain(before, after)
        assert noise >= NOISY_PAIR * 0.016  # the texture swamps a pixel-by-pixel comparison
        return np.array([persistence(before, after, b, noise=noise, gain=gain) for b in boxes])

    gone, kept = persisting(left), persisting(stayed)
    assert np.median(gone) < 0.5 and np.mean(gone < 0.7) >= 0.8
    assert np.median(kept) >= 0.85 and np.mean(kept >= 0.7) >= 0.9
