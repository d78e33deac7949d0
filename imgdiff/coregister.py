"""Co-registration: the sub-pixel shift between two scenes on one grid, and warping.

Convention: a shift (dx, dy) in pixels means a feature at reference pixel
(x, y) (x = column, y = row) appears at target pixel (x + dx, y + dy).
``dx_m``/``dy_m`` give the same shift in metres of the grid's CRS axes
(x east, y north for north-up grids, so ``dy_m = -dy * pixel height``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np
from skimage.registration import phase_cross_correlation

from .errors import CoregistrationError
from .scene import Scene

#: Bands preferred for matching, best first (sharp 10 m bands, NIR has most land texture).
MATCH_BANDS: tuple[str, ...] = ("B08", "B04", "B03", "B02")


@dataclass(frozen=True)
class Registration:
    """Result of :func:`coregister`.

    Attributes
    ----------
    dx, dy : float
        Global shift in pixels (x = column, y = row), target = reference + shift.
    dx_m, dy_m : float
        The same shift in metres along the CRS x (east) and y (north) axes.
    uncertainty_px : float
        1-sigma uncertainty of the shift, in pixels.
    reliability : float
        In [0, 1]; below 0.5 the shift should not be trusted.
    method : str
        How the shift was estimated.
    """

    dx: float
    dy: float
    dx_m: float
    dy_m: float
    uncertainty_px: float
    reliability: float
    method: str = "phase-correlation"

    def to_dict(self) -> dict:
        """JSON-ready description."""
        return {
            "dx": self.dx, "dy": self.dy, "dx_m": self.dx_m, "dy_m": self.dy_m,
            "uncertainty_px": self.uncertainty_px, "reliability": self.reliability, "method": self.method,
        }


def _match_image(scene: Scene, bands: Sequence[str]) -> np.ndarray:
    return np.nanmean(scene.stack(bands), axis=0)


def pick_bands(reference: Scene, target: Scene, bands: Sequence[str] | None = None) -> list[str]:
    """Bands used for matching: those given, else the sharp 10 m bands both scenes have."""
    if bands is not None:
        return list(bands)
    shared = [b for b in MATCH_BANDS if b in reference.bands and b in target.bands]
    if shared:
        return shared[:1] if "B08" in shared else shared
    common = [b for b in reference.bands if b in target.bands]
    if not common:
        raise CoregistrationError("reference and target share no band to match on")
    return common


def coregister(
    reference: Scene,
    target: Scene,
    *,
    bands: Sequence[str] | None = None,
    mask: np.ndarray | None = None,
    max_shift: float = 5.0,
    min_valid_fraction: float = 0.2,
) -> Registration:
    """Estimate the global sub-pixel shift of ``target`` relative to ``reference``.

    Both scenes must lie on one grid (see :func:`imgdiff.grid.align`).

    Parameters
    ----------
    reference, target : Scene
        Scenes on the same grid.
    bands : sequence of str, optional
        Bands to match on (their mean); default the NIR band or the visible 10 m bands.
    mask : ndarray of bool, optional
        True where pixels may drive the estimate (e.g. land without cloud).
    max_shift : float
        Largest plausible shift in pixels; a larger estimate raises.
    min_valid_fraction : float
        Least fraction of usable pixels in common.

    Returns
    -------
    Registration

    Raises
    ------
    CoregistrationError
        Too little valid overlap, no texture, or a shift beyond ``max_shift``.
    """
    if reference.shape != target.shape:
        raise CoregistrationError(
            f"reference {reference.shape} and target {target.shape} are not on one grid; align them first"
        )
    names = pick_bands(reference, target, bands)
    ref = _match_image(reference, names)
    tgt = _match_image(target, names)
    usable = np.isfinite(ref) & np.isfinite(tgt)
    if mask is not None:
        usable &= mask
    frac = float(usable.mean()) if usable.size else 0.0
    if frac < min_valid_fraction:
        raise CoregistrationError(
            f"too little valid overlap to co-register ({frac:.0%} of pixels usable, need "
            f"{min_valid_fraction:.0%})"
        )
    r = _prepare(ref, usable)
    t = _prepare(tgt, usable)
    if r.std() < 1e-6 or t.std() < 1e-6:
        raise CoregistrationError("no texture to co-register on (uniform images)")
    shift, error, _ = phase_cross_correlation(r, t, upsample_factor=100, normalization=None)
    dy, dx = -float(shift[0]), -float(shift[1])
    if max(abs(dx), abs(dy)) > max_shift:
        raise CoregistrationError(
            f"estimated shift ({dx:.2f}, {dy:.2f}) px exceeds max_shift={max_shift} px; the scenes may not match"
        )
    sx, sy = reference.pixel_size_m
    reliability = float(np.clip(1.0 - error, 0.0, 1.0))
    return Registration(
        dx=dx, dy=dy, dx_m=dx * sx * np.sign(reference.transform.a),
        dy_m=dy * sy * np.sign(reference.transform.e), uncertainty_px=float(np.sqrt(max(error, 0.0)) * 0.5),
        reliability=reliability,
    )


def _prepare(img: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Zero-mean, high-passed, windowed image with unusable pixels set to 0."""
    out = np.where(usable, img, np.nan).astype(np.float64)
    med = np.nanmedian(out)
    out = np.where(usable, out - med, 0.0)
    out = out - cv2.GaussianBlur(out, (0, 0), 8.0)
    win = np.outer(np.hanning(out.shape[0]), np.hanning(out.shape[1]))
    return out * win


def warp(target: Scene, registration: Registration, *, interpolation: str = "cubic") -> Scene:
    """Resample ``target`` so that it lines up with the reference grid.

    The output pixel (x, y) takes the target value at (x + dx, y + dy).
    Pixels whose source neighbourhood is invalid become NaN and invalid.

    Parameters
    ----------
    interpolation : {"nearest", "linear", "cubic", "lanczos"}
    """
    flags = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC,
             "lanczos": cv2.INTER_LANCZOS4}[interpolation]
    h, w = target.shape
    m = np.array([[1, 0, registration.dx], [0, 1, registration.dy]], np.float64)

    def shift(a: np.ndarray, f: int) -> np.ndarray:
        return cv2.warpAffine(a, m, (w, h), flags=f | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0.0)

    # A pixel stays valid only if its whole (kernel-sized) source neighbourhood was valid.
    radius = {"nearest": 0, "linear": 1, "cubic": 2, "lanczos": 4}[interpolation]
    invalid = (~target.valid).astype(np.uint8)
    if radius:
        invalid = cv2.dilate(invalid, np.ones((2 * radius - 1, 2 * radius - 1), np.uint8))
    valid = shift(1.0 - invalid.astype(np.float32), cv2.INTER_LINEAR) > 0.999
    bands = {}
    for name, a in target.bands.items():
        filled = np.where(target.valid, a, np.nanmedian(a)).astype(np.float32)
        bands[name] = shift(filled, flags)
    for out in bands.values():
        out[~valid] = np.nan
    return replace(target, bands=bands, valid=valid)
