"""The chip classifier's second look at vessel candidates (imgdiff.detect.vessel_chips)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imgdiff.detect import vessel_chips as vc
from imgdiff.detect.vessel_features import FEATURE_NAMES, candidate_features, load_rescorer
from imgdiff.detect.vessels import RESCORE_PATH
from imgdiff.errors import InputError


def test_a_chip_is_centred_on_the_pixel_holding_the_box_centre_and_mirrors_beyond_the_edges():
    x = np.arange(6 * 50 * 60, dtype=np.float32).reshape(6, 50, 60)
    boxes = np.array([[20.0, 10.0, 25.0, 13.0], [0.0, 0.0, 2.0, 2.0]])
    chips = vc.candidate_chips(x, boxes, size=8)
    assert chips.shape == (2, vc.CHIP_CHANNELS, 8, 8)
    # box centre (22.5, 11.5) lies in pixel column 22, row 11: chip index 4 of 8
    assert np.array_equal(chips[0, :, 4, 4], x[:4, 11, 22])
    assert np.array_equal(chips[0], x[:4, 7:15, 18:26])
    # the corner box (centre in pixel (1, 1)): rows and columns -3..4 read 3 2 1 0 1 2 3 4
    assert np.array_equal(chips[1, 0, 0, :], x[0, 3, [3, 2, 1, 0, 1, 2, 3, 4]])
    with_margin = vc.candidate_chips(x, boxes[:1], size=8, margin=2)
    assert np.array_equal(with_margin[0, :, 2:10, 2:10], chips[0])


def test_the_eight_views_are_the_turns_and_mirrors_of_each_chip():
    rng = np.random.default_rng(0)
    chips = rng.normal(size=(3, 4, 6, 6)).astype(np.float32)
    views = vc.dihedral(chips).reshape(8, 3, 4, 6, 6)
    assert np.array_equal(views[0], chips)
    assert np.array_equal(views[1], chips[..., ::-1])
    assert np.array_equal(views[3], np.rot90(chips, 2, axes=(2, 3)))
    assert np.array_equal(views[4], chips.swapaxes(2, 3))
    assert len({v.tobytes() for v in views[:, 0]}) == 8  # an asymmetric chip: eight different views
    assert np.array_equal(vc.dihedral(chips, 2).reshape(2, 3, 4, 6, 6), views[:2])
    with pytest.raises(ValueError, match="views"):
        vc.dihedral(chips, 3)


@pytest.mark.skipif(not vc.CHIP_MODEL_PATH.is_file(), reason="no chip classifier shipped")
def test_the_shipped_classifier_gives_probabilities_that_do_not_depend_on_the_chip_orientation():
    rng = np.random.default_rng(1)
    chips = rng.normal(0, 0.5, size=(5, 4, vc.CHIP_PX, vc.CHIP_PX)).astype(np.float32)
    p = vc.chip_probability(chips, views=8)
    assert p.shape == (5,) and np.all((p >= 0) & (p <= 1))
    turned = vc.chip_probability(np.ascontiguousarray(np.rot90(chips, 1, axes=(2, 3))[..., ::-1]), views=8)
    assert np.allclose(p, turned, atol=1e-5)
    # the default views (the chip and its left-right mirror) do not depend on that mirror
    mirrored = vc.chip_probability(np.ascontiguousarray(chips[..., ::-1]))
    assert np.allclose(vc.chip_probability(chips), mirrored, atol=1e-5)
    assert vc.chip_probability(chips[:0]).shape == (0,)
    assert vc.CHIP_MODEL_PATH.stat().st_size < 1_000_000


def test_a_missing_chip_model_is_an_input_error_naming_the_file(tmp_path: Path):
    with pytest.raises(InputError, match="nowhere.onnx"):
        vc.chip_probability(np.zeros((1, 4, vc.CHIP_PX, vc.CHIP_PX), np.float32), tmp_path / "nowhere.onnx")


def test_the_chip_probability_is_a_rescorer_feature_column_and_nan_when_not_given():
    bands = {b: np.full((40, 40), 0.05, np.float32) for b in ("B02", "B03", "B04", "B08")}
    boxes = np.array([[10.0, 10.0, 14.0, 12.0], [25.0, 25.0, 28.0, 30.0]])
    heat = np.zeros((20, 20), np.float32)
    col = FEATURE_NAMES.index("chip_probability")
    given = candidate_features(bands, boxes, np.array([0.3, 0.6]), heat, None, (10.0, 10.0),
                               chip_probability=np.array([0.2, 0.9]))
    assert np.array_equal(given[:, col], [0.2, 0.9])
    assert np.isnan(candidate_features(bands, boxes, np.array([0.3, 0.6]), heat, None, (10.0, 10.0))[:, col]).all()


@pytest.mark.skipif(not vc.CHIP_MODEL_PATH.is_file(), reason="no chip classifier shipped")
def test_the_shipped_rescorer_reads_the_chip_probability():
    assert "chip_probability" in load_rescorer(RESCORE_PATH)["features"]


def test_chips_of_a_hazy_scene_are_cut_from_its_input_without_the_path_radiance():
    from affine import Affine
    from rasterio.crs import CRS

    from imgdiff.detect.vessels import band_levels, haze_free_chips, remove_haze, vessel_input, water_mask
    from imgdiff.scene import Scene

    rng = np.random.default_rng(2)
    base = {b: (0.03 + 0.2 * (rng.random((64, 64)) > 0.7) + rng.normal(0, 0.002, (64, 64))).astype(np.float32)
            for b in ("B02", "B03", "B04", "B08")}
    ok = np.ones((64, 64), bool)
    clear = Scene(base, CRS.from_epsg(32636), Affine(10, 0, 500000, 0, -10, 3800000), ok)
    hazy = Scene({b: v + np.float32(0.04) for b, v in base.items()}, clear.crs, clear.transform, ok)
    boxes = np.array([[10.0, 10.0, 14.0, 13.0], [50.0, 2.0, 60.0, 6.0]])
    x = vessel_input(hazy)
    # nothing taken off: the network's own input
    assert np.array_equal(haze_free_chips(x, hazy, hazy, boxes), vc.candidate_chips(x, boxes))
    dehazed, _ = remove_haze(hazy, water_mask(hazy), {b: 0.04 for b in base})
    want = vc.candidate_chips(vessel_input(clear), boxes)
    assert np.allclose(haze_free_chips(x, hazy, dehazed, boxes), want, atol=1e-3)
    levels = {b: band_levels(v) for b, v in hazy.bands.items()}  # a whole scene's levels, moved down too
    assert np.allclose(haze_free_chips(x, hazy, dehazed, boxes, levels), want, atol=1e-3)
