"""Claims about a site, checked against a before and an after scene.

A claims file names a before and an after scene, zones and claims about vessels or aircraft in
them; :func:`verify` gives each claim a verdict (``SUPPORTED``, ``REFUTED`` or ``INCONCLUSIVE``)
with its evidence, confidence and reasons. Submodules:

* :mod:`~imgdiff.claims.files`: the claims file format, :func:`load_claims`, :class:`Claim`.
* :mod:`~imgdiff.claims.evidence`: how both dates' detections become objects (:func:`evidence_rules`).
* :mod:`~imgdiff.claims.performance`: detector figures and score calibration (:func:`detector_performance`).
* :mod:`~imgdiff.claims.verdicts`: the rules deciding one claim (:func:`evaluate_claim`) and the confidence.
* :mod:`imgdiff.clouds` (re-exported here): cloud and shadow masks of a pair, clouds' hazy rims (:func:`pair_clouds`).
* :mod:`~imgdiff.claims.pipeline`: read, compare, detect, decide (:func:`verify`, :func:`survey`).
"""

from ..clouds import (
    CLOUD_BRIGHTENING,
    CLOUD_FLAT_BRIGHTENING,
    CLOUD_FLAT_TEXTURE,
    CLOUD_FLAT_WHITE,
    CLOUD_GROW_BRIGHTENING,
    CLOUD_GROW_COLOUR,
    CLOUD_KEEPS_DETAIL,
    CLOUD_MIN_PIXELS,
    CLOUD_MIN_REFLECTANCE,
    CLOUD_MIN_WIDTH_PX,
    CLOUD_RIM_ALPHA,
    CLOUD_RIM_SPREAD,
    CLOUD_VEIL_ALPHA,
    DETAIL_WINDOW_PX,
    SHADOW_DARKENING,
    SHADOW_MIN_GROUND,
    SHARED_TEXTURE_R,
    cloud_haze,
    cloud_rim,
    fine_texture,
    flat_clouds,
    flatter,
    ground_detail,
    grow_cloud,
    local_texture,
    pair_clouds,
    pair_gain,
    seen_clearly,
    seen_through,
    shade,
    shared_texture,
    temporal_changes,
    temporal_clouds,
    wide_labels,
    wide_regions,
)
from .evidence import (
    CALIBRATED_EVIDENCE,
    LOOK_FRACTION,
    MIN_EVIDENCE_SCORE,
    STATIC_EVIDENCE_SCORE,
    STATIC_PERSISTENCE,
    evidence_rules,
)
from .files import (
    ASSERTIONS,
    CLAIM_KEYS,
    FILE_KEYS,
    OBJECT_NAMES,
    OBJECTS,
    Claim,
    ClaimFile,
    ClaimsError,
    load_claims,
    parse_claims,
)
from .performance import (
    DEFAULT_PERFORMANCE,
    MIN_USEFUL_RECALL,
    DetectorPerformance,
    ScoreCalibration,
    detector_performance,
)
from .pipeline import (
    Verification,
    analyse,
    analyse_result,
    detect,
    detector_threshold,
    drop_hidden,
    path_radiance,
    read_for_zones,
    survey,
    verify,
    zone_counts,
)
from .verdicts import (
    COUNT_TOLERANCE_FRACTION,
    INCONCLUSIVE,
    MAX_REGISTRATION_UNCERTAINTY_PX,
    MIN_CLEAR_FRACTION,
    MIN_CLEAR_FRACTION_ABSENCE,
    MIN_REGISTRATION_RELIABILITY,
    REFUTED,
    SUPPORTED,
    Verdict,
    ZoneState,
    any_real,
    compare_counts,
    count_tolerance,
    evaluate_claim,
    hidden_capacity,
    object_probability,
    path_radiance_caveat,
    registration_failed,
    registration_quality,
    zone_states,
)

__all__ = [
    "ASSERTIONS", "CALIBRATED_EVIDENCE", "CLAIM_KEYS", "CLOUD_BRIGHTENING", "CLOUD_FLAT_BRIGHTENING",
    "CLOUD_FLAT_TEXTURE", "CLOUD_FLAT_WHITE", "CLOUD_GROW_BRIGHTENING", "CLOUD_GROW_COLOUR", "CLOUD_KEEPS_DETAIL",
    "CLOUD_MIN_PIXELS", "CLOUD_MIN_REFLECTANCE", "CLOUD_MIN_WIDTH_PX", "CLOUD_RIM_ALPHA", "CLOUD_RIM_SPREAD", "CLOUD_VEIL_ALPHA", "COUNT_TOLERANCE_FRACTION",
    "Claim", "ClaimFile", "ClaimsError", "DEFAULT_PERFORMANCE", "DETAIL_WINDOW_PX", "DetectorPerformance", "FILE_KEYS", "INCONCLUSIVE",
    "LOOK_FRACTION", "MAX_REGISTRATION_UNCERTAINTY_PX", "MIN_CLEAR_FRACTION", "MIN_CLEAR_FRACTION_ABSENCE",
    "MIN_EVIDENCE_SCORE", "MIN_REGISTRATION_RELIABILITY", "MIN_USEFUL_RECALL", "OBJECTS", "OBJECT_NAMES", "REFUTED",
    "SHADOW_DARKENING", "SHADOW_MIN_GROUND", "SHARED_TEXTURE_R", "STATIC_EVIDENCE_SCORE", "STATIC_PERSISTENCE", "SUPPORTED", "ScoreCalibration",
    "Verdict", "Verification", "ZoneState", "analyse", "analyse_result", "any_real", "cloud_haze", "cloud_rim",
    "compare_counts", "count_tolerance", "detect", "detector_performance", "detector_threshold", "drop_hidden",
    "evaluate_claim", "evidence_rules", "fine_texture", "flat_clouds", "flatter", "ground_detail", "grow_cloud", "hidden_capacity",
    "load_claims", "local_texture", "object_probability", "pair_clouds", "pair_gain", "parse_claims", "path_radiance",
    "path_radiance_caveat", "read_for_zones",
    "registration_failed", "registration_quality", "seen_clearly", "seen_through", "shade", "shared_texture", "survey", "temporal_changes", "temporal_clouds", "verify",
    "wide_labels", "wide_regions", "zone_counts", "zone_states",
]
