"""Objects seen in the change between two dates: a vessel on one date where the other shows open water
(:func:`water_changes`), an aircraft where the other shows plain apron (:func:`apron_changes`).

A ship that left its berth leaves water behind: on a co-registered pair its hull stands out of the
difference of the dates as a compact bright blob, whatever the detector made of it against the quay
it lay beside (the quay is in both dates and cancels). :func:`water_changes` finds such blobs:

1. brightness (mean of B02 B03 B04 B08) of each date, the other date matched to the first by a gain
   and an offset (its deviations from its median scaled by the ratio of the dates' interquartile
   ranges, its median moved onto the first date's: a top-of-atmosphere date's path radiance is an
   offset, not a gain); the difference in units of its robust spread (1.4826 x its median absolute
   deviation over the pixels compared, at least :data:`MIN_SPREAD`: one digital number), a z-score
   per pixel;
2. 8-connected regions where the object's date is brighter by more than :data:`EXTENT_Z`, at least
   :data:`MIN_AREA_PX` pixels, at most :data:`MAX_LENGTH_M` long, not touching the grid's edge, whose
   box is all compared (clear on both dates), which touches no pixel that is not compared (it ends where
   its date stops being brighter, not where the comparison stops: a cloud's or a shadow's fringe reaches
   the cloud), in a ring of :data:`RING_PX` pixels around its box compared for at least
   :data:`RING_COMPARED` of its pixels, and whose peak stands out of the brightening of the ring's
   compared pixels by :data:`PEAK_Z` spreads (of the pair, or of the ring's own differences where they
   are wider);
3. the other date is open water there: the median NDWI ``(B03 - B08) / (B03 + B08)`` of the region
   on the other date is above :data:`MIN_WATER_NDWI` (a quay, a roof or a changed field is not), and
   the region reaches the vessel detector's open water (:func:`imgdiff.detect.vessels.water_mask`:
   water bodies of at least 20 ha; a pond or a wet roof is not), both read without the path radiance
   the detector takes off (:func:`imgdiff.detect.vessels.remove_haze`, nothing on surface-reflectance
   scenes: on a top-of-atmosphere date it lifts the NDWI of dark land above 0);
4. the region is an object that came or went, not a brighter stretch of water nor an object that
   stayed: its box's contrast with the ring around it on its own date (:func:`imgdiff.match.contrast`)
   and its mean brightening between the dates (in that date's reflectance: the other date scaled to it)
   agree within a factor 1 / :data:`OWN_CONTRAST` (the filled or stirred-up water of a berth a ship
   left is brighter than before but no brighter than the water around it; a boat that is still there,
   only blurred or dimmed on the other date, stands out far more than it changed).

Each region is one object on the date where it is bright (rafted ships side by side are one region:
the count is a lower bound). :func:`imgdiff.claims.verify` adds those of the dates in
:data:`imgdiff.claims.evidence.VACATED_DATES` (vessels: the before date, departures, and it says why not
arrivals; aircraft: both) to the detector's objects where no object counted on either date overlaps them
(:func:`add_vacated`, which can also let a look of the other date covering :data:`LOOK_OVERLAP` of the smaller
box veto a region: :data:`imgdiff.claims.evidence.VACATED_LOOK_VETO`, off for both kinds; the evidence rules
``vacated_water`` and ``vacated_apron``).

Pixel coordinates follow rasterio: x = column, y = row, pixel (0, 0) spans [0, 1) x [0, 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import cv2
import numpy as np

from .detect.base import Detection, Detections
from .errors import check_type
from .match import _boxes, _overlapping, _shared_fraction, contrast, detail_level, structure
from .radiometry import even_subsample, matched_levels, ndwi
from .scene import Scene

#: Pixels of a region are those whose date is brighter than the other by this many robust spreads of
#: the pair's brightness difference.
EXTENT_Z = 4.0
#: A region counts only if its brightest pixel stands out by this many spreads: a hull against water
#: differs by tens of spreads, the pair's residual noise (registration, gain, speckle) by a few.
PEAK_Z = 20.0
#: The region's contrast on its own date and its mean brightening between the dates must agree within a
#: factor of 1 / this (step 4 above).
OWN_CONTRAST = 0.5
#: Smallest region (pixels of the grid): a 30 m hull at 10 m is about 3 pixels.
MIN_AREA_PX = 3
#: Longest region (metres, the long side of its box): longer bright changes are land or cloud, not a
#: hull or a raft of hulls.
MAX_LENGTH_M = 500.0
#: The other date is open water over the region when its median NDWI there exceeds this.
MIN_WATER_NDWI = 0.0
#: Width (pixels) of the ring around a region's box against which its brightening is measured (step 2):
#: water brightened all around (haze, glint) holds no object.
RING_PX = 5
#: The least fraction of the ring's pixels that must be compared (clear on both dates, outside clouds'
#: hazy rims): its median and spread are those of the surroundings only when most of them are seen. The
#: rest may lie under a cloud or its haze some way off; the region itself must not touch them (a region
#: at a cloud's edge is the cloud's). Before 2026-11-28 the whole ring had to be compared: a ship that
#: left a berth near another zone's cloud was lost for 13 of its 480 ring pixels in the after date's haze.
RING_COMPARED = 0.5
#: The least robust spread of the pair's brightness difference (reflectance) the z-scores of step 1 are taken
#: in: 1e-4, one digital number of a Sentinel-2 L1C/L2A product (reflectance quantified x 10000), the least
#: difference the products record. A noise-free pair (synthetic scenes, or an unchanged background quantised
#: alike on both dates) differs by nothing over most of its pixels: its measured spread is 0, and without the
#: floor no region was sought at all (a ship removed from open water went unreported). A floor relative
#: to the signal (as :data:`imgdiff.change.MIN_RELATIVE_NOISE`, 1e-5 of it: about 1e-6 here) would make a
#: single DN of quantisation a change of a hundred spreads; at one DN a quantisation step stays under
#: :data:`EXTENT_Z` (a one-DN step in every band is one spread), while a hull against water (0.1-0.2
#: brighter) stands out by a thousand. Real pairs' spreads (sensor noise, registration, water's own
#: change) are far above it: 13-26 DN on the claims benchmark's harbours and aprons, 93-276 DN on the 10 OSCD
#: city pairs (2026-11-28); the floor never binds on them.
MIN_SPREAD = 1e-4
#: :func:`apron_changes`: the least peak (spreads above the ring) of a region where either date is brighter.
#: An aircraft's paint and shadow against concrete change less than a hull against water.
APRON_PEAK_Z = 10.0
#: :func:`apron_changes`: the longest region (metres): an aircraft with its shadow, blurred.
MAX_APRON_LENGTH_M = 300.0
#: :func:`apron_changes`: the other date is plain background when the region's pixels stand out there (from
#: the ring around its box) less than this fraction of their contrast on the object's date. 0.5 until 2026-11-28;
#: with the fine-detail test (:data:`OWN_DETAIL`) guarding against what merely stands out, 0.65 (pre-registered, one
#: trial) on the outside cases' aprons (claims_outside_r3.py): draw 5 shipped 101 -> 104 and with the detectors that
#: never saw the airport 92 -> 95 of 109, draw 6 107 -> 110 and 103 -> 109 of 122, fixed cases unchanged, none lost
#: (faint pasted aircraft and a swapped departure whose other date kept 0.5-0.65 of their contrast);
#: claims.py --aircraft --sweep both ways, claims_outside.py and benchmarks/vacated_airport.py (real Beirut) identical.
PLAIN_RATIO = 0.65
#: :func:`apron_changes`: a region is an object of its date only when its box holds at least this fraction of the
#: fine (pixel-scale) detail it holds on the other date, each date's relative to its overall detail
#: (:func:`imgdiff.match.structure` over :func:`imgdiff.match.detail_level`, as :func:`imgdiff.match.reconcile`
#: judges a smoothed-over place): an aircraft adds sharp edges where it stands, the filled place of one removed from
#: the image is smooth. On 2026-11-28 (benchmarks/claims.py --aircraft --sweep, cloud-before renderings) the place of
#: a dark aircraft removed from the after date, filled by inpainting with the light of the taxiway beside it, stood
#: out there 2.5 times as much as the aircraft had (plain apron before, by :data:`PLAIN_RATIO`) and read as an arrival
#: in a zone every aircraft had left; its box held 0.49 times the before date's detail. Found regions of the outside
#: cases' aprons (claims_outside_r3.py, fixed cases and draws 5-6) hold 0.3-0.9 or 1.0 and more, none in between
#: (measured with the levels over every compared pixel; the claims came out the same with the levels as here).
OWN_DETAIL = 1.0
#: :func:`apron_changes`: a region of one date whose box, grown by this many pixels, overlaps a stronger
#: one's box grown by as many is part of its object (boxes less than 2 x MERGE_PX pixels apart).
MERGE_PX = 2
#: :func:`add_vacated`: a look (weak detection) of the other date vetoes a region only when their boxes share at
#: least this fraction of the smaller box's area. A look that grazes the region's box (a sliver of a pixel
#: in common) is not the other date holding something there: on 2026-11-28 a departed aircraft
#: (claims_outside_r3 draw 5 --honest, ax06_42f35cf8) was dropped for an after-date look of score 0.19
#: whose box touched its region's by 0.8 px. Counted objects still veto at any overlap.
LOOK_OVERLAP = 0.25
#: The score given to a region's object (:attr:`Detection.score`): the evidence bar of the claims
#: (:data:`imgdiff.claims.MIN_EVIDENCE_SCORE`), which the region clears by the change itself.
SCORE = 0.5


def _brightness(scene: Scene, names: tuple[str, ...]) -> np.ndarray | None:
    """Mean of the bands ``names`` the scene has (at least B02 B03 B04), None without them."""
    have = [n for n in names if n in scene.bands]
    if not all(n in have for n in ("B02", "B03", "B04")):
        return None
    return np.mean(np.stack([scene.bands[n] for n in have]), axis=0, dtype=np.float32)


def _difference(before: Scene, after: Scene, compared: np.ndarray | None,
                bands: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, float] | None:
    """Brightness of each date, the pixels compared, the difference before - after in robust spreads,
    that spread (reflectance of the before date, at least :data:`MIN_SPREAD`) and the gain (before / after).

    The after date is matched to the before date by a gain and an offset: its deviations from its median
    scaled by the ratio of the dates' interquartile ranges over the pixels sampled
    (:func:`imgdiff.radiometry.matched_levels`, as :func:`imgdiff.match.contrast_gain`: an offset such as path
    radiance leaves it alone), its median moved onto the before date's. (Scaled by the ratio of the
    medians alone, a top-of-atmosphere date's path radiance left every bright surface's own contrast in
    the difference: a quay then brightened with the hull beside it, as one region.)"""
    bb, ba = _brightness(before, bands), _brightness(after, bands)
    if bb is None or ba is None or bb.shape != ba.shape:
        return None
    ok = before.valid & after.valid & np.isfinite(bb) & np.isfinite(ba)
    if compared is not None:
        ok &= compared
    idx = even_subsample(np.flatnonzero(ok))
    if idx.size < 100:
        return None
    # contrast_gain's ratio over the pixels already sampled (the same ones it would pick)
    matched, scale = matched_levels(ba, bb.ravel()[idx], ba.ravel()[idx])
    d = bb - matched
    ds = d.ravel()[idx]
    # at least MIN_SPREAD: a noise-free pair's measured spread is 0 (nothing was sought then)
    spread = max(1.4826 * float(np.median(np.abs(ds - np.median(ds)))), MIN_SPREAD)
    return bb, ba, ok, np.where(ok, d / np.float32(spread), 0).astype(np.float32), spread, scale


def _regions(zs: np.ndarray, ok: np.ndarray, pixel: tuple[float, float], max_length_m: float,
             peak_z: float = PEAK_Z):
    """Candidate regions of a z-score image (step 2 of the module's recipe): yields the region's
    box (x, y, width, height) in pixels, its mask inside the box, its area and its peak above the ring."""
    h, w = zs.shape
    gx, gy = pixel
    n, lab, stats, _ = cv2.connectedComponentsWithStats((zs > EXTENT_Z).astype(np.uint8), connectivity=8)
    for i in range(1, n):
        x, y, bw, bh, area = (int(v) for v in stats[i])
        if area < MIN_AREA_PX or max(bw * gx, bh * gy) > max_length_m:
            continue
        if x == 0 or y == 0 or x + bw == w or y + bh == h:
            continue
        # the box all compared: the object's pixels are seen on both dates
        if not ok[y:y + bh, x:x + bw].all():
            continue
        r0, r1, c0, c1 = max(y - RING_PX, 0), min(y + bh + RING_PX, h), max(x - RING_PX, 0), min(x + bw + RING_PX, w)
        seen, own = ok[r0:r1, c0:c1], lab[r0:r1, c0:c1] == i
        # not at a cloud's, a shadow's or no-data's edge: no pixel next to the region's (8-connected) is
        # hidden, so the region ends where its date stops being brighter, not where the comparison stops
        # (the window reaches past the box: a region touches no grid edge)
        if (cv2.dilate(own.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~seen).any():
            continue
        outside = np.ones(seen.shape, bool)
        outside[y - r0:y - r0 + bh, x - c0:x - c0 + bw] = False  # the ring: the window outside the box
        if seen[outside].sum() < RING_COMPARED * outside.sum():
            continue
        sub = lab[y:y + bh, x:x + bw] == i
        # its change above that of its surroundings' compared pixels, in spreads of the pair's difference
        # (or of the surroundings' own, where they differ more: haze, glint, a stirred-up harbour)
        ring = zs[r0:r1, c0:c1][~own & seen]
        level = float(np.median(ring))
        local = 1.4826 * float(np.median(np.abs(ring - level)))
        peak = (float(zs[y:y + bh, x:x + bw][sub].max()) - level) / max(1.0, local)
        if peak >= peak_z:
            yield (x, y, bw, bh), sub, area, peak


def _object(box: tuple[int, int, int, int], sub: np.ndarray, score: float, cls: str, pixel: tuple[float, float],
            extra: dict) -> Detection:
    x, y, bw, bh = box
    length, width, heading = _shape(sub, *pixel)
    ys, xs = np.nonzero(sub)
    return Detection(box=(float(x), float(y), float(x + bw), float(y + bh)), score=score, cls=cls,
                     length_m=length, width_m=width, heading_deg=heading,
                     centroid=(float(x + xs.mean() + 0.5), float(y + ys.mean() + 0.5)), extra={"vacated": extra})


def _water(scene: Scene) -> tuple[np.ndarray, np.ndarray | None]:
    """NDWI of ``scene`` and the vessel detector's open water on it, both without the path radiance the
    detector takes off (:func:`imgdiff.detect.vessels.remove_haze`: nothing on surface-reflectance
    scenes like the training ports). Path radiance lifts B03 more than B08, and with it the NDWI of
    dark land: on a top-of-atmosphere (L1C) date a dark roof or street can read as water."""
    from .detect.vessels import remove_haze, water_mask

    clear, water = remove_haze(scene, water_mask(scene))
    return ndwi(clear.bands["B03"], clear.bands["B08"]), water


def _empty(before: Scene, after: Scene) -> tuple[Detections, Detections]:
    px = before.pixel_size_m
    return Detections((), before.crs, before.transform, px), Detections((), after.crs, after.transform, px)


def _by_strength(items: list[Detection], scene: Scene, pixel: tuple[float, float]) -> Detections:
    return Detections(tuple(sorted(items, key=lambda o: -o.extra["vacated"]["peak_z"])), scene.crs, scene.transform,
                      pixel)


def water_changes(before: Scene, after: Scene, *, compared: np.ndarray | None = None,
                  cls: str = "vessel", dates: Sequence[str] = ("before", "after")) -> tuple[Detections, Detections]:
    """Objects bright on one date at places that are open water on the other.

    Parameters
    ----------
    before, after : Scene
        A co-registered pair on one grid (``after`` warped onto ``before``), reflectance, with at
        least B02 B03 B04 B08 (otherwise nothing is found).
    compared : ndarray of bool, shape (rows, cols), optional
        Pixels that may be compared (e.g. clear on both dates and outside clouds' hazy rims);
        default: valid on both dates.
    cls : str
        Class of the objects returned.
    dates : sequence of {"before", "after"}
        The dates whose objects are sought (the other's come back empty).

    Returns
    -------
    (Detections, Detections)
        Objects of the before date (bright before, water after: departed) and of the after date
        (arrived), on the pair's grid, strongest first; boxes in pixels, lengths and widths in
        metres (ground size of the grid's pixels, :attr:`Scene.pixel_size_m`), score :data:`SCORE`,
        ``extra["vacated"]``: ``peak_z`` (spreads above the ring), ``area_px``, ``water_ndwi`` (the
        other date's median NDWI over the region, path radiance taken off; step 3 of the module),
        ``contrast`` and ``change`` (the box's contrast on its date and its mean brightening, both in the
        reflectance of the object's date).

    Notes
    -----
    The noise spread is measured over every compared pixel (an even subsample of at most 200,000):
    a pair that differs a lot everywhere (seasons, haze) has a wide spread, and only stronger
    regions count; so does water that differs a lot around a region (a hazy or glinting date).
    """
    check_type(before, Scene, "water_changes: before", "read it with imgdiff.read_scene(path)")
    check_type(after, Scene, "water_changes: after", "read it with imgdiff.read_scene(path)")
    if not all("B08" in s.bands for s in (before, after)):
        return _empty(before, after)
    diff = _difference(before, after, compared, ("B02", "B03", "B04", "B08"))
    if diff is None:
        return _empty(before, after)
    bb, ba, ok, z, spread, scale = diff
    pixel = before.pixel_size_m
    out = []
    # the difference is in the before date's units: an after-date object's brightening is brought back to
    # its own date's, where its contrast is measured (a pair with a gain between its dates)
    for date, sign, own, other, b_own, unit in (("before", 1.0, before, after, bb, 1.0),
                                                ("after", -1.0, after, before, ba, scale)):
        items = []
        if date not in dates:
            out.append(_by_strength(items, own, pixel))
            continue
        zs = sign * z
        water_index, open_water = _water(other)
        for (x, y, bw, bh), sub, area, peak in _regions(zs, ok, pixel, MAX_LENGTH_M):
            nd = water_index[y:y + bh, x:x + bw][sub]
            water = float(np.nanmedian(nd)) if np.isfinite(nd).any() else math.nan
            if not water > MIN_WATER_NDWI:
                continue
            if open_water is not None and not open_water[y:y + bh, x:x + bw][sub].any():
                continue  # a pond, a wet roof: no ship sails off into water that is not open
            gain = zs[y:y + bh, x:x + bw]
            rise = float(gain[gain > 0].mean()) * spread / unit  # the box's mean brightening (its date's reflectance)
            own_contrast = contrast(b_own, (float(x), float(y), float(x + bw), float(y + bh)))
            if not OWN_CONTRAST * rise <= own_contrast <= rise / OWN_CONTRAST:
                continue
            items.append(_object((x, y, bw, bh), sub, SCORE, cls, pixel, {
                "peak_z": round(peak, 1), "area_px": area, "water_ndwi": round(water, 3),
                "contrast": round(own_contrast, 4), "change": round(rise, 4)}))
        out.append(_by_strength(items, own, pixel))
    return out[0], out[1]


def apron_changes(before: Scene, after: Scene, *, compared: np.ndarray | None = None,
                  cls: str = "aircraft", dates: Sequence[str] = ("before", "after")) -> tuple[Detections, Detections]:
    """Objects seen on one date at places that are plain background on the other (an aircraft on its stand).

    Like :func:`water_changes`, but an aircraft may be brighter or darker than the apron (white or
    grey paint, its shadow), and the other date's ground is not water: regions where either date is
    brighter (:data:`APRON_PEAK_Z`, at most :data:`MAX_APRON_LENGTH_M` long, compared as there; a region whose box
    lies less than 2 x :data:`MERGE_PX` pixels from a stronger one's of the same date is part of its object),
    whose pixels stand out from the ring around its box on one date and less than
    :data:`PLAIN_RATIO` times as much on the other (:func:`imgdiff.match.contrast` over the region's
    pixels instead of the whole box: a roof or a building in a corner of the box that the aircraft's
    shape leaves empty stands out on both dates alike): the object is on the date where it stands
    out, when its box holds at least :data:`OWN_DETAIL` times as much fine detail there as on the other
    date (the filled place of an aircraft removed from the image stands out but is smooth). Needs B02
    B03 B04 (B08 is used when both dates have it).

    Parameters
    ----------
    before, after : Scene
        A co-registered pair on one grid (``after`` warped onto ``before``), reflectance.
    compared : ndarray of bool, shape (rows, cols), optional
        Pixels that may be compared; default: valid on both dates.
    cls : str
        Class of the objects returned.
    dates : sequence of {"before", "after"}
        The dates whose objects are sought (the other's come back empty).

    Returns
    -------
    (Detections, Detections)
        As :func:`water_changes`; ``extra["vacated"]``: ``peak_z``, ``area_px``, ``contrast`` (the
        region's pixels, on the object's date) and ``other_contrast`` (on the other date), reflectance.
    """
    check_type(before, Scene, "apron_changes: before", "read it with imgdiff.read_scene(path)")
    check_type(after, Scene, "apron_changes: after", "read it with imgdiff.read_scene(path)")
    bands = ("B02", "B03", "B04", "B08") if all("B08" in s.bands for s in (before, after)) else ("B02", "B03", "B04")
    diff = _difference(before, after, compared, bands)
    if diff is None:
        return _empty(before, after)
    bb, ba, ok, z, _, _ = diff
    pixel = before.pixel_size_m
    found = [r for sign in (1.0, -1.0) for r in _regions(sign * z, ok, pixel, MAX_APRON_LENGTH_M, APRON_PEAK_Z)]
    items: tuple[list[Detection], list[Detection]] = ([], [])
    levels: tuple[float, float] | None = None  # each date's overall fine detail, once a region needs it
    for (x, y, bw, bh), sub, area, peak in sorted(found, key=lambda r: -r[3]):
        box = (float(x), float(y), float(x + bw), float(y + bh))
        cb, ca = contrast(bb, box, within=sub), contrast(ba, box, within=sub)
        if not (math.isfinite(cb) and math.isfinite(ca)) or min(cb, ca) >= PLAIN_RATIO * max(cb, ca):
            continue
        k = 0 if cb > ca else 1
        if ("before", "after")[k] not in dates:  # objects merge only with their own date's
            continue
        # ... and the place holds an object's fine detail on that date, not the smooth fill of one removed
        if levels is None:  # away from every place that changed: one aircraft is much of a small apron's detail
            away = ok.copy()
            for (rx, ry, rw, rh), *_ in found:
                away[max(0, ry - 2):ry + rh + 2, max(0, rx - 2):rx + rw + 2] = False
            levels = (detail_level(bb, away), detail_level(ba, away))
        if all(math.isfinite(lv) and lv > 0 for lv in levels):
            detail = [structure(img, box) / lv for img, lv in zip((bb, ba), levels)]
            if all(math.isfinite(v) for v in detail) and detail[k] < OWN_DETAIL * detail[1 - k]:
                continue
        # the bright and the dark part of one object (paint and shadow) and its fragments a pixel or two
        # apart are one object
        g = 2 * MERGE_PX  # one box grown by twice the gap: both grown by it
        if _overlapping((box[0] - g, box[1] - g, box[2] + g, box[3] + g), _boxes(items[k])).any():
            continue
        items[k].append(_object((x, y, bw, bh), sub, SCORE, cls, pixel, {
            "peak_z": round(peak, 1), "area_px": area, "contrast": round(max(cb, ca), 4),
            "other_contrast": round(min(cb, ca), 4)}))
    return _by_strength(items[0], before, pixel), _by_strength(items[1], after, pixel)


def _shape(mask: np.ndarray, gx: float, gy: float) -> tuple[float, float, float]:
    """Length and width (metres) of a region from its second moments (the sides of the rectangle with
    the same moments), and the direction of its long axis (degrees clockwise from grid north, [0, 180))."""
    ys, xs = np.nonzero(mask)
    px, py = xs * gx, ys * gy
    if px.size < 2:
        return gx, gy, math.nan
    # population covariance: the mask is all of the region (the sample estimate made a 3-pixel hull 20 % long)
    c = np.cov(np.stack([px, py]), bias=True) + np.eye(2) * (gx * gy / 12.0)  # a pixel's own extent
    ev, vec = np.linalg.eigh(c)
    length, width = (math.sqrt(12.0 * max(float(v), 0.0)) for v in ev[::-1])
    vx, vy = vec[:, 1]
    heading = math.degrees(math.atan2(vx, -vy)) % 180.0
    return length, width, heading


def add_vacated(before: Detections, after: Detections, vacated_before: Detections, vacated_after: Detections,
                *, looks_before: Detections | None = None, looks_after: Detections | None = None,
                probability: float | None = None) -> tuple[Detections, Detections]:
    """The objects of each date, and the regions of :func:`water_changes` (or :func:`apron_changes`)
    that no object explains.

    A region is added to its date's objects when its box overlaps no object of either date (an
    object counted there already accounts for the change; so does an object of the other date,
    e.g. a ship that moved along its berth) and shares at least :data:`LOOK_OVERLAP` of the smaller
    box's area with no look of the other date (a weaker detection, e.g. down to half the detector's
    threshold; a look that merely grazes the box does not count): the other date held something there, so the place is
    not open water or plain apron on it, and the change is one thing for another (an object
    replaced by the smear of its removal, a small boat by a barge), not an arrival or a departure.
    Added objects are tagged like :func:`imgdiff.match.reconcile`'s: ``extra["pair"]`` with a new
    place ``id``, ``place`` ``"changed"``, the region's score on its date and 0 on the other, and
    ``probability`` (default: the score).

    Parameters
    ----------
    before, after : Detections
        The objects of each date (e.g. :attr:`imgdiff.match.Reconciled.before`), on the grid of
        the regions.
    vacated_before, vacated_after : Detections
        The regions of each date.
    looks_before, looks_after : Detections, optional
        Every detection of each date down to a low score (none: no look is known).
    probability : float, optional
        The probability recorded for each added object.
    """
    ids = [(d.extra.get("pair") or {}).get("id") for d in (*before.items, *after.items)]
    next_id = max((i for i in ids if isinstance(i, int)), default=-1) + 1
    counted = _boxes((*before.items, *after.items))
    looks = [_boxes(ls.items if ls is not None else ()) for ls in (looks_before, looks_after)]
    added: tuple[list[Detection], list[Detection]] = ([], [])
    for k, (regions, score_key) in enumerate(((vacated_before, "score_before"), (vacated_after, "score_after"))):
        for d in regions.items:
            if _overlapping(d.box, counted).any() or (_shared_fraction(d.box, looks[1 - k]) >= LOOK_OVERLAP).any():
                continue
            pair = {"id": next_id, "place": "changed", "score_before": 0.0, "score_after": 0.0,
                    score_key: round(float(d.score), 3),
                    "probability": round(float(d.score if probability is None else probability), 3)}
            next_id += 1
            added[k].append(replace(d, extra={**d.extra, "pair": pair}))
    out = []
    for dets, extra in ((before, added[0]), (after, added[1])):
        items = sorted((*dets.items, *extra), key=lambda o: -o.score)
        out.append(Detections(tuple(items), dets.crs, dets.transform, dets.pixel_size_m))
    return out[0], out[1]
