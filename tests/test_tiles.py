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
        assert ds.block_shapes[0] == (256, 256) and ds.profile["compress"] == "deflate"
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
@pytest.mark.parametrize("method,min_agreement", [("cva-otsu", 0.995), ("irmad", 0.98)])
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
