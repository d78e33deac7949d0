"""``--max-shift`` of ``compare``, ``verify`` and ``watch`` (as ``imgdiff coregister`` has it), and the
``max_shift`` of a claims file or a watch manifest: a pair shifted by about 7 px is compared unregistered under the default 5 px, with a
note naming the command's own ``--max-shift``, and registered to within 0.2 px under ``--max-shift 10``.

The pair is a 240 x 240 px window of the repository's Tartus samples (two dates), the after date's window
cut 7 rows up and 2 columns left of the before date's: a feature at before pixel (x, y) appears at after
pixel (x + 2, y + 7), plus the samples' own shift between the dates (``truth.json``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import rasterio
from click.testing import CliRunner
from imgdiff_cli.main import cli
from rasterio.warp import transform_geom
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from shapely.geometry import box, mapping

import imgdiff
from imgdiff.claims import ClaimsError, load_claims

from .conftest import write_band

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "scenes" / "tartus"
BANDS = ("B02", "B03", "B04", "B08", "B11")
SIZE, ORIGIN = 240, 60  # px: the window and its top-left (row = col) in the before date
MOVE = (2, 7)  # (dx, dy) px the after window is moved by


def _window(dst: Path, date: str, dx: int = 0, dy: int = 0) -> Path:
    """The window of ``date`` whose pixel (x, y) shows the sample's pixel (ORIGIN + x - dx, ORIGIN + y - dy),
    georeferenced as the before window (a band folder)."""
    dst.mkdir(parents=True, exist_ok=True)
    for b in BANDS:
        with rasterio.open(SAMPLES / date / f"{b}.tif") as ds:
            f = 10.0 / abs(ds.transform.a)  # 1 for 10 m bands, 0.5 for B11
            n = int(round(SIZE * f))
            placed = Window(int(ORIGIN * f), int(ORIGIN * f), n, n)
            cut = Window(int((ORIGIN - dx) * f), int((ORIGIN - dy) * f), n, n)
            write_band(dst / f"{b}.tif", ds.read(1, window=cut), crs=ds.crs, transform=window_transform(placed, ds.transform))
    return dst


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path, tuple[float, float]]:
    """(before, after, true shift (dx, dy) px of the after scene)."""
    root = tmp_path_factory.mktemp("shifted")
    own = json.loads((SAMPLES / "2024-12-13" / "truth.json").read_text())["shift_px"]
    return (_window(root / "before", "2024-12-03"), _window(root / "after", "2024-12-13", *MOVE),
            (MOVE[0] + own["dx"], MOVE[1] + own["dy"]))


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _claims(tmp_path: Path, pair, extra: str = "") -> Path:
    """A claims file on the pair: one zone over the middle of the window, one vessel claim."""
    before, after, _ = pair
    with rasterio.open(before / "B02.tif") as ds:
        w, s, e, n = ds.bounds
        crs = ds.crs
    zone = box(w + 800, s + 800, e - 800, n - 800)
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "port"}, "geometry": transform_geom(crs, "EPSG:4326", mapping(zone))}]}
    (tmp_path / "zones.geojson").write_text(json.dumps(fc))
    path = tmp_path / "claims.yaml"
    path.write_text(f"before: {before}\nafter: {after}\nzones: zones.geojson\n{extra}claims:\n"
                    "  - {id: c1, object: vessels, zone: port, assert: present_after}\n")
    return path


def _beyond_default(note: str) -> bool:
    """A note of a shift beyond the default 5 px that names the running command's own option."""
    return "beyond max_shift=5 px" in note and "--max-shift" in note and "imgdiff coregister" not in note


# --------------------------------------------------------------------------- compare
def test_compare_leaves_a_7_px_shift_unregistered_by_default_and_registers_it_with_max_shift_10(pair, tmp_path):
    before, after, truth = pair
    r = run("compare", before, after, "-o", tmp_path / "default", "--json")
    assert r.exit_code == 0, r.output
    reg = json.loads(r.stdout)["coregistration"]
    assert reg["method"] == "none" and reg["max_shift_px"] == 5.0
    assert len(reg["notes"]) == 1 and _beyond_default(reg["notes"][0])
    warn = [ln for ln in r.stderr.splitlines() if ln.startswith("warning: co-registration: failed")]
    assert len(warn) == 1 and _beyond_default(warn[0])
    r = run("compare", before, after, "-o", tmp_path / "ten", "--max-shift", "10", "--json")
    assert r.exit_code == 0, r.output
    reg = json.loads(r.stdout)["coregistration"]
    assert reg["method"] != "none" and reg["max_shift_px"] == 10.0 and not reg["notes"]
    assert (reg["dx"], reg["dy"]) == pytest.approx(truth, abs=0.2)
    assert "warning" not in r.stderr


def test_compare_in_windows_names_max_shift_and_registers_a_7_px_shift_with_max_shift_10(pair, tmp_path):
    before, after, truth = pair
    r = run("compare", before, after, "-o", tmp_path / "default", "--tile-size", "128")
    assert r.exit_code == 2 and _beyond_default(r.stderr)
    r = run("compare", before, after, "-o", tmp_path / "ten", "--tile-size", "128", "--max-shift", "10", "--json")
    assert r.exit_code == 0, r.output
    reg = json.loads(r.stdout)["coregistration"]
    assert reg["max_shift_px"] == 10.0 and (reg["dx"], reg["dy"]) == pytest.approx(truth, abs=0.2)


def test_the_library_compare_takes_max_shift_in_pixels(pair):
    before, after, truth = pair
    b, a = imgdiff.read_scene(before), imgdiff.read_scene(after)
    assert imgdiff.compare(b, a).registration.method == "none"
    reg = imgdiff.compare(b, a, max_shift=10).registration
    assert reg.max_shift_px == 10 and (reg.dx, reg.dy) == pytest.approx(truth, abs=0.2)


# --------------------------------------------------------------------------- verify
def test_verify_says_a_7_px_shift_failed_naming_max_shift_and_registers_it_with_max_shift_10(pair, tmp_path):
    _, _, truth = pair
    claims = _claims(tmp_path, pair)
    r = run("verify", claims, "-o", tmp_path / "default", "--json")
    assert r.exit_code == 0, r.output
    reg = json.loads(r.stdout)["coregistration"]
    assert reg["failed"] and reg["method"] == "none" and reg["max_shift_px"] == 5.0
    assert len(reg["notes"]) == 1 and _beyond_default(reg["notes"][0])
    warn = [ln for ln in r.stderr.splitlines() if "co-registration: failed" in ln]
    assert len(warn) == 1 and warn[0].startswith(f"warning: {claims}:") and _beyond_default(warn[0])
    r = run("verify", claims, "-o", tmp_path / "ten", "--max-shift", "10", "--json")
    assert r.exit_code == 0, r.output
    reg = json.loads(r.stdout)["coregistration"]
    assert not reg["failed"] and reg["max_shift_px"] == 10.0 and not reg["notes"]
    assert (reg["dx"], reg["dy"]) == pytest.approx(truth, abs=0.2)
    assert "co-registration" not in r.stderr


def test_a_claims_files_max_shift_is_used_and_the_command_line_overrides_it(pair, tmp_path):
    _, _, truth = pair
    (tmp_path / "plain").mkdir()
    assert load_claims(_claims(tmp_path / "plain", pair)).max_shift == 5.0
    claims = _claims(tmp_path, pair, "max_shift: 10\n")
    assert load_claims(claims).max_shift == 10.0
    r = run("verify", claims, "-o", tmp_path / "file", "--json")
    assert r.exit_code == 0, r.output
    reg = json.loads(r.stdout)["coregistration"]
    assert reg["max_shift_px"] == 10.0 and (reg["dx"], reg["dy"]) == pytest.approx(truth, abs=0.2)
    r = run("verify", claims, "-o", tmp_path / "option", "--max-shift", "5", "--json")
    assert r.exit_code == 0, r.output
    reg = json.loads(r.stdout)["coregistration"]
    assert reg["failed"] and reg["max_shift_px"] == 5.0 and _beyond_default(reg["notes"][0])


@pytest.mark.parametrize("value", ["ten", "0.2", "51", "true", "[5]", ".nan"])
def test_a_bad_max_shift_in_a_claims_file_is_a_one_line_error_naming_file_and_key(pair, tmp_path, value):
    claims = _claims(tmp_path, pair, f"max_shift: {value}\n")
    with pytest.raises(ClaimsError) as e:
        load_claims(claims)
    msg = str(e.value)
    assert "\n" not in msg and str(claims) in msg and "max_shift must be a number of pixels from 0.5 to 50" in msg
    r = run("verify", claims, "-o", tmp_path / "out")
    assert r.exit_code == 2 and "max_shift must be" in r.stderr and not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- watch
def _manifest(tmp_path: Path, pair, extra: str = "") -> Path:
    before, after, _ = pair
    path = tmp_path / "watch.yaml"
    path.write_text(f"site: test\ndetector: tests.test_watch:bright_objects\n{extra}scenes:\n"
                    f"  - {{date: 2024-12-03, path: {before}}}\n  - {{date: 2024-12-13, path: {after}}}\n")
    return path


def test_watch_counts_a_7_px_shift_unregistered_by_default_saying_why_and_registers_it_with_max_shift_10(
        pair, tmp_path):
    from imgdiff.watch import read_manifest, run_watch

    _, _, truth = pair
    manifest = _manifest(tmp_path, pair)
    res = run_watch(read_manifest(manifest), tmp_path / "default", scheduler="synchronous")
    reg = res.results[1]["registration"]
    assert reg["method"] == "none" and reg["max_shift_px"] == 5.0
    assert reg["note"].startswith("not co-registered: ") and _beyond_default(reg["note"])
    # the shipped vessel detector: counts.csv has a row per zone and date, zero counts included
    r = run("watch", manifest, "-o", tmp_path / "ten", "--scheduler", "synchronous", "--detector", "vessels",
            "--max-shift", "10", "--json")
    assert r.exit_code == 0, r.output
    with open(tmp_path / "ten" / "counts.csv", newline="") as f:
        rows = [row for row in csv.DictReader(f) if row["date"] == "2024-12-13"]
    assert rows and all((float(row["shift_dx_px"]), float(row["shift_dy_px"])) == pytest.approx(truth, abs=0.2)
                        for row in rows)


def test_a_watch_manifests_max_shift_is_used_and_the_command_line_overrides_it(pair, tmp_path, monkeypatch):
    import imgdiff_cli.watch

    from imgdiff.errors import InputError
    from imgdiff.watch import read_manifest, run_watch

    _, _, truth = pair
    assert read_manifest(_manifest(tmp_path, pair)).max_shift == 5.0
    manifest = _manifest(tmp_path, pair, "max_shift: 10\n")
    m = read_manifest(manifest)
    assert m.max_shift == 10.0
    reg = run_watch(m, tmp_path / "ten", scheduler="synchronous").results[1]["registration"]
    assert reg["max_shift_px"] == 10.0 and (reg["dx"], reg["dy"]) == pytest.approx(truth, abs=0.2)
    # run_watch(max_shift=) wins over the manifest's (the 7 px shift is then beyond it)
    reg = run_watch(m, tmp_path / "five", scheduler="synchronous", max_shift=5).results[1]["registration"]
    assert reg["max_shift_px"] == 5.0 and reg["method"] == "none" and _beyond_default(reg["note"])

    # the command line: --max-shift given wins; left at its default, the manifest's holds
    seen = []

    def fake_run_watch(man, outdir, **kw):
        seen.append((man.max_shift, kw.get("max_shift")))
        raise InputError("stopped by the test")

    monkeypatch.setattr(imgdiff_cli.watch, "run_watch", fake_run_watch)
    for extra in (["--max-shift", "7.5"], [], ["--max-shift", "5"]):
        r = run("watch", manifest, "-o", tmp_path / "cli", "--scheduler", "synchronous", *extra)
        assert r.exit_code == 2 and "stopped by the test" in r.stderr
    assert seen == [(7.5, None), (10.0, None), (5.0, None)]


def test_a_watch_manifests_max_shift_under_no_coregister_is_ignored_with_one_warning(pair, tmp_path, caplog):
    """--max-shift with --no-coregister is refused; a manifest's max_shift: is not (the manifest may serve runs
    with and without co-registration) but is not silently dropped either: one warning line naming the
    manifest, on stderr also in --json mode (stdout stays the JSON), none when the manifest states no
    max_shift."""
    import logging

    from imgdiff.watch import read_manifest, run_watch

    (tmp_path / "plain").mkdir()
    plain = _manifest(tmp_path / "plain", pair)
    with caplog.at_level("WARNING", logger="imgdiff.watch"):
        run_watch(read_manifest(plain), tmp_path / "plain-out", scheduler="synchronous", register=False)
    assert not [r for r in caplog.records if "max_shift" in r.getMessage()]
    manifest = _manifest(tmp_path, pair, "max_shift: 10\n")
    assert "max_shift" in read_manifest(manifest).stated and "max_shift" not in read_manifest(plain).stated
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers = []  # as in a fresh `imgdiff` process: the CLI's own handler on stderr
    try:
        r = run("watch", manifest, "-o", tmp_path / "out", "--scheduler", "synchronous", "--no-coregister", "--json")
    finally:
        root.handlers, root.level = saved
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["scenes_ok"] == 2
    warned = [line for line in r.stderr.splitlines() if "max_shift" in line]
    assert warned == [f"imgdiff: WARNING: {manifest}: max_shift 10 is ignored: scenes are not co-registered "
                      "(--no-coregister)"]


@pytest.mark.parametrize("value", ["ten", "0.2", "51", "true", "[5]", ".nan"])
def test_a_bad_max_shift_in_a_watch_manifest_is_a_one_line_error_naming_file_and_key(pair, tmp_path, value):
    from imgdiff.errors import InputError
    from imgdiff.watch import read_manifest

    manifest = _manifest(tmp_path, pair, f"max_shift: {value}\n")
    with pytest.raises(InputError) as e:
        read_manifest(manifest)
    msg = str(e.value)
    assert "\n" not in msg and str(manifest) in msg and "max_shift must be a number of pixels from 0.5 to 50" in msg
    r = run("watch", manifest, "-o", tmp_path / "out", "--scheduler", "synchronous")
    assert r.exit_code == 2 and not (tmp_path / "out").exists()
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"imgdiff: error: {manifest}: max_shift must be")


# --------------------------------------------------------------------------- usage errors
@pytest.mark.parametrize("command", ["compare", "verify", "watch", "coregister"])
@pytest.mark.parametrize("value", ["0.2", "60", "five"])
def test_a_max_shift_out_of_range_is_a_usage_error(pair, tmp_path, command, value):
    before, after, _ = pair
    first = {"compare": [before, after, "-o", tmp_path / "o"], "verify": [_claims(tmp_path, pair), "-o", tmp_path / "o"],
             "watch": [_manifest(tmp_path, pair), "-o", tmp_path / "o"], "coregister": [before, after]}[command]
    r = run(command, *first, "--max-shift", value)
    assert r.exit_code == 2 and "Invalid value for '--max-shift'" in r.stderr and not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["compare", "watch"])
def test_max_shift_with_no_coregister_is_a_usage_error(pair, tmp_path, command):
    before, after, _ = pair
    first = [before, after] if command == "compare" else [_manifest(tmp_path, pair)]
    r = run(command, *first, "-o", tmp_path / "o", "--no-coregister", "--max-shift", "10")
    assert r.exit_code == 2 and "--max-shift 10 does not apply with --no-coregister" in r.stderr
    assert not (tmp_path / "o").exists()


def test_report_calls_a_registration_failed_exactly_when_the_verdicts_do():
    # the verdicts take a reliability below MIN_REGISTRATION_RELIABILITY for a failed co-registration;
    # report.json's coregistration.failed must say the same, not only at reliability 0
    from types import SimpleNamespace

    from imgdiff.claims import MIN_REGISTRATION_RELIABILITY
    from imgdiff.coregister import Registration
    from imgdiff.report.verify import _registration_entry

    def entry(reliability: float) -> dict:
        reg = Registration(0.3, -0.2, 0.0, 0.0, 0.05, reliability, method="global", max_shift_px=5.0)
        return _registration_entry(SimpleNamespace(result=SimpleNamespace(registration=reg)))

    assert entry(MIN_REGISTRATION_RELIABILITY / 2)["failed"]
    assert not entry(min(1.0, MIN_REGISTRATION_RELIABILITY * 2))["failed"]


def test_an_unused_shift_limit_leaves_the_watch_cache_keys_alone():
    # under register=False the manifest's (or a given) max_shift is not used, so it must not make every
    # cached scene of an earlier run stale
    from imgdiff.coregister import MAX_SHIFT_PX
    from imgdiff.watch.manifest import Manifest
    from imgdiff.watch.run import _max_shift

    stated = Manifest(site="tartus", scenes=(), max_shift=10.0)
    assert _max_shift(None, stated, register=False) == MAX_SHIFT_PX
    assert _max_shift(None, stated, register=True) == 10.0
    assert _max_shift(7.0, stated, register=True) == 7.0


def test_an_unused_shift_limit_is_not_part_of_the_watch_cache_keys(pair, tmp_path):
    # a scene's key must not depend on a limit its task does not use: under register=False whatever max_shift the
    # parameters hold (the default, a manifest's, another version's default) gives the same key
    import json

    from imgdiff.watch import read_manifest
    from imgdiff.watch.cache import WatchParams, scene_key

    before, _, _ = pair
    entry = read_manifest(_manifest(tmp_path, pair)).scenes[1]

    def key(**kw) -> str:
        return scene_key(entry, WatchParams(reference=str(before), **kw), "reference-hash")

    assert key(register=False, max_shift=5.0) == key(register=False, max_shift=10.0)
    assert "max_shift" not in json.loads(WatchParams(reference=str(before), register=False).to_json())
    assert key(register=True, max_shift=5.0) != key(register=True, max_shift=10.0)  # used: part of the key


def test_run_watch_refuses_max_shift_without_register_as_the_cli_refuses_it(pair, tmp_path):
    # the library said nothing and ran unregistered, while `watch --no-coregister --max-shift` is a usage error
    from imgdiff.watch import read_manifest, run_watch

    manifest = read_manifest(_manifest(tmp_path, pair))
    with pytest.raises(ValueError) as e:
        run_watch(manifest, tmp_path / "out", scheduler="synchronous", register=False, max_shift=10)
    assert str(e.value) == "run_watch: max_shift 10 does not apply with register=False (no shift is sought)"
    assert not (tmp_path / "out").exists()
