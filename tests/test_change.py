"""Change maps: building blocks with known truth, gain/illumination-only pairs, clouds, CLI, dev cities."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from affine import Affine
from click.testing import CliRunner
from scipy import ndimage as ndi

from imgdiff.change import (
    METHODS,
    ChangeMap,
    apply_mmu,
    change_map,
    chi2_threshold,
    cva,
    em_threshold,
    irmad,
    log_ratio,
    otsu_threshold,
    pick_model,
    scene_change_map,
)
from imgdiff.evaluate.change import scores
from imgdiff.scene import Scene

BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
# Top-of-atmosphere-like spectra (BANDS order) of a few surfaces
VEG = np.array([0.06, 0.08, 0.05, 0.12, 0.25, 0.30, 0.33, 0.35, 0.18, 0.09], np.float32)
SOIL = np.array([0.10, 0.13, 0.16, 0.19, 0.22, 0.24, 0.26, 0.27, 0.32, 0.26], np.float32)
URBAN = np.array([0.12, 0.13, 0.14, 0.15, 0.17, 0.18, 0.19, 0.20, 0.22, 0.19], np.float32)
# bright new roof / concrete, as measured on OSCD (redder than blue, unlike a cloud)
ROOF = np.array([0.26, 0.28, 0.33, 0.35, 0.36, 0.37, 0.38, 0.38, 0.30, 0.20], np.float32)
WATER = np.array([0.07, 0.06, 0.04, 0.03, 0.02, 0.02, 0.02, 0.02, 0.01, 0.008], np.float32)
CLOUD = np.array([0.50, 0.48, 0.47, 0.48, 0.50, 0.51, 0.52, 0.52, 0.36, 0.24], np.float32)


def _landscape(shape=(160, 160), seed=0) -> tuple[np.ndarray, np.ndarray]:
    """A textured (bands, rows, cols) scene of fields, soil, town and a lake, and its class map."""
    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.normal(size=shape), 12)
    cls = np.digitize(field, np.quantile(field, [0.35, 0.6, 0.9]))  # 0 veg, 1 soil, 2 urban, 3 water
    spectra = np.stack([VEG, SOIL, URBAN, WATER])
    img = spectra[cls].transpose(2, 0, 1).copy()
    texture = 1 + 0.15 * ndi.gaussian_filter(rng.normal(size=shape), 1.5)
    img *= texture[None]
    return img.astype(np.float32), cls


def _noisy(img: np.ndarray, rng: np.random.Generator, sigma: float = 0.003) -> np.ndarray:
    return (img + rng.normal(0, sigma, img.shape)).astype(np.float32)


ROOF_SITES = [(20, 20), (20, 110), (70, 60), (120, 120), (110, 20)]  # on soil/town and on fields


def _pair(gain=None, offset=None, changes=True, seed=0, sites=ROOF_SITES, field=True):
    rng = np.random.default_rng(seed + 100)
    before, cls = _landscape(seed=seed)
    after = before.copy()
    truth = np.zeros(before.shape[1:], bool)
    if changes:
        # new buildings: 12 x 12 px bright roofs on fields and bare soil, and a cleared field
        for y, x in sites:
            after[:, y:y + 12, x:x + 12] = ROOF[:, None, None]
            truth[y:y + 12, x:x + 12] = True
        if field:
            after[:, 60:80, 120:150] = SOIL[:, None, None]
            truth[60:80, 120:150] |= np.any(np.abs(before[:, 60:80, 120:150] - SOIL[:, None, None]) > 0.05, axis=0)
    if gain is not None:
        after = after * np.asarray(gain, np.float32)[:, None, None] + np.asarray(offset, np.float32)[:, None, None]
    return _noisy(before, rng), _noisy(after, rng), truth


def _scene(stack: np.ndarray) -> Scene:
    return Scene(bands={b: stack[i] for i, b in enumerate(BANDS)}, crs="EPSG:32636",
                 transform=Affine(10, 0, 600000, 0, -10, 3870000), valid=np.ones(stack.shape[1:], bool))


GAIN = np.linspace(1.15, 0.9, len(BANDS))  # haze/illumination: a different gain and offset per band
OFFSET = np.linspace(0.02, -0.01, len(BANDS))


# --------------------------------------------------------------------------- building blocks
def test_cva_magnitude_and_direction_are_exact():
    b = np.zeros((2, 1, 2), np.float32)
    a = np.array([[[3.0, 0.0]], [[4.0, -1.0]]], np.float32)
    r = cva(b, a)
    np.testing.assert_allclose(r.magnitude, [[5.0, 1.0]], atol=1e-6)
    np.testing.assert_allclose(r.direction_deg, [[np.degrees(np.arctan2(4, 3)), 270.0]], atol=1e-4)


def test_log_ratio_ignores_a_common_gain():
    b = np.full((3, 4, 4), 0.2, np.float32)
    lr = log_ratio(b, 2 * b + 1e-3)
    np.testing.assert_allclose(lr, np.log(2.0), atol=1e-3)


def test_thresholds_split_two_known_populations():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(1.0, 0.2, 9000), rng.normal(4.0, 0.4, 1000)])
    assert 1.6 < otsu_threshold(v) < 3.4
    t = em_threshold(v)
    assert 1.6 < t < 3.0
    assert chi2_threshold(4, 0.99) == pytest.approx(13.2767, abs=1e-3)
    assert otsu_threshold(np.ones(10)) == float("inf")


def test_irmad_chi2_follows_chi_square_on_unchanged_pixels():
    before, after, truth = _pair(gain=GAIN, offset=OFFSET)
    valid = np.ones(truth.shape, bool)
    r = irmad(before, after, valid)
    stat = r.chi2[~truth]
    # unchanged pixels: mean of a chi-square with `bands` degrees of freedom (robust: the median)
    assert np.median(stat) < len(BANDS) * 1.2
    assert np.median(r.chi2[truth]) > chi2_threshold(len(BANDS), 0.999)
    assert r.rho.max() > 0.9


def test_minimum_mapping_unit_is_in_square_metres():
    m = np.zeros((20, 20), bool)
    m[1:3, 1:3] = True  # 4 px = 400 m2 at 10 m
    m[10:13, 10:13] = True  # 9 px = 900 m2
    out = apply_mmu(m, 500.0, (10.0, 10.0))
    assert not out[1:3, 1:3].any() and out[10:13, 10:13].all()
    assert apply_mmu(m, 500.0, (20.0, 20.0)).sum() == 13  # 4 px of 20 m = 1600 m2


# --------------------------------------------------------------------------- known change
@pytest.mark.parametrize("method", METHODS)
def test_gain_and_illumination_only_pair_flags_no_change(method):
    before, after, _ = _pair(gain=GAIN, offset=OFFSET, changes=False)
    cm = change_map(before, after, np.ones(before.shape[1:], bool), bands=BANDS, method=method)
    assert cm.mask.mean() < 0.002, f"{method} flagged {cm.mask.mean():.2%} of an unchanged pair"


@pytest.mark.parametrize("method", METHODS)
def test_gain_only_without_texture_change_flags_nothing(method):
    before, _, _ = _pair(changes=False)
    rng = np.random.default_rng(5)
    after = _noisy(before * 1.3, rng, 0.002)
    cm = change_map(before, after, np.ones(before.shape[1:], bool), bands=BANDS, method=method)
    assert cm.mask.mean() < 0.002


@pytest.mark.parametrize("method", ["irmad", "cva-em", "mlp"])
def test_new_buildings_are_found_under_a_gain_change(method):
    if method == "mlp":
        # The learned method knows OSCD's urban change: buildings on green land (fields
        # here). It is less sensitive to roofs replacing bare soil or town in this
        # synthetic scene (recall 0.67 with them), so it is held to the field sites.
        before, after, truth = _pair(gain=GAIN, offset=OFFSET, sites=[(120, 120), (110, 20), (20, 110)],
                                     field=False)
    else:
        before, after, truth = _pair(gain=GAIN, offset=OFFSET)
    cm = change_map(before, after, np.ones(truth.shape, bool), bands=BANDS, method=method)
    s = scores(cm.mask, truth)
    assert s["recall"] > 0.7, s
    # false alarms only at the edges of real change: the learned method's context
    # features widen changed regions (by up to 7 px = 70 m here, as OSCD's generous
    # polygon labels taught it); nothing is flagged farther than 8 px from a change
    far = ndi.distance_transform_edt(~truth) > 8
    assert (cm.mask & far).sum() < 0.03 * cm.mask.sum(), s
    assert cm.confidence is not None and np.nanmean(cm.confidence[truth]) > 0.5


def test_learned_model_is_shipped_and_fits_four_bands():
    assert pick_model(BANDS) is not None
    m4 = pick_model(["B02", "B03", "B04", "B08"])
    assert m4 is not None and set(m4.bands) == {"B02", "B03", "B04", "B08"}
    assert pick_model(["B02", "B03"]) is None


def test_mlp_prediction_from_feature_planes_equals_the_textbook_network():
    """Folded standardisation, clipping on raw features and biases as weights change nothing."""
    from imgdiff.change import change_features, feature_planes

    before, after, _ = _pair()
    valid = np.ones(before.shape[1:], bool)
    valid[:5, :7] = False  # filled pixels
    model = pick_model(["B02", "B03", "B04", "B08"])
    ix = [BANDS.index(n) for n in model.bands]
    names, planes = feature_planes(before[ix], after[ix], valid, model.bands)
    names2, feats = change_features(before[ix], after[ix], valid, model.bands)
    assert tuple(names) == tuple(names2) == model.feature_names
    assert np.array_equal(np.stack(planes), feats)
    feats[0, 10:20, 10:20] += 50 * model.std[0]  # far outside training: clipped at clip_z
    planes[0] = feats[0]
    x = np.clip((feats.reshape(len(names), -1).astype(np.float64) - model.mean[:, None]) / model.std[:, None],
                -model.clip_z, model.clip_z).T
    for k, (w, b) in enumerate(zip(model.weights, model.biases)):
        x = x @ w + b
        x = np.maximum(x, 0) if k < len(model.weights) - 1 else 1 / (1 + np.exp(-x))
    expected = x[:, 0].reshape(feats.shape[1:])
    numpy_only = replace(model, onnx_path=None)
    for chunk in (4096, 1000):  # a last partial chunk
        assert np.allclose(numpy_only.predict(planes, chunk=chunk), expected, atol=2e-5)
    assert np.allclose(numpy_only.predict(feats), expected, atol=2e-5)
    assert np.allclose(model.predict(planes), expected, atol=2e-5)  # the shipped ONNX export


@pytest.mark.parametrize("bands", [BANDS, ("B02", "B03", "B04", "B08")])
def test_shipped_change_models_run_their_onnx_export_with_the_numpy_results(bands):
    from imgdiff.change import _export_session

    model = pick_model(bands)
    assert model.onnx_path is not None and _export_session(model.onnx_path, model.weights_digest()) is not None
    rng = np.random.default_rng(1)
    n = 8192 + 1000  # one full chunk and a partial one
    planes = [rng.normal(mu, 2 * sd, (n // 8, 8)).astype(np.float32) for mu, sd in zip(model.mean, model.std)]
    got = model.predict(planes)
    ref = replace(model, onnx_path=None).predict(planes)
    assert got.shape == ref.shape == (n // 8, 8)
    assert np.abs(got - ref).max() < 1e-5
    assert 0.01 < float((ref > model.threshold).mean()) < 0.99  # both classes present: a real comparison


def test_learned_magnitude_of_a_region_equals_the_whole_arrays_there():
    """Tiles ask for their core (plus a margin) only: same values, features still see the context."""
    from imgdiff.change import learned_magnitude

    before, after, _ = _pair()
    valid = np.ones(before.shape[1:], bool)
    valid[:5, :7] = False
    model = pick_model(BANDS)
    whole = learned_magnitude(before, after, valid, BANDS, model)
    h, w = whole.shape
    for region in [(slice(3, 20), slice(0, w)), (slice(10, h - 4), slice(6, w - 9)), (slice(0, h), slice(0, w))]:
        part = learned_magnitude(before, after, valid, BANDS, model, region=region)
        assert part.shape == whole[region].shape
        assert np.allclose(part, whole[region], atol=1e-6, equal_nan=True)


def _blobs(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A change-magnitude-like plane: noise and a few hundred sharp-edged bright squares."""
    rng = np.random.default_rng(seed)
    x = np.abs(rng.standard_normal(shape)).astype(np.float32)
    for _ in range(shape[0] * shape[1] // 4000):
        cy, cx = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        r = int(rng.integers(2, 15))
        x[max(0, cy - r):cy + r, max(0, cx - r):cx + r] += rng.uniform(2, 20)
    return x


@pytest.mark.parametrize("shape", [(512, 512), (301, 257)])
def test_wide_context_blur_stays_within_a_percent_of_the_full_resolution_blur(shape):
    from imgdiff.change.features import _blur, _blur_wide

    x = _blobs(shape)
    for sigma in (8.0, 16.0):
        exact, fast = _blur(x, sigma), _blur_wide(x, sigma)
        assert fast.shape == x.shape and fast.dtype == np.float32
        inner = (slice(2 * int(sigma), -2 * int(sigma)),) * 2  # away from the borders' different padding
        err = (fast - exact)[inner]
        assert np.sqrt(np.mean(err ** 2)) < 0.01 * exact.std()
        assert np.abs(err).max() < 0.06 * exact.std()


def test_wide_context_blur_of_an_even_offset_window_equals_the_whole_planes_inside():
    """Tiled comparisons read windows at even offsets (1024 k - 32): their cores, 32 px or more inside
    the window, get the context of one whole-raster comparison."""
    from imgdiff.change.features import _blur_wide

    x = _blobs((400, 420), seed=3)
    whole = _blur_wide(x, 8.0)
    r0, c0, r1, c1 = 64, 32, 330, 301  # even offsets, odd sizes
    part = _blur_wide(np.ascontiguousarray(x[r0:r1, c0:c1]), 8.0)
    m = 36
    assert np.allclose(part[m:-m, m:-m], whole[r0 + m:r1 - m, c0 + m:c1 - m], rtol=0, atol=1e-5)


def test_an_onnx_export_of_other_weights_is_ignored():
    model = pick_model(("B02", "B03", "B04", "B08"))
    changed = replace(model, biases=(*model.biases[:-1], model.biases[-1] + 3.0))  # export now stale
    planes = [np.full((4, 4), mu, np.float32) for mu in model.mean]
    assert np.allclose(changed.predict(planes), replace(changed, onnx_path=None).predict(planes), atol=1e-6)
    assert not np.allclose(changed.predict(planes), model.predict(planes), atol=1e-3)


def test_mlp_without_needed_bands_falls_back_to_irmad():
    before, after, _ = _pair()
    cm = change_map(before[:3], after[:3], np.ones(before.shape[1:], bool), bands=BANDS[:3], method="mlp")
    assert cm.method == "irmad" and "fallback" in cm.details


# --------------------------------------------------------------------------- clouds
def test_cloud_and_its_shadow_are_not_assessed_and_not_change():
    before, after, truth = _pair(changes=False)
    cloud = np.zeros(truth.shape, bool)
    cloud[30:60, 30:70] = True
    shade = np.zeros(truth.shape, bool)
    shade[55:85, 50:90] = True
    shade &= ~cloud
    after = after.copy()
    after[:, shade] *= 0.3
    after[:, cloud] = CLOUD[:, None]
    cm = scene_change_map(_scene(before), _scene(after), np.ones(truth.shape, bool))
    assert not cm.valid[cloud].any()
    _, cls = _landscape()
    land_shade = shade & (cls != 3)  # shadow on water stays water (dark either way)
    assert (~cm.valid[land_shade]).mean() > 0.9
    assert cm.mask.mean() < 0.002
    assert np.isnan(cm.magnitude[cloud]).all()


def test_a_mask_of_0_and_255_assesses_what_the_same_boolean_mask_does():
    before, after, _ = _pair()
    ok = np.ones(before.shape[1:], bool)
    ok[:, :12] = False
    as_bool = change_map(before, after, ok, bands=BANDS, method="cva-otsu")
    as_gdal = change_map(before, after, ok.astype(np.uint8) * 255, bands=BANDS, method="cva-otsu")
    assert (as_gdal.valid == as_bool.valid).all() and (as_gdal.mask == as_bool.mask).all()
    assert as_gdal.threshold == as_bool.threshold


def test_nodata_is_not_assessed():
    before, after, _ = _pair()
    after[:, :, :10] = np.nan
    cm = change_map(before, after, np.ones(before.shape[1:], bool), bands=BANDS)
    assert not cm.valid[:, :10].any() and not cm.mask[:, :10].any()


# --------------------------------------------------------------------------- dev cities
@pytest.mark.parametrize("city", ["beirut", "paris"])
def test_dev_city_crop_beats_classical_change_detection(shared_data, city):
    import imgdiff
    from imgdiff.evaluate.change import read_label

    from .conftest import need

    root = need(shared_data / "oscd" / city)
    b = imgdiff.read_scene(root / "before")
    a = imgdiff.read_scene(root / "after")
    h, w = b.shape
    r0, c0 = h // 2 - 150, w // 2 - 150
    crop = {k: slice(r0, r0 + 300) if i == 0 else slice(c0, c0 + 300) for i, k in enumerate("rc")}
    from dataclasses import replace

    def cut(s: Scene) -> Scene:
        sl = (crop["r"], crop["c"])
        return replace(s, bands={k: v[sl] for k, v in s.bands.items()}, valid=s.valid[sl],
                       transform=s.transform * Affine.translation(c0, r0))

    res = imgdiff.compare(cut(b), cut(imgdiff.align(b, a).after))
    truth = read_label(root.parent / city / "change.tif", imgdiff.Grid.of(b))[crop["r"], crop["c"]]
    s = scores(res.change.mask, truth)
    base = scores(imgdiff.compare(cut(b), cut(imgdiff.align(b, a).after), method="cva-otsu").change.mask, truth)
    assert res.change.method == "mlp"
    assert s["f1"] > base["f1"], (s, base)
    assert s["f1"] > 0.3, s


def test_eval_change_cli_prints_pooled_scores(shared_data):
    from imgdiff_cli.main import cli

    from .conftest import need

    need(shared_data / "oscd" / "paris")
    r = CliRunner().invoke(cli, ["eval", "change", "--data", str(shared_data / "oscd"), "--city", "paris",
                                 "--city", "paris", "--method", "cva-otsu", "--json"])  # named twice: once
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["method"] == "cva-otsu"
    p = out["per_city"]["paris"]
    assert 0 <= p["f1"] <= 1 and p["tp"] + p["fn"] > 0
    assert out["pooled"]["f1"] == pytest.approx(p["f1"])
    assert (out["pooled"]["tp"], out["pooled"]["fn"]) == (p["tp"], p["fn"])


def test_eval_change_cli_rejects_a_folder_without_labels(tmp_path):
    from imgdiff_cli.main import cli

    r = CliRunner().invoke(cli, ["eval", "change", "--data", str(tmp_path)])
    assert r.exit_code == 2
    assert "no labelled city" in r.output


def test_compare_cli_accepts_method_and_writes_three_band_change_tif(tmp_path):
    import rasterio
    from imgdiff_cli.main import cli

    from .conftest import write_band

    before, after, truth = _pair(gain=GAIN, offset=OFFSET)
    for name, stack in (("before", before), ("after", after)):
        d = tmp_path / name
        d.mkdir()
        for i, b in enumerate(BANDS):
            write_band(d / f"{b}.tif", np.round(stack[i] * 10000).astype(np.uint16))
    r = CliRunner().invoke(cli, ["compare", str(tmp_path / "before"), str(tmp_path / "after"), "-o",
                                 str(tmp_path / "out"), "--method", "irmad", "--no-coregister", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["change"]["method"] == "irmad"
    with rasterio.open(tmp_path / "out" / "change.tif") as ds:
        assert ds.count == 3
        mask = ds.read(2) > 0.5
    assert scores(mask, truth)["f1"] > 0.7


# --------------------------------------------------------------------------- saturated and noise-free inputs
#: 10 m pixels (row, column; even: a 20 m pixel's top-left quarter) of the OSCD Beirut crop below where a
#: 20 m pixel is made saturated; no change is found within 6 px of any of them on the untouched crop.
SATURATED_SITES = [(60, 60), (60, 180), (180, 60), (180, 180), (120, 120)]


def _oscd_crop(src, dst, value: int | None, r0: int = 400, c0: int = 400, n: int = 240):
    """Every band of an OSCD date cut to ``n`` x ``n`` px of 10 m from (r0, c0) (even: the 20 and
    60 m grids stay aligned), with the B11 and B12 pixels of 20 m over :data:`SATURATED_SITES` set
    to ``value`` DN (None: untouched)."""
    import rasterio
    from rasterio.windows import Window

    dst.mkdir(parents=True)
    for f in sorted(src.glob("B*.tif")):
        with rasterio.open(f) as ds:
            k = round(abs(ds.transform.a) / 9.89860463365216e-05)  # the 10 m pixel size of the crop (degrees)
            win = Window(c0 // k, r0 // k, max(1, n // k), max(1, n // k))
            dn = ds.read(1, window=win)
            profile = {**ds.profile, "width": dn.shape[1], "height": dn.shape[0], "tiled": False,
                       "transform": ds.window_transform(win)}
        if value is not None and f.stem in ("B11", "B12"):
            for r, c in SATURATED_SITES:
                dn[r // 2, c // 2] = value
        with rasterio.open(dst / f.name, "w", **profile) as out:
            out.write(dn, 1)
    return dst


@pytest.mark.parametrize("date", ["before", "after"])
@pytest.mark.parametrize("value", [65535, 20000], ids=["saturated", "reflectance-2"])
def test_a_saturated_20m_pixel_on_one_date_flags_nothing_beyond_the_10m_pixels_it_covers(shared_data, tmp_path,
                                                                                         date, value):
    """A saturated 20 m pixel of B11 and B12 (DN 65535, or reflectance 2.0: above the saturation level)
    on one date of a real pair: at most the four 10 m pixels it covers differ; they are not assessed,
    the warp's reach around them (after date) neither, and no pixel around them is flagged (the
    bilinear resampling and the warp spread it: 5-40 px flagged around the five sites before)."""
    import imgdiff

    from .conftest import need

    root = need(shared_data / "oscd" / "beirut")
    plain = [_oscd_crop(root / d, tmp_path / "plain" / d, None) for d in ("before", "after")]
    lit = [_oscd_crop(root / d, tmp_path / "lit" / d, value if d == date else None) for d in ("before", "after")]
    p = imgdiff.compare(*plain).change
    q = imgdiff.compare(*lit).change
    _no_halo(p, q)


def _no_halo(p, q) -> None:
    """``q``, the change map of a pair with :data:`SATURATED_SITES` saturated, against ``p``, the same
    pair's without. Within 12 px of a site: nothing newly flagged beyond the 10 m pixels it covers,
    those not assessed, and nothing else newly not assessed beyond the warp kernel's reach (2 px).
    Farther: the magnitude (the learned method's probability) moves by less than 0.01 (the scene's
    statistics move a little with the pixels left out: a pixel at the threshold may flip; before, up
    to 0.044, on 73-152 px)."""
    covered = np.zeros(p.mask.shape, bool)
    near = np.zeros(p.mask.shape, bool)
    for r, c in SATURATED_SITES:
        covered[r:r + 2, c:c + 2] = True
        near[r - 12:r + 14, c - 12:c + 14] = True
        assert not p.mask[r - 6:r + 8, c - 6:c + 8].any()  # the sites hold no change of their own
    assert not q.valid[covered].any()  # saturated: not assessed
    newly_flagged = q.mask & ~p.mask & near
    assert not (newly_flagged & ~covered).any(), np.argwhere(newly_flagged)
    reach = ndi.binary_dilation(covered, np.ones((3, 3), bool), iterations=2)  # the warp kernel's, 2 px
    assert not (p.valid & ~q.valid & ~reach).any(), np.argwhere(p.valid & ~q.valid & ~reach)
    both = p.valid & q.valid & ~near
    assert np.abs(q.magnitude[both] - p.magnitude[both]).max() < 0.01


@pytest.mark.parametrize("date", ["before", "after"])
def test_a_saturated_20m_pixel_flags_nothing_around_it_in_a_tiled_comparison(shared_data, tmp_path, date):
    """As above, window by window (``compare_tiled``: the strip reader, the cubic warp of each tile)."""
    import rasterio

    from imgdiff.tiles import compare_tiled

    from .conftest import need

    root = need(shared_data / "oscd" / "beirut")
    maps = []
    for tag, value in (("plain", None), ("lit", 65535)):
        pair = [_oscd_crop(root / d, tmp_path / tag / d, value if d == date else None) for d in ("before", "after")]
        compare_tiled(*pair, tmp_path / f"out_{tag}", tile_size=128, workers=1)
        with rasterio.open(tmp_path / f"out_{tag}" / "change.tif") as ds:
            maps.append(ChangeMap(ds.read(1), ds.read(2) > 0.5, ds.read(3) < 0.5, 0.0, "mlp"))
    _no_halo(*maps)


def test_the_warp_does_not_spread_a_saturated_pixel_into_the_change_map():
    """A 2 x 2 block at DN 65535 on a flat after date, shifted by a sub-pixel registration: the plain
    warp rings around it; the scene the change map reads holds the flat level wherever the warp's
    kernel reached no saturated pixel, and the pixels it did reach are few and next to the block."""
    from imgdiff.change import unspread_saturation
    from imgdiff.coregister import Registration, warp

    flat = np.full((40, 40), 0.2, np.float32)
    bands = {b: flat.copy() for b in ("B02", "B03", "B04", "B08", "B11")}
    bands["B11"][20:22, 20:22] = 65535 * 1e-4
    after = Scene(bands, "EPSG:32636", Affine(10, 0, 600000, 0, -10, 3870000), np.ones((40, 40), bool),
                  meta={"radiometry": {b: {"scale": 1e-4, "offset": 0.0} for b in bands}})
    reg = Registration(0.4, -0.3, 4.0, 3.0, 0.05, 1.0, method="test")
    moved = warp(after, reg)
    got, reach = unspread_saturation(after, moved, reg)
    near = ndi.binary_dilation(np.pad(np.ones((2, 2), bool), ((20, 18), (20, 18))), np.ones((3, 3), bool),
                               iterations=2)
    assert reach.any() and not (reach & ~near).any()
    clean = got.valid & ~reach
    assert np.abs(moved.bands["B11"][clean] - 0.2).max() > 0.01  # the plain warp's ringing
    np.testing.assert_allclose(got.bands["B11"][clean], 0.2, atol=1e-5)
    assert (got.valid == moved.valid).all()  # the cloud and saturation tests still see the block


def _real_crop(shared_data, names=("B02", "B03", "B04", "B08")):
    """A 300 x 300 px crop of OSCD Beirut (before date) as a (bands, rows, cols) stack and its valid mask."""
    import imgdiff

    from .conftest import need

    s = imgdiff.read_scene(need(shared_data / "oscd" / "beirut") / "before", bands=list(names))
    return s.stack(list(names))[:, 400:700, 400:700], s.valid[400:700, 400:700]


@pytest.mark.parametrize("gain", [1.1, 0.85])
@pytest.mark.parametrize("method", METHODS)
def test_an_exact_gain_of_a_float_scene_is_not_change(shared_data, method, gain):
    """after = before * gain in float32, no noise (a real crop): only float rounding differs after
    normalisation, and that is no change (cva-otsu, cva-em, irmad and logratio-otsu flagged 2-44 %)."""
    before, valid = _real_crop(shared_data)
    cm = change_map(before, before * np.float32(gain), valid, bands=("B02", "B03", "B04", "B08"), method=method)
    assert cm.mask.sum() == 0, f"{method} flagged {cm.mask.mean():.2%} at threshold {cm.threshold:.3g}"


@pytest.mark.parametrize("method", ["irmad", "cva-otsu", "cva-em", "logratio-otsu"])
def test_a_real_change_under_an_exact_float_gain_is_still_found(shared_data, method):
    before, valid = _real_crop(shared_data)
    after = before * np.float32(1.1)
    after[:, 100:130, 150:180] = ROOF[[0, 1, 2, 6], None, None]  # a new bright roof, 300 x 300 m
    truth = np.zeros(valid.shape, bool)
    truth[100:130, 150:180] = True
    cm = change_map(before, after, valid, bands=("B02", "B03", "B04", "B08"), method=method)
    s = scores(cm.mask, truth)
    assert s["recall"] > 0.9 and s["precision"] > 0.9, s


def test_the_noise_floor_is_at_least_its_share_of_the_signal():
    from imgdiff.change import MIN_RELATIVE_NOISE, noise_floor

    rounding = np.abs(np.random.default_rng(0).normal(0, 1e-8, 10_000))
    assert noise_floor(rounding) < 1e-7  # the robust floor alone collapses on rounding
    assert noise_floor(rounding, signal_scale=0.3) == pytest.approx(MIN_RELATIVE_NOISE * 0.3)
    noise = np.abs(np.random.default_rng(1).normal(0, 0.01, 10_000))  # real noise: the robust floor, unchanged
    assert noise_floor(noise, signal_scale=0.3) == noise_floor(noise)


@pytest.mark.parametrize("interpolation", ["spline", "cubic", "linear", "field"])
def test_the_warped_scene_keeps_each_bands_saturated_pixels_in_place(interpolation):
    """A 3 x 4 px block at DN 65535 in B11 only (the other bands textured), warped by (0.6, -0.7) px
    (or by a local model, near that shift): B11 reads saturated on exactly the 12 pixels whose
    sample position falls on the block (nearest) and the pixels around it hold only the light of the
    texture around (the plain warp lit them by up to 1.2 reflectance); B02-B08, with no saturated
    pixel of their own, and every band away from the block are the plain warp's, bit for bit (the
    spline's prefilter: from 20 px)."""
    from imgdiff.change import saturation_in_place
    from imgdiff.coregister import Registration, ShiftModel, warp
    from imgdiff.radiometry import band_saturation

    rng = np.random.default_rng(3)
    names = ("B02", "B03", "B04", "B08", "B11")
    bands = {b: ndi.gaussian_filter(rng.uniform(0.05, 0.4, (60, 60)), 1.5).astype(np.float32) for b in names}
    texture = bands["B11"].copy()
    block = np.zeros((60, 60), bool)
    block[30:33, 20:24] = True
    bands["B11"] = np.where(block, np.float32(6.5535), texture)
    meta = {"radiometry": {b: {"scale": 1e-4, "offset": 0.0} for b in names}}
    after = Scene(bands, "EPSG:32636", Affine(10, 0, 600000, 0, -10, 3870000), np.ones((60, 60), bool), meta=meta)
    reg = Registration(0.6, -0.7, 6.0, 7.0, 0.05, 1.0, method="test")
    kernel = "cubic" if interpolation == "field" else interpolation
    if interpolation == "field":  # a local model: 0.6 +- 0.003 px across the scene
        model = ShiftModel(1, (0.6, 0.003, 0.0), (-0.7, 0.0, 0.0), (30.0, 30.0), 30.0)
        reg = replace(reg, model=model)
    moved = warp(after, reg, interpolation=kernel)
    got = saturation_in_place(after, moved, reg, interpolation=kernel)
    footprint = np.zeros((60, 60), bool)
    footprint[31:34, 19:23] = True  # row y samples y - 0.7 (nearest y - 1), column x samples x + 0.6 (x + 1)
    np.testing.assert_array_equal(band_saturation(got, "B11") & got.valid, footprint)
    assert band_saturation(moved, "B11").sum() > 12
    dist = ndi.distance_transform_edt(~block)
    ring = (dist < 6) & ~footprint
    plain_texture = warp(replace(after, bands={"B11": texture}), reg, interpolation=kernel).bands["B11"]
    assert np.abs(moved.bands["B11"][ring] - plain_texture[ring]).max() > 0.5  # the plain warp lit them
    assert (got.bands["B11"][ring] <= ndi.maximum_filter(plain_texture, 5)[ring] + 0.01).all()
    assert (got.bands["B11"][ring] >= ndi.minimum_filter(plain_texture, 5)[ring] - 0.01).all()
    for b in names[:4]:
        np.testing.assert_array_equal(got.bands[b], moved.bands[b])
    far = dist >= 20
    np.testing.assert_array_equal(got.bands["B11"][far], moved.bands["B11"][far])
    np.testing.assert_array_equal(got.valid, moved.valid)


@pytest.mark.parametrize("date", ["before", "after"])
def test_without_the_cloud_bands_saturated_pixels_are_still_not_assessed(date):
    """Scenes with B03, B04 and B08 only (no cloud tests): a 2 x 2 block at DN 65535 in B08 on either
    date is not assessed (it was, and read as change); the pixels around it are."""
    from imgdiff.change import scene_change_map

    rng = np.random.default_rng(4)
    names = ("B03", "B04", "B08")
    meta = {"radiometry": {b: {"scale": 1e-4, "offset": 0.0} for b in names}}
    scenes = {}
    for d in ("before", "after"):
        bands = {b: (v + rng.normal(0, 0.003, (60, 60))).astype(np.float32) for b, v in zip(names, (0.08, 0.1, 0.3))}
        if d == date:
            bands["B08"][30:32, 30:32] = 6.5535
        scenes[d] = Scene(bands, "EPSG:32636", Affine(10, 0, 600000, 0, -10, 3870000), np.ones((60, 60), bool),
                          meta=meta)
    block = np.zeros((60, 60), bool)
    block[30:32, 30:32] = True
    for method in ("cva-otsu", "mlp"):
        cm = scene_change_map(scenes["before"], scenes["after"], np.ones((60, 60), bool), method=method)
        np.testing.assert_array_equal(cm.valid, ~block)
        assert not cm.mask[block].any()
