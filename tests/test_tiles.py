"""Windows with overlap: no seams, no double counts, and the same answer as the whole-scene path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from imgdiff_cli.main import cli
from rasterio.transform import from_origin
from scipy import ndimage as ndi

import imgdiff
from imgdiff.io.read import read_scene
from imgdiff.tiles import compare_tiled, detect_tiled, hist_noise_floor, otsu_threshold, tile_grid

from .conftest import write_band
from .test_watch import bright_objects

BANDS = ("B02", "B03", "B04", "B08")
TRANSFORM = from_origin(600000, 3870000, 10, 10)


def _field(shape: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = ndi.gaussian_filter(rng.normal(size=(4, *shape)), (0, 2.0, 2.0))
    return (0.05 + 0.2 * (f - f.min()) / (f.max() - f.min())).astype(np.float32)


def _write(folder: Path, refl: np.ndarray) -> Path:
    folder.mkdir(parents=True)
    for i, b in enumerate(BANDS):
        write_band(folder / f"{b}.tif", np.round(refl[i] * 10000).astype(np.uint16), transform=TRANSFORM)
    return folder


@pytest.mark.parametrize("shape,size,overlap", [((300, 257), 128, 16), ((64, 64), 100, 8), ((129, 1), 64, 3)])
def test_tile_cores_partition_the_grid_and_read_windows_hold_them(shape, size, overlap):
    tiles = tile_grid(shape, size, overlap)
    cover = np.zeros(shape, int)
    for t in tiles:
        x0, y0, x1, y1 = t.core
        cover[y0:y1, x0:x1] += 1
        r = t.read
        assert r[0] == max(0, x0 - overlap) and r[3] == min(shape[0], y1 + overlap)
        rows, cols = t.core_slices
        assert rows.stop - rows.start == y1 - y0 and cols.stop - cols.start == x1 - x0
    assert (cover == 1).all()


@pytest.mark.parametrize("blocks", [(512, 512, 0, 0), (1024, 512, 300, 17)])
def test_sample_windows_move_into_one_source_block_each(blocks):
    from imgdiff.tiles import grid_boxes, sample_boxes

    shape = (10980, 10980)
    bw, bh, ox, oy = blocks
    for plain, snapped, size in ((grid_boxes(shape, 128, 8), grid_boxes(shape, 128, 8, blocks=blocks), 128),
                                 (sample_boxes(shape, 512), sample_boxes(shape, 512, blocks=blocks), 512)):
        assert len(snapped) == len(plain)
        for (x0, y0, x1, y1), (px0, py0, _, _) in zip(snapped, plain):
            assert (x1 - x0, y1 - y0) == (size, size)
            assert 0 <= x0 and x1 <= shape[1] and 0 <= y0 and y1 <= shape[0]
            assert (x0 + ox) // bw == (x1 - 1 + ox) // bw and (y0 + oy) // bh == (y1 - 1 + oy) // bh  # one block
            assert abs(x0 - px0) < size and abs(y0 - py0) < size
    assert grid_boxes((100, 100), 128, 2, blocks=blocks) == grid_boxes((100, 100), 128, 2)  # chips larger than the grid


def test_otsu_of_a_histogram_matches_skimage_on_a_bimodal_sample():
    from skimage.filters import threshold_otsu

    from imgdiff.change import noise_floor

    rng = np.random.default_rng(1)
    v = np.concatenate([rng.normal(0.05, 0.01, 20000), rng.normal(0.3, 0.05, 2000)]).clip(0, 1)
    edges = np.linspace(0, 1, 4097)
    counts = np.histogram(v, edges)[0]
    t = otsu_threshold(counts, edges)
    assert t == pytest.approx(threshold_otsu(hist=(counts, (edges[:-1] + edges[1:]) / 2)), abs=1e-9)
    assert np.mean((v > t) != (v > threshold_otsu(v))) < 1e-3  # same split as Otsu on the raw values
    assert hist_noise_floor(counts, edges) == pytest.approx(noise_floor(v), abs=5e-4)


def test_detections_on_tile_borders_are_kept_once_with_full_grid_boxes(tmp_path: Path):
    refl = _field((200, 200), 3)
    truth = [(60, 62), (126, 30), (62, 126), (127, 127), (10, 180), (190, 5)]  # several straddle 64-px borders
    for x, y in truth:
        refl[3, y:y + 3, x:x + 4] = 0.7
        refl[:3, y:y + 3, x:x + 4] = 0.1
    scene_dir = _write(tmp_path / "s", refl)
    dets = detect_tiled(scene_dir, bright_objects, tile_size=64, overlap=16, workers=2)
    whole = bright_objects(read_scene(scene_dir))
    assert len(dets) == len(truth) == len(whole)
    assert sorted(map(tuple, dets.boxes)) == sorted(map(tuple, whole.boxes)) == sorted(
        (x, y, x + 4, y + 3) for x, y in truth)
    assert dets.transform == whole.transform


@pytest.fixture()
def pair(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    """300 x 280 pair; the after scene is shifted by (dx, dy) = (1, -2) px and holds 5 changed squares of
    12 x 12 px, 3 of them across 128-px tile borders, plus 2-px specks (below the mapping unit)."""
    big = _field((320, 300), 7)
    noise = np.random.default_rng(8).normal(0, 0.004, size=(2, *big.shape)).astype(np.float32)
    before = (big + noise[0])[:, 10:310, 10:290]
    after = (big + noise[1])[:, 10 + 2:310 + 2, 10 - 1:290 - 1].copy()  # reference (x, y) appears at (x + 1, y - 2)
    truth = np.zeros((300, 280), bool)
    for x, y in [(122, 122), (250, 60), (40, 250), (180, 122), (60, 60)]:
        after[3, y - 2:y - 2 + 12, x + 1:x + 1 + 12] += 0.3  # NIR up: new vegetation (not cloud-white)
        truth[y:y + 12, x:x + 12] = True
    after[3, 127:128, 200:202] += 0.3  # reference pixels (199..200, 129), by the row-128 tile border  # a 2-px speck on a border
    return _write(tmp_path / "before", before), _write(tmp_path / "after", after), truth


def test_tiled_compare_matches_the_whole_scene_compare(pair, tmp_path: Path):
    b, a, truth = pair
    report = compare_tiled(b, a, tmp_path / "out", tile_size=128, overlap=16, workers=2, method="cva-otsu")
    with rasterio.open(tmp_path / "out" / "change.tif") as ds:
        mag, mask, na = ds.read()
        assert ds.block_shapes[0] == (256, 256) and ds.profile["compress"] == "zstd"
    whole = imgdiff.compare(b, a, method="cva-otsu")
    assert report["coregistration"]["dx"] == pytest.approx(1.0, abs=0.05)
    assert report["coregistration"]["dy"] == pytest.approx(-2.0, abs=0.05)
    assert ((mask > 0) == whole.change.mask).mean() > 0.999
    assert ((na > 0) == ~whole.change.valid).all()
    assert np.nanmax(np.abs(mag - whole.change.magnitude)) < 0.01
    # every changed square found whole and once, across tile borders; the speck is dropped
    labels, n = ndi.label(mask > 0, structure=np.ones((3, 3)))
    assert n == 5
    inner = ndi.binary_erosion(truth, iterations=3)
    assert (mask[inner] > 0).all() and not (mask[129, 199:201] > 0).any()
    assert report["change"]["changed_pixels"] == int((mask > 0).sum())
    assert report["tiling"]["tiles"] == 9 and (tmp_path / "out" / "report.md").is_file()
    assert not list((tmp_path / "out").glob(".*"))


def test_tiled_learned_compare_takes_one_pass_and_matches_the_whole_scene(pair, tmp_path: Path):
    from imgdiff.tiles import change_passes

    b, a, truth = pair
    seen: list[str] = []
    report = compare_tiled(b, a, tmp_path / "out", tile_size=128, overlap=32, workers=2, method="mlp",
                           on_tile=lambda name, tile: seen.append(name))
    assert change_passes("mlp") == 1 and change_passes("cva-otsu") == 2
    assert seen == ["magnitude"] * report["tiling"]["tiles"]  # no second pass over the tiles
    with rasterio.open(tmp_path / "out" / "change.tif") as ds:
        mag, mask, na = ds.read()
    whole = imgdiff.compare(b, a, method="mlp")
    assert report["change"]["method"] == whole.change.method == "mlp"
    ok = whole.change.valid & (na == 0)
    assert ((mask > 0) == whole.change.mask)[ok].mean() > 0.995
    assert np.nanmedian(np.abs(mag - whole.change.magnitude)[ok]) < 0.01
    assert report["change"]["changed_pixels"] == int((mask > 0).sum())
    assert not list((tmp_path / "out").glob(".*"))  # no temporary magnitude file left


def test_cli_compare_with_tile_size_writes_the_same_outputs(pair, tmp_path: Path):
    b, a, _ = pair
    out = tmp_path / "cli"
    r = CliRunner().invoke(cli, ["compare", str(b), str(a), "-o", str(out), "--tile-size", "128", "--method",
                                 "cva-otsu", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["tiling"]["tile_size"] == 128 and rep["change"]["method"] == "cva-otsu"
    assert rep["change"]["changed_pixels"] == pytest.approx(5 * 144, abs=30)  # five 12 x 12 squares
    assert sorted(p.name for p in out.iterdir()) == ["change.tif", "report.json", "report.md"]
    r = CliRunner().invoke(cli, ["compare", str(b), str(a), "-o", str(out), "--tile-size", "128"])
    assert r.exit_code == 2 and "--overwrite" in r.stderr
    r = CliRunner().invoke(cli, ["compare", str(b), str(a), "-o", str(tmp_path / "em"), "--tile-size", "128",
                                 "--method", "cva-em"])
    assert r.exit_code == 2 and "not available in windows" in r.stderr


def test_cli_detect_with_tile_size_writes_geojson_in_full_grid_coordinates(tmp_path: Path):
    refl = _field((300, 300), 5)
    refl[1, :, :150] = 0.3  # land (green above NIR is water on the east side)
    refl[3, :, :150] = 0.35
    for x, y in [(200, 60), (253, 250), (190, 200)]:
        refl[:, y:y + 3, x:x + 6] = 0.3
    scene_dir = _write(tmp_path / "s", refl)
    out = tmp_path / "v.geojson"
    r = CliRunner().invoke(cli, ["detect", str(scene_dir), "-o", str(out), "--tile-size", "256", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    fc = json.loads(out.read_text())
    assert len(fc["features"]) == summary["count"]
    for f in fc["features"]:  # every box lies inside the scene footprint (no tile-local coordinates)
        x, y = f["properties"]["centroid_map"]
        assert 600000 <= x <= 603000 and 3867000 <= y <= 3870000


def test_interrupted_tiled_compare_leaves_no_file_behind(pair, tmp_path: Path):
    b, a, _ = pair
    seen = []

    def interrupt(name, tile):
        seen.append(name)
        if name == "threshold":  # second pass, first tile written: the output file is half-done
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compare_tiled(b, a, tmp_path / "out", tile_size=128, overlap=16, workers=1, method="cva-otsu",
                      on_tile=interrupt)
    assert seen.count("magnitude") == 9
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.shared_data
@pytest.mark.parametrize("method,min_agreement", [("cva-otsu", 0.995), ("irmad", 0.98), ("logratio-otsu", 0.98),
                                                 ("mlp", 0.98)])
def test_tiled_compare_of_a_real_pair_with_bbox_matches_the_whole_scene_path(shared_data, tmp_path: Path, method,
                                                                             min_agreement):
    from .conftest import need

    city = need(shared_data / "oscd" / "beirut")
    bbox = (35.48, 33.82, 35.53, 33.87)  # about 520 x 520 px of the EPSG:4326 grid
    bands = ["B02", "B03", "B04", "B08"]
    report = compare_tiled(city / "before", city / "after", tmp_path / "out", bands=bands, bbox=bbox,
                           tile_size=256, overlap=32, method=method)
    whole = imgdiff.compare(city / "before", city / "after", bands=bands, bbox=bbox, method=method)
    with rasterio.open(tmp_path / "out" / "change.tif") as ds:
        mask = ds.read(2) > 0
        assert ds.transform.almost_equals(whole.grid.transform) and ds.shape == whole.grid.shape
    assert report["coregistration"]["dx"] == pytest.approx(whole.registration.dx, abs=0.15)
    assert report["coregistration"]["dy"] == pytest.approx(whole.registration.dy, abs=0.15)
    agree = (mask == whole.change.mask)[whole.change.valid].mean()
    assert agree > min_agreement
    assert report["change"]["method"] == whole.change.method == method
    assert report["change"]["changed_fraction"] == pytest.approx(whole.statistics()["changed_fraction"], rel=0.2)


@pytest.mark.shared_data
def test_tiled_learned_compare_scales_every_window_alike_and_matches_a_whole_city(shared_data, tmp_path: Path):
    """Open-sea and city windows get the features' difference scale of the whole raster (measured on
    sample windows), so 256 px tiles flag what one whole-scene comparison flags (with a scale per
    window they flagged 45 % more of Beirut, agreeing on 97 % of pixels)."""
    from .conftest import need

    city = need(shared_data / "oscd" / "beirut")
    bands = ["B02", "B03", "B04", "B08"]
    report = compare_tiled(city / "before", city / "after", tmp_path / "out", bands=bands, tile_size=256,
                           overlap=32, method="mlp")
    whole = imgdiff.compare(city / "before", city / "after", bands=bands, method="mlp")
    with rasterio.open(tmp_path / "out" / "change.tif") as ds:
        mask = ds.read(2) > 0
    v = whole.change.valid
    assert report["tiling"]["tiles"] >= 16
    tiling = report["tiling"]  # the whole-raster statistics every tile used, for the record
    assert len(tiling["difference_scales"]) == len(bands) and all(0 < x < 0.2 for x in tiling["difference_scales"])
    assert all(len(tiling["fill"][d]) == len(bands) and all(0 < x < 1 for x in tiling["fill"][d])
               for d in ("before", "after"))
    assert (mask == whole.change.mask)[v].mean() > 0.995
    assert mask[v].mean() == pytest.approx(whole.change.mask[v].mean(), rel=0.05)


def _write_tiled(path: Path, dn: np.ndarray, res: float, block: int = 64, nodata: int | None = 0) -> None:
    with rasterio.open(path, "w", driver="GTiff", width=dn.shape[1], height=dn.shape[0], count=1, dtype="uint16",
                       crs="EPSG:32636", transform=from_origin(600000, 3870000, res, res), tiled=True,
                       blockxsize=block, blockysize=block, compress="deflate", nodata=nodata) as ds:
        ds.write(dn, 1)


@pytest.mark.parametrize("bbox", [None, (34.1005, 34.9556, 34.1200, 34.9700)])
def test_strip_reader_reads_every_window_as_read_window_does(tmp_path: Path, bbox):
    """10 m and 20 m bands in 64 px blocks, a no-data corner (GDAL resampling there), a zero in one band,
    tiles in row-major order: the same reflectance, mask and grid as one read_scene per window."""
    from imgdiff.tiles import StripReader, read_window, work_grid

    rng = np.random.default_rng(4)
    folder = tmp_path / "s"
    folder.mkdir()
    for b in BANDS:
        dn = rng.integers(200, 4000, size=(300, 280)).astype(np.uint16)
        dn[:20, :30] = 0  # no data (0 in every band)
        if b == "B08":
            dn[100:104, 100:104] = 0  # 0 in one band only: a dark valid pixel
        _write_tiled(folder / f"{b}.tif", dn, 10)
    _write_tiled(folder / "B11.tif", rng.integers(200, 4000, size=(150, 140)).astype(np.uint16), 20)
    names = [*BANDS, "B11"]
    grid = work_grid(folder, names, bbox)
    tiles = tile_grid(grid.shape, 96, 16)
    with StripReader(folder, grid, names) as reader:
        assert reader.offset is not None  # the strips serve these tiles
        got = [reader.read(t.read) for t in tiles]
    assert any(np.nanmin(s.bands["B08"]) == 0 for s in got if s is not None)  # the dark pixel stays valid
    for t, s in zip(tiles, got):
        ref = read_window(folder, grid, t.read, names)
        assert s.transform.almost_equals(ref.transform) and (s.valid == ref.valid).all()
        for b in names:
            np.testing.assert_allclose(s.bands[b], ref.bands[b], rtol=0, atol=1e-6, equal_nan=True)


def test_band_strip_serves_any_row_sequence_from_its_kept_buffer(tmp_path: Path):
    """Rows moving down by overlapping windows (the kept rows move to the buffer's front, or the
    buffer grows), jumps ahead and back (a restart): always the file's rows."""
    from imgdiff.io.read import Radiometry, find_band_sources
    from imgdiff.tiles.reading import _BandStrip

    dn = np.random.default_rng(5).integers(1, 60000, size=(500, 70)).astype(np.uint16)
    _write_tiled(tmp_path / "B02.tif", dn, 10, block=32)
    (source,) = find_band_sources(tmp_path, ["B02"])
    windows = [(0, 40), (20, 90), (80, 81), (81, 200), (150, 260), (250, 251), (400, 470), (10, 50),
               (45, 130), (470, 500), (499, 500), (0, 500)]
    with rasterio.open(tmp_path / "B02.tif") as ds:
        strip = _BandStrip(source, ds, Radiometry(1e-4, 0.0, "test"))
        for r0, r1 in windows:
            np.testing.assert_array_equal(strip.rows(r0, r1), dn[r0:r1], err_msg=f"rows {r0}-{r1}")
            assert strip.n <= len(strip.buf)


def test_whole_factor_upsampling_equals_gdal_bilinear():
    from rasterio.warp import reproject

    from imgdiff.tiles import _upsample

    src = np.random.default_rng(2).random((60, 50)).astype(np.float32)
    s_tr = from_origin(600000, 3870000, 20, 20)
    for x0, y0, w, h in [(0, 0, 100, 120), (7, 3, 57, 61), (41, 80, 59, 40)]:
        d_tr = from_origin(600000 + 10 * x0, 3870000 - 10 * y0, 10, 10)
        gdal = np.full((h, w), np.nan, np.float32)
        reproject(src, gdal, src_transform=s_tr, src_crs="EPSG:32636", dst_transform=d_tr, dst_crs="EPSG:32636",
                  src_nodata=np.nan, dst_nodata=np.nan, resampling=rasterio.enums.Resampling.bilinear)
        np.testing.assert_allclose(_upsample(src, s_tr, d_tr, (h, w)), gdal, rtol=0, atol=1e-6)
    holed = src.copy()
    holed[5, 5] = np.nan
    assert _upsample(holed, s_tr, from_origin(600000, 3870000, 10, 10), (40, 40)) is None  # GDAL handles NaN


def _coast_scene(tmp_path: Path) -> tuple[Path, list[tuple[int, int]]]:
    """600 x 600 px: land west of column 300, calm sea east of it; a moored ship on the coast, two ships at sea."""
    rng = np.random.default_rng(6)
    refl = np.empty((4, 600, 600), np.float32)
    refl[:, :, :300] = np.array([0.08, 0.10, 0.12, 0.30])[:, None, None]  # land: NIR above green
    refl[:, :, 300:] = np.array([0.06, 0.05, 0.03, 0.02])[:, None, None]  # water: green above NIR
    refl += rng.normal(0, 0.001, refl.shape).astype(np.float32)  # sensor noise
    ships = [(303, 100), (450, 300), (560, 520)]
    for x, y in ships:
        refl[:3, y:y + 3, x:x + 8] = 0.2
        refl[3, y:y + 3, x:x + 8] = 0.6  # NIR-bright: bright_objects finds them
    return _write(tmp_path / "coast", refl), ships


def test_vessel_screen_skips_inland_and_calm_sea_but_keeps_the_coast_and_bright_targets(tmp_path: Path):
    from imgdiff.tiles import vessel_screen

    folder, ships = _coast_scene(tmp_path)
    marked = vessel_screen(read_scene(folder))
    assert not marked[:, :250].any()  # inland, far from water
    assert marked[:, 290:310].all()  # the coast (moored ships)
    assert not marked[150:250, 350:420].any()  # calm open sea
    for x, y in ships:
        assert marked[y + 1, x + 4]
    assert marked.mean() < 0.25


def test_screened_tiled_detection_finds_what_the_whole_scene_detector_finds(tmp_path: Path):
    """The cascade runs the detector on a fraction of the tile only, and misses nothing it would find."""
    from imgdiff.tiles import vessel_screen

    folder, ships = _coast_scene(tmp_path)
    whole = bright_objects(read_scene(folder))
    calls = []

    def counting(scene):
        calls.append(scene.shape[0] * scene.shape[1])
        return bright_objects(scene)

    dets = detect_tiled(folder, counting, tile_size=256, overlap=32, screen=vessel_screen, block=(64, 64),
                        context=16)
    assert len(whole) == len(ships) == len(dets)
    assert sorted(map(tuple, dets.boxes)) == sorted(map(tuple, whole.boxes))
    assert sum(calls) < 0.8 * 600 * 600  # inland and the calm sea are skipped (the coast runs the whole height)


@pytest.mark.shared_data
@pytest.mark.parametrize("port", ["casablanca", "honolulu"])
def test_tiled_screened_vessel_detection_on_a_real_port_matches_the_whole_scene(shared_data, port):
    """A real sen2ships port cut into 256 px tiles (one normalisation for the whole scene, the screen,
    one network per thread) gives the whole-scene detections."""
    from functools import partial

    from imgdiff.detect.vessels import detect_vessels
    from imgdiff.evaluate.detection import match_detections
    from imgdiff.tiles import vessel_levels, vessel_screen

    from .conftest import need

    folder = need(shared_data / "sen2ships" / port)
    bands = ["B02", "B03", "B04", "B08"]
    levels = vessel_levels(folder, bands)
    whole = detect_vessels(read_scene(folder, bands=bands), levels=levels)
    tiled = detect_tiled(folder, partial(detect_vessels, levels=levels), bands=bands, tile_size=256, overlap=128,
                         workers=2, detector_thread_safe=True, screen=vessel_screen)
    m = match_detections(tiled.boxes, tiled.scores, whole.boxes)
    assert len(whole) >= 5
    assert m.fn <= max(1, 0.05 * len(whole)) and m.fp <= max(1, 0.05 * len(whole))


@pytest.mark.shared_data
def test_scene_levels_from_a_decimated_read_match_the_whole_scene_percentiles(shared_data):
    from imgdiff.detect.vessels import band_levels
    from imgdiff.tiles import vessel_levels

    from .conftest import need

    folder = need(shared_data / "sen2ships" / "busan")
    scene = read_scene(folder, bands=["B03", "B08"])
    levels = vessel_levels(folder, ["B03", "B08"])
    assert set(levels) == {"B03", "B08"}
    for b in levels:
        lo, ref = band_levels(scene.bands[b])
        assert levels[b][0] == pytest.approx(lo, rel=0.1) and levels[b][1] == pytest.approx(ref, rel=0.05)


def test_tile_threads_hold_opencv_and_blas_to_one_thread_each_and_restore_them():
    import cv2
    from threadpoolctl import threadpool_info

    from imgdiff.tiles import one_thread_per_worker

    before = cv2.getNumThreads()
    with one_thread_per_worker(2):
        assert cv2.getNumThreads() == 1
        assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas")
    assert cv2.getNumThreads() == before
    with one_thread_per_worker(1):  # one tile thread: the libraries keep their own threads
        assert cv2.getNumThreads() == before


def test_tiled_detection_runs_a_thread_safe_detector_on_one_opencv_and_network_thread_per_tile_thread(
        tmp_path: Path):
    import cv2

    refl = _field((200, 200), 3)
    refl[3, 60:63, 60:64] = 0.7
    scene_dir = _write(tmp_path / "s", refl)
    seen: list[int] = []

    def detector(scene):
        seen.append(cv2.getNumThreads())  # what imgdiff.detect.onnx.load_network sizes a network's pool by
        return bright_objects(scene)

    before = cv2.getNumThreads()
    detect_tiled(scene_dir, detector, tile_size=64, overlap=16, workers=2, detector_thread_safe=True)
    assert seen and set(seen) == {1}
    assert cv2.getNumThreads() == before
    seen.clear()  # calls serialised by a lock: one at a time, so each may use every core
    detect_tiled(scene_dir, detector, tile_size=64, overlap=16, workers=2)
    assert set(seen) == {before}


def test_coregistration_ffts_stay_on_one_thread_inside_tile_threads_and_workers():
    import cv2

    from imgdiff.coregister import fft_threads
    from imgdiff.tiles import one_thread_per_worker

    with one_thread_per_worker(2):  # also what dask workers set (imgdiff.watch.cluster._one_thread_per_worker)
        assert fft_threads() == 1
    assert fft_threads() == max(1, min(2, cv2.getNumThreads()))


def test_detector_windows_hold_every_marked_block_once_with_context_and_cost_less_than_row_runs():
    from imgdiff.tiles import Tile, _window_cost, plan_windows, screened_blocks, screened_runs

    rng = np.random.default_rng(3)
    marked = np.zeros((700, 700), bool)
    marked[:, 300:340] = True  # a coast strip crossing the tile: context shared along it
    for y, x in rng.integers(0, 680, (12, 2)):
        marked[y:y + 8, x:x + 8] = True  # scattered bright targets at sea
    tile = Tile(0, 0, (0, 0, 700, 700), (50, 50, 650, 650))
    blocks, xe, ye = screened_blocks(marked, tile, (16, 16))
    context = 48
    windows = plan_windows(blocks, xe, ye, context, tile.read)
    owner = np.zeros(blocks.shape, int)
    for (wx0, wy0, wx1, wy1), (rx0, ry0, rx1, ry1) in windows:
        cols = (xe[:-1] >= rx0) & (xe[1:] <= rx1)
        rows = (ye[:-1] >= ry0) & (ye[1:] <= ry1)
        owner[np.ix_(rows, cols)] += 1
        assert wx0 == max(rx0 - context, 0) and wy0 == max(ry0 - context, 0)  # context (up to the read window)
        assert wx1 == min(rx1 + context, 700) and wy1 == min(ry1 + context, 700)
    assert (owner[blocks] == 1).all()  # every marked block in exactly one region
    core = marked[50:650, 50:650]
    for (y, x) in np.argwhere(core)[::97]:  # the blocks are exact: a marked pixel's block is marked
        assert blocks[np.searchsorted(ye, y + 50, "right") - 1, np.searchsorted(xe, x + 50, "right") - 1]
    runs = screened_runs(marked, tile, (32, 256))  # the former plan: one window per run of blocks in a row
    cost_runs = sum(float(_window_cost(np.float64(min(x1 + context, 700) - max(x0 - context, 0)),
                                       np.float64(min(y1 + context, 700) - max(y0 - context, 0))))
                    for x0, y0, x1, y1 in runs)
    cost_plan = sum(float(_window_cost(np.float64(w[2] - w[0]), np.float64(w[3] - w[1]))) for w, _ in windows)
    assert cost_plan < 0.8 * cost_runs


def test_cli_detect_takes_fewer_network_passes_on_request(tmp_path: Path):
    refl = _field((300, 300), 5)
    refl[1, :, :150] = 0.3
    refl[3, :, :150] = 0.35
    for x, y in [(200, 60), (253, 250), (190, 200)]:
        refl[:, y:y + 3, x:x + 6] = 0.3
    scene_dir = _write(tmp_path / "s", refl)
    for tta in ("1", "8"):
        out = tmp_path / f"v{tta}.geojson"
        r = CliRunner().invoke(cli, ["detect", str(scene_dir), "-o", str(out), "--tile-size", "256", "--tta", tta,
                                     "--json"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["count"] == len(json.loads(out.read_text())["features"])
    r = CliRunner().invoke(cli, ["detect", str(scene_dir), "-o", str(tmp_path / "x.geojson"), "--tta", "9"])
    assert r.exit_code == 2 and "--tta" in r.output


def test_screen_cell_median_equals_numpy_nanmedian_with_empty_and_even_cells():
    import warnings

    from imgdiff.tiles.vessels import _nan_median_last

    rng = np.random.default_rng(6)
    v = rng.normal(0.05, 0.02, size=(4, 5, 64)).astype(np.float32)
    v[rng.random(v.shape) < 0.6] = np.nan
    v[0, 0] = np.nan  # a cell without water
    v[1, 1, :] = np.nan
    v[1, 1, :4] = [0.1, 0.3, 0.2, 0.4]  # an even count: the mean of the middle two
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = np.nanmedian(v, axis=2).astype(np.float32)
    got = _nan_median_last(v)
    assert got.dtype == np.float32 and np.isnan(got[0, 0]) and got[1, 1] == np.float32(0.25)
    np.testing.assert_array_equal(got, ref)


def test_scene_haze_offsets_from_a_decimated_read_match_those_of_the_whole_scene(tmp_path):
    """A hazy sea (path radiance above the training ports' darkest water) with a coast: the offsets
    every window of a whole tile is given equal those measured on the full-resolution scene, and a
    clear copy gets none."""
    from imgdiff.detect.vessel_features import DARK_WATER, haze_offsets
    from imgdiff.detect.vessels import water_mask
    from imgdiff.tiles import vessel_inputs

    added = {"B02": 0.05, "B03": 0.035, "B04": 0.02, "B08": 0.01}
    rng = np.random.default_rng(5)
    n = 800
    land = np.zeros((n, n), bool)
    land[:, :250] = True
    for tag, extra in (("hazy", added), ("clear", {b: 0.0 for b in added})):
        folder = tmp_path / tag
        folder.mkdir()
        for b, dark in DARK_WATER.items():
            sea = (dark + extra[b]) * (1 + 0.2 * rng.random((n, n)))
            write_band(folder / f"{b}.tif", np.where(land, 0.25, sea).astype(np.float32))
        levels, haze = vessel_inputs(folder, list(DARK_WATER))
        assert set(levels) == set(DARK_WATER)
        scene = read_scene(folder)
        full = haze_offsets(scene.bands, water_mask(scene))
        for b in DARK_WATER:
            assert haze[b] == pytest.approx(full[b], abs=0.003), (tag, b)
            assert haze[b] == pytest.approx(extra[b], abs=0.003), (tag, b)


def test_tiled_compare_reports_the_dates_bands_and_radiometry_the_whole_scene_compare_reports(pair, tmp_path: Path):
    b, a, _ = pair
    for folder, date in ((b, "20240103"), (a, "20240303")):  # dates in the files' tags, not in any path
        for f in folder.glob("*.tif"):
            with rasterio.open(f, "r+") as ds:
                ds.update_tags(ACQUISITION_DATE=date)
    tiled = compare_tiled(b, a, tmp_path / "t", tile_size=128, overlap=16, workers=1, method="cva-otsu")
    whole = imgdiff.write_compare(imgdiff.compare(b, a, method="cva-otsu"), tmp_path / "w")
    assert tiled["dates"] == whole["dates"] == {"before": "2024-01-03", "after": "2024-03-03", "days_between": 60}
    for date in ("before", "after"):
        for key in ("date", "bands", "radiometry", "processing_baseline"):
            assert tiled["inputs"][date][key] == whole["inputs"][date][key], (date, key)


def test_tiled_compare_gives_both_dates_one_scaling_as_the_whole_scene_compare_does(tmp_path: Path):
    """A Copernicus Browser raw export (x 65535) beside a renamed copy of it too dark for the level rule:
    the copy is read as x 65535 like its partner, tiled or not."""
    refl = _field((300, 280), 11) * 0.5  # dark water-like levels: under 20,000 DN at x 65535
    for folder, raw_names in (("before", True), ("after", False)):
        (tmp_path / folder).mkdir()
        for i, b in enumerate(BANDS):
            name = f"2023-08-18-00_00_2023-08-18-23_59_Sentinel-2_L2A_{b}_(Raw).tiff" if raw_names else f"{b}.tif"
            write_band(tmp_path / folder / name, np.round(refl[i] * 65535).astype(np.uint16), transform=TRANSFORM)
    b, a = tmp_path / "before", tmp_path / "after"
    tiled = compare_tiled(b, a, tmp_path / "t", tile_size=128, overlap=16, workers=1, method="cva-otsu")
    whole = imgdiff.write_compare(imgdiff.compare(b, a, method="cva-otsu"), tmp_path / "w")
    for report in (tiled, whole):
        assert report["inputs"]["after"]["radiometry"]["B02"]["scale"] == pytest.approx(1 / 65535)
        assert report["change"]["changed_pixels"] == 0


def test_a_damaged_input_block_met_while_writing_the_change_map_is_an_input_error_naming_the_file(tmp_path: Path):
    from imgdiff.errors import InputError

    refl = _field((320, 320), 5)
    for folder in ("before", "after"):
        (tmp_path / folder).mkdir()
        for i, b in enumerate(BANDS):
            _write_tiled(tmp_path / folder / f"{b}.tif", np.round(refl[i] * 10000).astype(np.uint16), 10.0)
    bad = tmp_path / "after" / "B08.tif"
    with rasterio.open(bad) as ds:  # the header stays whole; a block far from the probe windows is damaged
        offset = int(ds.get_tag_item("BLOCK_OFFSET_4_4", "TIFF", bidx=1))
    data = bytearray(bad.read_bytes())
    data[offset:offset + 64] = b"\x55" * 64
    bad.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"after/B08\.tif: cannot read .*truncated or corrupt"):
        compare_tiled(tmp_path / "before", tmp_path / "after", tmp_path / "out", tile_size=128, overlap=16,
                      workers=1, method="cva-otsu")
    assert not (tmp_path / "out" / "change.tif").exists()


def test_sample_windows_keep_the_light_of_a_saturated_pixel_out_of_the_radiometric_statistics():
    """A 20 m pixel of B11 at DN 65535 (its 2 x 2 pixels of 10 m) on the after date of a sample
    window, warped by a sub-pixel shift: the pixels the normalisation and the change statistics
    may use hold none of its light (the plain cubic warp left 16 of them up to 1.0 brighter or 0.5
    darker, counted clear), the pixels left out lie within the kernel's reach of it (2 px), and
    the after stack away from it is bit-identical to the plain warp."""
    from affine import Affine
    from rasterio.crs import CRS

    from imgdiff import AlignedPair, Grid, Registration, Scene, warp
    from imgdiff.radiometry import excluded_mask as _excluded
    from imgdiff.tiles.samples import WARP_KERNEL, clear_stacks

    names = ("B02", "B03", "B04", "B08", "B11")
    levels = (0.05, 0.08, 0.1, 0.3, 0.25)  # bare ground: no cloud, shadow or water
    rng = np.random.default_rng(7)
    meta = {"radiometry": {b: {"scale": 1e-4, "offset": 0.0, "source": "test"} for b in names}}

    def date() -> dict[str, np.ndarray]:
        return {b: (v + rng.normal(0, 0.002, (40, 40))).astype(np.float32) for b, v in zip(names, levels)}

    tr = Affine(10, 0, 600000, 0, -10, 3870000)
    before = Scene(date(), CRS.from_epsg(32636), tr, np.ones((40, 40), bool), meta=meta)
    lit = date()
    lit["B11"][20:22, 20:22] = 6.5535
    after = Scene(lit, before.crs, tr, before.valid, meta=meta)
    reg = Registration(0.4, -0.3, 4.0, 3.0, 0.05, 1.0, method="test")
    pair = AlignedPair(before, after, Grid.of(before), before.valid)
    _, a, clear = clear_stacks(pair.before, pair.after, reg, names)
    moved = warp(after, reg, interpolation=WARP_KERNEL)
    plain = moved.stack(names)
    block = np.zeros((40, 40), bool)
    block[20:22, 20:22] = True
    reach = ndi.binary_dilation(block, np.ones((3, 3), bool), iterations=2)
    inner = np.zeros((40, 40), bool)
    inner[2:-2, 2:-2] = True  # the warp's edge left aside
    assert not (~clear & inner & ~reach).any()  # only pixels next to it are left out
    assert np.abs(a[4][clear] - 0.25).max() < 0.02  # none of its light (noise: 0.002)
    counted_before = moved.valid & ~_excluded(before) & ~_excluded(moved)
    assert (counted_before & (np.abs(plain[4] - 0.25) > 0.02)).sum() >= 8  # the plain warp's ring, counted clear
    np.testing.assert_array_equal(a[:, ~reach], plain[:, ~reach])


@pytest.mark.parametrize("date", ["before", "after"])
def test_sample_windows_without_the_cloud_bands_still_leave_out_saturated_pixels(date):
    """Without B02 (no cloud tests), a 20 m pixel of B11 at DN 65535 (its 2 x 2 pixels of 10 m) on
    either date is not counted clear in the sample window's statistics (it was: nothing was left
    out without B02, B03, B04 and B08); every other pixel still is."""
    from affine import Affine
    from rasterio.crs import CRS

    from imgdiff import AlignedPair, Grid, Scene
    from imgdiff.tiles.samples import clear_stacks

    names = ("B03", "B04", "B08", "B11")
    rng = np.random.default_rng(7)
    meta = {"radiometry": {b: {"scale": 1e-4, "offset": 0.0, "source": "test"} for b in names}}
    tr = Affine(10, 0, 600000, 0, -10, 3870000)
    scenes = {}
    for d in ("before", "after"):
        bands = {b: (v + rng.normal(0, 0.002, (40, 40))).astype(np.float32)
                 for b, v in zip(names, (0.08, 0.1, 0.3, 0.25))}
        if d == date:
            bands["B11"][20:22, 20:22] = 6.5535
        scenes[d] = Scene(bands, CRS.from_epsg(32636), tr, np.ones((40, 40), bool), meta=meta)
    pair = AlignedPair(scenes["before"], scenes["after"], Grid.of(scenes["before"]), scenes["before"].valid)
    _, _, clear = clear_stacks(pair.before, pair.after, None, names)
    block = np.zeros((40, 40), bool)
    block[20:22, 20:22] = True
    np.testing.assert_array_equal(clear, ~block)
