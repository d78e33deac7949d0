"""Objects across two dates: which stayed, which departed, which arrived.

Detections of the two dates are paired one-to-one (Hungarian assignment on the
distance between centroids in map coordinates), a pair being allowed only when the
centroids are within a gate that grows with the object's size, and (when both
lengths are measured) the lengths agree within a factor. Unpaired before-objects
departed; unpaired after-objects arrived.

Detectors miss objects, so an unpaired object is checked on the other date's image
(:func:`persistence`): if its box still looks the same, the object is still there and
:func:`carry_over` adds it to that date's detections.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import linear_sum_assignment

from .detect.base import Detections
from .errors import GridError
from .scene import Scene


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


# --------------------------------------------------------------------------- persistence
def _brightness(scene: Scene) -> np.ndarray:
    names = [b for b in ("B02", "B03", "B04", "B08") if b in scene.bands] or list(scene.bands)
    st = np.stack([scene.bands[b] for b in names])
    ok = np.isfinite(st)
    n = ok.sum(axis=0)
    return np.where(n > 0, np.where(ok, st, 0).sum(axis=0) / np.maximum(n, 1), np.nan)


def persistence(reference: Scene | np.ndarray, other: Scene | np.ndarray, box: tuple[float, float, float, float],
                *, ring_px: int = 3) -> float:
    """How much of an object seen in ``reference`` is still in ``other`` at the same place.

    Both scenes must be on one grid (a co-registered pair); 2-D arrays are taken as their
    brightness (mean of B02 B03 B04 B08), to avoid recomputing it for many objects. The object's contrast in
    ``reference`` is the mean absolute difference of its box from the median of a ring of
    ``ring_px`` pixels around it; the change is the mean absolute difference of the box
    between the two dates after matching their local levels (median of box and ring).

    Returns
    -------
    float
        ``1 - change / contrast`` clipped to [0, 1]: near 1 when the object is still there
        (only noise differs), near 0 when it left (the box now looks like its surroundings).
        NaN when the box has no contrast or no valid pixel.
    """
    ref = reference if isinstance(reference, np.ndarray) else _brightness(reference)
    oth = other if isinstance(other, np.ndarray) else _brightness(other)
    h, w = ref.shape
    x0, y0, x1, y1 = box
    c0, r0 = max(0, int(math.floor(x0))), max(0, int(math.floor(y0)))
    c1, r1 = min(w, int(math.ceil(x1))), min(h, int(math.ceil(y1)))
    if c1 <= c0 or r1 <= r0:
        return math.nan
    R0, C0 = max(0, r0 - ring_px), max(0, c0 - ring_px)
    R1, C1 = min(h, r1 + ring_px), min(w, c1 + ring_px)
    a = ref[R0:R1, C0:C1]
    b = oth[R0:R1, C0:C1]
    inner = np.zeros(a.shape, bool)
    inner[r0 - R0:r1 - R0, c0 - C0:c1 - C0] = True
    ok = np.isfinite(a) & np.isfinite(b)
    if not (ok & inner).any() or not (ok & ~inner).any():
        return math.nan
    contrast = float(np.mean(np.abs(a[inner & ok] - np.median(a[~inner & ok]))))
    if contrast <= 0:
        return math.nan
    ma, mb = np.median(a[ok]), np.median(b[ok])
    scale = ma / mb if mb > 0 else 1.0
    change = float(np.mean(np.abs(a[inner & ok] - b[inner & ok] * scale)))
    return float(np.clip(1.0 - change / contrast, 0.0, 1.0))


def carry_over(before: Detections, after: Detections, before_scene: Scene, after_scene: Scene, *,
               min_persistence: float = 0.7, min_score: float = 0.5,
               **match_kwargs: float) -> tuple[Detections, Detections]:
    """Add objects one date's detector missed but the other date shows are still there.

    A confident before-detection (score >= ``min_score``) with no after partner, overlapping
    no after-detection, whose box still holds the object on the after date (:func:`persistence` >= ``min_persistence``) is added
    to the after detections, and the other way round. Added items carry ``extra["carried_from"]`` (the date it was seen on)
    and ``extra["persistence"]``. Both scenes must be on the detections' grid.

    Returns
    -------
    (Detections, Detections)
        Before and after, each with the carried-over objects appended.
    """
    m = match_objects(before, after, **match_kwargs)
    add_b, add_a = [], []
    bb, ba = _brightness(before_scene), _brightness(after_scene)

    def overlaps_any(box: tuple[float, float, float, float], others: Detections) -> bool:
        return any(min(box[2], o.box[2]) > max(box[0], o.box[0]) and min(box[3], o.box[3]) > max(box[1], o.box[1])
                   for o in others.items)

    for i in m.departed:
        d = before.items[i]
        if d.score < min_score or overlaps_any(d.box, after):  # seen on the other date already, split or merged differently
            continue
        p = persistence(bb, ba, d.box)
        if p >= min_persistence:
            add_a.append(replace(d, extra={**d.extra, "carried_from": "before", "persistence": round(p, 3)}))
    for j in m.arrived:
        d = after.items[j]
        if d.score < min_score or overlaps_any(d.box, before):
            continue
        p = persistence(ba, bb, d.box)
        if p >= min_persistence:
            add_b.append(replace(d, extra={**d.extra, "carried_from": "after", "persistence": round(p, 3)}))
    return (replace(before, items=before.items + tuple(add_b)), replace(after, items=after.items + tuple(add_a)))


def drop_static_weak(dets: Detections, scene: Scene, other: Scene, *, min_score: float = 0.5,
                     max_persistence: float = 0.2) -> Detections:
    """Keep confident detections, and weak ones only where the image changed between dates.

    A detection scoring below ``min_score`` whose box looks the same on the other date
    (:func:`persistence` above ``max_persistence``, or no contrast) is most likely static
    clutter (a quay, a roof, apron markings) and is dropped; a weak detection of something
    that arrived or left is kept. Both scenes must be on the detections' grid.
    """
    if not any(d.score < min_score for d in dets.items):
        return dets
    bs, bo = _brightness(scene), _brightness(other)
    keep = []
    for d in dets.items:
        if d.score >= min_score:
            keep.append(True)
            continue
        p = persistence(bs, bo, d.box)
        keep.append(bool(math.isfinite(p) and p <= max_persistence))
    return dets.filter(keep)
