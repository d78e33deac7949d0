"""Sites on large scenes: only the zones' window is read; `compare --site` honours its options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from imgdiff_cli.main import cli

import imgdiff.tiles as tiles
import imgdiff.tiles.large_scenes as large_scenes  # zones_window reads its limits there
from imgdiff.claims import read_for_zones
from imgdiff.errors import NoOverlapError
from imgdiff.io.read import read_scene
from imgdiff.sites import load_zones
from imgdiff.zones import zones_from_geojson

ROOT = Path(__file__).resolve().parent.parent
BEFORE = ROOT / "samples/scenes/tartus/2024-12-03"
AFTER = ROOT / "samples/scenes/tartus/2024-12-13"


def test_a_site_sized_scene_is_read_whole():
    assert tiles.zones_window(BEFORE, load_zones("tartus")) is None
    assert read_for_zones(BEFORE, load_zones("tartus")).shape == read_scene(BEFORE).shape


def test_a_scene_above_the_size_limit_is_read_only_around_the_zones_plus_the_margin(monkeypatch):
    zones = load_zones("tartus")
    full = read_scene(BEFORE)
    monkeypatch.setattr(large_scenes, "ZONES_WINDOW_ABOVE_PX", 1000)
    monkeypatch.setattr(large_scenes, "ZONES_MARGIN_M", 50.0)
    (x0, y0, x1, y1), crs = tiles.zones_window(BEFORE, zones)
    assert crs == full.crs
    zb = [g.bounds for g in zones.to_crs(full.crs).geometries.values()]
    left, bottom, right, top = full.bounds
    # the window holds every zone with 50 m around it, clipped to the scene
    assert x0 == pytest.approx(max(left, min(b[0] for b in zb) - 50.0))
    assert y1 == pytest.approx(min(top, max(b[3] for b in zb) + 50.0))
    scene = read_for_zones(BEFORE, zones)
    assert scene.shape[0] * scene.shape[1] < 0.8 * full.shape[0] * full.shape[1]
    sb = scene.bounds
    for b in zb:  # every zone inside what was read (to the pixel)
        assert b[0] >= sb[0] - 10 and b[1] >= sb[1] - 10 and b[2] <= sb[2] + 10 and b[3] <= sb[3] + 10


def test_zones_outside_a_large_scene_are_refused_naming_the_scene(monkeypatch):
    monkeypatch.setattr(large_scenes, "ZONES_WINDOW_ABOVE_PX", 1000)
    far = zones_from_geojson({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"name": "elsewhere"},
        "geometry": {"type": "Polygon", "coordinates": [[[20.0, 40.0], [20.01, 40.0], [20.01, 40.01], [20.0, 40.0]]]}}]})
    with pytest.raises(NoOverlapError, match="2024-12-03.*outside the scene"):
        tiles.zones_window(BEFORE, far)


def test_compare_site_uses_the_given_method_bands_and_no_coregistration(tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["compare", str(BEFORE), str(AFTER), "--site", "tartus", "--method", "cva-otsu",
                                 "--no-coregister", "--bands", "B02,B03,B04,B08", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["change"]["method"] == "cva-otsu"
    assert report["coregistration"]["method"] == "none" and report["coregistration"]["dx"] == 0.0
    assert not report["coregistration"]["failed"]  # not asked for is not a failure
    assert report["inputs"]["before"]["bands"] == ["B02", "B03", "B04", "B08"]


def test_compare_site_with_a_bbox_reads_only_that_window(tmp_path):
    out = tmp_path / "out"
    bbox = "35.865,34.895,35.885,34.915"
    r = CliRunner().invoke(cli, ["compare", str(BEFORE), str(AFTER), "--site", "tartus", "--bbox", bbox,
                                 "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    grid = json.loads(r.stdout)["grid"]
    assert grid["width"] < 400 and grid["height"] < 340


def test_compare_site_refuses_a_tile_size(tmp_path):
    r = CliRunner().invoke(cli, ["compare", str(BEFORE), str(AFTER), "--site", "tartus", "--tile-size", "256",
                                 "-o", str(tmp_path / "out")])
    assert r.exit_code == 2 and "--tile-size" in r.output
    assert not (tmp_path / "out").exists()


def test_detect_with_zones_on_a_large_scene_reads_only_the_zones_window(tmp_path, monkeypatch):
    import imgdiff

    seen = []
    real = imgdiff.read_scene

    def spy(path, *a, **kw):
        seen.append(kw.get("bbox"))
        return real(path, *a, **kw)

    monkeypatch.setattr(imgdiff, "read_scene", spy)
    zones = str(ROOT / "samples/sites/tartus.geojson")
    whole = CliRunner().invoke(cli, ["detect", str(BEFORE), "--zones", zones, "-o", str(tmp_path / "a.geojson"), "--json"])
    assert whole.exit_code == 0, whole.output
    assert seen == [None]
    monkeypatch.setattr(large_scenes, "ZONES_WINDOW_ABOVE_PX", 1000)
    monkeypatch.setattr(large_scenes, "ZONES_MARGIN_M", 50.0)
    part = CliRunner().invoke(cli, ["detect", str(BEFORE), "--zones", zones, "-o", str(tmp_path / "b.geojson"), "--json"])
    assert part.exit_code == 0, part.output
    from rasterio.warp import transform_bounds

    full = read_scene(BEFORE)
    fw, fs, fe, fn = transform_bounds(full.crs, "EPSG:4326", *full.bounds)
    w, s, e, n = seen[-1]  # a lon/lat window around the zones, smaller than the scene
    assert fw - 1e-3 <= w < e <= fe + 1e-3 and fs - 1e-3 <= s < n <= fn + 1e-3
    assert (e - w) * (n - s) < 0.9 * (fe - fw) * (fn - fs)
    assert set(json.loads(part.stdout)["by_zone"]) == set(json.loads(whole.stdout)["by_zone"])
