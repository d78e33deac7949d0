"""imgdiff as a library in scripts and notebooks: public names, docstrings, reprs, plain tables,
pure functions, and clear errors for arguments of the wrong type."""

from __future__ import annotations

import copy
import datetime as dt
import importlib
import inspect
import json
import math
import re
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

import imgdiff
from imgdiff.detect.base import Detection, Detections
from imgdiff.errors import ArgumentTypeError, ImgdiffError

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
UTM36 = CRS.from_epsg(32636)


def small_scene(seed: int = 0, shape: tuple[int, int] = (96, 112), date: dt.date | None = None) -> imgdiff.Scene:
    """A textured 4-band reflectance scene on a 10 m UTM 36N grid (x = column, y = row)."""
    rng = np.random.default_rng(seed)
    base = np.cumsum(np.cumsum(rng.normal(0, 1, shape), 0), 1)
    base = 0.05 + 0.1 * (base - base.min()) / np.ptp(base)
    bands = {b: (base * k + rng.normal(0, 0.002, shape)).astype(np.float32)
             for b, k in (("B02", 0.9), ("B03", 1.0), ("B04", 1.1), ("B08", 1.6))}
    return imgdiff.Scene(bands, UTM36, Affine(10, 0, 760000, 0, -10, 3866000), np.ones(shape, bool), date)


# -------------------------------------------------------------------- public names and docstrings

def test_documented_library_names_are_exported_at_top_level():
    for name in imgdiff.__all__:
        assert hasattr(imgdiff, name), name
    assert len(set(imgdiff.__all__)) == len(imgdiff.__all__)
    # the README's Library section and a notebook's whole job, without deep imports
    for name in ("Scene", "Detections", "Detection", "Zones", "read_zones", "load_zones", "match_objects",
                 "ObjectMatch", "water_changes", "verify", "verify_report", "write_verify", "compare_report", "write_compare",
                 "evaluate", "ArgumentTypeError", "write_detections_geojson"):
        assert name in imgdiff.__all__, name
    assert imgdiff.evaluate.match_detections is importlib.import_module("imgdiff.evaluate.detection").match_detections
    assert imgdiff.evaluate.prf(1, 1, 2) == pytest.approx({"precision": 0.5, "recall": 1 / 3, "f1": 0.4})


PUBLIC_MODULES = ["imgdiff", "imgdiff.change", "imgdiff.claims", "imgdiff.coregister", "imgdiff.detect", "imgdiff.tiles",
                  "imgdiff.watch", "imgdiff.report", "imgdiff.io", "imgdiff.evaluate", "imgdiff.zones", "imgdiff.match",
                  "imgdiff.vacated", "imgdiff.sites", "imgdiff.radiometry", "imgdiff.evaluate.aircraft", "imgdiff.evaluate.coreg",
                  "imgdiff.stac"]


def _documented_parameters(doc: str) -> list[str] | None:
    """Names listed in a numpydoc ``Parameters`` section (None when there is none)."""
    lines = inspect.cleandoc(doc).splitlines() + [""]
    found = None
    for i, line in enumerate(lines[:-1]):
        if line.strip() in ("Parameters", "Other Parameters") and set(lines[i + 1].strip()) == {"-"}:
            found = found or []
            for j in range(i + 2, len(lines) - 1):
                if lines[j + 1].strip() and set(lines[j + 1].strip()) == {"-"}:
                    break  # lines[j] is the next section's title
                if lines[j] and not lines[j].startswith(" "):
                    found += [n.strip().lstrip("*") for n in lines[j].split(" : ")[0].split(",") if n.strip()]
    return found


def _public_functions():
    seen = {}
    for m in PUBLIC_MODULES:
        mod = importlib.import_module(m)
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if inspect.isfunction(obj) and obj.__module__.startswith("imgdiff"):
                seen[f"{obj.__module__}.{obj.__qualname__}"] = obj
            elif inspect.isclass(obj) and obj.__module__.startswith("imgdiff"):
                for attr, f in vars(obj).items():
                    if inspect.isfunction(f) and not attr.startswith("_"):
                        seen[f"{obj.__module__}.{obj.__qualname__}.{attr}"] = f
    return seen


def test_every_documented_parameter_exists_and_every_parameter_is_documented():
    wrong = []
    for qualname, f in _public_functions().items():
        documented = _documented_parameters(f.__doc__ or "")
        if documented is None:
            continue
        params = [p for p, v in inspect.signature(f).parameters.items()
                  if p not in ("self", "cls") and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)]
        extra = [p for p in documented if p not in inspect.signature(f).parameters]
        missing = [p for p in params if p not in documented]
        if extra or missing:
            wrong.append(f"{qualname}: documented but absent {extra}, undocumented {missing}")
    assert not wrong, "\n".join(wrong)


def test_top_level_functions_have_parameters_and_returns_sections():
    for name in ("align", "compare", "compare_report", "coregister", "detect_aircraft", "detect_vessels", "read_scene",
                 "reproject_scene", "utm_grid", "warp", "write_compare", "get_site", "load_claims", "load_zones",
                 "change_map", "verify"):
        doc = inspect.getdoc(getattr(imgdiff, name))
        assert "Parameters\n----------" in doc, name
        assert "Returns\n-------" in doc, name


# -------------------------------------------------------------------- notebook display and tables

def test_scene_repr_is_one_short_line_without_pixel_values():
    s = small_scene(date=dt.date(2024, 12, 3))
    text = repr(s)
    assert "\n" not in text and len(text) < 250
    assert "array(" not in text
    for part in ("'B02'", "shape=(96, 112)", "EPSG:32636", "2024-12-03", "pixel_size_m="):
        assert part in text, part


def test_result_reprs_summarise_arrays_and_tie_points():
    b = small_scene(0)
    a = replace(b, bands={k: np.roll(v, 1, axis=1) for k, v in b.bands.items()})
    reg = imgdiff.coregister(b, a, local=True, spacing=24)
    assert len(reg.points) > 3
    assert f"points=<{len(reg.points)} TiePoint>" in repr(reg)
    pair = imgdiff.align(b, a)
    text = repr(pair)
    assert "overlap=<bool array (96, 112)>" in text and "EPSG:32636" in text and "array(" not in text
    assert "PROJCS" not in repr(pair.grid)  # not the CRS's WKT
    names = list(b.bands)
    cm = imgdiff.change_map(b.stack(names), a.stack(names), b.valid, bands=names, method="cva-otsu")
    assert "magnitude=<float32 array (96, 112)>" in repr(cm) and "array(" not in repr(cm)
    watch = imgdiff.watch.WatchResult(tuple({"scene": i, "detections": list(range(99))} for i in range(50)),
                                      tuple({"row": i} for i in range(120)), (), {"scenes": 50})
    assert repr(watch) == "WatchResult(results=<50 dict>, rows=<120 dict>, slots=(), summary={'scenes': 50})"
    by_hand = replace(b, crs="EPSG:32636")  # a CRS given as text still prints
    assert "crs='EPSG:32636'" in repr(by_hand)



def test_verification_repr_summarises_cloud_masks_and_verdicts():
    v = imgdiff.verify(imgdiff.load_claims(SAMPLES / "claims" / "hmeimim.yaml"))
    text = repr(v)
    assert "array(" not in text and "<bool array" in text
    assert len(v.verdicts) > 3 and f"verdicts=<{len(v.verdicts)} Verdict>" in text

def _detections() -> Detections:
    items = (
        Detection((10, 20, 14, 22), 0.9, "vessel", 42.0, 12.0, 80.0, "berth", (12.0, 21.0),
                 {"zones": ["berth", "harbour"], "speed_kn": np.float32(3.5)}),
        Detection((40, 50, 43, 52), 0.6, "vessel", math.nan, math.nan, math.nan, "harbour", None, {}),
        Detection((70, 5, 72, 7), 0.3, "vessel", 25.0, 8.0, 10.0, None, (71.0, 6.0), {}),
    ) + tuple(Detection((x, 80, x + 2, 82), 0.2, "vessel") for x in range(0, 60, 4))
    return Detections(items, UTM36, Affine(10, 0, 760000, 0, -10, 3866000), (9.97, 10.02))


def test_detections_repr_counts_instead_of_listing_every_detection():
    text = repr(_detections())
    assert len(text) < 300 and "Detection(" not in text
    assert "18 items" in text and "EPSG:32636" in text and "'harbour': 2" in text


def test_detections_to_records_is_a_strict_json_table_with_map_and_lonlat_centres():
    dets = _detections()
    rows = dets.to_records()
    json.dumps(rows, allow_nan=False)  # NaN lengths and numpy numbers are not JSON
    assert len(rows) == len(dets)
    first, second = rows[0], rows[1]
    assert (first["x_px"], first["y_px"]) == (12.0, 21.0)
    assert (first["x"], first["y"]) == pytest.approx((760000 + 120, 3866000 - 210))  # map metres of the centroid
    assert 35.0 < first["lon"] < 36.0 and 34.0 < first["lat"] < 35.5  # UTM 36N, Tartus latitude
    assert first["zones"] == ["berth", "harbour"] and first["extra"]["speed_kn"] == pytest.approx(3.5)
    assert second["length_m"] is None and second["box_px"] == [40, 50, 43, 52]
    unplaced = replace(dets, crs=None).to_records()
    assert unplaced[0]["lon"] is None and unplaced[0]["x"] == pytest.approx(760120)


def test_filter_by_zone_keeps_objects_of_nested_zones_like_count_by_zone():
    dets = _detections()
    assert dets.count_by_zone()["harbour"] == 2
    assert len(dets.filter(zones=["harbour"])) == 2  # the berth's vessel lies in the harbour too
    assert len(dets.filter(zones="harbour")) == 2  # one name, not its letters
    assert len(dets.filter(zones="arbour")) == 0
    assert len(dets.filter(zones=[None])) == len(dets) - 2  # outside every zone, as count_by_zone's None


# -------------------------------------------------------------------- wrong argument types

SCENE_PATH = str(SAMPLES / "scenes" / "tartus" / "2024-12-03")


def _wrong_calls():
    s = small_scene()
    reg = imgdiff.Registration(0.1, 0.1, 1.0, -1.0, 0.01, 1.0)
    return {
        "coregister: reference": lambda: imgdiff.coregister(SCENE_PATH, s),
        "coregister: target": lambda: imgdiff.coregister(s, s.stack()),
        "warp: registration": lambda: imgdiff.warp(s, (0.3, 0.2)),
        "warp: target": lambda: imgdiff.warp(SCENE_PATH, reg),
        "align: after": lambda: imgdiff.align(s, SCENE_PATH),
        "reproject_scene: grid": lambda: imgdiff.reproject_scene(s, "EPSG:32636"),
        "change_map: before": lambda: imgdiff.change_map(s, s, s.valid),
        "change_map: after": lambda: imgdiff.change_map(s.stack(), [[0.1]], s.valid),
        "compare: before": lambda: imgdiff.compare([1, 2], s),
        "compare: after (with bbox)": lambda: imgdiff.compare(SCENE_PATH, s, bbox=(35.86, 34.90, 35.87, 34.91)),
        "write_compare: result": lambda: imgdiff.write_compare(s, "unused_folder"),
        "compare_report: result": lambda: imgdiff.compare_report(s),
        "cloud_mask: scene": lambda: imgdiff.cloud_mask(SCENE_PATH),
        "water_mask: scene": lambda: imgdiff.water_mask(s.stack()),
        "read_scene: path": lambda: imgdiff.read_scene(s),
        "read_scene: bands": lambda: imgdiff.read_scene(SCENE_PATH, bands="B02"),
        "Scene.stack: names": lambda: s.stack("B02"),
        "Scene.select: names": lambda: s.select("B08"),
        "load_claims: path": lambda: imgdiff.load_claims({"claims": []}),
        "load_zones: spec": lambda: imgdiff.load_zones(3),
        "get_site: name": lambda: imgdiff.get_site(None),
        "utm_grid: bbox_lonlat": lambda: imgdiff.utm_grid("35.8,34.9,35.9,35.0"),
        "detect_aircraft: zones": lambda: imgdiff.detect_aircraft(s, zones="tartus"),
        "detect_vessels: zones": lambda: imgdiff.detect_vessels(s, zones="zones.geojson"),
        "detect_vessels: scene": lambda: imgdiff.detect_vessels(SCENE_PATH),
        "detect_aircraft: scene": lambda: imgdiff.detect_aircraft(s.stack()),
        "match_objects: after": lambda: imgdiff.match_objects(_detections(), [(1, 2, 3, 4)]),
        "verify: claims": lambda: imgdiff.verify(str(SAMPLES / "claims" / "tartus.yaml")),
    }


@pytest.mark.parametrize("where", list(_wrong_calls()))
def test_wrong_argument_type_raises_a_type_error_naming_the_parameter(where, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written anyway
    with pytest.raises(ArgumentTypeError) as info:
        _wrong_calls()[where]()
    assert where in str(info.value)
    assert isinstance(info.value, TypeError) and isinstance(info.value, ImgdiffError)
    assert not list(tmp_path.iterdir())


def test_load_zones_returns_zones_it_is_given():
    z = imgdiff.load_zones("tartus")
    assert imgdiff.load_zones(z) is z


# -------------------------------------------------------------------- pure functions, quiet functions

def _snapshot(s: imgdiff.Scene):
    return {k: v.copy() for k, v in s.bands.items()}, s.valid.copy(), copy.deepcopy(dict(s.meta))


def _unchanged(s: imgdiff.Scene, snap) -> bool:
    bands, valid, meta = snap
    return (set(bands) == set(s.bands) and all(np.array_equal(s.bands[k], bands[k], equal_nan=True) for k in bands)
            and np.array_equal(valid, s.valid) and copy.deepcopy(dict(s.meta)) == meta)


@pytest.fixture(scope="module")
def hmeimim():
    before = imgdiff.read_scene(SAMPLES / "scenes" / "hmeimim" / "2024-12-03")
    after = imgdiff.read_scene(SAMPLES / "scenes" / "hmeimim" / "2024-12-13")
    hole = {k: v.copy() for k, v in after.bands.items()}
    for v in hole.values():
        v[10:20, 10:20] = np.nan
    valid = after.valid.copy()
    valid[10:20, 10:20] = False
    return before, replace(after, bands=hole, valid=valid), imgdiff.load_zones(SAMPLES / "sites" / "hmeimim.geojson")


def test_library_steps_leave_their_input_scenes_and_arrays_unchanged(hmeimim):
    before, after, zones = hmeimim
    sb, sa = _snapshot(before), _snapshot(after)
    reg = imgdiff.coregister(before, after)
    imgdiff.warp(after, reg)
    imgdiff.align(before, after)
    imgdiff.compare(before, after)
    imgdiff.cloud_mask(after)
    imgdiff.water_mask(after)
    dets = imgdiff.detect_aircraft(before, zones)
    names = list(before.bands)
    stacks = before.stack(names), after.stack(names)
    copies = [a.copy() for a in stacks]
    imgdiff.change_map(*stacks, before.valid & after.valid, bands=names, method="irmad")
    assert all(np.array_equal(a, c, equal_nan=True) for a, c in zip(stacks, copies))
    assert _unchanged(before, sb) and _unchanged(after, sa)
    kept = copy.deepcopy(dets)
    imgdiff.match_objects(dets, dets)
    dets.to_records()
    assert dets == kept


def test_ordinary_library_use_prints_nothing_and_warns_nothing(hmeimim, capsys):
    before, after, zones = hmeimim
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", "Use `@` matmul", PendingDeprecationWarning)  # affine, inside rasterio
        result = imgdiff.compare(before, after)
        report = imgdiff.compare_report(result)
        dets = imgdiff.detect_aircraft(result.pair.before, zones)
        dets.to_records()
        repr(result)
    assert capsys.readouterr() == ("", "")
    json.dumps(report, allow_nan=False)


# -------------------------------------------------------------------- one helper for one-line messages

def test_exception_messages_are_flattened_by_the_one_line_helper_only():
    inline = re.compile(r"""['"] ['"]\.join\(str\(\w+\)\.split\(\)\)""")
    offenders = [f"{p.relative_to(ROOT)}:{i}" for folder in ("imgdiff", "cli") for p in (ROOT / folder).rglob("*.py")
                 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                 if inline.search(line) and "def one_line" not in line and p.name != "layout.py"]
    assert not offenders, offenders


# -------------------------------------------------------------------- session 28 review
def test_length_mismatches_are_value_errors_not_silent_truncation():
    d = _detections()
    with pytest.raises(ValueError, match="keep has 1 flags for 18 detections"):
        d.filter(keep=[True])
    assert len(d.filter(keep=[i % 2 == 0 for i in range(len(d))])) == 9
    with pytest.raises(ValueError, match="2 scores for 3 predicted boxes"):
        imgdiff.evaluate.match_detections([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], [0.9, 0.8],
                                          [[0, 0, 10, 10], [20, 20, 30, 30]])
    with pytest.raises(ValueError, match="1 dont_care flags for 2 ground-truth boxes"):
        imgdiff.evaluate.match_detections([[0, 0, 10, 10]], [0.9], [[0, 0, 10, 10], [20, 20, 30, 30]],
                                          dont_care=[False])


def test_writers_and_runners_given_the_wrong_kind_of_argument_name_it(tmp_path):
    d = _detections()
    with pytest.raises(ArgumentTypeError, match=r"write_detections_geojson: path .*\(path, detections\)"):
        imgdiff.write_detections_geojson(d, tmp_path / "x.geojson")
    with pytest.raises(ArgumentTypeError, match="write_verify: v .*imgdiff.verify"):
        imgdiff.write_verify(str(SAMPLES / "claims" / "tartus.yaml"), tmp_path / "v")
    with pytest.raises(ArgumentTypeError, match="verify_report: v"):
        imgdiff.verify_report(str(SAMPLES / "claims" / "tartus.yaml"))
    s = small_scene()
    with pytest.raises(ArgumentTypeError, match="coregister_paths: reference .*imgdiff.coregister"):
        imgdiff.coregister_paths(s, s)
    with pytest.raises(ArgumentTypeError, match="read_zones: path"):
        imgdiff.read_zones(imgdiff.load_zones("tartus"))
    assert not list(tmp_path.iterdir())


def test_a_scene_stacks_no_bands_as_an_empty_stack():
    s = small_scene()
    assert s.stack([]).shape == (0, *s.shape) and s.stack([]).dtype == np.float32


@pytest.mark.parametrize("factor, dtype, fill", [(10000, np.uint16, False), (10000, np.float32, True),
                                                 (65535, np.uint16, False)],
                         ids=["l2a-uint16", "l2a-float-mostly-zero-filled", "raw-export-x65535"])
def test_a_scene_built_from_digital_numbers_is_refused_naming_the_band_and_the_fix(factor, dtype, fill):
    """Read as reflectance, digital numbers make every pixel cloud and every claim INCONCLUSIVE, silently."""
    s = small_scene()
    bands = {b: (v * factor).astype(dtype) for b, v in s.bands.items()}
    if fill:  # outside the swath (most of it): zeros, the valid mask left all True by the caller
        bands = {b: np.where(np.arange(s.width) < s.width // 2 - 10, v, 0).astype(dtype) for b, v in bands.items()}
    with pytest.raises(imgdiff.ReflectanceError) as e:
        imgdiff.Scene(bands, s.crs, s.transform, s.valid)
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value)
    level = float(np.median(bands["B02"][bands["B02"] > 0]))
    assert re.fullmatch(r"Scene bands look like digital numbers \(median B02 = (\d+\.\d)\), not reflectance \(0-1\): "
                        r"divide by 10000 .*imgdiff\.read_scene", str(e.value))
    assert float(re.search(r"B02 = ([\d.]+)", str(e.value)).group(1)) == pytest.approx(level, rel=0.1)
    with pytest.raises(imgdiff.ReflectanceError, match="median B04 = "):  # one band left in numbers
        replace(s, bands={**s.bands, "B04": bands["B04"]})


def test_reflectance_scenes_bright_dark_or_saturated_in_places_are_accepted():
    s = small_scene()
    shape, rng = s.shape, np.random.default_rng(3)
    # a few saturated pixels and a cloud (1.0-1.6) on ordinary ground
    lit = {b: v.copy() for b, v in s.bands.items()}
    for v in lit.values():
        v[10:30, 10:40] = rng.uniform(1.0, 1.6, (20, 30))
        v[50, 50:55] = 1.6
    # snow and cloud over all of it under a low sun (top-of-atmosphere reflectance up to 1.5)
    snow = {b: rng.uniform(0.9, 1.5, shape).astype(np.float32) for b in s.bands}
    # dark open water, and a scene of NaN and zeros (nothing to measure a level from)
    water = {b: rng.uniform(0.0, 0.03, shape).astype(np.float32) for b in s.bands}
    nothing = {b: np.where(np.arange(shape[1]) < 40, np.nan, 0.0).astype(np.float32) * np.ones(shape, np.float32)
               for b in s.bands}
    for bands in (lit, snow, water, nothing):
        assert imgdiff.Scene(bands, s.crs, s.transform, s.valid).shape == shape
    # other layers beside the bands (a class map, an index) are not reflectance and not checked
    assert "SCL" in replace(s, bands={**s.bands, "SCL": np.full(shape, 8.0, np.float32)}).bands


def test_a_scene_whose_meta_records_its_scaling_is_taken_at_its_word():
    """The readers record the scaling they apply (meta["radiometry"]) and may hold digital numbers while they
    choose it (float numbers, x 65535 exports): such a scene is theirs to scale, not refused."""
    s = small_scene()
    meta = {"radiometry": {b: {"scale": 1.0, "offset": 0.0, "source": "float: taken as reflectance"} for b in s.bands}}
    dn = imgdiff.Scene({b: v * 10000 for b, v in s.bands.items()}, s.crs, s.transform, s.valid, meta=meta)
    assert float(np.median(dn.bands["B02"])) > 100


def test_claims_files_zones_problems_are_claims_errors_and_a_boolean_is_no_length(tmp_path):
    from imgdiff.claims import ClaimsError

    claim = "claims:\n  - {id: a, object: vessels, zone: naval_piers, assert: absent_after%s}\n"
    scenes = f"before: {SAMPLES / 'scenes/tartus/2024-12-03'}\nafter: {SAMPLES / 'scenes/tartus/2024-12-13'}\n"
    (tmp_path / "c.yaml").write_text(scenes + "zones: nowhere.geojson\n" + claim % "")
    with pytest.raises(ClaimsError, match=r"c\.yaml: zones: .*nowhere\.geojson: no such zones file"):
        imgdiff.load_claims(tmp_path / "c.yaml")
    (tmp_path / "c.yaml").write_text(scenes + "site: tartus\n" + claim % ", min_length_m: true")
    with pytest.raises(ClaimsError, match="min_length_m must be a number of metres, not True"):
        imgdiff.load_claims(tmp_path / "c.yaml")


def test_a_zones_report_without_claims_says_so_in_json_markdown_and_html(tmp_path):
    v = imgdiff.claims.survey(str(SAMPLES / "scenes/tartus/2024-12-03"), str(SAMPLES / "scenes/tartus/2024-12-13"),
                              imgdiff.load_zones("tartus"), zones_source="site:tartus")
    report = imgdiff.write_verify(v, tmp_path / "z")
    assert report["claims_file"] is None and report["claims"] == []
    md = (tmp_path / "z" / "report.md").read_text()
    assert md.startswith("# imgdiff zones report") and "## Verdicts" not in md
    html = (tmp_path / "z" / "report.html").read_text()
    assert "<title>imgdiff zones report</title>" in html and "<h2>Verdicts</h2>" not in html
