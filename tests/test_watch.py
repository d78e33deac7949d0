"""imgdiff watch: manifests, per-date counts per zone, tracking across dates, resumable dask runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
from click.testing import CliRunner
from imgdiff_cli.main import cli
from rasterio.transform import from_origin
from scipy import ndimage as ndi

from imgdiff.detect.base import Detection, sorted_detections
from imgdiff.detect.vessel_features import DARK_WATER
from imgdiff.errors import ArgumentTypeError, InputError, OutputError
from imgdiff.scene import Scene
from imgdiff.watch import read_manifest, run_watch, track_slots

from .conftest import write_band

H = W = 96
ORIGIN = (600000.0, 3870000.0)
TRANSFORM = from_origin(*ORIGIN, 10, 10)
BANDS = ("B02", "B03", "B04", "B08")
# Zones in lon/lat around the scene (EPSG:32636, 600 km E / 3870 km N is about 34.96 N, 34.10 E).
DETECTOR = "tests.test_watch:bright_objects"


def bright_objects(scene: Scene, zones=None) -> object:
    """A tiny real detector for tests: NIR-bright, red-dark blobs (vessel-like), >= 4 px."""
    n, r = scene.band("B08"), scene.band("B04")
    mask = np.nan_to_num(n) > 0.5
    mask &= np.nan_to_num(r, nan=1.0) < 0.3
    labels, k = ndi.label(mask)
    items = []
    for i, sl in enumerate(ndi.find_objects(labels), 1):
        if sl is None or (labels[sl] == i).sum() < 4:
            continue
        ys, xs = np.nonzero(labels == i)
        items.append(Detection(box=(sl[1].start, sl[0].start, sl[1].stop, sl[0].stop), score=0.9, cls="vessel",
                               centroid=(xs.mean() + 0.5, ys.mean() + 0.5)))
    return sorted_detections(items, scene.crs, scene.transform, scene.pixel_size_m)


def _field(seed: int = 0, pad: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = ndi.gaussian_filter(rng.normal(size=(4, H + 2 * pad, W + 2 * pad)), (0, 2.5, 2.5))
    f = (f - f.min()) / (f.max() - f.min())
    return 0.05 + 0.2 * f  # reflectance 0.05-0.25: textured land/water, no object, no cloud


FIELD = _field()


def make_scene(folder: Path, objects: list[tuple[int, int]], *, shift: tuple[int, int] = (0, 0),
               cloud: tuple[int, int, int, int] | None = None, crs: str | None = "EPSG:32636") -> Path:
    """Band folder of a 96 x 96 scene; objects are 4 x 3 px at reference pixel (x, y); the whole
    scene appears shifted by ``shift`` = (dx, dy) px: reference pixel (x, y) is at (x + dx, y + dy)."""
    dx, dy = shift
    pad = 8
    refl = FIELD[:, pad - dy:pad - dy + H, pad - dx:pad - dx + W].copy()
    for x, y in objects:
        xs, ys = x + dx, y + dy
        refl[3, ys:ys + 3, xs:xs + 4] = 0.7  # NIR bright
        refl[:3, ys:ys + 3, xs:xs + 4] = 0.1
    if cloud:
        x0, y0, x1, y1 = cloud
        refl[:, y0:y1, x0:x1] = 0.6
    folder.mkdir(parents=True, exist_ok=True)
    for i, b in enumerate(BANDS):
        write_band(folder / f"{b}.tif", np.round(refl[i] * 10000).astype(np.uint16), crs=crs, transform=TRANSFORM)
    return folder


def zones_file(path: Path) -> Path:
    """Two zones in the scene's CRS (named in the file): west half and east half."""
    x0, y1 = ORIGIN
    x1, y0 = x0 + W * 10, y1 - H * 10
    xm = x0 + 48 * 10
    def poly(a, b):
        return {"type": "Polygon", "coordinates": [[[a, y0], [b, y0], [b, y1], [a, y1], [a, y0]]]}
    fc = {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:32636"}},
          "features": [{"type": "Feature", "properties": {"name": "west"}, "geometry": poly(x0, xm)},
                       {"type": "Feature", "properties": {"name": "east"}, "geometry": poly(xm, x1)}]}
    path.write_text(json.dumps(fc))
    return path


@pytest.fixture()
def site(tmp_path: Path) -> Path:
    """Five dates: a berth at (20, 30) occupied on dates 1-3 and vacated on 4-5; a berth at (70, 60)
    occupied on 2-5; date 3 is shifted by (1, -1) px; date 4 is missing; date 5 has a corrupt band."""
    s = tmp_path / "site"
    make_scene(s / "d1", [(20, 30)])
    make_scene(s / "d2", [(20, 30), (70, 60)])
    make_scene(s / "d3", [(20, 30), (70, 60)], shift=(1, -1))
    make_scene(s / "d5", [(70, 60)])
    make_scene(s / "d6", [(70, 60)], cloud=(10, 10, 40, 45))
    (s / "d5" / "B08.tif").write_bytes(b"II*\x00 this is not a tiff")
    zones_file(s / "zones.geojson")
    (s / "watch.yaml").write_text(
        "site: testport\nzones: zones.geojson\ndetector: " + DETECTOR + "\nscenes:\n"
        "  - {date: 2024-01-01, path: d1}\n  - {date: 2024-01-06, path: d2}\n  - {date: 2024-01-11, path: d3}\n"
        "  - {date: 2024-01-16, path: d4}\n  - {date: 2024-01-21, path: d5}\n  - {date: 2024-01-26, path: d6}\n"
    )
    return s


def test_watch_on_scenes_without_crs_counts_zones_in_their_frame_and_reports_lon_lat_zones(tmp_path: Path):
    """Unplaced scenes take zones in their transform's coordinates; lon/lat zones cannot be placed on
    them: every scene is reported with that error (naming it) instead of counting nothing."""
    from rasterio.warp import transform_geom

    make_scene(tmp_path / "d1", [(20, 30), (70, 60)], crs=None)
    make_scene(tmp_path / "d2", [(20, 30)], crs=None)
    fc = json.loads(zones_file(tmp_path / "utm.geojson").read_text())
    del fc["crs"]  # the same numbers, now read as the scenes' own coordinates
    (tmp_path / "frame.geojson").write_text(json.dumps(fc))
    for f in fc["features"]:
        f["geometry"] = transform_geom("EPSG:32636", "EPSG:4326", f["geometry"])
    (tmp_path / "lonlat.geojson").write_text(json.dumps(fc))
    scenes = "scenes:\n  - {date: 2024-01-01, path: d1}\n  - {date: 2024-01-06, path: d2}\n"
    for name in ("frame", "lonlat"):
        (tmp_path / f"{name}.yaml").write_text(f"site: x\nzones: {name}.geojson\ndetector: {DETECTOR}\n{scenes}")
    res = run_watch(read_manifest(tmp_path / "frame.yaml"), tmp_path / "o1", scheduler="synchronous")
    assert counts(res.rows, "west") == {"2024-01-01": 1, "2024-01-06": 1}
    assert counts(res.rows, "east") == {"2024-01-01": 1, "2024-01-06": 0}
    res = run_watch(read_manifest(tmp_path / "lonlat.yaml"), tmp_path / "o2", scheduler="synchronous")
    errors = {r["date"]: r["error"] for r in res.rows if r["status"] == "error"}
    assert set(errors) == {"2024-01-01", "2024-01-06"}
    assert "has no CRS" in errors["2024-01-06"] and str(tmp_path / "d2") in errors["2024-01-06"]


def counts(rows, zone):
    return {r["date"]: r["count"] for r in rows if r["zone"] == zone and r["status"] == "ok"}


def test_manifest_yaml_and_csv_list_scenes_in_date_order(tmp_path: Path):
    (tmp_path / "m.csv").write_text("date,path,cloud_fraction\n2024-02-01,b,0.5\n2024-01-01,a,\n2024-01-01,c,\n")
    m = read_manifest(tmp_path / "m.csv")
    assert [s.id for s in m.scenes] == ["2024-01-01", "2024-01-01_2", "2024-02-01"]
    assert m.scenes[0].path == str(tmp_path / "a") and m.scenes[2].cloud_fraction == 0.5
    (tmp_path / "m.yaml").write_text("site: x\nscenes:\n  - {date: 2024-13-01, path: a}\n")
    with pytest.raises(InputError, match="YYYY-MM-DD"):
        read_manifest(tmp_path / "m.yaml")
    with pytest.raises(InputError, match="no such manifest"):
        read_manifest(tmp_path / "none.yaml")


def test_watch_counts_per_zone_and_date_and_reports_bad_scenes(site: Path, tmp_path: Path):
    out = tmp_path / "out"
    res = run_watch(read_manifest(site / "watch.yaml"), out, scheduler="synchronous")
    rows = list(res.rows)
    assert counts(rows, "west") == {"2024-01-01": 1, "2024-01-06": 1, "2024-01-11": 1, "2024-01-26": 0}
    assert counts(rows, "east") == {"2024-01-01": 0, "2024-01-06": 1, "2024-01-11": 1, "2024-01-26": 1}
    bad = {r["date"]: r["error"] for r in rows if r["status"] == "error"}
    assert set(bad) == {"2024-01-16", "2024-01-21"}
    assert "no such file" in bad["2024-01-16"] and "B08" in bad["2024-01-21"]
    # the shift of date 3 was measured: reference pixel (x, y) appears at (x + 1, y - 1)
    r3 = next(r for r in res.results if r["date"] == "2024-01-11")
    assert r3["registration"]["dx"] == pytest.approx(1.0, abs=0.15)
    assert r3["registration"]["dy"] == pytest.approx(-1.0, abs=0.15)
    # cloud over the west berth on the last date: the west zone is partly not assessed
    west_last = next(r for r in rows if r["date"] == "2024-01-26" and r["zone"] == "west")
    east_last = next(r for r in rows if r["date"] == "2024-01-26" and r["zone"] == "east")
    assert west_last["cloud_fraction"] > 0.2 and east_last["cloud_fraction"] < 0.05
    assert west_last["confidence"] < east_last["confidence"]
    # outputs: CSV and Parquet hold the same table, PNG and per-date GeoJSON exist
    table = pq.read_table(out / "counts.parquet").to_pylist()
    with open(out / "counts.csv") as f:
        assert len(list(csv.DictReader(f))) == len(table) == len(rows)
    assert {str(r["date"]) for r in table if r["status"] == "error"} == set(bad)
    assert (out / "timeline.png").read_bytes()[:4] == b"\x89PNG"
    gj = json.loads((out / "detections" / "2024-01-06.geojson").read_text())
    assert len(gj["features"]) == 2
    assert gj["crs"]["properties"]["name"].endswith("32636")
    x, y = gj["features"][0]["properties"]["centroid_map"]
    assert 600000 < x < 600000 + W * 10 and 3870000 - H * 10 < y < 3870000
    assert not list(out.glob("**/*.part"))


def test_slots_follow_a_berth_across_a_shifted_date_and_record_vacancy(site: Path, tmp_path: Path):
    res = run_watch(read_manifest(site / "watch.yaml"), tmp_path / "out", scheduler="synchronous")
    slots = {s.zone: s for s in res.slots}
    assert len(res.slots) == 2
    west, east = slots["west"], slots["east"]
    # object of 4 x 3 px at (20, 30): centroid (22, 31.5) on the reference grid, also on the shifted date
    assert (west.x, west.y) == pytest.approx((22.0, 31.5), abs=0.2)
    assert [west.states[d] for d in ("2024-01-01", "2024-01-06", "2024-01-11", "2024-01-16", "2024-01-21",
                                     "2024-01-26")] == ["occupied"] * 3 + ["unknown"] * 3  # last date: cloud
    assert [east.states[d] for d in ("2024-01-01", "2024-01-06", "2024-01-11", "2024-01-26")] == [
        "vacant", "occupied", "occupied", "occupied"]
    runs = {s["zone"]: s for s in res.summary["slots"]}
    assert runs["east"]["longest_run"] == {"first": "2024-01-06", "last": "2024-01-26", "dates": 3}
    assert runs["east"]["last_assessed"] == {"scene": "2024-01-26", "state": "occupied"}


def test_tracking_marks_a_clear_empty_berth_vacant():
    def result(i, dets):
        return {"id": f"d{i}", "date": f"2024-01-0{i}", "status": "ok", "detections": dets,
                "not_assessed": {"factor": 1, "shape": [1, 1], "bits": "AA=="}}
    det = {"centroid": [0.5, 0.5], "cls": "vessel", "zone": "z"}
    slots = track_slots([result(1, [det]), result(2, [det]), result(3, [])])
    assert [slots[0].states[f"d{i}"] for i in (1, 2, 3)] == ["occupied", "occupied", "vacant"]


def test_rerun_skips_finished_scenes_and_interrupted_run_leaves_no_partial_file(site: Path, tmp_path: Path):
    m = read_manifest(site / "watch.yaml")
    out = tmp_path / "out"
    seen = []

    def interrupt_at_third(result, cached):
        seen.append(result["status"])
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_watch(m, out, scheduler="synchronous", on_scene=interrupt_at_third)
    assert not (out / "counts.csv").exists() and not list(out.glob("**/*.part"))
    n_ok = seen.count("ok")
    assert n_ok >= 2 and len(list((out / ".cache").glob("*.json"))) == n_ok  # finished scenes were kept
    res = run_watch(m, out, scheduler="synchronous")
    # five scenes have files to hash (d4 is missing): the finished ones are reused, the rest computed
    assert res.summary["scenes_cached"] == n_ok and res.summary["scenes_computed"] == 5 - n_ok
    with pytest.raises(OutputError):  # outputs of a finished run need --overwrite
        run_watch(m, out, scheduler="synchronous")
    again = run_watch(m, out, scheduler="synchronous", overwrite=True)
    assert again.summary["scenes_cached"] == 4 and again.rows == res.rows
    # a changed input file changes its content hash: only that scene is recomputed
    make_scene(site / "d2", [(20, 30)])
    third = run_watch(m, out, scheduler="synchronous", overwrite=True)
    assert third.summary["scenes_cached"] == 3
    assert counts(list(third.rows), "east")["2024-01-06"] == 0


def test_results_cached_with_other_detector_models_are_computed_again(site: Path, tmp_path: Path, monkeypatch):
    import imgdiff.watch.cache

    m = read_manifest(site / "watch.yaml")
    out = tmp_path / "out"
    first = run_watch(m, out, scheduler="synchronous")
    n_ok = first.summary["scenes_ok"]  # results of the scenes that were read are cached
    assert n_ok >= 3 and run_watch(m, out, scheduler="synchronous", overwrite=True).summary["scenes_cached"] == n_ok
    # retrained weights under the same version number: nothing cached with the old ones is reused
    monkeypatch.setattr(imgdiff.watch.cache, "models_digest", lambda: "retrained")
    again = run_watch(m, out, scheduler="synchronous", overwrite=True)
    assert again.summary["scenes_cached"] == 0 and again.summary["scenes_ok"] == n_ok


def test_local_dask_cluster_gives_the_same_table_as_synchronous(site: Path, tmp_path: Path):
    m = read_manifest(site / "watch.yaml")
    sync = run_watch(m, tmp_path / "a", scheduler="synchronous")
    dist = run_watch(m, tmp_path / "b", workers=2, processes=False)
    assert dist.summary["engine"]["scheduler"] == "LocalCluster" and dist.summary["engine"]["workers"] == 2
    assert dist.rows == sync.rows


def test_local_worker_processes_keep_their_heap_between_scenes_and_one_thread_each():
    from imgdiff.watch import WORKER_MALLOC_ENV, _worker_environ

    env = _worker_environ()
    # dask's own MALLOC_TRIM_THRESHOLD_=65536 would hand every temporary back to the system
    assert int(env["MALLOC_TRIM_THRESHOLD_"]) >= 64 * 2**20
    assert int(env["MALLOC_MMAP_THRESHOLD_"]) == 32 * 2**20  # glibc's largest accepted value
    assert all(env[k] == v for k, v in WORKER_MALLOC_ENV.items())
    assert str(env.get("OMP_NUM_THREADS")) == "1"


def test_cli_watch_json_reports_failed_scenes_and_exit_code(site: Path, tmp_path: Path):
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["watch", str(site / "watch.yaml"), "-o", str(out), "--scheduler", "synchronous",
                                 "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["scenes_ok"] == 4 and s["scenes_failed"] == 2 and len(s["slots"]) == 2
    r = CliRunner().invoke(cli, ["watch", str(site / "watch.yaml"), "-o", str(out), "--scheduler", "synchronous"])
    assert r.exit_code == 2 and "--overwrite" in r.stderr
    r = CliRunner().invoke(cli, ["watch", str(site / "nope.yaml"), "-o", str(out)])
    assert r.exit_code == 2 and "no such manifest" in r.stderr


def test_cli_watch_local_cluster_has_one_worker_per_usable_core_by_default(site: Path, tmp_path: Path):
    import os

    from imgdiff.watch import usable_cores

    assert 1 <= usable_cores() <= (os.cpu_count() or 1)
    r = CliRunner().invoke(cli, ["watch", str(site / "watch.yaml"), "-o", str(tmp_path / "out"), "--threads", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["engine"] == {"scheduler": "LocalCluster", "workers": usable_cores(), "processes": False}


def test_sigterm_becomes_keyboard_interrupt_so_cleanup_runs():
    import os
    import signal

    from imgdiff_cli.watch import sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before


def test_scenes_above_the_size_limit_are_processed_window_by_window_with_the_same_counts(
        site: Path, tmp_path: Path, monkeypatch):
    import imgdiff.tiles
    import imgdiff.watch.process

    m = read_manifest(site / "watch.yaml")
    whole = run_watch(m, tmp_path / "a", scheduler="synchronous")
    monkeypatch.setattr(imgdiff.watch.process, "TILED_ABOVE_PX", 32 * 32)
    monkeypatch.setattr(imgdiff.tiles, "TILE_SIZE", 40)  # 3 x 3 windows; berths at (20, 30) and (70, 60)
    monkeypatch.setattr(imgdiff.tiles, "DETECT_OVERLAP", 12)
    tiled = run_watch(m, tmp_path / "b", scheduler="synchronous")
    assert [(r["date"], r["zone"], r["count"]) for r in tiled.rows] == [
        (r["date"], r["zone"], r["count"]) for r in whole.rows]
    r3 = next(r for r in tiled.results if r["date"] == "2024-01-11")
    assert (r3["registration"]["dx"], r3["registration"]["dy"]) == pytest.approx((1.0, -1.0), abs=0.15)
    assert [s.states for s in tiled.slots] == [s.states for s in whole.slots]


def test_an_existing_dask_scheduler_can_be_given_by_address(site: Path, tmp_path: Path):
    from dask.distributed import LocalCluster

    m = read_manifest(site / "watch.yaml")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        res = run_watch(m, tmp_path / "out", scheduler=cluster.scheduler_address)
        assert res.summary["engine"] == {"scheduler": cluster.scheduler_address, "workers": 1}
    assert res.summary["scenes_ok"] == 4 and res.summary["scenes_failed"] == 2


@pytest.mark.parametrize("tiled", [False, True], ids=["whole", "tiled"])
def test_a_vessel_watch_records_the_path_radiance_taken_off_each_date(tmp_path: Path, monkeypatch, tiled: bool):
    if tiled:  # window by window, the path radiance measured once on the scene's decimated read
        import imgdiff.watch.process

        monkeypatch.setattr(imgdiff.watch.process, "TILED_ABOVE_PX", 32 * 32)
    # open water as dark as the detector's L2A training ports on the first date; the same water under
    # top-of-atmosphere path radiance (falling with wavelength) on the second
    rng = np.random.default_rng(3)
    clear = np.array([0.030, 0.020, 0.012, 0.008])[:, None, None] + rng.normal(0, 0.002, (4, H, W))
    for name, refl in (("clear", clear), ("hazy", clear + np.array([0.05, 0.035, 0.02, 0.01])[:, None, None])):
        (tmp_path / name).mkdir()
        for i, b in enumerate(BANDS):
            write_band(tmp_path / name / f"{b}.tif", np.round(np.clip(refl[i], 0.001, 1) * 10000).astype(np.uint16),
                       transform=TRANSFORM)
    zones_file(tmp_path / "zones.geojson")
    (tmp_path / "watch.yaml").write_text("site: sea\nzones: zones.geojson\ndetector: vessels\nscenes:\n"
                                         "  - {date: 2024-01-01, path: clear}\n  - {date: 2024-01-06, path: hazy}\n")
    res = run_watch(read_manifest(tmp_path / "watch.yaml"), tmp_path / "out", scheduler="synchronous")
    by_date = {r["date"]: r["path_radiance"] for r in res.results}
    assert by_date["2024-01-01"] == {"B02": 0.0, "B03": 0.0, "B04": 0.0, "B08": 0.0}
    # what lifts the darkest water (1st percentile) above the darkest water of the training ports
    expected = np.percentile(clear[0] + 0.05, 1) - DARK_WATER["B02"]
    assert by_date["2024-01-06"]["B02"] == pytest.approx(expected, abs=0.002)
    hazy = by_date["2024-01-06"]
    assert hazy["B02"] >= hazy["B03"] >= hazy["B04"] >= hazy["B08"] >= 0 and hazy["B03"] > 0
    table = {(r["date"], r["zone"]): r["path_radiance"] for r in res.rows}  # the largest band's, per row
    assert table[("2024-01-01", "west")] == 0.0
    assert table[("2024-01-06", "east")] == pytest.approx(by_date["2024-01-06"]["B02"])
    assert {r["path_radiance"] for r in pq.read_table(tmp_path / "out" / "counts.parquet").to_pylist()} == {
        0.0, by_date["2024-01-06"]["B02"]}


def test_a_scene_found_in_the_cache_is_reported_under_its_current_name_and_path(site: Path, tmp_path: Path):
    m = read_manifest(site / "watch.yaml")
    out = tmp_path / "out"
    run_watch(m, out, scheduler="synchronous")
    (site / "d2").rename(site / "d2_moved")
    (site / "moved.yaml").write_text((site / "watch.yaml").read_text().replace("path: d2}", "path: d2_moved}"))
    res = run_watch(read_manifest(site / "moved.yaml"), out, scheduler="synchronous", overwrite=True)
    assert res.summary["scenes_cached"] == 4  # d2 among them (d5 is corrupt and never cached)
    (row,) = [s for s in res.summary["scenes"] if s["date"] == "2024-01-06"]
    assert row["path"] == str(site / "d2_moved")
    assert {r["source"] for r in res.rows if r["date"] == "2024-01-06"} == {str(site / "d2_moved")}


def test_a_reference_scene_whose_pixels_cannot_be_decoded_is_an_input_error_before_anything_is_written(
        site: Path, tmp_path: Path):
    b04 = site / "d1" / "B04.tif"  # the manifest's first scene: the default reference
    with rasterio.open(b04) as ds:
        profile, pixels = ds.profile, ds.read()
    with rasterio.open(b04, "w", **{**profile, "compress": "deflate"}) as ds:
        ds.write(pixels)
    with rasterio.open(b04) as ds:  # keep the header whole, damage the first compressed strip
        offset = int(ds.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
    data = bytearray(b04.read_bytes())
    data[offset:offset + 64] = b"\xff" * 64
    b04.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"reference scene .*B04\.tif: cannot read"):
        run_watch(read_manifest(site / "watch.yaml"), tmp_path / "out", scheduler="synchronous")
    assert not (tmp_path / "out").exists()


def test_run_watch_given_a_path_says_to_read_the_manifest(site: Path, tmp_path: Path):
    with pytest.raises(ArgumentTypeError, match="run_watch: manifest .*read_manifest"):
        run_watch(str(site / "watch.yaml"), tmp_path / "out")
