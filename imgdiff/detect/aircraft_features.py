"""Scene normalisation and peak extraction shared by the aircraft detectors.

Pure functions over arrays. Arrays are (rows, columns) = (y, x); stacks are
(bands, rows, columns).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi

#: Bands the aircraft network reads, in order (blue, green, red).
RGB_BANDS: tuple[str, str, str] = ("B02", "B03", "B04")
#: Gaussian sigma (pixels) of the local statistics used to normalise each band.
NORM_SIGMA_PX: float = 24.0
#: Side (pixels) of the window of :func:`local_level`: 150 m, about twice the longest aircraft.
LEVEL_WINDOW_PX: int = 15


def fill_invalid(band: np.ndarray) -> np.ndarray:
    """A copy of a 2-D band with NaN / inf replaced by the median of its finite pixels (0 if none)."""
    a = np.asarray(band, np.float32)
    ok = np.isfinite(a)
    if ok.all():
        return a.copy()
    fill = float(np.median(a[ok])) if ok.any() else 0.0
    return np.where(ok, a, np.float32(fill)).astype(np.float32)


def smooth(a: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur with a wide sigma, computed on a 4x coarser grid and interpolated back (fast, smooth).

    Parameters
    ----------
    a : ndarray, float32, (rows, columns)
    sigma_px : float
        Gaussian sigma in pixels of ``a``.
    """
    h, w = a.shape
    f = 4 if min(h, w) >= 32 and sigma_px >= 8 else 1
    if f == 1:
        return cv2.GaussianBlur(a, (0, 0), sigma_px, borderType=cv2.BORDER_REFLECT)
    hs, ws = -(-h // f), -(-w // f)
    pad = ((0, hs * f - h), (0, ws * f - w))
    ap = np.pad(a, pad, mode="reflect") if any(p[1] for p in pad) else a
    small = cv2.resize(ap, (ws, hs), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma_px / f, borderType=cv2.BORDER_REFLECT)
    big = cv2.resize(small, (ws * f, hs * f), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(big[:h, :w])


def local_normalise(band: np.ndarray, sigma_px: float = NORM_SIGMA_PX, *, wide_sigma_px: float = 0.0,
                    wide_floor: float = 0.0) -> np.ndarray:
    """Standardise a band by its local mean and standard deviation.

    Parameters
    ----------
    band : ndarray, (rows, columns)
        Reflectance or digital numbers (any affine scaling: the result does not
        depend on gain or offset). NaN allowed (filled with the median first).
    sigma_px : float
        Gaussian sigma of the local window, in pixels.
    wide_sigma_px, wide_floor : float
        When both are positive, the local std is also floored at ``wide_floor`` times
        the std over a wider Gaussian window (``wide_sigma_px``), so that a uniform
        patch inside a structured neighbourhood (a clean apron beside grass, taxiways
        and terminals) is not amplified into high contrast.

    Returns
    -------
    ndarray, float32, (rows, columns)
        ``(band - local mean) / local std``, where the local std is floored at a
        quarter of its scene median so that flat areas do not blow up.
    """
    a = fill_invalid(band).astype(np.float32)
    # remove the scene level first (float32 precision of E[x^2] - E[x]^2)
    a = a - np.float32(np.median(a))
    mu = smooth(a, sigma_px)
    var = smooth(a * a, sigma_px) - mu * mu
    sd = np.sqrt(np.maximum(var, 0.0))
    med = float(np.median(sd))
    floor = 0.25 * med if med > 0 else (float(sd.max()) * 0.25 or 1.0)
    if wide_sigma_px > 0 and wide_floor > 0:
        mw = smooth(a, wide_sigma_px)
        sdw = np.sqrt(np.maximum(smooth(a * a, wide_sigma_px) - mw * mw, 0.0))
        sd = np.maximum(sd, wide_floor * sdw)
    return ((a - mu) / np.maximum(sd, floor)).astype(np.float32)


def normalised_stack(bands: list[np.ndarray], sigma_px: float = NORM_SIGMA_PX, **kw: float) -> np.ndarray:
    """Local standardisation of each band (:func:`local_normalise`); returns (n_bands, rows, columns) float32."""
    return np.stack([local_normalise(b, sigma_px, **kw) for b in bands]).astype(np.float32)


def local_level(x: np.ndarray, window_px: int = LEVEL_WINDOW_PX) -> np.ndarray:
    """The local ground level of each band of a normalised stack: a running median over ``window_px``.

    The median is taken over the means of 3 x 3 pixel blocks (a window of ``window_px // 3`` blocks a
    side, ``window_px`` rounded down to an odd number of blocks, 3 or 5) and interpolated back bilinearly,
    so an object a third of the window long or shorter does not raise it.

    Parameters
    ----------
    x : ndarray, float32, (bands, rows, columns)
        A stack from :func:`normalised_stack` (no NaN).
    window_px : int
        Side of the window, pixels (9 or 15: the block median runs on 3 or 5 blocks).

    Returns
    -------
    ndarray, float32, (bands, rows, columns)
    """
    k = window_px // 3
    if k not in (3, 5):
        raise ValueError(f"local_level: window_px must be 9-11 or 15-17 (3 or 5 blocks of 3 px), not {window_px}")
    _, h, w = x.shape
    hs, ws = -(-h // 3), -(-w // 3)
    out = np.empty(x.shape, np.float32)
    for i, band in enumerate(np.asarray(x, np.float32)):
        b = np.pad(band, ((0, hs * 3 - h), (0, ws * 3 - w)), mode="edge") if (hs * 3 - h or ws * 3 - w) else band
        blocks = np.ascontiguousarray(b.reshape(hs, 3, ws, 3).mean(axis=(1, 3)), dtype=np.float32)
        med = cv2.medianBlur(blocks, k)
        out[i] = cv2.resize(med, (ws * 3, hs * 3), interpolation=cv2.INTER_LINEAR)[:h, :w]
    return out


def find_peaks(score: np.ndarray, threshold: float, *, radius_px: int = 1) -> np.ndarray:
    """Local maxima of a 2-D score map at or above ``threshold``.

    Returns
    -------
    ndarray, int, (N, 2)
        (row, column) of every peak, highest score first.
    """
    s = np.asarray(score, np.float32)
    size = 2 * radius_px + 1
    mx = ndi.maximum_filter(s, size=size, mode="constant", cval=-np.inf)
    peaks = np.argwhere((s >= mx) & (s >= threshold))
    if len(peaks) == 0:
        return peaks.reshape(0, 2)
    order = np.argsort(-s[peaks[:, 0], peaks[:, 1]], kind="stable")
    peaks = peaks[order]
    # plateaus give several equal maxima: keep the first within the radius
    keep: list[int] = []
    taken = np.zeros(s.shape, bool)
    for i, (r, c) in enumerate(peaks):
        if taken[r, c]:
            continue
        keep.append(i)
        taken[max(r - radius_px, 0):r + radius_px + 1, max(c - radius_px, 0):c + radius_px + 1] = True
    return peaks[keep]


def subpixel_centre(score: np.ndarray, row: int, col: int) -> tuple[float, float]:
    """Score-weighted centroid of the 3x3 neighbourhood of a peak, as (x, y) pixel coordinates.

    Pixel centres are at +0.5 (pixel (0, 0) spans [0, 1) x [0, 1)).
    """
    r0, r1 = max(row - 1, 0), min(row + 2, score.shape[0])
    c0, c1 = max(col - 1, 0), min(col + 2, score.shape[1])
    w = np.clip(score[r0:r1, c0:c1].astype(float), 0, None)
    if w.sum() <= 0:
        return col + 0.5, row + 0.5
    yy, xx = np.mgrid[r0:r1, c0:c1]
    return float((w * xx).sum() / w.sum()) + 0.5, float((w * yy).sum() / w.sum()) + 0.5


def axis_heading_deg(image: np.ndarray, x: float, y: float, half: int = 4) -> float:
    """Direction of the major axis of the bright blob around (x, y), degrees clockwise from up, in [0, 180).

    Uses second moments of the positive part of ``image`` in a (2*half+1)^2 window;
    NaN when the blob is round (axis ratio < 1.15) or empty.
    """
    r, c = int(y), int(x)
    r0, r1 = max(r - half, 0), min(r + half + 1, image.shape[0])
    c0, c1 = max(c - half, 0), min(c + half + 1, image.shape[1])
    w = np.clip(image[r0:r1, c0:c1].astype(float), 0, None)
    if w.sum() <= 0:
        return float("nan")
    yy, xx = np.ogrid[r0:r1, c0:c1]
    mx, my = (w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()
    cxx = (w * (xx - mx) ** 2).sum() / w.sum()
    cyy = (w * (yy - my) ** 2).sum() / w.sum()
    cxy = (w * (xx - mx) * (yy - my)).sum() / w.sum()
    ev = np.linalg.eigvalsh(np.array([[cxx, cxy], [cxy, cyy]]))
    if ev[0] <= 0 or ev[1] / ev[0] < 1.15 ** 2:
        return float("nan")
    theta = 0.5 * np.arctan2(2 * cxy, cxx - cyy)  # angle of the major axis from +x (column), y down
    # convert: x right, y down -> clockwise from up (north)
    return float((np.degrees(theta) + 90.0) % 180.0)


def _windows(a: np.ndarray, rows: np.ndarray, cols: np.ndarray, half: int, fill: float = 0.0) -> np.ndarray:
    """(N, 2*half+1, 2*half+1) windows of ``a`` centred on (rows, cols), padded with ``fill``."""
    p = np.pad(np.asarray(a, np.float64), half, mode="constant", constant_values=fill)
    d = np.arange(-half, half + 1)
    return p[(rows + half)[:, None, None] + d[None, :, None], (cols + half)[:, None, None] + d[None, None, :]]


def subpixel_centres(score: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`subpixel_centre`: (x, y) arrays in pixel coordinates (centres at +0.5)."""
    rows, cols = np.asarray(rows, int), np.asarray(cols, int)
    if rows.size == 0:
        return np.zeros(0), np.zeros(0)
    w = np.clip(_windows(score, rows, cols, 1), 0, None)
    tot = w.sum(axis=(1, 2))
    d = np.arange(-1, 2)
    safe = np.where(tot > 0, tot, 1.0)
    dx = np.where(tot > 0, (w * d[None, None, :]).sum(axis=(1, 2)) / safe, 0.0)
    dy = np.where(tot > 0, (w * d[None, :, None]).sum(axis=(1, 2)) / safe, 0.0)
    return cols + 0.5 + dx, rows + 0.5 + dy


def axis_headings_deg(image: np.ndarray, x: np.ndarray, y: np.ndarray, half: int = 4) -> np.ndarray:
    """Vectorised :func:`axis_heading_deg` for many blob centres (x, y) in pixels; NaN where undefined."""
    r, c = np.asarray(y, float).astype(int), np.asarray(x, float).astype(int)
    if r.size == 0:
        return np.zeros(0)
    w = np.clip(_windows(image, r, c, half), 0, None)
    d = np.arange(-half, half + 1, dtype=float)
    tot = w.sum(axis=(1, 2))
    safe = np.where(tot > 0, tot, 1.0)
    mx = (w * d[None, None, :]).sum(axis=(1, 2)) / safe
    my = (w * d[None, :, None]).sum(axis=(1, 2)) / safe
    xx = d[None, None, :] - mx[:, None, None]
    yy = d[None, :, None] - my[:, None, None]
    cxx = (w * xx * xx).sum(axis=(1, 2)) / safe
    cyy = (w * yy * yy).sum(axis=(1, 2)) / safe
    cxy = (w * xx * yy).sum(axis=(1, 2)) / safe
    tr, det = cxx + cyy, cxx * cyy - cxy * cxy
    disc = np.sqrt(np.maximum(tr * tr / 4 - det, 0))
    l1, l2 = tr / 2 + disc, tr / 2 - disc
    theta = 0.5 * np.arctan2(2 * cxy, cxx - cyy)
    out = (np.degrees(theta) + 90.0) % 180.0
    bad = (tot <= 0) | (l2 <= 0) | (l1 < (1.15 ** 2) * np.maximum(l2, 1e-12))
    return np.where(bad, np.nan, out)
