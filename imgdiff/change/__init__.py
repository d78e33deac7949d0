"""Pixel change between two co-registered scenes: magnitude, threshold, mask, confidence.

Pure functions over arrays. Stacks are ``(bands, rows, cols)`` float32 reflectance on
one grid (NaN invalid); masks are ``(rows, cols)`` bool. The building blocks
(difference, log ratio, change vector analysis, IR-MAD with its chi-square statistic,
Otsu / chi-square / expectation-maximisation thresholds, a minimum mapping unit) are
combined by :func:`change_map`, whose default method is a small learned per-pixel
classifier (``"mlp"``) shipped with the package (see ``training/train_change.py``).

Submodules
----------
classical
    Band differences, log ratios, change vector analysis (:func:`cva`) and IR-MAD (:func:`irmad`,
    :func:`mad_variates`, :func:`irmad_noise_floor`); :data:`ATMOSPHERIC_BANDS` and :func:`classical_bands`.
thresholds
    Otsu, chi-square and EM thresholds, :func:`noise_floor` (at least :data:`MIN_RELATIVE_NOISE` of the
    signal), the minimum mapping unit (:func:`apply_mmu`).
features
    Per-pixel features of the learned method (:func:`change_features`, :func:`feature_planes`,
    :func:`difference_scales`).
mlp
    :class:`MLPModel`: the learned classifier, its ``.npz`` format and its ONNX Runtime path.
learned
    The learned method on a pair: the shipped models (:func:`pick_model`), :func:`learned_probability`,
    :func:`learned_magnitude`.
maps
    :class:`ChangeMap`, :data:`METHODS`, :func:`change_map`, :func:`scene_change_map` and
    :func:`unspread_saturation` (the warped after scene without its saturated pixels spread) and
    :func:`saturation_in_place` (the warped scene whole, its saturated pixels in place).
"""

from __future__ import annotations

from .classical import (
    ATMOSPHERIC_BANDS,
    CVA,
    IRMAD,
    IRMAD_MIN_PIXELS_PER_BAND,
    classical_bands,
    cva,
    cva_magnitude,
    difference,
    irmad,
    irmad_noise_floor,
    log_ratio,
    log_ratio_damping,
    log_ratio_magnitude,
    mad_variates,
)
from .features import FEATURE_SETS, change_features, difference_scales, feature_planes
from .features import _blur as _blur  # private, re-exported: used by training/train_change.py
from .learned import MIN_CHANGE_REFLECTANCE, MODEL_DIR, learned_magnitude, learned_probability, pick_model
from .maps import (
    DEFAULT_METHOD,
    DEFAULT_MMU_M2,
    METHODS,
    ChangeMap,
    change_map,
    saturation_in_place,
    scene_change_map,
    unspread_saturation,
)
from .mlp import ONNX_CHUNK, ONNX_DIGEST_KEY, MLPModel
from .mlp import _export_session as _export_session  # private, re-exported: used by tests/test_change.py
from .thresholds import MIN_RELATIVE_NOISE, apply_mmu, chi2_threshold, em_threshold, noise_floor, otsu_threshold

__all__ = [
    "ATMOSPHERIC_BANDS", "CVA", "ChangeMap", "DEFAULT_METHOD", "DEFAULT_MMU_M2", "FEATURE_SETS", "IRMAD",
    "IRMAD_MIN_PIXELS_PER_BAND", "METHODS", "MIN_CHANGE_REFLECTANCE", "MIN_RELATIVE_NOISE", "MLPModel", "MODEL_DIR",
    "ONNX_CHUNK", "ONNX_DIGEST_KEY", "apply_mmu", "change_features", "change_map", "chi2_threshold",
    "classical_bands", "cva", "cva_magnitude", "difference", "difference_scales", "em_threshold", "feature_planes",
    "irmad", "irmad_noise_floor", "learned_magnitude", "learned_probability", "log_ratio", "log_ratio_damping",
    "log_ratio_magnitude", "mad_variates", "noise_floor", "otsu_threshold", "pick_model", "saturation_in_place", "scene_change_map",
    "unspread_saturation",
]
