"""Objects across two dates: which stayed, which departed, which arrived.

Detections of the two dates are paired one-to-one (Hungarian assignment on the
distance between centroids in map coordinates), a pair being allowed only when the
centroids are within a gate that grows with the object's size, and (when both
lengths are measured) the lengths agree within a factor. Unpaired before-objects
departed; unpaired after-objects arrived.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from .detect.base import Detections
from .errors import GridError


@dataclass(frozen=True)
class ObjectMatch:
    """Pairing of the objects of two dates.

    Attributes
    ----------
    stayed : tuple of (int, int)
        (index in before, index in after) of objects seen at the same place on both dates.
    departed : tuple of int
        Indices (in before) of objects not seen after.
    arrived : tuple of int
        Indices (in after) of objects not seen before.
    distance_m : tuple of float
        Centroid distance in metres of each ``stayed`` pair.
    """

    stayed: tuple[tuple[int, int], ...]
    departed: tuple[int, ...]
    arrived: tuple[int, ...]
    distance_m: tuple[float, ...] = ()

    def counts(self) -> dict[str, int]:
        """Number of stayed, departed and arrived objects."""
        return {"stayed": len(self.stayed), "departed": len(self.departed), "arrived": len(self.arrived)}


def _ground_scale(d: Detections) -> tuple[float, float]:
    """Metres per map unit along x and y (1 for projected CRSs in metres)."""
    ta = d.transform
    sx, sy = d.pixel_size_m
    return (sx / abs(ta.a) if ta.a else 1.0, sy / abs(ta.e) if ta.e else 1.0)


def match_objects(
    before: Detections,
    after: Detections,
    *,
    gate_m: float = 30.0,
    gate_length_frac: float = 0.5,
    max_length_ratio: float = 2.0,
) -> ObjectMatch:
    """Pair the detections of two dates.

    Parameters
    ----------
    before, after : Detections
        Objects of each date, on grids of one CRS (e.g. both dates of a compared pair).
    gate_m : float
        Largest centroid distance, in metres, for a pair (objects moored at the same berth
        move a few metres between dates; the co-registration residual adds a few more).
    gate_length_frac : float
        The gate grows to ``gate_length_frac`` times the larger object length when longer.
    max_length_ratio : float
        Pairs whose measured lengths differ by more than this factor are not allowed.

    Returns
    -------
    ObjectMatch
    """
    if before.crs != after.crs:
        raise GridError(f"cannot match objects across CRSs ({before.crs} vs {after.crs}); "
                        "detect on the common grid of the pair")
    nb, na = len(before), len(after)
    if nb == 0 or na == 0:
        return ObjectMatch((), tuple(range(nb)), tuple(range(na)))
    kx, ky = _ground_scale(before)
    pb, pa = before.map_centers(), after.map_centers()
    dist = np.hypot((pb[:, None, 0] - pa[None, :, 0]) * kx, (pb[:, None, 1] - pa[None, :, 1]) * ky)
    lb = np.array([d.length_m for d in before.items], float)
    la = np.array([d.length_m for d in after.items], float)
    lmax = np.fmax(lb[:, None], la[None, :])
    gate = np.fmax(gate_m, gate_length_frac * np.nan_to_num(lmax, nan=0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.fmax(lb[:, None] / la[None, :], la[None, :] / lb[:, None])
    ok = (dist <= gate) & ~(ratio > max_length_ratio)
    big = 1e12
    cost = np.where(ok, dist, big)
    rows, cols = linear_sum_assignment(cost)
    pairs = [(int(r), int(c)) for r, c in zip(rows, cols) if ok[r, c]]
    used_b = {r for r, _ in pairs}
    used_a = {c for _, c in pairs}
    return ObjectMatch(
        stayed=tuple(sorted(pairs)),
        departed=tuple(i for i in range(nb) if i not in used_b),
        arrived=tuple(j for j in range(na) if j not in used_a),
        distance_m=tuple(round(float(dist[r, c]), 2) for r, c in sorted(pairs)),
    )


def zone_match(before: Detections, after: Detections, zone: str | None, **kwargs: float) -> ObjectMatch:
    """:func:`match_objects` over all detections, reported for objects in one zone.

    Matching runs on every detection so that an object that moved across a zone edge by a
    metre still counts as stayed; a pair counts for the zone when either end lies in it.
    Indices refer to the full ``before`` / ``after`` collections.
    """
    m = match_objects(before, after, **kwargs)
    if zone is None:
        return m
    inb = [d.zone == zone for d in before.items]
    ina = [d.zone == zone for d in after.items]
    keep = [(k, dd) for k, dd in zip(m.stayed, m.distance_m or (math.nan,) * len(m.stayed))
            if inb[k[0]] or ina[k[1]]]
    return ObjectMatch(
        stayed=tuple(k for k, _ in keep),
        departed=tuple(i for i in m.departed if inb[i]),
        arrived=tuple(j for j in m.arrived if ina[j]),
        distance_m=tuple(dd for _, dd in keep),
    )
