"""Co-registration with known truth: images degraded twice, smooth fields, masks, clouds, sea, warping."""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import replace

import cv2
import numpy as np
import pytest
from affine import Affine

from imgdiff import CoregistrationError, Scene, coregister, warp
from imgdiff.coregister import Registration, ShiftModel, coregister_paths
from imgdiff.evaluate.coreg import as_scene, degrade, rmse, shift_image, smooth_field, warp_by_field

from .conftest import need


def fine_texture(n: int, seed: int = 0) -> np.ndarray:
    """A finer 'city': multi-scale texture plus bright and dark rectangles (buildings, roads)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((n, n), np.float32)
    for s in (2.0, 6.0, 18.0):
        img += cv2.GaussianBlur(rng.normal(0, 1, (n, n)).astype(np.float32), (0, 0), s) * s
    for _ in range(n // 6):
        x, y = rng.integers(0, n - 40, 2)
        w, h = rng.integers(4, 40, 2)
        img[y:y + h, x:x + w] += rng.uniform(-3, 3)
    return 0.1 + 0.02 * (img - img.mean()) / img.std()


def degraded_pair(fine: np.ndarray, oa, ob, factor: int = 4, seed: int = 0, noise: float = 0.02):
    rng = np.random.default_rng(seed)
    amp = float(fine.std())
    size = ((fine.shape[0] - 2 * factor) // factor, (fine.shape[1] - 2 * factor) // factor)
    a = degrade(fine, factor, oa, psf_sigma=0.45 * factor, size=size, noise=noise * amp, rng=rng)
    b = degrade(fine, factor, ob, psf_sigma=0.55 * factor, gain=1.25, bias=0.01, size=size, noise=noise * amp,
                rng=rng)
    return a, b, ((oa[0] - ob[0]) / factor, (oa[1] - ob[1]) / factor)


@pytest.fixture(scope="module")
def city() -> np.ndarray:
    return fine_texture(1040, seed=1)


# ---------------------------------------------------------------- global, known truth
@pytest.mark.parametrize("oa, ob", [((0, 0), (1, 3)), ((5, 2), (0, 7)), ((3, 3), (3, 3)), ((7, 0), (2, 6))])
def test_shift_of_an_image_degraded_twice_is_recovered_within_003_px(city, oa, ob):
    a, b, truth = degraded_pair(city, oa, ob)
    reg = coregister(as_scene(a), as_scene(b))
    assert reg.dx == pytest.approx(truth[0], abs=0.03)
    assert reg.dy == pytest.approx(truth[1], abs=0.03)
    assert reg.reliability > 0.8 and reg.uncertainty_px < 0.03
    assert reg.points and reg.model is None


def test_sign_convention_feature_at_reference_x_appears_at_target_x_plus_dx(city):
    a = degrade(city, 4, (0, 0), psf_sigma=1.8)
    b = np.full_like(a, np.nan)
    b[:, 3:] = a[:, :-3]  # every feature moves 3 px right (+x) and 0 px down
    b[2:, :] = b[:-2, :].copy()  # ... and 2 px down (+y)
    b[:2] = np.nan
    reg = coregister(as_scene(a), as_scene(b))
    assert (reg.dx, reg.dy) == pytest.approx((3.0, 2.0), abs=0.01)
    assert reg.dx_m == pytest.approx(30.0, abs=0.2) and reg.dy_m == pytest.approx(-20.0, abs=0.2)


def test_twenty_metre_band_resampled_to_ten_metres_still_gives_the_shift(city):
    a, b, truth = degraded_pair(city, (0, 0), (6, 3), factor=8)  # 20 m pixels (fine = 2.5 m)
    up = [cv2.resize(x, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR) for x in (a, b)]
    t = Affine(10, 0, 0, 0, -10, 0)
    reg = coregister(Scene({"B11": up[0]}, None, t, np.isfinite(up[0])), Scene({"B11": up[1]}, None, t,
                                                                                np.isfinite(up[1])))
    assert (reg.dx, reg.dy) == pytest.approx((2 * truth[0], 2 * truth[1]), abs=0.04)


def test_beats_plain_phase_correlation_on_several_degraded_pairs(city):
    from imgdiff.evaluate.coreg import skimage_estimator

    ours, theirs = [], []
    rng = np.random.default_rng(7)
    for i in range(4):
        oa, ob = tuple(rng.integers(0, 8, 2)), tuple(rng.integers(0, 8, 2))
        a, b, truth = degraded_pair(city, oa, ob, seed=i)
        reg = coregister(as_scene(a), as_scene(b))
        ours.append((reg.dx - truth[0], reg.dy - truth[1]))
        d, _ = skimage_estimator(a, b)
        theirs.append((d[0] - truth[0], d[1] - truth[1]))
    assert rmse(ours) < 0.02
    assert rmse(ours) < rmse(theirs)


# ---------------------------------------------------------------- masks, clouds, change, failure
def test_cloud_nodata_and_mask_do_not_drive_the_estimate(city):
    a, b, truth = degraded_pair(city, (1, 1), (4, 6))
    h, w = b.shape
    yy, xx = np.mgrid[0:h, 0:w]
    cloud = np.exp(-((xx - 70) ** 2 + (yy - 80) ** 2) / (2 * 30.0**2))
    b = b + 0.3 * cloud.astype(np.float32)  # a bright, soft cloud
    b[150:, :60] = np.nan  # no-data corner
    mask = cloud < 0.2
    reg = coregister(as_scene(a), as_scene(b), mask=mask)
    assert (reg.dx, reg.dy) == pytest.approx(truth, abs=0.03)
    assert any(p.reason == "masked" for p in reg.rejected)


@pytest.mark.parametrize("bands,cover,match", [(("B02", "B03", "B04", "B05", "B08"), 0.6, ["--bands", "B05,B04"]),
                                               (("B02", "B03", "B04"), 0.65, [])],
                         ids=["with-nir", "visible-only"])  # visible only: the aircraft chips' bands
def test_a_cloud_over_most_of_a_small_scene_is_left_out_and_the_shift_still_found(tmp_path, bands, cover, match):
    from rasterio.crs import CRS

    from imgdiff import compare
    from imgdiff.compare import register_pair
    from imgdiff.grid import align

    # 128 x 128 px of ground in four (or the three visible) bands; the after date shifted by (0.6, -0.4) px,
    # dimmed (gain 0.93) and covered by an opaque white cloud over its left 60 % (65 %; soft 6 px edge);
    # without B08 the spectral cloud test cannot run and the two-date tests find the cloud alone
    n, truth = 128, (0.6, -0.4)
    ground = 2 * fine_texture(n, seed=3)
    yy, xx = np.mgrid[:n, :n]
    alpha = np.clip((cover * n - xx + 4 * np.sin(yy / 9.0)) / 6.0, 0, 1)
    rng = np.random.default_rng(0)
    before, after = {}, {}
    for band in bands:
        f = {"B02": 0.8, "B03": 0.9, "B04": 1.0, "B05": 1.1, "B08": 1.3}[band]
        before[band] = (f * ground + rng.normal(0, 0.002, (n, n))).astype(np.float32)
        moved = shift_image(0.93 * f * ground, *truth)
        after[band] = (moved * (1 - alpha) + 0.55 * alpha + rng.normal(0, 0.002, (n, n))).astype(np.float32)
    tr, crs, ok = Affine(10, 0, 700000, 0, -10, 3900000), CRS.from_epsg(32636), np.ones((n, n), bool)
    pair = align(Scene(before, crs, tr, ok), Scene(after, crs, tr, ok))
    try:  # chips across the cloud's edge: off and unreliable, or no tie point at all
        plain = coregister(pair.before, pair.after, mask=pair.overlap)
    except CoregistrationError:
        plain = None
    assert plain is None or (np.hypot(plain.dx - truth[0], plain.dy - truth[1]) > 0.3 and plain.reliability < 0.5)
    reg = register_pair(pair)
    assert (reg.dx, reg.dy) == pytest.approx(truth, abs=0.15)
    assert (plain is None or reg.reliability > plain.reliability) and "without the clouds" in reg.notes[-1]
    res = compare(pair.before, pair.after)  # what compare, verify and watch use
    assert (res.registration.dx, res.registration.dy) == (reg.dx, reg.dy)
    # and `imgdiff coregister` on the scenes as band folders (matching on the bands asked for, which
    # the retry reads besides those of the cloud tests)
    from click.testing import CliRunner
    from imgdiff_cli.main import cli

    from .conftest import write_band

    folders = []
    for date, bands in (("before", before), ("after", after)):
        folders.append(tmp_path / date)
        folders[-1].mkdir()
        for band, arr in bands.items():
            write_band(folders[-1] / f"{band}.tif", np.round(arr * 10000).astype(np.uint16), transform=tr)
    out = CliRunner().invoke(cli, ["coregister", str(folders[0]), str(folders[1]), "--json", *match])
    assert out.exit_code == 0, out.output
    got = json.loads(out.output)
    assert (got["dx"], got["dy"]) == pytest.approx(truth, abs=0.15)
    assert "without the clouds" in got["notes"][-1]


def test_large_changed_area_is_outvoted(city):
    a, b, truth = degraded_pair(city, (2, 0), (0, 5))
    rng = np.random.default_rng(3)
    b[20:120, 30:140] = 0.1 + 0.03 * rng.random((100, 110)).astype(np.float32)  # new construction
    reg = coregister(as_scene(a), as_scene(b))
    assert (reg.dx, reg.dy) == pytest.approx(truth, abs=0.03)
    assert reg.rejected and reg.reliability > 0.5


def test_featureless_sea_fails_loudly():
    rng = np.random.default_rng(0)
    sea_a = (0.03 + 0.002 * rng.normal(size=(200, 200))).astype(np.float32)
    sea_b = (0.03 + 0.002 * rng.normal(size=(200, 200))).astype(np.float32)
    with pytest.raises(CoregistrationError, match="texture"):
        coregister(as_scene(sea_a), as_scene(sea_b))


def test_mostly_sea_with_a_little_coast_is_flagged_or_correct(city):
    sea = city.copy()
    sea[:, 160:] = 0.03  # calm sea east of a 40 px coastal strip (the coast moves with the scene)
    a, b, truth = degraded_pair(sea, (0, 0), (2, 2))
    try:
        reg = coregister(as_scene(a), as_scene(b))
    except CoregistrationError:
        return
    assert reg.reliability < 0.5 or (abs(reg.dx - truth[0]) < 0.05 and abs(reg.dy - truth[1]) < 0.05)
    assert any(p.reason for p in reg.rejected)


def test_too_little_valid_overlap_raises(city):
    a, b, _ = degraded_pair(city, (0, 0), (1, 1))
    b[:, :] = np.nan
    b[:5, :5] = 0.1
    with pytest.raises(CoregistrationError, match="overlap"):
        coregister(as_scene(a), as_scene(b))


def test_scenes_on_different_grids_raise(city):
    a, b, _ = degraded_pair(city, (0, 0), (1, 1))
    with pytest.raises(CoregistrationError, match="one grid"):
        coregister(as_scene(a), as_scene(b[:-10]))


# ---------------------------------------------------------------- local
def test_local_tie_points_follow_a_smooth_field_within_005_px():
    img = degrade(fine_texture(2440, seed=4), 4, (0, 0), psf_sigma=1.8)  # 610 x 610 px
    fld = smooth_field(img.shape, 1.5, np.random.default_rng(2))
    rng = np.random.default_rng(3)
    tgt = warp_by_field(img, fld) + rng.normal(0, 0.0005, img.shape).astype(np.float32)
    reg = coregister(as_scene(img), as_scene(tgt), local=True)
    x, y = np.array([p.x for p in reg.points]), np.array([p.y for p in reg.points])
    tx, ty = fld(x, y)
    err = np.stack([[p.dx for p in reg.points] - tx, [p.dy for p in reg.points] - ty], 1)
    assert len(reg.points) >= 150
    assert rmse(err) <= 0.05
    assert reg.model is not None and reg.model.degree >= 2
    assert {"x", "y", "dx", "dy", "reliability"} <= set(reg.to_dict()["points"][0])
    # The warped target lines up with the reference.
    moved = warp(as_scene(tgt), reg)
    again = coregister(as_scene(img), moved, local=True)
    res = np.array([[p.dx, p.dy] for p in again.points])
    assert rmse(res) < 0.05


# ---------------------------------------------------------------- warping
def test_warp_removes_a_global_shift_and_keeps_nodata(city):
    a, b, truth = degraded_pair(city, (0, 0), (3, 5), noise=0.0)
    b[100:110, 100:110] = np.nan
    tb = as_scene(b)
    reg = coregister(as_scene(a), tb)
    moved = warp(tb, reg)
    assert not moved.valid[100:110, 100:110].any()
    assert np.isnan(moved.bands["B08"][~moved.valid]).all()
    again = coregister(as_scene(a), moved)
    assert abs(again.dx) < 0.01 and abs(again.dy) < 0.01
    for kernel in ("cubic", "lanczos", "linear", "nearest"):
        m = warp(tb, reg, interpolation=kernel)
        assert m.shape == tb.shape and m.valid.mean() > 0.9


@pytest.mark.parametrize("kernel", ["cubic", "lanczos", "linear"])
def test_warp_shifts_bands_through_the_filter_anchor_as_a_shifted_copy_of_the_edge_extended_band(kernel, monkeypatch):
    """The band filter reads the array in place (the integer shift in its anchor): the values of a
    shifted copy of the band extended by its edge pixels wherever the output is valid (to float
    rounding: the filter's vector loop splits rows of another width elsewhere), and bit for bit
    those of the former shifted, zero-filled copy inside (at the valid edge rows and columns that
    copy read a pixel shifted in from the other side, or zero, for the taps beyond the edge)."""
    warping = importlib.import_module("imgdiff.coregister.warping")  # imgdiff.coregister is also a function

    rng = np.random.default_rng(4)
    img = rng.normal(0.1, 0.03, (97, 131)).astype(np.float32)
    img[40:47, 60:66] = np.nan  # no-data inside
    scene = as_scene(img)
    p = 8
    edge = np.pad(np.nan_to_num(img), p, mode="edge")  # no-data becomes 0, as the warp fills it
    for dx, dy in [(-0.07, -0.03), (0.4, -1.6), (1.0, 0.0), (-1.9, 1.2), (3.3, -2.5)]:
        reg = Registration(dx, dy, 10 * dx, 10 * dy, 0.01, 1.0)
        got = warp(scene, reg, interpolation=kernel)
        ok = got.valid
        assert 0.5 < ok.mean() < 1 and np.isnan(got.bands["B08"][~ok]).all()
        ref = warping._shift_array(edge, dx, dy, kernel)[p:-p, p:-p]
        assert np.allclose(got.bands["B08"][ok], ref[ok], rtol=0, atol=1e-6)
        with monkeypatch.context() as m:  # the former shifted copy: the same valid pixels, the same values inside
            m.setattr(warping, "_shift_inside", lambda a, x, y, k: warping._shift_array(a, x, y, k))
            old = warp(scene, reg, interpolation=kernel)
        assert np.array_equal(old.valid, ok)
        inside = np.zeros_like(ok)
        inside[4:-4, 4:-4] = True
        assert np.array_equal(got.bands["B08"][ok & inside], old.bands["B08"][ok & inside])


def test_warp_finds_the_valid_pixels_with_booleans_as_the_shifted_float_mask_does():
    warping = importlib.import_module("imgdiff.coregister.warping")  # imgdiff.coregister is also a function

    def float_mask(valid, dx, dy, kernel):  # the mask shifted as a float, grown, kept under 1e-6
        r = warping._KERNEL_RADIUS[kernel]
        m = warping._shift_array((~valid).astype(np.float64), dx, dy, "nearest" if kernel == "nearest" else "linear",
                                 fill=1.0)
        if r > 1:
            m = cv2.dilate(m, np.ones((2 * r - 1, 2 * r - 1), np.uint8), borderType=cv2.BORDER_REPLICATE)
        return m < 1e-6

    rng = np.random.default_rng(0)
    valid = rng.random((61, 77)) > 0.02
    valid[10:14, 20:30] = False
    valid[:, 0] = False
    shifts = [-3.5, -1.0005, -0.07, 0.0, 0.0004, 0.3, 1.0, 2.25, 70.0]  # tiny fractions take the float path
    for kernel in ("linear", "cubic", "lanczos", "nearest"):
        for dx in shifts:
            for dy in shifts:
                assert np.array_equal(warping._moved_valid(valid, dx, dy, kernel), float_mask(valid, dx, dy, kernel))


def test_warp_with_a_local_model_follows_the_model():
    model = ShiftModel(1, (0.5, 0.001, 0.0), (-0.25, 0.0, 0.0), (0.0, 0.0), 1.0)
    img = degrade(fine_texture(1040, seed=2), 4, (0, 0), psf_sigma=1.8)
    tgt = warp_by_field(img, model)
    reg = Registration(0.5, -0.25, 5.0, 2.5, 0.01, 1.0, model=model)
    moved = warp(as_scene(tgt), reg)
    ok = moved.valid
    ok[:8], ok[-8:], ok[:, :8], ok[:, -8:] = False, False, False, False
    before = np.abs(tgt - img)[ok].mean()
    assert np.abs(moved.bands["B08"] - img)[ok].mean() < 0.2 * before


def test_registration_keeps_its_fields_and_json_shape():
    r = Registration(0.0, 0.0, 0.0, 0.0, float("nan"), 0.0, method="none")
    d = r.to_dict()
    assert {"dx", "dy", "dx_m", "dy_m", "uncertainty_px", "reliability", "method", "points"} <= set(d)
    assert d["points"] == [] and r.model is None and replace(r, dx=1.0).dx == 1.0


# ---------------------------------------------------------------- real data
def _band(path):
    import rasterio

    with rasterio.open(path) as ds:
        a = ds.read(1).astype(np.float32) / 10000
    a[a == 0] = np.nan
    return a


def test_cross_date_differential_shift_on_the_real_beirut_pair(shared_data):
    d = need(shared_data / "oscd" / "beirut")
    b = _band(d / "before" / "B08.tif")[300:812, 300:812]
    a = np.nan_to_num(_band(d / "after" / "B08.tif")[300:812, 300:812], nan=0.2)
    base = coregister(as_scene(b), as_scene(a))
    for s in ((0.37, -0.81), (-1.6, 0.45)):
        moved = coregister(as_scene(b), as_scene(shift_image(a, *s)))
        assert moved.dx - base.dx == pytest.approx(s[0], abs=0.04)
        assert moved.dy - base.dy == pytest.approx(s[1], abs=0.04)
    assert base.reliability > 0.5
    assert abs(base.dx) < 1.5 and abs(base.dy) < 1.5  # the pair's own small misregistration


# ---------------------------------------------------------------- shifts at and just beyond max_shift
def fourier_shifted(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``img`` with every feature moved by (+dx, +dy) px (exact Fourier shift, wrapping at the edges)."""
    from scipy import ndimage

    return np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(img), (dy, dx))).real.astype(np.float32)


@pytest.fixture(scope="module")
def oscd_crop(shared_data) -> np.ndarray:
    """512 x 512 px of real ground: OSCD Beirut, before date, B08 (reflectance)."""
    return _band(need(shared_data / "oscd" / "beirut") / "before" / "B08.tif")[300:812, 300:812]


@pytest.mark.parametrize("shift", [(5.2, 0.0), (5.2, -1.3), (-5.4, 0.3), (0.5, 5.45)])
@pytest.mark.parametrize("local", [False, True], ids=["global", "local"])
def test_a_shift_just_beyond_max_shift_fails_saying_so_and_naming_the_option(oscd_crop, shift, local):
    moved = fourier_shifted(oscd_crop, *shift)
    with pytest.raises(CoregistrationError) as e:
        coregister(as_scene(oscd_crop), as_scene(moved), max_shift=5.0, local=local)
    msg = str(e.value)
    assert "beyond max_shift=5 px" in msg and "--max-shift" in msg
    assert "texture" not in msg  # not blamed on the scene
    found = re.search(r"shift is about \(([-+.\d]+), ([-+.\d]+)\) px", msg)  # to choose the new bound
    assert found and (float(found[1]), float(found[2])) == pytest.approx(shift, abs=0.02)


def test_raising_max_shift_as_the_message_says_recovers_that_shift(oscd_crop):
    reg = coregister(as_scene(oscd_crop), as_scene(fourier_shifted(oscd_crop, 5.2, -1.3)), max_shift=6.0)
    assert (reg.dx, reg.dy) == pytest.approx((5.2, -1.3), abs=0.02)
    assert not reg.rejected and reg.reliability > 0.9


@pytest.mark.parametrize("shift", [(5.0, 0.0), (-5.0, 0.0), (0.0, 5.0), (5.0, -5.0)])
@pytest.mark.parametrize("local", [False, True], ids=["global", "local"])
def test_a_shift_of_exactly_max_shift_is_recovered_with_its_tie_points_kept(oscd_crop, shift, local):
    moved = fourier_shifted(oscd_crop, *shift)
    reg = coregister(as_scene(oscd_crop), as_scene(moved), max_shift=5.0, local=local)
    assert (reg.dx, reg.dy) == pytest.approx(shift, abs=0.02)
    inside = coregister(as_scene(oscd_crop), as_scene(fourier_shifted(oscd_crop, 0.4 * shift[0], 0.4 * shift[1])),
                        max_shift=5.0, local=local)
    # as many tie points as for a shift well inside the bound (all but a few percent of the chips)
    assert len(reg.points) >= len(inside.points) - 0.05 * (len(inside.points) + len(inside.rejected))
    assert not any(p.reason in ("no convergence", "beyond max_shift") for p in reg.rejected)
    assert reg.reliability >= inside.reliability - 0.05


@pytest.mark.parametrize("shift", [(0.37, -0.81), (2.3, -1.7), (-3.6, 0.8), (4.5, 4.5)])
def test_shifts_well_inside_max_shift_are_recovered_with_every_tie_point(oscd_crop, shift):
    reg = coregister(as_scene(oscd_crop), as_scene(fourier_shifted(oscd_crop, *shift)), max_shift=5.0)
    assert (reg.dx, reg.dy) == pytest.approx(shift, abs=0.02)
    assert not reg.rejected and not reg.notes and reg.reliability > 0.9


def test_windowed_reading_of_files_matches_the_in_memory_estimate(tmp_path, city):
    from .conftest import write_band

    a, b, truth = degraded_pair(city, (1, 0), (6, 3))
    for name, x in (("ref", a), ("tgt", b)):
        (tmp_path / name).mkdir()
        write_band(tmp_path / name / "B08.tif", (x * 10000).clip(1, 65535).astype("uint16"))
    full = coregister_paths(tmp_path / "ref", tmp_path / "tgt")
    strips = coregister_paths(tmp_path / "ref", tmp_path / "tgt", full_read_pixels=0)
    assert (full.dx, full.dy) == pytest.approx(truth, abs=0.03)
    assert (strips.dx, strips.dy) == pytest.approx(truth, abs=0.03)


def test_windowed_reading_survives_a_no_data_strip_and_gives_local_points(tmp_path, city):
    from .conftest import write_band

    a, b, truth = degraded_pair(city, (0, 3), (5, 1))
    b[:70] = 0  # zero-filled rows (no-data) in the target
    for name, x in (("ref", a), ("tgt", b)):
        (tmp_path / name).mkdir()
        write_band(tmp_path / name / "B08.tif", (x * 10000).clip(0, 65535).astype("uint16"))
    reg = coregister_paths(tmp_path / "ref", tmp_path / "tgt", local=True, full_read_pixels=0)
    assert (reg.dx, reg.dy) == pytest.approx(truth, abs=0.03)
    assert all(p.y > 60 for p in reg.points) and any(p.reason == "masked" for p in reg.rejected)
    pts = np.array([[p.dx, p.dy] for p in reg.points])
    assert rmse(pts - np.array(truth)) < 0.05


def test_halves_moved_in_different_directions_are_flagged_unreliable(city):
    a, left, _ = degraded_pair(city, (0, 0), (4, 0))
    _, right, _ = degraded_pair(city, (0, 0), (0, 4))
    b = left.copy()
    b[:, 128:] = right[:, 128:]
    reg = coregister(as_scene(a), as_scene(b))
    assert reg.reliability < 0.5 and not reg.reliable
    assert any("varies across the scene" in n for n in reg.notes)
