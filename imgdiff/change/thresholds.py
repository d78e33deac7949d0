"""Thresholds on a change magnitude, the confidence ramp, and the minimum mapping unit of the mask.

Otsu's threshold, the chi-square quantile of IR-MAD's statistic, the expectation-maximisation
Bayes threshold and the robust noise floor that keeps histogram thresholds from flagging noise;
:func:`apply_mmu` drops changed regions smaller than a ground area. Also ``stats``: ``scipy.stats``
imported on first use.
"""

from __future__ import annotations

import numpy as np
from skimage.filters import threshold_otsu

from ..radiometry import drop_small_regions


class _LazyStats:
    """``scipy.stats`` imported on first use (it costs ~0.6 s at start-up of every CLI command)."""

    def __getattr__(self, name: str):
        from scipy import stats as _stats

        return getattr(_stats, name)


stats = _LazyStats()


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


#: The least noise a change magnitude is taken to hold, as a fraction of the signal it measures
#: (dimensionless; :func:`noise_floor`'s ``signal_scale``, :func:`imgdiff.change.irmad_noise_floor`):
#: 1e-5. A pair that agrees better than that (an exact gain read from float files: float32 rounding,
#: about 1e-7 relative, is all that is left after normalisation) holds no measurable change. For
#: CVA on typical scenes the floor is 3-6e-6 reflectance, a few hundredths of a digital number of
#: a Sentinel-2 product (1e-4 reflectance): it never binds on integer data or real noise.
MIN_RELATIVE_NOISE = 1e-5


def noise_floor(values: np.ndarray, k: float = 5.0, *, signal_scale: float = 0.0) -> float:
    """A robust significance floor for a change magnitude: ``median + k * 1.4826 * MAD``, and at
    least ``MIN_RELATIVE_NOISE * signal_scale``.

    Histogram thresholds (Otsu, EM) always split the data, even when nothing changed;
    keeping the threshold above this floor stops them from flagging noise on an
    unchanged (e.g. gain/illumination-only) pair. On a noise-free pair (an exact gain in
    float files) the median and MAD shrink to float rounding, and the relative floor takes over.

    Parameters
    ----------
    values : ndarray
        Change magnitudes (non-finite values are ignored).
    k : float
        Robust standard deviations above the median.
    signal_scale : float
        Scale of the signal the magnitude measures, in the magnitude's units (for CVA the length
        of a typical pixel's reflectance vector; 1 for a log ratio); 0 for no relative floor.

    Returns
    -------
    float
        In the units of ``values``; inf when none is finite.
    """
    v = values[np.isfinite(values)]
    if v.size == 0:
        return float("inf")
    med = float(np.median(v))
    return max(med + k * 1.4826 * float(np.median(np.abs(v - med))), MIN_RELATIVE_NOISE * float(signal_scale))


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
