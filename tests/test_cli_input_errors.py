"""Bad input to the commands: one line naming the file or option and the problem, exit 2, nothing written.

Also the warnings the commands owe the user (a failed co-registration, a change-method fallback,
zones outside the scene, dates in the wrong order), and strict JSON (no NaN/Infinity) in --json and
report.json. Scenes are small windows of the repository's Tartus samples, written
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
from imgdiff.errors import EmptySceneError, GridError, ImgdiffError, OutputError
from imgdiff.io.write import atomic_path, write_outputs
from imgdiff.watch import read_manifest
from imgdiff.zones import read_zones

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
    with pytest.raises(GridError, match="not map units") as e:
        imgdiff.read_scene(scene, bbox=(x0, y0, x1, y1))
    assert str(e.value).startswith(f"{scene}: bbox ") and "bbox_crs" in str(e.value)
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
    assert "target scene has no pixels" in line and "after scene" not in line


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


# --------------------------------------------------------------------------- zones files (session 11 audit)
def _ring(folder: Path, frac: float = 0.25, dx_deg: float = 0.0) -> list:
    """A lon/lat square ring inside the scene at ``folder`` (``dx_deg`` moves it east)."""
    with rasterio.open(min(folder.glob("B*.tif"))) as ds:
        w, s, e, n = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    x0, x1, y0, y1 = w + (e - w) * frac + dx_deg, e - (e - w) * frac + dx_deg, s + (n - s) * frac, n - (n - s) * frac
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def _feature(name: str, ring: list) -> dict:
    return {"type": "Feature", "properties": {"name": name}, "geometry": {"type": "Polygon", "coordinates": [ring]}}


def _write_fc(path: Path, *features: dict, **extra) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": list(features), **extra}))
    return path


def test_a_self_intersecting_zone_is_repaired_and_a_zone_without_area_is_refused(scene, tmp_path):
    (a, b, c, d, _) = _ring(scene)
    zones = _write_fc(tmp_path / "bow.geojson", _feature("bow", [a, c, b, d, a]))  # a bow tie: edges cross
    z = read_zones(zones)
    assert z.geometries["bow"].is_valid and z.geometries["bow"].geom_type == "MultiPolygon"  # its two triangles
    out = tmp_path / "d.geojson"
    res = run("detect", scene, "--zones", zones, "-o", out, "--json")
    assert res.exit_code == 0 and out.exists()
    flat = _write_fc(tmp_path / "flat.geojson", _feature("flat", [a, c, a, c]))  # no area
    line = one_error_line(run("compare", scene, scene, "--zones", flat, "-o", tmp_path / "c"))
    assert str(flat) in line and "'flat'" in line and "not a valid polygon" in line and not (tmp_path / "c").exists()


@pytest.mark.parametrize("doc, problem", [
    ({"type": "FeatureCollection", "features": "abc"}, "'features' is not a list"),
    ({"type": "FeatureCollection", "features": [1, 2]}, "feature 1 is not a GeoJSON Feature"),
    ({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": [1],
                                                 "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}}]},
     "'properties' is not an object"),
    ({"type": "FeatureCollection", "crs": "EPSG:4326",
      "features": [_feature("z", [[0, 0], [1, 0], [1, 1], [0, 0]])]}, "does not name a CRS"),
    ({"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "urn:nonsense"}},
      "features": [_feature("z", [[0, 0], [1, 0], [1, 1], [0, 0]])]}, "unknown CRS 'urn:nonsense'"),
    ({"type": "FeatureCollection", "features": [_feature("z", [[float("nan"), 0], [1, 0], [1, 1], [0, float("nan")]])]},
     "feature 'z' has no valid geometry"),
], ids=["features-str", "feature-int", "properties-list", "crs-str", "crs-unknown", "nan-coords"])
def test_malformed_zones_files_raise_an_input_error_naming_the_file(tmp_path, doc, problem):
    path = tmp_path / "zones.geojson"
    path.write_text(json.dumps(doc))
    with pytest.raises(ImgdiffError) as e:
        read_zones(path)
    assert str(path) in str(e.value) and problem in str(e.value) and "\n" not in str(e.value)


def test_zones_outside_the_scene_warn_in_verify_and_compare_and_the_report_is_written(scene, tmp_path):
    far = _write_fc(tmp_path / "far.geojson", _feature("far", _ring(scene, dx_deg=0.5)))
    claims = tmp_path / "c.yaml"
    claims.write_text(f"before: {scene}\nafter: {scene}\nzones: {far}\nclaims:\n"
                      "  - {id: a, object: vessels, zone: far, assert: present_after}\n")
    r = run("verify", claims, "-o", tmp_path / "v", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["claims"][0]["verdict"] == "INCONCLUSIVE"
    assert "zone far lies wholly outside" in r.stderr and (tmp_path / "v" / "report.html").is_file()
    r = run("compare", scene, scene, "--zones", far, "-o", tmp_path / "c", "--json", "--no-coregister")
    assert r.exit_code == 0, r.output
    warn = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
    assert any(str(far) in ln and "zone far lies wholly outside" in ln for ln in warn), r.stderr
    # strict JSON on stdout and in report.json: the aircraft recall bin "70 m and up" ends in null, not Infinity
    for text in (r.stdout, (tmp_path / "c" / "report.json").read_text()):
        rep = strict_json(text)
        assert rep["detectors"]["aircraft"]["recall_by_length"][-1][1] is None


def strict_json(text: str):
    """``json.loads`` refusing NaN and Infinity, which JSON does not have (jq, JavaScript refuse them)."""
    def refuse(word):
        raise ValueError(f"{word} is not JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # IR-MAD on a flat image
def test_json_of_a_comparison_without_a_threshold_is_strict_json(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for b in ("B02", "B03", "B04", "B08"):  # one value everywhere: no change threshold can be found
        write_band(flat / f"{b}.tif", np.full((48, 48), 700, np.uint16))
    r = run("compare", flat, flat, "-o", tmp_path / "c", "--json", "--no-coregister", "--method", "irmad")
    assert r.exit_code == 0, r.output
    for text in (r.stdout, (tmp_path / "c" / "report.json").read_text()):
        assert strict_json(text)["change"]["threshold"] is None


def test_watch_with_every_zone_outside_the_reference_is_an_error_and_some_outside_a_warning(scene, tmp_path):
    inside, far = _feature("basin", _ring(scene)), _feature("far", _ring(scene, dx_deg=0.5))
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"date,path\n2024-12-03,{scene}\n")
    out = tmp_path / "w"
    line = one_error_line(run("watch", manifest, "--zones", _write_fc(tmp_path / "far.geojson", far), "-o", out,
                              "--scheduler", "synchronous"))
    assert "far.geojson" in line and "none of its zones (far) overlaps" in line and not out.exists()
    r = run("watch", manifest, "--zones", _write_fc(tmp_path / "some.geojson", inside, far), "-o", out,
            "--scheduler", "synchronous", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["scenes_ok"] == 1
    warn = [ln for ln in r.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warn) == 1 and "far" in warn[0] and "basin" not in warn[0]


# --------------------------------------------------------------------------- claims files (session 11 audit)
_CLAIM = "claims:\n  - {id: a, object: vessels, zone: basin, assert: present_after%s}\n"


@pytest.mark.parametrize("head, extra, problem", [
    ("before: {s}\nafter: {s}\nsite: nowhere\n", "", "site 'nowhere' is not a known site (tartus, hmeimim)"),
    ("before: {s}\nafter: {s}\nzones: [a]\n", "", "zones ['a'] is not a path"),
    ("before:\nafter: {s}\nzones: {z}\n", "", "before None is not a path"),
    ("before: {s}\nafter: {s}\nzones: {z}\n", ", min_length_m: .inf", "min_length_m must be a finite number"),
    ("before: {s}\nafter: {s}\nzones: {z}\n", ", assert: present_before", "key 'assert' is given twice (line 5"),
    ("before: {s}\nafter: {s}\nafter: {s}\nzones: {z}\n", "", "key 'after' is given twice (line 3"),
], ids=["unknown-site", "zones-list", "before-empty", "infinite-length", "assert-twice", "after-twice"])
def test_claims_file_problems_are_one_line_naming_the_claims_file(scene, tmp_path, head, extra, problem):
    zones = _write_fc(tmp_path / "z.geojson", _feature("basin", _ring(scene)))
    claims = tmp_path / "c.yaml"
    claims.write_text(head.format(s=scene, z=zones) + _CLAIM % extra)
    line = one_error_line(run("verify", claims, "-o", tmp_path / "v"))
    assert str(claims) in line and problem in line and not (tmp_path / "v").exists()


def test_a_claims_file_that_is_not_utf8_text_is_refused_in_one_line(tmp_path):
    claims = tmp_path / "c.yaml"
    claims.write_bytes(b"\xff\xfeb\x00e\x00")  # UTF-16 saved by a Windows editor
    line = one_error_line(run("verify", claims, "-o", tmp_path / "v", "--json"))
    assert str(claims) in line and "not a text file in UTF-8" in line


# --------------------------------------------------------------------------- outputs (session 11 audit)
def test_outputs_in_a_folder_that_cannot_be_written_are_one_line_errors_and_fail_before_the_work(scene, tmp_path):
    a_file = tmp_path / "plain.txt"
    a_file.write_text("x")
    line = one_error_line(run("coregister", scene, scene, "-o", tmp_path / "nodir" / "w.tif"))
    assert str(tmp_path / "nodir") in line and "does not exist" in line
    line = one_error_line(run("samples", "--regenerate", "-o", a_file / "s"))
    assert str(a_file / "s") in line and "cannot create" in line
    with pytest.raises(OutputError, match="folder .*nodir does not exist"):
        with atomic_path(tmp_path / "nodir" / "x.json"):
            pass
    with pytest.raises(OutputError, match=r"cannot write in .*plain.txt \(Not a directory\)"):
        write_outputs(a_file, {"r.json": lambda p: p.write_text("{}")})


# --------------------------------------------------------------------------- scenes and manifests (session 11 audit)
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_a_band_without_georeferencing_among_placed_bands_is_the_one_named(tmp_path):
    d = sample_scene(tmp_path / "s", bands=("B02", "B03", "B04", "B08"))
    with rasterio.open(d / "B02.tif") as ds:
        data = ds.read(1)
    (d / "B02.tif").unlink()
    with rasterio.open(d / "B02.tif", "w", driver="PNG", width=data.shape[1], height=data.shape[0], count=1,
                       dtype="uint16") as ds:  # a PNG renamed .tif
        ds.write(data, 1)
    line = one_error_line(run("detect", d, "-o", tmp_path / "d.geojson"))
    assert line.startswith(f"imgdiff: error: {d / 'B02.tif'}: band B02 has no CRS but B03")
    assert "None" not in line and not (tmp_path / "d.geojson").exists()


def test_a_csv_manifest_saved_by_a_spreadsheet_is_read(scene, tmp_path):
    m = tmp_path / "m.csv"
    m.write_bytes(b"\xef\xbb\xbfDate, Path\r\n2024-12-13, " + str(scene).encode() + b"\r\n2024-12-03," +
                  str(scene).encode() + b"\r\n")  # "CSV UTF-8": byte-order mark, CRLF, spaces, capitals
    man = read_manifest(m)
    assert [s.id for s in man.scenes] == ["2024-12-03", "2024-12-13"]
    assert all(Path(s.path) == scene for s in man.scenes)


def test_a_scene_lacking_the_detectors_bands_is_named_in_detect_verify_and_eval(tmp_path):
    only = sample_scene(tmp_path / "only_b11", bands=("B11",))
    out = tmp_path / "d.geojson"
    for objects in ("vessels", "aircraft"):
        line = one_error_line(run("detect", only, "--objects", objects, "-o", out))
        assert f"error: {only}: " in line and "detection needs" in line and not out.exists()
    zones = _write_fc(tmp_path / "z.geojson", _feature("basin", _ring(only)))
    claims = tmp_path / "c.yaml"
    claims.write_text(f"before: {only}\nafter: {only}\nzones: {zones}\n" + _CLAIM % "")
    line = one_error_line(run("verify", claims, "-o", tmp_path / "v"))
    assert f"error: {claims}: vessel detection needs" in line
    chip = sample_scene(tmp_path / "chips" / "c1", bands=("B02",))
    (chip / "aircraft.json").write_text('{"aircraft": []}')
    line = one_error_line(run("eval", "aircraft", "--data", tmp_path / "chips"))
    assert f"error: {chip}: aircraft detection needs bands B02, B03, B04" in line


def test_compare_warns_when_before_was_acquired_after_after(scene, tmp_path):
    earlier = sample_scene(tmp_path / "2024-11-20", "2024-12-13")  # the folder name is its date
    r = run("compare", scene, earlier, "-o", tmp_path / "c", "--json", "--no-coregister")
    assert r.exit_code == 0, r.output
    json.loads(r.stdout)
    assert "warning: the before scene (2024-12-03) was acquired after the after scene (2024-11-20)" in r.stderr
    r = run("compare", earlier, scene, "-o", tmp_path / "c2", "--json", "--no-coregister")
    assert r.exit_code == 0 and "acquired after" not in r.stderr


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.parametrize("odd, shape, res", [("B03", (50, 70), 10), ("B11", (64, 64), 20)], ids=["B03-50x70", "B11-at-10m"])
def test_bands_without_georeferencing_that_cannot_line_up_are_refused_naming_the_band(tmp_path, odd, shape, res):
    rng = np.random.default_rng(0)
    d = tmp_path / "s"
    d.mkdir()
    for b in ("B02", "B03", "B04", "B08", "B11"):
        if b == "B11" and odd != "B11":
            continue
        shp = shape if b == odd else (64, 64)
        with rasterio.open(d / f"{b}.tif", "w", driver="GTiff", width=shp[1], height=shp[0], count=1,
                           dtype="uint16") as ds:  # no CRS, no transform: a local frame at the band's native size
            ds.write((rng.random(shp) * 1000 + 100).astype("uint16"), 1)
    out = tmp_path / "d.geojson"
    line = one_error_line(run("detect", d, "-o", out))
    assert f"{d / (odd + '.tif')}: band {odd} has no georeferencing" in line
    assert f"{shape[0]} x {shape[1]} px at {res} m do not cover the extent of B02" in line and not out.exists()
    assert one_error_line(run("info", d)) == line  # info refuses what reading refuses


def test_an_unreadable_band_says_what_gdal_found_not_see_previous_exception(scene, tmp_path):
    d = tmp_path / "s"
    d.mkdir()
    for b in ("B03", "B04", "B08"):
        (d / f"{b}.tif").write_bytes((scene / f"{b}.tif").read_bytes())
    with rasterio.open(scene / "B02.tif") as ds:
        w, h, tr = ds.width, ds.height, ds.transform
    (d / "B02.vrt").write_text(  # a VRT whose source file is missing
        f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}"><SRS>EPSG:32636</SRS>'
        f"<GeoTransform>{tr.c}, {tr.a}, 0, {tr.f}, 0, {tr.e}</GeoTransform>"
        '<VRTRasterBand dataType="UInt16" band="1"><SimpleSource><SourceFilename relativeToVRT="1">gone.tif'
        "</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>")
    for args in (("info", d), ("detect", d, "-o", tmp_path / "d.geojson")):
        line = one_error_line(run(*args))
        assert str(d / "B02.vrt") in line and "gone.tif: No such file or directory" in line
        assert "previous exception" not in line


def test_coregister_failures_name_the_two_scenes(tmp_path):
    ref = sample_scene(tmp_path / "ref", size=8, bands=("B02", "B03", "B04", "B08"))
    tgt = sample_scene(tmp_path / "tgt", "2024-12-13", size=8, bands=("B02", "B03", "B04", "B08"))
    out = tmp_path / "w.tif"
    line = one_error_line(run("coregister", ref, tgt, "-o", out, "--json"))
    assert f"error: {ref} and {tgt}: the scenes are too small to co-register (8 x 8 px)" in line
    assert not out.exists()


def test_eval_change_with_an_unknown_city_and_eval_coreg_without_any_city_are_one_line_errors(tmp_path):
    city = tmp_path / "oscd" / "lyon"
    (city / "before").mkdir(parents=True)
    (city / "after").mkdir()
    (city / "change.tif").write_bytes(b"")
    line = one_error_line(run("eval", "change", "--data", tmp_path / "oscd", "--city", "atlantis"))
    assert str(tmp_path / "oscd") in line and "no labelled city atlantis" in line and "it has lyon" in line
    r = run("eval", "coreg", "--data", tmp_path, "--quick", "--json")  # was: exit 0 and NaN (not JSON) on stdout
    line = one_error_line(r)
    assert str(tmp_path / "oscd") in line and "no city with before/B08.tif and after/B08.tif" in line
    assert r.stdout == ""


def test_a_zipped_product_is_refused_saying_to_unzip_it(scene, tmp_path):
    import zipfile

    z = tmp_path / "S2B_MSIL2A_20241203.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.write(scene / "B02.tif", "B02.tif")
    line = one_error_line(run("info", z))
    assert str(z) in line and "not a readable raster" in line and "unzip it" in line


# --------------------------------------------------------------------------- session 28 audit
def test_a_folder_holding_two_dates_of_a_band_is_refused_naming_both_files(tmp_path):
    folder = tmp_path / "downloads"
    folder.mkdir()
    for date in ("2024-12-03", "2024-12-13"):
        day = date.replace("-", "")
        for b in ("B02", "B03", "B04", "B08"):
            (folder / f"T36SYD_{day}T083000_{b}.tif").write_bytes((SAMPLES / date / f"{b}.tif").read_bytes())
    line = one_error_line(run("info", folder))
    assert "band B02 is in 2 files" in line
    assert "T36SYD_20241203T083000_B02.tif" in line and "T36SYD_20241213T083000_B02.tif" in line


def test_info_refuses_bands_in_different_crs_as_reading_does(scene, tmp_path):
    mixed = sample_scene(tmp_path / "mixed", bands=("B02", "B03", "B04"))
    write_band(mixed / "B08.tif", np.full((20, 20), 3000, np.uint16), crs="EPSG:4326",
               transform=Affine(0.0001, 0, 35.8, 0, -0.0001, 34.9))
    assert "must share one CRS" in one_error_line(run("info", mixed))
    assert "must share one CRS" in one_error_line(run("detect", mixed, "--objects", "vessels", "-o", tmp_path / "d.geojson"))


def test_a_band_named_twice_is_refused_in_the_cli_the_library_and_claims_files(scene, tmp_path):
    r = run("compare", scene, scene, "-o", tmp_path / "c", "--bands", "B02,B2,B04,B08")
    assert r.exit_code == 2 and "B02 is named twice" in r.output and not (tmp_path / "c").exists()
    with pytest.raises(imgdiff.errors.BandError, match="B02 named twice"):
        imgdiff.read_scene(scene, bands=["B02", "blue"])
    r = run("info", scene, "--bands", "")
    assert r.exit_code == 2 and "not a Sentinel-2 band" in r.output
    claims = tmp_path / "c.yaml"
    claims.write_text(f"before: {scene}\nafter: {scene}\nsite: tartus\nbands: [B02, B03, B03]\nclaims:\n"
                      "  - {id: gone, object: vessels, zone: naval_piers, assert: absent_after}\n")
    assert "B03 is named twice" in one_error_line(run("verify", claims, "-o", tmp_path / "v"))


def test_a_full_disk_is_an_output_error_naming_the_output_and_leaves_nothing(tmp_path):
    def full(path):
        path.write_bytes(b"x")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match=r"r\.json: cannot write \(No space left on device\)"):
        write_outputs(tmp_path, {"a.json": lambda p: p.write_text("{}"), "r.json": full})
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    with pytest.raises(OutputError, match=r"w\.json: cannot write \(No space left on device\)"):
        with atomic_path(tmp_path / "w.json") as p:
            full(p)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_geotiff_cut_short_on_closing_is_not_moved_into_place(scene, tmp_path):
    from imgdiff.grid import Grid
    from imgdiff.io.write import check_written, write_geotiff

    g = Grid.of(imgdiff.read_scene(scene))
    whole = tmp_path / "whole.tif"
    write_geotiff(whole, [np.random.default_rng(0).random((g.height, g.width), np.float32)], g)
    check_written(whole)  # a whole file reads back

    def cut_short(path):  # GDAL does not raise when the disk fills on closing: the file ends early
        write_geotiff(path, [np.random.default_rng(0).random((g.height, g.width), np.float32)], g)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        check_written(path)

    with pytest.raises(OutputError, match=r"change\.tif: cannot write \(it reads back cut short"):
        write_outputs(tmp_path, {"change.tif": cut_short})
    assert not (tmp_path / "change.tif").exists()


def test_an_output_name_taken_by_a_folder_is_refused_before_anything_is_replaced(scene, tmp_path):
    out = tmp_path / "o"
    (out / "report.md").mkdir(parents=True)
    (out / "report.json").write_text("{}")
    line = one_error_line(run("compare", scene, scene, "-o", out, "--overwrite"))
    assert "report.md is a folder" in line
    assert (out / "report.json").read_text() == "{}"
    with pytest.raises(OutputError, match="is a folder"):
        write_outputs(out, {"report.json": lambda p: p.write_text("[]"), "report.md": lambda p: p.write_text("")})
    assert (out / "report.json").read_text() == "{}"


def test_verify_and_zone_compare_warn_of_a_band_one_date_lacks_and_of_one_scene_given_twice(tmp_path):
    before = sample_scene(tmp_path / "2024-12-03")
    after = sample_scene(tmp_path / "2024-12-13", "2024-12-13", bands=("B02", "B03", "B04", "B11"))
    claims = tmp_path / "c.yaml"
    claims.write_text(f"before: {before}\nafter: {after}\nsite: tartus\nclaims:\n"
                      "  - {id: gone, object: vessels, zone: naval_piers, assert: absent_after}\n")
    r = run("verify", claims, "-o", tmp_path / "v", "--json")
    assert r.exit_code == 0, r.output
    assert "the after scene has no B08" in r.stderr and "used irmad" in r.stderr
    json.loads(r.stdout)  # the warnings stay off stdout
    r = run("compare", before, before, "--site", "tartus", "-o", tmp_path / "z")
    assert r.exit_code == 0 and "before and after are the same scene" in r.stderr


def test_library_arguments_of_the_wrong_kind_are_argument_type_errors(scene):
    s = imgdiff.read_scene(scene)
    with pytest.raises(imgdiff.ArgumentTypeError, match="compare: bands"):
        imgdiff.compare(s, s, bands="B02")
    with pytest.raises(imgdiff.ArgumentTypeError, match="water_changes: after"):
        imgdiff.water_changes(s, str(scene))
    with pytest.raises(imgdiff.ArgumentTypeError, match="bbox must be four numbers"):
        imgdiff.read_scene(scene, bbox=(35.8, 34.9))
    with pytest.raises(GridError, match="west < east"):
        imgdiff.read_scene(scene, bbox=(35.9, 34.9, 35.8, 34.95))


def test_coregister_refuses_a_warped_output_not_named_tif(scene, tmp_path):
    line = one_error_line(run("coregister", scene, scene, "-o", tmp_path / "warped.png"))
    assert "warped.png" in line and "name it .tif" in line and not (tmp_path / "warped.png").exists()


def test_claims_paths_starting_with_a_tilde_are_read_from_the_home_folder(scene, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(scene.parent))
    cf = imgdiff.claims.parse_claims(
        {"before": f"~/{scene.name}", "after": f"~/{scene.name}", "site": "tartus",
         "claims": [{"id": "a", "object": "vessels", "zone": "naval_piers", "assert": "absent_after"}]},
        where="c.yaml", base=tmp_path)
    assert cf.before == scene and cf.after == scene


def test_a_pipe_in_a_claim_text_or_zone_name_does_not_split_report_md_rows():
    from imgdiff.report.verify import render_verify_markdown

    claim = {"id": "a|b", "text": "ships | boats gone", "verdict": "SUPPORTED", "confidence": 0.9,
             "counts": {"before": 2, "after": 0}, "objects": {"stayed": [], "departed": [1, 2], "arrived": []},
             "reasons": ["r", "x | y"], "caveats": []}
    zone = {"before": {"clear_fraction": 1.0}, "after": {"clear_fraction": 1.0}, "changed_fraction": 0.1,
            "counts": {"vessels": {"before": 2, "after": 0}}}
    report = {"dates": {"before": None, "after": None}, "claims_file": "c.yaml", "zones_source": "z",
              "inputs": {"before": {"source": "b"}, "after": {"source": "a"}},
              "coregistration": {"dx": 0.0, "dy": 0.0, "reliability": 1.0, "failed": False},
              "claims": [claim], "zones": {"pier|1": zone}, "detectors": {}}
    md = render_verify_markdown(report)
    rows = [ln for ln in md.splitlines() if ln.startswith("| **a") or ln.startswith("| pier")]
    assert len(rows) == 2
    for row in rows:  # as many unescaped cell separators as the header has
        header = 8 if row.startswith("| **a") else 6
        assert len([i for i, ch in enumerate(row) if ch == "|" and row[i - 1:i] != "\\"]) == header, row
