"""Claim files, verdict rules, and the ``imgdiff verify`` command on the shipped samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from affine import Affine
from click.testing import CliRunner
from imgdiff_cli.main import cli
from rasterio.crs import CRS

from imgdiff.claims import (
    INCONCLUSIVE,
    REFUTED,
    SUPPORTED,
    Claim,
    ClaimsError,
    DetectorPerformance,
    ZoneState,
    evaluate_claim,
    load_claims,
    path_radiance_caveat,
)
from imgdiff.detect.base import Detection, Detections
from imgdiff.errors import ImgdiffError

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
TR = Affine(10, 0, 700000, 0, -10, 3900000)
PERF = DetectorPerformance("vessels", 0.9, 0.8, 25.0, "test")
CLEAR = ZoneState("piers", 1000, 1.0, 0.0, 0.0)


def dets(*objs):
    """Detections from (x_px, y_px, length_m, zone)."""
    items = tuple(Detection(box=(x - 6, y - 1, x + 6, y + 1), score=0.9, cls="vessel", length_m=L, zone=z,
                            centroid=(x, y)) for x, y, L, z in objs)
    return Detections(items, CRS.from_epsg(32636), TR, (10.0, 10.0))


def claim(assertion, zone="piers", min_length_m=None):
    return Claim("c", "text", "vessels", zone, assertion, min_length_m)


def judge(c, before, after, sb=CLEAR, sa=CLEAR, rel=0.9, perf=PERF):
    return evaluate_claim(c, before, after, sb, sa, registration_reliability=rel, performance=perf)


WARSHIPS = dets((10, 10, 120, "piers"), (30, 10, 125, "piers"), (50, 50, 150, "basin"))
GONE = dets((50.3, 50, 150, "basin"))


def test_ships_gone_from_a_clear_zone_support_absent_after_with_recall_as_confidence():
    v = judge(claim("absent_after", min_length_m=60), WARSHIPS, GONE)
    assert v.verdict == SUPPORTED
    assert (v.count_before, v.count_after) == (2, 0)
    assert v.match.departed == (0, 1) and v.match.stayed == ()
    assert v.confidence == pytest.approx(0.8)


def test_a_ship_still_there_refutes_absent_after_and_supports_present_after():
    v = judge(claim("absent_after", zone="basin"), WARSHIPS, GONE)
    assert v.verdict == REFUTED and v.confidence == pytest.approx(0.9)
    assert v.match.stayed == ((2, 0),)
    assert judge(claim("present_after", zone="basin"), WARSHIPS, GONE).verdict == SUPPORTED
    assert judge(claim("present_before"), WARSHIPS, GONE).verdict == SUPPORTED
    assert judge(claim("present_after"), WARSHIPS, GONE).verdict == REFUTED


def test_count_comparisons():
    assert judge(claim("decreased"), WARSHIPS, GONE).verdict == SUPPORTED
    assert judge(claim("increased"), WARSHIPS, GONE).verdict == REFUTED
    assert judge(claim("unchanged", zone="basin"), WARSHIPS, GONE).verdict == SUPPORTED
    v = judge(claim("decreased"), WARSHIPS, GONE)
    assert v.confidence == pytest.approx(1 - (1 - 0.8) ** 2)


def test_min_length_filters_the_objects_that_count():
    short = dets((10, 10, 40, "piers"))
    assert judge(claim("absent_after", min_length_m=60), WARSHIPS, short).verdict == SUPPORTED
    assert judge(claim("absent_after", min_length_m=30), WARSHIPS, short).verdict == REFUTED


def test_a_zone_mostly_under_cloud_on_the_date_that_matters_is_inconclusive():
    cloudy = ZoneState("piers", 1000, 0.1, 0.9, 0.0)
    v = judge(claim("absent_after"), WARSHIPS, GONE, sa=cloudy)
    assert v.verdict == INCONCLUSIVE and v.confidence == 0
    assert any("mostly hidden on the after date" in r for r in v.reasons)
    # the before date does not matter for an after-claim, nor the after date for a before-claim
    assert judge(claim("present_before"), WARSHIPS, GONE, sa=cloudy).verdict == SUPPORTED
    assert judge(claim("absent_after"), WARSHIPS, GONE, sb=cloudy).verdict == SUPPORTED
    assert judge(claim("decreased"), WARSHIPS, GONE, sb=cloudy).verdict == INCONCLUSIVE


def test_a_zone_smaller_than_one_pixel_is_inconclusive_as_too_small_not_as_missing_data():
    tiny = ZoneState("piers", 0.1, 0.0, 0.0, 1.0)  # no pixel centre inside: every fraction reads as no data
    v = judge(claim("absent_after"), WARSHIPS, GONE, sa=tiny)
    assert v.verdict == INCONCLUSIVE
    assert any("less than one pixel" in r for r in v.reasons) and not any("no data" in r for r in v.reasons)


def test_partly_hidden_zone_decides_on_objects_seen_but_not_on_their_absence():
    partly = ZoneState("piers", 1000, 0.6, 0.4, 0.0)
    assert judge(claim("absent_after"), WARSHIPS, GONE, sa=partly).verdict == INCONCLUSIVE
    assert judge(claim("present_after"), WARSHIPS, GONE, sa=partly).verdict == INCONCLUSIVE  # none seen
    assert judge(claim("present_before"), WARSHIPS, GONE, sb=partly).verdict == SUPPORTED
    # objects seen in the visible part decide however much of the zone is hidden (here 70 % outside the scene)
    nodata = ZoneState("piers", 1000, 0.3, 0.0, 0.7)
    v = judge(claim("present_before"), WARSHIPS, GONE, sb=nodata)
    assert v.verdict == SUPPORTED and any("70% of piers is not visible" in c for c in v.caveats)
    assert judge(claim("absent_before"), WARSHIPS, GONE, sb=nodata).verdict == REFUTED
    # ... but seeing none there shows nothing
    v = judge(claim("absent_after"), WARSHIPS, GONE, sa=nodata)
    assert v.verdict == INCONCLUSIVE and any("70% no data" in r for r in v.reasons)


def test_objects_below_the_detector_limit_make_absence_inconclusive_not_presence():
    v = judge(claim("absent_after", min_length_m=10), WARSHIPS, GONE)
    assert v.verdict == INCONCLUSIVE and any("below what" in r for r in v.reasons)
    assert judge(claim("present_before", min_length_m=10), WARSHIPS, GONE).verdict == SUPPORTED


def test_failed_coregistration_blocks_date_comparisons_only():
    assert judge(claim("decreased"), WARSHIPS, GONE, rel=0.0).verdict == INCONCLUSIVE
    v = judge(claim("absent_after"), WARSHIPS, GONE, rel=0.0)
    assert v.verdict == SUPPORTED and any("co-registration" in c for c in v.caveats)


def _write(tmp_path, obj):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(obj))
    return p


@pytest.mark.parametrize("change, message", [
    ({"claims": []}, "'claims' must be a non-empty list"),
    ({"site": "tartus"}, "exactly one of 'zones'"),
    ({"claims": [{"id": "x", "object": "tanks", "zone": "anchorage", "assert": "absent_after"}]}, "object must be"),
    ({"claims": [{"id": "x", "object": "vessels", "zone": "moon", "assert": "absent_after"}]}, "zone 'moon'"),
    ({"claims": [{"id": "x", "object": "vessels", "zone": "anchorage", "assert": "gone"}]}, "assert must be"),
])
def test_malformed_claim_files_raise_naming_the_file(tmp_path, change, message):
    obj = {"before": "b", "after": "a", "zones": str(SAMPLES / "sites" / "tartus.geojson"),
           "claims": [{"id": "x", "object": "vessels", "zone": "anchorage", "assert": "absent_after"}]}
    obj.update(change)
    with pytest.raises(ClaimsError, match=message) as e:
        load_claims(_write(tmp_path, obj))
    assert "c.yaml" in str(e.value)


def test_zone_and_assertion_spellings_up_to_case_spaces_and_hyphens_are_understood(tmp_path):
    obj = {"before": "b", "after": "a", "zones": str(SAMPLES / "sites" / "tartus.geojson"),
           "claims": [{"id": "x", "object": "ships", "zone": "Naval Piers", "assert": "Absent-After"},
                      {"id": "y", "object": "vessels", "zone": "harbour-basin", "assert": "present after"},
                      {"id": "z", "object": "Warships", "zone": "anchorage", "assert": "decreased"},
                      {"id": "w", "object": "Military aircraft", "zone": "anchorage", "assert": "unchanged"}]}
    cf = load_claims(_write(tmp_path, obj))
    assert [(c.zone, c.assertion) for c in cf.claims] == [("naval_piers", "absent_after"),
                                                           ("harbour_basin", "present_after"),
                                                           ("anchorage", "decreased"), ("anchorage", "unchanged")]
    assert [c.object for c in cf.claims] == ["vessels", "vessels", "vessels", "aircraft"]


def test_a_misspelt_claim_key_is_refused_and_other_extra_keys_are_reported_unused(tmp_path):
    base = {"before": "b", "after": "a", "zones": str(SAMPLES / "sites" / "tartus.geojson")}
    claim = {"id": "x", "object": "vessels", "zone": "anchorage", "assert": "absent_after"}
    # a misspelt optional key would silently change the verdict: refused, naming the file and claim
    with pytest.raises(ClaimsError, match=r"c.yaml: claim 'x': unknown key 'min_lenght_m'; did you mean 'min_length_m'"):
        load_claims(_write(tmp_path, {**base, "claims": [{**claim, "min_lenght_m": 60}]}))
    # keys of the evaluator's own (truth, notes) are kept aside, not an error
    cf = load_claims(_write(tmp_path, {**base, "title": "t", "claims": [{**claim, "expected": "SUPPORTED"}]}))
    assert cf.unused_keys == ("title", "claims[x].expected")
    assert load_claims(SAMPLES / "claims" / "tartus.yaml").unused_keys == ()


def test_verify_warns_about_unused_keys_and_swapped_dates_on_stderr(tmp_path):
    obj = yaml.safe_load((SAMPLES / "claims" / "tartus.yaml").read_text())
    obj["before"], obj["after"] = obj["after"], obj["before"]
    obj["claims"] = [dict(obj["claims"][0], expected="REFUTED")]
    for k in ("before", "after"):
        obj[k] = str((SAMPLES / "claims" / obj[k]).resolve())
    obj["site"] = "tartus"
    obj.pop("zones", None)
    res = CliRunner().invoke(cli, ["verify", str(_write(tmp_path, obj)), "-o", str(tmp_path / "out"), "--json"])
    assert res.exit_code == 0, res.output
    json.loads(res.stdout)  # stdout stays one JSON object
    assert "key(s) not used by imgdiff: claims[warships-gone].expected" in res.stderr
    assert "was acquired after the after scene" in res.stderr


def test_claim_paths_are_relative_to_the_file():
    cf = load_claims(SAMPLES / "claims" / "tartus.yaml")
    assert cf.before == SAMPLES / "claims" / "../scenes/tartus/2024-12-03"
    assert cf.claims[0].id == "warships-gone" and cf.claims[0].min_length_m == 60


@pytest.fixture(scope="module")
def tartus_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("verify") / "tartus"
    res = CliRunner().invoke(cli, ["verify", str(SAMPLES / "claims" / "tartus.yaml"), "-o", str(out), "--json"])
    return res, out


def test_verify_cli_on_the_tartus_sample_writes_every_output_and_one_json_object(tartus_run):
    res, out = tartus_run
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    for name in report["outputs"]:
        assert (out / name).stat().st_size > 0
    verdicts = {c["id"]: c["verdict"] for c in report["claims"]}
    assert verdicts["warships-gone"] == SUPPORTED
    assert verdicts["small-boats-gone"] == INCONCLUSIVE
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "src=\"http" not in html
    assert report["schema"] == "imgdiff.verify" and report["schema_version"]
    # undecided objects (weak looks where the dates cannot be compared) are reported per zone and claim, not counted
    assert all(set(z["undecided"]["vessels"]) == {"before", "after"} for z in report["zones"].values())
    assert all(set(c["undecided"]) == {"before", "after"} for c in report["claims"])
    geo = json.loads((out / "detections_before.geojson").read_text())
    assert geo["type"] == "FeatureCollection"


def test_the_tartus_report_records_the_path_radiance_taken_off_and_its_vessel_claims_say_so(tartus_run):
    # the simulated Tartus scenes are top-of-atmosphere-like: their water is about 0.05 brighter in B02
    # than the L2A training ports' darkest water
    res, out = tartus_run
    report = json.loads(res.output)
    for date in ("before", "after"):
        pr = report["inputs"][date]["path_radiance"]
        assert set(pr) == {"B02", "B03", "B04", "B08"}
        assert 0.03 < pr["B02"] < 0.08 and pr["B02"] >= pr["B03"] >= pr["B04"] >= pr["B08"] >= 0
    vessel_claims = [c for c in report["claims"] if c["object"] == "vessels"]
    assert vessel_claims and all(any("path radiance" in x for x in c["caveats"]) for c in vessel_claims)
    assert "path radiance taken off before vessel scoring" in (out / "report.md").read_text()
    assert "path radiance taken off before vessel scoring" in (out / "report.html").read_text()


def test_path_radiance_caveat_names_the_hazy_dates_a_vessel_claim_depends_on():
    haze = {"before": {"B02": 0.0, "B03": 0.0}, "after": {"B02": 0.052, "B03": 0.03}}
    assert path_radiance_caveat(claim("present_before"), haze) is None  # the after date does not matter
    text = path_radiance_caveat(claim("absent_after"), haze)
    assert text is not None and "on the after date (path radiance B02 0.052" in text and "before date" not in text
    both = path_radiance_caveat(claim("decreased"), {**haze, "before": {"B02": 0.02}})
    assert both is not None and "before and after dates (path radiance B02 0.020, B02 0.052" in both
    assert path_radiance_caveat(claim("decreased"), {"after": {"B02": 0.004}}) is None  # below the caveat's floor
    assert path_radiance_caveat(Claim("c", "t", "aircraft", "apron", "absent_after", None), haze) is None
    assert path_radiance_caveat(claim("absent_after"), {}) is None  # vessels not looked for


def test_verify_cli_refuses_to_overwrite_and_reports_bad_files_in_one_line(tartus_run, tmp_path):
    _, out = tartus_run
    r = CliRunner().invoke(cli, ["verify", str(SAMPLES / "claims" / "tartus.yaml"), "-o", str(out)])
    assert r.exit_code == 2 and "--overwrite" in r.output
    r = CliRunner().invoke(cli, ["verify", str(tmp_path / "none.yaml"), "-o", str(tmp_path / "o")])
    assert r.exit_code == 2 and "none.yaml: no such claims file" in r.output


def test_the_cloudy_sample_makes_the_hidden_zone_inconclusive_and_decides_the_others(tmp_path):
    r = CliRunner().invoke(cli, ["verify", str(SAMPLES / "claims" / "tartus_cloudy.yaml"), "-o",
                                 str(tmp_path / "o"), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    v = {c["id"]: c["verdict"] for c in rep["claims"]}
    assert v == {"warships-gone": INCONCLUSIVE, "ships-moved-offshore": SUPPORTED, "harbour-still-used": SUPPORTED}
    assert rep["zones"]["naval_piers"]["after"]["cloud_fraction"] > 0.8


def test_counts_within_ten_percent_of_many_objects_count_as_unchanged():
    many_b = dets(*[(10 + 3 * i, 10, 100, "piers") for i in range(20)])
    many_a = dets(*[(10 + 3 * i, 10, 100, "piers") for i in range(19)])
    assert judge(claim("unchanged"), many_b, many_a).verdict == SUPPORTED
    assert judge(claim("decreased"), many_b, many_a).verdict == REFUTED
    fewer = dets(*[(10 + 3 * i, 10, 100, "piers") for i in range(15)])
    assert judge(claim("decreased"), many_b, fewer).verdict == SUPPORTED


def test_temporal_clouds_flag_a_new_bright_white_region_but_not_a_small_bright_object():
    import numpy as np

    from imgdiff.claims import temporal_clouds
    from imgdiff.scene import Scene

    rng = np.random.default_rng(0)
    base = {b: (0.1 + rng.normal(0, 0.01, (60, 60))).astype("float32") for b in ("B02", "B03", "B04")}
    after = {b: a.copy() for b, a in base.items()}
    for a in after.values():
        a[10:30, 10:30] = 0.5   # opaque cloud
        a[45:48, 45:48] = 0.5   # an aircraft-sized white object
    ok = np.ones((60, 60), bool)
    mb, ma = temporal_clouds(Scene(base, None, TR, ok), Scene(after, None, TR, ok))
    assert not mb.any()
    assert ma[10:30, 10:30].all() and not ma[45:48, 45:48].any()


def test_a_flat_white_fill_a_little_brighter_than_concrete_is_a_cloud_but_an_emptied_apron_is_not():
    import numpy as np

    from imgdiff.claims import temporal_clouds
    from imgdiff.scene import Scene

    rng = np.random.default_rng(1)
    shape = (80, 80)
    ground = 0.26 + rng.normal(0, 0.012, shape)  # bright concrete with pixel-scale texture
    planes = np.zeros(shape, bool)
    for r, c in ((12, 12), (12, 24), (24, 12), (24, 24), (50, 50), (50, 62)):
        planes[r:r + 6, c:c + 6] = True  # grey aircraft, darker than the concrete
    before = {b: np.where(planes, 0.16, ground).astype("float32") for b in ("B02", "B03", "B04")}
    after = {b: (1.1 * ground).astype("float32") for b in ("B02", "B03", "B04")}  # gain 1.1, every aircraft gone
    for a in after.values():
        a[45:75, 45:75] = 0.37  # an opaque cloud drawn as a flat white fill: 1.3x the concrete (1.2x after the gain)
    ok = np.ones(shape, bool)
    _, cloud = temporal_clouds(Scene(before, None, TR, ok), Scene(after, None, TR, ok))
    assert cloud[48:72, 48:72].all()
    assert not cloud[10:32, 10:32].any()  # the emptied stands keep the concrete's texture: not a cloud


def test_compare_with_a_site_writes_the_zone_report_without_claims(tmp_path):
    out = tmp_path / "cmp"
    r = CliRunner().invoke(cli, ["compare", str(SAMPLES / "scenes" / "hmeimim" / "2024-12-03"),
                                 str(SAMPLES / "scenes" / "hmeimim" / "2024-12-13"), "--site", "hmeimim",
                                 "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["claims"] == [] and set(rep["zones"]) == {"apron", "shelters", "runway"}
    assert set(rep["zones"]["apron"]["counts"]) == {"vessels", "aircraft"}
    assert (out / "report.html").is_file() and (out / "detections_after.geojson").is_file()
    # the same folder overwritten by a plain comparison keeps no file of the zone report
    r = CliRunner().invoke(cli, ["compare", str(SAMPLES / "scenes" / "hmeimim" / "2024-12-03"),
                                 str(SAMPLES / "scenes" / "hmeimim" / "2024-12-13"), "-o", str(out), "--overwrite"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["change.tif", "report.json", "report.md"]


def test_a_claims_file_bands_key_names_the_bands_of_an_undescribed_multiband_after_scene(tmp_path):
    import rasterio

    from imgdiff.claims import verify

    src = SAMPLES / "scenes" / "hmeimim" / "2024-12-13"
    order = ["B04", "B03", "B02", "B08"]
    with rasterio.open(src / "B02.tif") as ds:
        profile = dict(ds.profile, count=len(order))
    stack = tmp_path / "after.tif"  # one file, bands in the writer's order, no band descriptions
    with rasterio.open(stack, "w", **profile) as out:
        for i, b in enumerate(order, start=1):
            with rasterio.open(src / f"{b}.tif") as ds:
                out.write(ds.read(1), i)
    obj = yaml.safe_load((SAMPLES / "claims" / "hmeimim.yaml").read_text())
    for k in ("before", "after", "zones"):
        obj[k] = str((SAMPLES / "claims" / obj[k]).resolve())
    obj["bands"] = "B4, B3, B2, nir"  # any spelling imgdiff understands, in the stack's order
    folder = verify(load_claims(_write(tmp_path, obj)))
    obj["after"] = str(stack)
    stacked = verify(load_claims(_write(tmp_path, obj)))
    assert load_claims(_write(tmp_path, obj)).bands == tuple(order)
    assert [(v.claim.id, v.verdict, v.count_before, v.count_after) for v in stacked.verdicts] == \
        [(v.claim.id, v.verdict, v.count_before, v.count_after) for v in folder.verdicts]
    assert stacked.verdicts[0].verdict == "SUPPORTED"
    # without the key the stack cannot be read, and the error says how to name its bands
    obj.pop("bands")
    with pytest.raises(ImgdiffError, match=r"after.tif: unknown band layout.*bands"):
        verify(load_claims(_write(tmp_path, obj)))
    with pytest.raises(ClaimsError, match=r"c.yaml: bands: 'B99' is not a Sentinel-2 band"):
        load_claims(_write(tmp_path, dict(obj, bands=["B02", "B99"])))


def test_verify_warns_when_a_zone_lies_wholly_outside_the_scenes(tmp_path):
    zones = json.loads((SAMPLES / "sites" / "hmeimim.geojson").read_text())

    def swap(c):  # latitude and longitude in the wrong order: a place in the Indian Ocean
        return [c[1], c[0]] if isinstance(c[0], (int, float)) else [swap(x) for x in c]

    apron = next(f for f in zones["features"] if f["properties"]["zone"] == "apron")
    apron["geometry"]["coordinates"] = swap(apron["geometry"]["coordinates"])
    (tmp_path / "z.geojson").write_text(json.dumps(zones))
    obj = yaml.safe_load((SAMPLES / "claims" / "hmeimim.yaml").read_text())
    for k in ("before", "after"):
        obj[k] = str((SAMPLES / "claims" / obj[k]).resolve())
    obj["zones"] = "z.geojson"
    obj["claims"] = obj["claims"][:1]
    res = CliRunner().invoke(cli, ["verify", str(_write(tmp_path, obj)), "-o", str(tmp_path / "out"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["claims"][0]["verdict"] == "INCONCLUSIVE"
    assert "zone apron lies wholly outside the scenes' overlap" in res.stderr
    assert "shelters" not in res.stderr and "runway" not in res.stderr


def test_objects_in_nested_zones_count_in_each_zone_holding_them(tmp_path):
    from shapely.geometry import mapping, shape

    from imgdiff.claims import verify

    zones = json.loads((SAMPLES / "sites" / "hmeimim.geojson").read_text())
    apron = shape(next(f for f in zones["features"] if f["properties"]["zone"] == "apron")["geometry"])
    whole = {"type": "Feature", "properties": {"zone": "whole_base"}, "geometry": mapping(apron.buffer(0.002))}
    zones["features"].insert(0, whole)  # listed first: it holds the apron and everything on it
    (tmp_path / "z.geojson").write_text(json.dumps(zones))
    obj = yaml.safe_load((SAMPLES / "claims" / "hmeimim.yaml").read_text())
    for k in ("before", "after", "zones"):
        obj[k] = str((SAMPLES / "claims" / obj[k]).resolve())
    reference = verify(load_claims(_write(tmp_path, obj)))
    obj["zones"] = str(tmp_path / "z.geojson")
    obj["claims"].append({"id": "base", "object": "aircraft", "zone": "whole_base", "assert": "present_after"})
    nested = verify(load_claims(_write(tmp_path, obj)))
    got = {v.claim.id: (v.verdict, v.count_before, v.count_after) for v in nested.verdicts}
    for v in reference.verdicts:
        assert got[v.claim.id] == (v.verdict, v.count_before, v.count_after)
    apron_after = next(v.count_after for v in reference.verdicts if v.claim.id == "aircraft-still-present")
    assert got["base"][0] == "SUPPORTED" and got["base"][2] >= apron_after >= 1
    after = nested.detections["aircraft"][1]
    assert after.count_by_zone()["apron"] >= apron_after
    assert any(d.zone == "whole_base" and d.in_zone("apron") for d in after.items)


@pytest.mark.parametrize("props", [
    lambda n: {"zone": "port", "name": n},   # ``zone`` used for a category, the zone's name under ``name``
    lambda n: {"zone_name": n, "kind": "berth"},  # the name under a key imgdiff does not know
])
def test_zones_named_under_another_property_are_found_by_the_names_the_claims_use(tmp_path, props):
    feats = []
    for k, n in enumerate(("east quay", "west_berths")):
        ring = [[35.0 + k * 0.01, 34.9], [35.005 + k * 0.01, 34.9], [35.005 + k * 0.01, 34.905], [35.0 + k * 0.01, 34.9]]
        feats.append({"type": "Feature", "properties": props(n), "geometry": {"type": "Polygon", "coordinates": [ring]}})
    (tmp_path / "z.geojson").write_text("\ufeff" + json.dumps({"type": "FeatureCollection", "features": feats}))
    obj = {"before": "b", "after": "a", "zones": "z.geojson",
           "claims": [{"id": "x", "object": "vessels", "zone": "east_quay", "assert": "absent_after"},
                      {"id": "y", "object": "vessels", "zone": "West berths", "assert": "present_after"}]}
    cf = load_claims(_write(tmp_path, obj))
    assert sorted(cf.zones.names) == ["east quay", "west_berths"]
    assert [c.zone for c in cf.claims] == ["east quay", "west_berths"]
