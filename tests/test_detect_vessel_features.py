"""Second-stage vessel rescorer: candidate features on known-truth scenes, the shipped tree model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from imgdiff.detect import vessels
from imgdiff.detect.vessel_features import (
    CONTEXT_FEATURES,
    DARK_WATER,
    FEATURE_NAMES,
    candidate_features,
    haze_offsets,
    load_rescorer,
    rescore,
)
from imgdiff.errors import InputError
from imgdiff.evaluate.vessels import read_gt, score
from imgdiff.io.read import read_scene
from imgdiff.scene import Scene

from .conftest import need

BANDS = ("B02", "B03", "B04", "B08", "B11")
WATER = (0.060, 0.050, 0.030, 0.015, 0.010)
CONCRETE = (0.150, 0.160, 0.170, 0.200, 0.250)
HULL = (0.300, 0.310, 0.320, 0.360, 0.200)  # a white hull, brighter than the concrete in every 10 m band
PS = (10.0, 10.0)


def _paint(img: dict[str, np.ndarray], rows: slice, cols: slice, values: tuple[float, ...]) -> None:
    for b, v in zip(BANDS, values):
        img[b][rows, cols] = v


@pytest.fixture(scope="module")
def harbour():
    """120 x 120 px of water: a straight quay along the top (rows 0-19) with a hull moored against it,
    a pier running down from the quay and ending in open water, and a hull in open water.

    Returns the bands, the water mask and the boxes (pixel edges) of: the moored hull, the pier's
    end (a box as the network would draw on a ship-sized bright tip) and the open-water hull.
    """
    img = {b: np.full((120, 120), v, np.float32) for b, v in zip(BANDS, WATER)}
    _paint(img, slice(0, 20), slice(0, 120), CONCRETE)           # quay (land)
    _paint(img, slice(20, 23), slice(30, 50), HULL)              # moored hull: 20 x 3 px against the quay
    _paint(img, slice(20, 70), slice(90, 93), CONCRETE)          # pier: 3 px wide, 50 px into the water
    _paint(img, slice(80, 83), slice(20, 40), HULL)              # hull in open water
    water = np.ones((120, 120), bool)
    water[:20] = False
    water[20:70, 90:93] = False
    water[20:23, 30:50] = False
    water[80:83, 20:40] = False
    boxes = np.array([[30, 20, 50, 23], [90, 60, 93, 70], [20, 80, 40, 83]], float)
    return img, water, boxes


def _features(img, water, boxes, scores=(0.5, 0.5, 0.5)):
    heat = np.zeros((60, 60), np.float32)
    for (x0, y0, x1, y1), s in zip(boxes, scores):
        heat[int((y0 + y1) / 4), int((x0 + x1) / 4)] = s
    f = candidate_features(img, boxes, np.array(scores), heat, water, PS)
    return {name: f[:, i] for i, name in enumerate(FEATURE_NAMES)}


def test_contrast_size_and_indices_match_the_painted_truth(harbour):
    img, water, boxes = harbour
    f = _features(img, water, boxes)
    # the open-water hull: contrast = log(hull / water) per band, size from the box in metres
    for b, h, w in zip(BANDS, HULL, WATER):
        assert f[f"contrast_max_{b}"][2] == pytest.approx(math.log(h / w), abs=1e-5)
        assert f[f"contrast_mean_{b}"][2] == pytest.approx(math.log(h / w), abs=1e-5)
    assert f["length_m"][2] == pytest.approx(200.0) and f["width_m"][2] == pytest.approx(30.0)
    assert f["elongation"][2] == pytest.approx(200 / 30)
    assert f["ndwi_obj"][2] == pytest.approx((0.31 - 0.36) / (0.31 + 0.36), abs=1e-5)
    assert f["ndwi_ring"][2] == pytest.approx((0.05 - 0.015) / (0.05 + 0.015), abs=1e-5)
    assert f["ndvi_obj"][2] == pytest.approx((0.36 - 0.32) / (0.36 + 0.32), abs=1e-5)
    assert f["swir_nir_obj"][2] == pytest.approx((0.20 - 0.36) / (0.20 + 0.36), abs=1e-5)
    assert f["water_ring_2"][2] == 1.0 and f["water_ring_8"][2] == 1.0 and f["dist_water_px"][2] == pytest.approx(0.5)
    assert f["water_in_box"][2] == 0.0


def test_moored_hull_and_pier_end_differ_in_their_land_edge_and_water_ring(harbour):
    img, water, boxes = harbour
    f = _features(img, water, boxes)
    moored, pier, open_water = 0, 1, 2
    # in log brightness the hull and the quay merge into one blob, as the pier's strip runs on out of its box;
    # the hull in open water is a blob of its own
    assert f["blob_outside_frac"][moored] > 0.8 and f["blob_touches_patch"][moored] == 1.0
    assert f["blob_outside_frac"][pier] > 0.5 and f["blob_touches_patch"][pier] == 1.0
    assert f["blob_outside_frac"][open_water] == 0.0 and f["blob_touches_patch"][open_water] == 0.0
    assert f["blob_extent_ratio"][open_water] == pytest.approx(1.0)
    # what tells them apart: beside the moored hull the quay is a long straight land edge (the 120 px quay
    # seen through the patch, the hull's own outline excluded) and water lies on one side only; the pier's
    # end has only the pier's short sides as land edge and water on three sides
    assert f["land_edge_len_px"][moored] > 50 and f["land_edge_straightness"][moored] > 0.95
    assert f["land_edge_len_px"][pier] < 15 and f["land_edge_len_px"][open_water] == 0.0
    assert 0.45 < f["water_ring_2"][moored] < 0.65 and f["water_ring_2"][pier] > 0.85
    assert f["water_ring_2"][open_water] == 1.0
    assert f["land_frac_patch"][moored] > 0.4 and f["land_frac_patch"][pier] < 0.1
    assert f["land_frac_patch"][open_water] == 0.0


def test_features_do_not_depend_on_the_scaling_of_the_numbers(harbour):
    img, water, boxes = harbour
    scaled = {b: v * np.float32(65535 / 10000) for b, v in img.items()}
    a = candidate_features(img, boxes, np.full(3, 0.4), np.zeros((60, 60), np.float32), water, PS)
    b = candidate_features(scaled, boxes, np.full(3, 0.4), np.zeros((60, 60), np.float32), water, PS)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_a_missing_band_gives_nan_only_in_its_own_features(harbour):
    img, water, boxes = harbour
    no_swir = {b: v for b, v in img.items() if b != "B11"}
    heat = np.zeros((60, 60), np.float32)
    f = candidate_features(no_swir, boxes, np.full(3, 0.4), heat, water, PS)
    full = candidate_features(img, boxes, np.full(3, 0.4), heat, water, PS)
    changed = {FEATURE_NAMES[i] for i in np.flatnonzero((np.isnan(f) != np.isnan(full)).any(axis=0))}
    assert changed == {"contrast_max_B11", "contrast_mean_B11", "swir_nir_obj"}
    both = ~np.isnan(f)
    np.testing.assert_array_equal(f[both], full[both])
    assert np.isfinite(rescore(load_rescorer(vessels.RESCORE_PATH), f)).all()


def test_score_neighbourhood_counts_the_nearby_candidates(harbour):
    img, water, _ = harbour
    boxes = np.array([[20, 80, 40, 83], [24, 80, 44, 83], [100, 100, 104, 104]], float)
    f = _features(img, water, boxes, scores=(0.6, 0.3, 0.2))
    np.testing.assert_array_equal(f["n_near"], [1, 1, 0])
    np.testing.assert_array_equal(f["n_near_higher"], [0, 1, 0])
    assert f["best_near_ratio"][1] == pytest.approx(2.0) and f["best_near_ratio"][2] == 0.0


def test_tree_model_routes_thresholds_and_missing_values():
    model = {"features": ["score", "water_ring_2"], "base": 0.5, "learning_rate": 1.0, "trees": [
        {"feature": [0, -1, 1, -1, -1], "threshold": [0.3, 0, 0.5, 0, 0], "left": [1, 0, 3, 0, 0],
         "right": [2, 0, 4, 0, 0], "nan_left": [False, False, True, False, False],
         "value": [0, -2.0, 0, 1.0, 3.0]}]}
    x = np.full((4, len(FEATURE_NAMES)), np.nan)
    i, j = FEATURE_NAMES.index("score"), FEATURE_NAMES.index("water_ring_2")
    x[:, i] = [0.3, 0.9, 0.9, 0.9]
    x[:, j] = [0.0, 0.5, 0.7, np.nan]
    logit = np.array([0.5 - 2.0, 0.5 + 1.0, 0.5 + 3.0, 0.5 + 1.0])
    np.testing.assert_allclose(rescore(model, x), 1 / (1 + np.exp(-logit)))


def test_a_bad_rescorer_file_is_reported_by_name(tmp_path):
    bad = tmp_path / "rescore.json"
    bad.write_text('{"features": ["score"], "base": 0}', encoding="utf-8")
    with pytest.raises(InputError, match="rescore.json.*learning_rate, trees"):
        load_rescorer(bad)
    bad.write_text('{"features": ["hull_colour"], "base": 0, "learning_rate": 1, "trees": []}', encoding="utf-8")
    with pytest.raises(InputError, match="hull_colour"):
        load_rescorer(bad)


def test_shipped_rescorer_loads_is_deterministic_and_matches_the_card():
    model = load_rescorer(vessels.RESCORE_PATH)
    assert set(model["features"]) <= set(FEATURE_NAMES)
    assert not set(model["features"]) & set(CONTEXT_FEATURES)
    assert vessels.RESCORE_PATH.stat().st_size < 1_000_000 and len(model["trees"]) > 0
    card = json.loads(vessels.CARD_PATH.read_text(encoding="utf-8"))
    assert model["threshold"] == pytest.approx(vessels.CNN_MIN_SCORE) == card["selected"]["min_score"]
    assert model["candidate_min_score"] == vessels.RESCORE_LOW
    # the figures the claims engine reads are the nested leave-one-port-out ones of this threshold
    nested = model["nested_leave_one_port_out"]["pooled"]
    assert card["selected"]["precision"] == pytest.approx(nested["precision"])
    assert card["selected"]["recall"] == pytest.approx(nested["recall"])
    assert nested["f1"] > model["network_alone_leave_one_port_out"]["pooled"]["f1"]
    x = np.random.default_rng(0).normal(size=(50, len(FEATURE_NAMES)))
    x[::7, 3] = np.nan
    p = rescore(model, x)
    np.testing.assert_array_equal(p, rescore(model, x.copy()))
    assert ((p >= 0) & (p <= 1)).all()


@pytest.mark.shared_data
def test_detect_vessels_rescores_by_default_and_can_turn_it_off(shared_data):
    d = need(shared_data / "sen2ships" / "casablanca")
    scene = read_scene(d)
    on = vessels.detect_vessels(scene)
    off = vessels.detect_vessels(scene, rescore=False)
    assert len(on) > 0 and len(off) > 0
    assert (on.scores >= vessels.CNN_MIN_SCORE).all()
    assert all(x.extra["network_score"] >= vessels.RESCORE_LOW for x in on.items)
    assert (off.scores >= vessels.NETWORK_MIN_SCORE).all()
    assert all("network_score" not in x.extra for x in off.items)
    # the rescorer only re-ranks the network's candidates: every kept box is one of them
    cands = vessels.detect_vessels(scene, rescore=False, min_score=vessels.RESCORE_LOW)
    for b in on.boxes:
        assert np.abs(cands.boxes - b).max(axis=1).min() < 1e-6


@pytest.mark.shared_data
def test_rescored_chain_on_a_dev_port_keeps_its_figures(shared_data):
    # casablanca is in the training set of the network and of the chip classifier (in-sample) and the
    # rescorer was trained on its out-of-fold candidates: this guards the read -> detect -> rescore chain
    # against regressions; the honest estimate is the nested leave-one-port-out table in vessels_rescore.json.
    # In-sample, both inputs of the rescorer are those of a port the stages were trained on, so the chain
    # finds more here than on a new port (2026-11-28: 18 for 15 ships, 13 of them right); the count target
    # (|count error| <= 15 %) is the nested table's, on ports the stages never saw (pooled -3.3 %).
    d = need(shared_data / "sen2ships" / "casablanca")
    dets = vessels.detect_vessels(read_scene(d))
    s = score("casablanca", dets.boxes, dets.scores, read_gt(d))
    assert s.f1 >= 0.75, s
    assert s.recall >= 0.8 and s.precision >= 0.6, s
    nested = json.loads(vessels.RESCORE_PATH.read_text())["nested_leave_one_port_out"]["pooled"]
    assert abs(nested["count_error"]) <= 0.15, nested


def test_open_water_hull_is_kept_by_the_rescorer():
    rng = np.random.default_rng(1)
    utm = CRS.from_epsg(32636)
    bands = {b: (w * (1 + rng.normal(0, 0.03, (96, 96)))).astype(np.float32) for b, w in zip(BANDS, WATER)}
    for b, v in zip(BANDS, HULL):
        bands[b][46:49, 38:56] = v
    scene = Scene(bands, utm, Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 3870000.0), np.ones((96, 96), bool))
    dets = vessels.detect_vessels(scene)
    assert len(dets) == 1
    cx, cy = dets.items[0].centroid
    assert abs(cx - 47) < 2 and abs(cy - 47.5) < 2
    assert dets.items[0].length_m == pytest.approx(180, rel=0.2)


def test_a_candidates_shipped_score_does_not_depend_on_the_candidates_around_it(harbour):
    """Two dates of one berth: the neighbour rafted beside a hull has left on the second (its heat and
    its candidate are gone, the hull's own look is the same): the hull keeps its score."""
    img, water, boxes = harbour
    model = load_rescorer(vessels.RESCORE_PATH)
    hull = boxes[2]
    rafted = hull + np.array([0, 4, 0, 4])  # a second hull box 1 px beside it
    heat = np.zeros((60, 60), np.float32)
    with_neighbour, alone = heat.copy(), heat.copy()
    for h, b, s in ((with_neighbour, hull, 0.5), (with_neighbour, rafted, 0.9), (alone, hull, 0.5)):
        h[int((b[1] + b[3]) / 4), int((b[0] + b[2]) / 4)] = s
    f2 = candidate_features(img, np.array([hull, rafted]), np.array([0.5, 0.9]), with_neighbour, water, PS)
    f1 = candidate_features(img, np.array([hull]), np.array([0.5]), alone, water, PS)
    # the features do see the neighbour ...
    near = FEATURE_NAMES.index("n_near")
    assert f2[0, near] != f1[0, near]
    # ... the shipped rescorer does not
    assert rescore(model, f2[:1])[0] == pytest.approx(rescore(model, f1)[0], abs=1e-12)


# ------------------------------------------------------------------------------------------
# path radiance (hazy dates, top-of-atmosphere L1C products)
# ------------------------------------------------------------------------------------------
def _sea(level: dict[str, float], n: int = 80) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Open water at ``level`` per band with a little texture, a strip of land along the top."""
    rng = np.random.default_rng(3)
    bands = {b: (v * (1 + 0.1 * rng.random((n, n)))).astype(np.float32) for b, v in level.items()}
    water = np.ones((n, n), bool)
    water[:10] = False
    for b in bands:
        bands[b][:10] = 0.2
    return bands, water


def test_haze_offsets_are_zero_for_water_as_dark_as_the_training_ports():
    bands, water = _sea({b: 0.5 * v for b, v in DARK_WATER.items()})
    assert haze_offsets(bands, water) == {b: 0.0 for b in DARK_WATER}


def test_haze_offsets_measure_the_path_radiance_above_the_training_ports_darkest_water():
    added = {"B02": 0.05, "B03": 0.035, "B04": 0.02, "B08": 0.01}
    bands, water = _sea({b: v + added[b] for b, v in DARK_WATER.items()})
    off = haze_offsets(bands, water)
    for b, v in added.items():  # the 1st percentile of the water sits at the painted level (texture >= 0)
        assert off[b] == pytest.approx(v, abs=0.002), b


def test_haze_offsets_leave_digital_numbers_and_scenes_without_open_water_alone():
    added = {"B02": 0.05, "B03": 0.035, "B04": 0.02, "B08": 0.01}
    bands, water = _sea({b: v + added[b] for b, v in DARK_WATER.items()})
    dn = {b: v * 10000 for b, v in bands.items()}
    assert haze_offsets(dn, water) == {b: 0.0 for b in DARK_WATER}
    little = np.zeros_like(water)
    little[40:50, 40:50] = True  # 100 px of water: too few to tell the darkest water
    assert haze_offsets(bands, little) == {b: 0.0 for b in DARK_WATER}


def test_remove_haze_returns_a_clear_scene_untouched_and_takes_the_offsets_off_a_hazy_one():
    bands, _ = _sea({b: 0.5 * v for b, v in DARK_WATER.items()}, n=120)
    scene = Scene(bands, CRS.from_epsg(32636), Affine(10, 0, 600000, 0, -10, 3870000), np.ones((120, 120), bool))
    water = vessels.water_mask(scene, min_area_px=100)
    same, w = vessels.remove_haze(scene, water)
    assert same is scene and w is water
    added = {"B02": 0.05, "B03": 0.035, "B04": 0.02, "B08": 0.01}
    hazy = Scene({b: v + np.float32(added[b]) for b, v in bands.items()}, scene.crs, scene.transform, scene.valid)
    clear, w2 = vessels.remove_haze(hazy, water)
    assert set(clear.meta["haze_offsets"]) == set(added)
    for b in added:
        # back to the training ports' darkest water, not to the painted level below it
        assert float(np.percentile(clear.bands[b][water], 1)) == pytest.approx(DARK_WATER[b], abs=0.002), b
        assert clear.bands[b].dtype == np.float32
    assert w2 is not None and w2.shape == water.shape


@pytest.mark.shared_data
def test_path_radiance_does_not_cost_the_detector_its_ships(shared_data):
    # Haze lifts dark water far more than hulls: the rescorer's object/water contrasts shrink. Without
    # the haze removal the shipped detector kept 0.56 of Athens' and 0.41 of Genoa's labelled ships on
    # these hazy copies (0.83 and 0.83 clear); with it 0.81 and 0.86.
    from dataclasses import replace

    from imgdiff import detect_vessels

    added = {"B02": 0.05, "B03": 0.035, "B04": 0.02, "B08": 0.01}
    for port in ("athens", "genoa"):
        d = need(shared_data / "sen2ships" / port)
        scene, gt = read_scene(d), read_gt(d)
        hazy = replace(scene, bands={b: (v + np.float32(added.get(b, 0.0))).astype(np.float32)
                                     for b, v in scene.bands.items()})
        clear, haze = detect_vessels(scene), detect_vessels(hazy)
        r_clear = score(port, clear.boxes, clear.scores, gt).recall
        r_haze = score(port, haze.boxes, haze.scores, gt).recall
        assert r_haze >= r_clear - 0.1, (port, r_clear, r_haze)
        assert abs(len(haze) - len(clear)) <= 0.15 * len(clear), (port, len(clear), len(haze))


def test_water_brighter_only_in_the_green_and_red_is_not_taken_for_haze():
    # a turbid harbour: green and red lifted by sediment, blue as dark as the training ports'
    bands, water = _sea({"B02": 0.8 * DARK_WATER["B02"], "B03": DARK_WATER["B03"] + 0.04,
                         "B04": DARK_WATER["B04"] + 0.03, "B08": DARK_WATER["B08"]})
    assert haze_offsets(bands, water) == {b: 0.0 for b in DARK_WATER}
