"""The before/after pipeline: read, align, co-register, difference."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .change import ChangeMap, scene_change_map, unspread_saturation
from .clouds import pair_clouds
from .coregister import MAX_SHIFT_PX, Registration, coregister, warp
from .errors import CoregistrationError, ImgdiffError, check_type
from .grid import AlignedPair, Grid, align
from .io.read import BBox, harmonise_scaling, read_scene
from .scene import Scene, check_band_list


@dataclass(frozen=True)
class CompareResult:
    """Everything :func:`compare` found.

    Attributes
    ----------
    pair : AlignedPair
        Before and after on the common grid, the after scene already warped by
        ``registration``; ``pair.overlap`` is where both are valid after warping.
    registration : Registration
        Shift of the after scene relative to the before scene, before warping.
    change : ChangeMap
        Change magnitude and mask on ``pair.grid``.
    """

    pair: AlignedPair
    registration: Registration
    change: ChangeMap

    @property
    def grid(self) -> Grid:
        return self.pair.grid

    def statistics(self) -> dict:
        """Change statistics: pixel counts, fractions and areas (m^2) of the grid."""
        sx, sy = self.grid.pixel_size_m
        valid = int(self.change.valid.sum())
        changed = int(self.change.mask.sum())
        mag = self.change.magnitude[self.change.valid]
        return {
            "pixels": int(self.change.valid.size),
            "valid_pixels": valid,
            "valid_fraction": valid / self.change.valid.size,
            "changed_pixels": changed,
            "changed_fraction": changed / valid if valid else 0.0,
            "changed_area_m2": changed * sx * sy,
            "threshold": self.change.threshold,
            "method": self.change.method,
            "magnitude_mean": float(np.mean(mag)) if mag.size else None,
            "magnitude_p99": float(np.percentile(mag, 99)) if mag.size else None,
        }


#: :func:`register_pair` measures again without the clouds when the first estimate is less reliable
#: than this (two consistent tie points or fewer), or fails.
CLOUD_RETRY_RELIABILITY = 0.5
#: Pixels around the clouds and shadows of either date also left out of that second estimate (their
#: hazy rims), and the least fraction of a chip's pixels it needs clear (its precision still decides).
CLOUD_RETRY_MARGIN_PX = 3
CLOUD_RETRY_CHIP_FRACTION = 0.1


def register_pair(pair: AlignedPair, **options: Any) -> Registration:
    """The shift of a pair's after scene, measured without clouds where they get in the way.

    :func:`imgdiff.coregister` on the pixels valid on both dates; when that fails or rests on
    few tie points (reliability below :data:`CLOUD_RETRY_RELIABILITY`), it is measured again on
    the pixels clear of clouds and cloud shadows on both dates
    (:func:`imgdiff.clouds.pair_clouds`, grown by :data:`CLOUD_RETRY_MARGIN_PX` pixels), and the
    more reliable of the two is kept. A cloud over much of a small scene otherwise takes most tie
    points with it: chips that hold cloud on one date only do not correlate (measured on the
    outside claim cases, ``benchmarks/claims_outside_r3.py``: of 233 scenes of 128 x 128 px to
    whole ports, two failed and one was 0.67 px off, all three under a cloud over a third to
    two thirds of the scene; masked, all three within 0.12 px of the true shift).

    Parameters
    ----------
    pair : AlignedPair
        Before and after on one grid (:func:`imgdiff.grid.align`).
    **options
        Passed to :func:`imgdiff.coregister` (``bands``, ``local``, ``max_shift``, ``spacing``, ...).

    Raises
    ------
    CoregistrationError
        When neither measurement succeeds (the first one's message).
    """
    try:
        first = coregister(pair.before, pair.after, mask=pair.overlap, **options)
    except CoregistrationError as e:
        return retry_without_clouds(pair, None, e, **options)
    return retry_without_clouds(pair, first, None, **options)


def retry_without_clouds(pair: AlignedPair, first: Registration | None, error: CoregistrationError | None,
                         **options: Any) -> Registration:
    """The second half of :func:`register_pair`: ``first`` (the plain estimate, or None when it
    failed with ``error``) when reliable, else the more reliable of it and the estimate without
    the clouds and shadows of both dates.

    Scenes whose bands the cloud tests cannot read (:class:`imgdiff.errors.ImgdiffError`) keep ``first``.
    """
    from scipy import ndimage as ndi

    if first is not None and first.reliability >= CLOUD_RETRY_RELIABILITY:
        return first
    try:
        clouds = pair_clouds(pair.before, pair.after)  # without B08: the two-date tests alone
    except ImgdiffError:  # bands the cloud tests cannot read
        clouds = None
    if clouds is not None and (clouds[0].any() or clouds[1].any()):
        clear = pair.overlap & ~ndi.binary_dilation(clouds[0] | clouds[1], iterations=CLOUD_RETRY_MARGIN_PX)
        try:
            second = coregister(pair.before, pair.after, mask=clear,
                                **{"min_chip_fraction": CLOUD_RETRY_CHIP_FRACTION, **options})
        except CoregistrationError:
            second = None
        if second is not None and (first is None or second.reliability > first.reliability):
            left_out = 1 - clear.sum() / max(pair.overlap.sum(), 1)
            return replace(second, notes=(*second.notes, f"measured without the clouds and shadows of both "
                                                         f"dates ({left_out:.0%} of the overlap)"))
    return _first_or_raise(first, error)


def _first_or_raise(first: Registration | None, error: CoregistrationError | None) -> Registration:
    if first is None:
        assert error is not None
        raise error
    return first


def register_paths(reference: str | Path, target: str | Path, *, bands: Sequence[str] | None = None,
                   full_read_pixels: int = 4096 * 4096, **options: Any) -> Registration:
    """:func:`imgdiff.coregister.coregister_paths`, measured again without clouds as
    :func:`register_pair` does when it fails or is unreliable.

    The second measurement reads the bands of B02 B03 B04 B08 B11 that both scenes have (the cloud
    tests) and ``bands`` on the reference grid, so it is made only for scenes of at most
    ``full_read_pixels`` pixels (whole tiles keep the first estimate). ``bands`` and ``options``
    (``local``, ``max_shift``, ``spacing``, ``degree``) go to both measurements.

    Raises
    ------
    CoregistrationError
        When neither measurement succeeds (the first one's message).
    """
    import rasterio

    from .coregister import coregister_paths
    from .io.read import find_band_sources

    first: Registration | None = None
    error: CoregistrationError | None = None
    try:
        first = coregister_paths(reference, target, bands=bands, full_read_pixels=full_read_pixels, **options)
    except CoregistrationError as e:
        error = e
    if first is not None and first.reliability >= CLOUD_RETRY_RELIABILITY:
        return first
    sources = {s.name: s for s in find_band_sources(reference)}
    have = set(sources) & {s.name for s in find_band_sources(target)}
    cloud_bands = [b for b in ("B02", "B03", "B04", "B08", "B11") if b in have]
    if not cloud_bands:
        return _first_or_raise(first, error)
    need = cloud_bands + [b for b in bands or () if b not in cloud_bands]  # and the bands asked to match on
    with rasterio.open(sources[cloud_bands[0]].path) as ds:
        if ds.width * ds.height > full_read_pixels:
            return _first_or_raise(first, error)
    pair = align(read_scene(reference, bands=need), read_scene(target, bands=need), bands=need)
    return retry_without_clouds(pair, first, error, bands=bands, **options)


def _as_scene(x: Scene | str | Path, bands: Sequence[str] | None, bbox: BBox | None) -> Scene:
    return x if isinstance(x, Scene) else read_scene(x, bands=bands, bbox=bbox)


def compare(
    before: Scene | str | Path,
    after: Scene | str | Path,
    *,
    bands: Sequence[str] | None = None,
    bbox: BBox | None = None,
    grid: Grid | None = None,
    register: bool = True,
    on_step: Callable[[str], None] | None = None,
    method: str | None = None,
    max_shift: float = MAX_SHIFT_PX,
) -> CompareResult:
    """Compare two acquisitions of one place.

    Parameters
    ----------
    before, after : Scene or path
        Scenes, or anything :func:`imgdiff.read_scene` reads.
    bands : sequence of str, optional
        Bands to use; default all bands both scenes share.
    bbox : (west, south, east, north), optional
        Lon/lat window to read; only with paths (a Scene given with it is an ArgumentTypeError).
    grid : Grid, optional
        Common grid; default the before scene's grid.
    register : bool
        Estimate and remove the global sub-pixel shift of the after scene.
    on_step : callable, optional
        Called with the name of each step as it starts (for progress bars).
    method : str, optional
        Change method (see :data:`imgdiff.change.METHODS`); default the best one on OSCD.
    max_shift : float
        Largest plausible shift of the after scene, in pixels of the common grid along either
        axis (:func:`imgdiff.coregister`). A shift beyond it, like any failed co-registration,
        leaves the pair compared unregistered, the registration's ``notes`` saying why.

    Returns
    -------
    CompareResult
    """
    for label, x in (("before", before), ("after", after)):
        check_type(x, (Scene, str, os.PathLike), f"compare: {label}", "give a Scene or the path of a scene")
        if bbox is not None:  # a Scene would silently be compared whole
            check_type(x, (str, os.PathLike), f"compare: {label} (with bbox)",
                       "bbox crops scenes read from paths; read a window with imgdiff.read_scene(path, bbox=bbox)")
    check_band_list(bands, "compare: bands")
    step = on_step or (lambda name: None)
    step("read")
    b, a = harmonise_scaling(_as_scene(before, bands, bbox), _as_scene(after, bands, bbox))
    step("align")
    pair = align(b, a, grid=grid, bands=bands)
    step("co-register")
    if register:
        try:
            reg = register_pair(pair, max_shift=max_shift)
            moved = warp(pair.after, reg)
        except CoregistrationError as e:  # keep going unregistered; the report says why
            reg = Registration(0.0, 0.0, 0.0, 0.0, float("nan"), 0.0, method="none", notes=(f"failed: {e}",),
                               max_shift_px=max_shift)
            moved = pair.after
    else:
        reg = Registration(0.0, 0.0, 0.0, 0.0, float("nan"), 0.0, method="none")
        moved = pair.after
    overlap = pair.before.valid & moved.valid
    # the change map reads the after scene warped without its saturated pixels (the warp would spread them)
    changed_after, reach = (moved, None) if moved is pair.after else unspread_saturation(pair.after, moved, reg)
    pair = AlignedPair(pair.before, moved, pair.grid, overlap)
    step("change")
    cmap = scene_change_map(pair.before, changed_after, overlap if reach is None else overlap & ~reach, method=method)
    return CompareResult(pair=pair, registration=reg, change=cmap)
