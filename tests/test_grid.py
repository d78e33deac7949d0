"""Common grid of two scenes across CRSs, resolutions and extents."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from numpy.testing import assert_allclose
from rasterio.crs import CRS
from rasterio.warp import transform as warp_transform

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
