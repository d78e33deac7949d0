"""Classical change magnitudes of a pair: band differences, log ratios, change vector analysis, IR-MAD.

Stacks are ``(bands, rows, cols)`` float32 reflectance on one grid (NaN invalid). The classical
methods leave out :data:`ATMOSPHERIC_BANDS` (:func:`classical_bands`). :func:`irmad` (Nielsen 2007)
fits the canonical variates of a pair on a sample of valid pixels and gives each pixel its scaled
MAD variates and chi-square statistic; :func:`mad_variates` applies a fitted map to other pixels of
the same pair (e.g. window by window).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import linalg, special

from ..errors import EmptySceneError
from .thresholds import MIN_RELATIVE_NOISE, stats

#: Bands that see the atmosphere rather than the ground; classical methods leave them out.
ATMOSPHERIC_BANDS = ("B01", "B09", "B10")


# --------------------------------------------------------------------------- building blocks
def difference(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Per-band difference ``after - before``, shape (bands, rows, cols), float32."""
    # float32 inputs are read in place (astype would copy both first)
    return np.subtract(np.asarray(after, np.float32), np.asarray(before, np.float32))


def log_ratio(before: np.ndarray, after: np.ndarray, *, eps: float | np.ndarray = 1e-3) -> np.ndarray:
    """Per-band log ratio ``ln((after + eps) / (before + eps))``; insensitive to a common gain."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.log((np.maximum(after, 0) + eps) / (np.maximum(before, 0) + eps)).astype(np.float32)


def log_ratio_damping(band_medians: Sequence[float] | np.ndarray) -> np.ndarray:
    """Per-band ``eps`` of :func:`log_ratio_magnitude`: half of each band's median reflectance, at least 0.02.

    The offset damps the noise of dark (water) pixels; the floor keeps bands that sit near 0
    (B10 and the like) from dominating.
    """
    return np.maximum(0.5 * np.asarray(band_medians, np.float32), 0.02).astype(np.float32)


def log_ratio_magnitude(before: np.ndarray, after: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """Root-mean-square over bands of the per-band log ratios, damped by ``eps`` (bands,), float32."""
    lr = log_ratio(before, after, eps=np.asarray(eps, np.float32)[:, None, None])
    return np.sqrt(np.mean(lr * lr, axis=0))


def classical_bands(names: Sequence[str]) -> list[int]:
    """Indices of the bands the classical methods use: all but :data:`ATMOSPHERIC_BANDS`
    (B01, B09 and B10 see aerosols, water vapour and cirrus; their noise would dilute change),
    unless fewer than two bands would remain."""
    surface = [i for i, n in enumerate(names) if n not in ATMOSPHERIC_BANDS]
    return surface if len(surface) >= 2 else list(range(len(names)))


@dataclass(frozen=True)
class CVA:
    """Change vector analysis result.

    Attributes
    ----------
    magnitude : ndarray, shape (rows, cols)
        ``||after - before||`` over bands, reflectance units.
    direction_deg : ndarray, shape (rows, cols)
        Direction of the change vector in the plane of two chosen bands,
        ``atan2(d[axes[1]], d[axes[0]])`` in degrees [0, 360).
    """

    magnitude: np.ndarray
    direction_deg: np.ndarray


def cva(before: np.ndarray, after: np.ndarray, *, axes: tuple[int, int] = (0, 1)) -> CVA:
    """Change vector analysis: magnitude and direction of ``after - before``.

    Parameters
    ----------
    before, after : ndarray, shape (bands, rows, cols)
    axes : (int, int)
        Band indices spanning the direction plane (e.g. red and NIR: direction 90
        degrees is a pure NIR gain, 180 a pure red loss).
    """
    d = difference(before, after)
    mag = np.sqrt(np.sum(d * d, axis=0))
    ang = np.degrees(np.arctan2(d[axes[1]], d[axes[0]])) % 360.0
    return CVA(mag.astype(np.float32), ang.astype(np.float32))


def cva_magnitude(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Change vector magnitude ``||after - before||`` over bands (axis 0), float32 (as :func:`cva`, no direction)."""
    d = difference(before, after)
    np.multiply(d, d, out=d)
    return np.sqrt(np.sum(d, axis=0)).astype(np.float32, copy=False)


@dataclass(frozen=True)
class IRMAD:
    """Iteratively reweighted multivariate alteration detection (Nielsen 2007).

    Attributes
    ----------
    mad : ndarray, shape (bands, rows, cols)
        MAD variates, each scaled to unit no-change variance (robust spread over the
        sampled pixels, since the reweighting under-estimates it).
    chi2 : ndarray, shape (rows, cols)
        Sum of squared scaled MAD variates: chi-square with ``bands`` degrees of
        freedom on unchanged pixels.
    rho : ndarray, shape (bands,)
        Canonical correlations (ascending).
    iterations : int
    linear_map : (wa, wb, c0), optional
        The fitted map from a pixel to its scaled MAD variates, ``wa @ before - wb @ after - c0``
        (:func:`mad_variates`): apply it to other pixels of the same pair (e.g. window by window).
    """

    mad: np.ndarray
    chi2: np.ndarray
    rho: np.ndarray
    iterations: int
    linear_map: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def no_change_probability(self) -> np.ndarray:
        """``1 - F_chi2(chi2; bands)``: the IR-MAD weight, near 1 on unchanged pixels."""
        return stats.chi2.sf(self.chi2, self.mad.shape[0]).astype(np.float32)


#: IR-MAD fits band covariances: it needs at least this many valid pixels per band.
IRMAD_MIN_PIXELS_PER_BAND = 10


def irmad(before: np.ndarray, after: np.ndarray, valid: np.ndarray, *, max_iter: int = 30, tol: float = 1e-4,
          max_samples: int = 50_000, seed: int = 0) -> IRMAD:
    """IR-MAD of two stacks (Nielsen 2007), fitted on a sample of valid pixels.

    Parameters
    ----------
    before, after : ndarray, shape (bands, rows, cols)
    valid : ndarray of bool, shape (rows, cols)
        Pixels used for the fit (others still get MAD values; NaN stays NaN).
    max_iter, tol : int, float
        Reweighting stops when canonical correlations move less than ``tol``.
    max_samples : int
        At most this many pixels (random, fixed ``seed``) estimate the statistics.
    seed : int
        Seed of the pixel sample (the result is reproducible).
    """
    nb = before.shape[0]
    idx = np.flatnonzero(valid.ravel())
    if idx.size > max_samples:
        idx = np.random.default_rng(seed).choice(idx, max_samples, replace=False)
    X = before.reshape(nb, -1)[:, idx].astype(np.float64)
    Y = after.reshape(nb, -1)[:, idx].astype(np.float64)
    ok = np.all(np.isfinite(X) & np.isfinite(Y), axis=0)
    X, Y = X[:, ok], Y[:, ok]
    if X.shape[1] < IRMAD_MIN_PIXELS_PER_BAND * nb:
        raise EmptySceneError(
            f"IR-MAD needs at least {IRMAD_MIN_PIXELS_PER_BAND * nb} valid pixels ({IRMAD_MIN_PIXELS_PER_BAND} per "
            f"band) to fit, got {X.shape[1]}; use a larger window or a method that works on few pixels (cva-otsu)"
        )
    w = np.ones(X.shape[1])
    rho_old = np.zeros(nb)
    iterations = 0
    for _ in range(max_iter):
        iterations += 1
        sw = w.sum()
        mx, my = (X * w).sum(1) / sw, (Y * w).sum(1) / sw
        Xc, Yc = X - mx[:, None], Y - my[:, None]
        # einsum, not BLAS: threaded BLAS on these tall-skinny products stalls on a busy machine
        Xw = Xc * w
        sxx = np.einsum("in,jn->ij", Xw, Xc) / sw + 1e-10 * np.eye(nb)
        syy = np.einsum("in,jn->ij", Yc * w, Yc) / sw + 1e-10 * np.eye(nb)
        sxy = np.einsum("in,jn->ij", Xw, Yc) / sw
        # generalised eigenproblem: sxy syy^-1 syx a = rho^2 sxx a
        c = sxy @ np.linalg.solve(syy, sxy.T)
        lam, A = linalg.eigh((c + c.T) / 2, sxx)
        lam = np.clip(lam, 0, 1)
        rho = np.sqrt(lam)
        A = A / np.sqrt(np.einsum("ij,jk,ki->i", A.T, sxx, A))[None, :]
        B = np.linalg.solve(syy, sxy.T @ A)
        B = B / np.sqrt(np.einsum("ij,jk,ki->i", B.T, syy, B))[None, :]
        # positive correlation between each pair of canonical variates
        sign = np.sign(np.einsum("ij,jk,ki->i", A.T, sxy, B))
        B = B * np.where(sign == 0, 1, sign)[None, :]
        var = np.maximum(2 * (1 - rho), 1e-6)
        mad = np.einsum("ji,jn->in", A, Xc) - np.einsum("ji,jn->in", B, Yc)
        chi2 = np.sum(mad * mad / var[:, None], axis=0)
        w = special.gammaincc(nb / 2.0, chi2 / 2.0)  # chi-square survival function, nb dof
        if np.max(np.abs(rho - rho_old)) < tol:
            break
        rho_old = rho
    # The reweighting under-estimates the no-change spread (it keeps the pixels where the
    # noise of both dates agrees); rescale each variate by its robust spread over all
    # sampled pixels (changed pixels are a minority), so chi2 follows chi-square(bands),
    # but by no less than irmad_noise_floor (a noise-free pair's spread is float rounding).
    spread = 1.4826 * np.median(np.abs(mad - np.median(mad, axis=1, keepdims=True)), axis=1)
    scale = np.maximum(np.where(spread > 0, spread, np.sqrt(var)), irmad_noise_floor(A, B, mx, my))
    # apply to every pixel in float32: MAD = (A^T (x - mx) - B^T (y - my)) / scale
    wa = (A / scale[None, :]).T.astype(np.float32)
    wb = (B / scale[None, :]).T.astype(np.float32)
    c0 = (wa @ mx.astype(np.float32) - wb @ my.astype(np.float32))[:, None]
    mad_full, chi2_full = mad_variates(before, after, (wa, wb, c0))
    return IRMAD(mad_full, chi2_full, rho.astype(np.float32), iterations, (wa, wb, c0))


def irmad_noise_floor(a: np.ndarray, b: np.ndarray, mean_before: np.ndarray, mean_after: np.ndarray) -> np.ndarray:
    """The least no-change spread of each MAD variate: :data:`MIN_RELATIVE_NOISE` of its signal's scale.

    A relative error ``e`` of the inputs (float rounding, about 1e-7 in float32) reaches the MAD
    variate ``a_i . x - b_i . y`` as about ``e * hypot(|a_i| |x|, |b_i| |y|)``, with ``x`` and ``y``
    the dates' typical pixel vectors (here their means). Dates that agree better than
    :data:`MIN_RELATIVE_NOISE` of that (an exact gain read from float files) hold no measurable
    change; without the floor their rounding would be scaled up to unit variance and read as change,
    most of all along canonical directions that hold no signal at all (bands that are exact
    multiples of others, as in noise-free synthetic scenes).

    Parameters
    ----------
    a, b : ndarray, shape (bands, bands)
        Canonical vectors of the before and after dates, one per column.
    mean_before, mean_after : ndarray, shape (bands,)
        The dates' mean pixel vectors (reflectance).

    Returns
    -------
    ndarray, shape (bands,)
        In the units of the MAD variates ``a_i . x - b_i . y``.
    """
    signal = np.hypot(np.linalg.norm(a, axis=0) * np.linalg.norm(mean_before),
                      np.linalg.norm(b, axis=0) * np.linalg.norm(mean_after))
    return MIN_RELATIVE_NOISE * signal


def mad_variates(before: np.ndarray, after: np.ndarray,
                 linear_map: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Scaled MAD variates and their chi-square statistic under a fitted IR-MAD map.

    Parameters
    ----------
    before, after : ndarray, shape (bands, rows, cols)
    linear_map : (wa, wb, c0)
        :attr:`IRMAD.linear_map`: (bands, bands), (bands, bands), (bands, 1) float32.

    Returns
    -------
    mad : ndarray, shape (bands, rows, cols)
    chi2 : ndarray of float32, shape (rows, cols)
    """
    wa, wb, c0 = linear_map
    nb, shape = before.shape[0], before.shape[1:]
    mad = wa @ before.reshape(nb, -1) - wb @ after.reshape(nb, -1) - c0
    chi2 = np.sum(mad * mad, axis=0)
    return mad.reshape(nb, *shape), chi2.reshape(shape).astype(np.float32)
