"""The shift of stacks of chip pairs: phase correlation, then symmetric Gauss-Newton refinement.

:func:`phase_correlation` gives a start (pooled over all chips, or per chip); :func:`refine_chips`
refines each chip by a symmetric Gauss-Newton (Lucas-Kanade) translation solve with a per-chip
gain, exact Fourier-domain sub-pixel shifts (no interpolation-kernel bias), coarse-to-fine
smoothing and Tukey IRLS weights, and returns :class:`ChipShifts` (shift, precision, correlation,
information-weighted centroid per chip). The FFTs run on :func:`fft_threads` threads.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import fft as sfft

from .matching import SIGMA_LO

_SHIFT_MARGIN = 6  # chip margin (px) that absorbs the residual sub-pixel shift and the taper
_MAX_FFT_THREADS = 2  # the chips' FFTs are small: more threads do not pay


def fft_threads() -> int:
    """Threads for the chips' FFTs: as many as OpenCV is allowed, at most two.

    Follows the thread policy of :mod:`imgdiff.detect.onnx`: dask workers and imgdiff's tile
    threads allow OpenCV one thread (:func:`imgdiff.tiles.one_thread_per_worker`), so their
    FFTs stay on the worker's core instead of taking the core another worker runs on (with a
    fixed two threads, two ``watch`` workers on two cores spent 15 % of each task's wall time
    waiting for the CPU). The results do not depend on the number of threads.
    """
    return max(1, min(_MAX_FFT_THREADS, cv2.getNumThreads()))


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
    iterations : int
        Most Gauss-Newton iterations per chip.
    tol : float
        A chip has converged when its update is below this many pixels.

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
