"""Calibrated evidence: a detector score -> the probability that the object is real (model-card tables)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from imgdiff.claims import (
    MIN_EVIDENCE_SCORE,
    SUPPORTED,
    Claim,
    DetectorPerformance,
    ScoreCalibration,
    ZoneState,
    any_real,
    detector_performance,
    evaluate_claim,
)
from imgdiff.detect.base import Detection, Detections
from imgdiff.match import reconcile

from .conftest import water_scene

TR = Affine(10, 0, 700000, 0, -10, 3900000)
UTM = CRS.from_epsg(32636)
#: Known truth: 10 %, 30 %, 60 %, 90 % real at mean scores 0.1, 0.3, 0.5, 0.8.
TABLE = {"bins": [[0.0, 0.2], [0.2, 0.4], [0.4, 0.6], [0.6, 1.0]], "n": [100, 100, 100, 100],
         "n_real": [10, 30, 60, 90], "mean_score": [0.1, 0.3, 0.5, 0.8], "source": "test table"}


def test_a_score_maps_to_the_probability_interpolated_between_the_bins():
    cal = ScoreCalibration.from_card(TABLE)
    assert cal.probability(0.3) == pytest.approx(0.3)
    assert cal.probability(0.4) == pytest.approx(0.45)  # half way from (0.3, 0.3) to (0.5, 0.6)
    assert cal.probability(0.65) == pytest.approx(0.75)  # half way from (0.5, 0.6) to (0.8, 0.9)
    assert cal.probability(0.02) == pytest.approx(0.1) and cal.probability(0.99) == pytest.approx(0.9)
    # the score where the object becomes more likely real than not: 0.3 + (0.5 - 0.3) / 0.3 * 0.2
    assert cal.score_at(0.5) == pytest.approx(0.3 + 0.2 * 2 / 3)
    assert cal.probability(cal.score_at(0.5)) == pytest.approx(0.5)
    assert cal.score_at(0.95) == math.inf


def test_a_bin_less_real_than_the_one_below_is_pooled_so_the_map_never_falls():
    t = {**TABLE, "n_real": [10, 40, 20, 90]}  # bins 2 and 3 violate the order: pooled to 30 % each
    cal = ScoreCalibration.from_card(t)
    _, y = cal.knots()
    np.testing.assert_allclose(y, [0.1, 0.3, 0.3, 0.9])
    p = [cal.probability(s) for s in np.linspace(0, 1, 101)]
    assert np.all(np.diff(p) >= -1e-12)
    # empty bins are skipped
    cal = ScoreCalibration.from_card({**TABLE, "n": [100, 0, 100, 100], "n_real": [10, 0, 60, 90],
                                      "mean_score": [0.1, None, 0.5, 0.8]})
    assert cal.probability(0.3) == pytest.approx(0.35)


def test_at_least_one_real_among_independent_objects():
    assert any_real([0.8, 0.5]) == pytest.approx(0.9)
    assert any_real([]) == 0.0


def _plane(score, zone="apron"):
    d = Detection(box=(10, 10, 14, 14), score=score, cls="aircraft", length_m=40.0, zone=zone, centroid=(12, 12))
    return Detections((d,), UTM, TR, (10.0, 10.0))


def test_an_aircraft_at_a_score_whose_bin_is_mostly_clutter_does_not_count():
    # 0.6 is "more likely than not" as a raw score, but only 30 % of held-out detections at that
    # score were real: with the table it counts on neither date; a score in a 90 % bin counts
    cal = ScoreCalibration.from_card({**TABLE, "n_real": [10, 20, 30, 90], "mean_score": [0.1, 0.3, 0.6, 0.9]})
    assert cal.probability(0.6) == pytest.approx(0.3) and 0.3 < MIN_EVIDENCE_SCORE
    scenes = water_scene([(10, 10, 14, 14)]), water_scene([(10, 10, 14, 14)], seed=1)
    kw = {"evidence": MIN_EVIDENCE_SCORE, "look": 0.1}
    r = reconcile(_plane(0.6), _plane(0.6), *scenes, **kw)
    b, a = r.before, r.after
    assert len(b) == 1 and len(a) == 1  # the score itself as the probability
    r = reconcile(_plane(0.6), _plane(0.6), *scenes, calibration=cal.probability, **kw)
    b, a = r.before, r.after
    assert len(b) == 0 and len(a) == 0
    r = reconcile(_plane(0.9), _plane(0.9), *scenes, calibration=cal.probability, **kw)
    b, a = r.before, r.after
    assert len(b) == 1 and b.items[0].extra["pair"]["probability"] == pytest.approx(0.9)


def test_confidence_of_a_presence_is_that_at_least_one_counted_object_is_real():
    cal = ScoreCalibration.from_card(TABLE)
    scenes = water_scene([(10, 10, 14, 14)]), water_scene([(10, 10, 14, 14)], seed=1)
    r = reconcile(_plane(0.65), _plane(0.65), *scenes, evidence=0.5, look=0.1, calibration=cal.probability)
    b, a = r.before, r.after
    assert a.items[0].extra["pair"]["probability"] == pytest.approx(0.75)
    perf = DetectorPerformance("aircraft", 0.6, 0.8, 30.0, "test", calibration=cal)
    clear = ZoneState("apron", 1000, 1.0, 0.0, 0.0)
    v = evaluate_claim(Claim("c", "t", "aircraft", "apron", "present_after"), b, a, clear, clear,
                       registration_reliability=0.9, performance=perf)
    assert v.verdict == SUPPORTED and v.confidence == pytest.approx(0.75, abs=1e-3)


def test_the_shipped_cards_calibrate_both_detectors_with_a_monotone_table():
    for obj in ("vessels", "aircraft"):
        perf = detector_performance(obj)
        assert perf.calibration is not None, obj
        assert sum(perf.calibration.n) > 300
        s = perf.calibration.score_at(MIN_EVIDENCE_SCORE)
        assert 0.05 < s < 0.95
        p = [perf.probability(x) for x in np.linspace(0, 1, 51)]
        assert np.all(np.diff(p) >= -1e-12) and 0.0 <= p[0] < 0.5 < p[-1] <= 1.0
        assert perf.to_dict()["score_calibration"]["score_at_min_evidence"] == pytest.approx(s, abs=1e-4)
