"""`imgdiff info` and `imgdiff compare` end to end, and every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from imgdiff_cli.main import cli
from rasterio.transform import from_origin

from .conftest import need, write_band

BEIRUT_PORT = "35.50,33.89,35.53,33.91"


@pytest.fixture
def runner():
    return CliRunner()


def scene_dir(path, value=1000, shape=(64, 64), origin=(600000, 3870000), bands=("B02", "B03", "B04", "B08"), seed=0):
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    texture = rng.normal(0, 150, shape)
    for i, b in enumerate(bands):
        write_band(path / f"{b}.tif", (value + 200 * i + texture).clip(1, None).astype("uint16"),
                   transform=from_origin(*origin, 10, 10))
    return path


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for f in fragments:
        assert f in err, err


def test_info_json_has_crs_bounds_bands_and_shape(runner, tmp_path):
    d = scene_dir(tmp_path / "s")
    r = runner.invoke(cli, ["info", str(d), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["crs"] == "EPSG:32636"
    assert info["shape"] == [64, 64]
    assert info["bounds"] == [600000.0, 3869360.0, 600640.0, 3870000.0]
    assert [b["name"] for b in info["bands"]] == ["B02", "B03", "B04", "B08"]
    assert info["bands"][0]["resolution_m"][0] == pytest.approx(10, abs=0.1)
    assert 34.0 < info["bounds_lonlat"][0] < 34.2 and info["valid_fraction"] == 1.0


@pytest.mark.parametrize("method", ["cva-otsu", "mlp"])
def test_compare_writes_georeferenced_change_map_and_report_on_the_before_grid(runner, tmp_path, method):
    b = scene_dir(tmp_path / "before", seed=1)
    a = scene_dir(tmp_path / "after", seed=1)
    for band in ("B02", "B03", "B04", "B08"):  # a bright new 6x6 object (a roof) in the after scene
        with rasterio.open(a / f"{band}.tif", "r+") as ds:
            arr = ds.read(1)
            arr[30:36, 30:36] += 2500
            ds.write(arr, 1)
    out = tmp_path / "out"
    r = runner.invoke(cli, ["compare", str(b), str(a), "-o", str(out), "--method", method])
    assert r.exit_code == 0, r.output + r.stderr
    with rasterio.open(out / "change.tif") as ds, rasterio.open(b / "B02.tif") as ref:
        assert ds.crs == ref.crs and ds.transform == ref.transform and ds.shape == ref.shape
        assert ds.count == 3
        mask = ds.read(2)
    assert mask[31:35, 31:35].all()
    # nothing changed away from the object (methods with spatial context may widen it by a few pixels)
    far = np.ones_like(mask, bool)
    far[22:44, 22:44] = False
    assert mask[far].sum() == 0
    report = json.loads((out / "report.json").read_text())
    assert report["schema_version"] and report["grid"]["crs"] == "EPSG:32636"
    assert abs(report["coregistration"]["dx"]) < 0.2 and abs(report["coregistration"]["dy"]) < 0.2
    assert report["change"]["changed_pixels"] == int(mask.sum())
    assert (out / "report.md").read_text().startswith("# imgdiff change report")


def test_compare_refuses_to_overwrite_without_flag(runner, tmp_path):
    b, a = scene_dir(tmp_path / "b"), scene_dir(tmp_path / "a", seed=3)
    out = tmp_path / "out"
    assert runner.invoke(cli, ["compare", str(b), str(a), "-o", str(out)]).exit_code == 0
    r = runner.invoke(cli, ["compare", str(b), str(a), "-o", str(out)])
    assert_one_line_error(r, "--overwrite")
    assert runner.invoke(cli, ["compare", str(b), str(a), "-o", str(out), "--overwrite"]).exit_code == 0


def test_compare_json_prints_one_object(runner, tmp_path):
    b, a = scene_dir(tmp_path / "b"), scene_dir(tmp_path / "a", seed=4)
    r = runner.invoke(cli, ["compare", str(b), str(a), "-o", str(tmp_path / "o"), "--json"])
    assert r.exit_code == 0
    assert json.loads(r.stdout)["grid"]["width"] == 64


def test_compare_recovers_a_known_shift_on_the_real_beirut_pair(runner, tmp_path, shared_data):
    """The after scene shifted by exactly 2 px east must show a shift 2 px larger than the pair's own."""
    d = need(shared_data / "oscd" / "beirut")
    out = tmp_path / "o"
    r = runner.invoke(cli, ["compare", str(d / "before"), str(d / "after"), "-o", str(out), "--bbox", BEIRUT_PORT,
                            "--bands", "B02,B03,B04,B08", "--json"])
    assert r.exit_code == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["dates"] == {"before": "2015-08-20", "after": "2017-10-03", "days_between": 775}
    assert abs(rep["coregistration"]["dx"]) < 1.5 and abs(rep["coregistration"]["dy"]) < 1.5
    assert 0.0 < rep["change"]["changed_fraction"] < 0.3
    with rasterio.open(out / "change.tif") as ds:
        assert ds.crs.to_epsg() == 4326 and ds.count == 3


# ---------------------------------------------------------------- bad input
def test_missing_path(runner, tmp_path):
    r = runner.invoke(cli, ["compare", str(tmp_path / "nope"), str(tmp_path / "nope2"), "-o", str(tmp_path / "o")])
    assert_one_line_error(r, "nope", "no such file")
    assert not (tmp_path / "o").exists()


def test_file_that_is_not_a_raster(runner, tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    (d / "B02.tif").write_text("this is not a GeoTIFF")
    r = runner.invoke(cli, ["info", str(d)])
    assert_one_line_error(r, "B02.tif", "not a readable raster")


def test_unknown_band_layout(runner, tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    write_band(d / "image.tif", np.ones((3, 8, 8), "uint16"))
    write_band(d / "other.tif", np.ones((3, 8, 8), "uint16"))
    r = runner.invoke(cli, ["info", str(d)])
    assert_one_line_error(r, str(d), "unknown band layout")


def test_missing_band_is_named(runner, tmp_path):
    b, a = scene_dir(tmp_path / "b"), scene_dir(tmp_path / "a")
    r = runner.invoke(cli, ["compare", str(b), str(a), "-o", str(tmp_path / "o"), "--bands", "B02,B11"])
    assert_one_line_error(r, "B11", "not found")


def test_mismatched_bands(runner, tmp_path):
    b = scene_dir(tmp_path / "b", bands=("B02", "B03"))
    a = scene_dir(tmp_path / "a", bands=("B08", "B11"))
    r = runner.invoke(cli, ["compare", str(b), str(a), "-o", str(tmp_path / "o")])
    assert_one_line_error(r, "share no band")
    assert not any((tmp_path / "o").glob("*"))


def test_scenes_that_do_not_overlap(runner, tmp_path):
    b = scene_dir(tmp_path / "b")
    a = scene_dir(tmp_path / "a", origin=(700000, 3870000))
    out = tmp_path / "o"
    r = runner.invoke(cli, ["compare", str(b), str(a), "-o", str(out)])
    assert_one_line_error(r, "no pixels inside")
    assert not any(out.glob("*"))


def test_all_nodata_scene(runner, tmp_path):
    b = scene_dir(tmp_path / "b")
    a = tmp_path / "a"
    a.mkdir()
    for band in ("B02", "B03", "B04", "B08"):
        write_band(a / f"{band}.tif", np.zeros((64, 64), "uint16"))
    r = runner.invoke(cli, ["compare", str(b), str(a), "-o", str(tmp_path / "o")])
    assert_one_line_error(r, str(a), "no valid pixel")


def test_truncated_geotiff(runner, tmp_path):
    b = scene_dir(tmp_path / "b", shape=(512, 512))
    a = scene_dir(tmp_path / "a", shape=(512, 512), seed=5)
    f = a / "B08.tif"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    out = tmp_path / "o"
    r = runner.invoke(cli, ["compare", str(b), str(a), "-o", str(out)])
    assert_one_line_error(r, "B08.tif")
    assert not any(out.glob("*"))


def test_bad_bbox_option_is_a_usage_error(runner, tmp_path):
    r = runner.invoke(cli, ["compare", "a", "b", "-o", str(tmp_path / "o"), "--bbox", "1,2,3"])
    assert r.exit_code == 2 and "WEST,SOUTH,EAST,NORTH" in r.stderr
