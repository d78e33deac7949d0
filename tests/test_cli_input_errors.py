"""Bad input to the commands: one line naming the file or option and the problem, exit 2, nothing written.

Also the warnings the commands owe the user (a failed co-registration, a change-method fallback,
zones outside the scene). Scenes are small windows of the repository's Tartus samples, written
into ``tmp_path`` with :func:`tests.conftest.write_band`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from imgdiff_cli.detect import object_noun
from imgdiff_cli.main import cli
from rasterio.warp import transform_bounds, transform_geom
from rasterio.windows import Window
from shapely.geometry import box as shp_box
from shapely.geometry import mapping

import imgdiff
from imgdiff.change import change_map
from imgdiff.errors import EmptySceneError, GridError, ImgdiffError

from .conftest import write_band

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "scenes" / "tartus"
BANDS = ("B02", "B03", "B04", "B08", "B11")


def sample_scene(dst: Path, date: str = "2024-12-03", *, size: int = 128, shift_rows: int = 0, crs: object = "keep",
                 bands=BANDS, far_band: str | None = None) -> Path:
    """A ``size`` x ``size`` px window of a Tartus sample date (its 10 m bands; B11 at 20 m) as a band folder.

    ``shift_rows`` moves the georeferencing down by that many pixels (the same picture placed
    elsewhere); ``crs=None`` drops the CRS; ``far_band`` is placed 100 km east (its extent misses
    the others).
    """
    dst.mkdir(parents=True, exist_ok=True)
    for b in bands:
        with rasterio.open(SAMPLES / date / f"{b}.tif") as ds:
            f = 10.0 / abs(ds.transform.a)  # 1 for 10 m bands, 0.5 for B11
            n = max(1, int(round(size * f)))
            win = Window(int(100 * f), int(100 * f), n, n)
            data = ds.read(1, window=win)
            tr = rasterio.windows.transform(win, ds.transform) * Affine.translation(0, shift_rows * f)
            if b == far_band:
                tr = Affine.translation(100_000, 0) * tr
            write_band(dst / f"{b}.tif", data, crs=ds.crs if crs == "keep" else crs, transform=tr)
    return dst


def lonlat_bbox(folder: Path, inset: float = 0.25) -> str:
    """A lon/lat --bbox string inside the scene at ``folder`` (its middle part)."""
    with rasterio.open(folder / "B02.tif") as ds:
        w, s, e, n = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    dx, dy = (e - w) * inset, (n - s) * inset
    return f"{w + dx:.6f},{s + dy:.6f},{e - dx:.6f},{n - dy:.6f}"


def one_error_line(r) -> str:
    """The single stderr line of a refused command (exit status 2)."""
    assert r.exit_code == 2, (r.exit_code, r.output)
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert lines and "Traceback" not in r.output, r.output
    err = [ln for ln in lines if "error" in ln.lower()]
    assert len(err) == 1, lines
    return err[0]


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return sample_scene(tmp_path_factory.mktemp("s") / "2024-12-03")


@pytest.fixture(scope="module")
def bare(tmp_path_factory) -> Path:
    """The same window without CRS (the transform's coordinates stay UTM metres)."""
    return sample_scene(tmp_path_factory.mktemp("s") / "bare", crs=None)


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


# --------------------------------------------------------------------------- --bbox
@pytest.mark.parametrize("bbox", ["761000,3865000,762000,3866000", "-200,34.9,35.9,34.92", "35.8,34.9,35.9,95"])
def test_bbox_outside_lon_lat_ranges_is_refused_saying_it_is_lon_lat_degrees(scene, tmp_path, bbox):
    out = tmp_path / "d.geojson"
    r = run("detect", scene, "--bbox", bbox, "-o", out)
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "--bbox is lon/lat degrees" in r.stderr and bbox in r.stderr
    assert not out.exists()


def test_bbox_with_west_after_east_is_refused(scene, tmp_path):
    r = run("compare", scene, scene, "--bbox", "35.9,34.9,35.8,34.92", "-o", tmp_path / "c")
    assert r.exit_code == 2 and "west < east" in r.stderr and not (tmp_path / "c").exists()


def test_lon_lat_bbox_on_a_scene_without_crs_is_refused_in_one_line(bare, tmp_path):
    out = tmp_path / "d.geojson"
    line = one_error_line(run("detect", bare, "--bbox", "35.9,35.3,36.0,35.5", "-o", out))
    assert "has no CRS" in line and str(bare) in line and not out.exists()
    line = one_error_line(run("compare", bare, bare, "--bbox", "35.9,35.3,36.0,35.5", "-o", tmp_path / "c"))
    assert "has no CRS" in line and not (tmp_path / "c").exists()


def test_library_bbox_rules_lon_lat_by_default_explicit_crs_is_the_transform_frame_without_crs(scene, bare):
    with rasterio.open(bare / "B02.tif") as ds:
        x0, y1 = ds.transform * (10, 10)
        x1, y0 = ds.transform * (40, 30)
    # explicit bbox_crs on a scene without CRS: the coordinates of its transform (as documented)
    s = imgdiff.read_scene(bare, bands=["B02"], bbox=(x0, y0, x1, y1), bbox_crs="EPSG:32636")
    assert s.shape == (20, 30) and s.crs is None
    with pytest.raises(GridError, match="has no CRS"):
        imgdiff.read_scene(bare, bbox=(35.85, 34.9, 35.86, 34.91))
    # map units without bbox_crs on a placed scene: a clear error, not a NaN window
    with pytest.raises(GridError, match="not lon/lat"):
        imgdiff.read_scene(scene, bbox=(x0, y0, x1, y1))
    assert imgdiff.read_scene(scene, bands=["B02"], bbox=(x0, y0, x1, y1), bbox_crs="EPSG:32636").shape == (20, 30)


# --------------------------------------------------------------------------- IR-MAD, fallback
def test_irmad_on_a_few_pixels_is_a_one_line_error_naming_the_way_out(scene, tmp_path):
    with rasterio.open(scene / "B02.tif") as ds:
        w, s, e, n = transform_bounds(ds.crs, "EPSG:4326", *(ds.transform * (60, 63)), *(ds.transform * (63, 60)))
    out = tmp_path / "t"
    line = one_error_line(run("compare", scene, scene, "--bbox", f"{w},{s},{e},{n}", "--bands", "B02,B03,B04",
                              "--no-coregister", "-o", out))
    assert "IR-MAD" in line and "valid pixels" in line and "--method cva-otsu" in line
    assert not out.exists() or not any(out.iterdir())
    rng = np.random.default_rng(0)
    x = rng.random((3, 4, 5)).astype(np.float32)
    with pytest.raises(EmptySceneError, match="at least 30 valid pixels"):
        change_map(x, x * 1.1, np.ones((4, 5), bool), method="irmad")


def test_compare_says_on_stderr_when_mlp_falls_back_to_irmad(scene, tmp_path):
    out = tmp_path / "c"
    r = run("compare", scene, scene, "--bands", "B02,B03,B04", "--no-coregister", "-o", out, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["change"]["method"] == "irmad"
    assert any(ln.startswith("warning:") and "used irmad" in ln for ln in r.stderr.splitlines())
    r = run("compare", scene, scene, "--no-coregister", "-o", tmp_path / "c2")  # B08 present: mlp, no warning
    assert r.exit_code == 0 and "used irmad" not in r.stderr


# --------------------------------------------------------------------------- compare: failed co-registration
def test_compare_prints_a_failed_coregistration_as_a_warning_and_report_md_says_so(tmp_path):
    before = sample_scene(tmp_path / "before", bands=("B02", "B03", "B04", "B08"))
    after = sample_scene(tmp_path / "after", "2024-12-13", shift_rows=19, bands=("B02", "B03", "B04", "B08"))
    out = tmp_path / "c"
    r = run("compare", before, after, "-o", out)
    assert r.exit_code == 0, r.output
    warn = [ln for ln in r.stderr.splitlines() if ln.startswith("warning: co-registration: failed")]
    assert len(warn) == 1, r.stderr
    assert "no shift removed (co-registration failed)" in r.stdout
    md = (out / "report.md").read_text()
    assert "(none)" not in md and "co-registration failed" in md and "**Warning:** failed" in md
    assert json.loads((out / "report.json").read_text())["coregistration"]["notes"][0].startswith("failed")


# --------------------------------------------------------------------------- detect --zones
def _zones_file(path: Path, boxes: dict, crs) -> Path:
    feats = [{"type": "Feature", "properties": {"name": n}, "geometry": transform_geom(crs, "EPSG:4326", mapping(g))}
             for n, g in boxes.items()]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return path


def test_detect_zones_all_outside_the_scene_is_an_error_and_some_outside_a_warning(scene, tmp_path):
    with rasterio.open(scene / "B02.tif") as ds:
        crs, (west, b, east, t) = ds.crs, ds.bounds
    far = {"far_a": shp_box(west + 50_000, b, east + 50_000, t), "far_b": shp_box(west - 50_000, b, east - 50_000, t)}
    out = tmp_path / "d.geojson"
    zones = _zones_file(tmp_path / "far.geojson", far, crs)
    line = one_error_line(run("detect", scene, "--zones", zones, "-o", out, "--json"))
    assert str(zones) in line and "far_a" in line and "far_b" in line and "overlaps the scene" in line
    assert not out.exists()
    zones = _zones_file(tmp_path / "some.geojson", {"inside": shp_box(west, b, east, t), "far_a": far["far_a"]}, crs)
    r = run("detect", scene, "--zones", zones, "-o", out, "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)  # the warning is on stderr only
    assert s["by_zone"]["far_a"] == 0 and set(s["by_zone"]) == {"inside", "far_a"}
    warn = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warn) == 1 and "far_a" in warn[0] and "inside" not in warn[0]


def test_detect_json_without_zones_counts_the_whole_scene(scene, tmp_path):
    r = run("detect", scene, "-o", tmp_path / "d.geojson", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["by_zone"] == {"scene": s["count"]}


def test_detect_names_aircraft_in_the_singular_and_plural_alike():
    assert object_noun("aircraft", 1) == object_noun("aircraft", 3) == "aircraft"
    assert object_noun("vessels", 1) == "vessel" and object_noun("vessels", 0) == "vessels"


# --------------------------------------------------------------------------- --bands on band folders
def test_coregister_bands_are_honoured_on_band_folders(tmp_path):
    ref = sample_scene(tmp_path / "ref")
    tgt = sample_scene(tmp_path / "tgt", "2024-12-13")
    r = run("coregister", ref, tgt, "--bands", "B11", "--json")
    assert r.exit_code == 0, r.output
    assert "(B11)" in json.loads(r.stdout)["method"]
    r = run("coregister", ref, tgt, "--bands", "B04,B03", "--json")
    assert r.exit_code == 0 and "(B04, B03)" in json.loads(r.stdout)["method"]
    out = tmp_path / "w.tif"
    line = one_error_line(run("coregister", ref, tgt, "--bands", "B05", "-o", out))
    assert str(ref) in line and "B05 not found" in line and "has B02, B03, B04, B08, B11" in line
    assert not out.exists()


def test_info_bands_are_honoured_on_band_folders(scene):
    r = run("info", scene, "--bands", "B04", "--json")
    assert r.exit_code == 0, r.output
    assert [b["name"] for b in json.loads(r.stdout)["bands"]] == ["B04"]
    line = one_error_line(run("info", scene, "--bands", "B05"))
    assert str(scene) in line and "B05 not found" in line and "has B02, B03, B04, B08, B11" in line


def test_read_scene_bands_on_folders_unchanged(scene):
    assert list(imgdiff.read_scene(scene, bands=["B08", "B02"]).bands) == ["B08", "B02"]
    with pytest.raises(ImgdiffError, match="B05 not found"):
        imgdiff.read_scene(scene, bands=["B05"])


# --------------------------------------------------------------------------- small ones
def test_a_band_whose_extent_misses_the_others_is_named(tmp_path):
    d = sample_scene(tmp_path / "s", bands=("B02", "B03", "B04", "B08"), far_band="B08")
    out = tmp_path / "d.geojson"
    line = one_error_line(run("detect", d, "-o", out))
    assert "band(s) B08" in line and str(d / "B08.tif") in line and not out.exists()


def test_coregister_no_overlap_message_suggests_no_option_it_lacks(tmp_path):
    ref = sample_scene(tmp_path / "ref", bands=("B02", "B03", "B04", "B08"))
    far = sample_scene(tmp_path / "far", bands=("B02", "B03", "B04", "B08"), shift_rows=100_000)
    line = one_error_line(run("coregister", ref, far))
    assert "use --bbox" not in line and "same place" in line


def test_compare_refuses_site_and_zones_together(scene, tmp_path):
    zones = _zones_file(tmp_path / "z.geojson", {"z": shp_box(0, 0, 1, 1)}, "EPSG:4326")
    out = tmp_path / "c"
    line = one_error_line(run("compare", scene, scene, "--site", "tartus", "--zones", zones, "-o", out))
    assert "--site" in line and "--zones" in line and not out.exists()


def test_eval_vessels_names_the_file_and_entry_of_a_malformed_box(tmp_path):
    d = sample_scene(tmp_path / "data" / "port", bands=("B02", "B03", "B04", "B08"))
    (d / "vessels.json").write_text(json.dumps({"vessels": [{"bbox_px": [1, 2, 5, 6]}, {"bbox_px": [1, 2, 3]}]}))
    line = one_error_line(run("eval", "vessels", "--data", tmp_path / "data"))
    assert str(d / "vessels.json") in line and "vessels[1]" in line and "[1, 2, 3]" in line
