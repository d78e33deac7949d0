"""Objects across dates: stayed, departed, arrived."""

from __future__ import annotations

import pytest
from affine import Affine
from rasterio.crs import CRS

from imgdiff.detect.base import Detection, Detections
from imgdiff.errors import GridError
from imgdiff.match import match_objects, zone_match

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


def _scene(objects=(), cloud=None, seed=0):
    """40 x 40 px water scene (B02 B03 B04 B08) with bright boxes (x0, y0, x1, y1) and an optional cloud box."""
    import numpy as np

    from imgdiff.scene import Scene

    rng = np.random.default_rng(seed)
    bands = {}
    for b, level in (("B02", 0.07), ("B03", 0.05), ("B04", 0.035), ("B08", 0.02)):
        a = level + rng.normal(0, 0.002, (40, 40))
        for x0, y0, x1, y1 in objects:
            a[y0:y1, x0:x1] = 0.15
        if cloud is not None:
            x0, y0, x1, y1 = cloud
            a[y0:y1, x0:x1] = 0.5
        bands[b] = a.astype("float32")
    return Scene(bands, UTM, TR, np.ones((40, 40), bool))


SHIP = (10, 10, 22, 12)


def test_persistence_is_high_where_the_object_stayed_and_low_where_it_left():
    from imgdiff.match import persistence

    before = _scene([SHIP])
    assert persistence(before, _scene([SHIP], seed=1), SHIP) > 0.8
    assert persistence(before, _scene([], seed=1), SHIP) < 0.2


def test_carry_over_adds_a_missed_object_that_is_still_in_the_image():
    from imgdiff.match import carry_over

    b = dets((16, 11, 120, "a"))
    none = dets()
    _, after = carry_over(b, none, _scene([SHIP]), _scene([SHIP], seed=1))
    assert len(after) == 1 and after.items[0].extra["carried_from"] == "before"
    _, after = carry_over(b, none, _scene([SHIP]), _scene([], seed=1))
    assert len(after) == 0
    before, _ = carry_over(none, b, _scene([SHIP], seed=2), _scene([SHIP], seed=1))
    assert len(before) == 1 and before.items[0].extra["carried_from"] == "after"


def test_weak_detections_count_only_where_the_image_changed():
    from dataclasses import replace

    from imgdiff.match import drop_static_weak

    weak = dets((16, 11, 120, "a"))
    weak = replace(weak, items=tuple(replace(d, score=0.35) for d in weak.items))
    assert len(drop_static_weak(weak, _scene([SHIP]), _scene([SHIP], seed=1))) == 0  # static: clutter
    assert len(drop_static_weak(weak, _scene([SHIP]), _scene([], seed=1))) == 1      # it left: evidence
    strong = dets((16, 11, 120, "a"))
    assert len(drop_static_weak(strong, _scene([SHIP]), _scene([SHIP], seed=1))) == 1
