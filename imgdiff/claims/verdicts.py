"""Verdicts: one claim decided from the counts, visibility and detector figures (pure functions).

Each claim gets a :class:`Verdict`: ``SUPPORTED``, ``REFUTED`` or ``INCONCLUSIVE``,
with the counts in the zone on both dates, the objects matched across dates
(:mod:`imgdiff.match`), a confidence and the reasons.

Rules (see :func:`evaluate_claim`):

* Objects seen in the visible part of a zone decide ``present_*`` / ``absent_*`` however much
  of it is hidden (cloud, cloud shadow, no-data or outside the scene).
* **INCONCLUSIVE** when a verdict that would rest on *not* seeing objects on one date has
  less than :data:`MIN_CLEAR_FRACTION_ABSENCE` of the zone clear; when a count comparison has less than
  :data:`MIN_CLEAR_FRACTION` of the zone clear on a date, or would change with the hidden
  part filled at the visible part's density (:func:`hidden_capacity`); when a claim comparing the
  two dates meets a failed co-registration (reliability below
  :data:`MIN_REGISTRATION_RELIABILITY` or uncertainty above
  :data:`MAX_REGISTRATION_UNCERTAINTY_PX`); or when a verdict resting on absence concerns
  objects shorter than the detector's measured limit (``min_length_m`` below it); or when the verdict
  of a comparison would change if the zone's *undecided* objects were real: weak detections whose place
  cannot be compared with the other date (in a cloud's hazy rim, or hidden there;
  :class:`imgdiff.match.Reconciled`). A claim on one date takes its date's undecided objects as the
  detector alone would (:data:`COUNT_UNDECIDED_SINGLE`). Counts stay those of the confirmed objects.
* Otherwise the counts decide: ``present_*`` needs at least one object on that date,
  ``absent_*`` none, ``decreased`` / ``increased`` / ``unchanged`` compare the counts
  of objects at places visible on both dates, a difference within :func:`count_tolerance`
  (10 % of the larger count, rounded down) counting as no change.

Confidence (a heuristic in [0, 1] from the detector's measured figures): a verdict resting on
detections has ``1 - prod(1 - p_i)`` (at least one is real), ``p_i`` each object's calibrated
probability (the detector's pooled precision p when its card has no calibration table); one
resting on their absence has the recall r at the claim's lengths (an object present would have
been seen), scaled by the clear fraction of the zone; a count comparison with difference d beyond
the tolerance t has ``1 - (1 - min(q, r))^(|d| - t)`` (``min(q, r)`` when the counts agree within it), q
the mean calibrated probability of the zone's objects, scaled by the smaller clear fraction of the two dates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..detect.base import Detections
from ..match import ObjectMatch, zone_match
from ..scene import Scene
from ..zones import Zones, zone_masks
from .files import Claim
from .performance import MIN_USEFUL_RECALL, DetectorPerformance

SUPPORTED, REFUTED, INCONCLUSIVE = "SUPPORTED", "REFUTED", "INCONCLUSIVE"
#: A zone must be at least this clear (no cloud, shadow, no-data) on every date a claim depends on.
MIN_CLEAR_FRACTION = 0.5
#: ... and this clear when the claim rests on not seeing objects (hidden objects would flip it).
MIN_CLEAR_FRACTION_ABSENCE = 0.75
#: Co-registration counts as failed below this reliability or above this 1-sigma uncertainty (pixels);
#: claims comparing the two dates are then not decided.
MIN_REGISTRATION_RELIABILITY = 0.25
MAX_REGISTRATION_UNCERTAINTY_PX = 1.0
#: Counts within this fraction of the larger count are "unchanged" (detector noise between dates).
COUNT_TOLERANCE_FRACTION = 0.1
#: A claim on one date (present_* / absent_*) whose verdict the undecided looks of that date would change
#: (weak detections at places the other date cannot show: hidden there, or in a cloud's hazy rim) takes them
#: as the detector alone would: counted. The other date cannot confirm them, but it has nothing to say about
#: that date either. Measured 2026-11-26 against INCONCLUSIVE (all claims right): outside cases 447 against
#: 445 of 502, --honest 405 against 401; fresh draws (claims_outside_r3.py --draw 1..6) 1020 against 1013 of
#: 1239, --honest 882 against 873; claims.py ports, aprons and claims_outside.py unchanged, --aircraft
#: --sweep 1951 against 1949 of 2024, --sweep (3 ports) 752 against 750 of 759; glint probes 125 against
#: 123 of 172. No claim that should be INCONCLUSIVE lost it. Comparisons keep INCONCLUSIVE.
COUNT_UNDECIDED_SINGLE = True


@dataclass(frozen=True)
class ZoneState:
    """How much of a zone could be seen on one date.

    Attributes
    ----------
    zone : str
    area_px : float
        Zone area in pixels of the grid (from its geometry, so parts outside the scene count).
    clear_fraction : float
        Fraction of the zone valid and free of cloud and shadow.
    cloud_fraction : float
        Fraction of the zone under cloud or shadow (a cloud's thick veil included,
        :data:`imgdiff.clouds.CLOUD_VEIL_ALPHA`).
    nodata_fraction : float
        Fraction of the zone with no data (including outside the scene).
    """

    zone: str
    area_px: float
    clear_fraction: float
    cloud_fraction: float
    nodata_fraction: float

    def to_dict(self) -> dict[str, Any]:
        return {"area_px": round(self.area_px, 1), "clear_fraction": round(self.clear_fraction, 4),
                "cloud_fraction": round(self.cloud_fraction, 4), "nodata_fraction": round(self.nodata_fraction, 4)}


def zone_states(zones: Zones, scene: Scene, cloud: np.ndarray) -> dict[str, ZoneState]:
    """:class:`ZoneState` of every zone on one date (zones reprojected to the scene's CRS)."""
    masks = zone_masks(zones, scene.crs, scene.transform, scene.shape)
    z = zones.to_crs(scene.crs)
    px_area = abs(scene.transform.a * scene.transform.e - scene.transform.b * scene.transform.d)
    out = {}
    for n, m in masks.items():
        area = max(float(z.geometries[n].area) / px_area if px_area else float(m.sum()), float(m.sum()), 1e-9)
        valid = scene.valid & m
        cl = cloud & valid
        clear = valid & ~cloud
        out[n] = ZoneState(n, area, float(clear.sum()) / area, float(cl.sum()) / area,
                           max(0.0, 1.0 - float(valid.sum()) / area))
    return out


@dataclass(frozen=True)
class Verdict:
    """The verdict on one claim, with its evidence.

    Attributes
    ----------
    claim : Claim
    verdict : str
        ``SUPPORTED``, ``REFUTED`` or ``INCONCLUSIVE``.
    confidence : float
        In [0, 1] (0 for INCONCLUSIVE).
    count_before, count_after : int
        Objects in the zone on each date (at least ``min_length_m`` long).
    match : ObjectMatch
        Objects of the zone that stayed, departed, arrived (indices into the dates' detections).
    reasons : tuple of str
        Why this verdict.
    caveats : tuple of str
        What a reader should keep in mind.
    undecided_before, undecided_after : int
        Undecided objects of the zone on each date (weak detections whose place cannot be compared
        with the other date; :class:`imgdiff.match.Reconciled`), at least ``min_length_m`` long; not in the counts.
    """

    claim: Claim
    verdict: str
    confidence: float
    count_before: int
    count_after: int
    match: ObjectMatch
    reasons: tuple[str, ...]
    caveats: tuple[str, ...] = ()
    undecided_before: int = 0
    undecided_after: int = 0


def count_tolerance(n_before: int, n_after: int) -> int:
    """Count difference that still means "no change": :data:`COUNT_TOLERANCE_FRACTION` of the larger
    count, rounded down (0 below 10 objects), since detectors miss and add a few objects per date."""
    return int(math.floor(COUNT_TOLERANCE_FRACTION * max(n_before, n_after)))


def hidden_capacity(n_before: int, n_after: int, visible_fraction: float) -> int:
    """Most objects the hidden part of a zone could plausibly hold on either date.

    The busier date's density in the part of the zone seen on both dates (``visible_fraction``
    of it), over the hidden rest, in whole objects (rounded down): ``floor(max(n_before,
    n_after) * (1 - v) / v)``. A comparison decided from the visible part must still hold with
    that many objects added to (or taken from) either date. Large when little is visible. At least
    one when less than :data:`MIN_CLEAR_FRACTION_ABSENCE` of the zone is seen on both dates: a hidden
    quarter can hold an object where the visible part holds none (the rule of a single date's absence;
    without it, nothing seen on either date decided ``unchanged`` however much of the zone was hidden).
    """
    v = float(np.clip(visible_fraction, 0.0, 1.0))
    if v <= 0:
        return 10 ** 6
    cap = int(math.floor(max(n_before, n_after) * (1.0 - v) / v + 1e-9))
    return max(cap, 1) if v < MIN_CLEAR_FRACTION_ABSENCE else cap


def _at_least_one(p: float, n: int) -> float:
    return 1.0 - (1.0 - p) ** max(n, 0) if n > 0 else 0.0


def object_probability(d: Any, default: float) -> float:
    """Probability that an object is real: its calibrated evidence (``extra["pair"]["probability"]``,
    :func:`imgdiff.match.reconcile`), else ``default`` (the detector's pooled precision)."""
    v = (d.extra.get("pair") or {}).get("probability")
    return float(default) if v is None else float(v)


def any_real(probabilities: Sequence[float]) -> float:
    """Probability that at least one of independent objects is real: ``1 - prod(1 - p_i)`` (0 for none)."""
    return float(1.0 - np.prod([1.0 - float(p) for p in probabilities])) if len(probabilities) else 0.0


def evaluate_claim(
    claim: Claim,
    before: Detections,
    after: Detections,
    state_before: ZoneState,
    state_after: ZoneState,
    *,
    registration_reliability: float,
    performance: DetectorPerformance,
    state_both: ZoneState | None = None,
    undecided_before: Detections | None = None,
    undecided_after: Detections | None = None,
) -> Verdict:
    """Decide one claim from the detections of both dates (pure function).

    Parameters
    ----------
    claim : Claim
    before, after : Detections
        Detections of the claim's object class on each date, zones assigned, on the
        common grid of the pair (cloud-masked detections already removed).
    state_before, state_after : ZoneState
        Visibility of the claim's zone on each date.
    registration_reliability : float
        Of the pair's co-registration, in [0, 1] (0 when it failed; see :func:`registration_quality`).
    performance : DetectorPerformance
    state_both : ZoneState, optional
        Visibility of the zone on both dates at once (clear on both; :func:`zone_states` of the
        pair). Without it the part seen on both dates is bounded from the two dates' states.
    undecided_before, undecided_after : Detections, optional
        Undecided objects of each date (:class:`imgdiff.match.Reconciled`: weak detections whose place
        cannot be compared with the other date), zones assigned. Not counted; a verdict that would
        change if those of the claim's zone on the dates it depends on were real (any number of them,
        from none to all) is INCONCLUSIVE. A comparison of the dates takes only those at places seen on
        both dates (``"not_comparable"``: in a cloud's hazy rim), as it leaves out objects at places
        hidden on one date.

    Notes
    -----
    Partly hidden zones (cloud, shadow, no data, outside the scene) are decided from their
    visible part whenever it can decide: objects seen on a date show ``present_*`` (and refute
    ``absent_*``) however much of the zone is hidden; a verdict resting on *not* seeing objects
    needs :data:`MIN_CLEAR_FRACTION_ABSENCE` of the zone clear (objects of the other date at
    places hidden on the claim's date are named in a caveat); a count comparison holds only if it still holds with
    the hidden part filled at the density of the visible part (:func:`hidden_capacity`).

    Returns
    -------
    Verdict
    """
    ml = claim.min_length_m or None  # 0 m: every object, as no min_length_m
    b = before.filter(min_length_m=ml) if ml else before
    a = after.filter(min_length_m=ml) if ml else after
    hidden = 0
    if len(claim.dates()) == 2:
        # a comparison counts only objects at places visible on both dates: an object under cloud on
        # one date has neither departed nor arrived (imgdiff.match.reconcile tags such places "hidden")
        def seen_both(d: Any) -> bool:
            return (d.extra.get("pair") or {}).get("place") != "hidden"

        hidden = sum(1 for d in (*b.items, *a.items) if d.in_zone(claim.zone) and not seen_both(d))
        b = b.filter([seen_both(d) for d in b.items])
        a = a.filter([seen_both(d) for d in a.items])
    m = zone_match(b, a, claim.zone)
    # translate indices back to the unfiltered collections (ids in the GeoJSON files)
    pos_b = {id(d): i for i, d in enumerate(before.items)}
    pos_a = {id(d): i for i, d in enumerate(after.items)}
    ib = [pos_b[id(d)] for d in b.items]
    ia = [pos_a[id(d)] for d in a.items]
    m = ObjectMatch(tuple((ib[i], ia[j]) for i, j in m.stayed), tuple(ib[i] for i in m.departed),
                    tuple(ia[j] for j in m.arrived), m.distance_m)
    nb = sum(1 for d in b.items if d.in_zone(claim.zone))
    na = sum(1 for d in a.items if d.in_zone(claim.zone))
    # undecided objects of the zone on the dates the claim depends on (see the end)
    two = len(claim.dates()) == 2
    ub = _undecided_in(undecided_before, claim, two_dates=two) if "before" in claim.dates() else 0
    ua = _undecided_in(undecided_after, claim, two_dates=two) if "after" in claim.dates() else 0
    states = {"before": state_before, "after": state_after}
    p = performance.precision
    r = performance.recall_at(ml)
    what = f"{claim.object}{f' >= {ml:g} m' if ml else ''}"
    counts = f"{nb} {what} before, {na} after in {claim.zone}"
    reasons: list[str] = []
    caveats: list[str] = []

    # --- can the evidence decide at all?
    n_claim = nb if claim.dates() == ("before",) else na
    single = len(claim.dates()) == 1
    # a one-date claim takes its date's undecided objects as the detector alone would (COUNT_UNDECIDED_SINGLE):
    # seen, they decide presence however much of the zone is hidden, as confirmed objects do
    n_seen = n_claim + ((ub if claim.dates() == ("before",) else ua) if single and COUNT_UNDECIDED_SINGLE else 0)
    negative = claim.rests_on_absence(n_seen if single else None)
    for date in claim.dates():
        s = states[date]
        if single and not negative:
            # objects seen in the visible part decide, however much of the zone is hidden
            if s.clear_fraction < 0.98:
                caveats.append(f"{1 - s.clear_fraction:.0%} of {claim.zone} is not visible on the {date} date; "
                               f"the {n_seen} object(s) seen in the visible part decide")
            continue
        # a comparison is decided below from the part seen on both dates (hidden_capacity)
        need = MIN_CLEAR_FRACTION_ABSENCE if negative and single else MIN_CLEAR_FRACTION
        if s.area_px < 1.0:  # no pixel centre inside: nothing of it is seen, but not for want of data
            reasons.append(f"zone {claim.zone} covers {s.area_px:.2g} px of the grid, less than one pixel: "
                           "too small to see objects in")
        elif s.clear_fraction < MIN_CLEAR_FRACTION:
            reasons.append(f"zone {claim.zone} is mostly hidden on the {date} date: only {s.clear_fraction:.0%} "
                           f"clear ({s.cloud_fraction:.0%} cloud/shadow, {s.nodata_fraction:.0%} no data)")
        elif s.clear_fraction < need:
            reasons.append(f"zone {claim.zone} is only {s.clear_fraction:.0%} clear on the {date} date; "
                           f"objects could be hidden under {s.cloud_fraction:.0%} cloud/shadow or "
                           f"{s.nodata_fraction:.0%} no data, so their absence cannot be shown")
        elif s.clear_fraction < 0.98:
            caveats.append(f"{1 - s.clear_fraction:.0%} of {claim.zone} is not visible on the {date} date")
    if single and negative:
        # objects of the other date at places hidden on the claim's date may still be there
        date = claim.dates()[0]
        other = a if date == "before" else b
        under = [d for d in other.items if d.in_zone(claim.zone)
                 and (d.extra.get("pair") or {}).get("hidden_on") in (date, "both")]
        if under:  # a caveat, not a reason: bright object-wide changes (a smeared berth) can pass for cloud
            caveats.append(f"{len(under)} {claim.object} seen in {claim.zone} on the "
                           f"{'after' if date == 'before' else 'before'} date are at places hidden on the {date} "
                           "date (cloud, shadow or no data); they may still be there")
    if len(claim.dates()) == 2 and registration_reliability < MIN_REGISTRATION_RELIABILITY:
        reasons.append(f"co-registration failed (reliability {registration_reliability:.2f}): "
                       "the dates cannot be compared object by object")
    if negative and ml is not None and ml < performance.min_length_m:
        measured = f"it finds fewer than {MIN_USEFUL_RECALL:.0%} of them; " if performance.recall_by_length else ""
        reasons.append(f"objects shorter than {performance.min_length_m:g} m are below what the {claim.object} "
                       f"detector resolves ({measured}claim counts objects >= {ml:g} m); their absence cannot be shown")
    if reasons:
        return Verdict(claim, INCONCLUSIVE, 0.0, nb, na, m, tuple([counts, *reasons]), tuple(caveats), ub, ua)
    if hidden:
        caveats.append(f"{hidden} object(s) of {claim.zone} whose place is hidden on the other date are left "
                       "out of the comparison")
    carried = [d for d in (*b.items, *a.items) if d.in_zone(claim.zone) and "carried_from" in d.extra]
    if carried:
        caveats.append(f"{len(carried)} object(s) in {claim.zone} missed by the detector on one date at a place "
                       "that did not change are counted on both dates (stayed)")
    vacated = [d for d in (*b.items, *a.items) if d.in_zone(claim.zone) and "vacated" in d.extra]
    if vacated:
        caveats.append(f"{len(vacated)} object(s) in {claim.zone} missed by the detector are seen in the change "
                       "between the dates (standing out on one date where the other shows open water or plain "
                       "apron) and counted on that date; objects side by side there count as one")
    if negative and r < 0.5:
        caveats.append(f"the {claim.object} detector's measured recall at these lengths is only {r:.0%}: "
                       "objects may have been missed")
    if ml is None and negative:
        caveats.append(f"objects shorter than {performance.min_length_m:g} m are below what the detector "
                       "resolves and are not counted")
    if registration_reliability < 0.5:
        caveats.append(f"co-registration unreliable ({registration_reliability:.2f}); zone edges may be off "
                       "by a pixel or more")

    # --- decide
    kind = claim.assertion
    if kind.startswith(("present", "absent")):
        date = kind.split("_", 1)[1]
        n = nb if date == "before" else na
        clear = states[date].clear_fraction
        seen = n > 0
        holds = seen if kind.startswith("present") else not seen
        if seen:
            conf = any_real([object_probability(x, p) for x in (b if date == "before" else a).items
                             if x.in_zone(claim.zone)])
            reasons.append(f"{n} {what} detected in {claim.zone} on the {date} date")
        else:
            conf = r * min(1.0, clear)
            reasons.append(f"no {what} detected in {claim.zone} on the {date} date "
                           f"(detector recall {r:.0%}, {clear:.0%} of the zone clear)")
        verdict = SUPPORTED if holds else REFUTED
    else:
        d = na - nb
        tol = count_tolerance(nb, na)
        if state_both is None:  # the part seen on both dates is at least what neither date hides
            vis = max(0.0, state_before.clear_fraction + state_after.clear_fraction - 1.0)
        else:
            vis = state_both.clear_fraction
        cap = hidden_capacity(nb, na, vis)
        holds, fails = compare_counts(kind, nb, na, vis)
        mc = m.counts()
        if not (holds or fails):
            reasons.append(f"count {nb} -> {na} ({d:+d}) in the {vis:.0%} of {claim.zone} seen on both dates; the "
                           f"hidden rest could hold up to {cap} more at that density, enough to change the verdict")
            return Verdict(claim, INCONCLUSIVE, 0.0, nb, na, m, tuple([counts, *reasons]), tuple(caveats), ub, ua)
        if cap:
            caveats.append(f"{1 - vis:.0%} of {claim.zone} is hidden on one date; the verdict holds with up to "
                           f"{cap} object(s) there")
        probs = [object_probability(x, p) for x in (*b.items, *a.items) if x.in_zone(claim.zone)]
        q = min(float(np.mean(probs)) if probs else p, r)
        conf = _at_least_one(q, abs(d) - tol) if abs(d) > tol else q
        conf *= min(state_before.clear_fraction, state_after.clear_fraction, 1.0)
        reasons.append(f"count {nb} -> {na} ({d:+d}{f', within +-{tol} counts as no change' if tol else ''}); "
                       f"matched across dates: {mc['stayed']} stayed, {mc['departed']} departed, "
                       f"{mc['arrived']} arrived")
        verdict = SUPPORTED if holds else REFUTED
    # --- objects the evidence could not decide (weak looks where the dates cannot be compared)
    if ub or ua:
        if single:
            flips = (nb if claim.dates() == ("before",) else na) == 0  # one real object decides presence
        else:
            vis_both = (max(0.0, state_before.clear_fraction + state_after.clear_fraction - 1.0)
                        if state_both is None else state_both.clear_fraction)
            flips = any(compare_counts(kind, nb + kb, na + ka, vis_both) != (holds, not holds)
                        for kb in range(ub + 1) for ka in range(ua + 1))
        where = " and ".join(f"{n} on the {dt} date" for n, dt in ((ub, "before"), (ua, "after")) if n)
        what_u = f"weak {claim.object} detection(s) in {claim.zone} ({where})"
        if flips and single and COUNT_UNDECIDED_SINGLE:
            counted = undecided_before if claim.dates() == ("before",) else undecided_after
            probs = [object_probability(x, p) for x in counted.items if x.in_zone(claim.zone)]
            verdict = REFUTED if verdict == SUPPORTED else SUPPORTED
            conf = any_real(probs)  # as for detected objects: the chance that what was seen is real
            reasons.append(f"{ub + ua} {what_u} counted on that date's evidence alone: their place cannot be "
                           "compared with the other date (a cloud's hazy rim, or hidden there)")
            return Verdict(claim, verdict, round(float(conf), 3), nb, na, m, tuple([counts, *reasons]),
                           tuple(caveats), ub, ua)
        if flips:
            reasons.append(f"{ub + ua} {what_u} could not be confirmed: their place is in a cloud's hazy rim "
                           "or hidden on the other date, so the dates cannot be compared there; counted, they "
                           f"would change the verdict ({verdict} from the confirmed objects)")
            return Verdict(claim, INCONCLUSIVE, 0.0, nb, na, m, tuple([counts, *reasons]), tuple(caveats), ub, ua)
        caveats.append(f"{ub + ua} {what_u} could not be confirmed (cloud rim or hidden on the other date) and are "
                       "not counted; the verdict holds with or without them")
    return Verdict(claim, verdict, round(float(conf), 3), nb, na, m, tuple([counts, *reasons]), tuple(caveats),
                   ub, ua)


def path_radiance_caveat(claim: Claim, path_radiance: Mapping[str, Mapping[str, float]]) -> str | None:
    """The caveat of a vessel claim whose dates' water was lifted by path radiance, or None.

    Parameters
    ----------
    claim : Claim
    path_radiance : mapping
        ``"before"`` / ``"after"`` -> band name -> path radiance (reflectance) the vessel detector took
        off that date (:func:`imgdiff.detect.vessels.path_radiance`); dates left out count as clear.

    Returns
    -------
    str or None
        None for aircraft claims and when no date the claim depends on reaches
        :data:`imgdiff.detect.vessels.NOTABLE_PATH_RADIANCE`.
    """
    from ..detect.vessels import NOTABLE_PATH_RADIANCE

    if claim.object != "vessels":
        return None
    lifted = []
    for date in claim.dates():
        offsets = path_radiance.get(date) or {}
        band = max(offsets, key=lambda b: offsets[b], default=None)
        if band is not None and offsets[band] >= NOTABLE_PATH_RADIANCE:
            lifted.append((date, f"{band} {offsets[band]:.3f}"))
    if not lifted:
        return None
    dates = " and ".join(d for d, _ in lifted)
    return (f"hazy or top-of-atmosphere (L1C) water on the {dates} date{'s' if len(lifted) > 1 else ''} (path "
            f"radiance {', '.join(v for _, v in lifted)} taken off before vessel scoring); the detector's figures "
            "were measured on surface-reflectance (L2A) scenes")


def compare_counts(kind: str, n_before: int, n_after: int, visible_fraction: float) -> tuple[bool, bool]:
    """(holds, fails) of a count comparison (``decreased`` / ``increased`` / ``unchanged``).

    The counts are those of the part of the zone seen on both dates (``visible_fraction`` of it);
    the verdict must hold whatever the hidden rest holds (up to :func:`hidden_capacity` objects on
    either date), a difference within :func:`count_tolerance` counting as no change. Neither holds
    nor fails when the hidden rest could change it.
    """
    d = n_after - n_before
    tol = count_tolerance(n_before, n_after)
    cap = hidden_capacity(n_before, n_after, visible_fraction)
    if kind == "decreased":
        return d + cap < -tol, d - cap >= -tol
    if kind == "increased":
        return d - cap > tol, d + cap <= tol
    return abs(d) + cap <= tol, abs(d) - cap > tol


def _undecided_in(dets: Detections | None, claim: Claim, *, two_dates: bool) -> int:
    """Undecided objects of ``dets`` in the claim's zone (at least ``min_length_m``); for a claim comparing
    the dates only those at places seen on both (not hidden on either date)."""
    if dets is None:
        return 0
    ml = claim.min_length_m
    u = dets.filter(min_length_m=ml) if ml else dets
    return sum(1 for d in u.items if d.in_zone(claim.zone)
               and not (two_dates and (d.extra.get("pair") or {}).get("undecided") == "hidden"))


def registration_quality(reg: Any) -> float:
    """The reliability of a :class:`~imgdiff.coregister.Registration` in [0, 1], 0 when its shift is too uncertain.

    0 when the 1-sigma uncertainty exceeds :data:`MAX_REGISTRATION_UNCERTAINTY_PX` pixels (or the
    reliability is missing or NaN), else the registration's reliability. A quality below
    :data:`MIN_REGISTRATION_RELIABILITY` is a failed co-registration (:func:`registration_failed`).
    """
    rel = float(np.nan_to_num(getattr(reg, "reliability", 0.0)))
    unc = float(getattr(reg, "uncertainty_px", math.nan))
    if math.isfinite(unc) and unc > MAX_REGISTRATION_UNCERTAINTY_PX:
        return 0.0
    return rel


def registration_failed(reg: Any) -> bool:
    """Whether a :class:`~imgdiff.coregister.Registration` counts as failed: its
    :func:`registration_quality` is below :data:`MIN_REGISTRATION_RELIABILITY` (the rule of the verdicts,
    of the change-based departures and of ``report.json``'s ``coregistration.failed``)."""
    return registration_quality(reg) < MIN_REGISTRATION_RELIABILITY
