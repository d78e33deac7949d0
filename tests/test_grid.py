"""Common grid of two scenes across CRSs, resolutions and extents."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from affine import Affine
from numpy.testing import assert_allclose
from rasterio.crs import CRS
from rasterio.warp import transform as warp_transform
from scipy import ndimage as ndi

from imgdiff import Grid, NoOverlapError, Scene, align, utm_grid
from imgdiff.errors import BandError


def make_scene(crs, transform, data, bands=("B04", "B08")):
    return Scene({b: data.astype(np.float32) + i * 0.01 for i, b in enumerate(bands)}, CRS.from_user_input(crs),
                 transform, np.isfinite(data))


def smooth_field(shape, transform, crs):
    """Reflectance as a smooth function of UTM 36N coordinates, so any grid can be checked."""
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    xs, ys = transform * (cols + 0.5, rows + 0.5)
    if CRS.from_user_input(crs).to_epsg() != 32636:
        xs, ys = warp_transform(crs, "EPSG:32636", xs.ravel(), ys.ravel())
        xs, ys = np.reshape(xs, shape), np.reshape(ys, shape)
    return 0.1 + 1e-5 * (np.asarray(xs) - 600000) + 2e-5 * (np.asarray(ys) - 3860000)


def test_utm_scene_and_geographic_scene_align_on_the_before_grid():
    tr_utm = Affine(10, 0, 600000, 0, -10, 3870000)
    before = make_scene("EPSG:32636", tr_utm, smooth_field((200, 200), tr_utm, "EPSG:32636"))
    lon, lat = warp_transform("EPSG:32636", "EPSG:4326", [599500], [3871000])
    tr_geo = Affine(1e-4, 0, lon[0], 0, -1e-4, lat[0])
    after = make_scene("EPSG:4326", tr_geo, smooth_field((300, 300), tr_geo, "EPSG:4326"))
    pair = align(before, after)
    assert pair.grid == Grid.of(before)
    assert pair.after.shape == before.shape and pair.after.crs == before.crs
    assert pair.overlap[5:-5, 5:-5].all()
    # the field is linear, so bilinear resampling must reproduce it
    assert_allclose(pair.after.bands["B04"][pair.overlap], before.bands["B04"][pair.overlap], atol=2e-4)


def test_partial_overlap_is_masked():
    tr = Affine(10, 0, 600000, 0, -10, 3870000)
    data = np.ones((100, 100))
    before = make_scene("EPSG:32636", tr, data)
    after = make_scene("EPSG:32636", tr * Affine.translation(50, 0), data)
    pair = align(before, after)
    assert not pair.overlap[:, :50].any() and pair.overlap[:, 51:].all()


def test_different_resolutions_resample_onto_the_finer_before_grid():
    tr10 = Affine(10, 0, 600000, 0, -10, 3870000)
    tr20 = Affine(20, 0, 600000, 0, -20, 3870000)
    before = make_scene("EPSG:32636", tr10, smooth_field((100, 100), tr10, "EPSG:32636"))
    after = make_scene("EPSG:32636", tr20, smooth_field((50, 50), tr20, "EPSG:32636"))
    pair = align(before, after)
    inner = pair.overlap.copy()
    inner[:2], inner[-2:], inner[:, :2], inner[:, -2:] = False, False, False, False
    assert_allclose(pair.after.bands["B08"][inner], before.bands["B08"][inner], atol=1e-5)


def test_no_overlap_is_a_clear_error():
    a = make_scene("EPSG:32636", Affine(10, 0, 600000, 0, -10, 3870000), np.ones((10, 10)))
    b = make_scene("EPSG:32636", Affine(10, 0, 700000, 0, -10, 3870000), np.ones((10, 10)))
    with pytest.raises(NoOverlapError, match="no pixels inside"):
        align(a, b)


def test_scenes_without_shared_bands_are_rejected():
    tr = Affine(10, 0, 600000, 0, -10, 3870000)
    a = make_scene("EPSG:32636", tr, np.ones((10, 10)), bands=("B02",))
    b = make_scene("EPSG:32636", tr, np.ones((10, 10)), bands=("B08",))
    with pytest.raises(BandError, match="share no band"):
        align(a, b)


def test_utm_grid_for_a_lonlat_aoi_is_in_the_right_zone_and_snapped():
    g = utm_grid((35.87, 34.88, 35.91, 34.92), 10.0)  # Tartus
    assert g.crs.to_epsg() == 32636
    assert g.transform.a == 10 and g.transform.c % 10 == 0 and g.transform.f % 10 == 0
    w, s, e, n = g.lonlat_bounds()
    assert w <= 35.87 and e >= 35.91 and s <= 34.88 and n >= 34.92



def _hull_scene(level: float = 6.5535) -> tuple[Scene, np.ndarray, np.ndarray]:
    """A flat 10 m scene of water (reflectance 0.2 + 0.01 per band, DN/10000) with a bright ship hull,
    2 x 3 px, at ``level`` in B02-B08 (6.5535: DN 65535, saturated; none in B11), and noisy land along
    its top; the hull's pixels and the land's."""
    tr = Affine(10, 0, 600000, 0, -10, 3870000)
    rng = np.random.default_rng(5)
    hull, land = np.zeros((40, 40), bool), np.zeros((40, 40), bool)
    hull[20:22, 20:23] = True
    land[:8] = True
    bands = {}
    for i, b in enumerate(("B02", "B03", "B04", "B08", "B11")):
        a = np.full((40, 40), 0.2 + 0.01 * i, np.float32)
        a[land] = rng.uniform(0.1, 0.4, land.sum())
        if b != "B11":
            a[hull] = level
        bands[b] = a
    meta = {"radiometry": {b: {"scale": 1e-4, "offset": 0.0, "source": "test"} for b in bands}}
    return Scene(bands, CRS.from_epsg(32636), tr, np.ones((40, 40), bool), meta=meta), hull, land


def _placed_on(grid: Grid, scene: Scene, mask: np.ndarray) -> np.ndarray:
    """The pixels of ``grid`` whose centres fall on ``mask``'s pixels of ``scene`` (nearest)."""
    from rasterio.enums import Resampling

    from imgdiff import reproject_scene

    marked = Scene({"m": np.where(mask, 1.0, 0.0).astype(np.float32)}, scene.crs, scene.transform, scene.valid)
    return reproject_scene(marked, grid, Resampling.nearest).bands["m"] == 1.0


def _plain_bilinear(a: np.ndarray, scene: Scene, grid: Grid) -> np.ndarray:
    """One band resampled onto ``grid`` as ``reproject_scene`` did before saturation was kept in place."""
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    out = np.full(grid.shape, np.nan, np.float32)
    reproject(np.asarray(a), out, src_transform=scene.transform, src_crs=scene.crs, dst_transform=grid.transform,
              dst_crs=grid.crs, src_nodata=np.nan, dst_nodata=np.nan, resampling=Resampling.bilinear)
    return out


@pytest.mark.parametrize("where", ["offset", "other-zone"])
def test_a_reprojected_saturated_hull_stays_on_the_pixels_it_covers(where):
    """A 6 px hull at DN 65535 reprojected onto a grid offset by (0.4, 0.3) px, or onto UTM 35N: it
    keeps its value on the pixels of the new grid whose centres it covers (6) and no other pixel
    carries any of it (bilinearly, 10 pixels read saturated and 2 more carry 0.9-1.3 of
    reflectance); the band without it, the land and the water its kernel does not reach are
    bit-identical to the plain bilinear resampling."""
    from imgdiff import reproject_scene
    from imgdiff.radiometry import saturation_mask

    scene, hull, land = _hull_scene()
    if where == "offset":
        grid = Grid(scene.crs, scene.transform * Affine.translation(0.4, 0.3), 38, 38)
    else:
        lon, lat = warp_transform("EPSG:32636", "EPSG:4326", [600000], [3870000])
        x, y = warp_transform("EPSG:4326", "EPSG:32635", lon, lat)
        grid = Grid(CRS.from_epsg(32635), Affine(10, 0, x[0] + 20, 0, -10, y[0] - 20), 36, 36)
    got = reproject_scene(scene, grid)
    covered = _placed_on(grid, scene, hull)
    near_land = ndi.binary_dilation(_placed_on(grid, scene, land), iterations=2)
    assert covered.sum() == 6
    np.testing.assert_array_equal(saturation_mask(got), covered)
    for i, (name, a) in enumerate(scene.bands.items()):
        plain, v = _plain_bilinear(a, scene, grid), got.bands[name]
        if name == "B11":  # no hull in it: as before, bit for bit
            np.testing.assert_array_equal(v, plain)
            continue
        assert (saturation_mask(replace(got, bands={name: plain})) & ~covered).sum() >= 4  # it spread before
        assert_allclose(v[covered], 6.5535, rtol=1e-6)
        water = ~covered & ~near_land & np.isfinite(plain)
        assert_allclose(v[water], 0.2 + 0.01 * i, atol=1e-6)  # none of the hull's light on the water around it
        reached = ~covered & (np.abs(plain - (0.2 + 0.01 * i)) > 1e-6) & ~near_land
        np.testing.assert_array_equal(v[~covered & ~reached], plain[~covered & ~reached])  # the rest unmoved
    np.testing.assert_array_equal(got.valid, np.isfinite(_plain_bilinear(scene.bands["B02"], scene, grid)))
