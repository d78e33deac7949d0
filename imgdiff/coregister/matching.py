"""Matching images: the bands to match on, their mean, and the band-pass that removes radiometry.

Both scenes are reduced to one matching image (:func:`matching_image`: mean of the matching bands,
:data:`MATCH_BANDS` when present, each scaled by its median) and band-passed (:func:`bandpass`:
difference of Gaussians, sigma :data:`SIGMA_LO` and :data:`SIGMA_HI` px, normalised convolution
around masked pixels): this removes the radiometric differences between dates (illumination, gain,
offset, haze) and the aliased high frequencies that bias sub-pixel estimates. :func:`prepare` pads
the band-passed image for chip extraction (:class:`PreparedImage`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import CoregistrationError
from ..scene import Scene

#: Bands preferred for matching, best first (sharp 10 m bands).
MATCH_BANDS: tuple[str, ...] = ("B08", "B04", "B03", "B02")
#: Band-pass of the matching images: Gaussian low-pass / high-pass scales in pixels.
SIGMA_LO, SIGMA_HI = 1.0, 6.0


def pick_bands(reference: Scene, target: Scene, bands: Sequence[str] | None = None) -> list[str]:
    """Bands used for matching: those given, else the sharp 10 m bands both scenes have, else all shared."""
    if bands is not None:
        missing = [b for b in bands if b not in reference.bands or b not in target.bands]
        if missing:
            raise CoregistrationError(f"matching band(s) {', '.join(missing)} are not in both scenes")
        return list(bands)
    shared = [b for b in MATCH_BANDS if b in reference.bands and b in target.bands]
    if shared:
        return shared
    common = [b for b in reference.bands if b in target.bands]
    if not common:
        raise CoregistrationError("reference and target share no band to match on")
    return common


def matching_image(stack: np.ndarray) -> np.ndarray:
    """Mean of a (bands, rows, cols) stack, each band scaled by its median (NaN where any is NaN)."""
    stack = np.asarray(stack, np.float32)
    if stack.ndim == 2:
        return stack
    if len(stack) == 1:
        return stack[0]
    out = np.zeros(stack.shape[1:], np.float32)
    for b in stack:
        med = np.nanmedian(b) if np.isfinite(b).any() else 1.0
        out += b / np.float32(med if np.isfinite(med) and med > 0 else 1.0)
    return out / np.float32(len(stack))


def bandpass(img: np.ndarray, valid: np.ndarray, sigma_lo: float = SIGMA_LO,
             sigma_hi: float = SIGMA_HI) -> tuple[np.ndarray, np.ndarray]:
    """Difference-of-Gaussians band-pass that ignores invalid pixels.

    Parameters
    ----------
    img : ndarray (rows, cols)
        Matching image (any units); NaN allowed where ``valid`` is False.
    valid : ndarray of bool (rows, cols)
    sigma_lo, sigma_hi : float
        Gaussian scales (pixels) of the low-pass and of the removed background.

    Returns
    -------
    filtered : ndarray float32
        Band-passed image, 0 where unusable.
    usable : ndarray of bool
        Valid pixels at least ~2 px away from invalid ones.
    """
    m = valid.astype(np.float32)
    a = np.where(valid, img, 0).astype(np.float32)

    def blur(x: np.ndarray, s: float) -> np.ndarray:
        return cv2.GaussianBlur(x, (0, 0), s, borderType=cv2.BORDER_REFLECT)

    lo = blur(a, sigma_lo) / np.maximum(blur(m, sigma_lo), 1e-6)
    hi = blur(a, sigma_hi) / np.maximum(blur(m, sigma_hi), 1e-6)
    usable = cv2.erode(valid.astype(np.uint8), np.ones((5, 5), np.uint8), borderType=cv2.BORDER_CONSTANT,
                       borderValue=1).astype(bool)
    out = np.where(usable, lo - hi, 0).astype(np.float32)
    return out, usable


@dataclass(frozen=True)
class PreparedImage:
    """A band-passed matching image padded with unusable pixels, for chip extraction."""

    filtered: np.ndarray
    usable: np.ndarray
    pad: int


def prepare(img: np.ndarray, valid: np.ndarray, pad: int) -> PreparedImage:
    """Band-pass a matching image and pad it by ``pad`` unusable pixels on every side."""
    f, u = bandpass(img, valid & np.isfinite(img))
    return PreparedImage(np.pad(f, pad), np.pad(u, pad), pad)
