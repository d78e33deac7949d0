"""Claims decided from the pair: clouds and shadows confirmed by both dates, comparisons over places seen on both."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from imgdiff.claims import (
    INCONCLUSIVE,
    REFUTED,
    SUPPORTED,
    Claim,
    DetectorPerformance,
    ZoneState,
    evaluate_claim,
    pair_clouds,
)
from imgdiff.detect.base import Detection, Detections
from imgdiff.radiometry import confirm_shadows
from imgdiff.scene import Scene

TR = Affine(10, 0, 700000, 0, -10, 3900000)
UTM = CRS.from_epsg(32636)
WATER = {"B02": 0.07, "B03": 0.05, "B04": 0.035, "B08": 0.02, "B11": 0.01}
QUAY = {"B02": 0.15, "B03": 0.16, "B04": 0.17, "B08": 0.25, "B11": 0.28}
HULL = {"B02": 0.22, "B03": 0.22, "B04": 0.22, "B08": 0.30, "B11": 0.25}
CLOUD = {"B02": 0.55, "B03": 0.54, "B04": 0.55, "B08": 0.58, "B11": 0.40}
BERTH = (slice(30, 33), slice(20, 34))  # a 140 m x 30 m hull alongside the quay


def harbour(*, ship: bool, cloud: bool = False, shadow: bool = False, seed: int = 0) -> Scene:
    """80 x 80 px harbour: quay (rows 20-30) above water, optional ship at the berth, cloud and its shadow."""
    rng = np.random.default_rng(seed)
    bands = {}
    for b in WATER:
        a = np.full((80, 80), WATER[b])
        a[:30, :] = QUAY[b]
        if ship:
            a[BERTH] = HULL[b]
        if shadow:
            a[50:75, 45:70] *= 0.45  # dimmed evenly in every band
        if cloud:
            a[45:70, 5:30] = CLOUD[b]
        bands[b] = (a + rng.normal(0, 0.002, a.shape)).astype("float32")
    return Scene(bands, UTM, TR, np.ones((80, 80), bool))


def test_a_ship_leaving_its_berth_is_not_cloud_or_shadow_and_the_opaque_cloud_is():
    before, after = harbour(ship=True), harbour(ship=False, cloud=True, seed=1)
    mb, ma = pair_clouds(before, after)
    assert not mb.any()
    assert not ma[BERTH].any()                      # the emptied berth (hull -> water) stays clear
    assert ma[47:68, 7:28].all()                    # the cloud is masked
    assert ma.sum() < 1.5 * 25 * 25                 # and little else


def test_a_shadow_is_confirmed_when_the_other_date_shows_an_even_darkening_but_an_emptied_berth_is_not():
    before, after = harbour(ship=True), harbour(ship=False, shadow=True, seed=1)
    candidates = np.zeros((80, 80), bool)
    candidates[50:75, 45:70] = True                 # the real shadow
    candidates[29:34, 19:35] = True                 # the emptied berth, dark in NIR as a shadow would be
    ok = confirm_shadows(candidates, after, before)
    assert ok[52:73, 47:68].all()
    assert not ok[29:34, 19:35].any()


def _toa(scene: Scene, gain: float, path: dict[str, float]) -> Scene:
    """The scene as another product would record it: a gain, plus a path radiance per band (reflectance)."""
    bands = {b: (v * gain + path.get(b, 0.0)).astype("float32") for b, v in scene.bands.items()}
    return Scene(bands, scene.crs, scene.transform, scene.valid)


@pytest.mark.parametrize("gain, path", [(1.125, {"B02": 0.06, "B03": 0.04, "B04": 0.03, "B08": 0.015}),
                                        (1.4, {})], ids=["top-of-atmosphere-date", "gain-1.4"])
def test_water_darker_on_one_date_only_by_the_dates_radiometry_is_not_a_shadow_but_a_real_shadow_still_is(gain, path):
    # the other date is a top-of-atmosphere product (path radiance: dark water reads 2 x brighter in every
    # band), or brighter by a gain alone; water on the first date is then "darker in every band"
    candidates = np.zeros((80, 80), bool)
    candidates[50:75, 45:70] = True                 # a shadow candidate over open water
    for shadowed in (False, True):
        scene = harbour(ship=False, shadow=shadowed)
        other = _toa(harbour(ship=False, seed=1), gain, path)
        ok = confirm_shadows(candidates, scene, other)
        assert ok[52:73, 47:68].all() if shadowed else not ok.any()


PERF = DetectorPerformance("vessels", 0.9, 0.8, 25.0, "test")
CLEAR = ZoneState("piers", 1000, 1.0, 0.0, 0.0)


def dets(*objs):
    """Detections from (x_px, y_px, place) where place is the reconcile tag."""
    items = tuple(Detection(box=(x - 6, y - 1, x + 6, y + 1), score=0.9, cls="vessel", length_m=120.0, zone="piers",
                            centroid=(x, y), extra={"pair": {"place": place}}) for x, y, place in objs)
    return Detections(items, UTM, TR, (10.0, 10.0))


def test_a_comparison_leaves_out_objects_whose_place_is_hidden_on_the_other_date():
    # three ships before; on the after date two are seen and one is under a cloud (tagged "hidden")
    before = dets((10, 10, "unchanged"), (30, 10, "unchanged"), (50, 10, "hidden"))
    after = dets((10, 10, "unchanged"), (30, 10, "unchanged"))
    partly = ZoneState("piers", 1000, 0.85, 0.15, 0.0)
    v = evaluate_claim(Claim("c", "", "vessels", "piers", "unchanged"), before, after, CLEAR, partly,
                       registration_reliability=0.9, performance=PERF)
    assert v.verdict == SUPPORTED and (v.count_before, v.count_after) == (2, 2)
    assert any("hidden on the other date" in c for c in v.caveats)
    v = evaluate_claim(Claim("c", "", "vessels", "piers", "decreased"), before, after, CLEAR, partly,
                       registration_reliability=0.9, performance=PERF)
    assert v.verdict == REFUTED
    # a single-date claim still counts the ship seen before
    v = evaluate_claim(Claim("c", "", "vessels", "piers", "present_before"), before, after, CLEAR, partly,
                       registration_reliability=0.9, performance=PERF)
    assert v.verdict == SUPPORTED and v.count_before == 3
    assert v.confidence == pytest.approx(1 - 0.1 ** 3)


def test_the_hmeimim_sample_gives_the_true_verdicts_including_the_unchanged_transport_fleet(tmp_path):
    import json
    from pathlib import Path

    from click.testing import CliRunner
    from imgdiff_cli.main import cli

    claims = Path(__file__).resolve().parent.parent / "samples" / "claims" / "hmeimim.yaml"
    r = CliRunner().invoke(cli, ["verify", str(claims), "-o", str(tmp_path / "o"), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    v = {c["id"]: c["verdict"] for c in rep["claims"]}
    assert v == {"aircraft-still-present": SUPPORTED, "transports-still-present": SUPPORTED,
                 "aircraft-gone": REFUTED, "transport-fleet-unchanged": SUPPORTED}
    assert rep["evidence_rules"]["min_evidence_score"] == 0.5


def test_the_hazy_rim_of_an_opaque_cloud_is_found_but_brighter_ground_elsewhere_is_not():
    from imgdiff.claims import cloud_haze, temporal_clouds

    rng = np.random.default_rng(3)
    ground = {b: (0.25 + 0.07 * rng.random((80, 80))).astype("float32") for b in ("B02", "B03", "B04")}  # concrete
    yy, xx = np.mgrid[:80, :80]
    d = np.maximum(0, np.maximum(np.abs(xx - 30) - 12, np.abs(yy - 30) - 12))  # 0 inside a 25 x 25 px box
    alpha = np.clip((8 - d) / 8, 0, 1)                                          # fading out over 8 px
    after = {b: (1.08 * g * (1 - alpha) + 0.55 * alpha + rng.normal(0, 0.003, g.shape)).astype("float32")
             for b, g in ground.items()}                                          # gain 1.08 between dates
    ok = np.ones((80, 80), bool)
    b, a = Scene(ground, UTM, TR, ok), Scene(after, UTM, TR, ok)
    mb, ma = temporal_clouds(b, a)
    assert ma[alpha > 0.6].all() and not ma[alpha < 0.2].any()   # the opaque part hides the zone
    hb, ha = cloud_haze(b, a, mb, ma)
    assert not hb.any()
    assert (ma | ha)[alpha >= 0.08].all()   # the hazy rim is found (its pixels are not compared)
    assert not ha[d >= 12].any()            # ground well away from the cloud, 8 % brighter, is not haze


def test_the_hazy_rim_does_not_spread_over_bright_ground_when_the_other_date_holds_path_radiance():
    # harbour water (the left 5/8) and bright city (right), a cloud over the shore on the surface-reflectance date;
    # the other date top-of-atmosphere: the same ground plus path radiance (strongest in the blue). Matched by a
    # gain alone, the city read as lit by the cloud and the rim ran over all of it (before 2026-11-28)
    from imgdiff.claims import cloud_haze, temporal_clouds

    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:120, :120]
    land = xx >= 75
    level = {"B02": 0.30, "B03": 0.32, "B04": 0.34}
    ground = {b: np.where(land, v + 0.08 * rng.random((120, 120)), 0.04 + 0.005 * rng.random((120, 120)))
              for b, v in level.items()}
    path = {"B02": 0.08, "B03": 0.05, "B04": 0.03}
    d = np.maximum(0, np.maximum(np.abs(xx - 75) - 10, np.abs(yy - 40) - 10))   # 0 inside a 21 x 21 px box
    alpha = np.clip((8 - d) / 8, 0, 1)                                           # fading out over 8 px
    cloudy = {b: (g * (1 - alpha) + 0.6 * alpha + rng.normal(0, 0.003, g.shape)).astype("float32")
              for b, g in ground.items()}
    toa = {b: (g + path[b] + rng.normal(0, 0.003, g.shape)).astype("float32") for b, g in ground.items()}
    ok = np.ones((120, 120), bool)
    b, a = Scene(cloudy, UTM, TR, ok), Scene(toa, UTM, TR, ok)
    mb, ma = temporal_clouds(b, a)
    assert mb[alpha > 0.7].all() and not ma.any()
    hb, ha = cloud_haze(b, a, mb, ma)
    assert not ha.any()
    assert (mb | hb)[(alpha >= 0.25) & land].all()   # the hazy rim over the city is found
    assert not hb[d >= 12].any()                     # the city well away from the cloud is not haze


# --------------------------------------------------------------------------- partly hidden zones
def _judge(assertion, nb, na, vis, sb=CLEAR, sa=CLEAR):
    before = dets(*((10 + 20 * i, 10, "unchanged") for i in range(nb)))
    after = dets(*((10 + 20 * i, 10, "unchanged") for i in range(na)))
    both = ZoneState("piers", 1000, vis, 1 - vis, 0.0)
    return evaluate_claim(Claim("c", "", "vessels", "piers", assertion), before, after, sb, sa,
                          registration_reliability=0.9, performance=PERF, state_both=both)


def test_hidden_capacity_fills_the_hidden_part_at_the_visible_density_in_whole_objects():
    from imgdiff.claims import hidden_capacity

    assert hidden_capacity(10, 2, 0.8) == 2      # 10 objects in 80 %: 2.5 in the hidden 20 %, 2 whole ones
    assert hidden_capacity(3, 3, 0.95) == 0
    assert hidden_capacity(0, 0, 0.8) == 0       # a fifth hidden, nothing seen: nothing there either
    assert hidden_capacity(0, 0, 0.6) == 1       # 40 % hidden can hold an object where none is seen
    assert hidden_capacity(1, 1, 0.7) == 1
    assert hidden_capacity(4, 1, 0.0) > 1000     # nothing seen on both dates: anything could be hidden


@pytest.mark.parametrize("assertion", ["increased", "decreased", "unchanged"])
def test_nothing_seen_in_a_zone_hidden_by_more_than_a_quarter_decides_no_comparison(assertion):
    v = _judge(assertion, 0, 0, 0.6, sa=ZoneState("piers", 1000, 0.6, 0.4, 0.0))
    assert v.verdict == INCONCLUSIVE, v.reasons
    assert _judge(assertion, 0, 0, 1.0).verdict != INCONCLUSIVE  # the same counts in a clear zone decide


def test_a_weak_look_in_a_cloud_rim_decides_a_one_date_claim_as_the_detector_alone_would_however_clear_the_zone():
    rim = Detections((Detection(box=(30, 9, 34, 11), score=0.3, cls="vessel", length_m=120.0, zone="piers",
                                centroid=(32, 10), extra={"pair": {"place": "undecided", "undecided": "not_comparable",
                                                                   "probability": 0.3}}),), UTM, TR, (10.0, 10.0))
    for clear in (1.0, 0.74, 0.6):
        sa = ZoneState("piers", 1000, clear, 1 - clear, 0.0)
        for assertion, expected in (("present_after", SUPPORTED), ("absent_after", REFUTED)):
            v = evaluate_claim(Claim("c", "", "vessels", "piers", assertion), dets(), dets(), CLEAR, sa,
                               registration_reliability=0.9, performance=PERF, undecided_after=rim)
            assert v.verdict == expected, (clear, assertion, v.reasons)


def test_a_min_length_of_0_m_is_no_length_limit():
    for ml in (None, 0.0):
        v = evaluate_claim(Claim("c", "", "vessels", "piers", "absent_after", ml), dets(), dets(), CLEAR, CLEAR,
                           registration_reliability=0.9, performance=PERF)
        assert v.verdict == SUPPORTED, (ml, v.reasons)


def test_a_comparison_is_decided_by_the_visible_part_only_when_the_hidden_part_cannot_change_it():
    # 10 -> 2 with 20 % hidden: even 2 more objects hidden after leave a decrease of 6 (> tolerance 1)
    v = _judge("decreased", 10, 2, 0.8)
    assert v.verdict == SUPPORTED and any("holds with up to 2" in c for c in v.caveats)
    assert _judge("unchanged", 10, 2, 0.8).verdict == REFUTED
    # 4 -> 3 with 40 % hidden: the hidden part could hold 2 more, so neither "decreased" nor "unchanged" is known
    v = _judge("decreased", 4, 3, 0.6)
    assert v.verdict == INCONCLUSIVE and any("could hold up to 2" in r for r in v.reasons)
    assert _judge("unchanged", 4, 3, 0.6).verdict == INCONCLUSIVE
    # fully seen: the plain count rule
    assert _judge("decreased", 4, 3, 1.0).verdict == SUPPORTED
    assert _judge("unchanged", 4, 4, 1.0).verdict == SUPPORTED
    # less than half the zone clear on a date: not decided at all
    half = ZoneState("piers", 1000, 0.4, 0.6, 0.0)
    assert _judge("decreased", 10, 0, 0.4, sa=half).verdict == INCONCLUSIVE


def test_cloud_over_part_of_a_zone_objects_seen_decide_presence_and_absence_needs_the_zone_clear():
    before = dets((10, 10, "unchanged"), (30, 10, "unchanged"))
    after = dets((10, 10, "unchanged"))
    partly = ZoneState("piers", 1000, 0.35, 0.65, 0.0)  # 65 % of the zone under cloud after
    kw = dict(registration_reliability=0.9, performance=PERF)
    v = evaluate_claim(Claim("c", "", "vessels", "piers", "present_after"), before, after, CLEAR, partly, **kw)
    assert v.verdict == SUPPORTED and any("seen in the visible part decide" in c for c in v.caveats)
    assert evaluate_claim(Claim("c", "", "vessels", "piers", "absent_after"), before, after, CLEAR, partly,
                          **kw).verdict == REFUTED
    v = evaluate_claim(Claim("c", "", "vessels", "piers", "absent_after"), before, dets(), CLEAR, partly, **kw)
    assert v.verdict == INCONCLUSIVE
    mostly = ZoneState("piers", 1000, 0.9, 0.1, 0.0)  # a cloud over 10 %: the visible 90 % decide absence
    assert evaluate_claim(Claim("c", "", "vessels", "piers", "absent_after"), before, dets(), CLEAR, mostly,
                          **kw).verdict == SUPPORTED


def test_an_object_wide_bright_patch_is_not_a_cloud_but_a_cloud_sized_one_is():
    from imgdiff.claims import CLOUD_MIN_WIDTH_PX, wide_regions

    m = np.zeros((80, 80), bool)
    m[10:18, 10:34] = True      # a hull 4 px wide, grown by 2 px as the spectral mask is: 8 px
    m[40:70, 40:70] = True      # a 300 m cloud
    w = wide_regions(m, CLOUD_MIN_WIDTH_PX + 4)
    assert not w[10:18, 10:34].any() and w[40:70, 40:70].all() and w.sum() == 900


def test_the_length_limit_is_where_the_cards_measured_recall_falls_below_one_half():
    import json

    from imgdiff.claims import MIN_USEFUL_RECALL, detector_performance
    from imgdiff.detect import aircraft

    card = json.loads(aircraft.CARD_PATH.read_text())["detection_limits"]
    truth = min(lo for (lo, _), r in zip(card["bins_m"], card["recall"]) if r is not None and r >= MIN_USEFUL_RECALL)
    perf = detector_performance("aircraft")
    assert MIN_USEFUL_RECALL == 0.5 and perf.min_length_m == truth
    # a claim that aircraft of 20 m and up are gone cannot be shown when the detector misses most of them
    if card["recall"][0] < 0.5:
        c = Claim("c", "", "aircraft", "piers", "absent_after", min_length_m=card["bins_m"][0][0])
        v = evaluate_claim(c, dets(), dets(), CLEAR, CLEAR, registration_reliability=0.9, performance=perf)
        assert v.verdict == INCONCLUSIVE and any("below what the aircraft detector resolves" in r for r in v.reasons)


def test_a_lon_lat_triangle_half_outside_a_web_mercator_scene_at_7_87_m_is_half_no_data():
    from rasterio.warp import transform as warp_points
    from shapely.geometry import Polygon

    from imgdiff.claims import zone_states
    from imgdiff.zones import Zones

    merc = CRS.from_epsg(3857)
    lat = 21.3
    k = 1 / np.cos(np.radians(lat))                  # Web-Mercator map metres per ground metre
    px = 7.87 * k                                    # 7.87 m on the ground, as sen2ships
    (x0,), (y0,) = warp_points("EPSG:4326", "EPSG:3857", [-157.9], [lat])
    shape = (200, 200)
    tr = Affine(px, 0, x0, 0, -px, y0 + 200 * px)
    east = x0 + 200 * px                             # the scene's east edge
    # a triangle symmetric about the east edge: exactly half of it inside the scene
    tri_m = [(east - 60 * px, y0 + 40 * px), (east + 60 * px, y0 + 40 * px), (east, y0 + 160 * px)]
    lons, lats = warp_points("EPSG:3857", "EPSG:4326", [x for x, _ in tri_m], [y for _, y in tri_m])
    zones = Zones({"quay": Polygon(list(zip(lons, lats)))}, CRS.from_epsg(4326), {})
    bands = {b: np.full(shape, 0.05, "float32") for b in ("B02", "B03", "B04", "B08")}
    scene = Scene(bands, merc, tr, np.ones(shape, bool))
    cloud = np.zeros(shape, bool)
    cloud[:, 170:] = True                            # a cloud over the inner 30 px of the triangle
    st = zone_states(zones, scene, cloud)["quay"]
    assert st.nodata_fraction == pytest.approx(0.5, abs=0.03)
    inner = 1 - (1 - 30 / 60) ** 2                   # the share of the inside half within 30 px of the edge
    assert st.cloud_fraction == pytest.approx(0.5 * inner, abs=0.03)
    assert st.clear_fraction == pytest.approx(0.5 * (1 - inner), abs=0.03)


def test_a_scene_without_crs_takes_zones_in_its_own_coordinates_and_refuses_lon_lat_ones(tmp_path):
    """The Hmeimim sample without CRS (as an unplaced chip) and its zones in the scene's coordinates
    (a GeoJSON without CRS member, so values that cannot be lon/lat) gives the georeferenced verdicts."""
    import json
    from pathlib import Path

    import rasterio
    import yaml
    from click.testing import CliRunner
    from imgdiff_cli.main import cli

    from imgdiff.sites import load_zones

    samples = Path(__file__).resolve().parent.parent / "samples"
    for date in ("2024-12-03", "2024-12-13"):
        (tmp_path / date).mkdir()
        for src in sorted((samples / "scenes" / "hmeimim" / date).glob("B*.tif")):
            with rasterio.open(src) as ds:
                profile = ds.profile | {"crs": None}
                data, tags = ds.read(), ds.tags()
            with rasterio.open(tmp_path / date / src.name, "w", **profile) as out:
                out.write(data)
                out.update_tags(**tags)
    zones = load_zones(samples / "sites" / "hmeimim.geojson").to_crs(CRS.from_epsg(32636))
    (tmp_path / "zones.geojson").write_text(json.dumps(zones.to_geojson()))  # UTM metres, no CRS member
    claims = yaml.safe_load((samples / "claims" / "hmeimim.yaml").read_text())
    claims.update(before="2024-12-03", after="2024-12-13", zones="zones.geojson")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(claims))
    r = CliRunner().invoke(cli, ["verify", str(tmp_path / "c.yaml"), "-o", str(tmp_path / "o"), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["grid"]["crs"] is None
    assert {c["id"]: c["verdict"] for c in rep["claims"]} == {
        "aircraft-still-present": SUPPORTED, "transports-still-present": SUPPORTED,
        "aircraft-gone": REFUTED, "transport-fleet-unchanged": SUPPORTED}
    # lon/lat zones cannot be placed on a scene without CRS: one line naming the scene, exit 2
    claims["zones"] = str(samples / "sites" / "hmeimim.geojson")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(claims))
    r = CliRunner().invoke(cli, ["verify", str(tmp_path / "c.yaml"), "-o", str(tmp_path / "o2"), "--json"])
    assert r.exit_code == 2 and "has no CRS" in r.stderr and "2024-12-03" in r.stderr
    assert not (tmp_path / "o2").exists()


def _apron(*, cloud: bool, gain: float, seed: int, cloud_rows: int = 50, shadow: slice | None = None) -> Scene:
    """80 x 80 px textured concrete (the same ground on both dates, times ``gain``), with an opaque cloud
    over rows 0 to ``cloud_rows`` - 1 (62 % of the scene by default) when ``cloud``, and the ``shadow`` rows
    dimmed to half in every band."""
    ground, rng = np.random.default_rng(100), np.random.default_rng(seed)
    bands = {}
    for b in ("B02", "B03", "B04", "B08"):
        a = gain * (0.22 + 0.08 * ground.random((80, 80)))
        if shadow is not None:
            a[shadow] *= 0.5
        if cloud:
            a[:cloud_rows] = CLOUD[b]
        bands[b] = (a + rng.normal(0, 0.002, a.shape)).astype("float32")
    return Scene(bands, UTM, TR, np.ones((80, 80), bool))


def test_a_cloud_over_most_of_a_small_scene_leaves_the_clear_ground_clear_not_shadowed():
    from imgdiff.clouds import shade, temporal_changes

    before, after = _apron(cloud=True, gain=1.0, seed=0), _apron(cloud=False, gain=0.92, seed=1)
    cloud_b, cloud_a, shadow_b, shadow_a = temporal_changes(before, after)
    assert cloud_b[:45].all() and not cloud_a.any()
    assert not shadow_b[60:].any() and not shadow_a.any()  # the clear rows are the same ground on both dates
    # the dates' gain measured over every pixel is the cloud's (x 2.4): the clear ground then reads as shadowed
    vis = [np.stack([s.bands[b] for b in ("B02", "B03", "B04")]) for s in (before, after)]
    assert shade(*vis, np.ones((80, 80), bool))[60:].all()


def test_a_cloud_shadow_over_most_of_the_clear_ground_is_found_on_the_cloud_s_date_only():
    from imgdiff.clouds import CLOUD_MIN_WIDTH_PX, shade, temporal_changes

    # after: a cloud over rows 0-29 and its shadow over rows 40-71, two thirds of the ground clear of it
    before = _apron(cloud=False, gain=1.0, seed=0)
    after = _apron(cloud=True, gain=0.95, seed=1, cloud_rows=30, shadow=slice(40, 72))
    cloud_b, cloud_a, shadow_b, shadow_a = temporal_changes(before, after)
    assert cloud_a[:30].all() and not cloud_b.any() and not shadow_b.any()
    assert shadow_a[42:70].all()           # the shadow, its edge rows apart
    assert not shadow_a[74:].any()         # the lit ground beyond it
    # the median ratio over the clear ground is the shadow's own: against it the shadow is not darker
    vis = [np.stack([s.bands[b] for b in ("B02", "B03", "B04")]) for s in (after, before)]
    clear = np.zeros((80, 80), bool)
    clear[30 + CLOUD_MIN_WIDTH_PX:] = True
    assert not shade(*vis, np.ones((80, 80), bool), gain_from=clear).any()
    assert shade(*vis, np.ones((80, 80), bool), gain_from=clear, lit_gain=True)[42:70].all()


def _veiled_pair() -> tuple[Scene, Scene, np.ndarray]:
    """Bright concrete on both dates; on the after date a grey cloud with an opaque core (rows and columns
    0-30) whose light fades out over 50 px to its right and below (alpha 0.5 at 25 px from the core). Over
    such ground the veil is too little brighter for the opaque-cloud tests (x 1.4 at alpha 0.6). Returns
    the scenes and the cloud's share of the light (alpha) per pixel."""
    rng = np.random.default_rng(5)
    ground = {b: (0.36 + 0.04 * rng.random((100, 100))).astype("float32") for b in ("B02", "B03", "B04")}
    yy, xx = np.mgrid[:100, :100]
    d = np.maximum(0, np.maximum(xx - 30, yy - 30))
    alpha = np.clip(1 - d / 50, 0, 1)
    after = {b: (g * (1 - alpha) + 0.65 * alpha + rng.normal(0, 0.003, g.shape)).astype("float32")
             for b, g in ground.items()}
    ok = np.ones((100, 100), bool)
    return Scene(ground, UTM, TR, ok), Scene(after, UTM, TR, ok), alpha


def test_the_thick_veil_of_a_cloud_is_found_and_its_thin_rim_and_the_ground_beyond_are_not():
    from imgdiff.claims import CLOUD_VEIL_ALPHA, cloud_haze, temporal_clouds

    before, after, alpha = _veiled_pair()
    mb, ma = temporal_clouds(before, after)
    vb, va = cloud_haze(before, after, mb, ma, min_alpha=CLOUD_VEIL_ALPHA)
    assert not vb.any()
    assert (ma | va)[alpha >= 0.6].all()        # the opaque core and the thick veil
    assert not va[alpha < 0.4].any()            # not the thin rim, nor the clear ground
    hb, ha = cloud_haze(before, after, mb, ma)  # the whole rim, thin part included
    assert (ma | ha)[alpha >= 0.1].all() and (va & ~ha).sum() == 0


def test_a_zone_under_a_clouds_thick_veil_is_hidden_on_that_date_but_one_under_its_thin_rim_is_clear():
    from shapely.geometry import box

    from imgdiff.claims import analyse
    from imgdiff.zones import Zones

    before, after, alpha = _veiled_pair()
    x0, y0 = TR.c, TR.f
    def zone(c0, r0, c1, r1):  # pixel columns and rows -> a box in the scenes' UTM coordinates
        return box(x0 + 10 * c0, y0 - 10 * r1, x0 + 10 * c1, y0 - 10 * r0)
    zones = Zones({"veiled": zone(50, 5, 55, 25), "rim": zone(64, 5, 70, 25), "far": zone(85, 5, 99, 25)}, UTM, {})
    assert alpha[5:25, 50:55].min() >= 0.5 and alpha[5:25, 64:70].max() < 0.35
    _, _, cloud, states, _, _ = analyse(before, after, zones, ["aircraft"], register=False)
    assert states["after"]["veiled"].clear_fraction < 0.2   # hidden: absence there cannot be shown
    assert states["after"]["rim"].clear_fraction > 0.95     # objects are seen through a thin rim
    assert states["after"]["far"].clear_fraction > 0.95
    assert all(s.clear_fraction > 0.95 for s in states["before"].values())
    assert cloud["after"][5:25, 50:55].mean() > 0.8 and not cloud["before"].any()


def test_a_hazy_top_of_atmosphere_date_is_not_cloud_over_dark_ground_but_its_opaque_cloud_is():
    from imgdiff.claims import temporal_clouds

    rng = np.random.default_rng(8)
    ground = {b: (0.10 + 0.06 * rng.random((100, 100))).astype("float32") for b in ("B02", "B03", "B04")}
    haze = {"B02": 0.13, "B03": 0.12, "B04": 0.11}  # path radiance, bluish: dark ground x 1.7-2.2, still white
    after = {b: (0.9 * g + haze[b] + rng.normal(0, 0.002, g.shape)).astype("float32") for b, g in ground.items()}
    for b in after:
        after[b][60:90, 10:40] = 0.6 + rng.normal(0, 0.002, (30, 30))  # an opaque cloud
    ok = np.ones((100, 100), bool)
    mb, ma = temporal_clouds(Scene(ground, UTM, TR, ok), Scene(after, UTM, TR, ok))
    assert np.all(np.stack(list(after.values())) > 1.5 * np.stack(list(ground.values())))  # brighter everywhere
    assert ma[62:88, 12:38].all()   # the cloud hides the ground
    assert not ma[:50].any() and not ma[:, 50:].any() and not mb.any()  # the hazy ground keeps its detail


def test_objects_far_from_every_zone_are_left_out_of_the_verification_but_a_place_near_one_keeps_both_dates():
    from shapely.geometry import box as shapely_box

    from imgdiff.claims.pipeline import OBJECTS_MARGIN_M, keep_near, near_zones
    from imgdiff.zones import Zones

    utm = CRS.from_epsg(32636)
    tr = Affine(10, 0, 700000, 0, -10, 3900000)
    scene = Scene({"B04": np.zeros((300, 300), np.float32)}, utm, tr, np.ones((300, 300), bool))
    apron = Zones({"apron": shapely_box(700500, 3898500, 700600, 3898600)}, utm, {})  # px 50-60 x 140-150
    near = near_zones(apron, scene)
    assert OBJECTS_MARGIN_M == 500.0 and near[145, 105] and not near[145, 115]  # 450 m and 550 m east

    def obj(x: float, pair: int | None = None) -> Detection:
        return Detection(box=(x - 2, 143.0, x + 2, 147.0), score=0.9, cls="aircraft", centroid=(x, 145.0),
                         extra={"pair": {"id": pair, "place": "changed"}} if pair is not None else {})

    def dets(*items: Detection) -> Detections:
        return Detections(tuple(items), utm, tr, (10.0, 10.0))

    # in the zone; 300 m away; 2 km away; a place whose after-date box lies 700 m away but whose
    # before-date box reaches the margin (the other date's object of a kept place is kept)
    before = dets(obj(55), obj(85), obj(255), obj(105, pair=1))
    after = dets(obj(55), obj(260), obj(125, pair=1))
    b, a = keep_near(before, after, near)
    assert [d.center[0] for d in b.items] == [55, 85, 105]
    assert [d.center[0] for d in a.items] == [55, 125]


#: Ground of a hazy-date probe (reflectance per band; the same fine texture in every band on both dates):
#: bright concrete, and an ordinary city block.
CONCRETE = {"B02": 0.22, "B03": 0.23, "B04": 0.24, "B08": 0.28, "B10": 0.002, "B11": 0.28, "B12": 0.25}
CITY = {"B02": 0.10, "B03": 0.10, "B04": 0.10, "B08": 0.18, "B10": 0.001, "B11": 0.20, "B12": 0.15}
#: Uniform path radiance (reflectance added per band): boundary-layer haze (Rayleigh + aerosol: blue most,
#: NIR least, none in B10, whose water-vapour absorption hides the lower atmosphere), and a thin veil high
#: enough to show in B10.
HAZE = {"B02": 0.10, "B03": 0.065, "B04": 0.04, "B08": 0.018, "B11": 0.005, "B12": 0.002}
HIGH_VEIL = {"B02": 0.08, "B03": 0.06, "B04": 0.045, "B08": 0.03, "B10": 0.02, "B11": 0.01, "B12": 0.005}


def _hazy_pair(ground: dict, haze: dict, *, cloud: bool = False, size: int = 120) -> tuple[Scene, Scene]:
    """The same textured ground on both dates (sensor noise apart); on the after date, ``haze`` added
    everywhere and, when ``cloud``, an opaque white cloud over rows and columns 20-60 (a 3-pixel soft edge)."""
    from scipy import ndimage as ndi

    texture = np.random.default_rng(3).random((size, size)) - 0.5
    alpha = np.zeros((size, size))
    if cloud:
        alpha[20:60, 20:60] = 1.0
        alpha = ndi.uniform_filter(alpha, 7)
    scenes = []
    for k, extra in enumerate(({}, haze)):
        rng = np.random.default_rng(10 + k)
        bands = {}
        for b, g in ground.items():
            a = g * (1 + 0.4 * texture) + extra.get(b, 0.0)
            a = (1 - alpha) * a + alpha * CLOUD.get(b, 0.3) if k == 1 else a
            bands[b] = (a + rng.normal(0, 0.002, a.shape)).astype("float32")
        scenes.append(Scene(bands, UTM, TR, np.ones((size, size), bool)))
    return scenes[0], scenes[1]


@pytest.mark.parametrize("ground, haze", [(CONCRETE, HAZE), (CITY, HIGH_VEIL)], ids=["concrete-haze", "city-high-veil"])
def test_a_hazy_date_whose_ground_shows_through_is_not_cloud(ground, haze):
    from imgdiff.radiometry import cloud_mask

    before, after = _hazy_pair(ground, haze)
    assert cloud_mask(after, shadows=False).mean() > 0.9     # white, blue-lifted (bright in B10): a thin cloud to one date
    assert not cloud_mask(before, shadows=False).any()
    mb, ma = pair_clouds(before, after)
    assert not mb.any() and not ma.any()                     # but the ground's detail is there as on the other date


@pytest.mark.parametrize("ground, haze", [(CONCRETE, HAZE), (CITY, HIGH_VEIL)], ids=["concrete-haze", "city-high-veil"])
def test_an_opaque_cloud_on_a_hazy_date_still_hides_its_zone_and_the_hazy_ground_beside_it_does_not(ground, haze):
    from shapely.geometry import box

    from imgdiff.claims import analyse
    from imgdiff.zones import Zones

    before, after = _hazy_pair(ground, haze, cloud=True)
    mb, ma = pair_clouds(before, after)
    assert ma[22:58, 22:58].all() and not mb.any()
    assert not ma[:, 70:].any() and not ma[70:].any()        # the hazy ground beyond the cloud
    x0, y0 = TR.c, TR.f
    def zone(c0, r0, c1, r1):  # pixel columns and rows -> a box in the scenes' UTM coordinates
        return box(x0 + 10 * c0, y0 - 10 * r1, x0 + 10 * c1, y0 - 10 * r0)
    zones = Zones({"under": zone(25, 25, 55, 55), "hazy": zone(80, 20, 110, 60)}, UTM, {})
    _, _, _, states, _, _ = analyse(before, after, zones, ["aircraft"], register=False)
    assert states["after"]["under"].clear_fraction == 0.0
    assert states["after"]["hazy"].clear_fraction == 1.0
    assert all(s.clear_fraction == 1.0 for s in states["before"].values())
