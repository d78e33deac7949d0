"""The smooth displacement model of a local co-registration: a polynomial plus a residual grid.

:class:`ShiftModel` gives the shift (dx, dy) in pixels at reference pixel-edge coordinates
(x = column, y = row; target = reference + shift): a polynomial in normalised coordinates plus,
optionally, a correction sampled on a grid. :func:`fit_model` fits the polynomial robustly (Tukey
IRLS) to tie points, :func:`add_residual_grid` adds a smoothed thin-plate-spline correction of its
residuals, :func:`dense_field` evaluates the model at every pixel centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .._repr import short_repr


@dataclass(frozen=True)
class ShiftModel:
    """A smooth displacement field: polynomial in normalised pixel coordinates.

    ``dx(x, y) = sum c_x[k] * u**i * v**j`` with ``u = (x - cx) / s``, ``v = (y - cy) / s``
    over the terms ``i + j <= degree`` (in :meth:`terms` order); likewise ``dy``.
    Coordinates are reference pixel-edge coordinates, shifts in pixels.
    """

    degree: int
    coef_x: tuple[float, ...]
    coef_y: tuple[float, ...]
    center: tuple[float, float]
    scale: float
    rmse_px: float = float("nan")
    grid_origin: tuple[float, float] = (0.0, 0.0)
    grid_step: float = 0.0
    grid_dx: np.ndarray | None = None
    grid_dy: np.ndarray | None = None

    __repr__ = short_repr  # residual grids as their shape and dtype

    @staticmethod
    def terms(degree: int) -> list[tuple[int, int]]:
        return [(i, n - i) for n in range(degree + 1) for i in range(n, -1, -1)]

    def design(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return _design(x, y, self.degree, self.center, self.scale)

    def __call__(self, x: np.ndarray | float, y: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Shift (dx, dy) in pixels at reference pixel-edge coordinates (x, y)."""
        x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
        a = self.design(x.ravel(), y.ravel())
        fx = (a @ np.asarray(self.coef_x)).reshape(x.shape)
        fy = (a @ np.asarray(self.coef_y)).reshape(x.shape)
        if self.grid_dx is not None and self.grid_dy is not None and self.grid_step > 0:
            gx = (x - self.grid_origin[0]) / self.grid_step
            gy = (y - self.grid_origin[1]) / self.grid_step
            fx = fx + _bilinear(self.grid_dx, gx, gy)
            fy = fy + _bilinear(self.grid_dy, gx, gy)
        return fx, fy

    def to_dict(self) -> dict:
        d = {"degree": self.degree, "coef_x": list(self.coef_x), "coef_y": list(self.coef_y),
             "center": list(self.center), "scale": self.scale, "rmse_px": self.rmse_px}
        if self.grid_dx is not None and self.grid_dy is not None:
            d["residual_grid"] = {"origin": list(self.grid_origin), "step": self.grid_step,
                                  "dx": np.round(self.grid_dx, 4).tolist(), "dy": np.round(self.grid_dy, 4).tolist()}
        return d


def _bilinear(g: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of grid ``g`` (rows = y) at fractional node coordinates, clamped at the edges."""
    gx = np.clip(gx, 0, g.shape[1] - 1)
    gy = np.clip(gy, 0, g.shape[0] - 1)
    x0 = np.minimum(np.floor(gx).astype(int), g.shape[1] - 2) if g.shape[1] > 1 else np.zeros(gx.shape, int)
    y0 = np.minimum(np.floor(gy).astype(int), g.shape[0] - 2) if g.shape[0] > 1 else np.zeros(gy.shape, int)
    x1, y1 = np.minimum(x0 + 1, g.shape[1] - 1), np.minimum(y0 + 1, g.shape[0] - 1)
    fx, fy = gx - x0, gy - y0
    return ((1 - fy) * ((1 - fx) * g[y0, x0] + fx * g[y0, x1]) + fy * ((1 - fx) * g[y1, x0] + fx * g[y1, x1]))


def add_residual_grid(model: ShiftModel, x: np.ndarray, y: np.ndarray, dx: np.ndarray, dy: np.ndarray,
                      sigma: np.ndarray, smoothing: float = 1.0) -> ShiftModel:
    """Add a smoothed thin-plate-spline correction of the polynomial's residuals, sampled on a grid.

    The polynomial captures the trend; the correction follows smooth variation it
    misses (e.g. detector-wise or terrain-induced undulation), smoothed in
    proportion to the tie points' uncertainty ``sigma`` (pixels).
    """
    from scipy.interpolate import RBFInterpolator

    px, py = model(x, y)
    res = np.stack([dx - px, dy - py], axis=1)
    s = model.scale
    pts = np.stack([(x - model.center[0]) / s, (y - model.center[1]) / s], axis=1)
    lam = smoothing * np.maximum(sigma, 0.01) ** 2 / np.mean(np.maximum(sigma, 0.01) ** 2) * 1e-3
    rbf = RBFInterpolator(pts, res, kernel="thin_plate_spline", smoothing=lam, degree=1)
    spacing = math.sqrt(max(np.ptp(x), 1.0) * max(np.ptp(y), 1.0) / len(x))  # mean tie-point spacing
    step = float(max(spacing / 2, 4.0))
    x0, y0 = float(x.min()) - step, float(y.min()) - step
    nx = int(math.ceil((x.max() + step - x0) / step)) + 1
    ny = int(math.ceil((y.max() + step - y0) / step)) + 1
    gx, gy = np.meshgrid(x0 + np.arange(nx) * step, y0 + np.arange(ny) * step)
    q = np.stack([(gx.ravel() - model.center[0]) / s, (gy.ravel() - model.center[1]) / s], axis=1)
    r = rbf(q)
    fitted = rbf(pts)
    rmse = float(np.sqrt(np.mean(np.sum((res - fitted) ** 2, axis=1) / 2)))
    return replace(model, grid_origin=(x0, y0), grid_step=step, grid_dx=r[:, 0].reshape(ny, nx),
                   grid_dy=r[:, 1].reshape(ny, nx), rmse_px=rmse)


def _design(x: np.ndarray, y: np.ndarray, degree: int, center: tuple[float, float], scale: float) -> np.ndarray:
    u, v = (np.asarray(x, np.float64) - center[0]) / scale, (np.asarray(y, np.float64) - center[1]) / scale
    return np.stack([u**i * v**j for i, j in ShiftModel.terms(degree)], axis=-1)


def fit_model(x: np.ndarray, y: np.ndarray, dx: np.ndarray, dy: np.ndarray, w: np.ndarray, degree: int,
              center: tuple[float, float], scale: float) -> tuple[ShiftModel, np.ndarray]:
    """Robust (Tukey IRLS) weighted least-squares polynomial fit; returns the model and the inlier mask."""
    a = _design(x, y, degree, center, scale)
    rw = np.ones(len(x))
    inl = np.ones(len(x), bool)
    cx = cy = np.zeros(a.shape[1])
    for _ in range(10):
        ww = np.sqrt(w * rw)
        cx = np.linalg.lstsq(a * ww[:, None], dx * ww, rcond=None)[0]
        cy = np.linalg.lstsq(a * ww[:, None], dy * ww, rcond=None)[0]
        r = np.hypot(dx - a @ cx, dy - a @ cy)
        s = max(1.4826 * np.median(r[rw > 0]) if (rw > 0).any() else 0.0, 0.02)
        c = 4.685 * s
        rw = np.where(r < c, (1 - (r / c) ** 2) ** 2, 0.0)
        inl = r < max(3.0 * s, 0.1)
    rmse = float(np.sqrt(np.mean(r[inl] ** 2))) if inl.any() else float("nan")
    return ShiftModel(degree, tuple(map(float, cx)), tuple(map(float, cy)), center, scale, rmse), inl


def dense_field(model: ShiftModel, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The model's (dx, dy) at every pixel centre of a (rows, cols) grid, in pixels."""
    h, w = shape
    gx, gy = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    return model(gx, gy)
