"""The before/after pipeline: read, align, co-register, difference."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .change import ChangeMap, scene_change_map
from .coregister import Registration, coregister, warp
from .errors import CoregistrationError, check_type
from .grid import AlignedPair, Grid, align
from .io.read import BBox, harmonise_scaling, read_scene
from .scene import Scene


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

    Returns
    -------
    CompareResult
    """
    for label, x in (("before", before), ("after", after)):
        check_type(x, (Scene, str, os.PathLike), f"compare: {label}", "give a Scene or the path of a scene")
        if bbox is not None:  # a Scene would silently be compared whole
            check_type(x, (str, os.PathLike), f"compare: {label} (with bbox)",
                       "bbox crops scenes read from paths; read a window with imgdiff.read_scene(path, bbox=bbox)")
    step = on_step or (lambda name: None)
    step("read")
    b, a = harmonise_scaling(_as_scene(before, bands, bbox), _as_scene(after, bands, bbox))
    step("align")
    pair = align(b, a, grid=grid, bands=bands)
    step("co-register")
    if register:
        try:
            reg = coregister(pair.before, pair.after, mask=pair.overlap)
            moved = warp(pair.after, reg)
        except CoregistrationError as e:  # keep going unregistered; the report says why
            reg = Registration(0.0, 0.0, 0.0, 0.0, float("nan"), 0.0, method="none", notes=(f"failed: {e}",))
            moved = pair.after
    else:
        reg = Registration(0.0, 0.0, 0.0, 0.0, float("nan"), 0.0, method="none")
        moved = pair.after
    overlap = pair.before.valid & moved.valid
    pair = AlignedPair(pair.before, moved, pair.grid, overlap)
    step("change")
    cmap = scene_change_map(pair.before, moved, overlap, method=method)
    return CompareResult(pair=pair, registration=reg, change=cmap)
