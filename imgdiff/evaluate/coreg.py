"""Known-truth co-registration cases and the accuracy benchmark behind ``imgdiff eval coreg``.

Three kinds of case, all with exact truth:

* **same date** ("two acquisitions"): one finer image degraded twice to a
  coarser grid with different crop phase, PSF, gain and noise
  (:func:`degrade`); truth = crop offset difference / factor;
* **cross date**: a real OSCD pair, the after image also moved by a known
  shift (cubic spline resampling); truth is differential (estimate with the
  shift minus estimate without), so the pair's own offset cancels;
* **local**: one image warped by a smooth known displacement field
  (:func:`smooth_field`), plus noise; truth = the field at each reported tie point.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from affine import Affine
from scipy import ndimage

from ..coregister import coregister
from ..errors import CoregistrationError
from ..scene import Scene


# --------------------------------------------------------------------------- simulation
def degrade(fine: np.ndarray, factor: int, offset: tuple[int, int], *, psf_sigma: float, gain: float = 1.0,
            bias: float = 0.0, noise: float = 0.0, size: tuple[int, int] | None = None,
            rng: np.random.Generator | None = None) -> np.ndarray:
    """Degrade a finer image to a coarser grid: crop at ``offset``, blur, area-average, gain, noise.

    Parameters
    ----------
    fine : ndarray (rows, cols)
        The finer image.
    factor : int
        Coarse pixel size in fine pixels.
    offset : (int, int)
        Crop offset (x = column, y = row) in fine pixels: the coarse grid starts there.
    psf_sigma : float
        Gaussian PSF sigma in fine pixels.
    gain, bias, noise : float
        ``gain * value + bias + N(0, noise)``.
    size : (rows, cols), optional
        Coarse output size; default the largest that fits.
    rng : numpy.random.Generator, optional
        Source of the noise (default a generator seeded with 0).

    Returns
    -------
    ndarray float32 (rows, cols)

    Notes
    -----
    Two images degraded with offsets ``oa`` (reference) and ``ob`` (target) are
    shifted by ``(oa - ob) / factor`` coarse pixels in imgdiff's convention.
    """
    rng = rng or np.random.default_rng(0)
    blurred = cv2.GaussianBlur(fine.astype(np.float32), (0, 0), psf_sigma, borderType=cv2.BORDER_REFLECT)
    ox, oy = offset
    crop = blurred[oy:, ox:]
    h, w = crop.shape[0] // factor, crop.shape[1] // factor
    if size is not None:
        h, w = min(h, size[0]), min(w, size[1])
    crop = crop[:h * factor, :w * factor]
    coarse = crop.reshape(h, factor, w, factor).mean(axis=(1, 3))
    out = gain * coarse + bias + (rng.normal(0, noise, coarse.shape) if noise else 0.0)
    return out.astype(np.float32)


def smooth_field(shape: tuple[int, int], amplitude: float, rng: np.random.Generator) -> Callable:
    """A random smooth displacement field (sum of two long-wave sinusoids + a tilt per axis).

    Returns ``f(x, y) -> (dx, dy)`` in pixels at pixel-edge coordinates (x = column, y = row),
    with |dx|, |dy| up to about ``amplitude``.
    """
    h, w = shape
    par = rng.uniform(-1, 1, (2, 7))
    per = rng.uniform(0.7, 1.5, (2, 2))

    def f(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = []
        for k in range(2):
            p = par[k]
            v = (0.3 * p[0] * (x / w - 0.5) + 0.3 * p[1] * (y / h - 0.5)
                 + 0.35 * np.sin(2 * np.pi * (x / (per[k, 0] * w)) + 3 * p[2]) * (0.5 + 0.5 * abs(p[3]))
                 + 0.35 * np.sin(2 * np.pi * (y / (per[k, 1] * h)) + 3 * p[4]) * (0.5 + 0.5 * abs(p[5])))
            out.append(amplitude * v / 0.7 * (0.8 + 0.2 * p[6]))
        return out[0], out[1]

    return f


def warp_by_field(img: np.ndarray, fld: Callable) -> np.ndarray:
    """Target image in which a feature at reference (x, y) appears at (x, y) + field: t(x + d(x)) = r(x).

    Computed by inverting the field by fixed-point iteration and cubic-spline sampling.
    """
    h, w = img.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    # Find source s with s + d(s) = p for each target pixel centre p.
    px, py = xx + 0.5, yy + 0.5
    sx, sy = px.copy(), py.copy()
    for _ in range(20):
        dx, dy = fld(sx, sy)
        sx, sy = px - dx, py - dy
    return ndimage.map_coordinates(img.astype(np.float64), [sy - 0.5, sx - 0.5], order=3,
                                   mode="reflect").astype(np.float32)


def shift_image(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Target image with every feature moved by (+dx, +dy) px (cubic spline, mirrored edges)."""
    return ndimage.shift(img.astype(np.float64), (dy, dx), order=3, mode="mirror").astype(np.float32)


def as_scene(img: np.ndarray, band: str = "B08", pixel_m: float = 10.0) -> Scene:
    """A single-band Scene on a local metre grid (no CRS)."""
    a = img.astype(np.float32)
    return Scene({band: a}, None, Affine(pixel_m, 0, 0, 0, -pixel_m, 0), np.isfinite(a))


# --------------------------------------------------------------------------- benchmark
@dataclass(frozen=True)
class CaseResult:
    """One benchmark case: truth and estimate (pixels)."""

    kind: str
    name: str
    truth: tuple[float, float]
    estimate: tuple[float, float]
    reliability: float
    seconds: float

    @property
    def error(self) -> tuple[float, float]:
        return (self.estimate[0] - self.truth[0], self.estimate[1] - self.truth[1])


@dataclass(frozen=True)
class CoregBenchmark:
    """Figures of :func:`run_benchmark`."""

    same_date_rmse: float
    cross_date_rmse: float
    local_rmse: float
    local_points: int
    cases: list[CaseResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "same_date_rmse_px": self.same_date_rmse, "cross_date_rmse_px": self.cross_date_rmse,
            "local_rmse_px": self.local_rmse, "local_points": self.local_points,
            "n_cases": {k: sum(c.kind == k for c in self.cases) for k in ("same-date", "cross-date", "local")},
            "failures": self.failures,
            "cases": [{"kind": c.kind, "name": c.name, "truth": list(c.truth), "estimate": list(c.estimate),
                       "error": list(c.error), "reliability": c.reliability, "seconds": c.seconds}
                      for c in self.cases],
        }


def rmse(errors: Sequence[tuple[float, float]]) -> float:
    """Root mean square of 2-D errors, per axis (sqrt(mean(ex^2 + ey^2) / 2)), pixels."""
    e = np.asarray(errors, np.float64).reshape(-1, 2)
    return float(np.sqrt(np.mean(e**2))) if len(e) else float("nan")


def _band(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as ds:
        a = ds.read(1).astype(np.float32)
    a[a == 0] = np.nan
    return a / 10000.0


def same_date_cases(fine_images: dict[str, np.ndarray], factor: int = 4, per_image: int = 3,
                    seed: int = 0, estimator: Callable | None = None) -> list[CaseResult]:
    """Degrade each finer image twice with random crop phase, PSF, gain and noise; recover the shift."""
    rng = np.random.default_rng(seed)
    out = []
    est = estimator or _imgdiff_estimator
    for name, fine in fine_images.items():
        fine = np.nan_to_num(fine, nan=float(np.nanmedian(fine)))
        for i in range(per_image):
            oa = (int(rng.integers(0, 2 * factor)), int(rng.integers(0, 2 * factor)))
            ob = (int(rng.integers(0, 2 * factor)), int(rng.integers(0, 2 * factor)))
            h, w = (fine.shape[0] - 2 * factor) // factor, (fine.shape[1] - 2 * factor) // factor
            sig = 0.45 * factor
            amp = float(np.nanstd(fine))
            a = degrade(fine, factor, oa, psf_sigma=sig * rng.uniform(0.85, 1.15), size=(h, w),
                        noise=0.01 * amp, rng=rng)
            b = degrade(fine, factor, ob, psf_sigma=sig * rng.uniform(0.85, 1.15), gain=rng.uniform(0.7, 1.3),
                        bias=rng.uniform(-0.2, 0.2) * amp, size=(h, w), noise=0.01 * amp, rng=rng)
            truth = ((oa[0] - ob[0]) / factor, (oa[1] - ob[1]) / factor)
            t0 = time.perf_counter()
            d, rel = est(a, b)
            out.append(CaseResult("same-date", f"{name}#{i}", truth, d, rel, time.perf_counter() - t0))
    return out


def cross_date_cases(pairs: dict[str, tuple[np.ndarray, np.ndarray]], per_pair: int = 3, seed: int = 1,
                     estimator: Callable | None = None) -> list[CaseResult]:
    """Move the after image of each real pair by known shifts; differential truth."""
    rng = np.random.default_rng(seed)
    est = estimator or _imgdiff_estimator
    out = []
    for name, (b, a) in pairs.items():
        fill = float(np.nanmedian(a))
        a0 = np.nan_to_num(a, nan=fill)
        base, _ = est(b, a0)
        for i in range(per_pair):
            s = (float(rng.uniform(-2, 2)), float(rng.uniform(-2, 2)))
            t0 = time.perf_counter()
            d, rel = est(b, shift_image(a0, *s))
            diff = (d[0] - base[0], d[1] - base[1])
            out.append(CaseResult("cross-date", f"{name}#{i}", s, diff, rel, time.perf_counter() - t0))
    return out


def local_cases(images: dict[str, np.ndarray], amplitude: float = 1.5, seed: int = 2
                ) -> tuple[list[CaseResult], list[float], list[int]]:
    """Warp each image by a smooth known field; compare every reported tie point with the field."""
    rng = np.random.default_rng(seed)
    cases, errs, npts = [], [], []
    for name, img in images.items():
        img = np.nan_to_num(img, nan=float(np.nanmedian(img)))
        fld = smooth_field(img.shape, amplitude, rng)
        amp = float(np.std(img))
        ref = img + rng.normal(0, 0.01 * amp, img.shape).astype(np.float32)
        tgt = warp_by_field(img, fld) + rng.normal(0, 0.01 * amp, img.shape).astype(np.float32)
        t0 = time.perf_counter()
        reg = coregister(as_scene(ref), as_scene(tgt), local=True)
        sec = time.perf_counter() - t0
        x = np.array([p.x for p in reg.points])
        y = np.array([p.y for p in reg.points])
        tx, ty = fld(x, y)
        e = np.stack([np.array([p.dx for p in reg.points]) - tx, np.array([p.dy for p in reg.points]) - ty], 1)
        errs.append(rmse(e))
        npts.append(len(reg.points))
        cases.append(CaseResult("local", name, (float(np.mean(tx)), float(np.mean(ty))),
                                (float(np.mean(e[:, 0] + tx)), float(np.mean(e[:, 1] + ty))),
                                reg.reliability, sec))
    return cases, errs, npts


def _imgdiff_estimator(a: np.ndarray, b: np.ndarray) -> tuple[tuple[float, float], float]:
    reg = coregister(as_scene(a), as_scene(b))
    return (reg.dx, reg.dy), reg.reliability


def skimage_estimator(a: np.ndarray, b: np.ndarray) -> tuple[tuple[float, float], float]:
    """scikit-image ``phase_cross_correlation(upsample_factor=100)`` in imgdiff's sign convention."""
    from skimage.registration import phase_cross_correlation

    fa = np.nan_to_num(a, nan=float(np.nanmedian(a)))
    fb = np.nan_to_num(b, nan=float(np.nanmedian(b)))
    shift, err, _ = phase_cross_correlation(fa, fb, upsample_factor=100)
    return (-float(shift[1]), -float(shift[0])), float(1 - err)


def dev_inputs(data: Path) -> tuple[dict, dict, dict]:
    """Finer images, real pairs and local-test images from the dev data (OSCD NIR/red bands)."""
    oscd = data / "oscd"
    fine, pairs, local = {}, {}, {}
    for city in sorted(p.name for p in oscd.iterdir() if p.is_dir()):
        b = _band(oscd / city / "before" / "B08.tif")
        a = _band(oscd / city / "after" / "B08.tif")
        if b.shape != a.shape:
            continue
        fine[city] = _band(oscd / city / "before" / "B04.tif")
        pairs[city] = (b, a)
        local[city] = np.nan_to_num(a, nan=float(np.nanmedian(a)))
    return fine, pairs, local


def run_benchmark(data: Path, *, quick: bool = False, on_case: Callable[[str], None] | None = None
                  ) -> CoregBenchmark:
    """The accuracy benchmark on the dev data (OSCD): same-date, cross-date and local RMSE.

    Parameters
    ----------
    data : Path
        The shared data folder (with ``oscd/``).
    quick : bool
        One case per image instead of three, and four cities.
    on_case : callable, optional
        Called with the name of each case as it starts (progress).
    """
    fine, pairs, local = dev_inputs(data)
    if quick:
        keep = sorted(fine)[:4]
        fine = {k: fine[k] for k in keep}
        pairs = {k: pairs[k] for k in keep}
        local = {k: local[k] for k in keep[:2] if k in local}
    n = 1 if quick else 3
    failures: list[str] = []

    def guarded(fn: Callable, *args, **kw):
        try:
            return fn(*args, **kw)
        except CoregistrationError as e:
            failures.append(str(e))
            return []

    step = on_case or (lambda s: None)
    step("same-date")
    same = guarded(same_date_cases, fine, per_image=n)
    step("cross-date")
    cross = guarded(cross_date_cases, pairs, per_pair=n)
    step("local")
    loc = guarded(local_cases, local) or ([], [], [])
    lc, lerr, lpts = loc
    local_rmse = float(math.sqrt(np.mean(np.square(lerr)))) if lerr else float("nan")
    return CoregBenchmark(
        same_date_rmse=rmse([c.error for c in same]), cross_date_rmse=rmse([c.error for c in cross]),
        local_rmse=local_rmse, local_points=int(min(lpts)) if lpts else 0, cases=[*same, *cross, *lc],
        failures=failures,
    )
