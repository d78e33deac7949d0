"""The pipeline: read the scenes, compare them, mask clouds, detect and reconcile objects, decide the claims.

:func:`verify` runs it for a claims file, :func:`survey` without claims (``imgdiff compare
--site``); both return a :class:`Verification`. Whole tiles are read only around the zones
(:func:`read_for_zones`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .._repr import short_repr
from ..clouds import CLOUD_VEIL_ALPHA, cloud_haze, pair_clouds
from ..compare import CompareResult
from ..coregister import MAX_SHIFT_PX
from ..detect.base import Detection, Detections
from ..errors import check_type
from ..io.read import BBox
from ..match import one_zone_per_object, reconcile
from ..scene import Scene
from ..vacated import SCORE as VACATED_SCORE
from ..vacated import add_vacated, apron_changes, water_changes
from ..zones import Zones, assign_zones, inside_mask, placed
from .evidence import (
    CALIBRATED_EVIDENCE,
    LOOK_FRACTION,
    MIN_EVIDENCE_SCORE,
    STATIC_EVIDENCE_SCORE,
    STATIC_PERSISTENCE,
    VACATED_DATES,
    VACATED_LOOK_VETO,
    VACATED_OBJECTS,
)
from .files import OBJECTS, ClaimFile, ClaimsError
from .performance import DetectorPerformance, detector_performance
from .verdicts import (
    Verdict,
    ZoneState,
    evaluate_claim,
    path_radiance_caveat,
    registration_failed,
    registration_quality,
    zone_states,
)


@dataclass(frozen=True)
class Verification:
    """Everything :func:`verify` found.

    Attributes
    ----------
    claims : ClaimFile
    inputs : (Scene, Scene)
        The scenes as read (provenance).
    result : CompareResult
        The pair on the common grid, co-registration and change map.
    zones : Zones
        The zones in the grid's CRS.
    cloud : dict
        ``"before"`` / ``"after"`` -> cloud and shadow mask on the grid.
    states : dict
        ``"before"`` / ``"after"`` -> zone name -> :class:`ZoneState`.
    detections : dict
        Object kind -> (before Detections, after Detections) on the grid.
    performance : dict
        Object kind -> :class:`DetectorPerformance`.
    verdicts : tuple of Verdict
    undecided : dict
        Object kind -> (before Detections, after Detections) of undecided objects: weak detections
        whose place cannot be compared with the other date (:class:`imgdiff.match.Reconciled`);
        not counted.
    path_radiance : dict
        ``"before"`` / ``"after"`` -> band name -> path radiance (reflectance) the vessel detector took
        off that date (:func:`path_radiance`); empty when vessels were not looked for.
    """

    claims: ClaimFile
    inputs: tuple[Scene, Scene]
    result: CompareResult
    zones: Zones
    cloud: dict[str, np.ndarray]
    states: dict[str, dict[str, ZoneState]]
    detections: dict[str, tuple[Detections, Detections]]
    performance: dict[str, DetectorPerformance]
    verdicts: tuple[Verdict, ...] = field(default=())
    undecided: dict[str, tuple[Detections, Detections]] = field(default_factory=dict)
    path_radiance: dict[str, dict[str, float]] = field(default_factory=dict)

    __repr__ = short_repr  # cloud masks as their shape and dtype, verdicts as their count

    def zones_outside(self) -> tuple[str, ...]:
        """Names of the zones that lie wholly outside the compared grid (the scenes' overlap).

        Their claims can only be INCONCLUSIVE; usually the zones file is of another place or
        has its coordinates in another order or CRS than it says (GeoJSON is lon/lat).
        """
        from shapely.geometry import box

        frame = box(*self.result.pair.grid.bounds)
        return tuple(n for n, g in self.zones.geometries.items() if not g.intersects(frame))


def detector_threshold(obj: str) -> float:
    """The default score threshold of the shipped detector for ``obj`` (a probability in [0, 1])."""
    if obj == "vessels":
        from ..detect import vessels

        return float(vessels.CNN_MIN_SCORE if vessels.MODEL_PATH.is_file() else vessels.CLASSICAL_MIN_SCORE)
    from ..detect import aircraft

    return float(aircraft.DEFAULT_THRESHOLD if aircraft.MODEL_PATH.is_file() else aircraft.CLASSICAL_THRESHOLD)


def detect(obj: str, scene: Scene, zones: Zones, *, min_score: float | None = None) -> Detections:
    """Run the detector for ``obj`` (``"vessels"`` / ``"aircraft"``) on a scene, zones assigned.

    ``min_score``: score threshold (default: the detector's own, :func:`detector_threshold`).
    """
    if obj == "vessels":
        from ..detect.vessels import detect_vessels

        dets = detect_vessels(scene, zones, min_score=min_score)
    else:
        from ..detect.aircraft import detect_aircraft

        dets = detect_aircraft(scene, zones, threshold=min_score)
    return assign_zones(dets, zones, keep_outside=True)


def path_radiance(result: CompareResult, objects: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per date (``"before"`` / ``"after"``), the path radiance the vessel detector takes off the compared
    scene before scoring (:func:`imgdiff.detect.vessels.path_radiance`; band name -> reflectance);
    empty when ``objects`` has no vessels."""
    if "vessels" not in objects:
        return {}
    from ..detect.vessels import path_radiance as measure

    return {"before": measure(result.pair.before), "after": measure(result.pair.after)}


#: Objects whose box lies farther than this (metres) from every zone are left out of a verification's
#: detections (the report's pictures and ``detections_*.geojson``): they bear on no claim, and on a scene much
#: larger than the site (a city around its airport) a detector's false alarms would fill the report.
#: ``imgdiff detect`` lists every object of a scene.
OBJECTS_MARGIN_M = 500.0


def near_zones(zones: Zones, scene: Scene, margin_m: float = OBJECTS_MARGIN_M) -> np.ndarray:
    """Boolean mask (rows, cols) of ``scene``'s pixels within ``margin_m`` metres of a zone (``zones`` in the
    scene's CRS; every pixel a zone touches counts, so a zone smaller than a pixel still has its place)."""
    import cv2

    union = np.zeros(scene.shape, bool)
    for g in zones.geometries.values():
        union |= inside_mask(g, scene.transform, scene.shape, all_touched=True)
    if not union.any():
        return union
    px = float(np.mean(scene.pixel_size_m))
    dist = cv2.distanceTransform((~union).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)  # pixels
    return dist <= margin_m / px


def keep_near(before: Detections, after: Detections, near: np.ndarray) -> tuple[Detections, Detections]:
    """The objects of both dates whose box reaches ``near`` (:func:`near_zones`), with the other date's
    object of the same place (``extra["pair"]["id"]``) wherever one of the two does."""
    rows, cols = near.shape

    def reaches(d: Detection) -> bool:
        x0, y0, x1, y1 = d.box
        c0, r0 = max(0, int(math.floor(x0))), max(0, int(math.floor(y0)))
        c1, r1 = min(cols, max(c0 + 1, int(math.ceil(x1)))), min(rows, max(r0 + 1, int(math.ceil(y1))))
        return c0 < cols and r0 < rows and bool(near[r0:r1, c0:c1].any())

    def place(d: Detection) -> object:
        return (d.extra.get("pair") or {}).get("id")

    kept = {place(d) for dets in (before, after) for d in dets.items if reaches(d)} - {None}
    b, a = ([reaches(d) or place(d) in kept for d in dets.items] for dets in (before, after))
    return before.filter(b), after.filter(a)


def drop_hidden(dets: Detections, clear: np.ndarray) -> Detections:
    """Detections whose centroid pixel is clear (not cloud, shadow or no-data)."""
    keep = []
    for d in dets.items:
        x, y = d.center
        r, c = int(math.floor(y)), int(math.floor(x))
        keep.append(0 <= r < clear.shape[0] and 0 <= c < clear.shape[1] and bool(clear[r, c]))
    return dets.filter(keep)


def zone_counts(dets: Detections, zones: Sequence[str]) -> dict[str, int]:
    """Detections per zone (every zone listed, zero included)."""
    c = dets.count_by_zone()
    return {z: int(c.get(z, 0)) for z in zones}


def analyse_result(
    result: CompareResult,
    zones: Zones,
    objects: Sequence[str],
    *,
    on_step: Callable[[str], None] | None = None,
) -> tuple[Zones, dict, dict, dict, dict]:
    """Clouds, zone visibility and detections per zone on both dates of a compared pair.

    Returns
    -------
    (Zones in the grid CRS, per date the mask of what hides the ground (opaque cloud, cloud shadow and
    the thick veil of a cloud's rim, :data:`imgdiff.clouds.CLOUD_VEIL_ALPHA`), zone states per date,
    detections per object kind as (before, after), cloud-hidden ones removed,
    undecided objects per object kind as (before, after): :class:`imgdiff.match.Reconciled`)
    """
    step = on_step or (lambda name: None)
    pair = result.pair
    zg = placed(zones, result.grid.crs, where=pair.before.meta.get("source", "before scene"))
    step("clouds")
    cb, ca = pair_clouds(pair.before, pair.after)
    haze_b, haze_a = cloud_haze(pair.before, pair.after, cb, ca)
    # a cloud's thick veil hides the ground as the cloud does (a zone under it is not clear), but
    # objects seen through it still count: detections are dropped under the opaque cloud only
    veil_b, veil_a = cloud_haze(pair.before, pair.after, cb, ca, min_alpha=CLOUD_VEIL_ALPHA)
    cloud = {"before": cb | veil_b, "after": ca | veil_a}
    states = {"before": zone_states(zg, pair.before, cloud["before"]),
              "after": zone_states(zg, pair.after, cloud["after"])}
    dets: dict[str, tuple[Detections, Detections]] = {}
    undecided: dict[str, tuple[Detections, Detections]] = {}
    clear = {"before": pair.before.valid & ~cb, "after": pair.after.valid & ~ca}
    near = near_zones(zg, pair.before)
    for obj in objects:
        step(f"detect {obj}")
        thr = detector_threshold(obj)
        # an object's evidence is the probability that it is real, from the detector's calibration table
        # (its model card: fraction real per score bin on held-out data); without one, the score itself
        cal = detector_performance(obj).calibration
        knots = cal.knots() if cal is not None else None
        calibrated = (lambda s, k=knots: float(np.interp(s, *k))) if knots is not None else None
        cut = calibrated if CALIBRATED_EVIDENCE else None  # None: the cut is on the score
        evidence = MIN_EVIDENCE_SCORE if cut is not None else max(thr, MIN_EVIDENCE_SCORE)
        # looks: detections down to LOOK_FRACTION of the threshold, so that each place has a score on both dates
        looks = [drop_hidden(detect(obj, scene, zg, min_score=LOOK_FRACTION * thr), clear[date])
                 for date, scene in (("before", pair.before), ("after", pair.after))]
        # objects decided place by place from both dates (imgdiff.match.reconcile): a miss on one date at
        # an unchanged place is carried over, static clutter scored inconsistently is dropped, only objects
        # more likely real than not (MIN_EVIDENCE_SCORE; the mean of two looks at an unchanged place:
        # STATIC_EVIDENCE_SCORE) count, and weak looks whose place cannot be compared with the other date
        # (a cloud's hazy rim, hidden there) are kept apart as undecided
        static = evidence if cut is not None else max(thr, STATIC_EVIDENCE_SCORE.get(obj, evidence))
        r = reconcile(looks[0], looks[1], pair.before, pair.after,
                      evidence=evidence, look=LOOK_FRACTION * thr, threshold=thr, calibration=cut,
                      probability=calibrated, static_persistence=STATIC_PERSISTENCE, static_evidence=static,
                      clear_before=clear["before"], clear_after=clear["after"], comparable=~(haze_b | haze_a))
        objs_b, objs_a = r.before, r.after
        if obj in VACATED_OBJECTS and not registration_failed(result.registration):
            # objects that left (or arrived) seen in the change itself: standing out on one date where the
            # other shows open water or plain apron, unexplained by any object counted on either date
            # (imgdiff.vacated)
            compared = clear["before"] & clear["after"] & ~cloud["before"] & ~cloud["after"] & ~(haze_b | haze_a)
            find = water_changes if VACATED_OBJECTS[obj] == "water" else apron_changes
            vb, va = find(pair.before, pair.after, compared=compared, dates=VACATED_DATES[obj])
            veto = VACATED_LOOK_VETO.get(obj, True)  # whether the other date's looks veto a region
            objs_b, objs_a = add_vacated(objs_b, objs_a, vb, va, looks_before=looks[0] if veto else None,
                                         looks_after=looks[1] if veto else None,
                                         probability=calibrated(VACATED_SCORE) if calibrated else None)
        # objects far from every zone bear on no claim: left out (OBJECTS_MARGIN_M)
        dets[obj] = keep_near(*one_zone_per_object(assign_zones(objs_b, zg, keep_outside=True),
                                                   assign_zones(objs_a, zg, keep_outside=True), zg), near)
        undecided[obj] = keep_near(assign_zones(r.undecided_before, zg, keep_outside=True),
                                   assign_zones(r.undecided_after, zg, keep_outside=True), near)
    return zg, cloud, states, dets, undecided


def analyse(
    before: Scene,
    after: Scene,
    zones: Zones,
    objects: Sequence[str],
    *,
    method: str | None = None,
    register: bool = True,
    on_step: Callable[[str], None] | None = None,
    max_shift: float = MAX_SHIFT_PX,
) -> tuple[CompareResult, Zones, dict, dict, dict, dict]:
    """Compare two scenes (:func:`imgdiff.compare`, with its ``method``, ``register`` and ``max_shift``,
    pixels), then :func:`analyse_result`.

    A co-registration that fails leaves the scenes compared unregistered: :func:`imgdiff.compare`
    records it (method ``"none"``, reliability 0, ``notes`` saying why).
    """
    from ..compare import compare

    result = compare(before, after, method=method, register=register, on_step=on_step, max_shift=max_shift)
    return (result, *analyse_result(result, zones, objects, on_step=on_step))


def _after_read(step: Callable[[str], None]) -> Callable[[str], None]:
    """A step callback that ignores a second "read" (scenes already read)."""
    return lambda name: None if name == "read" else step(name)


def read_for_zones(path: str | Path, zones: Zones, *, bands: Sequence[str] | None = None,
                   bbox: BBox | None = None) -> Scene:
    """Read a scene for a site: whole, or only around the zones when it is a whole tile.

    Parameters
    ----------
    path : str or Path
    zones : Zones
    bands : sequence of str, optional
    bbox : (west, south, east, north), optional
        Lon/lat window to read instead (the caller's choice wins).

    Notes
    -----
    A scene of more than :data:`imgdiff.tiles.ZONES_WINDOW_ABOVE_PX` pixels is read only over the
    zones' bounds plus :data:`imgdiff.tiles.ZONES_MARGIN_M` of context (:func:`imgdiff.tiles.zones_window`),
    so a site on a 10980 x 10980 px tile costs its window, not the tile; smaller scenes are read whole.
    """
    from ..io.read import read_scene
    from ..tiles import zones_window

    if bbox is not None:
        return read_scene(path, bands=bands, bbox=bbox)
    window = zones_window(path, zones, bands)
    if window is None:
        return read_scene(path, bands=bands)
    return read_scene(path, bands=bands, bbox=window[0], bbox_crs=window[1])


#: The claims-file path of a survey (:func:`survey`: zones without claims, ``imgdiff compare --site/--zones``);
#: its report.json says ``claims_file: null``.
SURVEY_PATH = Path("-")


def survey(
    before: Scene | str | Path,
    after: Scene | str | Path,
    zones: Zones,
    *,
    objects: Sequence[str] = OBJECTS,
    zones_source: str = "zones",
    bands: Sequence[str] | None = None,
    bbox: BBox | None = None,
    method: str | None = None,
    register: bool = True,
    on_step: Callable[[str], None] | None = None,
    max_shift: float = MAX_SHIFT_PX,
) -> Verification:
    """Compare two scenes and count objects per zone, without claims (``imgdiff compare --site``).

    Scenes given as paths are read with :func:`read_for_zones` (``bands``, lon/lat ``bbox``; whole
    tiles only around the zones); ``method``, ``register`` and ``max_shift`` (the largest plausible
    shift, pixels of the before scene's grid) go to :func:`imgdiff.compare`.

    Returns a :class:`Verification` with no verdicts; :func:`imgdiff.report.verify.write_verify`
    writes the same report as ``imgdiff verify`` (zones, counts, change, detections, HTML).
    """
    step = on_step or (lambda name: None)
    step("read")
    b = before if isinstance(before, Scene) else read_for_zones(before, zones, bands=bands, bbox=bbox)
    a = after if isinstance(after, Scene) else read_for_zones(after, zones, bands=bands, bbox=bbox)
    result, zg, cloud, states, dets, undecided = analyse(b, a, zones, list(objects), method=method, register=register,
                                                         on_step=_after_read(step), max_shift=max_shift)
    src = Path(str(b.meta.get("source", "before"))), Path(str(a.meta.get("source", "after")))
    cf = ClaimFile(SURVEY_PATH, src[0], src[1], zones_source, zones, (), max_shift=max_shift)
    return Verification(cf, (b, a), result, zg, cloud, states, dets, {o: detector_performance(o) for o in objects},
                        undecided=undecided, path_radiance=path_radiance(result, objects))


def verify(claims: ClaimFile, *, on_step: Callable[[str], None] | None = None) -> Verification:
    """Read the scenes of a claims file, compare them, detect objects and decide every claim.

    Parameters
    ----------
    claims : ClaimFile
        From :func:`load_claims`; its ``max_shift`` (pixels) bounds the co-registration's search.
    on_step : callable, optional
        Called with the name of each step as it starts (progress bars).

    Returns
    -------
    Verification
    """
    from ..stac.resolve import resolve_scene_path

    check_type(claims, ClaimFile, "verify: claims", "load the file with imgdiff.load_claims(path)")

    step = on_step or (lambda name: None)
    step("read")
    paths = []
    for role, ref in (("before", claims.before), ("after", claims.after)):
        path = resolve_scene_path(str(ref), aoi=claims.zones)  # a STAC item is fetched for the zones' window
        if not Path(path).exists():
            raise ClaimsError(f"{claims.path}: {role} scene {path} does not exist "
                              "(scene paths are relative to the claims file)")
        paths.append(path)
    before = read_for_zones(paths[0], claims.zones, bands=claims.bands)  # a whole tile: only around the zones
    after = read_for_zones(paths[1], claims.zones, bands=claims.bands)
    objects = sorted({c.object for c in claims.claims}, key=OBJECTS.index)
    result, zg, cloud, states, dets, undecided = analyse(before, after, claims.zones, objects,
                                                         on_step=_after_read(step), max_shift=claims.max_shift)
    perf = {o: detector_performance(o) for o in objects}
    step("claims")
    pair = result.pair
    both = zone_states(zg, replace(pair.before, valid=pair.before.valid & pair.after.valid),
                       cloud["before"] | cloud["after"])
    haze = path_radiance(result, objects)
    verdicts = tuple(
        _with_caveat(evaluate_claim(c, *dets[c.object], states["before"][c.zone], states["after"][c.zone],
                                    registration_reliability=registration_quality(result.registration),
                                    performance=perf[c.object], state_both=both[c.zone],
                                    undecided_before=undecided[c.object][0], undecided_after=undecided[c.object][1]),
                     path_radiance_caveat(c, haze))
        for c in claims.claims
    )
    return Verification(claims, (before, after), result, zg, cloud, states, dets, perf, verdicts, undecided, haze)


def _with_caveat(verdict: Verdict, caveat: str | None) -> Verdict:
    return verdict if caveat is None else replace(verdict, caveats=(*verdict.caveats, caveat))
