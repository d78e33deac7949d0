"""Scoring against labelled data: shift RMSE, detection P/R/F1, change F1.

:func:`match_detections` pairs detected boxes with ground-truth boxes (the rule of every detector
benchmark: centre inside the truth box grown by 1 px, or IoU >= 0.1; one-to-one, highest score
first) and :func:`prf` turns the counts into precision, recall and F1. Submodules score whole
datasets: :mod:`~imgdiff.evaluate.vessels` (sen2ships layout), :mod:`~imgdiff.evaluate.aircraft`
(aircraft_s2sim layout), :mod:`~imgdiff.evaluate.change` (OSCD layout), :mod:`~imgdiff.evaluate.coreg`
(known-truth shifts).
"""

from .detection import MatchResult, box_iou, match_detections, prf

__all__ = ["MatchResult", "box_iou", "match_detections", "prf"]
