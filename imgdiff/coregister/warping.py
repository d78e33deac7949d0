"""Warping: resample a target scene onto the reference grid, removing the estimated shift.

:func:`warp` resamples with exact coordinates: the global shift with exact kernel weights (cubic
B-spline by default), or the local model's displacement field (``registration.model``).
"""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np
from scipy import ndimage

from ..errors import check_type
from ..scene import Scene
from .model import ShiftModel
from .results import Registration

_KERNEL_RADIUS = {"nearest": 0, "linear": 1, "cubic": 2, "lanczos": 3, "spline": 2}


def _kernel(frac: float, interpolation: str) -> np.ndarray:
    """1-D taps (offsets -r+1..r) sampling a signal at position ``frac`` in [0, 1) after a base pixel."""
    r = _KERNEL_RADIUS[interpolation]
    t = np.arange(-r + 1, r + 1) - frac
    a = np.abs(t)
    if interpolation == "linear":
        k = np.clip(1 - a, 0, None)
    elif interpolation == "cubic":  # Keys, a = -0.5
        k = np.where(a <= 1, 1.5 * a**3 - 2.5 * a**2 + 1, np.where(a < 2, -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2, 0))
    else:
        k = np.where(a < r, np.sinc(t) * np.sinc(t / r), 0.0)
    return (k / k.sum()).astype(np.float64)


def _shifted_copy(a: np.ndarray, ix: int, iy: int, fill: float, dtype: type) -> np.ndarray:
    """``out[y, x] = a[y + iy, x + ix]`` for a whole-pixel shift, ``fill`` where that lies outside ``a``."""
    h, w = a.shape
    out = np.full((h, w), fill, dtype)
    ys0, ys1 = max(0, -iy), min(h, h - iy)
    xs0, xs1 = max(0, -ix), min(w, w - ix)
    if ys1 > ys0 and xs1 > xs0:
        out[ys0:ys1, xs0:xs1] = a[ys0 + iy:ys1 + iy, xs0 + ix:xs1 + ix]
    return out


def _shift_array(a: np.ndarray, dx: float, dy: float, interpolation: str, fill: float = 0.0) -> np.ndarray:
    """out[y, x] = a[y + dy, x + dx] with exact kernel weights (no table quantisation); ``fill`` outside."""
    ix, iy = math.floor(dx), math.floor(dy)
    fx, fy = dx - ix, dy - iy
    if interpolation == "nearest":
        ix, iy = round(dx), round(dy)
        fx = fy = 0.0
        kx = ky = np.ones(1)
        r = 0
    else:
        kx, ky = _kernel(fx, interpolation), _kernel(fy, interpolation)
        r = _KERNEL_RADIUS[interpolation]
    # Sample positions: out[x] = sum_j k[j] a[x + ix + j - r + 1]; float32 input is filtered in
    # float32 (rounding ~1e-7 relative, 4 x faster than float64 on a 1000 px tile)
    work = np.float32 if a.dtype == np.float32 else np.float64
    src = _shifted_copy(a, ix, iy, fill, work)
    if r == 0:
        return src.astype(a.dtype)
    # filter2D correlates: out[x] = sum_j k[j] src[x + j - anchor]; anchor = r - 1 gives offsets -r+1..r
    depth = cv2.CV_32F if work == np.float32 else cv2.CV_64F
    out = cv2.sepFilter2D(src, depth, kx.astype(work), ky.astype(work), anchor=(r - 1, r - 1),
                          borderType=cv2.BORDER_REPLICATE)
    return out.astype(a.dtype, copy=False)


def _shift_inside(a: np.ndarray, dx: float, dy: float, interpolation: str) -> np.ndarray:
    """``out[y, x] = a[y + dy, x + dx]`` of a float32 array extended by its edge pixels.

    The integer part of the shift goes into the filter's anchor (the kernel grown by zero taps
    when the shift exceeds its radius) instead of a shifted, filled copy of the array: two passes
    over it fewer (about 2 ms of 3 per 1088 px band). Where the taps lie inside the array the
    values are those of :func:`_shift_array`, bit for bit; at the edges the taps beyond it read
    the edge pixels. Other dtypes and ``"nearest"`` go to :func:`_shift_array`.
    """
    r = _KERNEL_RADIUS[interpolation]
    if r == 0 or a.dtype != np.float32:
        return _shift_array(a, dx, dy, interpolation)
    kernels = []
    for d in (dx, dy):
        i = math.floor(d)
        k = _kernel(d - i, interpolation).astype(np.float32)
        anchor = r - 1 - i  # sepFilter2D reads a[x + j - anchor] for tap j: offsets i - r + 1 .. i + r
        if anchor < 0:  # zero taps in front (they add exact zeros), the anchor on the first
            k, anchor = np.concatenate([np.zeros(-anchor, np.float32), k]), 0
        elif anchor >= len(k):
            k = np.concatenate([k, np.zeros(anchor - len(k) + 1, np.float32)])
        kernels.append((k, anchor))
    (kx, ax), (ky, ay) = kernels
    return cv2.sepFilter2D(a, cv2.CV_32F, kx, ky, anchor=(ax, ay), borderType=cv2.BORDER_REPLICATE)


def _moved_valid(valid: np.ndarray, dx: float, dy: float, interpolation: str) -> np.ndarray:
    """Valid pixels after shifting by (dx, dy): the mask shifted as a float (the linear kernel,
    outside counting as invalid), grown by the kernel's reach and kept where under 1e-6.

    When every linear tap that counts weighs more than 1e-3 (fractional shifts of 0, or between
    1e-3 and 1 - 1e-3), a tap weighing anything makes the sum at least 1e-6: the mask is then
    found with boolean operations, the same pixels as the float computation at an eighth of the
    memory (about 1 against 7.6 ms on a 1088 px window).
    """
    r = _KERNEL_RADIUS[interpolation]
    fx, fy = dx - math.floor(dx), dy - math.floor(dy)
    exact = interpolation != "nearest" and all(f == 0 or 1e-3 < f < 1 - 1e-3 for f in (fx, fy))
    if not exact:
        moved = _shift_array((~valid).astype(np.float64), dx, dy,
                             "nearest" if interpolation == "nearest" else "linear", fill=1.0)
        if r > 1:
            moved = cv2.dilate(moved, np.ones((2 * r - 1, 2 * r - 1), np.uint8), borderType=cv2.BORDER_REPLICATE)
        return moved < 1e-6
    # an invalid source pixel under out[y, x]'s first tap (outside counts as invalid)
    hit = _shifted_copy(~valid, math.floor(dx), math.floor(dy), 1, np.uint8)
    if fx > 0:  # the second tap, one column on (the last column's is itself: replicated border)
        hit[:, :-1] |= hit[:, 1:]
    if fy > 0:
        hit[:-1] |= hit[1:]
    if r > 1:
        hit = cv2.dilate(hit, np.ones((2 * r - 1, 2 * r - 1), np.uint8), borderType=cv2.BORDER_REPLICATE)
    return hit == 0


def warp(target: Scene, registration: Registration, *, interpolation: str = "spline") -> Scene:
    """Resample ``target`` onto the reference grid, removing the estimated shift.

    The output pixel centred at (x, y) takes the target value at (x + dx, y + dy),
    with the global shift, or with ``registration.model`` when it holds a local
    model. Pixels whose kernel footprint touches invalid pixels, or whose sample
    position falls outside the target, become NaN and invalid; where the footprint
    of a valid pixel at the target's edge reaches beyond it, those taps read the
    edge pixels.

    Parameters
    ----------
    target : Scene
        Scene on the reference grid.
    registration : Registration
    interpolation : {"spline", "nearest", "linear", "cubic", "lanczos"}
        Kernel: cubic B-spline with prefilter (default; the most shift-accurate,
        residual ~0.002 px), Keys cubic (a = -0.5), Lanczos-3, bilinear, nearest.

    Returns
    -------
    Scene
        Same grid, bands and metadata as ``target``.
    """
    check_type(target, Scene, "warp: target", "read it with imgdiff.read_scene(path)")
    check_type(registration, Registration, "warp: registration", "estimate it with imgdiff.coregister(reference, target)")
    if interpolation not in _KERNEL_RADIUS:
        raise ValueError(f"interpolation must be one of {', '.join(_KERNEL_RADIUS)}")
    if registration.model is not None and registration.model.degree > 0:
        return _warp_field(target, registration.model, interpolation)
    dx, dy = registration.dx, registration.dy
    if not (math.isfinite(dx) and math.isfinite(dy)):
        return target
    valid = _moved_valid(target.valid, dx, dy, interpolation)
    invalid_out = ~valid
    bands = {}
    # The fill value only matters where the target is invalid. A finite kernel never reaches it
    # from a valid output pixel (those are the pixels whose taps are all valid): 0 will do. The
    # spline's prefilter spreads every input pixel a little: it gets the band's median.
    whole = bool(target.valid.all())
    holes = interpolation == "spline" and not whole
    for name, a in target.bands.items():
        if whole:  # nothing to fill (np.where would copy the band unchanged)
            filled = np.asarray(a).astype(np.float32, copy=False)
        else:
            fill = np.nanmedian(a) if holes and np.isfinite(a).any() else 0
            filled = np.where(target.valid, a, fill).astype(np.float32, copy=False)
        if interpolation == "spline":
            out = ndimage.shift(filled, (-dy, -dx), order=3, mode="nearest", prefilter=True).astype(np.float32)
        else:
            out = _shift_inside(filled, dx, dy, interpolation)
        out[invalid_out] = np.nan
        bands[name] = out
    return replace(target, bands=bands, valid=valid)


def _warp_field(target: Scene, model: ShiftModel, interpolation: str) -> Scene:
    h, w = target.shape
    flags = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC,
             "lanczos": cv2.INTER_LANCZOS4, "spline": cv2.INTER_CUBIC}[interpolation]
    fdx, fdy = _field_maps(model, (h, w))
    mx = (np.arange(w, dtype=np.float32)[None, :] + fdx).astype(np.float32)
    my = (np.arange(h, dtype=np.float32)[:, None] + fdy).astype(np.float32)
    invalid = (~target.valid).astype(np.float32)
    inv = cv2.remap(invalid, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=1.0)
    r = _KERNEL_RADIUS[interpolation]
    if r > 1:
        inv = cv2.dilate(inv, np.ones((2 * r - 1, 2 * r - 1), np.uint8))
    valid = inv < 1e-6
    bands = {}
    for name, a in target.bands.items():
        filled = np.where(target.valid, a, np.nanmedian(a) if np.isfinite(a).any() else 0).astype(np.float32)
        if interpolation == "spline":
            out = ndimage.map_coordinates(filled, [my, mx], order=3, mode="nearest").astype(np.float32)
        else:
            out = cv2.remap(filled, mx, my, flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        out[~valid] = np.nan
        bands[name] = out
    return replace(target, bands=bands, valid=valid)


def _field_maps(model: ShiftModel, shape: tuple[int, int], step: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Model shifts at every pixel centre, evaluated every ``step`` px and interpolated bilinearly."""
    h, w = shape
    ny, nx = h // step + 2, w // step + 2
    gx, gy = np.meshgrid(np.arange(nx) * step + 0.5, np.arange(ny) * step + 0.5)
    cdx, cdy = model(gx, gy)
    mx = np.broadcast_to((np.arange(w, dtype=np.float32) / step)[None, :], (h, w)).astype(np.float32)
    my = np.broadcast_to((np.arange(h, dtype=np.float32) / step)[:, None], (h, w)).astype(np.float32)
    fdx = cv2.remap(cdx.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    fdy = cv2.remap(cdy.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return fdx, fdy
