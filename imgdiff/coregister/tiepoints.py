"""Tie points over an image: where the chips lie, and each chip's shift or why it was rejected.

:func:`chip_layout` places the chips on a regular grid (few large chips for a global estimate, a
dense grid with ``local=True``). :func:`measure` cuts them from two prepared images, starts them
with a pooled then a per-chip phase correlation, refines them (:func:`~imgdiff.coregister.chips.refine_chips`)
and gives each a rejection reason (``''`` when accepted); :func:`measure_image` does the same on
two matching images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..errors import CoregistrationError, InputError
from .chips import _SHIFT_MARGIN, phase_correlation, refine_chips
from .matching import PreparedImage, prepare

_CENTROID = True  # tie points at the information-weighted centroid of their chip
_LOCAL_SIGMA = 6.0  # local chips are weighted by a Gaussian of sigma size / _LOCAL_SIGMA
#: The largest plausible shift co-registration seeks by default, in pixels of the reference grid along
#: either axis (``max_shift`` of :func:`~imgdiff.coregister.coregister` and of the functions that call it,
#: ``--max-shift`` of the commands): a larger one is an error that gives the shift found.
MAX_SHIFT_PX = 5.0
#: The values ``--max-shift`` and the ``max_shift`` of a claims file or watch manifest accept (pixels, inclusive).
MAX_SHIFT_RANGE_PX = (0.5, 50)
#: How far (px, along either axis) the global shift may lie beyond ``max_shift``, or 3 of its
#: 1-sigma uncertainties when more: a true shift of exactly ``max_shift`` is measured on either side
#: of it (RMSE 0.006 px on the OSCD pairs, ``benchmarks/coreg.py --edges``), while one a fifth of a
#: pixel beyond it is an error.
MAX_SHIFT_TOLERANCE_PX = 0.1
#: How far (px) one chip's shift, and the pooled start, may lie beyond ``max_shift``: a chip is one
#: noisy measurement (on a cross-date pair its chips can spread over 0.3 px around a true shift of
#: ``max_shift``); the global shift decides (:data:`MAX_SHIFT_TOLERANCE_PX`).
CHIP_SHIFT_SLACK_PX = 0.5


def parse_max_shift(value: Any, where: str, error: type[InputError] = InputError) -> float:
    """The ``max_shift`` written in a file (a claims file, a watch manifest), in pixels.

    Parameters
    ----------
    value : Any
        The value as the file's YAML gave it: a number, or a numeric string.
    where : str
        The file, named in the message.
    error : type
        The :class:`~imgdiff.errors.InputError` subclass to raise (a claims file's ``ClaimsError``).

    Returns
    -------
    float
        Pixels, within :data:`MAX_SHIFT_RANGE_PX` (inclusive).

    Raises
    ------
    InputError (or ``error``)
        One line naming ``where`` and the key: not a number (YAML's ``true`` is not 1 px), not finite, or
        outside :data:`MAX_SHIFT_RANGE_PX`.
    """
    lo, hi = MAX_SHIFT_RANGE_PX
    try:
        if isinstance(value, bool):  # YAML's true / yes would be 1 px
            raise TypeError
        px = float(value)
    except (TypeError, ValueError):
        px = math.nan
    if not lo <= px <= hi:
        raise error(f"{where}: max_shift must be a number of pixels from {lo:g} to {hi:g} (the largest "
                    f"plausible shift between the scenes), not {value!r}")
    return px


@dataclass(frozen=True)
class ChipLayout:
    """Where tie-point chips lie: top-left corners (col, row) of ``size`` x ``size`` chips."""

    origins: np.ndarray  # (n, 2) int: col0, row0
    size: int

    @property
    def centers(self) -> np.ndarray:
        return self.origins.astype(np.float64) + self.size / 2.0


def chip_layout(shape: tuple[int, int], *, local: bool, spacing: int | None = None,
                chip: int | None = None, margin: int = 0, per_axis: int | None = None) -> ChipLayout:
    """Regular grid of chips inside ``shape`` keeping ``margin`` px from the edges.

    Global estimates use few large chips tiling the image (at most 64); local
    ones a denser grid (about 400 points, ``spacing`` px apart when given).
    """
    h, w = shape
    ih, iw = h - 2 * margin, w - 2 * margin
    if min(ih, iw) < 24:
        raise CoregistrationError(f"the scenes are too small to co-register ({w} x {h} px)")
    if local:
        sp = spacing or int(np.clip(math.sqrt(ih * iw / 400.0), 16, 600))
        size = chip or int(np.clip(round(sp * 1.5), 48, 192))
    else:
        size = chip or int(np.clip(min(ih, iw) // 3, 48, 128))
        sp = size
    size = int(min(size, ih, iw))
    sp = max(int(sp), 8)

    def starts(n: int, cap: int) -> np.ndarray:
        k = max(1, min(cap, int(math.ceil((n - size) / sp)) + 1))
        return np.round(np.linspace(0, n - size, k)).astype(int) + margin

    cap = per_axis or (21 if local else 8)
    rows, cols = starts(ih, cap), starts(iw, cap)
    cc, rr = np.meshgrid(cols, rows)
    return ChipLayout(np.stack([cc.ravel(), rr.ravel()], axis=1), size)


def _cut(p: PreparedImage, origins: np.ndarray, size: int, offsets: np.ndarray | None = None
         ) -> tuple[np.ndarray, np.ndarray]:
    """Chips of ``size`` px at ``origins`` (col, row in unpadded pixels) + integer ``offsets`` (dx, dy)."""
    n = len(origins)
    fo = np.zeros((n, size, size), np.float32)
    uo = np.zeros((n, size, size), bool)
    off = np.zeros((n, 2), int) if offsets is None else offsets.astype(int)
    for k in range(n):
        c0 = int(origins[k, 0] + off[k, 0] + p.pad)
        r0 = int(origins[k, 1] + off[k, 1] + p.pad)
        hh, ww = p.filtered.shape
        if c0 < 0 or r0 < 0 or c0 + size > ww or r0 + size > hh:
            continue
        fo[k] = p.filtered[r0:r0 + size, c0:c0 + size]
        uo[k] = p.usable[r0:r0 + size, c0:c0 + size]
    return fo, uo


@dataclass(frozen=True)
class _Measured:
    centers: np.ndarray
    d: np.ndarray
    sigma: np.ndarray
    ncc: np.ndarray
    reason: list[str]
    start: np.ndarray
    max_shift: float  # px, along either axis


def beyond_max_shift(d: np.ndarray, max_shift: float, tolerance: float | np.ndarray) -> np.ndarray:
    """Whether shifts lie beyond ``max_shift`` by more than ``tolerance``.

    Parameters
    ----------
    d : ndarray (n, 2) or (2,)
        Shifts (dx, dy) in pixels.
    max_shift : float
        Largest shift sought along either axis, in pixels.
    tolerance : float or ndarray (n,)
        How far beyond ``max_shift`` a shift may still be measured, in pixels.

    Returns
    -------
    ndarray of bool (n,)
        True where ``max(|dx|, |dy|) > max_shift + tolerance``.
    """
    return np.max(np.abs(np.asarray(d, np.float64).reshape(-1, 2)), axis=1) > max_shift + np.asarray(tolerance)


def measure(ref: PreparedImage, tgt: PreparedImage, layout: ChipLayout, *, max_shift: float,
            local: bool, min_correlation: float = 0.25, min_valid: float = 0.4,
            max_sigma: float = 0.15) -> _Measured:
    """Shift of every chip of ``layout``, with a rejection reason ('' when accepted) per chip.

    A chip more than :data:`CHIP_SHIFT_SLACK_PX` beyond ``max_shift`` along either axis is rejected
    as ``"beyond max_shift"``; whether the shift itself is beyond it is decided on all the chips
    (:func:`imgdiff.coregister.registration.estimate`).
    """
    m = _SHIFT_MARGIN
    size = layout.size
    win = size + 2 * m
    origins = layout.origins - m  # windows include the margin
    n = len(origins)
    rf, ru = _cut(ref, origins, win)
    tf, tu = _cut(tgt, origins, win)
    usable = (ru & tu).mean(axis=(1, 2))
    energy = np.sqrt(np.sum(rf.astype(np.float64) ** 2, axis=(1, 2)) / np.maximum(ru.sum(axis=(1, 2)), 1))
    good = usable >= min_valid
    if not good.any():
        raise CoregistrationError(
            f"too little valid overlap to co-register: no chip of {size} px has {min_valid:.0%} usable pixels "
            "(no-data, clouds or masked areas cover the scenes)")
    g, sharp = phase_correlation(rf[good], tf[good], pooled=True)
    g0 = g[0]
    if beyond_max_shift(g0, max_shift, CHIP_SHIFT_SLACK_PX)[0]:
        raise CoregistrationError(
            f"the strongest correlation is at a shift of ({g0[0]:.1f}, {g0[1]:.1f}) px, beyond max_shift="
            f"{max_shift:g} px; if a shift this large is plausible raise max_shift (--max-shift), else the "
            "scenes may not show the same place or lack texture")
    gi = np.round(g0).astype(int)
    tf2, tu2 = _cut(tgt, origins, win, np.tile(gi, (n, 1)))
    pc, psharp = phase_correlation(rf, tf2)
    start = np.tile(g0.astype(np.float64), (n, 1))
    use_pc = (psharp > 8) & (np.max(np.abs(pc), axis=1) <= (2.5 if local else 1.0))
    start[use_pc] = gi + pc[use_pc]
    si = np.round(start).astype(int)
    tf3, tu3 = _cut(tgt, origins, win, si)
    res = refine_chips(rf, tf3, ru, tu3, start - si, margin=m,
                       spatial_sigma=(size / _LOCAL_SIGMA) if local else None)
    d = si + res.d
    reason = [""] * n
    med_energy = np.median(energy[good]) if good.any() else 0.0
    beyond = beyond_max_shift(d, max_shift, CHIP_SHIFT_SLACK_PX)
    for k in range(n):
        if res.valid_frac[k] < min_valid:
            reason[k] = "masked"
        elif energy[k] < 0.05 * med_energy or not np.isfinite(res.sigma[k]):
            reason[k] = "no texture"
        elif res.ncc[k] < min_correlation:
            reason[k] = "low correlation"
        elif not res.converged[k] or np.max(np.abs(d[k] - start[k])) > 2.0:
            reason[k] = "no convergence"
        elif res.sigma[k] > max_sigma:
            reason[k] = "uncertain"
        elif beyond[k]:
            reason[k] = "beyond max_shift"
    centers = layout.centers + (res.offset if local and _CENTROID else 0.0)
    return _Measured(centers, d, res.sigma, res.ncc, reason, start, float(max_shift))


def measure_image(ref: np.ndarray, ref_valid: np.ndarray, tgt: np.ndarray, tgt_valid: np.ndarray,
                  layout: ChipLayout, *, max_shift: float, local: bool, origin: tuple[int, int] = (0, 0),
                  min_valid: float = 0.4) -> _Measured:
    """Measure the chips of ``layout`` (origins in full-image pixels) on images starting at ``origin`` (col, row)."""
    pad = _SHIFT_MARGIN + int(math.ceil(max_shift)) + 4
    pr, pt = prepare(ref, ref_valid, pad), prepare(tgt, tgt_valid, pad)
    lay = ChipLayout(layout.origins - np.asarray(origin), layout.size)
    meas = measure(pr, pt, lay, max_shift=max_shift, local=local, min_valid=min_valid)
    return replace(meas, centers=meas.centers + np.asarray(origin, np.float64))

