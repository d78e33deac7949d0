"""Radiometry: indices, cloud / shadow / water / saturation masks, relative normalisation."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from imgdiff.errors import BandError
from imgdiff.radiometry import (
    cloud_mask,
    cloud_shadow_mask,
    date_masks,
    ndvi,
    ndwi,
    normalise,
    saturation_mask,
    water_mask,
)
from imgdiff.scene import Scene

# Typical top-of-atmosphere reflectance of a few surfaces (B02 B03 B04 B08 B10 B11 B12)
LAND = dict(B02=0.08, B03=0.10, B04=0.11, B08=0.30, B10=0.002, B11=0.22, B12=0.13)
WATER = dict(B02=0.07, B03=0.06, B04=0.04, B08=0.02, B10=0.001, B11=0.01, B12=0.008)
CLOUD = dict(B02=0.50, B03=0.48, B04=0.47, B08=0.52, B10=0.02, B11=0.36, B12=0.24)
DESERT = dict(B02=0.25, B03=0.29, B04=0.36, B08=0.39, B10=0.002, B11=0.45, B12=0.37)
ROOF = dict(B02=0.32, B03=0.33, B04=0.36, B08=0.39, B10=0.001, B11=0.28, B12=0.18)


def _scene(classes: np.ndarray, table: list[dict], *, bands=("B02", "B03", "B04", "B08", "B10", "B11", "B12"),
           shade: np.ndarray | None = None, seed: int = 0) -> Scene:
    rng = np.random.default_rng(seed)
    out = {}
    for b in bands:
        v = np.array([t[b] for t in table], np.float32)[classes]
        if shade is not None:
            v = v * np.where(shade, 0.3, 1.0).astype(np.float32)
        out[b] = (v + rng.normal(0, 0.004, v.shape)).astype(np.float32)
    return Scene(bands=out, crs="EPSG:32636", transform=Affine(10, 0, 600000, 0, -10, 3870000),
                 valid=np.ones(classes.shape, bool))


@pytest.fixture
def cloudy():
    """200 x 200 px land with a lake, a 30 x 40 px cloud and its shadow 25 px south-east."""
    cls = np.zeros((200, 200), int)
    cls[150:190, 10:60] = 1  # lake
    cls[40:70, 60:100] = 2  # cloud
    shade = np.zeros(cls.shape, bool)
    shade[65:95, 80:120] = True
    shade &= cls == 0
    return _scene(cls, [LAND, WATER, CLOUD], shade=shade), cls, shade


def test_indices_have_known_values():
    assert ndvi(np.array([0.3]), np.array([0.1]))[0] == pytest.approx(0.5)
    assert ndwi(np.array([0.06]), np.array([0.02]))[0] == pytest.approx(0.5)
    assert np.isnan(ndvi(np.array([0.0]), np.array([0.0]))[0])


def test_cloud_mask_covers_the_cloud_and_nothing_far_away(cloudy):
    scene, cls, _ = cloudy
    m = cloud_mask(scene, shadows=False)
    assert m[cls == 2].mean() > 0.99
    # grown by a few pixels at most: nothing farther than 4 px from the cloud
    far = np.ones(cls.shape, bool)
    far[36:74, 56:104] = False
    assert not m[far].any()


def test_thick_cloud_only_leaves_out_cirrus_over_land():
    cls = np.zeros((120, 120), int)
    cls[20:50, 20:60] = 1  # thick cloud
    cls[70:110, 60:110] = 2  # cirrus over land: seen in B10 only, blue lifted a little
    scene = _scene(cls, [LAND, CLOUD, dict(LAND, B02=0.15, B10=0.03)])
    both, thick = cloud_mask(scene, shadows=False), cloud_mask(scene, shadows=False, thin=False)
    assert both[cls == 2].mean() > 0.99 and not thick[cls == 2].any()
    assert thick[cls == 1].mean() > 0.99 and not (thick & ~both).any()


def test_cloud_shadow_is_found_from_the_data(cloudy):
    scene, cls, shade = cloudy
    sh = cloud_shadow_mask(scene)
    assert sh[shade].mean() > 0.9
    assert sh[~shade].mean() < 0.01
    full = cloud_mask(scene)
    assert full[shade].mean() > 0.9 and full[cls == 2].mean() > 0.99


def test_water_mask_finds_the_lake_not_the_shadow(cloudy):
    scene, cls, shade = cloudy
    w = water_mask(scene)
    assert w[cls == 1].mean() > 0.99
    assert w[shade].mean() < 0.01
    assert w[cls == 0].mean() < 0.01


@pytest.mark.parametrize("surface", [DESERT, ROOF], ids=["desert", "bright-roof"])
def test_bright_ground_is_not_cloud(surface):
    cls = np.zeros((60, 60), int)
    cls[10:50, 10:50] = 1
    scene = _scene(cls, [LAND, surface])
    assert cloud_mask(scene).mean() == 0.0


def test_cloud_mask_works_with_four_bands(cloudy):
    scene, cls, _ = cloudy
    four = scene.select(["B02", "B03", "B04", "B08"])
    assert cloud_mask(four, shadows=False)[cls == 2].mean() > 0.99
    with pytest.raises(BandError, match="B08"):
        cloud_mask(scene.select(["B02", "B03", "B04"]))


def test_saturation_uses_the_recorded_scale():
    cls = np.zeros((10, 10), int)
    scene = _scene(cls, [LAND], bands=("B02", "B03", "B04", "B08"))
    b = dict(scene.bands)
    b["B04"] = b["B04"].copy()
    b["B04"][2, 3] = 65535 / 65535
    s = Scene(bands=b, crs=scene.crs, transform=scene.transform, valid=scene.valid,
              meta={"radiometry": {k: {"scale": 1 / 65535, "offset": 0.0} for k in b}})
    m = saturation_mask(s)
    assert m[2, 3] and m.sum() == 1
    assert date_masks(s).excluded[2, 3]


def test_normalise_recovers_gain_and_offset_despite_changed_pixels():
    rng = np.random.default_rng(1)
    before = rng.uniform(0.02, 0.4, (4, 100, 100)).astype(np.float32)
    gain = np.array([1.2, 0.8, 1.1, 0.9], np.float32)
    off = np.array([0.01, -0.02, 0.0, 0.03], np.float32)
    after = ((before - off[:, None, None]) / gain[:, None, None]).astype(np.float32)
    after[:, :20, :20] = rng.uniform(0.3, 0.6, (4, 20, 20))  # 4 % real change
    n = normalise(before, after, np.ones((100, 100), bool))
    np.testing.assert_allclose(n.gain, gain, rtol=0.01)
    np.testing.assert_allclose(n.offset, off, atol=0.003)
    back = n.apply(after)
    assert np.abs(back - before)[:, 20:, 20:].max() < 0.005


def test_a_cloud_speck_casts_no_shadow_onto_dark_ground():
    # a 2 x 4 px white speck (a roof the cloud rules take for cloud, 48 px once grown) among
    # shaded ground: with one 30 m block to place, some shift always lands it on dark pixels
    cls = np.zeros((200, 200), int)
    cls[100:102, 100:104] = 2
    shade = np.zeros(cls.shape, bool)
    shade[120:140, 130:150] = True
    scene = _scene(cls, [LAND, WATER, CLOUD], shade=shade)
    assert cloud_mask(scene, shadows=False).sum() >= 25  # it is taken for cloud
    assert not cloud_shadow_mask(scene).any()
    # the same shaded ground under a cloud of 1 ha or more is searched and found
    assert cloud_shadow_mask(scene, min_cloud_m2=0.0).any()


def test_matched_levels_undo_a_gain_and_an_offset_between_dates():
    from imgdiff.radiometry import matched_levels

    rng = np.random.default_rng(0)
    reference = rng.uniform(0.02, 0.4, 10_000)
    other = 0.9 * reference + 0.05        # a gain and a top-of-atmosphere date's path radiance
    matched, gain = matched_levels(other, reference, other)
    assert gain == pytest.approx(1 / 0.9)
    np.testing.assert_allclose(matched, reference, atol=1e-12)
