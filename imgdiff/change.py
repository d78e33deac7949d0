"""Pixel change between two co-registered scenes: magnitude, threshold, mask, confidence.

Pure functions over arrays. Stacks are ``(bands, rows, cols)`` float32 reflectance on
one grid (NaN invalid); masks are ``(rows, cols)`` bool. The building blocks
(difference, log ratio, change vector analysis, IR-MAD with its chi-square statistic,
Otsu / chi-square / expectation-maximisation thresholds, a minimum mapping unit) are
combined by :func:`change_map`, whose default method is a small learned per-pixel
classifier (``"mlp"``) shipped with the package (see ``training/train_change.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from scipy import linalg, special
from skimage.filters import threshold_otsu

from .errors import BandError, EmptySceneError
from .radiometry import (
    date_masks,
    drop_small_regions,
    even_subsample,
    normalise,
    sampled_median,
)
from .scene import Scene


class _LazyStats:
    """``scipy.stats`` imported on first use (it costs ~0.6 s at start-up of every CLI command)."""

    def __getattr__(self, name: str):
        from scipy import stats as _stats

        return getattr(_stats, name)


stats = _LazyStats()

#: Change methods :func:`change_map` knows, default first.
METHODS: tuple[str, ...] = ("mlp", "irmad", "cva-otsu", "cva-em", "logratio-otsu")
DEFAULT_METHOD = "mlp"
#: Bands that see the atmosphere rather than the ground; classical methods leave them out.
ATMOSPHERIC_BANDS = ("B01", "B09", "B10")
#: Smallest changed region kept by default, in square metres (4 pixels of 10 m).
DEFAULT_MMU_M2 = 400.0
#: Least root-mean-square reflectance change over the surface bands for the learned method to flag a
#: pixel (2 % reflectance: above sensor noise and residual normalisation error). On the labelled OSCD
#: cities this gate costs 0.003 pooled F1; it removes the model's false change on dark water.
MIN_CHANGE_REFLECTANCE = 0.02
MODEL_DIR = Path(__file__).resolve().parent / "models"


@dataclass(frozen=True)
class ChangeMap:
    """A per-pixel change map.

    Attributes
    ----------
    magnitude : ndarray of float32, shape (rows, cols)
        Change magnitude in method-specific units: for CVA the Euclidean norm of the
        reflectance difference vector, for IR-MAD the chi-square statistic, for the
        learned method the change probability in [0, 1]. NaN where not assessed.
    mask : ndarray of bool, shape (rows, cols)
        Changed pixels after the minimum mapping unit (False outside ``valid``).
    valid : ndarray of bool, shape (rows, cols)
        Pixels where change was assessed (both dates valid, not cloud, shadow or saturated).
    threshold : float
        Threshold on ``magnitude`` used for ``mask``.
    method : str
    confidence : ndarray of float32, shape (rows, cols), optional
        Confidence that a pixel changed, in [0, 1] (0.5 at the threshold); NaN where not assessed.
    details : dict
        Method-specific figures (IR-MAD canonical correlations, normalisation gains, ...).
    """

    magnitude: np.ndarray
    mask: np.ndarray
    valid: np.ndarray
    threshold: float
    method: str
    confidence: np.ndarray | None = None
    details: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- building blocks
def difference(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Per-band difference ``after - before``, shape (bands, rows, cols), float32."""
    return after.astype(np.float32) - before.astype(np.float32)


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
    # sampled pixels (changed pixels are a minority), so chi2 follows chi-square(bands).
    spread = 1.4826 * np.median(np.abs(mad - np.median(mad, axis=1, keepdims=True)), axis=1)
    scale = np.where(spread > 0, spread, np.sqrt(var))
    # apply to every pixel in float32: MAD = (A^T (x - mx) - B^T (y - my)) / scale
    wa = (A / scale[None, :]).T.astype(np.float32)
    wb = (B / scale[None, :]).T.astype(np.float32)
    c0 = (wa @ mx.astype(np.float32) - wb @ my.astype(np.float32))[:, None]
    mad_full, chi2_full = mad_variates(before, after, (wa, wb, c0))
    return IRMAD(mad_full, chi2_full, rho.astype(np.float32), iterations, (wa, wb, c0))


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


# --------------------------------------------------------------------------- thresholds
def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of finite ``values`` (inf when they are constant or empty)."""
    v = values[np.isfinite(values)]
    if v.size == 0 or np.ptp(v) == 0:
        return float("inf")
    return float(threshold_otsu(v))


def chi2_threshold(dof: int, p: float = 0.99) -> float:
    """Chi-square quantile: the no-change statistic exceeds it with probability ``1 - p``."""
    return float(stats.chi2.ppf(p, dof))


def em_threshold(values: np.ndarray, *, max_iter: int = 100, max_samples: int = 200_000, seed: int = 0) -> float:
    """Bayes threshold of a two-Gaussian mixture fitted to ``values`` by expectation-maximisation.

    The no-change class is the component with the lower mean; the threshold is the
    value above it where both weighted densities are equal (Bruzzone & Prieto 2000).
    Returns inf when the values are constant.
    """
    v = values[np.isfinite(values)].astype(np.float64)
    if v.size > max_samples:
        v = np.random.default_rng(seed).choice(v, max_samples, replace=False)
    if v.size < 10 or np.ptp(v) == 0:
        return float("inf")
    t0 = otsu_threshold(v)
    lo, hi = v[v <= t0], v[v > t0]
    if lo.size < 2 or hi.size < 2:
        return t0
    pi = np.array([lo.size, hi.size], float) / v.size
    mu = np.array([lo.mean(), hi.mean()])
    sd = np.array([lo.std() + 1e-9, hi.std() + 1e-9])
    for _ in range(max_iter):
        dens = pi / (sd * np.sqrt(2 * np.pi)) * np.exp(-0.5 * ((v[:, None] - mu) / sd) ** 2)
        r = dens / np.maximum(dens.sum(1, keepdims=True), 1e-300)
        nk = r.sum(0) + 1e-12
        mu_new = (r * v[:, None]).sum(0) / nk
        sd = np.sqrt((r * (v[:, None] - mu_new) ** 2).sum(0) / nk) + 1e-9
        pi = nk / v.size
        if np.allclose(mu_new, mu, rtol=1e-6, atol=1e-12):
            mu = mu_new
            break
        mu = mu_new
    i0, i1 = (0, 1) if mu[0] <= mu[1] else (1, 0)
    grid = np.linspace(mu[i0], max(mu[i1], mu[i0] + 1e-9), 2001)

    def logd(k: int) -> np.ndarray:
        return np.log(pi[k]) - np.log(sd[k]) - 0.5 * ((grid - mu[k]) / sd[k]) ** 2

    above = np.flatnonzero(logd(i1) >= logd(i0))
    return float(grid[above[0]]) if above.size else float(mu[i1])


def noise_floor(values: np.ndarray, k: float = 5.0) -> float:
    """A robust significance floor for a change magnitude: ``median + k * 1.4826 * MAD``.

    Histogram thresholds (Otsu, EM) always split the data, even when nothing changed;
    keeping the threshold above this floor stops them from flagging noise on an
    unchanged (e.g. gain/illumination-only) pair.
    """
    v = values[np.isfinite(values)]
    if v.size == 0:
        return float("inf")
    med = float(np.median(v))
    return med + k * 1.4826 * float(np.median(np.abs(v - med)))


def _ramp_confidence(magnitude: np.ndarray, threshold: float) -> np.ndarray:
    """Confidence 0 at zero magnitude, 0.5 at the threshold, towards 1 above: ``1 - 2^-(m/t)^2``."""
    if not np.isfinite(threshold) or threshold <= 0:
        return np.zeros_like(magnitude, dtype=np.float32)
    return (1.0 - np.exp2(-((magnitude / threshold) ** 2))).astype(np.float32)


# --------------------------------------------------------------------------- masks
def apply_mmu(mask: np.ndarray, min_area_m2: float, pixel_size_m: tuple[float, float]) -> np.ndarray:
    """Drop changed regions smaller than ``min_area_m2`` square metres (8-connected)."""
    px_area = float(pixel_size_m[0]) * float(pixel_size_m[1])
    n = int(np.ceil(min_area_m2 / px_area - 1e-9)) if px_area > 0 else 1
    return drop_small_regions(mask, n)


# --------------------------------------------------------------------------- learned method
def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(x, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def _robust_scale(x: np.ndarray, valid: np.ndarray) -> float:
    v = x[valid]
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 1.0
    v = even_subsample(v)
    s = float(np.median(np.abs(v - np.median(v)))) * 1.4826
    return s if s > 1e-6 else float(np.std(v)) + 1e-6


def difference_scales(before: np.ndarray, after: np.ndarray, valid: np.ndarray) -> tuple[float, ...]:
    """Robust spread (1.4826 x median absolute deviation, reflectance) of ``after - before`` per band.

    The learned method's features divide each band's difference by it (``*_zdiff``). ``before``
    and ``after`` are (bands, ...) with ``after`` normalised to ``before``; ``valid`` selects the
    pixels (any shape matching the trailing axes).
    """
    return tuple(_robust_scale(after[i] - before[i], valid) for i in range(before.shape[0]))


def _nd_or_zero(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a - b) / (a + b)`` of finite float32 arrays, 0 where ``a + b <= 0``."""
    s = a + b
    out = a - b
    pos = s > 0
    np.divide(out, s, out=out, where=pos)
    out[~pos] = 0
    return out


#: Feature sets :func:`change_features` computes (a model records the one it was trained on).
FEATURE_SETS = ("v1", "v2")


def change_features(before: np.ndarray, after: np.ndarray, valid: np.ndarray,
                    bands: Sequence[str], feature_set: str = "v1") -> tuple[list[str], np.ndarray]:
    """Per-pixel features of a normalised pair, for the learned change classifier.

    Spectral (each band before, after, difference and difference scaled by the scene's
    robust spread of differences), indices (NDVI, NDWI, NDBI when B11 is there,
    brightness) on both dates and their change, spectral angle, and spatial context:
    Gaussian means (sigma 1, 3, 8 px) of the scaled change magnitude and index changes,
    and local texture (standard deviation of brightness, sigma 1.5 px) on both dates.
    ``"v2"`` adds a wider context (sigma 16 px) of the changes and the neighbourhood of
    the before date (sigma 4 and 16 px means of its indices: what kind of place it is).

    Parameters
    ----------
    before, after : ndarray, shape (bands, rows, cols)
        Reflectance, ``after`` already normalised to ``before``; NaN invalid.
    valid : ndarray of bool, shape (rows, cols)
    bands : sequence of str
        Names of the bands along axis 0 (must include B02 B03 B04 B08).
    feature_set : {"v1", "v2"}

    Returns
    -------
    names : list of str
    features : ndarray of float32, shape (features, rows, cols)
        Finite everywhere (invalid pixels are filled with the valid median first).
    """
    names, planes = feature_planes(before, after, valid, bands, feature_set)
    return names, np.stack(planes)


def feature_planes(before: np.ndarray, after: np.ndarray, valid: np.ndarray,
                   bands: Sequence[str], feature_set: str = "v1", *,
                   diff_scales: Sequence[float] | None = None,
                   fill: tuple[Sequence[float], Sequence[float]] | None = None) -> tuple[list[str], list[np.ndarray]]:
    """The features of :func:`change_features` as a list of (rows, cols) float32 planes, not stacked.

    Planes that are plain inputs (each band before, after and their difference) are views, not
    copies; :meth:`MLPModel.predict` reads the list directly, so the learned method never holds
    a (features, rows, cols) stack. ``diff_scales`` (one per band, reflectance) replaces the
    robust spread of each band's differences measured on these arrays (:func:`difference_scales`)
    by one measured elsewhere: a tiled comparison measures it once on sample windows of the
    whole raster, so that every window is scaled alike. ``fill`` (before and after values per
    band) likewise replaces the valid pixels' medians that invalid pixels are filled with.
    """
    bands = list(bands)
    for need in ("B02", "B03", "B04", "B08"):
        if need not in bands:
            raise BandError(f"the learned change method needs {need} (has {', '.join(bands)})")
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {feature_set!r}; choose one of {', '.join(FEATURE_SETS)}")
    b = np.asarray(before, dtype=np.float32)
    a = np.asarray(after, dtype=np.float32)
    ok = valid & np.all(np.isfinite(b), 0) & np.all(np.isfinite(a), 0)
    bad = ~ok
    if fill is not None and not (len(fill[0]) == len(fill[1]) == len(bands)):
        raise ValueError(f"fill values for {len(fill[0])} and {len(fill[1])} bands, not {len(bands)}")
    if bad.any():  # own copies, with invalid pixels filled (nothing to copy when every pixel is valid)
        b, a = b.copy(), a.copy()
        for i in range(b.shape[0]):
            b[i][bad] = sampled_median(b[i], ok) if fill is None else fill[0][i]
            a[i][bad] = sampled_median(a[i], ok) if fill is None else fill[1][i]
    ix = {n: i for i, n in enumerate(bands)}
    names: list[str] = []
    planes: list[np.ndarray] = []

    def add(name: str, arr: np.ndarray) -> None:
        names.append(name)
        planes.append(arr)

    d = a - b
    if diff_scales is not None and len(diff_scales) != len(bands):
        raise ValueError(f"{len(diff_scales)} difference scales for {len(bands)} bands")
    zsq = np.zeros(b.shape[1:], np.float32)
    for n, i in ix.items():
        z = d[i] / np.float32(diff_scales[i] if diff_scales is not None else _robust_scale(d[i], ok))
        zsq += z * z
        add(f"{n}_before", b[i])
        add(f"{n}_after", a[i])
        add(f"{n}_diff", d[i])
        add(f"{n}_zdiff", np.clip(z, -20, 20, out=z))
    zsq /= len(ix)
    zmag = np.sqrt(zsq, out=zsq)

    def indices(x: np.ndarray) -> dict[str, np.ndarray]:
        # x is finite here: a normalised difference is 0 where its denominator is not positive
        # (as nan_to_num of imgdiff.radiometry.normalised_difference), brightness the band mean
        bright = x[ix["B02"]] + x[ix["B03"]]
        bright += x[ix["B04"]]
        bright += x[ix["B08"]]
        bright /= np.float32(4)
        out = {"ndvi": _nd_or_zero(x[ix["B08"]], x[ix["B04"]]), "ndwi": _nd_or_zero(x[ix["B03"]], x[ix["B08"]]),
               "bright": bright}
        if "B11" in ix:
            out["ndbi"] = _nd_or_zero(x[ix["B11"]], x[ix["B08"]])
        return out

    ib, ia = indices(b), indices(a)
    idiff = {}
    for k in ib:
        idiff[k] = ia[k] - ib[k]
        add(f"{k}_before", ib[k])
        add(f"{k}_after", ia[k])
        add(f"{k}_diff", idiff[k])
    dot = np.einsum("kij,kij->ij", a, b)
    norm = np.sqrt(np.einsum("kij,kij->ij", a, a) * np.einsum("kij,kij->ij", b, b))
    norm += np.float32(1e-9)
    np.divide(dot, norm, out=dot)
    np.clip(dot, -1, 1, out=dot)
    add("spectral_angle", np.arccos(dot, out=dot))
    add("zmag", zmag)
    for sigma in (1.0, 3.0, 8.0) + ((16.0,) if feature_set == "v2" else ()):
        add(f"zmag_s{sigma:g}", _blur(zmag, sigma))
        for k in ib:
            add(f"{k}_diff_s{sigma:g}", _blur(idiff[k], sigma))
    if feature_set == "v2":
        for sigma in (4.0, 16.0):
            for k in ib:
                add(f"{k}_before_s{sigma:g}", _blur(ib[k], sigma))
    for tag, x in (("before", ib["bright"]), ("after", ia["bright"])):
        m = _blur(x, 1.5)
        var = _blur(x * x, 1.5)
        var -= m * m
        np.maximum(var, 0, out=var)
        add(f"texture_{tag}", np.sqrt(var, out=var))
    add("texture_diff", planes[-1] - planes[-2])
    return names, planes


@dataclass(frozen=True)
class MLPModel:
    """A small multilayer perceptron over :func:`change_features`.

    :meth:`predict` runs the model's ONNX export with ONNX Runtime when :meth:`load` found one
    beside the ``.npz`` holding the same weights (the shipped models have one, written by
    ``training/train_change.py``: 83 against 145 ns per pixel on one core), else in numpy;
    the two give the same probabilities to about 1e-6.

    Attributes
    ----------
    bands : tuple of str
        Bands the model needs, in feature order.
    feature_names : tuple of str
    mean, std : ndarray, shape (features,)
        Input standardisation.
    weights, biases : tuple of ndarray
        Layer ``k`` maps ``h @ weights[k] + biases[k]``; ReLU between layers, sigmoid at the end.
    threshold : float
        Probability threshold chosen by leave-one-city-out validation.
    smooth_sigma : float
        Gaussian smoothing (pixels) of the probability map before thresholding.
    name : str
    feature_set : str
        Which :func:`change_features` set the model reads.
    clip_z : float
        Standardised inputs are clipped to [-clip_z, clip_z] (in training too).
    onnx_path : str, optional
        The ONNX export of this model (:meth:`layer_matrices` as a graph; input (features,
        pixels), output (1, pixels)); used only while it records :meth:`weights_digest`.
    """

    bands: tuple[str, ...]
    feature_names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    threshold: float
    smooth_sigma: float
    name: str = "mlp"
    feature_set: str = "v1"
    clip_z: float = 6.0
    onnx_path: str | None = field(default=None, compare=False)

    def weights_digest(self) -> str:
        """SHA-256 of everything :meth:`predict` computes with (standardisation, clip, layers), hex."""
        import hashlib

        h = hashlib.sha256()
        for a in (self.mean, self.std, np.float32(self.clip_z), *self.weights, *self.biases):
            h.update(np.ascontiguousarray(a, np.float32).tobytes())
        return h.hexdigest()

    def layer_matrices(self) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """The model as :meth:`predict` evaluates it, on pixels as columns.

        Returns
        -------
        lo, hi : ndarray of float32, shape (features, 1)
            Raw features are clipped to ``[lo, hi]`` (``mean -+ clip_z std``).
        mats : list of ndarray of float32
            Layer ``k`` is ``mats[k] @ [h; 1]``, shape (units, inputs + 1): the bias is the last
            column and the first layer has the standardisation folded in. ReLU between layers,
            sigmoid at the end.
        """
        mean, std = self.mean.astype(np.float64), self.std.astype(np.float64)
        lo = (mean - self.clip_z * std).astype(np.float32)[:, None]
        hi = (mean + self.clip_z * std).astype(np.float32)[:, None]
        w0 = self.weights[0].astype(np.float64)
        mats = [np.hstack([(w0 / std[:, None]).T, (self.biases[0] - (mean / std) @ w0)[:, None]]).astype(np.float32)]
        mats += [np.hstack([W.T, bias[:, None]]).astype(np.float32) for W, bias in zip(self.weights[1:], self.biases[1:])]
        return lo, hi, mats

    def predict(self, features: np.ndarray | Sequence[np.ndarray], *, chunk: int = 4096) -> np.ndarray:
        """Change probability of each pixel: features (features, rows, cols) -> (rows, cols).

        ``features`` is a stacked array or a sequence of (rows, cols) planes (:func:`feature_planes`).
        Pixels go through the layers ``chunk`` at a time in preallocated float32 buffers (4096
        pixels: inputs and activations, about 2 MB, stay in cache; the ONNX path takes 8192). Standardised inputs are clipped
        to +-``clip_z`` so that changes stronger than any seen in training saturate instead of
        extrapolating; the clip is done on the raw features (to ``mean +- clip_z std``), the
        standardisation is folded into the first layer and each bias is a weight on a row of ones.
        """
        planes = list(features)
        if len(planes) != self.mean.size:
            raise ValueError(f"model {self.name} reads {self.mean.size} features, got {len(planes)}")
        shape = planes[0].shape
        session = _export_session(self.onnx_path, self.weights_digest()) if self.onnx_path else None
        if session is not None:
            return _predict_session(session, planes).reshape(shape)
        flat = [np.ascontiguousarray(p, dtype=np.float32).reshape(-1) for p in planes]
        n, f = flat[0].size, len(flat)
        lo, hi, mats = self.layer_matrices()
        chunk = max(1, min(chunk, n))
        x = np.empty((f + 1, chunk), np.float32)
        x[f] = 1
        bufs = []
        for k, W in enumerate(mats):
            hidden = k < len(mats) - 1
            buf = np.empty((W.shape[0] + hidden, chunk), np.float32)
            if hidden:
                buf[-1] = 1  # the ones row of the next layer's bias (ReLU keeps it)
            bufs.append(buf)
        out = np.empty(n, np.float32)
        for s in range(0, n, chunk):
            e = min(s + chunk, n)
            h = x[:, :e - s]
            for k, p in enumerate(flat):
                h[k] = p[s:e]
            np.maximum(h[:f], lo, out=h[:f])
            np.minimum(h[:f], hi, out=h[:f])
            for k, (W, buf) in enumerate(zip(mats, bufs)):
                y = buf[:W.shape[0], :e - s]
                np.matmul(W, h, out=y)
                if k < len(mats) - 1:
                    np.maximum(y, 0, out=y)
                h = buf[:, :e - s]
            z = h[0]
            np.clip(z, -50, 50, out=z)
            np.negative(z, out=z)
            np.exp(z, out=z)
            z += 1
            np.reciprocal(z, out=out[s:e])
        return out.reshape(shape)

    def save(self, path: str | Path) -> None:
        """Write the model as an ``.npz`` (no pickles)."""
        arrays = {f"W{k}": w for k, w in enumerate(self.weights)}
        arrays.update({f"b{k}": b for k, b in enumerate(self.biases)})
        np.savez_compressed(
            path, bands=np.array(self.bands), feature_names=np.array(self.feature_names),
            mean=self.mean.astype(np.float32), std=self.std.astype(np.float32),
            threshold=np.float64(self.threshold), smooth_sigma=np.float64(self.smooth_sigma),
            name=np.array(self.name), feature_set=np.array(self.feature_set), clip_z=np.float64(self.clip_z),
            n_layers=np.int64(len(self.weights)), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> MLPModel:
        """Read a model written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            n = int(z["n_layers"])
            return cls(
                bands=tuple(str(s) for s in z["bands"]), feature_names=tuple(str(s) for s in z["feature_names"]),
                mean=z["mean"].astype(np.float32), std=z["std"].astype(np.float32),
                weights=tuple(z[f"W{k}"].astype(np.float32) for k in range(n)),
                biases=tuple(z[f"b{k}"].astype(np.float32) for k in range(n)),
                threshold=float(z["threshold"]), smooth_sigma=float(z["smooth_sigma"]), name=str(z["name"]),
                feature_set=str(z["feature_set"]) if "feature_set" in z.files else "v1",
                clip_z=float(z["clip_z"]) if "clip_z" in z.files else 6.0,
                onnx_path=str(export) if (export := Path(path).with_suffix(".onnx")).is_file() else None)


#: Metadata key of an ONNX export that records the :meth:`MLPModel.weights_digest` it was made from.
ONNX_DIGEST_KEY = "imgdiff_weights_sha256"
#: Pixels per ONNX Runtime call (inputs and activations of one call stay in cache).
ONNX_CHUNK = 8192


def _export_session(path: str, digest: str):
    """The ONNX Runtime session of a model's export, or None when the file holds other weights."""
    from .detect.onnx import load_network

    session = load_network(path)
    return session if session.get_modelmeta().custom_metadata_map.get(ONNX_DIGEST_KEY) == digest else None


def _predict_session(session, planes: Sequence[np.ndarray], chunk: int = ONNX_CHUNK) -> np.ndarray:
    """Probabilities from an :class:`MLPModel` export, one per pixel of the feature ``planes``
    (all of one shape; views of larger arrays are read in place, not copied whole). Rows of
    pixels, about ``chunk`` pixels at a time, go in as columns of a (features, pixels) buffer."""
    planes = [p.reshape(p.shape[0], -1) if p.ndim > 1 else p.reshape(1, -1) for p in planes]
    (h, w), f = planes[0].shape, len(planes)
    name = session.get_inputs()[0].name
    out = np.empty((h, w), np.float32)
    step = max(1, chunk // max(w, 1))
    buf = np.empty((f, min(step, h) * w), np.float32)
    for r0 in range(0, h, step):
        r1 = min(r0 + step, h)
        x = buf if (r1 - r0) * w == buf.shape[1] else np.empty((f, (r1 - r0) * w), np.float32)
        for k, p in enumerate(planes):
            x[k].reshape(r1 - r0, w)[...] = p[r0:r1]
        out[r0:r1] = session.run(None, {name: x})[0][0].reshape(r1 - r0, w)
    return out


@lru_cache(maxsize=8)
def _shipped_models() -> tuple[MLPModel, ...]:
    paths = sorted(MODEL_DIR.glob("change_mlp_*.npz"))
    models = [MLPModel.load(p) for p in paths]
    return tuple(sorted(models, key=lambda m: -len(m.bands)))


def pick_model(bands: Sequence[str]) -> MLPModel | None:
    """The shipped model using the most of ``bands`` (all its bands must be present), or None."""
    have = set(bands)
    for m in _shipped_models():
        if set(m.bands) <= have:
            return m
    return None


def learned_probability(before: np.ndarray, after: np.ndarray, valid: np.ndarray, bands: Sequence[str],
                        model: MLPModel, *, diff_scales: Sequence[float] | None = None,
                        fill: tuple[Sequence[float], Sequence[float]] | None = None,
                        region: tuple[slice, slice] | None = None) -> np.ndarray:
    """Change probability (rows, cols) from ``model`` over the pair's features (smoothed, NaN outside valid).

    ``diff_scales``, ``fill``: per band of ``bands``, see :func:`feature_planes` (default: measured
    on this pair).
    ``region`` (row and column slices of the arrays, unit steps): return the probability of that
    part only, equal to the whole array's there; the features still see the whole arrays (their
    spatial context), the network runs on the region and the smoothing kernel's reach around it.
    """
    ix = [list(bands).index(n) for n in model.bands]
    # the model's bands as views when they are consecutive (as in every stack imgdiff builds), else copies
    take = slice(ix[0], ix[-1] + 1) if ix == list(range(ix[0], ix[0] + len(ix))) else ix
    scales = None if diff_scales is None else [diff_scales[i] for i in ix]
    fills = None if fill is None else ([fill[0][i] for i in ix], [fill[1][i] for i in ix])
    names, planes = feature_planes(before[take], after[take], valid, model.bands, model.feature_set,
                                   diff_scales=scales, fill=fills)
    if tuple(names) != model.feature_names:
        raise ValueError("change model was trained on other features; retrain with training/train_change.py")
    h, w = planes[0].shape
    rows, cols = region if region is not None else (slice(0, h), slice(0, w))
    # OpenCV's Gaussian kernel for float images spans round(8 sigma + 1) | 1 pixels
    pad = (int(round(8 * model.smooth_sigma + 1)) | 1) // 2 if model.smooth_sigma > 0 else 0
    r0, r1 = max(rows.start - pad, 0), min(rows.stop + pad, h)
    c0, c1 = max(cols.start - pad, 0), min(cols.stop + pad, w)
    p = model.predict([q[r0:r1, c0:c1] for q in planes])
    if model.smooth_sigma > 0:
        p = _blur(p, model.smooth_sigma)
    p = p[rows.start - r0:rows.stop - r0, cols.start - c0:cols.stop - c0]
    p[~valid[rows, cols]] = np.nan
    return p


# --------------------------------------------------------------------------- the change map
def learned_magnitude(before: np.ndarray, after: np.ndarray, valid: np.ndarray, bands: Sequence[str],
                      model: MLPModel, *, diff_scales: Sequence[float] | None = None,
                      fill: tuple[Sequence[float], Sequence[float]] | None = None,
                      region: tuple[slice, slice] | None = None) -> np.ndarray:
    """Change probability of the learned model, capped at its threshold where reflectance hardly moved.

    The model sees context and ratios: on dark water and around small objects it can call change
    where the reflectance did not measurably change. A pixel keeps a probability above
    ``model.threshold`` only if its root-mean-square change over the surface bands exceeds
    :data:`MIN_CHANGE_REFLECTANCE`.

    Parameters
    ----------
    before, after : ndarray, shape (bands, rows, cols)
        Reflectance, ``after`` already normalised to ``before``.
    diff_scales, fill, region
        As :func:`learned_probability` (with ``region`` the result is that part's).
    """
    prob = learned_probability(before, after, valid, bands, model, diff_scales=diff_scales, fill=fill,
                               region=region)
    surface = [i for i, n in enumerate(bands) if n not in ATMOSPHERIC_BANDS] or list(range(len(bands)))
    if region is not None:
        before, after = before[:, region[0], region[1]], after[:, region[0], region[1]]
    rms = cva_magnitude(before[surface], after[surface]) / np.sqrt(len(surface))
    return np.where(rms > MIN_CHANGE_REFLECTANCE, prob, np.minimum(prob, model.threshold)).astype(np.float32)


def change_map(
    before: np.ndarray,
    after: np.ndarray,
    valid: np.ndarray,
    *,
    bands: Sequence[str] | None = None,
    method: str | None = None,
    pixel_size_m: tuple[float, float] = (10.0, 10.0),
    min_mapping_unit_m2: float = DEFAULT_MMU_M2,
    normalise_radiometry: bool = True,
    min_mapping_unit_px: int | None = None,
) -> ChangeMap:
    """Change between two co-registered stacks.

    The after stack is first normalised to the before stack (per-band orthogonal
    regression on pseudo-invariant pixels, :func:`imgdiff.radiometry.normalise`), so
    gain and illumination differences do not count as change. Then:

    - ``"mlp"`` (default): learned per-pixel classifier over :func:`change_features`,
      trained on the labelled OSCD cities; magnitude = change probability, threshold
      chosen by leave-one-city-out validation. Needs B02 B03 B04 B08 (uses B05-B07,
      B8A, B11, B12 when present); falls back to ``"irmad"`` without them.
    - ``"irmad"``: IR-MAD chi-square statistic, threshold = chi-square quantile p = 0.99
      (or the noise floor, if higher).
    - ``"cva-otsu"`` / ``"cva-em"``: CVA magnitude with Otsu's or the EM Bayes threshold.
    - ``"logratio-otsu"``: norm of per-band log ratios with Otsu's threshold.

    Histogram thresholds are kept above :func:`noise_floor` so an unchanged pair stays unflagged.
    The classical methods leave out :data:`ATMOSPHERIC_BANDS` (B01 B09 B10) when ``bands`` names them.

    Parameters
    ----------
    before, after : ndarray, shape (bands, rows, cols)
        Reflectance on one grid (NaN invalid).
    valid : ndarray of bool, shape (rows, cols)
        Pixels to assess (both dates valid, clouds etc. already removed).
    bands : sequence of str, optional
        Band names along axis 0 (needed by ``"mlp"``).
    method : str, optional
        One of :data:`METHODS`; default :data:`DEFAULT_METHOD`.
    pixel_size_m : (float, float)
        Ground size (x, y) of a pixel in metres, for the minimum mapping unit.
    min_mapping_unit_m2 : float
        Changed regions smaller than this (square metres) are dropped.
    normalise_radiometry : bool
        Normalise ``after`` to ``before`` first.
    min_mapping_unit_px : int, optional
        Overrides ``min_mapping_unit_m2`` with a size in pixels.

    Returns
    -------
    ChangeMap

    Raises
    ------
    EmptySceneError
        ``"irmad"`` (asked for, or the fallback of ``"mlp"``) on fewer than
        :data:`IRMAD_MIN_PIXELS_PER_BAND` valid pixels per band.
    """
    method = method or DEFAULT_METHOD
    if method not in METHODS:
        raise ValueError(f"unknown change method {method!r}; choose one of {', '.join(METHODS)}")
    if before.shape != after.shape or before.shape[1:] != valid.shape:
        raise ValueError(f"stacks {before.shape} / {after.shape} and mask {valid.shape} do not match")
    valid = valid & np.all(np.isfinite(before), 0) & np.all(np.isfinite(after), 0)
    details: dict = {}
    if normalise_radiometry and valid.sum() >= 50:
        norm = normalise(before, after, valid)
        after = norm.apply(after)
        details["normalisation"] = {"gain": norm.gain.tolist(), "offset": norm.offset.tolist(),
                                    "invariant_pixels": norm.n_invariant}
    names = list(bands) if bands is not None else [f"band{i}" for i in range(before.shape[0])]
    model = pick_model(names) if method == "mlp" else None
    if method == "mlp" and model is None:
        method = "irmad"
        details["fallback"] = "no shipped change model fits the bands; used irmad"
    if not valid.any():
        nan = np.full(valid.shape, np.nan, np.float32)
        return ChangeMap(nan, np.zeros_like(valid), valid, float("inf"), method, nan.copy(), details)

    if method != "mlp":
        surface = classical_bands(names)  # the surface bands only
        if len(surface) < len(names):
            before, after = before[surface], after[surface]
            details["bands_used"] = [names[i] for i in surface]
    if method == "mlp":
        assert model is not None
        mag = learned_magnitude(before, after, valid, names, model)
        thr = model.threshold
        conf = mag.copy()
        details["model"] = {"name": model.name, "bands": list(model.bands)}
        details["min_change_reflectance"] = MIN_CHANGE_REFLECTANCE
    elif method == "irmad":
        need = IRMAD_MIN_PIXELS_PER_BAND * before.shape[0]
        if int(valid.sum()) < need:
            why = " (used because no shipped mlp model fits the bands)" if "fallback" in details else ""
            raise EmptySceneError(
                f"IR-MAD{why} needs at least {need} valid pixels ({IRMAD_MIN_PIXELS_PER_BAND} per band) to fit, "
                f"the window has {int(valid.sum())}; use a larger window (--bbox) or --method cva-otsu"
            )
        r = irmad(before, after, valid)
        mag = r.chi2
        # real scenes have heavier tails than chi-square (spatially correlated noise,
        # residual misregistration): keep the threshold above the robust noise floor too
        thr = max(chi2_threshold(before.shape[0], 0.99), noise_floor(mag[valid]))
        conf = (1.0 - r.no_change_probability).astype(np.float32)
        details["irmad"] = {"rho": r.rho.tolist(), "iterations": r.iterations}
    elif method in ("cva-otsu", "cva-em"):
        mag = cva_magnitude(before, after)
        mag[~valid] = np.nan
        thr = otsu_threshold(mag[valid]) if method == "cva-otsu" else em_threshold(mag[valid])
        thr = max(thr, noise_floor(mag[valid]))
        conf = _ramp_confidence(mag, thr)
    else:  # logratio-otsu
        eps = log_ratio_damping([np.median(before[i][valid]) for i in range(before.shape[0])])
        mag = log_ratio_magnitude(before, after, eps)
        mag[~valid] = np.nan
        thr = max(otsu_threshold(mag[valid]), noise_floor(mag[valid]))
        conf = _ramp_confidence(mag, thr)
    mag = mag.astype(np.float32)
    mag[~valid] = np.nan
    conf = conf.astype(np.float32)
    conf[~valid] = np.nan
    mask = valid & (np.nan_to_num(mag, nan=-np.inf) > thr)
    if min_mapping_unit_px is not None:
        mask = drop_small_regions(mask, min_mapping_unit_px)
    else:
        mask = apply_mmu(mask, min_mapping_unit_m2, pixel_size_m)
    return ChangeMap(magnitude=mag, mask=mask, valid=valid, threshold=float(thr), method=method,
                     confidence=conf, details=details)


def scene_change_map(before: Scene, after: Scene, valid: np.ndarray, *, method: str | None = None,
                     min_mapping_unit_m2: float = DEFAULT_MMU_M2) -> ChangeMap:
    """Change between two scenes on one grid, with clouds, shadows and saturation kept out.

    Pixels that are cloud, cloud shadow or saturated on either date
    (:func:`imgdiff.radiometry.date_masks`, when the scenes have B02 B03 B04 B08)
    are not assessed (``valid`` False, band 3 of ``change.tif``).

    Parameters
    ----------
    before, after : Scene
        On the same grid, with the same bands.
    valid : ndarray of bool, shape (rows, cols)
        Pixels both scenes cover.
    method : str, optional
        See :func:`change_map`.
    """
    names = [n for n in before.bands if n in after.bands]
    details = {}
    if all(n in names for n in ("B02", "B03", "B04", "B08")):
        mb, ma = date_masks(before), date_masks(after)
        excl_b, excl_a = mb.excluded, ma.excluded
        details["masked"] = {"before_cloud_or_shadow_px": int(excl_b.sum()), "after_cloud_or_shadow_px": int(excl_a.sum())}
        valid = valid & ~excl_b & ~excl_a
    cm = change_map(before.stack(names), after.stack(names), valid, bands=names, method=method,
                    pixel_size_m=before.pixel_size_m, min_mapping_unit_m2=min_mapping_unit_m2)
    return replace(cm, details={**cm.details, **details})
