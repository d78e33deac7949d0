"""`imgdiff coregister` and `imgdiff eval coreg` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from imgdiff_cli.main import cli
from rasterio.transform import from_origin

import imgdiff
from imgdiff.evaluate.coreg import degrade

from .conftest import write_band
from .test_coregister import fine_texture


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture(scope="module")
def pair_arrays():
    """Reference and target 10 m images of one place; the target moved by (+0.75, -0.5) px."""
    fine = fine_texture(1240, seed=5)
    rng = np.random.default_rng(0)
    a = degrade(fine, 4, (4, 0), psf_sigma=1.8, size=(300, 300), noise=0.0003, rng=rng)
    b = degrade(fine, 4, (1, 2), psf_sigma=2.1, size=(300, 300), noise=0.0003, gain=1.1, rng=rng)
    return a, b, (0.75, -0.5)


def write_scene(folder, img, transform=None, crs="EPSG:32636"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, band in enumerate(("B03", "B04", "B08")):
        dn = ((img * (1 + 0.1 * i)) * 10000).clip(1, 65535).astype("uint16")
        write_band(folder / f"{band}.tif", dn, transform=transform or from_origin(600000, 3870000, 10, 10), crs=crs)
    return folder


def test_json_prints_one_object_with_the_shift_in_pixels_and_metres(runner, tmp_path, pair_arrays):
    a, b, truth = pair_arrays
    ref, tgt = write_scene(tmp_path / "ref", a), write_scene(tmp_path / "tgt", b)
    r = runner.invoke(cli, ["coregister", str(ref), str(tgt), "--json"])
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["dx"] == pytest.approx(truth[0], abs=0.03) and out["dy"] == pytest.approx(truth[1], abs=0.03)
    assert out["dx_m"] == pytest.approx(10 * out["dx"], rel=0.01) and out["dy_m"] == pytest.approx(-10 * out["dy"],
                                                                                                    rel=0.01)
    assert 0.5 < out["reliability"] <= 1 and out["points"] == []


def test_local_json_lists_tie_points_in_reference_pixels(runner, tmp_path, pair_arrays):
    a, b, truth = pair_arrays
    ref, tgt = write_scene(tmp_path / "ref", a), write_scene(tmp_path / "tgt", b)
    r = runner.invoke(cli, ["coregister", str(ref), str(tgt), "--local", "--json"])
    assert r.exit_code == 0, r.stderr
    pts = json.loads(r.stdout)["points"]
    assert len(pts) >= 150
    assert all(0 <= p["x"] <= 300 and 0 <= p["y"] <= 300 for p in pts)
    err = np.array([[p["dx"] - truth[0], p["dy"] - truth[1]] for p in pts])
    assert np.sqrt(np.mean(err**2)) < 0.05


def test_output_is_the_warped_target_on_the_reference_grid(runner, tmp_path, pair_arrays):
    a, b, truth = pair_arrays
    ref, tgt = write_scene(tmp_path / "ref", a), write_scene(tmp_path / "tgt", b)
    out = tmp_path / "warped.tif"
    r = runner.invoke(cli, ["coregister", str(ref), str(tgt), "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    assert "shift dx=+0.7" in r.stdout
    with rasterio.open(out) as ds, rasterio.open(ref / "B08.tif") as rd:
        assert ds.crs == rd.crs and ds.transform == rd.transform and ds.shape == rd.shape
        assert ds.compression is not None and ds.descriptions == ("B03", "B04", "B08")
        assert ds.profile["tiled"]
        warped = ds.read(3)
    again = runner.invoke(cli, ["coregister", str(ref), str(out), "--bands", "B08", "--json"])
    res = json.loads(again.stdout)
    assert abs(res["dx"]) < 0.02 and abs(res["dy"]) < 0.02
    assert np.isfinite(warped[10:-10, 10:-10]).all()
    r = runner.invoke(cli, ["coregister", str(ref), str(tgt), "-o", str(out)])
    assert r.exit_code == 2 and "--overwrite" in r.stderr


def test_the_warped_output_keeps_the_targets_acquisition_date(runner, tmp_path, pair_arrays):
    a, b, _ = pair_arrays
    ref, tgt = write_scene(tmp_path / "ref", a), write_scene(tmp_path / "2024-12-13", b)  # date from the folder name
    out = tmp_path / "warped.tif"
    r = runner.invoke(cli, ["coregister", str(ref), str(tgt), "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    assert str(imgdiff.read_scene(out).date) == "2024-12-13"


def test_target_in_another_crs_and_resolution_is_aligned_first(runner, tmp_path, pair_arrays):
    a, b, truth = pair_arrays
    ref = write_scene(tmp_path / "ref", a)
    # The target on a 5 m grid (each pixel repeated) shifted by half a metre: same place, finer pixels.
    fine_b = np.repeat(np.repeat(b, 2, axis=0), 2, axis=1)
    tgt = write_scene(tmp_path / "tgt", fine_b, transform=from_origin(600000, 3870000, 5, 5))
    r = runner.invoke(cli, ["coregister", str(ref), str(tgt), "--json"])
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["dx"] == pytest.approx(truth[0], abs=0.08) and out["dy"] == pytest.approx(truth[1], abs=0.08)


def test_featureless_sea_is_a_one_line_error(runner, tmp_path):
    rng = np.random.default_rng(0)
    ref = write_scene(tmp_path / "ref", (0.03 + 0.001 * rng.normal(size=(200, 200))).astype(np.float32))
    tgt = write_scene(tmp_path / "tgt", (0.03 + 0.001 * rng.normal(size=(200, 200))).astype(np.float32))
    r = runner.invoke(cli, ["coregister", str(ref), str(tgt)])
    assert r.exit_code == 2
    err = r.stderr.strip()
    assert "\n" not in err and "texture" in err


def test_a_shift_just_beyond_max_shift_is_a_one_line_error_naming_the_option(runner, tmp_path, shared_data):
    from .conftest import need
    from .test_coregister import _band, fourier_shifted

    ground = _band(need(shared_data / "oscd" / "beirut") / "before" / "B08.tif")[300:700, 300:700]
    ref = write_scene(tmp_path / "ref", ground)
    tgt = write_scene(tmp_path / "tgt", fourier_shifted(ground, 5.2, -0.6))
    r = runner.invoke(cli, ["coregister", str(ref), str(tgt)])
    assert r.exit_code == 2
    err = r.stderr.strip()
    assert "\n" not in err and "beyond max_shift=5 px" in err and "--max-shift" in err and "texture" not in err
    r = runner.invoke(cli, ["coregister", str(ref), str(tgt), "--max-shift", "6", "--json"])  # as it says
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["dx"], out["dy"]) == pytest.approx((5.2, -0.6), abs=0.02)


def test_missing_reference_is_a_one_line_error(runner, tmp_path):
    r = runner.invoke(cli, ["coregister", str(tmp_path / "nope"), str(tmp_path / "nope2")])
    assert r.exit_code == 2 and "nope" in r.stderr


def test_eval_coreg_reports_the_three_figures(runner, shared_data, monkeypatch):
    import imgdiff.evaluate.coreg as ec

    real = ec.dev_inputs

    def two_cities(data):
        fine, pairs, local = real(data)
        keep = ["bercy", "paris"]
        return ({k: fine[k] for k in keep}, {k: pairs[k] for k in keep}, {k: local[k] for k in keep[:1]})

    monkeypatch.setattr(ec, "dev_inputs", two_cities)
    r = runner.invoke(cli, ["eval", "coreg", "--quick", "--json"])
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["same_date_rmse_px"] < 0.03 and out["cross_date_rmse_px"] < 0.04
    assert out["local_rmse_px"] < 0.05 and out["local_points"] >= 150


def test_a_saturated_block_in_the_warped_output_stays_on_its_footprint_and_lights_nothing(runner, tmp_path,
                                                                                         pair_arrays):
    """A 3 x 4 px hull at DN 65535 in every band of the target, written warped through ``-o`` under the
    (+0.75, -0.5) px shift and read back: it is saturated on exactly the 12 pixels whose sample
    position falls on it (nearest; within 1 px of its place shifted), the pixels around it hold no
    more light than the warp of the same target without the hull gives them (the plain spline warp
    read saturated on 18 px and lit the ring around to 0.85 reflectance, its ringing down to -0.6),
    and the pixels 20 px and more away are bit-identical to the plain warp."""
    from scipy import ndimage as ndi

    from imgdiff import Grid, Registration, reproject_scene
    from imgdiff.radiometry import saturation_mask

    a, b, _ = pair_arrays
    rows, cols = slice(150, 153), slice(100, 104)
    ref = write_scene(tmp_path / "ref", a)
    written = {}
    for tag in ("plain", "hull"):
        tgt = write_scene(tmp_path / tag, b)
        if tag == "hull":
            for f in tgt.glob("B*.tif"):
                with rasterio.open(f, "r+") as ds:
                    dn = ds.read(1)
                    dn[rows, cols] = 65535
                    ds.write(dn, 1)
        out = tmp_path / f"{tag}.tif"
        r = runner.invoke(cli, ["coregister", str(ref), str(tgt), "-o", str(out), "--json"])
        assert r.exit_code == 0, r.stderr
        written[tag] = (imgdiff.read_scene(out), json.loads(r.stdout), tgt)
    got, reg, tgt = written["hull"]
    plain_content = written["plain"][0]
    dx, dy = reg["dx"], reg["dy"]
    assert (dx, dy) == pytest.approx((0.75, -0.5), abs=0.05)
    # the warp of the target as written before: the plain spline warp of the same registration
    source = imgdiff.read_scene(tgt)
    plain = imgdiff.warp(reproject_scene(source, Grid.of(got)), Registration(dx, dy, 0.0, 0.0, 0.01, 1.0, method="t"))

    hull = np.zeros(got.shape, bool)
    hull[rows, cols] = True
    yy, xx = np.indices(got.shape)
    sy, sx = np.rint(yy + dy).astype(int), np.rint(xx + dx).astype(int)
    inside = (sy >= 0) & (sy < got.shape[0]) & (sx >= 0) & (sx < got.shape[1])
    footprint = inside & hull[sy.clip(0, got.shape[0] - 1), sx.clip(0, got.shape[1] - 1)]
    shifted = ndi.shift(hull.astype(float), (-dy, -dx), order=1) > 0
    assert footprint.sum() == 12 and not (footprint & ~ndi.binary_dilation(shifted)).any()  # within 1 px
    sat = saturation_mask(got)
    np.testing.assert_array_equal(sat, footprint)
    assert saturation_mask(plain).sum() >= 16  # the plain warp spread it

    dist = ndi.distance_transform_edt(~hull)
    ring = (dist < 6) & ~footprint
    for name in got.bands:
        v, p, c = got.bands[name], plain.bands[name], plain_content.bands[name]
        np.testing.assert_allclose(v[footprint], 6.5535, rtol=1e-6)
        assert p[ring].max() > 0.8  # the plain warp lit the pixels around it
        brightest = ndi.maximum_filter(c, size=7)  # the warp of the content around, without the hull
        assert (v[ring] <= brightest[ring] + 0.01).all(), np.abs(v[ring] - brightest[ring]).max()
        assert (v[ring] >= ndi.minimum_filter(c, size=7)[ring] - 0.01).all()
        far = (dist >= 20) & np.isfinite(p)
        np.testing.assert_array_equal(v[far], p[far])
