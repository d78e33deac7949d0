"""Co-registration of two scenes on one grid (:func:`coregister`): the global shift and its reliability.

The tie points of :func:`~imgdiff.coregister.tiepoints.measure_image` are checked against a robust
trend (outliers rejected); the global shift is the precision-weighted mean of the accepted chips
(with a between-chip variance term), with its uncertainty, a reliability and notes. A shift
beyond ``max_shift`` (most chips beyond it, or the global shift beyond it by more than its error)
is an error that says so and names the option. With ``local=True`` the displacement model is a
robust polynomial plus a smoothed thin-plate-spline correction of its residuals
(:mod:`imgdiff.coregister.model`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from ..errors import CoregistrationError, check_type
from ..scene import Scene
from .matching import matching_image, pick_bands
from .model import add_residual_grid, fit_model
from .results import REJECT_REASONS, Registration, TiePoint
from .tiepoints import MAX_SHIFT_PX, MAX_SHIFT_TOLERANCE_PX, _Measured, beyond_max_shift, chip_layout, measure_image


def coregister(
    reference: Scene,
    target: Scene,
    *,
    bands: Sequence[str] | None = None,
    mask: np.ndarray | None = None,
    local: bool = False,
    max_shift: float = MAX_SHIFT_PX,
    min_valid_fraction: float = 0.05,
    spacing: int | None = None,
    degree: int = 2,
    min_chip_fraction: float = 0.4,
) -> Registration:
    """Estimate the sub-pixel shift of ``target`` relative to ``reference``.

    Both scenes must lie on one grid (see :func:`imgdiff.grid.align`).

    Parameters
    ----------
    reference, target : Scene
        Scenes on the same grid (rows, cols).
    bands : sequence of str, optional
        Bands to match on (their median-normalised mean); default the 10 m bands
        B08, B04, B03, B02 both scenes have, else every shared band.
    mask : ndarray of bool (rows, cols), optional
        True where pixels may drive the estimate (e.g. land without cloud).
    local : bool
        Also measure a dense grid of tie points and fit a smooth displacement
        model (``Registration.model``).
    max_shift : float
        Largest plausible shift, in pixels of the reference grid along either axis (default
        :data:`~imgdiff.coregister.tiepoints.MAX_SHIFT_PX`, 5 px). A shift measured beyond it by more
        than :data:`~imgdiff.coregister.tiepoints.MAX_SHIFT_TOLERANCE_PX` (or 3 sigma) is a
        CoregistrationError that says so.
    min_valid_fraction : float
        Least fraction of usable pixels in common.
    spacing : int, optional
        Tie-point spacing in pixels (``local=True``; default about 400 points).
    degree : int
        Polynomial degree of the local model (0-3; lowered when points are few).
    min_chip_fraction : float
        Least fraction of a chip's pixels usable on both dates for its tie point (a chip's
        precision, which also decides, grows with its usable pixels).

    Returns
    -------
    Registration
        Global shift (dx, dy) in pixels and metres, uncertainty, reliability,
        accepted/rejected tie points and (``local=True``) the model.

    Raises
    ------
    CoregistrationError
        Scenes not on one grid, too little valid overlap, no texture, no
        consistent tie point or a shift beyond ``max_shift`` (the message says which).
    """
    check_type(reference, Scene, "coregister: reference", "read it with imgdiff.read_scene(path)")
    check_type(target, Scene, "coregister: target", "read it with imgdiff.read_scene(path) (imgdiff.coregister_paths takes paths)")
    if reference.shape != target.shape:
        raise CoregistrationError(
            f"reference {reference.shape} and target {target.shape} are not on one grid; align them first"
        )
    names = pick_bands(reference, target, bands)
    ref = matching_image(reference.stack(names))
    tgt = matching_image(target.stack(names))
    rv = reference.valid & np.isfinite(ref)
    tv = target.valid & np.isfinite(tgt)
    if mask is not None:
        if np.shape(mask) != reference.shape:
            raise CoregistrationError(f"mask shape {np.shape(mask)} differs from the scenes' {reference.shape}")
        rv &= mask
        tv &= mask
    frac = float((rv & tv).mean()) if rv.size else 0.0
    if frac < min_valid_fraction:
        raise CoregistrationError(
            f"too little valid overlap to co-register ({frac:.1%} of pixels usable, need "
            f"{min_valid_fraction:.0%}); check no-data, clouds and the mask")
    return estimate(ref, rv, tgt, tv, reference=reference, local=local, max_shift=max_shift, spacing=spacing,
                    degree=degree, bands=names, min_chip_fraction=min_chip_fraction)


def estimate(ref: np.ndarray, ref_valid: np.ndarray, tgt: np.ndarray, tgt_valid: np.ndarray, *,
             reference: Scene | None = None, local: bool = False, max_shift: float = MAX_SHIFT_PX,
             spacing: int | None = None, degree: int = 2, bands: Iterable[str] = (),
             pixel_size: tuple[float, float] | None = None, min_chip_fraction: float = 0.4) -> Registration:
    """Co-register two matching images (rows, cols) on one grid; see :func:`coregister`."""
    meas = measure_image(ref, ref_valid, tgt, tgt_valid,
                         chip_layout(ref.shape, local=local, spacing=spacing), max_shift=max_shift, local=local,
                         min_valid=min_chip_fraction)
    return _summarise(meas, local=local, degree=degree, reference=reference, pixel_size=pixel_size,
                      bands=list(bands))


def _summarise(meas: _Measured, *, local: bool, degree: int, reference: Scene | None,
               pixel_size: tuple[float, float] | None, bands: list[str]) -> Registration:
    centers = meas.centers
    reason = list(meas.reason)
    acc = np.array([r == "" for r in reason])
    n = len(reason)
    counts = {r: reason.count(r) for r in REJECT_REASONS if reason.count(r)}
    why = ", ".join(f"{v} {k}" for k, v in counts.items())
    # Most tie points measured beyond max_shift: say so (not "no texture"), so that it can be raised.
    beyond = np.array([r == "beyond max_shift" for r in reason])
    if beyond.any() and beyond.sum() > acc.sum() and beyond.sum() >= max(counts.values()):
        bx, by = np.median(meas.d[beyond], axis=0)
        others = ", ".join([f"{acc.sum()} accepted"] * bool(acc.any())
                           + [f"{v} {k}" for k, v in counts.items() if k != "beyond max_shift"])
        raise _beyond_max_shift(float(bx), float(by), meas.max_shift,
                                f"the median of {beyond.sum()} of {n} tie points" + (f"; {others}" if others else ""))
    if not acc.any():
        raise CoregistrationError(
            f"no reliable tie point among {n} chips ({why}); the scenes lack common texture "
            "(open sea, cloud, uniform areas) or do not show the same place")
    x, y = centers[:, 0], centers[:, 1]
    dx, dy = meas.d[:, 0], meas.d[:, 1]
    sig = np.maximum(meas.sigma, 0.005)
    w = 1.0 / sig**2
    center = (float(np.mean(x)), float(np.mean(y)))
    scale = float(max(np.ptp(x), np.ptp(y), 1.0) / 2)
    na = int(acc.sum())
    deg = int(min(degree, 3, 0 if na < 6 else 1 if na < 15 else 2 if na < 40 else 3)) if local else 0
    deg_out = min(deg, 1) if not local else deg
    idx = np.flatnonzero(acc)
    model, inl = fit_model(x[idx], y[idx], dx[idx], dy[idx], w[idx], max(deg_out, 0 if na < 6 else 1), center,
                           scale)
    for k, ok in zip(idx, inl):
        if not ok:
            reason[k] = "outlier"
    acc = np.array([r == "" for r in reason])
    idx = np.flatnonzero(acc)
    if local:
        model, _ = fit_model(x[idx], y[idx], dx[idx], dy[idx], w[idx], deg_out, center, scale)
        if len(idx) >= 12:
            model = add_residual_grid(model, x[idx], y[idx], dx[idx], dy[idx], sig[idx])
    # Global shift: precision-weighted mean with a between-chip variance term (random effects).
    ddx, ddy = dx[idx], dy[idx]
    mx, my = np.median(ddx), np.median(ddy)
    spread2 = (1.4826 * np.median(np.hypot(ddx - mx, ddy - my))) ** 2 / 2 if len(idx) > 2 else 0.0
    tau2 = max(0.0, spread2 - float(np.median(sig[idx] ** 2)))
    wg = 1.0 / (sig[idx] ** 2 + tau2)
    gdx, gdy = float(np.sum(wg * ddx) / wg.sum()), float(np.sum(wg * ddy) / wg.sum())
    unc = float(np.sqrt(1.0 / wg.sum()))
    if len(idx) > 2:
        emp = float(np.sqrt(np.sum(wg * ((ddx - gdx) ** 2 + (ddy - gdy) ** 2)) / 2 / wg.sum() / (len(idx) - 1)))
        unc = max(unc, emp)
    if beyond_max_shift(np.array([gdx, gdy]), meas.max_shift, max(3 * unc, MAX_SHIFT_TOLERANCE_PX))[0]:
        raise _beyond_max_shift(gdx, gdy, meas.max_shift, f"from {len(idx)} tie points"
                                + (f", uncertainty {unc:.2f} px" if unc >= 0.005 else ""))
    # Reliability: enough consistent points, good correlation, small uncertainty.
    notes = []
    frac_ok = len(idx) / n
    corr = float(np.median(meas.ncc[idx]))
    # The weakest of: number of consistent points, correlation, fraction kept, uncertainty.
    rel = min(1.0 - math.exp(-len(idx) / 3.0), float(np.clip((corr - 0.15) / 0.35, 0, 1)),
              float(np.clip(frac_ok / 0.25, 0.3, 1.0)), math.exp(-((unc / 0.15) ** 2)))
    if len(idx) < 3:
        notes.append(f"only {len(idx)} consistent tie point(s) of {n}")
    if corr < 0.4:
        notes.append(f"weak correlation between the scenes (median {corr:.2f})")
    if frac_ok < 0.3:
        notes.append(f"{n - len(idx)} of {n} tie points rejected")
    if unc > 0.1:
        notes.append(f"large uncertainty ({unc:.2f} px)")
    if spread2 > 0.2**2:
        notes.append(f"the shift varies across the scene (spread {math.sqrt(spread2):.2f} px); "
                     + ("the local model follows it" if local else "consider local=True"))
    if pixel_size is None:
        if reference is not None:
            sx, sy = reference.pixel_size_m
            pixel_size = (sx * float(np.sign(reference.transform.a) or 1), sy * float(np.sign(reference.transform.e) or -1))
        else:
            pixel_size = (1.0, -1.0)
    pts = tuple(_point(centers[k], meas, k, "") for k in idx)
    rej = tuple(_point(centers[k], meas, k, reason[k]) for k in range(n) if reason[k])
    method = "band-passed Fourier Gauss-Newton on chips" + (" + local polynomial" if local else "")
    if bands:
        method += f" ({', '.join(bands)})"
    return Registration(
        dx=gdx, dy=gdy, dx_m=gdx * pixel_size[0], dy_m=gdy * pixel_size[1], uncertainty_px=unc,
        reliability=float(np.clip(rel, 0.0, 1.0)), method=method, points=pts, rejected=rej,
        model=model if local else None, notes=tuple(notes), max_shift_px=meas.max_shift,
    )


def _beyond_max_shift(dx: float, dy: float, max_shift: float, detail: str) -> CoregistrationError:
    """The error for a shift (dx, dy) px beyond ``max_shift`` px, naming the option to raise."""
    dx, dy = round(dx, 2) + 0.0, round(dy, 2) + 0.0  # no "-0.00"
    return CoregistrationError(
        f"the shift is about ({dx:+.2f}, {dy:+.2f}) px ({detail}), beyond max_shift={max_shift:g} px; if a shift "
        "this large is plausible, raise max_shift (--max-shift)")


def _point(c: np.ndarray, meas: _Measured, k: int, reason: str) -> TiePoint:
    s = float(meas.sigma[k])
    corr = float(meas.ncc[k])
    rel = 0.0 if reason else float(np.clip((corr - 0.2) / 0.5, 0, 1) * math.exp(-((s / 0.1) ** 2)))
    return TiePoint(float(c[0]), float(c[1]), float(meas.d[k, 0]), float(meas.d[k, 1]), rel,
                    s if np.isfinite(s) else float("inf"), corr, reason)
