"""Vessels seen in the change between two dates (imgdiff.vacated) and their place among the claims' objects."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS
from shapely.geometry import box as shapely_box

from imgdiff.claims import pipeline
from imgdiff.detect.base import Detection, Detections
from imgdiff.scene import Scene
from imgdiff.vacated import MIN_SPREAD, PEAK_Z, add_vacated, apron_changes, water_changes
from imgdiff.zones import Zones

TR = Affine(10, 0, 700000, 0, -10, 3900000)
UTM = CRS.from_epsg(32636)
WATER = {"B02": 0.07, "B03": 0.05, "B04": 0.035, "B08": 0.02}
QUAY = {"B02": 0.15, "B03": 0.16, "B04": 0.17, "B08": 0.25}
HULL = {"B02": 0.22, "B03": 0.22, "B04": 0.22, "B08": 0.30}
BERTH = (slice(30, 33), slice(20, 34))    # a 140 m x 30 m hull alongside the quay (rows 0-29)
SHADOW = (slice(33, 35), slice(20, 34))   # its shadow on the water beside it
STAYS = (slice(30, 33), slice(50, 62))    # a ship at the next berth on both dates
STACK = (slice(10, 14), slice(40, 48))    # containers on the quay, moved away by the after date
BOAT = (slice(55, 58), slice(40, 45))     # a white boat at anchor on both dates, dimmer on the second
WHITE = 0.30                              # flat spectrum: its NDWI is about 0, like turbid water's


def harbour(*, ship: bool, seed: int, noise: float = 0.002) -> Scene:
    """80 x 80 px: quay above water, a ship that stays, and optionally one at BERTH with its dark shadow
    and a container stack on the quay; Gaussian noise of ``noise`` reflectance (0: noise-free)."""
    rng = np.random.default_rng(seed)
    bands = {}
    for b in WATER:
        a = np.full((80, 80), WATER[b])
        a[:30, :] = QUAY[b]
        a[STAYS] = HULL[b]
        a[BOAT] = WATER[b] + (WHITE - WATER[b]) * (1.0 if ship else 0.85)
        if ship:
            a[BERTH] = HULL[b]
            a[SHADOW] *= 0.2
            a[STACK] = 0.35
        bands[b] = (a + rng.normal(0, noise, a.shape)).astype("float32")
    return Scene(bands, UTM, TR, np.ones((80, 80), bool))


def _inside(d: Detection, where: tuple[slice, slice]) -> bool:
    x, y = d.center
    return where[0].start <= y < where[0].stop and where[1].start <= x < where[1].stop


def test_a_ship_that_left_its_berth_against_the_quay_is_found_on_its_date_and_nothing_else_is():
    before, after = harbour(ship=True, seed=0), harbour(ship=False, seed=1)
    left, arrived = water_changes(before, after)
    assert len(left) == 1 and _inside(left.items[0], BERTH)
    d = left.items[0]
    assert d.extra["vacated"]["peak_z"] > 5 * PEAK_Z           # a hull against water: far above the noise
    # open water on the other date (NDWI 0.43 as drawn; about 0.25 without the path radiance the
    # detector takes off: this water is brighter than the training ports' darkest)
    assert d.extra["vacated"]["water_ndwi"] > 0.2
    assert 110 <= d.length_m <= 170 and d.width_m <= 45        # 140 m x 30 m, in metres
    # the containers left the quay, not water; the shadow's water is brighter after than before, but
    # no brighter than the water around it; the boat at anchor only dimmed: none is an object that
    # came or went, nor is the ship that stayed
    assert len(arrived) == 0


def test_an_arrival_is_found_on_the_after_date():
    before, after = harbour(ship=False, seed=1), harbour(ship=True, seed=0)
    left, arrived = water_changes(before, after)
    assert len(left) == 0
    assert len(arrived) == 1 and _inside(arrived.items[0], BERTH)
    # sought on the before date only (departures, as the claims read them), the arrival is not
    assert all(len(d) == 0 for d in water_changes(before, after, dates=("before",)))
    assert len(water_changes(before, after, dates=("after",))[1]) == 1


def test_dark_land_lifted_by_path_radiance_is_not_taken_for_the_water_a_ship_left():
    # a bright truck on the quay's edge before, dark asphalt there after (NDWI -0.12); both dates
    # top-of-atmosphere (L1C) with the same path radiance, which lifts the asphalt's NDWI to +0.10 and
    # joins it to the harbour's water
    patch, asphalt = (slice(26, 30), slice(60, 70)), {"B02": 0.05, "B03": 0.055, "B04": 0.06, "B08": 0.07}
    path = {"B02": 0.05, "B03": 0.04, "B04": 0.025, "B08": 0.008}
    before, after = harbour(ship=False, seed=1), harbour(ship=False, seed=2)
    for b in before.bands:
        before.bands[b][patch] = 0.35
        after.bands[b][patch] = asphalt[b]
    clear = water_changes(before, after)
    hazy = water_changes(*(Scene({b: v + np.float32(path[b]) for b, v in s.bands.items()}, UTM, TR, s.valid)
                           for s in (before, after)))
    assert len(clear[0]) == 0 and len(hazy[0]) == 0  # read with the path radiance, hazy[0] held the truck


#: Path radiance of a top-of-atmosphere (L1C) date, reflectance per band: strongest in the blue.
PATH_RADIANCE = {"B02": 0.06, "B03": 0.04, "B04": 0.025, "B08": 0.008}


@pytest.mark.parametrize("gain", [1.0, 0.95, 1.1])
def test_a_ship_that_left_is_found_when_the_after_date_has_path_radiance_and_a_gain(gain):
    # the after date top-of-atmosphere: its bands are gain x the surface + the path radiance. Scaled by the
    # ratio of the medians (water's), the quay kept a brightening of its own that joined the hull's region
    # and carried it to the grid's edge: no departure was found (before 2026-11-28, at every gain here)
    before = harbour(ship=True, seed=0)
    after = harbour(ship=False, seed=1)
    after = Scene({b: (np.float32(gain) * v + np.float32(PATH_RADIANCE[b])).astype("float32")
                   for b, v in after.bands.items()}, UTM, TR, after.valid)
    left, arrived = water_changes(before, after)
    assert len(left) == 1 and _inside(left.items[0], BERTH) and len(arrived) == 0
    # and the same harbour with nothing gone, under the same radiometry, holds nothing
    still = Scene({b: (np.float32(gain) * v + np.float32(PATH_RADIANCE[b])).astype("float32")
                   for b, v in harbour(ship=True, seed=1).bands.items()}, UTM, TR, after.valid)
    assert all(len(d) == 0 for d in water_changes(before, still))


def test_a_pond_on_the_quay_is_not_the_open_water_a_ship_left():
    # something bright on the quay before, a small pool of water there after (NDWI +0.43, 0.6 ha): no
    # ship sails off into water that is not part of open water (the detector's bodies of 20 ha or more)
    pond = (slice(10, 18), slice(60, 68))
    before, after = harbour(ship=False, seed=1), harbour(ship=False, seed=2)
    for b in before.bands:
        before.bands[b][pond] = 0.35
        after.bands[b][pond] = WATER[b]
    assert len(water_changes(before, after)[0]) == 0


def test_nothing_is_found_where_the_pair_is_not_compared_or_has_no_nir():
    before, after = harbour(ship=True, seed=0), harbour(ship=False, seed=1)
    compared = np.ones((80, 80), bool)
    compared[25:40, 15:40] = False                                # e.g. a cloud over the berth on one date
    assert len(water_changes(before, after, compared=compared)[0]) == 0
    visible = [Scene({b: s.bands[b] for b in ("B02", "B03", "B04")}, UTM, TR, s.valid) for s in (before, after)]
    assert all(len(d) == 0 for d in water_changes(*visible))


def test_a_departure_is_found_when_part_of_its_ring_lies_in_another_dates_cloud_and_haze():
    """A cloud (and its hazy rim) on the after date reaches a corner of the ring around the berth, two
    pixels from the hull's box: the hull and the water it left are seen clearly on both dates, so the
    departure is found; its peak is measured on the ring's compared pixels."""
    before, after = harbour(ship=True, seed=0), harbour(ship=False, seed=1)
    compared = np.ones((80, 80), bool)
    compared[35:50, 36:60] = False                               # 9 of the ring's pixels, none next to the hull
    left, _ = water_changes(before, after, compared=compared)
    assert len(left) == 1 and _inside(left.items[0], BERTH)
    assert left.items[0].extra["vacated"]["peak_z"] > 5 * PEAK_Z


@pytest.mark.parametrize("hidden", [
    (slice(25, 45), slice(27, 60)),    # the cloud over half of the hull: its box is not all seen
    (slice(25, 45), slice(34, 60)),    # the cloud right at the hull's end: the region stops at the cloud
    (slice(33, 34), slice(15, 40)),    # a one-pixel strip of haze along the hull's side
])
def test_a_departure_that_reaches_what_is_not_compared_is_not_found(hidden):
    """The hull (or what would be) may go on under the cloud: where the region touches pixels that are not
    compared, it ends where the comparison stops, not where its date stops being brighter."""
    before, after = harbour(ship=True, seed=0), harbour(ship=False, seed=1)
    compared = np.ones((80, 80), bool)
    compared[hidden] = False
    assert not any(_inside(d, BERTH) for d in water_changes(before, after, compared=compared)[0])


def test_a_departure_whose_ring_is_mostly_hidden_is_not_found():
    """Compared only on its box and one pixel around it, the ring's level is that of a sliver of it."""
    before, after = harbour(ship=True, seed=0), harbour(ship=False, seed=1)
    compared = np.zeros((80, 80), bool)
    compared[29:34, 19:35] = True
    compared[60:, :] = True                                        # enough of the grid for the noise spread
    assert len(water_changes(before, after, compared=compared)[0]) == 0


@pytest.mark.parametrize("pixels", [3, 5, 8])
def test_a_departed_boats_length_is_its_ground_length_not_more(pixels):
    """A boat one pixel wide and ``pixels`` long (10 m pixels) measures ``pixels`` x 10 m long and 10 m wide:
    the region is all of the boat (population moments; the sample estimate made 3 pixels 36 m)."""
    before, after = harbour(ship=False, seed=1), harbour(ship=False, seed=2)
    for b in before.bands:
        before.bands[b][45, 20:20 + pixels] = HULL[b]
    left, _ = water_changes(before, after)
    assert len(left) == 1
    assert left.items[0].length_m == pytest.approx(10.0 * pixels, abs=0.5)
    assert left.items[0].width_m == pytest.approx(10.0, abs=0.5)


@pytest.mark.parametrize("gain", [0.45, 1.3, 2.5])
def test_an_arrivals_brightening_is_measured_in_its_own_dates_reflectance(gain):
    """With a gain between the dates, the after date's brightening (from the difference, which is in the
    before date's units) is brought back to the after date, where its contrast is measured: the two agree
    (a hull on open water: its contrast is its brightening) and the arrival is found whatever the gain."""
    before, after = harbour(ship=False, seed=1), harbour(ship=True, seed=0)
    after = Scene({b: v * np.float32(gain) for b, v in after.bands.items()}, UTM, TR, after.valid)
    _, arrived = water_changes(before, after)
    assert len(arrived) == 1 and _inside(arrived.items[0], BERTH)
    v = arrived.items[0].extra["vacated"]
    assert v["change"] == pytest.approx(v["contrast"], rel=0.05)


def test_a_noise_free_pair_reports_a_ship_that_left_and_an_identical_one_nothing():
    """Without noise the pair's brightness difference is 0 over most pixels: its measured spread is 0, and the
    spread is taken as MIN_SPREAD (one digital number) instead of no region being sought at all."""
    before, after = harbour(ship=True, seed=0, noise=0.0), harbour(ship=False, seed=1, noise=0.0)
    for b in before.bands:                                        # and a boat at anchor in open water
        before.bands[b][45, 20:25] = HULL[b]
    left, arrived = water_changes(before, after)
    assert sorted(_inside(d, BERTH) for d in left.items) == [False, True] and len(arrived) == 0
    assert any(_inside(d, (slice(45, 46), slice(20, 25))) for d in left.items)
    for d in left.items:  # 0.196 brighter than the water: 1962 spreads of one digital number
        v = d.extra["vacated"]
        assert v["change"] == pytest.approx(0.196, abs=0.002)    # in reflectance, not in the floored spreads
        assert v["peak_z"] == pytest.approx(v["change"] / MIN_SPREAD, rel=0.01)
    assert all(len(d) == 0 for d in water_changes(before, before))
    assert all(len(d) == 0 for d in water_changes(after, after))


def test_a_one_number_step_on_a_noise_free_pair_is_not_a_departure():
    """Quantised alike on both dates, a pair differs by whole digital numbers (1e-4 reflectance) where anything
    differs: a patch of water one number brighter in every band before is within one spread, not an object."""
    before, after = harbour(ship=False, seed=1, noise=0.0), harbour(ship=False, seed=1, noise=0.0)
    for b in before.bands:
        before.bands[b][44:47, 20:24] += np.float32(1e-4)
        before.bands[b][60:62, 60:62] += np.float32(3e-4)
    assert all(len(d) == 0 for d in water_changes(before, after))


def test_a_region_is_added_only_where_no_object_of_either_date_explains_it():
    before, after = harbour(ship=True, seed=0), harbour(ship=False, seed=1)
    left, arrived = water_changes(before, after)
    empty = Detections((), UTM, TR, (10.0, 10.0))
    counted = Detection(box=(50.0, 30.0, 62.0, 33.0), score=0.9, cls="vessel", centroid=(56.0, 31.5),
                        extra={"pair": {"id": 4, "place": "unchanged"}})
    objs = Detections((counted,), UTM, TR, (10.0, 10.0))
    b, a = add_vacated(objs, objs, left, arrived, probability=0.6)
    assert len(b) == 2 and len(a) == 1
    new = next(d for d in b.items if "vacated" in d.extra)
    assert new.extra["pair"] == {"id": 5, "place": "changed", "score_before": 0.5, "score_after": 0.0,
                                 "probability": 0.6}
    # the detector counted the departing ship (on either date): the region adds nothing
    there = Detection(box=(21.0, 30.0, 33.0, 33.0), score=0.7, cls="vessel", centroid=(27.0, 31.5))
    for b0, a0 in ((Detections((there,), UTM, TR), empty), (empty, Detections((there,), UTM, TR))):
        b, a = add_vacated(b0, a0, left, arrived)
        assert len(b) + len(a) == 1


def test_a_look_of_the_other_date_vetoes_a_region_only_where_it_covers_it():
    """A weak detection of the after date that grazes a departed ship's box (less than LOOK_OVERLAP of the
    smaller box in common) does not say the after date held something there; one over the region does."""
    from imgdiff.vacated import LOOK_OVERLAP

    before, after = harbour(ship=True, seed=0), harbour(ship=False, seed=1)
    left, arrived = water_changes(before, after)
    assert len(left) == 1
    x0, y0, x1, y1 = left.items[0].box
    empty = Detections((), UTM, TR, (10.0, 10.0))

    def looks(box):
        return Detections((Detection(box=box, score=0.19, cls="vessel"),), UTM, TR, (10.0, 10.0))

    # a look 4 px x 4 px whose box shares 0.8 px x 4 px with the region's: a sliver of the smaller box
    sliver = (x1 - 0.8, y0, x1 + 3.2, y0 + 4.0)
    b, _ = add_vacated(empty, empty, left, arrived, looks_after=looks(sliver))
    assert sum("vacated" in d.extra for d in b.items) == 1
    # the same look moved onto the region: it covers more than LOOK_OVERLAP of the smaller box
    over = (x0 + 1.0, y0, x0 + 5.0, y0 + 4.0)
    assert 0.8 * 4 / 16 < LOOK_OVERLAP < 1.0
    b, _ = add_vacated(empty, empty, left, arrived, looks_after=looks(over))
    assert not any("vacated" in d.extra for d in b.items)
    # a look of the region's own date vetoes nothing
    b, _ = add_vacated(empty, empty, left, arrived, looks_before=looks(over))
    assert sum("vacated" in d.extra for d in b.items) == 1


@pytest.mark.parametrize("assertion, verdict", [("present_before", "SUPPORTED"), ("decreased", "SUPPORTED"),
                                                ("absent_after", "SUPPORTED"), ("unchanged", "REFUTED")])
def test_claims_count_a_departure_the_detector_missed(monkeypatch, assertion, verdict):
    from imgdiff.claims import Claim, detector_performance, evaluate_claim, registration_quality

    # a detector that sees nothing: the departure is known from the change alone
    monkeypatch.setattr(pipeline, "detect", lambda obj, scene, zones, min_score=None: Detections(
        (), scene.crs, scene.transform, scene.pixel_size_m))
    zones = Zones({"piers": shapely_box(700000 + 150, 3900000 - 380, 700000 + 400, 3900000 - 260)}, crs=UTM)
    before, after = harbour(ship=True, seed=0), harbour(ship=False, seed=1)
    result, _, _, states, dets, _ = pipeline.analyse(before, after, zones, ["vessels"])
    claim = Claim("c", "text", "vessels", "piers", assertion)
    v = evaluate_claim(claim, *dets["vessels"], states["before"]["piers"], states["after"]["piers"],
                       registration_reliability=registration_quality(result.registration),
                       performance=detector_performance("vessels"))
    assert (v.verdict, v.count_before, v.count_after) == (verdict, 1, 0)
    assert any("change between the dates" in c for c in v.caveats)


def test_claims_do_not_count_an_arrival_seen_only_in_the_change(monkeypatch):
    """Vessels: departures only (imgdiff.claims.evidence.VACATED_DATES): the filled place of a removed boat can look like one."""
    from imgdiff.claims import Claim, detector_performance, evaluate_claim, registration_quality

    monkeypatch.setattr(pipeline, "detect", lambda obj, scene, zones, min_score=None: Detections(
        (), scene.crs, scene.transform, scene.pixel_size_m))
    zones = Zones({"piers": shapely_box(700000 + 150, 3900000 - 380, 700000 + 400, 3900000 - 260)}, crs=UTM)
    before, after = harbour(ship=False, seed=1), harbour(ship=True, seed=0)
    result, _, _, states, dets, _ = pipeline.analyse(before, after, zones, ["vessels"])
    v = evaluate_claim(Claim("c", "text", "vessels", "piers", "present_after"), *dets["vessels"],
                       states["before"]["piers"], states["after"]["piers"],
                       registration_reliability=registration_quality(result.registration),
                       performance=detector_performance("vessels"))
    assert (v.verdict, v.count_before, v.count_after) == ("REFUTED", 0, 0)


CONCRETE = {"B02": 0.20, "B03": 0.21, "B04": 0.22}
PLANE = (slice(20, 24), slice(20, 27))      # a 70 m x 40 m airliner (white) on its stand ...
PLANE_SHADOW = (slice(24, 26), slice(22, 27))  # ... and its shadow
STAYS_ON_STAND = (slice(50, 54), slice(20, 27))
SWAPPED = (slice(20, 24), slice(50, 57))    # a plane before, a fuel truck and a tug after: something on both dates


def apron(*, plane: bool, seed: int, noise: float = 0.003) -> Scene:
    rng = np.random.default_rng(seed)
    bands = {}
    for b in CONCRETE:
        a = np.full((80, 80), CONCRETE[b])
        a[STAYS_ON_STAND] = 0.45
        if plane:
            a[PLANE] = 0.45
            a[PLANE_SHADOW] = 0.08
            a[SWAPPED] = 0.45
        else:
            a[SWAPPED] = 0.05
        bands[b] = (a + rng.normal(0, noise, a.shape)).astype("float32")
    return Scene(bands, UTM, TR, np.ones((80, 80), bool))


def test_an_aircraft_that_left_its_stand_is_found_with_its_shadow_as_one_object_and_nothing_else_is():
    from imgdiff.vacated import apron_changes

    left, arrived = apron_changes(apron(plane=True, seed=0), apron(plane=False, seed=1))
    # the stand that stayed is unchanged; the stand with something on both dates is not plain apron after
    assert len(left) == 1 and _inside(left.items[0], (slice(20, 26), slice(20, 27)))
    assert left.items[0].extra["vacated"]["other_contrast"] < 0.5 * left.items[0].extra["vacated"]["contrast"]
    assert len(arrived) == 0
    left, arrived = apron_changes(apron(plane=False, seed=1), apron(plane=True, seed=0))
    assert len(left) == 0 and len(arrived) == 1                    # swapped: an arrival
    # sought on the before date only, the arrival is not
    assert all(len(d) == 0 for d in apron_changes(apron(plane=False, seed=1), apron(plane=True, seed=0),
                                                  dates=("before",)))


def test_a_noise_free_pair_reports_an_aircraft_that_left_and_an_identical_one_nothing():
    before, after = apron(plane=True, seed=0, noise=0.0), apron(plane=False, seed=1, noise=0.0)
    left, arrived = apron_changes(before, after)
    assert len(left) == 1 and _inside(left.items[0], (slice(20, 26), slice(20, 27))) and len(arrived) == 0
    assert all(len(d) == 0 for d in apron_changes(before, before))
    assert all(len(d) == 0 for d in apron_changes(after, after))


def textured_apron(*, plane: bool, seed: int, gain: float = 1.0, offset: float = 0.0, noise: float = 0.003) -> Scene:
    """80 x 80 px of concrete slabs (80 m, +-0.05 reflectance, alike on both dates), optionally a grey aircraft at
    PLANE with its shadow; the date's reflectance ``gain`` x that + ``offset`` (a top-of-atmosphere date's path
    radiance) + Gaussian noise."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    slabs = ndi.zoom(np.random.default_rng(7).normal(0, 0.05, (10, 10)), 8, order=0)
    bands = {}
    for b in CONCRETE:
        a = CONCRETE[b] + slabs
        if plane:
            a[PLANE] += 0.06
            a[PLANE_SHADOW] -= 0.05
        bands[b] = (gain * a + offset + rng.normal(0, noise, a.shape)).astype("float32")
    return Scene(bands, UTM, TR, np.ones((80, 80), bool))


@pytest.mark.parametrize("gain, offset", [(1.0, 0.0), (1.1, 0.05), (0.9, 0.04)])
def test_an_aircraft_that_left_is_found_when_the_after_date_has_a_gain_and_an_offset(gain, offset):
    # scaling the after date by the ratio of the medians matches a gain, not an offset: the slabs' own
    # contrast then stays in the difference (an offset of 0.05 over a median of 0.27: 18 % of it) and the
    # aircraft no longer stands out of that noise (found nowhere before 2026-11-28 at 1.1 / 0.05 and 0.9 / 0.04)
    left, arrived = apron_changes(textured_apron(plane=True, seed=0),
                                  textured_apron(plane=False, seed=1, gain=gain, offset=offset))
    assert len(left) == 1 and _inside(left.items[0], (slice(20, 26), slice(20, 27))) and len(arrived) == 0
    # and an unchanged apron under the same gain and offset holds nothing
    assert all(len(d) == 0 for d in apron_changes(textured_apron(plane=False, seed=0),
                                                  textured_apron(plane=False, seed=1, gain=gain, offset=offset)))


def test_an_aircraft_that_left_is_found_when_its_box_holds_a_bright_structure_that_stays():
    # a cross-shaped aircraft (fuselage and wings, grey on concrete) whose box's empty corner holds a bright roof
    # present on both dates: the box stood out of its ring on the after date almost as much as on the before date
    # (the roof's contrast), so the place did not read as plain apron there (before 2026-11-28); the region's own
    # pixels, the aircraft's, are plain apron on the after date
    def scene(plane: bool, seed: int) -> Scene:
        rng = np.random.default_rng(seed)
        bands = {}
        for b, level in CONCRETE.items():
            a = np.full((80, 80), level)
            a[20:25, 18:24] = 0.55                 # the roof, in the corner the wings leave empty
            if plane:
                a[20:34, 25:28] += 0.07            # fuselage, 140 m x 30 m
                a[25:28, 18:35] += 0.07            # wings, 170 m
            bands[b] = (a + rng.normal(0, 0.003, a.shape)).astype("float32")
        return Scene(bands, UTM, TR, np.ones((80, 80), bool))

    left, arrived = apron_changes(scene(True, 0), scene(False, 1))
    assert len(left) == 1 and _inside(left.items[0], (slice(20, 34), slice(18, 35))) and len(arrived) == 0
    assert all(len(d) == 0 for d in apron_changes(scene(False, 0), scene(False, 1)))


def smeared_apron(*, plane: bool, seed: int) -> Scene:
    """80 x 80 px of concrete with a bright taxiway strip (columns 30-33); with ``plane`` a dark aircraft beside it
    (a sharp-edged cross, rows 20-29); without, its place filled as inpainting fills it: the strip's light smeared
    smoothly over where the aircraft stood."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:80, :80]
    smear = 0.12 * np.exp(-(((yy - 25) / 3.5) ** 2 + ((xx - 27) / 2.5) ** 2))
    bands = {}
    for b, level in CONCRETE.items():
        a = np.full((80, 80), level)
        a[:, 30:34] = 0.34
        if plane:
            a[20:30, 26:28] = level - 0.03         # fuselage
            a[23:25, 22:32] = level - 0.03         # wings
        else:
            a = a + smear
        bands[b] = (a + rng.normal(0, 0.003, a.shape)).astype("float32")
    return Scene(bands, UTM, TR, np.ones((80, 80), bool))


def test_the_smooth_filled_place_of_an_aircraft_removed_from_the_image_is_neither_an_arrival_nor_a_departure():
    # the filled place stands out on its date (the strip's light smeared over it) twice as much as the dark
    # aircraft did on the other, so it read as an aircraft on plain apron: an arrival in the zone every aircraft
    # had left (before 2026-11-28, benchmarks/claims.py --aircraft --variant cloud-before), or on swapped dates a
    # departure from a zone one arrived in; but it holds less fine (pixel-scale) detail than the aircraft did
    with_plane, filled = smeared_apron(plane=True, seed=0), smeared_apron(plane=False, seed=1)
    assert all(len(d) == 0 for d in apron_changes(with_plane, filled))
    assert all(len(d) == 0 for d in apron_changes(filled, with_plane))
    # a sharp-edged aircraft standing out on one date is still found there, arriving or leaving
    left, arrived = apron_changes(apron(plane=False, seed=1), apron(plane=True, seed=0))
    assert len(left) == 0 and len(arrived) == 1 and _inside(arrived.items[0], (slice(20, 26), slice(20, 27)))


def test_claims_count_an_aircraft_arrival_seen_only_in_the_change(monkeypatch):
    """Aircraft: arrivals too (imgdiff.claims.evidence.VACATED_DATES): plain apron before, an aircraft after."""
    from imgdiff.claims import Claim, detector_performance, evaluate_claim, registration_quality

    monkeypatch.setattr(pipeline, "detect", lambda obj, scene, zones, min_score=None: Detections(
        (), scene.crs, scene.transform, scene.pixel_size_m))
    zones = Zones({"stand": shapely_box(700000 + 170, 3900000 - 290, 700000 + 300, 3900000 - 170)}, crs=UTM)
    # slabs of concrete: texture to co-register on (objects are not read from the change of a pair that failed to)
    result, _, _, states, dets, _ = pipeline.analyse(textured_apron(plane=False, seed=1),
                                                     textured_apron(plane=True, seed=0), zones, ["aircraft"])
    verdicts = {a: evaluate_claim(Claim("c", "text", "aircraft", "stand", a), *dets["aircraft"],
                                  states["before"]["stand"], states["after"]["stand"],
                                  registration_reliability=registration_quality(result.registration),
                                  performance=detector_performance("aircraft"))
                for a in ("present_after", "increased")}
    assert {a: (v.verdict, v.count_before, v.count_after) for a, v in verdicts.items()} == {
        "present_after": ("SUPPORTED", 0, 1), "increased": ("SUPPORTED", 0, 1)}


@pytest.mark.parametrize("obj", ["aircraft", "vessels"])
def test_a_weak_look_of_the_other_date_does_not_veto_an_object_that_left(monkeypatch, obj):
    """imgdiff.claims.evidence.VACATED_LOOK_VETO: the region's own tests already say the after date holds nothing
    there (aircraft: plain apron, less fine detail; vessels: open water, a brightening that matches the region's
    contrast); the detector's weak look at the bare stand, or where the hull met the quay, does not undo the
    departure."""
    from imgdiff.claims import Claim, detector_performance, evaluate_claim, registration_quality

    if obj == "aircraft":  # a departed aircraft and a look at its stand
        pair, look, zone = ((textured_apron(plane=True, seed=0), textured_apron(plane=False, seed=1)),
                            Detection(box=(20.0, 20.0, 27.0, 26.0), score=0.2, cls="aircraft", centroid=(23.5, 23.0)),
                            shapely_box(700000 + 170, 3900000 - 290, 700000 + 300, 3900000 - 170))
    else:  # a departed ship and a look along the quay's edge of its berth
        pair, look, zone = ((harbour(ship=True, seed=0), harbour(ship=False, seed=1)),
                            Detection(box=(20.0, 29.0, 27.0, 31.0), score=0.17, cls="vessel", centroid=(23.5, 30.0)),
                            shapely_box(700000 + 150, 3900000 - 380, 700000 + 400, 3900000 - 260))
    calls = []

    def detect(obj, scene, zones, min_score=None):
        calls.append(obj)  # looks of the before date first, then of the after date
        return Detections((look,) if len(calls) % 2 == 0 else (), scene.crs, scene.transform, scene.pixel_size_m)

    monkeypatch.setattr(pipeline, "detect", detect)
    result, _, _, states, dets, _ = pipeline.analyse(*pair, Zones({"z": zone}, crs=UTM), [obj])
    v = evaluate_claim(Claim("c", "text", obj, "z", "decreased"), *dets[obj], states["before"]["z"],
                       states["after"]["z"], registration_reliability=registration_quality(result.registration),
                       performance=detector_performance(obj))
    assert (v.verdict, v.count_before, v.count_after) == ("SUPPORTED", 1, 0)
    assert len(calls) == 2
