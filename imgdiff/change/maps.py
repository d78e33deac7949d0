"""The change map of two co-registered stacks or scenes: :class:`ChangeMap`, :func:`change_map`.

The after stack is normalised to the before stack, the chosen method (:data:`METHODS`) gives a
magnitude and its threshold, the mask keeps changed regions of at least the minimum mapping unit;
:func:`scene_change_map` keeps clouds, shadows and saturated pixels out first, and
:func:`unspread_saturation` keeps the warp of the after scene from spreading its saturated pixels, and
:func:`saturation_in_place` gives the warped scene whole with them in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import ndimage

from .._repr import short_repr
from ..coregister import Registration, warp
from ..errors import EmptySceneError, check_type
from ..radiometry import (
    band_saturation,
    drop_small_regions,
    excluded_mask,
    has_cloud_bands,
    normalise,
    sampled_median,
    saturation_mask,
)
from ..scene import Scene
from .classical import (
    IRMAD_MIN_PIXELS_PER_BAND,
    classical_bands,
    cva_magnitude,
    irmad,
    log_ratio_damping,
    log_ratio_magnitude,
)
from .learned import MIN_CHANGE_REFLECTANCE, learned_magnitude, pick_model
from .thresholds import _ramp_confidence, apply_mmu, chi2_threshold, em_threshold, noise_floor, otsu_threshold

#: Change methods :func:`change_map` knows, default first.
METHODS: tuple[str, ...] = ("mlp", "irmad", "cva-otsu", "cva-em", "logratio-otsu")
DEFAULT_METHOD = "mlp"
#: Smallest changed region kept by default, in square metres (4 pixels of 10 m).
DEFAULT_MMU_M2 = 400.0


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
        Confidence that a pixel changed, in [0, 1]; NaN where not assessed. For ``cva-*`` and
        ``logratio-otsu`` a ramp that is 0.5 at ``threshold``; for ``irmad`` 1 minus the pixel's
        no-change probability under the chi-square model (0.5 at the chi-square median, below the
        noise-floor threshold used on real scenes); for ``mlp`` the network's probability (its
        threshold is the model's, not 0.5).
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

    __repr__ = short_repr  # arrays as their shape and dtype


# --------------------------------------------------------------------------- the change map

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

    Histogram thresholds are kept above :func:`noise_floor` so an unchanged pair stays unflagged,
    and that floor above :data:`imgdiff.change.MIN_RELATIVE_NOISE` of the signal (CVA: of the length of the median
    before pixel's reflectance vector; log ratio: that fraction itself), so that a noise-free pair (an exact
    gain read from float files) does not flag its float rounding. IR-MAD floors its variates' noise
    the same way (:func:`imgdiff.change.irmad_noise_floor`).
    The classical methods leave out :data:`ATMOSPHERIC_BANDS` (B01 B09 B10) when ``bands`` names them.

    Parameters
    ----------
    before, after : ndarray, shape (bands, rows, cols)
        Reflectance on one grid (NaN invalid).
    valid : ndarray of bool, shape (rows, cols)
        Pixels to assess (both dates valid, clouds etc. already removed); any other dtype is read as
        nonzero = assess (a GDAL mask of 0 / 255).
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
    for label, x in (("before", before), ("after", after), ("valid", valid)):
        check_type(x, np.ndarray, f"change_map: {label}",
                   "stacks are (bands, rows, cols) arrays (Scene.stack()), the mask (rows, cols); "
                   "for two Scenes use imgdiff.compare or imgdiff.change.scene_change_map")
    method = method or DEFAULT_METHOD
    if method not in METHODS:
        raise ValueError(f"unknown change method {method!r}; choose one of {', '.join(METHODS)}")
    if before.shape != after.shape or before.shape[1:] != valid.shape:
        raise ValueError(f"stacks {before.shape} / {after.shape} and mask {valid.shape} do not match")
    # a mask of 0/255 (rasterio's read_masks) is a mask too: ~ of it would not be its complement
    valid = (valid if valid.dtype == bool else valid != 0) & np.all(np.isfinite(before), 0) & np.all(np.isfinite(after), 0)
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
        # the signal's scale: the length of the median before pixel's reflectance vector
        scale = float(np.hypot.reduce([sampled_median(b, valid) for b in before])) if len(before) else 0.0
        thr = max(thr, noise_floor(mag[valid], signal_scale=scale))
        conf = _ramp_confidence(mag, thr)
    else:  # logratio-otsu
        eps = log_ratio_damping([np.median(before[i][valid]) for i in range(before.shape[0])])
        mag = log_ratio_magnitude(before, after, eps)
        mag[~valid] = np.nan
        thr = max(otsu_threshold(mag[valid]), noise_floor(mag[valid], signal_scale=1.0))  # log ratios are relative
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
    (:func:`imgdiff.radiometry.excluded_mask`: as :func:`imgdiff.radiometry.date_masks` when the
    scenes have B02 B03 B04 B08; saturated in any band, :func:`imgdiff.radiometry.saturation_mask`,
    without them) are not assessed (``valid`` False, band 3 of ``change.tif``).

    Parameters
    ----------
    before, after : Scene
        On the same grid, with the same bands.
    valid : ndarray of bool, shape (rows, cols)
        Pixels both scenes cover.
    method : str, optional
        See :func:`change_map`.
    min_mapping_unit_m2 : float
        Changed regions smaller than this (square metres of ground) are dropped.

    Returns
    -------
    ChangeMap
        On the scenes' grid; ``details["masked"]`` counts the cloud and shadow pixels left out.
    """
    names = [n for n in before.bands if n in after.bands]
    details = {}
    excl_b, excl_a = excluded_mask(before, names), excluded_mask(after, names)  # saturation alone without the cloud bands
    if has_cloud_bands(names):
        details["masked"] = {"before_cloud_or_shadow_px": int(excl_b.sum()), "after_cloud_or_shadow_px": int(excl_a.sum())}
    valid = valid & ~excl_b & ~excl_a
    cm = change_map(before.stack(names), after.stack(names), valid, bands=names, method=method,
                    pixel_size_m=before.pixel_size_m, min_mapping_unit_m2=min_mapping_unit_m2)
    return replace(cm, details={**cm.details, **details})


def unspread_saturation(after: Scene, moved: Scene, registration: Registration,
                        **warp_options: Any) -> tuple[Scene, np.ndarray]:
    """The warped after scene for the change map, its saturated pixels not spread by the warp.

    The warp's kernel, and the cubic B-spline's prefilter over the whole band, carry a saturated
    pixel's value (6.55 reflectance at DN 65535) into the pixels around it: those a little brighter
    than the saturation level are kept out of the change map (:func:`imgdiff.radiometry.saturation_mask`),
    the rest are read as change, and their features' context moves the learned method's probability
    up to 8-12 px away. Here ``after`` is warped again with its saturated pixels as no data (the warp
    fills them with the band's median and leaves out every pixel its kernel takes them into).

    Parameters
    ----------
    after : Scene
        The after scene before the warp.
    moved : Scene
        ``after`` warped by ``registration`` (:func:`imgdiff.warp` with ``warp_options``).
    registration : Registration
    **warp_options
        Passed to :func:`imgdiff.warp` (``interpolation``), as for ``moved``.

    Returns
    -------
    scene : Scene
        ``moved`` with, where the warp reached no saturated pixel, the values warped without them
        (the same values where ``after`` holds none); its valid mask is ``moved``'s, so the cloud
        and saturation tests still see the saturated pixels where the warp put them.
    reach : ndarray of bool, shape (rows, cols)
        Pixels valid in ``moved`` that the warp took a saturated pixel into: not to be assessed.
    """
    return _unspread(after, moved, registration, saturation_mask(after), **warp_options)


def _unspread(after: Scene, moved: Scene, registration: Registration, sat: np.ndarray,
              **warp_options: Any) -> tuple[Scene, np.ndarray]:
    """:func:`unspread_saturation` with ``after``'s saturated pixels given (``sat``, its
    :func:`imgdiff.radiometry.saturation_mask`)."""
    if not sat.any():
        return moved, np.zeros(moved.shape, bool)
    holes = warp(replace(after, valid=after.valid & ~sat), registration, **warp_options)
    clean = holes.valid
    bands = {n: np.where(clean, holes.bands[n], v) for n, v in moved.bands.items()}
    return replace(moved, bands=bands), moved.valid & ~clean



def saturation_in_place(after: Scene, moved: Scene, registration: Registration, **warp_options: Any) -> Scene:
    """The warped after scene whole, each band's saturated pixels kept in place, none of their light spread.

    :func:`unspread_saturation` gives the values away from the saturated pixels (warped without
    them); it leaves the pixels the warp took a saturated pixel into (its ``reach``) as ``moved``
    has them: a saturated pixel (6.55 reflectance at DN 65535) there lights its neighbours by
    tenths of reflectance (the kernel's share of it) and the cubic B-spline rings around it. For
    a scene read as a whole (the warped target ``imgdiff coregister -o`` writes), each band's
    saturated pixels (:func:`imgdiff.radiometry.band_saturation`) are placed as the nearest-pixel
    warp places them, the pixels whose sample position falls on one taking its value, and the
    other pixels of the reach take the warp of the band whose saturated pixels hold the value of
    the nearest valid pixel that is not saturated: the warp of the content around them, without
    any of their light. As :func:`imgdiff.reproject_scene` does for a change of grid.

    Parameters
    ----------
    after : Scene
        The scene before the warp.
    moved : Scene
        ``after`` warped by ``registration`` (:func:`imgdiff.warp` with ``warp_options``).
    registration : Registration
    **warp_options
        Passed to :func:`imgdiff.warp` (``interpolation``), as for ``moved``.

    Returns
    -------
    Scene
        ``moved``'s grid, band names, metadata and valid mask. A band with saturated pixels of its
        own: on the reach, their value (reflectance) on the pixels whose sample position falls on
        one of them, the warp of the content around on the others; off the reach,
        :func:`unspread_saturation`'s values (``moved``'s bit for bit with the finite kernels; with
        the spline, ``moved``'s without the prefilter's ringing, about 1e-5 reflectance at 10 px
        from a pixel at DN 65535, none from 20 px). A band without saturated pixels of its own (or
        without any other valid pixel): ``moved``'s, bit for bit. With ``interpolation="nearest"``
        (which spreads nothing: every pixel is its sample's, saturated or not): ``moved`` itself.
    """
    if warp_options.get("interpolation") == "nearest":  # it spreads nothing: each pixel is its sample's
        return moved
    own = {name: band_saturation(after, name) & after.valid for name in after.bands}  # each band's saturated pixels
    sat = np.zeros(after.shape, bool)
    for m in own.values():
        sat |= m  # = saturation_mask(after)
    got, reach = _unspread(after, moved, registration, sat, **warp_options)
    if not reach.any():
        return got
    bands = dict(got.bands)
    filled, raw = {}, {}  # the bands with saturated pixels of their own and other valid pixels
    for name, a in after.bands.items():
        other = after.valid & ~own[name]  # the pixels whose values may stand in for the saturated ones
        if not own[name].any() or not other.any():  # none of its own light to spread: the plain warp, bit for bit
            bands[name] = moved.bands[name]
            continue
        near = ndimage.distance_transform_edt(~other, return_distances=False, return_indices=True)
        filled[name] = np.where(own[name], np.asarray(a)[tuple(near)], a).astype(np.float32)
        raw[name] = np.asarray(a, np.float32)
    if not filled:
        return replace(got, bands=bands)
    around = dict(warp(replace(after, bands=filled), registration, **warp_options).bands)  # all bands in one warp
    del filled
    nearest = warp(replace(after, bands=raw), registration, interpolation="nearest")
    for name in raw:
        on = reach & band_saturation(nearest, name) & nearest.valid  # sample position on a saturated pixel
        bands[name] = np.where(on, nearest.bands[name], np.where(reach, around.pop(name), got.bands[name])).astype(np.float32)
    return replace(got, bands=bands)
