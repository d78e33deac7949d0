"""What co-registration returns: :class:`Registration` and its :class:`TiePoint` measurements.

Convention: a shift (dx, dy) in pixels means a feature at reference pixel (x, y) (x = column,
y = row) appears at target pixel (x + dx, y + dy); ``dx_m``/``dy_m`` give the same shift in metres
on the ground along the grid's CRS axes (east, north for north-up grids). Tie points are accepted, or rejected with one of :data:`REJECT_REASONS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .._repr import short_repr
from .model import ShiftModel

REJECT_REASONS = ("masked", "no texture", "low correlation", "no convergence", "uncertain", "beyond max_shift",
                  "outlier")


def _num(v: float) -> float | None:
    """A float for JSON: None when not finite."""
    v = float(v)
    return v if math.isfinite(v) else None


@dataclass(frozen=True)
class TiePoint:
    """One local shift measurement.

    Attributes
    ----------
    x, y : float
        Centre of the chip in reference pixel-edge coordinates (x = column, y = row).
    dx, dy : float
        Shift in pixels at (x, y); target = reference + shift.
    reliability : float
        In [0, 1].
    uncertainty_px : float
        1-sigma uncertainty of (dx, dy) (per axis, pixels).
    correlation : float
        Normalised correlation of the band-passed chips after alignment.
    reason : str
        Empty for accepted points, else why the point was rejected (one of
        :data:`REJECT_REASONS`).
    """

    x: float
    y: float
    dx: float
    dy: float
    reliability: float
    uncertainty_px: float
    correlation: float
    reason: str = ""

    def to_dict(self) -> dict:
        """JSON-ready (non-finite numbers become None)."""
        d = {"x": self.x, "y": self.y, "dx": _num(self.dx), "dy": _num(self.dy), "reliability": self.reliability,
             "uncertainty_px": _num(self.uncertainty_px), "correlation": _num(self.correlation)}
        if self.reason:
            d["reason"] = self.reason
        return d


@dataclass(frozen=True)
class Registration:
    """Result of :func:`coregister`.

    Attributes
    ----------
    dx, dy : float
        Global shift in pixels (x = column, y = row), target = reference + shift.
    dx_m, dy_m : float
        The same shift in ground metres along the CRS x (east) and y (north) axes: pixels times the
        pixel's ground size (:attr:`imgdiff.scene.Scene.pixel_size_m`, great-circle on a sphere), which
        on a UTM grid differs from the grid's own metres by a few tenths of a percent.
    uncertainty_px : float
        1-sigma uncertainty of the shift (per axis), in pixels.
    reliability : float
        In [0, 1]; below 0.5 the shift should not be trusted (see ``notes``).
    method : str
        How the shift was estimated.
    points : tuple of TiePoint
        Accepted tie points (always measured; used for the global estimate).
    rejected : tuple of TiePoint
        Rejected tie points, each with its ``reason``.
    model : ShiftModel or None
        Fitted smooth displacement model (``local=True`` only), else None.
    notes : tuple of str
        Warnings that lowered the reliability.
    max_shift_px : float or None
        The largest shift the search allowed (``max_shift``), in pixels of the reference grid
        along either axis; None when no shift was sought.
    """

    dx: float
    dy: float
    dx_m: float
    dy_m: float
    uncertainty_px: float
    reliability: float
    method: str = "phase-correlation"
    points: tuple[TiePoint, ...] = ()
    rejected: tuple[TiePoint, ...] = ()
    model: ShiftModel | None = None
    notes: tuple[str, ...] = ()
    max_shift_px: float | None = None

    __repr__ = short_repr  # tie points as their count

    @property
    def reliable(self) -> bool:
        return self.reliability >= 0.5

    def to_dict(self) -> dict:
        """JSON-ready description.

        ``n_points`` and ``n_rejected`` count the tie points always; the points themselves (``points``,
        ``rejected``) are listed only with a local model (``local=True``, CLI ``--local``), whose
        displacement field they describe (a global shift is the one ``dx``, ``dy``).
        """
        return {
            "dx": _num(self.dx), "dy": _num(self.dy), "dx_m": _num(self.dx_m), "dy_m": _num(self.dy_m),
            "uncertainty_px": _num(self.uncertainty_px), "reliability": _num(self.reliability), "method": self.method,
            "n_points": len(self.points), "n_rejected": len(self.rejected),
            "points": [p.to_dict() for p in self.points] if self.model is not None else [],
            "rejected": [p.to_dict() for p in self.rejected] if self.model is not None else [],
            "model": self.model.to_dict() if self.model is not None else None,
            "notes": list(self.notes),
            "max_shift_px": self.max_shift_px,
        }
