"""Pixel change between two co-registered scenes: magnitude, threshold, mask."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu


@dataclass(frozen=True)
class ChangeMap:
    """A per-pixel change map.

    Attributes
    ----------
    magnitude : ndarray of float32
        Change magnitude (method-specific units; for CVA the Euclidean norm of the
        reflectance difference vector). NaN where not computed.
    mask : ndarray of bool
        Changed pixels (False outside ``valid``).
    valid : ndarray of bool
        Pixels where change was assessed (both dates valid, not masked).
    threshold : float
        Magnitude threshold used for ``mask``.
    method : str
    """

    magnitude: np.ndarray
    mask: np.ndarray
    valid: np.ndarray
    threshold: float
    method: str


def normalise_gain(before: np.ndarray, after: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Scale each band of ``after`` (bands, rows, cols) so its median matches ``before`` on ``valid``."""
    out = after.copy()
    for i in range(after.shape[0]):
        mb, ma = np.median(before[i][valid]), np.median(after[i][valid])
        if ma > 0:
            out[i] = after[i] * (mb / ma)
    return out


def drop_small_regions(mask: np.ndarray, min_pixels: int) -> np.ndarray:
    """Keep only 8-connected regions of at least ``min_pixels`` pixels."""
    labels, n = ndi.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_pixels
    keep[0] = False
    return keep[labels]


def cva_magnitude(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Change vector magnitude ``||after - before||`` over bands (axis 0), float32."""
    return np.sqrt(np.sum((after.astype(np.float32) - before.astype(np.float32)) ** 2, axis=0))


def change_map(
    before: np.ndarray,
    after: np.ndarray,
    valid: np.ndarray,
    *,
    min_mapping_unit_px: int = 4,
) -> ChangeMap:
    """CVA magnitude with an Otsu threshold.

    Parameters
    ----------
    before, after : ndarray, shape (bands, rows, cols)
        Reflectance on one grid.
    valid : ndarray of bool, shape (rows, cols)
    min_mapping_unit_px : int
        Changed regions smaller than this many pixels are dropped.
    """
    after_n = normalise_gain(before, after, valid)
    mag = cva_magnitude(before, after_n)
    valid = valid & np.isfinite(mag)
    mag[~valid] = np.nan
    values = mag[valid]
    thr = float(threshold_otsu(values)) if values.size and np.ptp(values) > 0 else float("inf")
    mask = valid & (np.nan_to_num(mag, nan=-1.0) > thr)
    if min_mapping_unit_px > 1:
        mask = drop_small_regions(mask, min_mapping_unit_px)
    return ChangeMap(magnitude=mag.astype(np.float32), mask=mask, valid=valid, threshold=thr, method="cva-otsu")
