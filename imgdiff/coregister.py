"""Co-registration: the sub-pixel shift between two scenes on one grid, and warping.

Convention: a shift (dx, dy) in pixels means a feature at reference pixel
(x, y) (x = column, y = row) appears at target pixel (x + dx, y + dy).
``dx_m``/``dy_m`` give the same shift in metres of the grid's CRS axes
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
   correlation, no convergence, uncertain, outlier against a robust trend);
   the global shift is the precision-weighted mean of the accepted chips. With
   ``local=True`` chips are Gaussian-weighted around their centre, each tie point
   is placed at its chip's information-weighted centroid, and the displacement
   model is a robust (Tukey IRLS) polynomial plus a smoothed thin-plate-spline
   correction of its residuals, sampled on a grid (:class:`ShiftModel`).
5. :func:`warp` resamples with exact coordinates (cubic B-spline by default).

Large files on one grid are never read whole (:func:`coregister_paths`): only
the strips of rows around the chips are read, and only the chip windows kept.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from .errors import CoregistrationError, EmptySceneError
from .scene import Scene

#: Bands preferred for matching, best first (sharp 10 m bands).
MATCH_BANDS: tuple[str, ...] = ("B08", "B04", "B03", "B02")
#: Band-pass of the matching images: Gaussian low-pass / high-pass scales in pixels.
SIGMA_LO, SIGMA_HI = 1.0, 6.0
_SHIFT_MARGIN = 6  # chip margin (px) that absorbs the residual sub-pixel shift and the taper
_MAX_FFT_THREADS = 2  # the chips' FFTs are small: more threads do not pay
_CENTROID = True  # tie points at the information-weighted centroid of their chip
_LOCAL_SIGMA = 6.0  # local chips are weighted by a Gaussian of sigma size / _LOCAL_SIGMA
REJECT_REASONS = ("masked", "no texture", "low correlation", "no convergence", "uncertain", "outlier")


def fft_threads() -> int:
    """Threads for the chips' FFTs: as many as OpenCV is allowed, at most two.

    Follows the thread policy of :mod:`imgdiff.detect.onnx`: dask workers and imgdiff's tile
    threads allow OpenCV one thread (:func:`imgdiff.tiles.one_thread_per_worker`), so their
    FFTs stay on the worker's core instead of taking the core another worker runs on (with a
    fixed two threads, two ``watch`` workers on two cores spent 15 % of each task's wall time
    waiting for the CPU). The results do not depend on the number of threads.
    """
    return max(1, min(_MAX_FFT_THREADS, cv2.getNumThreads()))


def _num(v: float) -> float | None:
    """A float for JSON: None when not finite."""
    v = float(v)
    return v if math.isfinite(v) else None


@dataclass(frozen=True)
class TiePoint:
    """One local shift measurement.

    Attributes
    ----------
    x, y : float
        Centre of the chip in reference pixel-edge coordinates (x = column, y = row).
    dx, dy : float
        Shift in pixels at (x, y); target = reference + shift.
    reliability : float
        In [0, 1].
    uncertainty_px : float
        1-sigma uncertainty of (dx, dy) (per axis, pixels).
    correlation : float
        Normalised correlation of the band-passed chips after alignment.
    reason : str
        Empty for accepted points, else why the point was rejected (one of
        :data:`REJECT_REASONS`).
    """

    x: float
    y: float
    dx: float
    dy: float
    reliability: float
    uncertainty_px: float
    correlation: float
    reason: str = ""

    def to_dict(self) -> dict:
        """JSON-ready (non-finite numbers become None)."""
        d = {"x": self.x, "y": self.y, "dx": _num(self.dx), "dy": _num(self.dy), "reliability": self.reliability,
             "uncertainty_px": _num(self.uncertainty_px), "correlation": _num(self.correlation)}
        if self.reason:
            d["reason"] = self.reason
        return d


@dataclass(frozen=True)
class ShiftModel:
    """A smooth displacement field: polynomial in normalised pixel coordinates.

    ``dx(x, y) = sum c_x[k] * u**i * v**j`` with ``u = (x - cx) / s``, ``v = (y - cy) / s``
    over the terms ``i + j <= degree`` (in :meth:`terms` order); likewise ``dy``.
    Coordinates are reference pixel-edge coordinates, shifts in pixels.
    """

    degree: int
    coef_x: tuple[float, ...]
    coef_y: tuple[float, ...]
    center: tuple[float, float]
    scale: float
    rmse_px: float = float("nan")
    grid_origin: tuple[float, float] = (0.0, 0.0)
    grid_step: float = 0.0
    grid_dx: np.ndarray | None = None
    grid_dy: np.ndarray | None = None

    @staticmethod
    def terms(degree: int) -> list[tuple[int, int]]:
        return [(i, n - i) for n in range(degree + 1) for i in range(n, -1, -1)]

    def design(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return _design(x, y, self.degree, self.center, self.scale)

    def __call__(self, x: np.ndarray | float, y: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Shift (dx, dy) in pixels at reference pixel-edge coordinates (x, y)."""
        x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
        a = self.design(x.ravel(), y.ravel())
        fx = (a @ np.asarray(self.coef_x)).reshape(x.shape)
        fy = (a @ np.asarray(self.coef_y)).reshape(x.shape)
        if self.grid_dx is not None and self.grid_dy is not None and self.grid_step > 0:
            gx = (x - self.grid_origin[0]) / self.grid_step
            gy = (y - self.grid_origin[1]) / self.grid_step
            fx = fx + _bilinear(self.grid_dx, gx, gy)
            fy = fy + _bilinear(self.grid_dy, gx, gy)
        return fx, fy

    def to_dict(self) -> dict:
        d = {"degree": self.degree, "coef_x": list(self.coef_x), "coef_y": list(self.coef_y),
             "center": list(self.center), "scale": self.scale, "rmse_px": self.rmse_px}
        if self.grid_dx is not None and self.grid_dy is not None:
            d["residual_grid"] = {"origin": list(self.grid_origin), "step": self.grid_step,
                                  "dx": np.round(self.grid_dx, 4).tolist(), "dy": np.round(self.grid_dy, 4).tolist()}
        return d


def _bilinear(g: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of grid ``g`` (rows = y) at fractional node coordinates, clamped at the edges."""
    gx = np.clip(gx, 0, g.shape[1] - 1)
    gy = np.clip(gy, 0, g.shape[0] - 1)
    x0 = np.minimum(np.floor(gx).astype(int), g.shape[1] - 2) if g.shape[1] > 1 else np.zeros(gx.shape, int)
    y0 = np.minimum(np.floor(gy).astype(int), g.shape[0] - 2) if g.shape[0] > 1 else np.zeros(gy.shape, int)
    x1, y1 = np.minimum(x0 + 1, g.shape[1] - 1), np.minimum(y0 + 1, g.shape[0] - 1)
    fx, fy = gx - x0, gy - y0
    return ((1 - fy) * ((1 - fx) * g[y0, x0] + fx * g[y0, x1]) + fy * ((1 - fx) * g[y1, x0] + fx * g[y1, x1]))


def add_residual_grid(model: ShiftModel, x: np.ndarray, y: np.ndarray, dx: np.ndarray, dy: np.ndarray,
                      sigma: np.ndarray, smoothing: float = 1.0) -> ShiftModel:
    """Add a smoothed thin-plate-spline correction of the polynomial's residuals, sampled on a grid.

    The polynomial captures the trend; the correction follows smooth variation it
    misses (e.g. detector-wise or terrain-induced undulation), smoothed in
    proportion to the tie points' uncertainty ``sigma`` (pixels).
    """
    from scipy.interpolate import RBFInterpolator

    px, py = model(x, y)
    res = np.stack([dx - px, dy - py], axis=1)
    s = model.scale
    pts = np.stack([(x - model.center[0]) / s, (y - model.center[1]) / s], axis=1)
    lam = smoothing * np.maximum(sigma, 0.01) ** 2 / np.mean(np.maximum(sigma, 0.01) ** 2) * 1e-3
    rbf = RBFInterpolator(pts, res, kernel="thin_plate_spline", smoothing=lam, degree=1)
    spacing = math.sqrt(max(np.ptp(x), 1.0) * max(np.ptp(y), 1.0) / len(x))  # mean tie-point spacing
    step = float(max(spacing / 2, 4.0))
    x0, y0 = float(x.min()) - step, float(y.min()) - step
    nx = int(math.ceil((x.max() + step - x0) / step)) + 1
    ny = int(math.ceil((y.max() + step - y0) / step)) + 1
    gx, gy = np.meshgrid(x0 + np.arange(nx) * step, y0 + np.arange(ny) * step)
    q = np.stack([(gx.ravel() - model.center[0]) / s, (gy.ravel() - model.center[1]) / s], axis=1)
    r = rbf(q)
    fitted = rbf(pts)
    rmse = float(np.sqrt(np.mean(np.sum((res - fitted) ** 2, axis=1) / 2)))
    return replace(model, grid_origin=(x0, y0), grid_step=step, grid_dx=r[:, 0].reshape(ny, nx),
                   grid_dy=r[:, 1].reshape(ny, nx), rmse_px=rmse)


def _design(x: np.ndarray, y: np.ndarray, degree: int, center: tuple[float, float], scale: float) -> np.ndarray:
    u, v = (np.asarray(x, np.float64) - center[0]) / scale, (np.asarray(y, np.float64) - center[1]) / scale
    return np.stack([u**i * v**j for i, j in ShiftModel.terms(degree)], axis=-1)


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
        1-sigma uncertainty of the shift (per axis), in pixels.
    reliability : float
        In [0, 1]; below 0.5 the shift should not be trusted (see ``notes``).
    method : str
        How the shift was estimated.
    points : tuple of TiePoint
        Accepted tie points (always measured; used for the global estimate).
    rejected : tuple of TiePoint
        Rejected tie points, each with its ``reason``.
    model : ShiftModel or None
        Fitted smooth displacement model (``local=True`` only), else None.
    notes : tuple of str
        Warnings that lowered the reliability.
    """

    dx: float
    dy: float
    dx_m: float
    dy_m: float
    uncertainty_px: float
    reliability: float
    method: str = "phase-correlation"
    points: tuple[TiePoint, ...] = ()
    rejected: tuple[TiePoint, ...] = ()
    model: ShiftModel | None = None
    notes: tuple[str, ...] = ()

    @property
    def reliable(self) -> bool:
        return self.reliability >= 0.5

    def to_dict(self) -> dict:
        """JSON-ready description."""
        return {
            "dx": _num(self.dx), "dy": _num(self.dy), "dx_m": _num(self.dx_m), "dy_m": _num(self.dy_m),
            "uncertainty_px": _num(self.uncertainty_px), "reliability": _num(self.reliability), "method": self.method,
            "n_points": len(self.points), "n_rejected": len(self.rejected),
            "points": [p.to_dict() for p in self.points] if self.model is not None else [],
            "rejected": [p.to_dict() for p in self.rejected] if self.model is not None else [],
            "model": self.model.to_dict() if self.model is not None else None,
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------- matching images
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


# --------------------------------------------------------------------------- chip layout
@dataclass(frozen=True)
class ChipLayout:
    """Where tie-point chips lie: top-left corners (col, row) of ``size`` x ``size`` chips."""

    origins: np.ndarray  # (n, 2) int: col0, row0
    size: int

    @property
    def centers(self) -> np.ndarray:
        return self.origins.astype(np.float64) + self.size / 2.0


def chip_layout(shape: tuple[int, int], *, local: bool, spacing: int | None = None,
                chip: int | None = None, margin: int = 0, per_axis: int | None = None) -> ChipLayout:
    """Regular grid of chips inside ``shape`` keeping ``margin`` px from the edges.

    Global estimates use few large chips tiling the image (at most 64); local
    ones a denser grid (about 400 points, ``spacing`` px apart when given).
    """
    h, w = shape
    ih, iw = h - 2 * margin, w - 2 * margin
    if min(ih, iw) < 24:
        raise CoregistrationError(f"the scenes are too small to co-register ({w} x {h} px)")
    if local:
        sp = spacing or int(np.clip(math.sqrt(ih * iw / 400.0), 16, 600))
        size = chip or int(np.clip(round(sp * 1.5), 48, 192))
    else:
        size = chip or int(np.clip(min(ih, iw) // 3, 48, 128))
        sp = size
    size = int(min(size, ih, iw))
    sp = max(int(sp), 8)

    def starts(n: int, cap: int) -> np.ndarray:
        k = max(1, min(cap, int(math.ceil((n - size) / sp)) + 1))
        return np.round(np.linspace(0, n - size, k)).astype(int) + margin

    cap = per_axis or (21 if local else 8)
    rows, cols = starts(ih, cap), starts(iw, cap)
    cc, rr = np.meshgrid(cols, rows)
    return ChipLayout(np.stack([cc.ravel(), rr.ravel()], axis=1), size)


# --------------------------------------------------------------------------- chip estimation
@dataclass(frozen=True)
class ChipShifts:
    """Per-chip estimates (arrays over chips)."""

    d: np.ndarray  # (n, 2) dx, dy in pixels
    sigma: np.ndarray  # (n,) 1-sigma per axis, pixels
    ncc: np.ndarray  # (n,) normalised correlation after alignment
    valid_frac: np.ndarray  # (n,)
    energy: np.ndarray  # (n,) rms of band-passed reference chip
    converged: np.ndarray  # (n,) bool
    info: np.ndarray  # (n, 2, 2) normal matrices (pixels^-2, per unit noise)
    offset: np.ndarray  # (n, 2) information-weighted centroid relative to the chip centre (x, y), pixels


def _taper(n: int, m: int) -> np.ndarray:
    t = np.ones(n, np.float32)
    if m > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(m) + 0.5) / m)
        t[:m], t[-m:] = ramp, ramp[::-1]
    return t


def _peak(surface: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer peak (dy, dx) of (n, H, W) correlation surfaces (fftshifted) and its sharpness."""
    n, hh, ww = surface.shape
    flat = surface.reshape(n, -1)
    idx = flat.argmax(axis=1)
    py, px = np.unravel_index(idx, (hh, ww))
    peak = flat[np.arange(n), idx]
    sharp = peak / (np.sqrt(np.mean(flat**2, axis=1)) + 1e-12)
    # Parabolic sub-pixel refinement (only a start for Gauss-Newton).
    def para(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
        den = a - 2 * b + c
        return np.where(np.abs(den) > 1e-12, 0.5 * (a - c) / np.where(den == 0, 1, den), 0.0).clip(-0.5, 0.5)

    ar = np.arange(n)
    sy = para(surface[ar, (py - 1) % hh, px], peak, surface[ar, (py + 1) % hh, px])
    sx = para(surface[ar, py, (px - 1) % ww], peak, surface[ar, py, (px + 1) % ww])
    return np.stack([px - ww // 2 + sx, py - hh // 2 + sy], axis=1), sharp


def phase_correlation(ref: np.ndarray, tgt: np.ndarray, *, pooled: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Phase correlation of (n, H, W) chip stacks: shift (dx, dy) of ``tgt`` relative to ``ref``.

    With ``pooled=True`` the normalised cross-power spectra of all chips are summed
    (one robust estimate for the whole set). Returns (shifts (n or 1, 2), peak sharpness).
    """
    n, hh, ww = ref.shape
    win = np.outer(np.hanning(hh), np.hanning(ww)).astype(np.float32)
    fr, ft = np.fft.rfft2(ref * win), np.fft.rfft2(tgt * win)
    cross = ft * np.conj(fr)
    if pooled:
        norm = np.sqrt(np.sum(np.abs(fr) ** 2, axis=(1, 2)) * np.sum(np.abs(ft) ** 2, axis=(1, 2)))[:, None, None]
        cross = np.sum(cross / (norm + 1e-20), axis=0, keepdims=True)
    cross = cross / (np.abs(cross) + 1e-12 * np.abs(cross).max(initial=1e-30) + 1e-30)
    # Down-weight the highest frequencies (aliasing, noise).
    fy = np.fft.fftfreq(hh)[:, None]
    fx = np.fft.rfftfreq(ww)[None, :]
    cross = cross * np.exp(-2 * np.pi**2 * 1.0 * (fx**2 + fy**2))
    surf = np.fft.fftshift(np.fft.irfft2(cross, s=(hh, ww)), axes=(1, 2))
    return _peak(surf)


def refine_chips(ref: np.ndarray, tgt: np.ndarray, wref: np.ndarray, wtgt: np.ndarray, d0: np.ndarray, *,
                 margin: int = _SHIFT_MARGIN, spatial_sigma: float | None = None, iterations: int = 12,
                 tol: float = 1e-3) -> ChipShifts:
    """Refine sub-pixel shifts of chip pairs by symmetric Gauss-Newton with Fourier shifts.

    Parameters
    ----------
    ref, tgt : ndarray (n, H, W)
        Band-passed chips, 0 where unusable; ``tgt`` already cut at the integer part
        of the start so that the residual shift is below ~1.5 px.
    wref, wtgt : ndarray of bool (n, H, W)
        Usable pixels.
    d0 : ndarray (n, 2)
        Residual start (dx, dy) in pixels.
    margin : int
        Border (px) excluded from the fit (absorbs shifts and the taper).
    spatial_sigma : float, optional
        Gaussian weighting (px) around the chip centre, so that the estimate
        refers to the centre when the shift varies across the chip.

    Returns
    -------
    ChipShifts
        ``d`` is the residual shift to add to the integer offset.
    """
    n, hh, ww = ref.shape
    ty, tx = _taper(hh, margin // 2), _taper(ww, margin // 2)
    taper = (ty[:, None] * tx[None, :]).astype(np.float32)
    inner = np.zeros((hh, ww), np.float32)
    inner[margin:hh - margin, margin:ww - margin] = 1.0
    if spatial_sigma:
        yy, xx = np.mgrid[0:hh, 0:ww]
        inner *= np.exp(-(((yy - (hh - 1) / 2) ** 2 + (xx - (ww - 1) / 2) ** 2) / (2 * spatial_sigma**2)))
    base_w = (inner[None] * (wref & wtgt)).astype(np.float32)
    valid_frac = (base_w > 0).sum(axis=(1, 2)) / max(1, int((inner > 0).sum()))

    # Normalise each chip's energy (radiometric gain differences between dates).
    def norm(a: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e = np.sqrt(np.sum(w * a.astype(np.float64) ** 2, axis=(1, 2)) / np.maximum(w.sum(axis=(1, 2)), 1))
        return (a / np.where(e > 0, e, 1)[:, None, None]).astype(np.float32), e

    inner_b = (inner > 0)[None]
    threads = fft_threads()
    r, energy = norm(ref, (wref & inner_b).astype(np.float64))
    t, _ = norm(tgt, (wtgt & inner_b).astype(np.float64))
    fr = sfft.rfft2((r * taper).astype(np.float32), workers=threads)
    ft = sfft.rfft2((t * taper).astype(np.float32), workers=threads)
    fy = np.fft.fftfreq(hh)[:, None].astype(np.float32)
    fx = np.fft.rfftfreq(ww)[None, :].astype(np.float32)
    iy = (2j * np.pi * fy * (np.abs(fy) < 0.5 - 1e-6)).astype(np.complex64)
    ix = (2j * np.pi * fx * (np.abs(fx) < 0.5 - 1e-6)).astype(np.complex64)
    d = np.array(d0, np.float64).reshape(n, 2).copy()
    robust = np.ones_like(base_w)
    gain = np.ones(n)

    def evaluate(idx: np.ndarray, frs: np.ndarray, fts: np.ndarray) -> tuple[np.ndarray, ...]:
        """Warped chips, residuals and normal equations for chips ``idx`` at the current shifts."""
        ph = (np.exp(np.pi * 1j * fx[None] * d[idx, 0, None, None])
              * np.exp(np.pi * 1j * fy[None] * d[idx, 1, None, None])).astype(np.complex64)
        tf, rf = fts[idx] * ph, frs[idx] * np.conj(ph)
        both = tf + gain[idx, None, None].astype(np.float32) * rf
        out = sfft.irfft2(np.stack([tf, rf, both * ix, both * iy]), s=(hh, ww), workers=threads)
        tw, rw, gx, gy = out[0], out[1], 0.5 * out[2], 0.5 * out[3]
        w = base_w[idx] * robust[idx]
        tw, rw, gx, gy = (x.astype(np.float32, copy=False) for x in (tw, rw, gx, gy))
        g = np.sum(w * tw * rw, axis=(1, 2)) / np.maximum(np.sum(w * rw * rw, axis=(1, 2)), 1e-12)
        gain[idx] = np.clip(g, 0.05, 20)
        e = tw - gain[idx, None, None].astype(np.float32) * rw
        a = np.stack([np.sum(w * gx * gx, axis=(1, 2)), np.sum(w * gx * gy, axis=(1, 2)),
                      np.sum(w * gy * gy, axis=(1, 2)), np.sum(w * gx * e, axis=(1, 2)),
                      np.sum(w * gy * e, axis=(1, 2))], 1)
        return tw, rw, e, a, gx, gy

    def step(idx: np.ndarray, frs: np.ndarray, fts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tw, rw, e, a, _, _ = evaluate(idx, frs, fts)
        a11, a12, a22, b1, b2 = a.T
        det = a11 * a22 - a12**2
        ok = det > 1e-12 * (a11 + a22 + 1e-30) ** 2
        det = np.where(ok, det, 1.0)
        st = -np.stack([(a22 * b1 - a12 * b2) / det, (a11 * b2 - a12 * b1) / det], axis=1)
        st = np.where(ok[:, None], np.clip(st, -0.5, 0.5), 0.0)
        d[idx] += st
        return np.max(np.abs(st), axis=1), e

    all_idx = np.arange(n)
    # Coarse stage: extra Gaussian smoothing (sigma 2 px) widens the capture range.
    smooth = np.exp(-2 * np.pi**2 * 4.0 * (fx**2 + fy**2)).astype(np.float32)
    frs, fts = fr * smooth, ft * smooth
    for _ in range(3):
        step(all_idx, frs, fts)
    active = all_idx
    converged = np.zeros(n, bool)
    for it in range(iterations):
        size, e = step(active, fr, ft)
        if it in (1, 3):  # Tukey biweight on the residuals (robust IRLS)
            ae = np.abs(e)
            scale = np.array([1.4826 * np.median(ae[j][base_w[k] > 0]) if (base_w[k] > 0).any() else 1.0
                              for j, k in enumerate(active)])
            c = 4.685 * np.maximum(scale, 1e-12)[:, None, None]
            robust[active] = np.where(ae < c, (1 - (ae / c) ** 2) ** 2, 0.0)
            continue
        if it >= 2:
            converged[active[size < tol]] = True
            active = active[size >= tol]
        if not len(active):
            break
    tw, rw, e, a, gx, gy = evaluate(all_idx, fr, ft)
    # Where the estimate applies: the information-weighted centroid of the chip (pixels from its centre).
    wg = base_w * robust * (gx * gx + gy * gy)
    swg = np.maximum(wg.sum(axis=(1, 2)), 1e-30)
    cy_, cx_ = np.arange(hh) - (hh - 1) / 2.0, np.arange(ww) - (ww - 1) / 2.0
    offset = np.stack([np.sum(wg * cx_[None, None, :], axis=(1, 2)) / swg,
                       np.sum(wg * cy_[None, :, None], axis=(1, 2)) / swg], axis=1)
    info = np.stack([np.stack([a[:, 0], a[:, 1]], -1), np.stack([a[:, 1], a[:, 2]], -1)], -2)
    # Formal precision, inflated for the spatial correlation of band-passed residuals.
    w = base_w * robust
    sw = np.maximum(w.sum(axis=(1, 2)), 1e-12)
    s2 = np.sum(w * e * e, axis=(1, 2)) / sw
    det = np.linalg.det(info) if n else np.zeros(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_diag = np.stack([info[:, 1, 1], info[:, 0, 0]], 1) / det[:, None]
        sigma = np.sqrt(np.max(inv_diag, axis=1) * s2 * 4 * np.pi * SIGMA_LO**2)
    num = np.sum(w * tw * rw, axis=(1, 2))
    den = np.sqrt(np.sum(w * tw**2, axis=(1, 2)) * np.sum(w * rw**2, axis=(1, 2)))
    ncc = np.where(den > 0, num / np.maximum(den, 1e-30), 0.0)
    sigma = np.where(np.isfinite(sigma), sigma, np.inf)
    return ChipShifts(d=d, sigma=sigma, ncc=ncc, valid_frac=valid_frac, energy=energy, converged=converged,
                      info=info, offset=offset)


# --------------------------------------------------------------------------- driver
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


def _cut(p: PreparedImage, origins: np.ndarray, size: int, offsets: np.ndarray | None = None
         ) -> tuple[np.ndarray, np.ndarray]:
    """Chips of ``size`` px at ``origins`` (col, row in unpadded pixels) + integer ``offsets`` (dx, dy)."""
    n = len(origins)
    fo = np.zeros((n, size, size), np.float32)
    uo = np.zeros((n, size, size), bool)
    off = np.zeros((n, 2), int) if offsets is None else offsets.astype(int)
    for k in range(n):
        c0 = int(origins[k, 0] + off[k, 0] + p.pad)
        r0 = int(origins[k, 1] + off[k, 1] + p.pad)
        hh, ww = p.filtered.shape
        if c0 < 0 or r0 < 0 or c0 + size > ww or r0 + size > hh:
            continue
        fo[k] = p.filtered[r0:r0 + size, c0:c0 + size]
        uo[k] = p.usable[r0:r0 + size, c0:c0 + size]
    return fo, uo


@dataclass(frozen=True)
class _Measured:
    centers: np.ndarray
    d: np.ndarray
    sigma: np.ndarray
    ncc: np.ndarray
    reason: list[str]
    start: np.ndarray


def measure(ref: PreparedImage, tgt: PreparedImage, layout: ChipLayout, *, max_shift: float,
            local: bool, min_correlation: float = 0.25, min_valid: float = 0.4,
            max_sigma: float = 0.15) -> _Measured:
    """Shift of every chip of ``layout``, with a rejection reason ('' when accepted) per chip."""
    m = _SHIFT_MARGIN
    size = layout.size
    win = size + 2 * m
    origins = layout.origins - m  # windows include the margin
    n = len(origins)
    rf, ru = _cut(ref, origins, win)
    tf, tu = _cut(tgt, origins, win)
    usable = (ru & tu).mean(axis=(1, 2))
    energy = np.sqrt(np.sum(rf.astype(np.float64) ** 2, axis=(1, 2)) / np.maximum(ru.sum(axis=(1, 2)), 1))
    good = usable >= min_valid
    if not good.any():
        raise CoregistrationError(
            f"too little valid overlap to co-register: no chip of {size} px has {min_valid:.0%} usable pixels "
            "(no-data, clouds or masked areas cover the scenes)")
    g, sharp = phase_correlation(rf[good], tf[good], pooled=True)
    g0 = g[0]
    if np.max(np.abs(g0)) > max_shift + 0.5:
        raise CoregistrationError(
            f"the strongest correlation is at a shift of ({g0[0]:.1f}, {g0[1]:.1f}) px, beyond max_shift="
            f"{max_shift} px; the scenes may not show the same place or lack texture")
    gi = np.round(g0).astype(int)
    tf2, tu2 = _cut(tgt, origins, win, np.tile(gi, (n, 1)))
    pc, psharp = phase_correlation(rf, tf2)
    start = np.tile(g0.astype(np.float64), (n, 1))
    use_pc = (psharp > 8) & (np.max(np.abs(pc), axis=1) <= (2.5 if local else 1.0))
    start[use_pc] = gi + pc[use_pc]
    si = np.round(start).astype(int)
    tf3, tu3 = _cut(tgt, origins, win, si)
    res = refine_chips(rf, tf3, ru, tu3, start - si, margin=m,
                       spatial_sigma=(size / _LOCAL_SIGMA) if local else None)
    d = si + res.d
    reason = [""] * n
    med_energy = np.median(energy[good]) if good.any() else 0.0
    for k in range(n):
        if res.valid_frac[k] < min_valid:
            reason[k] = "masked"
        elif energy[k] < 0.05 * med_energy or not np.isfinite(res.sigma[k]):
            reason[k] = "no texture"
        elif res.ncc[k] < min_correlation:
            reason[k] = "low correlation"
        elif not res.converged[k] or np.max(np.abs(d[k] - start[k])) > 2.0 or np.max(np.abs(d[k])) > max_shift:
            reason[k] = "no convergence"
        elif res.sigma[k] > max_sigma:
            reason[k] = "uncertain"
    centers = layout.centers + (res.offset if local and _CENTROID else 0.0)
    return _Measured(centers, d, res.sigma, res.ncc, reason, start)


def fit_model(x: np.ndarray, y: np.ndarray, dx: np.ndarray, dy: np.ndarray, w: np.ndarray, degree: int,
              center: tuple[float, float], scale: float) -> tuple[ShiftModel, np.ndarray]:
    """Robust (Tukey IRLS) weighted least-squares polynomial fit; returns the model and the inlier mask."""
    a = _design(x, y, degree, center, scale)
    rw = np.ones(len(x))
    inl = np.ones(len(x), bool)
    cx = cy = np.zeros(a.shape[1])
    for _ in range(10):
        ww = np.sqrt(w * rw)
        cx = np.linalg.lstsq(a * ww[:, None], dx * ww, rcond=None)[0]
        cy = np.linalg.lstsq(a * ww[:, None], dy * ww, rcond=None)[0]
        r = np.hypot(dx - a @ cx, dy - a @ cy)
        s = max(1.4826 * np.median(r[rw > 0]) if (rw > 0).any() else 0.0, 0.02)
        c = 4.685 * s
        rw = np.where(r < c, (1 - (r / c) ** 2) ** 2, 0.0)
        inl = r < max(3.0 * s, 0.1)
    rmse = float(np.sqrt(np.mean(r[inl] ** 2))) if inl.any() else float("nan")
    return ShiftModel(degree, tuple(map(float, cx)), tuple(map(float, cy)), center, scale, rmse), inl


def coregister(
    reference: Scene,
    target: Scene,
    *,
    bands: Sequence[str] | None = None,
    mask: np.ndarray | None = None,
    local: bool = False,
    max_shift: float = 5.0,
    min_valid_fraction: float = 0.05,
    spacing: int | None = None,
    degree: int = 2,
) -> Registration:
    """Estimate the sub-pixel shift of ``target`` relative to ``reference``.

    Both scenes must lie on one grid (see :func:`imgdiff.grid.align`).

    Parameters
    ----------
    reference, target : Scene
        Scenes on the same grid (rows, cols).
    bands : sequence of str, optional
        Bands to match on (their median-normalised mean); default the 10 m bands
        B08, B04, B03, B02 both scenes have, else every shared band.
    mask : ndarray of bool (rows, cols), optional
        True where pixels may drive the estimate (e.g. land without cloud).
    local : bool
        Also measure a dense grid of tie points and fit a smooth displacement
        model (``Registration.model``).
    max_shift : float
        Largest plausible shift in pixels.
    min_valid_fraction : float
        Least fraction of usable pixels in common.
    spacing : int, optional
        Tie-point spacing in pixels (``local=True``; default about 400 points).
    degree : int
        Polynomial degree of the local model (0-3; lowered when points are few).

    Returns
    -------
    Registration
        Global shift (dx, dy) in pixels and metres, uncertainty, reliability,
        accepted/rejected tie points and (``local=True``) the model.

    Raises
    ------
    CoregistrationError
        Scenes not on one grid, too little valid overlap, no texture or no
        consistent tie point (the message says which).
    """
    if reference.shape != target.shape:
        raise CoregistrationError(
            f"reference {reference.shape} and target {target.shape} are not on one grid; align them first"
        )
    names = pick_bands(reference, target, bands)
    ref = matching_image(reference.stack(names))
    tgt = matching_image(target.stack(names))
    rv = reference.valid & np.isfinite(ref)
    tv = target.valid & np.isfinite(tgt)
    if mask is not None:
        if np.shape(mask) != reference.shape:
            raise CoregistrationError(f"mask shape {np.shape(mask)} differs from the scenes' {reference.shape}")
        rv &= mask
        tv &= mask
    frac = float((rv & tv).mean()) if rv.size else 0.0
    if frac < min_valid_fraction:
        raise CoregistrationError(
            f"too little valid overlap to co-register ({frac:.1%} of pixels usable, need "
            f"{min_valid_fraction:.0%}); check no-data, clouds and the mask")
    return estimate(ref, rv, tgt, tv, reference=reference, local=local, max_shift=max_shift, spacing=spacing,
                    degree=degree, bands=names)


def estimate(ref: np.ndarray, ref_valid: np.ndarray, tgt: np.ndarray, tgt_valid: np.ndarray, *,
             reference: Scene | None = None, local: bool = False, max_shift: float = 5.0,
             spacing: int | None = None, degree: int = 2, bands: Iterable[str] = (),
             pixel_size: tuple[float, float] | None = None) -> Registration:
    """Co-register two matching images (rows, cols) on one grid; see :func:`coregister`."""
    meas = measure_image(ref, ref_valid, tgt, tgt_valid,
                         chip_layout(ref.shape, local=local, spacing=spacing), max_shift=max_shift, local=local)
    return _summarise(meas, local=local, degree=degree, reference=reference, pixel_size=pixel_size,
                      bands=list(bands))


def measure_image(ref: np.ndarray, ref_valid: np.ndarray, tgt: np.ndarray, tgt_valid: np.ndarray,
                  layout: ChipLayout, *, max_shift: float, local: bool, origin: tuple[int, int] = (0, 0)
                  ) -> _Measured:
    """Measure the chips of ``layout`` (origins in full-image pixels) on images starting at ``origin`` (col, row)."""
    pad = _SHIFT_MARGIN + int(math.ceil(max_shift)) + 4
    pr, pt = prepare(ref, ref_valid, pad), prepare(tgt, tgt_valid, pad)
    lay = ChipLayout(layout.origins - np.asarray(origin), layout.size)
    meas = measure(pr, pt, lay, max_shift=max_shift, local=local)
    return replace(meas, centers=meas.centers + np.asarray(origin, np.float64))


def _concat(parts: Sequence[_Measured]) -> _Measured:
    return _Measured(np.concatenate([p.centers for p in parts]), np.concatenate([p.d for p in parts]),
                     np.concatenate([p.sigma for p in parts]), np.concatenate([p.ncc for p in parts]),
                     [r for p in parts for r in p.reason], np.concatenate([p.start for p in parts]))


def coregister_paths(reference: str | Path, target: str | Path, *, bands: Sequence[str] | None = None,
                     local: bool = False, max_shift: float = 5.0, spacing: int | None = None, degree: int = 2,
                     full_read_pixels: int = 4096 * 4096) -> Registration:
    """Co-register two scenes on disk (anything :func:`imgdiff.read_scene` reads).

    Scenes on one grid larger than ``full_read_pixels`` are never read whole: only
    the rows around the tie-point chips are read (one band, B08 when present),
    which keeps full 10980 x 10980 px tiles fast. Other pairs are read, aligned
    onto the reference grid and passed to :func:`coregister`.

    Returns
    -------
    Registration
        As :func:`coregister`; tie-point coordinates are reference pixels.
    """
    import rasterio

    from .grid import align
    from .io.read import SCENE_FRAME, find_band_sources, read_scene, select_bands

    # a band folder lists all its bands whatever ``bands`` says: keep the wanted ones (BandError if absent)
    rs = select_bands(find_band_sources(reference, bands), bands, reference)
    ts = select_bands(find_band_sources(target, bands), bands, target)
    names = [s.name for s in rs if s.name in {t.name for t in ts}]
    if bands is None:
        pref = [b for b in MATCH_BANDS if b in names]
        names = pref or names
    if not names:
        raise CoregistrationError(f"{reference} and {target} share no band to match on")

    def grid(srcs: list) -> tuple:
        s = next(x for x in srcs if x.name == names[0])
        with rasterio.open(s.path) as ds:
            return ds.crs, ds.transform, ds.shape

    g_ref, g_tgt = grid(rs), grid(ts)
    h, w = g_ref[2]
    if g_ref != g_tgt or h * w <= full_read_pixels:
        ref_scene = read_scene(reference, bands=names)
        tgt_scene = read_scene(target, bands=names)
        pair = align(ref_scene, tgt_scene, bands=names)
        return coregister(pair.before, pair.after, bands=names if bands is not None else None, mask=pair.overlap,
                          local=local, max_shift=max_shift, spacing=spacing, degree=degree)
    one = names[:1] if bands is None else names
    crs, tr, _ = g_ref
    layout = chip_layout((h, w), local=local, spacing=spacing, per_axis=None if local else 5,
                         chip=128 if not local else int(np.clip(round((spacing or math.sqrt(h * w / 400.0)) * 1.5),
                                                                 48, 128)))
    pad = _SHIFT_MARGIN + int(math.ceil(max_shift)) + int(math.ceil(3 * SIGMA_HI)) + 4
    size = layout.size
    tile = size + 2 * pad
    rows = np.unique(layout.origins[:, 1])
    cols = np.unique(layout.origins[:, 0])
    mos = [np.full((len(rows) * tile, len(cols) * tile), np.nan, np.float32) for _ in range(2)]
    px = None
    # Read only the strips of rows around each chip row, and keep only the chip windows (a mosaic).
    for i, r0 in enumerate(rows):
        top, bottom = max(0, int(r0) - pad), min(h, int(r0) + size + pad)
        x0, y0 = tr * (0, top)
        x1, y1 = tr * (w, bottom)
        bbox = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        for k, path in enumerate((reference, target)):
            try:
                sc = read_scene(path, bands=one, bbox=bbox, bbox_crs=crs or SCENE_FRAME)
            except EmptySceneError:
                continue  # a strip of no-data: its chips stay unusable
            row_off = int(sc.meta.get("window", {}).get("row_off", top))
            img = np.where(sc.valid, matching_image(sc.stack(one)), np.nan)
            if px is None:
                sx, sy = sc.pixel_size_m
                px = (sx * float(np.sign(tr.a) or 1), sy * float(np.sign(tr.e) or -1))
            for j, c0 in enumerate(cols):
                _paste(mos[k], img, i * tile, j * tile, int(r0) - pad - row_off, int(c0) - pad, tile)
    cc, rr = np.meshgrid(np.arange(len(cols)) * tile + pad, np.arange(len(rows)) * tile + pad)
    mos_layout = ChipLayout(np.stack([cc.ravel(), rr.ravel()], axis=1), size)
    meas = measure_image(mos[0], np.isfinite(mos[0]), mos[1], np.isfinite(mos[1]), mos_layout,
                         max_shift=max_shift, local=local)
    meas = replace(meas, centers=layout.centers)
    return _summarise(meas, local=local, degree=degree, reference=None, pixel_size=px, bands=list(one))


def _paste(dst: np.ndarray, src: np.ndarray, dr: int, dc: int, sr: int, sc: int, n: int) -> None:
    """Copy the n x n window of ``src`` starting at (sr, sc) into ``dst`` at (dr, dc); outside stays NaN."""
    r0, c0 = max(sr, 0), max(sc, 0)
    r1, c1 = min(sr + n, src.shape[0]), min(sc + n, src.shape[1])
    if r1 > r0 and c1 > c0:
        dst[dr + r0 - sr:dr + r1 - sr, dc + c0 - sc:dc + c1 - sc] = src[r0:r1, c0:c1]


def _summarise(meas: _Measured, *, local: bool, degree: int, reference: Scene | None,
               pixel_size: tuple[float, float] | None, bands: list[str]) -> Registration:
    centers = meas.centers
    reason = list(meas.reason)
    acc = np.array([r == "" for r in reason])
    n = len(reason)
    if not acc.any():
        counts = {r: reason.count(r) for r in REJECT_REASONS if reason.count(r)}
        why = ", ".join(f"{v} {k}" for k, v in counts.items())
        raise CoregistrationError(
            f"no reliable tie point among {n} chips ({why}); the scenes lack common texture "
            "(open sea, cloud, uniform areas) or do not show the same place")
    x, y = centers[:, 0], centers[:, 1]
    dx, dy = meas.d[:, 0], meas.d[:, 1]
    sig = np.maximum(meas.sigma, 0.005)
    w = 1.0 / sig**2
    center = (float(np.mean(x)), float(np.mean(y)))
    scale = float(max(np.ptp(x), np.ptp(y), 1.0) / 2)
    na = int(acc.sum())
    deg = int(min(degree, 3, 0 if na < 6 else 1 if na < 15 else 2 if na < 40 else 3)) if local else 0
    deg_out = min(deg, 1) if not local else deg
    idx = np.flatnonzero(acc)
    model, inl = fit_model(x[idx], y[idx], dx[idx], dy[idx], w[idx], max(deg_out, 0 if na < 6 else 1), center,
                           scale)
    for k, ok in zip(idx, inl):
        if not ok:
            reason[k] = "outlier"
    acc = np.array([r == "" for r in reason])
    idx = np.flatnonzero(acc)
    if local:
        model, _ = fit_model(x[idx], y[idx], dx[idx], dy[idx], w[idx], deg_out, center, scale)
        if len(idx) >= 12:
            model = add_residual_grid(model, x[idx], y[idx], dx[idx], dy[idx], sig[idx])
    # Global shift: precision-weighted mean with a between-chip variance term (random effects).
    ddx, ddy = dx[idx], dy[idx]
    mx, my = np.median(ddx), np.median(ddy)
    spread2 = (1.4826 * np.median(np.hypot(ddx - mx, ddy - my))) ** 2 / 2 if len(idx) > 2 else 0.0
    tau2 = max(0.0, spread2 - float(np.median(sig[idx] ** 2)))
    wg = 1.0 / (sig[idx] ** 2 + tau2)
    gdx, gdy = float(np.sum(wg * ddx) / wg.sum()), float(np.sum(wg * ddy) / wg.sum())
    unc = float(np.sqrt(1.0 / wg.sum()))
    if len(idx) > 2:
        emp = float(np.sqrt(np.sum(wg * ((ddx - gdx) ** 2 + (ddy - gdy) ** 2)) / 2 / wg.sum() / (len(idx) - 1)))
        unc = max(unc, emp)
    # Reliability: enough consistent points, good correlation, small uncertainty.
    notes = []
    frac_ok = len(idx) / n
    corr = float(np.median(meas.ncc[idx]))
    # The weakest of: number of consistent points, correlation, fraction kept, uncertainty.
    rel = min(1.0 - math.exp(-len(idx) / 3.0), float(np.clip((corr - 0.15) / 0.35, 0, 1)),
              float(np.clip(frac_ok / 0.25, 0.3, 1.0)), math.exp(-((unc / 0.15) ** 2)))
    if len(idx) < 3:
        notes.append(f"only {len(idx)} consistent tie point(s) of {n}")
    if corr < 0.4:
        notes.append(f"weak correlation between the scenes (median {corr:.2f})")
    if frac_ok < 0.3:
        notes.append(f"{n - len(idx)} of {n} tie points rejected")
    if unc > 0.1:
        notes.append(f"large uncertainty ({unc:.2f} px)")
    if spread2 > 0.2**2:
        notes.append(f"the shift varies across the scene (spread {math.sqrt(spread2):.2f} px); "
                     + ("the local model follows it" if local else "consider local=True"))
    if pixel_size is None:
        if reference is not None:
            sx, sy = reference.pixel_size_m
            pixel_size = (sx * float(np.sign(reference.transform.a) or 1), sy * float(np.sign(reference.transform.e) or -1))
        else:
            pixel_size = (1.0, -1.0)
    pts = tuple(_point(centers[k], meas, k, "") for k in idx)
    rej = tuple(_point(centers[k], meas, k, reason[k]) for k in range(n) if reason[k])
    method = "band-passed Fourier Gauss-Newton on chips" + (" + local polynomial" if local else "")
    if bands:
        method += f" ({', '.join(bands)})"
    return Registration(
        dx=gdx, dy=gdy, dx_m=gdx * pixel_size[0], dy_m=gdy * pixel_size[1], uncertainty_px=unc,
        reliability=float(np.clip(rel, 0.0, 1.0)), method=method, points=pts, rejected=rej,
        model=model if local else None, notes=tuple(notes),
    )


def _point(c: np.ndarray, meas: _Measured, k: int, reason: str) -> TiePoint:
    s = float(meas.sigma[k])
    corr = float(meas.ncc[k])
    rel = 0.0 if reason else float(np.clip((corr - 0.2) / 0.5, 0, 1) * math.exp(-((s / 0.1) ** 2)))
    return TiePoint(float(c[0]), float(c[1]), float(meas.d[k, 0]), float(meas.d[k, 1]), rel,
                    s if np.isfinite(s) else float("inf"), corr, reason)


# --------------------------------------------------------------------------- warping
_KERNEL_RADIUS = {"nearest": 0, "linear": 1, "cubic": 2, "lanczos": 3, "spline": 2}


def _kernel(frac: float, interpolation: str) -> np.ndarray:
    """1-D taps (offsets -r+1..r) sampling a signal at position ``frac`` in [0, 1) after a base pixel."""
    r = _KERNEL_RADIUS[interpolation]
    t = np.arange(-r + 1, r + 1) - frac
    a = np.abs(t)
    if interpolation == "linear":
        k = np.clip(1 - a, 0, None)
    elif interpolation == "cubic":  # Keys, a = -0.5
        k = np.where(a <= 1, 1.5 * a**3 - 2.5 * a**2 + 1, np.where(a < 2, -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2, 0))
    else:
        k = np.where(a < r, np.sinc(t) * np.sinc(t / r), 0.0)
    return (k / k.sum()).astype(np.float64)


def _shift_array(a: np.ndarray, dx: float, dy: float, interpolation: str, fill: float = 0.0) -> np.ndarray:
    """out[y, x] = a[y + dy, x + dx] with exact kernel weights (no table quantisation); ``fill`` outside."""
    h, w = a.shape
    ix, iy = math.floor(dx), math.floor(dy)
    fx, fy = dx - ix, dy - iy
    if interpolation == "nearest":
        ix, iy = round(dx), round(dy)
        fx = fy = 0.0
        kx = ky = np.ones(1)
        r = 0
    else:
        kx, ky = _kernel(fx, interpolation), _kernel(fy, interpolation)
        r = _KERNEL_RADIUS[interpolation]
    # Sample positions: out[x] = sum_j k[j] a[x + ix + j - r + 1]
    src = np.full((h, w), fill, np.float64)
    ys0, ys1 = max(0, -iy), min(h, h - iy)
    xs0, xs1 = max(0, -ix), min(w, w - ix)
    if ys1 > ys0 and xs1 > xs0:
        src[ys0:ys1, xs0:xs1] = a[ys0 + iy:ys1 + iy, xs0 + ix:xs1 + ix]
    if r == 0:
        return src.astype(a.dtype)
    # filter2D correlates: out[x] = sum_j k[j] src[x + j - anchor]; anchor = r - 1 gives offsets -r+1..r
    out = cv2.sepFilter2D(src, cv2.CV_64F, kx, ky, anchor=(r - 1, r - 1), borderType=cv2.BORDER_REPLICATE)
    return out.astype(a.dtype)


def warp(target: Scene, registration: Registration, *, interpolation: str = "spline") -> Scene:
    """Resample ``target`` onto the reference grid, removing the estimated shift.

    The output pixel centred at (x, y) takes the target value at (x + dx, y + dy),
    with the global shift, or with ``registration.model`` when it holds a local
    model. Pixels whose kernel footprint touches invalid or outside pixels become
    NaN and invalid.

    Parameters
    ----------
    target : Scene
        Scene on the reference grid.
    registration : Registration
    interpolation : {"spline", "nearest", "linear", "cubic", "lanczos"}
        Kernel: cubic B-spline with prefilter (default; the most shift-accurate,
        residual ~0.002 px), Keys cubic (a = -0.5), Lanczos-3, bilinear, nearest.

    Returns
    -------
    Scene
        Same grid, bands and metadata as ``target``.
    """
    if interpolation not in _KERNEL_RADIUS:
        raise ValueError(f"interpolation must be one of {', '.join(_KERNEL_RADIUS)}")
    if registration.model is not None and registration.model.degree > 0:
        return _warp_field(target, registration.model, interpolation)
    dx, dy = registration.dx, registration.dy
    if not (math.isfinite(dx) and math.isfinite(dy)):
        return target
    invalid = (~target.valid).astype(np.float32)
    moved_invalid = _shift_array(invalid, dx, dy, "nearest" if interpolation == "nearest" else "linear", fill=1.0)
    r = _KERNEL_RADIUS[interpolation]
    if r > 1:
        moved_invalid = cv2.dilate(moved_invalid, np.ones((2 * r - 1, 2 * r - 1), np.uint8),
                                   borderType=cv2.BORDER_REPLICATE)
    valid = moved_invalid < 1e-6
    bands = {}
    holes = not target.valid.all()  # the fill value only matters where the target is invalid
    for name, a in target.bands.items():
        fill = np.nanmedian(a) if holes and np.isfinite(a).any() else 0
        filled = np.where(target.valid, a, fill).astype(np.float32)
        if interpolation == "spline":
            out = ndimage.shift(filled, (-dy, -dx), order=3, mode="nearest", prefilter=True).astype(np.float32)
        else:
            out = _shift_array(filled, dx, dy, interpolation).astype(np.float32)
        out[~valid] = np.nan
        bands[name] = out
    return replace(target, bands=bands, valid=valid)


def _warp_field(target: Scene, model: ShiftModel, interpolation: str) -> Scene:
    h, w = target.shape
    flags = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC,
             "lanczos": cv2.INTER_LANCZOS4, "spline": cv2.INTER_CUBIC}[interpolation]
    fdx, fdy = _field_maps(model, (h, w))
    mx = (np.arange(w, dtype=np.float32)[None, :] + fdx).astype(np.float32)
    my = (np.arange(h, dtype=np.float32)[:, None] + fdy).astype(np.float32)
    invalid = (~target.valid).astype(np.float32)
    inv = cv2.remap(invalid, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=1.0)
    r = _KERNEL_RADIUS[interpolation]
    if r > 1:
        inv = cv2.dilate(inv, np.ones((2 * r - 1, 2 * r - 1), np.uint8))
    valid = inv < 1e-6
    bands = {}
    for name, a in target.bands.items():
        filled = np.where(target.valid, a, np.nanmedian(a) if np.isfinite(a).any() else 0).astype(np.float32)
        if interpolation == "spline":
            out = ndimage.map_coordinates(filled, [my, mx], order=3, mode="nearest").astype(np.float32)
        else:
            out = cv2.remap(filled, mx, my, flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        out[~valid] = np.nan
        bands[name] = out
    return replace(target, bands=bands, valid=valid)


def _field_maps(model: ShiftModel, shape: tuple[int, int], step: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Model shifts at every pixel centre, evaluated every ``step`` px and interpolated bilinearly."""
    h, w = shape
    ny, nx = h // step + 2, w // step + 2
    gx, gy = np.meshgrid(np.arange(nx) * step + 0.5, np.arange(ny) * step + 0.5)
    cdx, cdy = model(gx, gy)
    mx = np.broadcast_to((np.arange(w, dtype=np.float32) / step)[None, :], (h, w)).astype(np.float32)
    my = np.broadcast_to((np.arange(h, dtype=np.float32) / step)[:, None], (h, w)).astype(np.float32)
    fdx = cv2.remap(cdx.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    fdy = cv2.remap(cdy.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return fdx, fdy


def dense_field(model: ShiftModel, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The model's (dx, dy) at every pixel centre of a (rows, cols) grid, in pixels."""
    h, w = shape
    gx, gy = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    return model(gx, gy)


__all__ = [
    "REJECT_REASONS", "ChipLayout", "Registration", "ShiftModel", "TiePoint", "bandpass", "chip_layout",
    "coregister", "coregister_paths", "dense_field", "estimate", "pick_bands", "warp",
]
