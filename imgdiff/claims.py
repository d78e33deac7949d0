"""Claims about a site, checked against a before and an after scene.

A claim file (YAML; paths are relative to the file)::

    before: scenes/tartus/2024-12-03      # anything imgdiff.read_scene reads
    after: scenes/tartus/2024-12-13
    zones: sites/tartus.geojson           # or `site: tartus`
    bands: [B02, B03, B04, B08]           # optional: bands to read; names a multi-band file's bands in order
    claims:
      - id: warships-gone
        text: Warships no longer stationed at the naval piers
        object: vessels                   # vessels | aircraft
        zone: naval_piers
        assert: absent_after              # present_before | present_after | absent_before
                                          # | absent_after | decreased | increased | unchanged
        min_length_m: 60                  # optional: only objects at least this long count

Each claim gets a :class:`Verdict`: ``SUPPORTED``, ``REFUTED`` or ``INCONCLUSIVE``,
with the counts in the zone on both dates, the objects matched across dates
(:mod:`imgdiff.match`), a confidence and the reasons.

Evidence (:func:`verify`): the two scenes are compared on a common grid
(:func:`imgdiff.compare`: co-registration, change map); clouds and shadows are masked on
each date (:func:`pair_clouds`: spectral and two-date opaque-cloud tests; shadows only where
the other date confirms an even, cloud-sized darkening). The detectors run on both dates down
to half their threshold ("looks"), and :func:`imgdiff.match.reconcile` decides place by place
which objects are on each date from both looks and whether the image changed there
(:func:`evidence_rules`): a miss on one date at an unchanged place is carried over (stayed),
static clutter scored inconsistently counts on neither date, and objects count only when more
likely real than not (:data:`MIN_EVIDENCE_SCORE`). Each detector's model card holds a calibration
table (:class:`ScoreCalibration`: the fraction of held-out detections that were real per score
bin); every counted object gets its probability from it (``extra["pair"]["probability"]``), which
the confidence uses. The cut itself is on the score (:data:`CALIBRATED_EVIDENCE` says why).

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
  would change if the zone's *undecided* objects were real: weak detections on a date the claim depends
  on whose place cannot be compared with the other date (in a cloud's hazy rim, or hidden there;
  :class:`imgdiff.match.Reconciled`). Counts stay those of the confirmed objects.
* Otherwise the counts decide: ``present_*`` needs at least one object on that date,
  ``absent_*`` none, ``decreased`` / ``increased`` / ``unchanged`` compare the counts
  of objects at places visible on both dates, a difference within :func:`count_tolerance`
  (10 % of the larger count, rounded down) counting as no change.

Confidence (a heuristic in [0, 1] from the detector's measured figures): a verdict resting on
detections has ``1 - prod(1 - p_i)`` (at least one is real), ``p_i`` each object's calibrated
probability (the detector's pooled precision p when its card has no calibration table); one
resting on their absence has the recall r at the claim's lengths (an object present would have
been seen), scaled by the clear fraction of the zone; a count comparison with difference d has
``1 - (1 - min(q, r))^d``, q the mean calibrated probability of the zone's objects.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .compare import CompareResult
from .detect.base import Detections
from .errors import CoregistrationError, ImgdiffError, InputError
from .io.bands import parse_bands
from .io.read import BBox
from .keys import unused_keys
from .match import ObjectMatch, reconcile, zone_match
from .scene import Scene
from .sites import load_zones
from .zones import Zones, assign_zones, placed, zone_masks

ASSERTIONS = ("present_before", "present_after", "absent_before", "absent_after", "decreased", "increased",
              "unchanged")
OBJECTS = ("vessels", "aircraft")
SUPPORTED, REFUTED, INCONCLUSIVE = "SUPPORTED", "REFUTED", "INCONCLUSIVE"
#: A zone must be at least this clear (no cloud, shadow, no-data) on every date a claim depends on.
MIN_CLEAR_FRACTION = 0.5
#: ... and this clear when the claim rests on not seeing objects (hidden objects would flip it).
MIN_CLEAR_FRACTION_ABSENCE = 0.75
#: Co-registration counts as failed below this reliability or above this 1-sigma uncertainty (pixels);
#: claims comparing the two dates are then not decided.
MIN_REGISTRATION_RELIABILITY = 0.25
MAX_REGISTRATION_UNCERTAINTY_PX = 1.0
#: An object counts on a date only when its evidence reaches this probability (:func:`imgdiff.match.reconcile`):
#: the calibrated probability (:class:`ScoreCalibration`, from the detector's model card) of the mean
#: of its two looks where the image did not change, of its own score where it changed. A verdict can
#: turn on one object, so each one counted must be more likely real than not. Without a calibration
#: table the score itself is taken as the probability (and the detector's threshold applies too).
MIN_EVIDENCE_SCORE = 0.5
#: Whether the cut above is made on the calibrated probability (:class:`ScoreCalibration`, the
#: detector's table) rather than on the score. Measured 2026-11-26 (benchmarks/claims.py): with the
#: calibrated cut (vessels: score 0.44, aircraft: score 0.36) the plain vessel benchmark fell from
#: 38/40 to 36/40 and the aircraft one from 61/64 to 56/64 (--honest 40/40 both ways): the tables
#: are measured on single-date held-out detections (aircraft: in-domain simulated chips) and do not
#: cover static clutter seen twice or the remains of a departure, which a cut at score 0.5 keeps
#: out. So objects count from score 0.5 (the tables put that at probability 0.61 for vessels and
#: 0.77 for aircraft, both more likely real than not); the tables give each counted object its
#: probability, and the confidence.
CALIBRATED_EVIDENCE = False
#: Each date is searched for detections down to this fraction of the detector's threshold, so that
#: every place has a score on both dates (a "look"); looks alone never count as objects.
LOOK_FRACTION = 0.5
#: A place whose detected object still looks the same on the other date (:func:`imgdiff.match.persistence`
#: at least this) did not change between the dates.
STATIC_PERSISTENCE = 0.7
#: Counts within this fraction of the larger count are "unchanged" (detector noise between dates).
COUNT_TOLERANCE_FRACTION = 0.1
#: Recall below which objects of a length bin count as "below what the detector resolves": the
#: detector misses more of them than it finds, so not seeing one says little (its absence cannot
#: be shown). From the model card's measured recall per length bin.
MIN_USEFUL_RECALL = 0.5


class ClaimsError(InputError):
    """A claims file is missing, unreadable or malformed."""


# --------------------------------------------------------------------------- claim files
@dataclass(frozen=True)
class Claim:
    """One claim about objects in one zone.

    Attributes
    ----------
    id, text : str
    object : str
        ``"vessels"`` or ``"aircraft"``.
    zone : str
        Zone name.
    assertion : str
        One of :data:`ASSERTIONS`.
    min_length_m : float or None
        Only objects at least this long (metres) count.
    """

    id: str
    text: str
    object: str
    zone: str
    assertion: str
    min_length_m: float | None = None

    def dates(self) -> tuple[str, ...]:
        """The dates (``"before"``, ``"after"``) the claim depends on."""
        if self.assertion.endswith("_before"):
            return ("before",)
        if self.assertion.endswith("_after"):
            return ("after",)
        return ("before", "after")

    def rests_on_absence(self, count: int | None = None) -> bool:
        """True when the verdict rests on *not* seeing objects.

        Count comparisons always do (a hidden object changes a count); ``present_*`` and
        ``absent_*`` do when ``count`` (objects seen on the claim's date) is 0, or, without
        a count, for ``absent_*``.
        """
        if self.assertion in ("decreased", "increased", "unchanged"):
            return True
        if count is None:
            return self.assertion.startswith("absent")
        return count == 0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "object": self.object, "zone": self.zone,
                "assert": self.assertion, "min_length_m": self.min_length_m}


@dataclass(frozen=True)
class ClaimFile:
    """A parsed claims file.

    Attributes
    ----------
    path : Path
    before, after : Path
        Scene paths, resolved against the file's folder.
    zones_source : str
        ``"site:<name>"`` or the zones file path.
    zones : Zones
    claims : tuple of Claim
    unused_keys : tuple of str
        Keys of the file that imgdiff does not read (``"claims[2].expected"``), to tell the user.
    bands : tuple of str, optional
        The file's ``bands``: the bands to read from both scenes, or the names of a multi-band
        file's bands in order when the file does not name them (as ``read_scene(bands=...)``).
    """

    path: Path
    before: Path
    after: Path
    zones_source: str
    zones: Zones
    claims: tuple[Claim, ...]
    unused_keys: tuple[str, ...] = ()
    bands: tuple[str, ...] | None = None


#: Keys of a claims file and of one claim (anything else is reported as unused, or refused when it
#: looks like a misspelling of one of these that is missing: :func:`imgdiff.keys.unused_keys`).
FILE_KEYS = ("before", "after", "zones", "site", "claims", "bands")
CLAIM_KEYS = ("id", "text", "object", "zone", "assert", "min_length_m")


def parse_claims(obj: Any, *, where: str = "claims", base: str | Path = ".") -> ClaimFile:
    """A :class:`ClaimFile` from the parsed YAML/JSON mapping.

    Raises
    ------
    ClaimsError
        Naming ``where`` and the offending key when the content is malformed.
    """
    base = Path(base)
    if not isinstance(obj, Mapping):
        raise ClaimsError(f"{where}: expected a mapping with before, after, zones or site, and claims")
    for key in ("before", "after", "claims"):
        if key not in obj:
            raise ClaimsError(f"{where}: missing key {key!r}")
    if ("zones" in obj) == ("site" in obj):
        raise ClaimsError(f"{where}: give exactly one of 'zones' (a GeoJSON file) or 'site' (a catalogue name)")
    spec = obj.get("zones", obj.get("site"))
    zones = load_zones(str(spec), base=base)
    if "zones" in obj:
        zones = _zones_named_as_claimed(zones, Path(base) / str(spec), obj.get("claims"))
    zsrc = f"site:{spec}" if "site" in obj else str(spec)
    unused = unused_keys(obj, FILE_KEYS, where, error=ClaimsError)
    items = obj["claims"]
    if not isinstance(items, Sequence) or isinstance(items, str) or not items:
        raise ClaimsError(f"{where}: 'claims' must be a non-empty list")
    claims: list[Claim] = []
    seen: set[str] = set()
    for i, c in enumerate(items):
        at = f"{where}: claim {i + 1}"
        if not isinstance(c, Mapping):
            raise ClaimsError(f"{at}: expected a mapping")
        cid = str(c.get("id") or f"claim-{i + 1}")
        at = f"{where}: claim {cid!r}"
        unused += unused_keys(c, CLAIM_KEYS, at, prefix=f"claims[{cid}].", error=ClaimsError)
        if cid in seen:
            raise ClaimsError(f"{at}: duplicate id")
        seen.add(cid)
        obj_kind = OBJECT_NAMES.get(_spelling(str(c.get("object", ""))), "")
        if obj_kind not in OBJECTS:
            raise ClaimsError(f"{at}: object must be one of {', '.join(OBJECTS)}, not {c.get('object')!r}")
        assertion = next((a for a in ASSERTIONS if _spelling(a) == _spelling(str(c.get("assert", "")))), "")
        if not assertion:
            raise ClaimsError(f"{at}: assert must be one of {', '.join(ASSERTIONS)}, not {c.get('assert')!r}")
        zone = _zone_named(c.get("zone"), zones.names)
        if zone is None:
            raise ClaimsError(f"{at}: zone {c.get('zone')!r} is not in the zones ({', '.join(zones.names)})")
        ml = c.get("min_length_m")
        if ml is not None:
            try:
                ml = float(ml)
            except (TypeError, ValueError):
                raise ClaimsError(f"{at}: min_length_m must be a number of metres, not {ml!r}") from None
            if not ml >= 0:
                raise ClaimsError(f"{at}: min_length_m must be >= 0")
        claims.append(Claim(cid, str(c.get("text", "")), obj_kind, str(zone), assertion, ml))
    try:
        bands = parse_bands(obj.get("bands"), where)
    except InputError as e:
        raise ClaimsError(str(e)) from None
    return ClaimFile(Path(where), _scene_ref(base, obj["before"]), _scene_ref(base, obj["after"]), zsrc, zones,
                     tuple(claims), tuple(unused), bands)


#: Words for the objects a claim may name (compared by :func:`_spelling`) -> the detector's object.
OBJECT_NAMES = {
    **{_w: "vessels" for _w in ("vessels", "vessel", "ship", "ships", "boat", "boats", "warship", "warships",
                                "navalvessels", "navalvessel")},
    **{_w: "aircraft" for _w in ("aircraft", "aircrafts", "plane", "planes", "airplane", "airplanes", "aeroplane",
                                 "aeroplanes", "jet", "jets", "militaryaircraft")},
}


def _zones_named_as_claimed(zones: Zones, path: Path, items: Any) -> Zones:
    """The zones of ``path`` named by the property that holds the claims' zone names.

    Zones are named by their ``zone``, ``name``, ``id``, ``label`` or ``title`` property; a file
    may name them under another key (``zone_name``), or use ``zone`` for a category beside
    ``name``. When some zone a claim names is not among the zones, and one property key holds
    every zone the claims name (up to :func:`_spelling`), the zones are read again by that key.
    """
    from .zones import property_values, read_zones

    wanted = [str(c["zone"]) for c in items if isinstance(c, Mapping) and c.get("zone") is not None] \
        if isinstance(items, Sequence) and not isinstance(items, str) else []
    if not wanted or all(_zone_named(w, zones.names) is not None for w in wanted):
        return zones
    for key, values in sorted(property_values(path).items()):
        spelt = {_spelling(v) for v in values}
        if all(_spelling(w) in spelt for w in wanted):
            return read_zones(path, name_key=key)
    return zones


def _spelling(text: str) -> str:
    """``text`` without letter case, spaces, hyphens and underscores (``Absent-after`` ~ ``absent_after``)."""
    return "".join(text.lower().replace("-", " ").replace("_", " ").split())


def _zone_named(name: object, names: Sequence[str]) -> str | None:
    """The zone a claim names: its exact name, else the one name of the same :func:`_spelling`
    (``Naval piers`` is ``naval_piers``); None if none or several."""
    if name is None:
        return None
    if str(name) in names:
        return str(name)
    hits = [n for n in names if _spelling(n) == _spelling(str(name))]
    return hits[0] if len(hits) == 1 else None


def _scene_ref(base: Path, raw: object) -> Path | str:
    """A scene path relative to the claims file, or a STAC item URL/id kept as given."""
    from .stac.resolve import is_stac_ref

    return str(raw) if is_stac_ref(str(raw)) else base / str(raw)


def load_claims(path: str | Path) -> ClaimFile:
    """Read a YAML (or JSON) claims file; scene and zones paths are relative to it."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ClaimsError(f"{path}: no such claims file") from None
    except OSError as e:
        raise ClaimsError(f"{path}: cannot read ({e.strerror})") from None
    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ClaimsError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    cf = parse_claims(obj, where=str(path), base=path.parent)
    return replace(cf, path=path)


# --------------------------------------------------------------------------- detector figures
@dataclass(frozen=True)
class ScoreCalibration:
    """A detector's measured fraction of real objects per score bin (its model card's table).

    Attributes
    ----------
    bins : tuple of (lo, hi)
        Score bins (lower edge inclusive).
    n, n_real : tuple of int
        Held-out detections in each bin, and how many of them were real objects.
    mean_score : tuple of float or None
        Mean score of each bin's detections (None where empty).
    source : str
        How the table was measured (protocol, data, command).

    Notes
    -----
    :meth:`probability` maps a score to the probability that the object is real: the bins'
    fractions are made non-decreasing in score by pooling adjacent violators (weighted by
    their counts), then interpolated linearly between the bins' mean scores, and held
    constant beyond the first and last bin.
    """

    bins: tuple[tuple[float, float], ...]
    n: tuple[int, ...]
    n_real: tuple[int, ...]
    mean_score: tuple[float | None, ...]
    source: str = ""

    @classmethod
    def from_card(cls, table: Mapping[str, Any], source: str = "") -> ScoreCalibration:
        """From a model card's ``score_calibration`` entry (``bins``, ``n``, ``n_real``, ``mean_score``)."""
        bins = tuple((float(lo), float(hi)) for lo, hi in table["bins"])
        n = tuple(int(v) for v in table["n"])
        n_real = tuple(int(v) for v in table["n_real"])
        ms = tuple(None if v is None else float(v) for v in table.get("mean_score") or [None] * len(bins))
        if not (len(bins) == len(n) == len(n_real) == len(ms)) or not any(n):
            raise ValueError("score_calibration: bins, n, n_real and mean_score must have one entry per bin")
        src = source or str(table.get("source", ""))
        if table.get("command"):
            src += f" ({table['command']})"
        return cls(bins, n, n_real, ms, src)

    def knots(self) -> tuple[np.ndarray, np.ndarray]:
        """(score, probability) of the monotone interpolation: one knot per non-empty bin."""
        x, y, w = [], [], []
        for (lo, hi), n, nr, m in zip(self.bins, self.n, self.n_real, self.mean_score):
            if n > 0:
                x.append(0.5 * (lo + hi) if m is None else m)
                y.append(nr / n)
                w.append(float(n))
        # pool adjacent violators: the fraction real never falls as the score rises
        blocks: list[list[float]] = []  # [sum of w*y, sum of w, number of knots]
        for yi, wi in zip(y, w):
            blocks.append([yi * wi, wi, 1])
            while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
                a = blocks.pop()
                blocks[-1] = [blocks[-1][0] + a[0], blocks[-1][1] + a[1], blocks[-1][2] + a[2]]
        mono = np.concatenate([np.full(int(k), sw / ws) for sw, ws, k in blocks])
        return np.asarray(x, float), mono

    def probability(self, score: float) -> float:
        """Probability that an object of this ``score`` is real (monotone in the score)."""
        x, y = self.knots()
        return float(np.interp(float(score), x, y))

    def score_at(self, probability: float) -> float:
        """The lowest score whose :meth:`probability` reaches ``probability`` (inf if none does)."""
        x, y = self.knots()
        if y[0] >= probability:
            return float(x[0])
        if not (y >= probability).any():
            return math.inf
        k = int(np.argmax(y >= probability))
        return float(x[k - 1] + (probability - y[k - 1]) / (y[k] - y[k - 1]) * (x[k] - x[k - 1]))

    def to_dict(self) -> dict[str, Any]:
        x, y = self.knots()
        return {"source": self.source, "bins": [list(b) for b in self.bins], "n": list(self.n),
                "n_real": list(self.n_real),
                "precision": [None if n == 0 else round(r / n, 4) for n, r in zip(self.n, self.n_real)],
                "knots": {"score": [round(float(v), 4) for v in x], "probability": [round(float(v), 4) for v in y]},
                "score_at_min_evidence": round(self.score_at(MIN_EVIDENCE_SCORE), 4),
                "probability_at_min_score": round(self.probability(MIN_EVIDENCE_SCORE), 4)}


@dataclass(frozen=True)
class DetectorPerformance:
    """Measured figures of a detector, used for confidence and for the resolution limit.

    Attributes
    ----------
    object : str
    precision, recall : float
        At the default threshold, on labelled Sentinel-2(-like) data.
    min_length_m : float
        Shortest object length (metres) the detector finds with recall >= :data:`MIN_USEFUL_RECALL`.
    source : str
        Where the figures come from.
    recall_by_length : tuple of (lo_m, hi_m, recall)
        Recall per length bin, when measured.
    calibration : ScoreCalibration or None
        The detector's fraction of real objects per score bin, when measured: an object's
        evidence is its calibrated probability (:meth:`probability`).
    """

    object: str
    precision: float
    recall: float
    min_length_m: float
    source: str
    recall_by_length: tuple[tuple[float, float, float], ...] = ()
    calibration: ScoreCalibration | None = None

    def probability(self, score: float) -> float:
        """Probability that a detection of this score is real: the calibration table's, or the score itself."""
        return self.calibration.probability(score) if self.calibration is not None else float(score)

    def recall_at(self, length_m: float | None) -> float:
        """Recall for objects of at least ``length_m`` metres (the overall recall when unknown)."""
        if length_m is None or not self.recall_by_length:
            return self.recall
        rs = [r for lo, hi, r in self.recall_by_length if hi > length_m]
        return float(min(rs)) if rs else self.recall

    def to_dict(self) -> dict[str, Any]:
        return {"object": self.object, "precision": self.precision, "recall": self.recall,
                "min_length_m": self.min_length_m, "source": self.source,
                "recall_by_length": [list(b) for b in self.recall_by_length],
                "score_calibration": None if self.calibration is None else self.calibration.to_dict()}


#: Figures used when a detector module publishes none (see the report for the source).
#: Vessels: sen2ships, 7 ports, CNN detector (imgdiff eval vessels); aircraft: aircraft_s2sim
#: grouped cross-validation (imgdiff eval aircraft). Objects below ``min_length_m`` are
#: below what 10 m imagery resolves.
DEFAULT_PERFORMANCE: dict[str, DetectorPerformance] = {
    "vessels": DetectorPerformance("vessels", 0.80, 0.80, 25.0, "provisional figures (imgdiff.claims defaults)"),
    "aircraft": DetectorPerformance("aircraft", 0.60, 0.75, 30.0, "provisional figures (imgdiff.claims defaults)",
                                    ((20.0, 30.0, 0.2), (30.0, math.inf, 0.75))),
}


def detector_performance(obj: str) -> DetectorPerformance:
    """The measured figures of the detector for ``obj`` (``"vessels"`` or ``"aircraft"``).

    A detector module may publish them as ``PERFORMANCE`` (a mapping with ``precision``,
    ``recall``, ``min_length_m``, ``source``), as a model card (``CARD_PATH``, JSON with
    ``cross_validation.pooled.precision/recall``) and as ``DETECTION_LIMITS`` (recall per
    length bin; the limit is the shortest bin with recall >= :data:`MIN_USEFUL_RECALL`);
    otherwise :data:`DEFAULT_PERFORMANCE` applies.
    """
    base = DEFAULT_PERFORMANCE[obj]
    try:
        if obj == "vessels":
            from .detect import vessels as mod
        else:
            from .detect import aircraft as mod  # type: ignore[no-redef]
    except ImportError:
        return base
    perf = getattr(mod, "PERFORMANCE", None)
    card_path = getattr(mod, "CARD_PATH", None)
    calibration = None
    if card_path is not None:
        try:
            import json

            table = json.loads(Path(card_path).read_text(encoding="utf-8")).get("score_calibration")
            if table:
                calibration = ScoreCalibration.from_card(
                    table, f"model card {Path(card_path).name}: " + str(table.get("source", "")))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            calibration = None
    if perf is None and card_path is not None:
        try:
            import json

            card = json.loads(Path(card_path).read_text(encoding="utf-8"))
            if "cross_validation" in card:
                pooled = card["cross_validation"]["pooled"]
                scheme = card["cross_validation"].get("scheme", "")
            else:  # vessels: the leave-one-port-out figures at the shipped threshold
                pooled, scheme = card["selected"], "leave-one-port-out, pooled"
            perf = {"precision": pooled["precision"], "recall": pooled["recall"],
                    "source": f"model card {Path(card_path).name}: {scheme}"}
        except (OSError, ValueError, KeyError, TypeError):
            perf = None
    if isinstance(perf, Mapping) and perf.get("precision") is not None and perf.get("recall") is not None:
        base = DetectorPerformance(obj, float(perf["precision"]), float(perf["recall"]),
                                   float(perf.get("min_length_m", base.min_length_m)),
                                   str(perf.get("source", f"imgdiff.detect.{mod.__name__.rsplit('.', 1)[-1]}")))
    limits = getattr(mod, "DETECTION_LIMITS", None)
    if isinstance(limits, Mapping) and limits.get("bins_m") and limits.get("recall"):
        bins = []
        for (lo, hi), r in zip(limits["bins_m"], limits["recall"]):
            if r is not None:
                bins.append((float(lo), math.inf if hi is None else float(hi), float(r)))
        if bins:
            ok = [lo for lo, _, r in bins if r >= MIN_USEFUL_RECALL]
            min_len = min(ok) if ok else math.inf
            base = replace(base, recall_by_length=tuple(bins), min_length_m=min_len,
                           source=base.source + "; recall per length from the model card")
    return replace(base, calibration=calibration)


# --------------------------------------------------------------------------- evidence
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
        Fraction of the zone under cloud or shadow.
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
    that many objects added to (or taken from) either date. Large when little is visible.
    """
    v = float(np.clip(visible_fraction, 0.0, 1.0))
    if v <= 0:
        return 10 ** 6
    return int(math.floor(max(n_before, n_after) * (1.0 - v) / v + 1e-9))


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
    ml = claim.min_length_m
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
    negative = claim.rests_on_absence(n_claim if single else None)
    for date in claim.dates():
        s = states[date]
        if single and not negative:
            # objects seen in the visible part decide, however much of the zone is hidden
            if s.clear_fraction < 0.98:
                caveats.append(f"{1 - s.clear_fraction:.0%} of {claim.zone} is not visible on the {date} date; "
                               f"the {n_claim} object(s) seen in the visible part decide")
            continue
        # a comparison is decided below from the part seen on both dates (hidden_capacity)
        need = MIN_CLEAR_FRACTION_ABSENCE if negative and single else MIN_CLEAR_FRACTION
        if s.clear_fraction < MIN_CLEAR_FRACTION:
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
        if flips:
            reasons.append(f"{ub + ua} {what_u} could not be confirmed: their place is in a cloud's hazy rim "
                           "or hidden on the other date, so the dates cannot be compared there; counted, they "
                           f"would change the verdict ({verdict} from the confirmed objects)")
            return Verdict(claim, INCONCLUSIVE, 0.0, nb, na, m, tuple([counts, *reasons]), tuple(caveats), ub, ua)
        caveats.append(f"{ub + ua} {what_u} could not be confirmed (cloud rim or hidden on the other date) and are "
                       "not counted; the verdict holds with or without them")
    return Verdict(claim, verdict, round(float(conf), 3), nb, na, m, tuple([counts, *reasons]), tuple(caveats),
                   ub, ua)


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


# --------------------------------------------------------------------------- the pipeline
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

    def zones_outside(self) -> tuple[str, ...]:
        """Names of the zones that lie wholly outside the compared grid (the scenes' overlap).

        Their claims can only be INCONCLUSIVE; usually the zones file is of another place or
        has its coordinates in another order or CRS than it says (GeoJSON is lon/lat).
        """
        from shapely.geometry import box

        frame = box(*self.result.pair.grid.bounds)
        return tuple(n for n, g in self.zones.geometries.items() if not g.intersects(frame))


def registration_quality(reg: Any) -> float:
    """The reliability of a :class:`~imgdiff.coregister.Registration`, 0 when it failed.

    Failed: method ``"failed"``, reliability below :data:`MIN_REGISTRATION_RELIABILITY`, or a
    1-sigma uncertainty above :data:`MAX_REGISTRATION_UNCERTAINTY_PX` pixels.
    """
    rel = float(np.nan_to_num(getattr(reg, "reliability", 0.0)))
    unc = float(getattr(reg, "uncertainty_px", math.nan))
    if getattr(reg, "method", "") == "failed" or (math.isfinite(unc) and unc > MAX_REGISTRATION_UNCERTAINTY_PX):
        return 0.0
    return rel


def pair_clouds(before: Scene, after: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Cloud and cloud-shadow masks of both dates of a co-registered pair (before, after).

    Clouds: the single-date spectral test (:func:`imgdiff.radiometry.cloud_mask` without
    shadows; only regions wider than an object, :func:`wide_regions`) or the two-date opaque-cloud
    test (:func:`temporal_changes`, grown over the rest of the same cloud by :func:`grow_cloud`).
    Shadows: the single-date shadow projection (:func:`imgdiff.radiometry.cloud_shadow_mask`), and
    the two-date shadow test (:func:`shade`, which needs visible bands only), each kept only
    where the other date confirms a cloud-sized region darkened evenly in every band
    (:func:`imgdiff.radiometry.confirm_shadows`), so that an emptied berth (a bright hull
    replaced by dark water) is never taken for a shadow. A shadow over bright ground makes the
    clear date look like cloud to the two-date test; where both dates show the same ground, the
    dimmer one is under a shadow (:func:`temporal_changes`).
    """
    from .radiometry import cloud_mask, cloud_shadow_mask, confirm_shadows

    tb, ta, tsb, tsa = temporal_changes(before, after)
    out = []
    for s, o, t, ts in ((before, after, tb, tsb), (after, before, ta, tsa)):
        try:
            c = wide_regions(np.asarray(cloud_mask(s, shadows=False), bool) & s.valid, CLOUD_MIN_WIDTH_PX + 4)
            c |= t
            sh = confirm_shadows(cloud_shadow_mask(s, c) & ~c, s, o) | ts
        except ImgdiffError:  # bands missing for the spectral tests: the two-date tests only
            c, sh = t, ts
        out.append((c | sh) & s.valid)
    return out[0], out[1]


def wide_regions(mask: np.ndarray, width_px: int) -> np.ndarray:
    """The connected regions of ``mask`` that hold a ``width_px`` x ``width_px`` square.

    A cloud is wider than any vessel or aircraft: a bright white patch the size of an object
    (a hull, a roof, the smoothed-over place of a departed ship) is not a cloud. The spectral
    cloud mask is grown by 2 pixels, hence ``CLOUD_MIN_WIDTH_PX + 4`` for it.
    """
    lab, keep = wide_labels(mask, width_px)
    return keep[lab]


def wide_labels(mask: np.ndarray, width_px: int, min_pixels: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Connected regions of ``mask`` (label image) and, per label, whether the region holds a
    ``width_px`` x ``width_px`` square and at least ``min_pixels`` pixels (index 0, the
    background, is False)."""
    from scipy import ndimage as ndi

    r = max(0, width_px // 2)
    core = ndi.binary_erosion(mask, structure=np.ones((2 * r + 1, 2 * r + 1), bool))
    if not core.any():
        return np.zeros(mask.shape, np.int32), np.zeros(1, bool)
    lab, n = ndi.label(mask)
    keep = np.zeros(n + 1, bool)
    keep[np.unique(lab[core])] = True
    keep[0] = False
    if min_pixels:
        keep &= np.bincount(lab.ravel(), minlength=n + 1) >= min_pixels
    return lab, keep


#: Two-date opaque-cloud test: brighter than the other date by this factor in every visible band ...
CLOUD_BRIGHTENING = 1.5
#: ... brighter than this reflectance in every visible band, white, and a compact region at least
#: this wide (pixels; objects such as ships and aircraft are narrower) and this large (pixels).
CLOUD_MIN_REFLECTANCE = 0.2
CLOUD_MIN_WIDTH_PX = 7
CLOUD_MIN_PIXELS = 64
#: An opaque cloud not that much brighter than bright ground (a thin-edged cloud over concrete, a
#: flat white fill): white within this spread, brighter than the other date by this factor in every
#: visible band once the pair's overall gain is taken out (:func:`pair_gain`), and smoother than
#: this fraction of both the ground's usual fine texture on its own date and the other date's
#: texture at the same place (:func:`local_texture`): a cloud hides the ground's detail, an emptied
#: berth or apron keeps it.
CLOUD_FLAT_WHITE = 0.1
CLOUD_FLAT_BRIGHTENING = 1.1
CLOUD_FLAT_TEXTURE = 0.3


def temporal_clouds(before: Scene, after: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Opaque clouds found by comparing two co-registered dates (before mask, after mask).

    An opaque cloud is bright and white in the visible bands and much brighter than the
    same ground on the other date; it covers a compact region wider than any vessel or
    aircraft. This works with visible bands only (no NIR/SWIR needed) and complements the
    single-date spectral test of :func:`imgdiff.radiometry.cloud_mask`. See
    :func:`temporal_changes` (which also tells a cloud from a shadow on the other date).
    """
    cb, ca, _, _ = temporal_changes(before, after)
    return cb, ca


#: The two dates share the ground's fine texture over a region (a shadow on one of them, not an
#: opaque cloud) when their high-passed visible means correlate across it at least this much.
SHARED_TEXTURE_R = 0.5


def fine_texture(x: np.ndarray) -> np.ndarray:
    """``x`` minus its Gaussian blur (sigma 1 pixel): the pixel-scale texture of the ground, without
    the smooth light of a cloud's body, its low-frequency texture or its hazy edge."""
    import cv2

    x = np.asarray(x, np.float32)
    return x - cv2.GaussianBlur(x, (0, 0), 1.0, borderType=cv2.BORDER_REFLECT)


def _interior(region: np.ndarray) -> np.ndarray:
    """The region without its outer 3 pixels (away from a cloud's hazy edge), unless too small."""
    from scipy import ndimage as ndi

    inner = ndi.binary_erosion(region, iterations=3)
    return inner if inner.sum() >= 30 else region


def shared_texture(hx: np.ndarray, hy: np.ndarray, region: np.ndarray) -> bool:
    """Whether two dates show the same ground across ``region``: their fine textures
    (:func:`fine_texture`) correlate at least :data:`SHARED_TEXTURE_R` in its interior.

    Under a cloud shadow the ground keeps its texture (quay edges, hulls, markings, parked
    objects), only dimmer: the dates correlate. An opaque cloud hides the ground: its light
    does not correlate with the other date. Flat ground has no texture to share (noise only),
    so a region there is not taken for a shadow.
    """
    r = _interior(region)
    a, b = hx[r].astype(float), hy[r].astype(float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 10:
        return False
    a, b = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return bool(den > 0 and float((a * b).sum()) / den >= SHARED_TEXTURE_R)


def flatter(hx: np.ndarray, hy: np.ndarray, region: np.ndarray) -> bool:
    """Whether the fine texture ``hx`` is weaker than ``hy`` in the interior of ``region`` (mean
    absolute value). A shadow dims the ground's texture with its light, an opaque cloud removes it:
    the date that changed is the flatter one."""
    r = _interior(region)
    a, b = np.abs(hx[r]), np.abs(hy[r])
    ok = np.isfinite(a) & np.isfinite(b)
    return bool(ok.sum() >= 10 and float(a[ok].mean()) < float(b[ok].mean()))


def local_texture(x: np.ndarray, size: int = 5) -> np.ndarray:
    """Root mean square of the fine texture (:func:`fine_texture`) of ``x`` in a ``size`` x ``size``
    pixel window around each pixel (same units as ``x``)."""
    import cv2

    f = fine_texture(x)
    return np.sqrt(np.maximum(cv2.blur(f * f, (size, size), borderType=cv2.BORDER_REFLECT), 0.0))


def pair_gain(stack: np.ndarray, other: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per band, the median ratio of ``stack`` to ``other`` over valid pixels (the overall gain
    between two dates, clouds and changes being a minority), shape (bands, 1, 1); 1 where unknown."""
    out = np.ones((stack.shape[0], 1, 1))
    for k in range(stack.shape[0]):
        a, b = stack[k][valid], other[k][valid]
        ok = b > 1e-3
        if ok.sum() >= 100:
            out[k, 0, 0] = float(np.median(a[ok] / b[ok]))
    return out


def flat_clouds(stack: np.ndarray, other: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Pixels of an opaque cloud that is only a little brighter than the ground it hides.

    White within :data:`CLOUD_FLAT_WHITE`, above :data:`CLOUD_MIN_REFLECTANCE`, at least
    :data:`CLOUD_FLAT_BRIGHTENING` times the other date in every visible band after the pair's
    overall gain (:func:`pair_gain`), and without the ground's fine texture: smoother than
    :data:`CLOUD_FLAT_TEXTURE` times this date's median texture and times the other date's
    texture at the same place. ``stack``, ``other``: visible bands of the two dates (bands, rows,
    cols), reflectance, NaN-free; ``valid``: where both dates are valid.
    """
    mean = stack.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        white = np.abs(stack - mean).max(axis=0) / np.maximum(mean, 1e-6)
    cand = (stack.min(axis=0) > CLOUD_MIN_REFLECTANCE) & (white < CLOUD_FLAT_WHITE) & valid
    if not cand.any():
        return cand
    gain = pair_gain(stack, other, valid)
    cand &= np.all(stack > CLOUD_FLAT_BRIGHTENING * gain * np.maximum(other, 1e-6), axis=0)
    if not cand.any():
        return cand
    here, there = local_texture(mean), local_texture(other.mean(axis=0))
    usual = float(np.median(here[valid])) if valid.any() else 0.0
    return cand & (here < CLOUD_FLAT_TEXTURE * usual) & (here < CLOUD_FLAT_TEXTURE * there)


def temporal_changes(before: Scene, after: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Opaque clouds and cloud shadows found by comparing two co-registered dates.

    A region that is white, above :data:`CLOUD_MIN_REFLECTANCE` and :data:`CLOUD_BRIGHTENING`
    times brighter than the other date in every visible band (or a little brighter and without the
    ground's texture, :func:`flat_clouds`), holding a
    :data:`CLOUD_MIN_WIDTH_PX` square and :data:`CLOUD_MIN_PIXELS` pixels, is either a cloud on
    this date or a shadow on the other date over bright ground (concrete under a shadow is
    darkened just as much). Under a shadow both dates show the same ground (:func:`shared_texture`),
    the shadowed one dimmer (:func:`flatter`); a cloud hides it. Clouds are grown over the rest of
    the same cloud (:func:`grow_cloud`) first, so that the test sees the whole region. Shadows
    (:func:`shade`) are kept when the other date confirms them
    (:func:`imgdiff.radiometry.confirm_shadows`: darkened alike in every band). Both get a
    2-pixel margin.

    Returns
    -------
    (cloud before, cloud after, shadow before, shadow after) : ndarray of bool, shape (rows, cols)
    """
    from scipy import ndimage as ndi

    from .radiometry import confirm_shadows

    vis = [b for b in ("B02", "B03", "B04") if b in before.bands and b in after.bands]
    empty = np.zeros(before.shape, bool)
    if not vis:
        return empty, empty.copy(), empty.copy(), empty.copy()
    both = before.valid & after.valid
    clouds, shadows = [], [empty.copy(), empty.copy()]
    for k, (s, o) in enumerate(((before, after), (after, before))):
        stack = np.stack([np.nan_to_num(s.bands[b], nan=0.0) for b in vis])
        other = np.stack([np.nan_to_num(o.bands[b], nan=0.0) for b in vis])
        mean = stack.mean(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            white = np.abs(stack - mean).max(axis=0) / np.maximum(mean, 1e-6)
            cand = ((stack.min(axis=0) > CLOUD_MIN_REFLECTANCE) & (white < 0.2)
                    & np.all(stack > CLOUD_BRIGHTENING * np.maximum(other, 1e-6), axis=0) & both)
        cand |= flat_clouds(stack, other, both)
        shadows[k] = shade(stack, other, both)
        lab, keep = wide_labels(cand, CLOUD_MIN_WIDTH_PX, CLOUD_MIN_PIXELS)
        if not keep.any():
            clouds.append(empty.copy())
            continue
        grown = grow_cloud(stack, other, keep[lab], both)
        # where both dates show the same ground, only dimmer on the other, the other date is under a
        # shadow and this one holds no cloud
        glab, gn = ndi.label(grown)
        fine_here, fine_there = fine_texture(mean), fine_texture(other.mean(axis=0))
        gkeep = np.zeros(gn + 1, bool)
        for i, sl in enumerate(ndi.find_objects(glab), start=1):  # each region within its bounding box
            region = glab[sl] == i
            gkeep[i] = not (shared_texture(fine_here[sl], fine_there[sl], region)
                            and flatter(fine_there[sl], fine_here[sl], region))
        clouds.append(ndi.binary_dilation(gkeep[glab], iterations=2) & s.valid if gkeep.any() else empty.copy())
    for k, (s, o) in enumerate(((before, after), (after, before))):
        sh = shadows[k] & ~ndi.binary_dilation(clouds[1 - k], iterations=2)  # darker than the other date's cloud
        sh = confirm_shadows(sh, s, o) if sh.any() else sh
        shadows[k] = ndi.binary_dilation(sh, iterations=2) & s.valid & ~clouds[k] if sh.any() else sh
    return clouds[0], clouds[1], shadows[0], shadows[1]


#: Two-date shadow test (:func:`shade`): darker than the other date (gain matched) by this factor in
#: every visible band, over ground of at least this reflectance on the other date.
SHADOW_DARKENING = 1.0 / CLOUD_BRIGHTENING
SHADOW_MIN_GROUND = 0.04


def shade(stack: np.ndarray, other: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Cloud-shadow candidates of one date from a second date: wide regions darkened evenly.

    A cloud shadow removes the direct sunlight: the ground keeps its texture but is darker
    than on the other date by a similar factor in every band. Pixels darker than the other
    date (matched in gain per band: the median per-pixel ratio) by :data:`SHADOW_DARKENING` in every
    visible band, with the largest ratio at most 1.6 times the smallest, over ground of at
    least :data:`SHADOW_MIN_GROUND`; regions holding a :data:`CLOUD_MIN_WIDTH_PX` square and
    :data:`CLOUD_MIN_PIXELS` pixels where both dates show the same ground (:func:`shared_texture`),
    this one dimmer (:func:`flatter`): a cloud on the other date would hide the ground there.
    Works with visible bands only; :func:`imgdiff.radiometry.confirm_shadows` checks the regions
    afterwards.

    Parameters
    ----------
    stack, other : ndarray, shape (bands, rows, cols)
        Visible bands of this date and of the other date (reflectance, NaN-free).
    valid : ndarray of bool, shape (rows, cols)
        Pixels valid on both dates.
    """
    from scipy import ndimage as ndi

    from .radiometry import sampled_median

    if valid.sum() < 100:
        return np.zeros(valid.shape, bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        # the dates' gain: the median of the per-pixel ratios (a shadow over part of the scene barely moves it)
        gain = np.array([sampled_median(stack[i] / np.maximum(other[i], 1e-6), valid & (other[i] > 0.02), default=1.0)
                         for i in range(len(stack))])
        ground = other * gain[:, None, None]
        ratio = stack / np.maximum(ground, 1e-6)
        cand = (np.all(ratio < SHADOW_DARKENING, axis=0) & (ratio.max(axis=0) <= 1.6 * ratio.min(axis=0))
                & (ground.mean(axis=0) >= SHADOW_MIN_GROUND) & (stack.min(axis=0) > 0) & valid)
    lab, keep = wide_labels(cand, CLOUD_MIN_WIDTH_PX, CLOUD_MIN_PIXELS)
    if not keep.any():
        return np.zeros(valid.shape, bool)
    here, there = fine_texture(stack.mean(axis=0)), fine_texture(ground.mean(axis=0))
    boxes = ndi.find_objects(lab)
    for i in np.flatnonzero(keep):
        sl = boxes[i - 1]
        region = lab[sl] == i
        keep[i] = shared_texture(here[sl], there[sl], region) and flatter(here[sl], there[sl], region)
    return keep[lab]


#: Growing a found opaque cloud (:func:`grow_cloud`): brighter than the other date (gain matched) by
#: this factor in every visible band, and within this fraction of the cloud's own reflectance.
CLOUD_GROW_BRIGHTENING = 1.05
CLOUD_GROW_COLOUR = 0.15


def grow_cloud(stack: np.ndarray, other: np.ndarray, cloud: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """An opaque cloud grown over the connected pixels of its own colour that brightened.

    The two-date test (:func:`temporal_clouds`) asks a cloud to be :data:`CLOUD_BRIGHTENING`
    times brighter than the ground: a grey cloud (reflectance 0.3) finds that over water and
    dark land but not over bright concrete (0.2-0.25), so only part of it is found. The rest
    of the same cloud has the same colour: pixels connected to ``cloud``, white and above
    :data:`CLOUD_MIN_REFLECTANCE`, within :data:`CLOUD_GROW_COLOUR` of the cloud's median
    reflectance in every visible band and brighter than the other date (matched in gain per band
    over the clear pixels) by :data:`CLOUD_GROW_BRIGHTENING` in every visible band, are cloud too.
    Unchanged ground of that colour beside the cloud is not (it did not brighten), nor is the
    cloud's thin rim (darker than the cloud).

    Parameters
    ----------
    stack, other : ndarray, shape (bands, rows, cols)
        Visible bands of the cloudy date and of the other date (reflectance, NaN-free).
    cloud : ndarray of bool, shape (rows, cols)
        The cloud found (before its 2-pixel margin).
    valid : ndarray of bool, shape (rows, cols)
        Pixels valid on both dates.
    """
    from scipy import ndimage as ndi

    from .radiometry import sampled_median

    clear = valid & ~ndi.binary_dilation(cloud, iterations=20)
    if not cloud.any() or clear.sum() < 100:
        return cloud
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = np.array([sampled_median(stack[i], clear) / max(sampled_median(other[i], clear), 1e-6)
                         for i in range(len(stack))])
        top = np.array([sampled_median(stack[i], cloud) for i in range(len(stack))])
        mean = stack.mean(axis=0)
        white = np.abs(stack - mean).max(axis=0) / np.maximum(mean, 1e-6)
        cand = ((stack.min(axis=0) > CLOUD_MIN_REFLECTANCE) & (white < 0.2)
                & np.all(stack > CLOUD_GROW_BRIGHTENING * gain[:, None, None] * np.maximum(other, 1e-6), axis=0)
                & np.all(np.abs(stack - top[:, None, None]) <= CLOUD_GROW_COLOUR * top[:, None, None], axis=0)
                & valid)
    return ndi.binary_propagation(cloud, mask=cand | cloud)


def cloud_haze(before: Scene, after: Scene, cloud_before: np.ndarray, cloud_after: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """The hazy rims of each date's clouds (before, after), found against the other date.

    Objects in a rim are still seen (through thin haze), so the rim does not hide a zone, but
    their pixels cannot be compared between the dates (:func:`imgdiff.match.reconcile` leaves
    them out of its change measures). See :func:`cloud_rim`.
    """
    vis = [b for b in ("B02", "B03", "B04") if b in before.bands and b in after.bands]
    if not vis:
        return np.zeros(before.shape, bool), np.zeros(after.shape, bool)
    both = before.valid & after.valid
    sb = np.stack([np.nan_to_num(before.bands[b], nan=0.0) for b in vis])
    sa = np.stack([np.nan_to_num(after.bands[b], nan=0.0) for b in vis])
    return cloud_rim(sb, sa, cloud_before, both), cloud_rim(sa, sb, cloud_after, both)


#: Semi-transparent cloud rim: the cloud's share of a pixel's light (alpha) at least this in every
#: visible band, and agreeing between bands within CLOUD_RIM_SPREAD.
CLOUD_RIM_ALPHA = 0.05
CLOUD_RIM_SPREAD = 0.15


def cloud_rim(stack: np.ndarray, other: np.ndarray, cloud: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The semi-transparent rim around opaque clouds, found against the other date.

    A cloud's edge thins out over a few pixels: there a pixel mixes cloud light ``c`` and the
    ground ``g`` (the other date, after matching its gain per band) as ``(1 - alpha) g + alpha c``,
    with one ``alpha`` for every band. Pixels connected to ``cloud`` whose per-band
    ``alpha = (pixel - g) / (c - g)`` is at least :data:`CLOUD_RIM_ALPHA` in every visible band
    and agrees between bands within :data:`CLOUD_RIM_SPREAD` are rim (objects there are seen
    through haze but cannot be compared between the dates). ``c`` is the median of the
    cloud in each band.

    Parameters
    ----------
    stack, other : ndarray, shape (bands, rows, cols)
        Visible bands of the cloudy date and of the other date (reflectance, NaN-free).
    cloud : ndarray of bool, shape (rows, cols)
        The opaque cloud on the cloudy date.
    valid : ndarray of bool, shape (rows, cols)
        Pixels valid on both dates.
    """
    from scipy import ndimage as ndi

    clear = valid & ~ndi.binary_dilation(cloud, iterations=20)
    if not cloud.any() or clear.sum() < 100:
        return np.zeros(cloud.shape, bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = np.array([np.median(stack[i][clear]) / max(float(np.median(other[i][clear])), 1e-6)
                         for i in range(len(stack))])
        ground = other * gain[:, None, None]
        top = np.array([np.median(stack[i][cloud]) for i in range(len(stack))])
        span = top[:, None, None] - ground
        alpha = np.where(span > 0.05, (stack - ground) / span, np.nan)
        lo, hi = alpha.min(axis=0), alpha.max(axis=0)  # NaN (no cloud/ground contrast) fails both tests
        rim = (lo >= CLOUD_RIM_ALPHA) & (hi - lo <= CLOUD_RIM_SPREAD) & valid
    return ndi.binary_propagation(cloud, mask=rim | cloud) & ~cloud


def evidence_rules() -> dict[str, Any]:
    """The rules that turn two dates' detections into objects, with their constants (for report.json)."""
    ev = "the calibrated probability" if CALIBRATED_EVIDENCE else "the score"
    return {
        "looks": f"each date is searched for detections down to {LOOK_FRACTION:g} x the detector's threshold, "
                 "so that every place has a score on both dates; a look alone never counts as an object",
        "unchanged_place": f"where the image did not change (persistence >= {STATIC_PERSISTENCE:g}: the box's change "
                           "between the dates, less the pair's noise level, is small against the object's contrast; "
                           "and the box holds "
                           "as much fine detail on both dates within a factor 2) the two scores are two looks at "
                           f"one object: it counts on both dates when {ev} of their mean reaches "
                           f"{MIN_EVIDENCE_SCORE:g} "
                           "(a detector miss on one date is carried over: stayed), on neither when it does not "
                           "(static clutter such as quay ends, roofs and markings scores inconsistently)",
        "changed_place": "where the image changed, each date's score stands on its own and counts when "
                         f"{ev} reaches {MIN_EVIDENCE_SCORE:g}; a weaker detection (from the detector's threshold) seen on one "
                         "date only counts when the place looks like plain background on the other date (less "
                         "than half its contrast with the surroundings, or less than half its fine detail): otherwise it is mostly what remains of a "
                         "departure (a smudge, a wake, the edge of a re-surfaced berth); and no detection counts "
                         "at a changed place whose box holds less than half the fine (pixel-scale) detail it holds "
                         "on the other date: a smoothed-over berth or a blurred wake, not an object",
        "hidden_place": "a place under cloud, shadow or no data on one date gives no look there; comparisons "
                        "(decreased / increased / unchanged) count only places visible on both dates",
        "undecided": "a weaker detection (from the detector's threshold) seen on one date only whose place cannot be "
                     "compared with the other date (hidden there, or at least half of its box in a cloud's hazy "
                     "rim, which lightens it and damps its detail whether or not the object is there) is "
                     "undecided: not counted, but a claim whose verdict would change if the undecided objects "
                     "of its zone on the dates it depends on were real is INCONCLUSIVE (comparisons take only "
                     "those at places seen on both dates)",
        "clouds": "opaque clouds from the spectral test or the two-date brightening test (grown over the rest "
                  "of the same cloud: connected, same colour, brighter than the other date); cloud shadows "
                  "from the spectral projection or the two-date darkening test, kept only where the other date "
                  "confirms a cloud-sized region darkened evenly in every band, so an emptied berth (bright hull "
                  "-> dark water) is never read as shadow; a region where both dates show the same ground "
                  "texture, one of them dimmer, is a shadow on the dimmer date, not a cloud on the other; "
                  "the hazy rim of a cloud "
                  "(cloud light mixed in alike in every band) hides nothing but is left out of the change "
                  "measures",
        "calibration": "each counted object's probability of being real (pair.probability in the detections "
                       "files) is its score mapped through its detector's calibration table "
                       "(detectors.<object>.score_calibration: the fraction of held-out detections that were "
                       "real per score bin, made non-decreasing and interpolated between bins); the confidence "
                       "uses it. " + ("The cut is made on that probability." if CALIBRATED_EVIDENCE else
                                      "The cut is made on the score: with the cut on the probability the "
                                      "claims benchmarks got worse (static clutter seen twice and the remains "
                                      "of departures, which the single-date tables do not cover)"),
        "calibrated_evidence": CALIBRATED_EVIDENCE,
        "min_evidence_score": MIN_EVIDENCE_SCORE,
        "look_fraction": LOOK_FRACTION,
        "static_persistence": STATIC_PERSISTENCE,
    }


def detector_threshold(obj: str) -> float:
    """The default score threshold of the shipped detector for ``obj`` (a probability in [0, 1])."""
    if obj == "vessels":
        from .detect import vessels

        return float(vessels.CNN_MIN_SCORE if vessels.MODEL_PATH.is_file() else vessels.CLASSICAL_MIN_SCORE)
    from .detect import aircraft

    return float(aircraft.DEFAULT_THRESHOLD if aircraft.MODEL_PATH.is_file() else aircraft.CLASSICAL_THRESHOLD)


def detect(obj: str, scene: Scene, zones: Zones, *, min_score: float | None = None) -> Detections:
    """Run the detector for ``obj`` (``"vessels"`` / ``"aircraft"``) on a scene, zones assigned.

    ``min_score``: score threshold (default: the detector's own, :func:`detector_threshold`).
    """
    if obj == "vessels":
        from .detect.vessels import detect_vessels

        dets = detect_vessels(scene, zones, min_score=min_score)
    else:
        from .detect.aircraft import detect_aircraft

        dets = detect_aircraft(scene, zones, threshold=min_score)
    return assign_zones(dets, zones, keep_outside=True)


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
    (Zones in the grid CRS, cloud masks per date, zone states per date,
    detections per object kind as (before, after), cloud-hidden ones removed,
    undecided objects per object kind as (before, after): :class:`imgdiff.match.Reconciled`)
    """
    step = on_step or (lambda name: None)
    pair = result.pair
    zg = placed(zones, result.grid.crs, where=pair.before.meta.get("source", "before scene"))
    step("clouds")
    cb, ca = pair_clouds(pair.before, pair.after)
    cloud = {"before": cb, "after": ca}
    states = {"before": zone_states(zg, pair.before, cloud["before"]),
              "after": zone_states(zg, pair.after, cloud["after"])}
    dets: dict[str, tuple[Detections, Detections]] = {}
    undecided: dict[str, tuple[Detections, Detections]] = {}
    clear = {"before": pair.before.valid & ~cloud["before"], "after": pair.after.valid & ~cloud["after"]}
    haze_b, haze_a = cloud_haze(pair.before, pair.after, cloud["before"], cloud["after"])
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
        # an unchanged place is carried over, static clutter scored inconsistently is dropped, and only
        # objects more likely real than not (MIN_EVIDENCE_SCORE) count
        # objects decided place by place (imgdiff.match.reconcile); weak looks whose place cannot be
        # compared with the other date (a cloud's hazy rim, hidden there) are kept apart as undecided
        r = reconcile(looks[0], looks[1], pair.before, pair.after,
                      evidence=evidence, look=LOOK_FRACTION * thr, threshold=thr, calibration=cut,
                      probability=calibrated, static_persistence=STATIC_PERSISTENCE,
                      clear_before=clear["before"], clear_after=clear["after"], comparable=~(haze_b | haze_a))
        dets[obj] = (assign_zones(r.before, zg, keep_outside=True), assign_zones(r.after, zg, keep_outside=True))
        undecided[obj] = (assign_zones(r.undecided_before, zg, keep_outside=True),
                          assign_zones(r.undecided_after, zg, keep_outside=True))
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
) -> tuple[CompareResult, Zones, dict, dict, dict, dict]:
    """Compare two scenes (:func:`imgdiff.compare`, with its ``method`` and ``register``), then
    :func:`analyse_result`.

    A co-registration that raises is recorded as failed (reliability 0) and the
    scenes are compared unregistered.
    """
    from .compare import compare
    from .coregister import Registration

    try:
        result = compare(before, after, method=method, register=register, on_step=on_step)
    except CoregistrationError:
        result = compare(before, after, method=method, register=False, on_step=on_step)
        result = replace(result, registration=Registration(0.0, 0.0, 0.0, 0.0, math.nan, 0.0, method="failed"))
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
    from .io.read import read_scene
    from .tiles import zones_window

    if bbox is not None:
        return read_scene(path, bands=bands, bbox=bbox)
    window = zones_window(path, zones, bands)
    if window is None:
        return read_scene(path, bands=bands)
    return read_scene(path, bands=bands, bbox=window[0], bbox_crs=window[1])


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
) -> Verification:
    """Compare two scenes and count objects per zone, without claims (``imgdiff compare --site``).

    Scenes given as paths are read with :func:`read_for_zones` (``bands``, lon/lat ``bbox``; whole
    tiles only around the zones); ``method`` and ``register`` go to :func:`imgdiff.compare`.

    Returns a :class:`Verification` with no verdicts; :func:`imgdiff.report.verify.write_verify`
    writes the same report as ``imgdiff verify`` (zones, counts, change, detections, HTML).
    """
    step = on_step or (lambda name: None)
    step("read")
    b = before if isinstance(before, Scene) else read_for_zones(before, zones, bands=bands, bbox=bbox)
    a = after if isinstance(after, Scene) else read_for_zones(after, zones, bands=bands, bbox=bbox)
    result, zg, cloud, states, dets, undecided = analyse(b, a, zones, list(objects), method=method, register=register,
                                                         on_step=_after_read(step))
    src = Path(str(b.meta.get("source", "before"))), Path(str(a.meta.get("source", "after")))
    cf = ClaimFile(Path("-"), src[0], src[1], zones_source, zones, ())
    return Verification(cf, (b, a), result, zg, cloud, states, dets, {o: detector_performance(o) for o in objects},
                        undecided=undecided)


def verify(claims: ClaimFile, *, on_step: Callable[[str], None] | None = None) -> Verification:
    """Read the scenes of a claims file, compare them, detect objects and decide every claim.

    Parameters
    ----------
    claims : ClaimFile
        From :func:`load_claims`.
    on_step : callable, optional
        Called with the name of each step as it starts (progress bars).

    Returns
    -------
    Verification
    """
    from .stac.resolve import resolve_scene_path

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
                                                         on_step=_after_read(step))
    perf = {o: detector_performance(o) for o in objects}
    step("claims")
    pair = result.pair
    both = zone_states(zg, replace(pair.before, valid=pair.before.valid & pair.after.valid),
                       cloud["before"] | cloud["after"])
    verdicts = tuple(
        evaluate_claim(c, *dets[c.object], states["before"][c.zone], states["after"][c.zone],
                       registration_reliability=registration_quality(result.registration),
                       performance=perf[c.object], state_both=both[c.zone],
                       undecided_before=undecided[c.object][0], undecided_after=undecided[c.object][1])
        for c in claims.claims
    )
    return Verification(claims, (before, after), result, zg, cloud, states, dets, perf, verdicts, undecided)
