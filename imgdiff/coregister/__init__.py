"""Co-registration: the sub-pixel shift between two scenes on one grid, and warping.

Convention: a shift (dx, dy) in pixels means a feature at reference pixel
(x, y) (x = column, y = row) appears at target pixel (x + dx, y + dy).
``dx_m``/``dy_m`` give the same shift in ground metres along the grid's CRS axes
(x east, y north for north-up grids, so ``dy_m = -dy * pixel height``).
Tie-point coordinates are pixel-edge coordinates (rasterio's convention: the
centre of pixel (col, row) is at (col + 0.5, row + 0.5)).

Method
------
1. Both scenes are reduced to one matching image (mean of the matching bands)
   and band-passed (difference of Gaussians, sigma 1 and 6 px, normalised
   convolution around masked pixels): this removes the radiometric differences
   between dates (illumination, gain, offset, haze) and the aliased high
   frequencies that bias sub-pixel estimates.
2. The images are cut into chips (tie-point windows). A pooled, normalised
   cross-power spectrum of all chips gives a robust integer start; each chip
   then gets its own phase-correlation start.
3. Each chip is refined by a symmetric Gauss-Newton (Lucas-Kanade) translation
   solve with a per-chip gain, exact Fourier-domain sub-pixel shifts (no
   interpolation-kernel bias), coarse-to-fine smoothing and Tukey IRLS weights
   (changed pixels, ships, clouds do not pull the estimate).
4. Chips are accepted or rejected with a reason (masked, no texture, low
   correlation, no convergence, uncertain, beyond max_shift, outlier against a
   robust trend); the global shift is the precision-weighted mean of the
   accepted chips (an error when it lies beyond ``max_shift``). With
   ``local=True`` chips are Gaussian-weighted around their centre, each tie point
   is placed at its chip's information-weighted centroid, and the displacement
   model is a robust (Tukey IRLS) polynomial plus a smoothed thin-plate-spline
   correction of its residuals, sampled on a grid (:class:`ShiftModel`).
5. :func:`warp` resamples with exact coordinates (cubic B-spline by default).

Large files on one grid are never read whole (:func:`coregister_paths`): only
the strips of rows around the chips are read, and only the chip windows kept.

Submodules
----------
results
    :class:`Registration`, :class:`TiePoint` and the rejection reasons (:data:`REJECT_REASONS`).
model
    :class:`ShiftModel`, the local displacement model: :func:`fit_model`, :func:`add_residual_grid`,
    :func:`dense_field`.
matching
    Matching images (step 1): :func:`pick_bands`, :func:`matching_image`, :func:`bandpass`, :func:`prepare`.
chips
    The shift of chip pairs (steps 2-3): :func:`phase_correlation`, :func:`refine_chips`, :func:`fft_threads`.
tiepoints
    :func:`chip_layout` and the tie points of an image with rejection reasons (step 4): :func:`measure`,
    :func:`measure_image`.
registration
    :func:`coregister` and :func:`estimate`: the global shift, its uncertainty and reliability (step 4).
files
    :func:`coregister_paths`: scenes on disk, large ones read in strips around the chips.
warping
    :func:`warp` (step 5).
"""

from .chips import ChipShifts, fft_threads, phase_correlation, refine_chips
from .files import coregister_paths
from .matching import MATCH_BANDS, SIGMA_HI, SIGMA_LO, PreparedImage, bandpass, matching_image, pick_bands, prepare
from .model import ShiftModel, add_residual_grid, dense_field, fit_model
from .registration import coregister, estimate
from .results import REJECT_REASONS, Registration, TiePoint
from .tiepoints import (
    MAX_SHIFT_PX,
    MAX_SHIFT_RANGE_PX,
    ChipLayout,
    chip_layout,
    measure,
    measure_image,
    parse_max_shift,
)
from .warping import warp

__all__ = [
    "MATCH_BANDS", "MAX_SHIFT_PX", "MAX_SHIFT_RANGE_PX", "REJECT_REASONS", "SIGMA_HI", "SIGMA_LO", "ChipLayout", "ChipShifts", "PreparedImage", "Registration",
    "ShiftModel", "TiePoint", "add_residual_grid", "bandpass", "chip_layout", "coregister", "coregister_paths",
    "dense_field", "estimate", "fft_threads", "fit_model", "matching_image", "measure", "measure_image",
    "parse_max_shift", "phase_correlation", "pick_bands", "prepare", "refine_chips", "warp",
]
