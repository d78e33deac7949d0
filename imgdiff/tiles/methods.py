"""Change methods of the tiled comparison and the histogram of their magnitudes.

Which methods a tiled comparison supports (:data:`TILED_METHODS`, :func:`pick_tiled_method`) and
how many passes over the tiles each needs (:func:`change_passes`); the magnitude histogram's
range (:func:`magnitude_bound`) and what is read from it: Otsu's threshold, the noise floor and
percentiles, exact across tiles.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Bins of the magnitude histogram used for the global Otsu threshold.
HIST_BINS = 1 << 16


#: Change methods the tiled comparison supports: per-pixel magnitudes with a threshold that is
#: either fixed (``mlp``) or Otsu's over the whole raster (two passes, exact across tiles).
TILED_METHODS = ("mlp", "irmad", "cva-otsu", "logratio-otsu")


def pick_tiled_method(method: str | None, names: Sequence[str]) -> str:
    """The method a tiled comparison uses: the given one, else the library default, else ``cva-otsu``.

    ``mlp`` needs a shipped model fitting the bands; without one ``irmad`` is used (as in
    :func:`imgdiff.change.change_map`).
    """
    from ..change import DEFAULT_METHOD, pick_model

    m = method or DEFAULT_METHOD
    if m not in TILED_METHODS:
        if method is not None:
            raise ValueError(f"tiled comparison supports the methods {', '.join(TILED_METHODS)}, not {method!r}")
        m = "cva-otsu"
    if m == "mlp" and pick_model(names) is None:
        m = "irmad"
    return m


def change_passes(method: str) -> int:
    """Passes over the tiles a tiled comparison makes: 1 for a fixed threshold (``mlp``), else 2
    (the histogram threshold needs every tile's magnitude first)."""
    return 1 if method == "mlp" else 2


def magnitude_bound(method: str, n_bands: int) -> float:
    """Largest magnitude a method can give for reflectance in [0, 2]: the range of the histogram.

    CVA: ``2 sqrt(n_bands)``; log-ratio: ``log(2 / 1e-3)``; ``mlp``: 1 (a probability).
    A fixed physical range (not one estimated from samples) keeps the whole tail of the
    distribution in the histogram, so its Otsu threshold matches Otsu's on the raw values.
    """
    if method == "mlp":
        return 1.0
    if method == "irmad":
        return 100.0 * n_bands  # chi-square with n_bands dof (mean n_bands): the tail beyond is clipped
    if method == "logratio-otsu":
        return float(np.log(2.0 / 1e-3))
    return 2.0 * float(np.sqrt(n_bands))


def otsu_threshold(counts: np.ndarray, edges: np.ndarray) -> float:
    """Otsu's threshold of a histogram (``counts`` per bin between ``edges``); +inf if flat."""
    counts = counts.astype(np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    total = counts.sum()
    if total == 0 or np.count_nonzero(counts) < 2:
        return float("inf")
    w0 = np.cumsum(counts)
    w1 = total - w0
    m0 = np.cumsum(counts * centres)
    mt = m0[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mt * w0 - m0 * total) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = -1
    i = int(np.argmax(between[:-1]))
    return float(centres[i])


def hist_noise_floor(counts: np.ndarray, edges: np.ndarray, k: float = 5.0) -> float:
    """``median + k * 1.4826 * MAD`` of the values of a histogram (:func:`imgdiff.change.noise_floor`)."""
    total = counts.sum()
    if total == 0:
        return float("inf")
    centres = (edges[:-1] + edges[1:]) / 2
    med = centres[int(np.searchsorted(np.cumsum(counts), total / 2))]
    dev = np.abs(centres - med)
    order = np.argsort(dev, kind="stable")
    mad = dev[order][int(np.searchsorted(np.cumsum(counts[order]), total / 2))]
    return float(med + k * 1.4826 * mad)


def _hist_percentile(counts: np.ndarray, edges: np.ndarray, q: float) -> float | None:
    total = counts.sum()
    if total == 0:
        return None
    i = int(np.searchsorted(np.cumsum(counts), q / 100 * total))
    return float((edges[i] + edges[i + 1]) / 2)
