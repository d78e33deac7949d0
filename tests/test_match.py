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
