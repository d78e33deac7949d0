"""Vessel detection: simulated harbour with known vessels, real dev ports, GeoJSON, zones, motion."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_geom
from scipy import ndimage as ndi
from shapely.geometry import box as shp_box
from shapely.geometry import mapping

from imgdiff import detect_vessels
from imgdiff.detect.vessels import BAND_TIME_S, KNOT_MS, normalise_band, vessel_input
from imgdiff.evaluate.detection import match_detections
from imgdiff.evaluate.vessels import pool, read_gt, score
from imgdiff.io.geojson import detections_to_geojson, write_detections_geojson
from imgdiff.io.read import read_scene
from imgdiff.scene import Scene
from imgdiff.zones import Zones

from .conftest import need

UTM = CRS.from_epsg(32636)
TRANSFORM = Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 3870000.0)
SS = 5  # sub-pixels per pixel when rendering

#: reflectance (B02, B03, B04, B08) of each cover type
WATER = (0.060, 0.050, 0.030, 0.015)
LAND = (0.120, 0.130, 0.150, 0.220)
CONCRETE = (0.200, 0.210, 0.220, 0.260)
HULLS = ((0.16, 0.17, 0.18, 0.22), (0.10, 0.11, 0.12, 0.15), (0.22, 0.23, 0.24, 0.28))
WAKE = (0.085, 0.080, 0.060, 0.035)


def _rect(cx: float, cy: float, length: float, width: float, heading_deg: float) -> shapely.Polygon:
    """Hull polygon in pixel units (x right, y down); heading clockwise from up."""
    h = math.radians(heading_deg)
    ux, uy = math.sin(h), -math.cos(h)  # along the hull
    vx, vy = -uy, ux  # across
    half, bow = length / 2, length / 2 - width
    hull = ((-half, -width / 2), (bow, -width / 2), (half, 0.0), (bow, width / 2), (-half, width / 2))
    pts = [(cx + ux * s + vx * t, cy + uy * s + vy * t) for s, t in hull]
    return shapely.Polygon(pts).buffer(0)


def _fill(canvas: np.ndarray, poly: shapely.Polygon, values: tuple[float, ...], dx: float = 0.0, dy: float = 0.0):
    """Paint a polygon (pixel units) on a supersampled (bands, H*SS, W*SS) canvas, optionally shifted."""
    from rasterio.features import rasterize

    g = shapely.affinity.translate(shapely.affinity.scale(poly, SS, SS, origin=(0, 0)), dx * SS, dy * SS)
    m = rasterize([(mapping(g), 1)], out_shape=canvas.shape[1:], fill=0, dtype="uint8").astype(bool)
    for i, v in enumerate(values):
        canvas[i][m] = v


def harbour_scene(seed: int = 0, *, moving: dict | None = None) -> tuple[Scene, list[dict], dict]:
    """A 200 x 240 px harbour: a quay along the top, a pier, a mole, ships of known size.

    Returns the scene (reflectance, 10 m UTM grid), the planted vessels (pixel box, length_m,
    width_m, heading) and the distractor polygons (pier, wake) in pixel units.
    """
    rng = np.random.default_rng(seed)
    h, w = 200, 240
    bands = ("B02", "B03", "B04", "B08")
    canvas = np.empty((4, h * SS, w * SS), np.float32)
    for i, v in enumerate(WATER):
        canvas[i] = v
    quay = shp_box(0, 0, w, 40)
    pier = shp_box(150, 40, 154, 110)  # a 40 m wide, 700 m long pier: must not be a vessel
    mole = shapely.Polygon([(0, 170), (90, 150), (92, 154), (0, 175)])
    _fill(canvas, quay, LAND)
    _fill(canvas, shp_box(0, 32, w, 40), CONCRETE)
    _fill(canvas, pier, CONCRETE)
    _fill(canvas, mole, CONCRETE)
    # a wake: a long faint streak in open water, no ship at its end
    wake = _rect(200, 150, 45, 3, 60)
    _fill(canvas, wake, WAKE)
    ships = [  # (cx, cy, length px, width px, heading deg, hull)
        (60, 41.8, 18, 3.4, 90, 0),     # moored alongside the quay, touching it
        (100, 41.6, 14, 3.0, 90, 2),    # moored alongside the quay
        (100, 45.0, 14, 3.0, 90, 1),    # rafted outboard of the previous one
        (148.3, 80, 16, 3.0, 0, 0),     # moored against the west side of the pier
        (60, 110, 22, 4.0, 35, 2),      # at anchor, open water
        (120, 135, 10, 2.6, 120, 0),    # small, open water
        (200, 80, 12, 3.0, 0, 2),       # open water
    ]
    truth = []
    for k, (cx, cy, ln, wd, hd, _hull) in enumerate(ships):
        poly = _rect(cx, cy, ln, wd, hd)
        x0, y0, x1, y1 = poly.bounds
        truth.append({"box": [math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1)],
                      "length_m": ln * 10.0, "width_m": wd * 10.0, "heading": hd % 180, "poly": poly, "k": k})
    out = np.empty((4, h, w), np.float32)
    for bi, b in enumerate(bands):
        c = canvas[bi].copy()
        for t in truth:
            cx, cy, ln, wd, hd, hull = ships[t["k"]]
            dx = dy = 0.0
            if moving and t["k"] in moving:
                v_px = moving[t["k"]] * KNOT_MS / 10.0 * (BAND_TIME_S[b] - 0.5)
                dx, dy = v_px * math.sin(math.radians(hd)), -v_px * math.cos(math.radians(hd))
            tmp = c[None]
            _fill(tmp, t["poly"], (HULLS[hull][bi],), dx, dy)
        c = ndi.gaussian_filter(c, 0.8 * SS)  # point spread function
        out[bi] = c.reshape(h, SS, w, SS).mean(axis=(1, 3))
    out += rng.normal(0, 0.003, out.shape).astype(np.float32)
    out = np.clip(out, 0.001, None)
    scene = Scene({b: out[i] for i, b in enumerate(bands)}, UTM, TRANSFORM, np.ones((h, w), bool))
    return scene, truth, {"pier": pier, "wake": wake, "mole": mole}


@pytest.fixture(scope="module")
def harbour():
    return harbour_scene(0)


@pytest.fixture(scope="module")
def harbour_dets(harbour):
    return detect_vessels(harbour[0])


def _gt(truth) -> np.ndarray:
    return np.array([t["box"] for t in truth], float)


# ------------------------------------------------------------------------------------------
# simulated harbour
# ------------------------------------------------------------------------------------------
OPEN_WATER = (4, 5, 6)  # indices of the planted vessels at anchor / under way in open water
MOORED = (0, 1, 2, 3)  # alongside the quay, rafted outboard, against the pier


def test_open_water_vessels_are_found(harbour, harbour_dets):
    scene, truth, _ = harbour
    m = match_detections(harbour_dets.boxes, harbour_dets.scores, _gt(truth))
    found = {j for _, j in m.pairs}
    assert set(OPEN_WATER) <= found, f"found {sorted(found)}"


@pytest.mark.xfail(strict=True, reason="known shortfall (issue 5): the shipped network misses most simulated "
                   "ships moored against quays/piers of similar brightness; real-port LOPO recall is low too")
def test_moored_and_rafted_vessels_are_found(harbour, harbour_dets):
    scene, truth, _ = harbour
    m = match_detections(harbour_dets.boxes, harbour_dets.scores, _gt(truth))
    found = {j for _, j in m.pairs}
    assert set(MOORED) <= found, f"found {sorted(found)}"


def test_pier_mole_and_wake_are_not_vessels(harbour, harbour_dets):
    _, truth, distractors = harbour
    m = match_detections(harbour_dets.boxes, harbour_dets.scores, _gt(truth))
    matched = {i for i, _ in m.pairs}
    false = [d for i, d in enumerate(harbour_dets.items) if i not in matched]
    for d in false:
        p = shapely.Point(d.center)
        for name, g in distractors.items():
            assert not g.buffer(2).contains(p), f"false vessel on the {name} at {d.center}"
    assert m.fp <= 1


def test_vessel_size_is_measured_in_metres(harbour, harbour_dets):
    _, truth, _ = harbour
    m = match_detections(harbour_dets.boxes, harbour_dets.scores, _gt(truth))
    errs = []
    for i, j in m.pairs:
        d, t = harbour_dets.items[i], truth[j]
        errs.append(abs(d.length_m - t["length_m"]) / t["length_m"])
        assert d.width_m < d.length_m
        assert d.cls == "vessel" and 0 <= d.score <= 1
    assert np.median(errs) < 0.10, errs  # 4 sigma (an ellipse's length) made hulls about 18 % long here


def test_a_rectangular_hull_mask_measures_its_own_length_and_beam():
    from imgdiff.detect.vessels import _axes

    m = np.zeros((10, 30), bool)
    m[3:7, 5:25] = True  # 20 x 4 px at 10 m: a 200 m x 40 m hull
    length, width, heading, _ = _axes(m, 10.0, 10.0)
    assert length == pytest.approx(200.0, rel=1e-6) and width == pytest.approx(40.0, rel=1e-6)
    assert heading == pytest.approx(90.0)


def test_moored_vessels_are_stationary(harbour, harbour_dets):
    _, truth, _ = harbour
    for d in harbour_dets:
        assert d.extra["moving"] is False
        assert d.extra["speed_kn"] is None  # a stationary vessel has no speed (only an apparent one)


def test_moving_vessel_speed_and_course_from_band_offsets():
    # ship 4 (heading 35 deg, 220 m) under way at 18 kn; ship 6 (heading 0) at 14 kn
    scene, truth, _ = harbour_scene(1, moving={4: 18.0, 6: 14.0})
    dets = detect_vessels(scene)
    m = match_detections(dets.boxes, dets.scores, _gt(truth))
    by_gt = {j: dets.items[i] for i, j in m.pairs}
    for k, kn, course in ((4, 18.0, 35.0), (6, 14.0, 0.0)):
        d = by_gt[k]
        assert d.extra["moving"] is True
        assert d.extra["speed_kn"] == pytest.approx(kn, abs=3.5)
        diff = (d.heading_deg - course + 180) % 360 - 180
        assert abs(diff) < 15
    for j, d in by_gt.items():
        if j not in (4, 6):
            assert d.extra["moving"] is False, j


def test_without_b08_or_with_two_timed_bands_no_vessel_is_called_moving_and_open_water_is_unmeasured():
    scene, truth, _ = harbour_scene(1, moving={4: 18.0, 6: 14.0})
    no_nir = detect_vessels(scene.select(["B02", "B03", "B04"]))
    assert len(no_nir) and all(d.extra["open_water"] is None and d.extra["moving"] is False for d in no_nir)
    two = detect_vessels(scene.select(["B03", "B08"]))  # two band times: any two centroids lie on a line
    assert all(d.extra["moving"] is False and d.extra["speed_kn"] is None for d in two)


def test_a_vessel_beside_no_data_is_not_known_to_lie_in_open_water_nor_called_moving():
    # ship 6 (heading 0, 12 x 3 px at x = 200) under way at 14 kn; no data from 1.5 px east of its hull
    scene, truth, _ = harbour_scene(1, moving={6: 14.0})
    cut = np.zeros(scene.shape, bool)
    cut[:, 203:] = True
    bands = {b: np.where(cut, np.nan, v).astype(np.float32) for b, v in scene.bands.items()}
    holed = Scene(bands, scene.crs, scene.transform, np.asarray(scene.valid, bool) & ~cut)
    for s, in_open_water in ((scene, True), (holed, False)):
        dets = detect_vessels(s)
        m = match_detections(dets.boxes, dets.scores, _gt(truth))
        d = {j: dets.items[i] for i, j in m.pairs}[6]
        assert d.extra["open_water"] is in_open_water
        assert d.extra["moving"] is in_open_water


def test_detect_vessels_refuses_arguments_out_of_their_documented_ranges(harbour):
    scene, _, _ = harbour
    for kw in ({"min_score": 26}, {"min_score": -0.5}, {"min_score": float("nan")}, {"tta": 0}, {"tta": 9},
               {"tta": 2.5}, {"tta": True}, {"tta": float("nan")}, {"water_px": -1}, {"min_length_m": -5}):
        with pytest.raises(ValueError, match="detect_vessels"):
            detect_vessels(scene, **kw)
    assert len(detect_vessels(scene, tta=2.0)) == len(detect_vessels(scene, tta=np.int64(2)))  # whole numbers pass


@pytest.mark.shared_data
def test_no_data_beside_land_is_not_the_open_water_a_vessel_needs(shared_data):
    from imgdiff.detect.vessels import water_mask

    from .conftest import need

    s = read_scene(need(shared_data / "sen2ships" / "athens"))
    crop = Scene({b: v[563:864, 541:874].copy() for b, v in s.bands.items()}, s.crs,
                 s.transform * Affine.translation(541, 563), s.valid[563:864, 541:874].copy())
    cut = np.zeros(crop.shape, bool)
    cut[:, 160:] = True  # no data east of column 160, across quays and water alike
    bands = {b: np.where(cut, np.nan, v).astype(np.float32) for b, v in crop.bands.items()}
    holed = Scene(bands, crop.crs, crop.transform, crop.valid & ~cut)
    water = water_mask(holed, invalid_is_water=False)  # no data neither water nor joining wet land to it
    dets = detect_vessels(holed)
    assert len(dets) > 0
    for d in dets:  # each kept vessel has open water within 4 px of its box (detect_vessels' water_px)
        x0, y0, x1, y1 = (int(v) for v in d.box)
        assert water[max(0, y0 - 5):y1 + 5, max(0, x0 - 5):x1 + 5].any(), d.box


def _by_position(boxes: np.ndarray) -> np.ndarray:
    return boxes[np.lexsort((boxes[:, 1], boxes[:, 0]))]


def test_detection_does_not_depend_on_absolute_scaling(harbour, harbour_dets):
    # The network reads log(band / p99) and the rescorer log ratios: scale-free. Only the haze
    # removal (imgdiff.detect.vessels.remove_haze) reads absolute reflectance; neither copy below
    # has water brighter than the training ports', so they must give the very same detections.
    scene = harbour[0]
    half, tenth = ({b: v * k for b, v in scene.bands.items()} for k in (0.5, 10000 / 65535))
    a, b = (detect_vessels(Scene(x, scene.crs, scene.transform, scene.valid)) for x in (half, tenth))
    assert len(a) == len(b) > 0
    np.testing.assert_allclose(a.boxes, b.boxes, atol=0.5)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
    # The simulated scene itself has slightly hazy water (B02-B04 up to 0.02 above): the haze is
    # taken off, the scores move a little, the same vessels are found.
    assert len(harbour_dets) == len(a)
    np.testing.assert_allclose(_by_position(harbour_dets.boxes), _by_position(a.boxes), atol=0.5)
    x = normalise_band(scene.bands["B08"])
    np.testing.assert_allclose(normalise_band(scene.bands["B08"] * 7.3), x, atol=1e-4)


@pytest.mark.parametrize("bands", [("B08",), ("B02", "B03", "B04"), ("B03", "B08")])
def test_any_subset_of_the_10m_bands_works(harbour, bands):
    scene, truth, _ = harbour
    dets = detect_vessels(scene.select(bands))
    m = match_detections(dets.boxes, dets.scores, _gt(truth))
    assert set(OPEN_WATER) <= {j for _, j in m.pairs}
    assert m.fp <= 1


def test_missing_bands_are_flagged_in_the_input(harbour):
    x = vessel_input(harbour[0].select(["B08"]))
    assert x.shape == (8, 200, 240)
    np.testing.assert_array_equal(x[4:, 0, 0], [0, 0, 0, 1])
    np.testing.assert_array_equal(x[0], x[3])


def test_scene_without_usable_bands_is_an_error(harbour):
    from imgdiff.errors import BandError

    with pytest.raises(BandError, match="B02"):
        detect_vessels(Scene({"B11": harbour[0].bands["B08"]}, UTM, TRANSFORM, harbour[0].valid))


def _constant_chip_model(path, p: float) -> None:
    """A chip classifier (``(N, 4, S, S)`` chips -> ``(N,)``) that gives every chip the probability ``p``."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("ReduceMean", ["chips"], ["m"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Mul", ["m", "zero"], ["z"]), helper.make_node("Add", ["z", "p"], ["probability"])]
    graph = helper.make_graph(
        nodes, "constant", [helper.make_tensor_value_info("chips", TensorProto.FLOAT, ["n", 4, "s", "s"])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["n"])],
        initializer=[numpy_helper.from_array(np.float32(0.0), "zero"), numpy_helper.from_array(np.float32(p), "p")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_a_given_rescorer_and_chip_classifier_replace_the_shipped_ones(harbour, harbour_dets, tmp_path):
    from imgdiff.detect.vessel_chips import CHIP_MODEL_PATH
    from imgdiff.detect.vessels import RESCORE_PATH
    from imgdiff.errors import InputError

    scene = harbour[0]
    same = detect_vessels(scene, rescorer=RESCORE_PATH, chip_model=CHIP_MODEL_PATH)
    assert np.array_equal(same.boxes, harbour_dets.boxes) and np.array_equal(same.scores, harbour_dets.scores)
    sure, doubtful = tmp_path / "sure.onnx", tmp_path / "doubtful.onnx"
    _constant_chip_model(sure, 0.99)
    _constant_chip_model(doubtful, 0.01)
    hi = detect_vessels(scene, min_score=0.0, chip_model=sure)
    lo = detect_vessels(scene, min_score=0.0, chip_model=doubtful)
    assert len(hi) == len(lo) > 0 and not np.allclose(np.sort(hi.scores), np.sort(lo.scores))
    with pytest.raises(InputError, match="nowhere.json"):
        detect_vessels(scene, rescorer=tmp_path / "nowhere.json")
    with pytest.raises(InputError, match="nowhere.onnx"):
        detect_vessels(scene, chip_model=tmp_path / "nowhere.onnx")


# ------------------------------------------------------------------------------------------
# GeoJSON and zones
# ------------------------------------------------------------------------------------------
def test_geojson_is_a_valid_feature_collection_in_the_scene_crs(harbour, harbour_dets, tmp_path):
    scene = harbour[0]
    path = write_detections_geojson(tmp_path / "v.geojson", harbour_dets)
    fc = json.loads(path.read_text())
    assert fc["type"] == "FeatureCollection"
    assert fc["crs"]["properties"]["name"].endswith("32636")
    assert len(fc["features"]) == len(harbour_dets)
    left, bottom, right, top = scene.bounds
    for f, d in zip(fc["features"], harbour_dets):
        g = shapely.geometry.shape(f["geometry"])
        assert f["geometry"]["type"] == "Polygon" and g.is_valid
        ring = f["geometry"]["coordinates"][0]
        assert ring[0] == ring[-1] and len(ring) == 5
        assert shapely.LinearRing(ring).is_ccw
        assert left <= g.bounds[0] and g.bounds[2] <= right and bottom <= g.bounds[1] and g.bounds[3] <= top
        x0, y0, x1, y1 = d.box
        assert g.area == pytest.approx((x1 - x0) * (y1 - y0) * 100.0, rel=1e-6)
        p = f["properties"]
        assert p["class"] == "vessel" and p["score"] == pytest.approx(d.score, abs=1e-6)
        assert p["length_m"] == pytest.approx(d.length_m, abs=1e-3) and "zone" in p and "moving" in p


def test_geojson_without_crs_uses_transform_coordinates(harbour):
    scene = harbour[0]
    local = Scene(dict(scene.bands), None, Affine(10, 0, 0, 0, 10, 0), scene.valid)
    fc = detections_to_geojson(detect_vessels(local))
    assert "crs" not in fc
    for f in fc["features"]:
        xs = [c[0] for c in f["geometry"]["coordinates"][0]]
        assert 0 <= min(xs) and max(xs) <= 2400


def test_zones_keep_only_vessels_inside_and_name_them(harbour, harbour_dets):
    scene, truth, _ = harbour
    # west half of the harbour in UTM, given in lon/lat like a zones file
    x0, y0 = TRANSFORM * (0, 0)
    x1, y1 = TRANSFORM * (120, 200)
    west = transform_geom(UTM, "EPSG:4326", mapping(shp_box(x0, y1, x1, y0)))
    zones = Zones({"west basin": shapely.geometry.shape(west)})
    dets = detect_vessels(scene, zones)
    assert len(dets) > 0
    assert all(d.zone == "west basin" and d.center[0] < 121 for d in dets)
    zone_utm = zones.to_crs(UTM).geometries["west basin"]
    inside = sum(1 for x, y in harbour_dets.map_centers() if zone_utm.covers(shapely.Point(x, y)))
    assert 0 < inside < len(harbour_dets)
    assert len(dets) == inside
    assert dets.count_by_zone() == {"west basin": inside}


# ------------------------------------------------------------------------------------------
# real dev ports (sen2ships), small crops
# ------------------------------------------------------------------------------------------
@pytest.mark.shared_data
@pytest.mark.parametrize("port", [
    "casablanca",
    pytest.param("honolulu", marks=pytest.mark.xfail(strict=True, reason=(
        "known shortfall: since DN 0 in B08 alone reads as dark water (not no-data), the water rule keeps 4 more "
        "in-sample candidates (network 0.34-0.47) near it: recall 1.0 but count +33 % (> 30 %)"))),
])
def test_dev_port_detection_reaches_the_target_on_a_crop(shared_data, port):
    # these ports are in the training set of the shipped model: this guards the whole read ->
    # detect chain against regressions; the held-out estimate is leave-one-port-out (training/).
    d = need(shared_data / "sen2ships" / port)
    scene = read_scene(d)
    gt = read_gt(d)
    dets = detect_vessels(scene, rescore=False)  # the network's own chain (rescored: test_detect_vessel_features)
    s = score(port, dets.boxes, dets.scores, gt)
    assert s.f1 >= 0.75, s
    assert abs(s.count_error) <= 0.3, s


@pytest.mark.shared_data
def test_dev_port_scaling_is_inferred_and_irrelevant(shared_data):
    d = need(shared_data / "sen2ships" / "casablanca")
    raw = read_scene(d)
    as_l2a = read_scene(d, scale=1e-4)  # the same DN read with the L1C/L2A convention
    a, b = detect_vessels(raw), detect_vessels(as_l2a)
    assert len(a) == len(b)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=0.5)
    s = pool([score("a", a.boxes, a.scores, read_gt(d))])
    assert s.recall >= 0.7


# ------------------------------------------------------------------------------------------
# models that read B11 (10 input channels)
# ------------------------------------------------------------------------------------------
def _tiny_b11_model(path) -> None:
    """A 10-channel network (2x2 convolution, stride 2) whose centre logit is 4 * B11 - 6:
    a spot brighter in B11 than the scene's 99th percentile is a vessel, nothing else is."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = np.zeros((5, 10, 2, 2), np.float32)
    w[0, 4] = 1.0  # 4 taps of the B11 channel, 1.0 each: logit 4 * B11 (normalised)
    b = np.array([-6.0, 0.0, 0.0, math.log(8.0), math.log(8.0)], np.float32)  # 8 x 8 px boxes
    node = helper.make_node("Conv", ["x", "w", "b"], ["maps"], kernel_shape=[2, 2], strides=[2, 2])
    graph = helper.make_graph(
        [node], "b11", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10, "h", "w"])],
        [helper.make_tensor_value_info("maps", TensorProto.FLOAT, [1, 5, "h2", "w2"])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _b11_scene(with_b11: bool) -> Scene:
    """Flat water in the 10 m bands; one 4 x 4 px target bright in B11 only, at rows/cols 30-34."""
    h = w = 64
    bands = {b: np.full((h, w), v, np.float32) for b, v in zip(("B02", "B03", "B04", "B08"), WATER)}
    if with_b11:
        swir = np.full((h, w), 0.01, np.float32)
        swir[30:34, 30:34] = 0.3
        bands["B11"] = swir
    return Scene(bands, UTM, TRANSFORM, np.ones((h, w), bool))


def test_model_bands_follow_the_input_channel_count(tmp_path):
    from imgdiff.detect.vessels import MODEL_BANDS, model_bands

    path = tmp_path / "b11.onnx"
    _tiny_b11_model(path)
    assert model_bands() == MODEL_BANDS == ("B02", "B03", "B04", "B08")  # the shipped model: 8 channels
    assert model_bands(path) == (*MODEL_BANDS, "B11")


def test_a_b11_model_reads_b11_and_works_without_it(tmp_path):
    from imgdiff.detect.vessels import MODEL_BANDS, run_network
    from imgdiff.errors import InputError

    path = tmp_path / "b11.onnx"
    _tiny_b11_model(path)
    bands = (*MODEL_BANDS, "B11")
    x = vessel_input(_b11_scene(True), bands=bands)
    assert x.shape == (10, 64, 64)
    np.testing.assert_array_equal(x[5:, 0, 0], [1, 1, 1, 1, 1])
    x0 = vessel_input(_b11_scene(False), bands=bands)
    np.testing.assert_array_equal(x0[5:, 0, 0], [1, 1, 1, 1, 0])  # B11 missing: flagged, filled
    np.testing.assert_allclose(x0[4], x0[:4].mean(axis=0), atol=1e-6)
    with pytest.raises(InputError, match="10 input channels"):
        run_network(vessel_input(_b11_scene(True)), path)  # an 8-channel input for a 10-channel model
    kw = {"model": path, "method": "cnn", "rescore": False, "tta": 1, "water_px": None, "min_score": 0.5}
    dets = detect_vessels(_b11_scene(True), **kw)
    assert len(dets) == 1  # the target seen in B11 only
    cx, cy = (dets.boxes[0, 0] + dets.boxes[0, 2]) / 2, (dets.boxes[0, 1] + dets.boxes[0, 3]) / 2
    assert abs(cx - 32) <= 2.5 and abs(cy - 32) <= 2.5  # the tiny model has no sub-cell offsets
    assert len(detect_vessels(_b11_scene(False), **kw)) == 0  # without B11 it runs, and sees nothing


# ------------------------------------------------------------------------------------------
# network ensembles (training/ensemble_vessels.py: several networks averaged in one ONNX graph)
# ------------------------------------------------------------------------------------------
def _average_networks():
    pytest.importorskip("onnx")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "training"))
    from ensemble_vessels import average_networks

    return average_networks


def test_an_ensemble_graph_outputs_the_mean_of_its_networks_maps(tmp_path):
    import onnx
    from onnx import numpy_helper

    from imgdiff.detect.onnx import run_network_file
    from imgdiff.detect.vessels import MODEL_PATH

    average_networks = _average_networks()
    other = onnx.load(str(MODEL_PATH))  # a second network: the shipped one with every output map shifted
    last = other.graph.node[-1]
    assert last.op_type == "Conv" and last.output[0] == other.graph.output[0].name
    init = next(t for t in other.graph.initializer if t.name == last.input[2])
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) + np.arange(1, 6, dtype=np.float32), init.name))
    onnx.save(other, str(tmp_path / "other.onnx"))
    ens = average_networks([MODEL_PATH, tmp_path / "other.onnx"], tmp_path / "ens.onnx")
    x = np.random.default_rng(0).normal(size=(1, 8, 64, 96)).astype(np.float32)
    a, b = run_network_file(MODEL_PATH, x), run_network_file(tmp_path / "other.onnx", x)
    np.testing.assert_allclose(b - a, np.broadcast_to(np.arange(1, 6, dtype=np.float32)[None, :, None, None], a.shape),
                               atol=1e-4)
    np.testing.assert_allclose(run_network_file(ens, x), (a + b) / 2, atol=1e-5)


def test_an_ensemble_of_the_network_with_itself_detects_what_the_network_alone_does(harbour, harbour_dets, tmp_path):
    from imgdiff.detect.vessels import MODEL_PATH

    ens = _average_networks()([MODEL_PATH, MODEL_PATH], tmp_path / "self.onnx")
    dets = detect_vessels(harbour[0], model=ens)
    np.testing.assert_array_equal(dets.boxes, harbour_dets.boxes)
    np.testing.assert_array_equal(dets.scores, harbour_dets.scores)
    alone = detect_vessels(harbour[0], rescore=False, tta=4)
    np.testing.assert_array_equal(detect_vessels(harbour[0], model=ens, rescore=False, tta=4).boxes, alone.boxes)
