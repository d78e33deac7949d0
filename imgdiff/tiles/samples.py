"""What a tiled comparison estimates once, on sample windows, before its passes over the tiles.

:func:`estimate_on_samples` measures the after scene's shift, its radiometric normalisation and
the statistics of the change methods on a few windows (:func:`sample_boxes`, :func:`grid_boxes`)
and returns them as a :class:`SampleEstimate`.

Pixel coordinates follow rasterio: x = column, y = row, pixel (0, 0) spans [0, 1) x [0, 1).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..change import unspread_saturation
from ..coregister import MAX_SHIFT_PX, Registration, coregister, warp
from ..errors import CoregistrationError, EmptySceneError, NoOverlapError
from ..grid import AlignedPair, Grid, align
from ..radiometry import excluded_mask
from ..scene import Scene
from .methods import magnitude_bound
from .reading import StripReader
from .tiling import R, T, map_bounded, one_thread_per_worker

#: Resampling kernel of the shift removal: OpenCV's Keys cubic (multi-threaded, residual ~0.01 px)
#: rather than the slower spline of the whole-scene path.
WARP_KERNEL = "cubic"
#: Radiometric statistics of a large raster come from a RADIOMETRY_GRID x RADIOMETRY_GRID grid of
#: windows of RADIOMETRY_CHIP pixels: a near-uniform spatial sample.
RADIOMETRY_GRID = 8
RADIOMETRY_CHIP = 128


@dataclass(frozen=True)
class SampleEstimate:
    """What a tiled comparison estimates once, on sample windows, before the tile passes.

    Attributes
    ----------
    registration : Registration
        Shift of the after scene (median over reliable windows), pixels and metres.
    gain, offset : tuple of float
        Relative radiometric normalisation of the after scene, per band in band order:
        ``after_normalised = gain * after + offset`` (:func:`imgdiff.radiometry.normalise`).
    magnitude_max : float
        Upper edge of the magnitude histogram (units of the change method, :func:`magnitude_bound`).
    chips : int
        Sample windows that held valid pixels of both scenes; ``chips_registered`` of them
        gave a shift.
    chips_registered : int
    log_ratio_eps : tuple of float
        Per-band damping of the log ratios of the bands the classical methods use
        (:func:`imgdiff.change.log_ratio_damping` of the before bands' medians).
    irmad_map : (wa, wb, c0), optional
        IR-MAD fitted on the samples (:attr:`imgdiff.change.IRMAD.linear_map`), applied tile by
        tile by :func:`imgdiff.change.mad_variates`.
    diff_scales : tuple of float
        Per band (band order), the robust spread of the normalised after-minus-before
        reflectance over the samples' clear pixels (:func:`imgdiff.change.difference_scales`):
        the ``mlp`` features of every tile are scaled by it, as a whole-scene comparison
        scales them by the scene's own spread.
    fill : (tuple of float, tuple of float)
        Per band, the medians of the before and the normalised after reflectance over the
        samples' clear pixels: the values the ``mlp`` features of every tile give to pixels
        they cannot use (a whole-scene comparison takes the scene's medians).
    """

    registration: Registration
    gain: tuple[float, ...]
    offset: tuple[float, ...]
    magnitude_max: float
    chips: int
    chips_registered: int
    log_ratio_eps: tuple[float, ...] = ()
    irmad_map: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    diff_scales: tuple[float, ...] = ()
    fill: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    def apply(self, after: np.ndarray, *, copy: bool = True) -> np.ndarray:
        """Normalise an after stack (bands, rows, cols) to the before scene (in place with
        ``copy=False`` when ``after`` is float32)."""
        out = np.array(after, np.float32) if copy else np.asarray(after, np.float32)
        out *= np.asarray(self.gain, np.float32)[:, None, None]
        out += np.asarray(self.offset, np.float32)[:, None, None]
        return out


def sample_boxes(shape: tuple[int, int], chip: int = 512, *,
                 blocks: tuple[int, int, int, int] | None = None) -> list[tuple[int, int, int, int]]:
    """Five chip boxes (x0, y0, x1, y1): the centre of the grid and the centres of its quadrants
    (each moved into one source block when ``blocks`` is given, as :func:`grid_boxes` does)."""
    return _boxes_at(shape, chip, ((0.5, 0.5), (0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)), blocks)


def _boxes_at(shape: tuple[int, int], chip: int, centres: Iterable[tuple[float, float]],
              blocks: tuple[int, int, int, int] | None) -> list[tuple[int, int, int, int]]:
    """Chip boxes centred at fractions (fx, fy) of the grid's width and height, within the grid, each
    moved within one source block (``blocks`` as in :func:`grid_boxes`); repeated boxes once."""
    h, w = shape
    cw, ch = min(chip, w), min(chip, h)
    boxes = []
    for fx, fy in centres:
        x0 = int(np.clip(round(fx * w - cw / 2), 0, w - cw))
        y0 = int(np.clip(round(fy * h - ch / 2), 0, h - ch))
        if blocks is not None:
            x0, y0 = _snap_to_block(x0, cw, blocks[0], blocks[2], w), _snap_to_block(y0, ch, blocks[1], blocks[3], h)
        boxes.append((x0, y0, x0 + cw, y0 + ch))
    return list(dict.fromkeys(boxes))


def _snap_to_block(v0: int, size: int, block: int, offset: int, limit: int) -> int:
    """Start of a ``size``-pixel run moved (by less than ``size``) inside the block that holds its
    centre; blocks start at ``k * block - offset``. Unchanged when ``size`` exceeds ``block``."""
    if size > block:
        return v0
    start = ((v0 + size // 2 + offset) // block) * block - offset
    return int(np.clip(np.clip(v0, start, start + block - size), 0, limit - size))


def grid_boxes(shape: tuple[int, int], chip: int, per_side: int, *,
               blocks: tuple[int, int, int, int] | None = None) -> list[tuple[int, int, int, int]]:
    """``per_side`` x ``per_side`` chip boxes (x0, y0, x1, y1) centred in equal cells of a grid.

    ``blocks`` = (block width, block height, column offset, row offset), all in grid pixels: the
    source files' internal blocks span ``[k * width - offset, (k + 1) * width - offset)``. Each
    box is then moved (by less than a chip) to lie within the block holding its centre, so that
    reading it decodes one block per band instead of up to four.
    """
    f = (np.arange(per_side) + 0.5) / per_side
    return _boxes_at(shape, chip, ((fx, fy) for fy in f for fx in f), blocks)


def clear_stacks(before: Scene, after: Scene, registration: Registration | None,
                 names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Before and after stacks of a window (a sample window, a tile's read window), the after one
    warped by ``registration``, and the pixels its statistics may use.

    Parameters
    ----------
    before, after : Scene
        The window of both dates on one grid.
    registration : Registration or None
        Shift of the after date (pixels of the window's grid), removed with :data:`WARP_KERNEL`;
        None: not warped.
    names : sequence of str
        Bands, in stack order.

    Returns
    -------
    before, after : ndarray of float32, shape (bands, rows, cols)
        Reflectance on the window's grid.
    clear : ndarray of bool, shape (rows, cols)
        Valid on both dates, cloud, shadow and saturation on neither, and no saturated pixel in the
        warp's kernel (:func:`imgdiff.change.unspread_saturation`: the after stack holds the values
        warped without the saturated pixels, so none of their light reaches a clear pixel).
    """
    moved = after if registration is None else warp(after, registration, interpolation=WARP_KERNEL)
    ok = before.valid & moved.valid & ~excluded_mask(before) & ~excluded_mask(moved)
    if registration is not None:  # saturated pixels not spread by the warp (as imgdiff.compare)
        moved, reach = unspread_saturation(after, moved, registration, interpolation=WARP_KERNEL)
        ok &= ~reach
    return before.stack(names), moved.stack(names), ok


def _read_pair(pool: ThreadPoolExecutor, rb: StripReader, ra: StripReader,
               box: tuple[int, int, int, int]) -> tuple[Scene | None, Scene | None]:
    """One window of the before (``rb``, on ``pool``'s thread) and after (``ra``, this thread) scenes."""
    fb = pool.submit(rb.read, box)
    a = ra.read(box)
    return fb.result(), a


def _map_in_order(fn: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """``[fn(x) for x in items]`` on ``workers`` threads (one OpenCV/BLAS thread each), in input order."""
    indexed = list(enumerate(items))
    with one_thread_per_worker(workers):
        done = list(map_bounded(lambda ix: (ix[0], fn(ix[1])), indexed, workers))
    return [r for _, r in sorted(done, key=lambda d: d[0])]


def estimate_on_samples(
    before: str | Path,
    after: str | Path,
    grid: Grid,
    names: Sequence[str],
    *,
    register: bool = True,
    method: str = "cva-otsu",
    chip: int = 512,
    workers: int = 2,
    probes: tuple[Scene | None, Scene | None] = (None, None),
    max_shift: float = MAX_SHIFT_PX,
) -> SampleEstimate:
    """Estimate the shift, the radiometric normalisation and the magnitude range on sample windows.

    The shift is the median of the windows' phase-correlation shifts with reliability
    >= 0.5 (the most reliable window if none reaches it); the normalisation is fitted on
    the windows' common clear pixels after warping. Windows are co-registered and masked
    on ``workers`` threads. ``probes`` are the two dates' probe windows whose scaling the readers
    use (:func:`imgdiff.tiles.reading.pair_probes`; default each date's own). ``max_shift`` is the largest
    plausible shift, in pixels of ``grid`` along either axis (:func:`imgdiff.coregister`).

    Raises
    ------
    EmptySceneError
        No window holds valid pixels of both scenes.
    CoregistrationError
        ``register`` and no window could be co-registered.
    """
    from ..radiometry import normalise

    shifts = []
    problems = []
    readers = ExitStack()  # the files stay open for all sample windows (blocks shared by windows decoded once)
    rb = readers.enter_context(StripReader(before, grid, names, sequential=False, probe=probes[0]))
    ra = readers.enter_context(StripReader(after, grid, names, sequential=False, probe=probes[1]))
    # the two scenes' windows are decoded on two threads (one file handle each)
    pool = readers.enter_context(ThreadPoolExecutor(max_workers=1, thread_name_prefix="imgdiff-sample"))

    def aligned(boxes: Sequence[tuple[int, int, int, int]]) -> list[AlignedPair]:
        """The windows of both scenes that hold valid pixels of each, aligned (window order)."""
        out = []
        for box in boxes:
            b, a = _read_pair(pool, rb, ra, box)
            if b is None or a is None:
                continue
            try:
                out.append(align(b, a, grid=Grid.of(b), bands=names))
            except NoOverlapError:
                continue
        return out

    pairs = aligned(sample_boxes(grid.shape, chip, blocks=rb.blocks()))

    def shift_of(pair: AlignedPair) -> Registration | CoregistrationError:
        try:
            return coregister(pair.before, pair.after, mask=pair.overlap, max_shift=max_shift)
        except CoregistrationError as e:
            return e

    if register:  # the windows on two threads, results in window order
        for r in _map_in_order(shift_of, pairs, workers):
            if isinstance(r, CoregistrationError):
                problems.append(str(r))
            else:
                shifts.append(r)
    if not pairs:
        raise EmptySceneError(f"{before} / {after}: no sample window holds valid pixels of both scenes")
    if register:
        if not shifts:
            raise CoregistrationError(
                f"no sample window of {after} could be co-registered ({'; '.join(sorted(set(problems)))}); "
                "pass --no-coregister to compare without shift correction"
            )
        good = [r for r in shifts if r.reliability >= 0.5] or [max(shifts, key=lambda r: r.reliability)]
        dx = float(np.median([r.dx for r in good]))
        dy = float(np.median([r.dy for r in good]))
        spread = float(np.hypot(np.std([r.dx for r in good]), np.std([r.dy for r in good])))
        sx, sy = grid.pixel_size_m
        reg = Registration(
            dx=dx, dy=dy, dx_m=dx * sx * np.sign(grid.transform.a), dy_m=dy * sy * np.sign(grid.transform.e),
            uncertainty_px=max(spread, float(np.median([r.uncertainty_px for r in good]))),
            reliability=float(np.median([r.reliability for r in good])),
            method=f"phase-correlation, median of {len(good)} sample windows", max_shift_px=max_shift,
        )
    else:
        reg = Registration(0.0, 0.0, 0.0, 0.0, float("nan"), 0.0, method="none")
    # Radiometry (normalisation, IR-MAD) of a large raster from a grid of small windows
    # (equal weight everywhere), so that the statistics represent the whole raster.
    if grid.width * grid.height > 4 * chip * chip:
        pairs = aligned(grid_boxes(grid.shape, RADIOMETRY_CHIP, RADIOMETRY_GRID, blocks=rb.blocks()))
    readers.close()  # (on the errors raised above the files close with the readers)

    stacks = _map_in_order(lambda p: clear_stacks(p.before, p.after, reg if register else None, names), pairs, workers)
    bv = np.concatenate([bs[:, ok] for bs, _, ok in stacks], axis=1)[:, None, :]
    av = np.concatenate([as_[:, ok] for _, as_, ok in stacks], axis=1)[:, None, :]
    if bv.shape[2] == 0:
        raise EmptySceneError(f"{before} / {after}: the sample windows share no clear valid pixel")
    norm = normalise(bv, av, np.ones(bv.shape[1:], bool))
    from ..change import classical_bands, difference_scales, irmad, log_ratio_damping

    surface = classical_bands(names)  # the bands of the classical methods, as in imgdiff.change
    med_before = tuple(float(np.median(v)) for v in bv)  # per band, over the samples' clear pixels
    eps = log_ratio_damping([med_before[i] for i in surface])  # as imgdiff.change: from the before date
    est = SampleEstimate(reg, tuple(float(g) for g in norm.gain), tuple(float(o) for o in norm.offset),
                         magnitude_bound(method, len(names)), len(pairs), len(shifts), tuple(float(e) for e in eps))
    if method == "mlp":
        an = est.apply(av)
        est = replace(est, diff_scales=difference_scales(bv, an, np.ones(bv.shape[1:], bool)),
                      fill=(med_before, tuple(float(np.median(v)) for v in an)))
    if method == "irmad":
        keep = np.arange(bv.shape[2])
        if keep.size > 200_000:  # as many pixels as irmad() itself samples
            keep = np.sort(np.random.default_rng(0).choice(keep, 200_000, replace=False))
        fit = irmad(bv[surface][:, :, keep], est.apply(av[:, :, keep])[surface], np.ones((1, keep.size), bool))
        est = replace(est, irmad_map=fit.linear_map)  # applied tile by tile by imgdiff.change.mad_variates
    return est
