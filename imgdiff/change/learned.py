"""The learned change method on a pair: the shipped models, the probability map and its magnitude.

:func:`pick_model` chooses the shipped model (in ``imgdiff/models``) that fits the bands;
:func:`learned_probability` runs it over :func:`~imgdiff.change.features.feature_planes`;
:func:`learned_magnitude` caps it where reflectance hardly moved (:data:`MIN_CHANGE_REFLECTANCE`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from .classical import ATMOSPHERIC_BANDS, cva_magnitude
from .features import _blur, feature_planes
from .mlp import MLPModel

#: Least root-mean-square reflectance change over the surface bands for the learned method to flag a
#: pixel (2 % reflectance: above sensor noise and residual normalisation error). On the labelled OSCD
#: cities this gate costs 0.003 pooled F1; it removes the model's false change on dark water.
MIN_CHANGE_REFLECTANCE = 0.02
MODEL_DIR = Path(__file__).resolve().parent.parent / "models"


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
    valid : ndarray of bool, shape (rows, cols)
        Pixels to assess.
    bands : sequence of str
        Band names along axis 0.
    model : MLPModel
        The learned model (:func:`pick_model`).
    diff_scales, fill, region
        As :func:`learned_probability` (with ``region`` the result is that part's).
    """
    prob = learned_probability(before, after, valid, bands, model, diff_scales=diff_scales, fill=fill,
                               region=region)
    surface = [i for i, n in enumerate(bands) if n not in ATMOSPHERIC_BANDS] or list(range(len(bands)))
    if region is not None:
        before, after = before[:, region[0], region[1]], after[:, region[0], region[1]]
    if surface != list(range(len(before))):  # views, not copies, when every band counts
        before, after = before[surface], after[surface]
    rms = cva_magnitude(before, after) / np.sqrt(len(surface))
    return np.where(rms > MIN_CHANGE_REFLECTANCE, prob, np.minimum(prob, model.threshold)).astype(np.float32)
