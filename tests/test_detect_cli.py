"""``imgdiff detect`` and ``imgdiff eval vessels`` through click's CliRunner."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from click.testing import CliRunner
from imgdiff_cli.main import cli
from rasterio.warp import transform_geom
from shapely.geometry import box as shp_box
from shapely.geometry import mapping

from imgdiff import detect_vessels, read_scene
from imgdiff.detect.vessels import path_radiance
from imgdiff.evaluate.detection import match_detections
from imgdiff.evaluate.vessels import read_gt

from .conftest import write_band
from .test_vessels import TRANSFORM, UTM, harbour_scene


@pytest.fixture(scope="module")
def harbour_dir(tmp_path_factory):
    """The simulated harbour as a band folder of uint16 DN (reflectance x 10000) + vessels.json."""
    scene, truth, _ = harbour_scene(0)
    d = tmp_path_factory.mktemp("scenes") / "simport"
    d.mkdir()
    for b, v in scene.bands.items():
        write_band(d / f"{b}.tif", np.round(v * 10000).astype(np.uint16), transform=TRANSFORM)
    gt = {"shape": list(scene.shape), "vessels": [{"bbox_px": t["box"]} for t in truth]}
    (d / "vessels.json").write_text(json.dumps(gt))
    return d, truth


def test_detect_vessels_writes_geojson_and_prints_one_json_object(harbour_dir, tmp_path):
    d, truth = harbour_dir
    out = tmp_path / "v.geojson"
    r = CliRunner().invoke(cli, ["detect", str(d), "--objects", "vessels", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    fc = json.loads(out.read_text())
    same = detect_vessels(read_scene(d))  # the command is a thin shell over the library
    assert summary["count"] == len(fc["features"]) == len(same) > 0
    np.testing.assert_allclose([f["properties"]["box_px"] for f in fc["features"]], same.boxes, atol=1e-6)
    assert summary["by_zone"] == {"scene": summary["count"]}  # no zones: the whole scene, as `watch` counts it
    from rasterio.warp import transform as warp

    for f in fc["features"]:
        assert f["geometry"]["type"] == "Polygon"
        assert {"class", "score", "length_m", "width_m", "zone"} <= set(f["properties"])
        assert f["properties"]["class"] == "vessel"
        # the centroid also in lon/lat degrees (RFC 7946 readers), the same point as centroid_map
        (lon,), (lat,) = warp(UTM, "EPSG:4326", *([v] for v in f["properties"]["centroid_map"]))
        assert f["properties"]["centroid_lonlat"] == pytest.approx([lon, lat], abs=1e-6)


def test_detect_vessels_reports_the_path_radiance_it_took_off(harbour_dir, tmp_path):
    # a hazy copy of the harbour: path radiance falling with wavelength, added to every pixel (DN = reflectance x 10000)
    d, _ = harbour_dir
    hazy = tmp_path / "hazy"
    hazy.mkdir()
    scene = read_scene(d)
    for b, add in {"B02": 0.05, "B03": 0.035, "B04": 0.02, "B08": 0.01}.items():
        write_band(hazy / f"{b}.tif", np.round((scene.bands[b] + add) * 10000).astype(np.uint16), transform=TRANSFORM)
    whole = CliRunner().invoke(cli, ["detect", str(hazy), "-o", str(tmp_path / "w.geojson"), "--json"])
    assert whole.exit_code == 0, whole.output
    pr = json.loads(whole.stdout)["path_radiance"]
    assert pr == pytest.approx(path_radiance(read_scene(hazy)), abs=1e-4)  # the library's measure, as detect_vessels uses it
    assert pr["B02"] > path_radiance(scene).get("B02", 0.0) + 0.04
    # window by window: measured once on the scene's decimated read, about the same
    tiled = CliRunner().invoke(cli, ["detect", str(hazy), "-o", str(tmp_path / "t.geojson"), "--json",
                                     "--tile-size", "256"])
    assert tiled.exit_code == 0, tiled.output
    assert json.loads(tiled.stdout)["path_radiance"]["B02"] == pytest.approx(pr["B02"], abs=0.01)
    human = CliRunner().invoke(cli, ["detect", str(hazy), "-o", str(tmp_path / "h.geojson")])
    assert human.exit_code == 0 and "path radiance taken off before vessel scoring (B02 0.0" in human.output
    aircraft = CliRunner().invoke(cli, ["detect", str(hazy), "--objects", "aircraft", "-o", str(tmp_path / "a.geojson"),
                                        "--json"])
    assert aircraft.exit_code == 0 and "path_radiance" not in json.loads(aircraft.stdout)


def test_detect_with_zones_counts_per_zone(harbour_dir, tmp_path):
    d, _ = harbour_dir
    x0, y0 = TRANSFORM * (0, 0)
    x1, y1 = TRANSFORM * (120, 200)
    xe, _ = TRANSFORM * (240, 0)
    feats = []
    for name, g in (("west", shp_box(x0, y1, x1, y0)), ("east", shp_box(x1, y1, xe, y0))):
        feats.append({"type": "Feature", "properties": {"name": name},
                      "geometry": transform_geom(UTM, "EPSG:4326", mapping(g))})
    zpath = tmp_path / "zones.geojson"
    zpath.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    out = tmp_path / "v.geojson"
    r = CliRunner().invoke(cli, ["detect", str(d), "--zones", str(zpath), "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert set(s["by_zone"]) == {"west", "east"}
    assert s["by_zone"]["west"] + s["by_zone"]["east"] == s["count"]
    fc = json.loads(out.read_text())
    west = [f for f in fc["features"] if f["properties"]["zone"] == "west"]
    assert len(west) == s["by_zone"]["west"]
    assert all(shapely.geometry.shape(f["geometry"]).centroid.x < x1 for f in west)


def test_detect_on_a_scene_without_crs_takes_zones_in_its_frame_and_refuses_lon_lat_zones(harbour_dir, tmp_path):
    """The rule `verify` follows: zones in the scene's own coordinates count as they do on the placed
    scene; lon/lat zones cannot be placed, so one line naming the scene, exit 2, nothing written
    (they used to be kept as they were and every vessel fell outside them)."""
    d, _ = harbour_dir
    bare = tmp_path / "bare"
    bare.mkdir()
    scene = read_scene(d)
    for b, v in scene.bands.items():
        write_band(bare / f"{b}.tif", np.round(v * 10000).astype(np.uint16), crs=None, transform=TRANSFORM)
    x0, y0 = TRANSFORM * (0, 0)
    x1, y1 = TRANSFORM * (120, 200)
    xe, _ = TRANSFORM * (240, 0)
    boxes = {"west": shp_box(x0, y1, x1, y0), "east": shp_box(x1, y1, xe, y0)}
    frame = {"type": "FeatureCollection", "features": [  # UTM metres without a CRS member: the scene's frame
        {"type": "Feature", "properties": {"name": n}, "geometry": mapping(g)} for n, g in boxes.items()]}
    lonlat = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": n}, "geometry": transform_geom(UTM, "EPSG:4326", mapping(g))}
        for n, g in boxes.items()]}
    counts = {}
    for name, folder, zones in (("placed", d, lonlat), ("bare", bare, frame)):
        zpath = tmp_path / f"{name}.geojson"
        zpath.write_text(json.dumps(zones))
        r = CliRunner().invoke(cli, ["detect", str(folder), "--zones", str(zpath), "-o", str(tmp_path / f"{name}.v.geojson"),
                                     "--json"])
        assert r.exit_code == 0, r.output
        counts[name] = json.loads(r.stdout)["by_zone"]
    assert counts["bare"] == counts["placed"] and sum(counts["bare"].values()) > 0
    zpath = tmp_path / "lonlat.geojson"
    zpath.write_text(json.dumps(lonlat))
    out = tmp_path / "refused.geojson"
    r = CliRunner().invoke(cli, ["detect", str(bare), "--zones", str(zpath), "-o", str(out), "--json"])
    assert r.exit_code == 2 and "has no CRS" in r.stderr and str(bare) in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()


def test_existing_output_needs_overwrite(harbour_dir, tmp_path):
    d, _ = harbour_dir
    out = tmp_path / "v.geojson"
    out.write_text("{}")
    r = CliRunner().invoke(cli, ["detect", str(d), "-o", str(out)])
    assert r.exit_code == 2
    assert "--overwrite" in r.stderr and str(out) in r.stderr
    assert out.read_text() == "{}"
    r = CliRunner().invoke(cli, ["detect", str(d), "-o", str(out), "--overwrite"])
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["type"] == "FeatureCollection"


def test_missing_scene_is_one_line_error(tmp_path):
    r = CliRunner().invoke(cli, ["detect", str(tmp_path / "nope"), "-o", str(tmp_path / "v.geojson")])
    assert r.exit_code == 2
    assert "nope" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_bad_zones_file_is_one_line_error(harbour_dir, tmp_path):
    d, _ = harbour_dir
    z = tmp_path / "z.geojson"
    z.write_text("not json")
    r = CliRunner().invoke(cli, ["detect", str(d), "--zones", str(z), "-o", str(tmp_path / "v.geojson")])
    assert r.exit_code == 2
    assert "z.geojson" in r.stderr


def test_detect_aircraft_writes_geojson(harbour_dir, tmp_path):
    d, _ = harbour_dir
    out = tmp_path / "a.geojson"
    r = CliRunner().invoke(cli, ["detect", str(d), "--objects", "aircraft", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    fc = json.loads(out.read_text())
    assert s["objects"] == "aircraft" and s["count"] == len(fc["features"])
    assert all(f["properties"]["class"] == "aircraft" for f in fc["features"])


def test_detect_aircraft_without_zones_says_it_fires_off_the_apron(harbour_dir, tmp_path):
    # trained on apron chips only, the network fires on city roofs (about 1300 on OSCD Beirut):
    # a whole-scene count is not an aircraft count, and the terminal says so (not in --json)
    d, _ = harbour_dir
    whole = CliRunner().invoke(cli, ["detect", str(d), "--objects", "aircraft", "-o", str(tmp_path / "a.geojson")])
    assert whole.exit_code == 0, whole.output
    assert "trained on airfield aprons" in whole.output and "--zones" in whole.output
    zones = tmp_path / "z.geojson"
    zones.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"name": "apron"},
        "geometry": transform_geom(UTM, "EPSG:4326", mapping(shp_box(*read_scene(d).bounds)))}]}))
    zoned = CliRunner().invoke(cli, ["detect", str(d), "--objects", "aircraft", "--zones", str(zones),
                                     "-o", str(tmp_path / "b.geojson")])
    assert zoned.exit_code == 0, zoned.output
    assert "trained on airfield aprons" not in zoned.output and "apron:" in zoned.output


def test_eval_vessels_prints_per_scene_and_pooled_scores(harbour_dir):
    d, truth = harbour_dir
    r = CliRunner().invoke(cli, ["eval", "vessels", "--data", str(d.parent), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert [s["name"] for s in out["scenes"]] == ["simport"]
    p = out["pooled"]
    assert p["n_gt"] == len(truth) and p["tp"] + p["fn"] == len(truth)
    dets = detect_vessels(read_scene(d))
    m = match_detections(dets.boxes, dets.scores, read_gt(d))
    assert (p["tp"], p["fp"], p["fn"], p["n_pred"]) == (m.tp, m.fp, m.fn, len(dets))
    assert p["f1"] == pytest.approx(2 * m.tp / (2 * m.tp + m.fp + m.fn))
    assert p["count_error"] == pytest.approx((len(dets) - len(truth)) / len(truth))
    r = CliRunner().invoke(cli, ["eval", "vessels", "--data", str(d.parent)])
    assert r.exit_code == 0 and "pooled" in r.output


def test_a_scene_without_vessels_or_detections_scores_as_not_applicable():
    from imgdiff.evaluate.vessels import score

    empty = score("land", np.zeros((0, 4)), np.zeros(0), np.zeros((0, 4))).to_dict()
    assert empty["precision"] is None and empty["recall"] is None and empty["f1"] is None
    assert empty["count_error"] is None
    missed = score("port", np.zeros((0, 4)), np.zeros(0), np.array([[0, 0, 5, 5]])).to_dict()
    assert missed["recall"] == 0.0 and missed["f1"] == 0.0


def test_eval_aircraft_refuses_a_score_threshold_outside_0_1(tmp_path):
    for value in ("1.5", "-3"):
        r = CliRunner().invoke(cli, ["eval", "aircraft", "--data", str(tmp_path), "--min-score", value])
        assert r.exit_code == 2 and "not in the range" in r.output
    r = CliRunner().invoke(cli, ["eval", "aircraft", "--data", str(tmp_path), "--threshold", "2"])
    assert r.exit_code == 2 and "not in the range" in r.output


def test_eval_vessels_bad_folder_is_one_line_error(tmp_path):
    r = CliRunner().invoke(cli, ["eval", "vessels", "--data", str(tmp_path)])
    assert r.exit_code == 2
    assert "vessels.json" in r.stderr
