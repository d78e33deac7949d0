"""imgdiff watch: every manifest setting is checked up front (one line, exit 2, nothing written);
catalogue sites bring their zones; dask's INFO chatter stays off the terminal."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner
from imgdiff_cli.main import cli

from imgdiff.errors import InputError
from imgdiff.scene import Scene
from imgdiff.sites import get_site
from imgdiff.watch import WHOLE_SCENE, read_manifest, run_watch

from .test_watch import DETECTOR, bright_objects, make_scene

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "scenes" / "tartus"
SCENES = "scenes:\n  - {date: 2024-01-01, path: d1}\n  - {date: 2024-01-06, path: d2}\n"


def _manifest(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _watch(manifest: Path, out: Path, *extra: str) -> object:
    return CliRunner().invoke(cli, ["watch", str(manifest), "-o", str(out), "--scheduler", "synchronous", *extra])


# (manifest text, what the one error line must contain besides the manifest's name)
BAD = {
    "cloud word": ("scenes:\n  - {date: 2024-01-01, path: d1, cloud_fraction: low}\n",
                   ["scene 1 (2024-01-01)", "cloud_fraction 'low'", "0-1"]),
    "cloud percent": ("scenes:\n  - {date: 2024-01-01, path: d1}\n  - {date: 2024-01-06, path: d2, cloud_fraction: 35}\n",
                      ["scene 2 (2024-01-06)", "cloud_fraction 35", "0-1"]),
    "bbox three numbers": ("bbox: [35.83, 34.89, 35.88]\n" + SCENES, ["bbox", "four numbers"]),
    "bbox string of three": ('bbox: "35.83,34.89,35.88"\n' + SCENES, ["bbox", "four numbers"]),
    "bbox words": ("bbox: [west, 34.89, 35.88, 34.92]\n" + SCENES, ["bbox", "four numbers"]),
    "bbox latitude 95": ("bbox: [35.83, 34.89, 35.88, 95]\n" + SCENES, ["bbox", "latitude -90..90"]),
    "bbox longitude -200": ("bbox: [-200, 34.89, 35.88, 34.92]\n" + SCENES, ["bbox", "longitude -180..180"]),
    "bbox west > east": ("bbox: [35.88, 34.89, 35.83, 34.92]\n" + SCENES, ["bbox", "west < east"]),
    "not a band": ("bands: [B2, B3, B4, B88]\n" + SCENES, ["bands", "'B88' is not a Sentinel-2 band"]),
    "unknown detector": ("detector: vessel\n" + SCENES, ["detector", "unknown detector 'vessel'"]),
    "misspelt key": ("zone: zones.geojson\n" + SCENES, ["unknown key 'zone'", "did you mean 'zones'"]),
    "misspelt scene key": ("scenes:\n  - {date: 2024-01-01, path: d1, cloud: 0.2}\n",
                           ["scene 1 (2024-01-01)", "unknown key 'cloud'"]),
    "zones file missing": ("zones: nozones.geojson\n" + SCENES, ["nozones.geojson", "no such zones file"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_manifest_setting_is_one_line_naming_file_entry_and_problem_exit_2_nothing_written(tmp_path, case):
    text, expected = BAD[case]
    m = _manifest(tmp_path, text)
    out = tmp_path / "out"
    r = _watch(m, out)
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"imgdiff: error: {m}:"), r.stderr
    for piece in expected:
        assert piece in lines[0]
    assert "Traceback" not in r.output and r.stdout == ""
    assert not out.exists()
    with pytest.raises(InputError):
        read_manifest(m)


def test_bad_csv_cloud_fraction_and_unknown_column_are_refused(tmp_path):
    with pytest.raises(InputError, match=r"m\.csv: scene 2 \(2024-01-06\): cloud_fraction '1\.5' is not a number in 0-1"):
        read_manifest(_manifest(tmp_path, "date,path,cloud_fraction\n2024-01-01,a,0.1\n2024-01-06,b,1.5\n", "m.csv"))
    with pytest.raises(InputError, match=r"unknown key 'cloud'.*did you mean 'cloud_fraction'"):
        read_manifest(_manifest(tmp_path, "date,path,cloud\n2024-01-01,a,0.1\n", "m.csv"))


def test_bbox_string_band_spellings_and_numeric_strings_are_normalised(tmp_path):
    m = read_manifest(_manifest(tmp_path, 'bbox: "35.83, 34.89, 35.88, 34.92"\nbands: [B2, b3, red, nir]\n'
                                          "scenes:\n  - {date: 2024-01-01, path: d1, cloud_fraction: '0.25'}\n"))
    assert m.bbox == (35.83, 34.89, 35.88, 34.92)
    assert m.bands == ("B02", "B03", "B04", "B08")
    # nir and B8 are one band: named twice, the names of a multi-band file's bands would shift by one
    with pytest.raises(InputError, match="B08 is named twice"):
        read_manifest(_manifest(tmp_path, "bands: [B2, b3, red, nir, B8]\n" + SCENES))
    assert m.scenes[0].cloud_fraction == 0.25
    assert read_manifest(_manifest(tmp_path, "bbox: [35.83, 34.89, 35.88, 34.92]\n" + SCENES)).bbox == m.bbox


def test_missing_scene_paths_are_not_a_manifest_error(tmp_path):
    m = read_manifest(_manifest(tmp_path, SCENES))  # neither d1 nor d2 exists
    assert [s.path for s in m.scenes] == [str(tmp_path / "d1"), str(tmp_path / "d2")]


def test_site_from_the_catalogue_without_zones_counts_in_the_site_zones(tmp_path):
    text = (f"site: Tartus\ndetector: {DETECTOR}\nscenes:\n  - {{date: 2024-12-03, path: {SAMPLES / '2024-12-03'}}}\n"
            f"  - {{date: 2024-12-13, path: {SAMPLES / '2024-12-13'}}}\n")
    m = read_manifest(_manifest(tmp_path, text))
    assert m.site == "Tartus" and m.zones == "tartus"
    res = run_watch(m, tmp_path / "out", scheduler="synchronous")
    assert [r["status"] for r in res.results] == ["ok", "ok"]
    for r in res.results:  # each zone of the site measured on each date (pixels, not-assessed fraction)
        assert set(r["zones"]) == set(get_site("tartus").zones.names)
        assert all(z["pixels"] > 0 for z in r["zones"].values())
    # the same as with the site's zones written out as a GeoJSON file
    (tmp_path / "tartus.geojson").write_text(json.dumps(get_site("tartus").to_geojson()))
    m2 = read_manifest(_manifest(tmp_path, text.replace("site: Tartus\n", "site: Tartus\nzones: tartus.geojson\n"),
                                 "m2.yaml"))
    res2 = run_watch(m2, tmp_path / "out2", scheduler="synchronous")
    assert [(r["zones"], r["detections"]) for r in res2.results] == [(r["zones"], r["detections"])
                                                                     for r in res.results]


def test_site_name_outside_the_catalogue_is_only_a_label(tmp_path):
    make_scene(tmp_path / "d1", [(20, 30)])
    make_scene(tmp_path / "d2", [(20, 30), (70, 60)])
    m = read_manifest(_manifest(tmp_path, f"site: testport\ndetector: {DETECTOR}\n{SCENES}"))
    assert m.site == "testport" and m.zones is None
    res = run_watch(m, tmp_path / "out", scheduler="synchronous")
    assert {(r["date"], r["zone"], r["count"]) for r in res.rows} == {("2024-01-01", WHOLE_SCENE, 1),
                                                                     ("2024-01-06", WHOLE_SCENE, 2)}


def test_bbox_off_the_reference_scene_is_one_line_and_nothing_written(tmp_path):
    make_scene(tmp_path / "d1", [(20, 30)])
    m = _manifest(tmp_path, f"detector: {DETECTOR}\nbbox: [10, 10, 10.1, 10.1]\n{SCENES}")
    r = _watch(m, tmp_path / "out")
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "reference scene" in r.stderr and "does not intersect" in r.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_detector_on_the_command_line_writes_nothing(tmp_path):
    make_scene(tmp_path / "d1", [(20, 30)])
    r = _watch(_manifest(tmp_path, SCENES), tmp_path / "out", "--detector", "vessel")
    assert r.exit_code == 2 and "unknown detector 'vessel'" in r.stderr
    assert not (tmp_path / "out").exists()


def test_a_run_where_every_scene_fails_exits_2_with_one_line(tmp_path):
    """lon/lat zones cannot be placed on scenes without CRS: every scene fails, so the run is an error."""
    from rasterio.warp import transform_geom

    from .test_watch import zones_file

    make_scene(tmp_path / "d1", [(20, 30)], crs=None)
    make_scene(tmp_path / "d2", [(20, 30)], crs=None)
    fc = json.loads(zones_file(tmp_path / "utm.geojson").read_text())
    del fc["crs"]
    for f in fc["features"]:
        f["geometry"] = transform_geom("EPSG:32636", "EPSG:4326", f["geometry"])
    (tmp_path / "lonlat.geojson").write_text(json.dumps(fc))
    m = _manifest(tmp_path, f"zones: lonlat.geojson\ndetector: {DETECTOR}\n{SCENES}")
    r = _watch(m, tmp_path / "out", "--json")
    assert r.exit_code == 2
    assert json.loads(r.stdout)["scenes_ok"] == 0  # the table with each scene's error is still written
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no scene could be processed (2 failed" in lines[0] and "has no CRS" in lines[0]
    assert "Traceback" not in r.stderr


def warning_detector(scene: Scene, zones=None) -> object:
    """The test detector, also logging one dask-side warning (it must still reach the terminal)."""
    logging.getLogger("distributed.worker").warning("test: a dask warning")
    return bright_objects(scene, zones)


@pytest.mark.parametrize("as_json", [False, True])
def test_local_cluster_run_prints_no_dask_info_lines_but_keeps_warnings(tmp_path, as_json):
    make_scene(tmp_path / "d1", [(20, 30)])
    make_scene(tmp_path / "d2", [(20, 30), (70, 60)])
    m = _manifest(tmp_path, f"detector: tests.test_watch_manifest:warning_detector\n{SCENES}")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers = []  # as in a fresh `imgdiff` process: the CLI's own handler on stderr
    try:
        r = CliRunner().invoke(cli, ["watch", str(m), "-o", str(tmp_path / "out"), "--threads", "--workers", "1",
                                     *(["--json"] if as_json else [])])
    finally:
        root.handlers, root.level = saved[0], saved[1]
    assert r.exit_code == 0, r.output
    err = r.stderr.splitlines()
    assert not [ln for ln in err if "INFO" in ln or "Traceback" in ln], r.stderr
    assert err.count("imgdiff: WARNING: test: a dask warning") == 2  # one per scene
    if as_json:
        assert json.loads(r.stdout)["engine"]["scheduler"] == "LocalCluster"


def test_keys_of_the_writers_own_are_logged_as_unused_not_refused(tmp_path, caplog):
    m = _manifest(tmp_path, "notes: weekly pass\nscenes:\n  - {date: 2024-01-01, path: d1, analyst: kb}\n")
    with caplog.at_level("WARNING", logger="imgdiff.watch"):
        man = read_manifest(m)
    assert len(man.scenes) == 1
    assert "key(s) not used by imgdiff: notes" in caplog.text and "analyst" in caplog.text


def test_misspellings_are_near_or_truncated_known_keys_that_are_missing():
    from imgdiff.keys import misspelt

    assert misspelt("min_lenght_m", ("zone", "min_length_m")) == "min_length_m"
    assert misspelt("cloud", ("date", "path", "cloud_fraction")) == "cloud_fraction"
    assert misspelt("Zone", ("zones", "site")) == "zones"
    assert misspelt("zone", ("zones", "site"), present=("zones",)) is None
    assert misspelt("notes", ("zones", "site")) is None and misspelt("expected", ("id", "assert")) is None


def test_a_manifest_key_given_twice_is_refused_naming_it(tmp_path):
    with pytest.raises(InputError, match=r"key 'bbox' is given twice \(line 2"):
        read_manifest(_manifest(tmp_path, "bbox: [35.83, 34.89, 35.88, 34.92]\nbbox: [0, 0, 1, 1]\n" + SCENES))


def test_yaml_anchors_and_merge_keys_still_read(tmp_path):
    m = read_manifest(_manifest(tmp_path, "defaults: &d {cloud_fraction: 0.1}\nscenes:\n"
                                          "  - {<<: *d, date: 2024-01-01, path: d1}\n  - {<<: *d, date: 2024-01-06, path: d2}\n"))
    assert [s.cloud_fraction for s in m.scenes] == [0.1, 0.1]

