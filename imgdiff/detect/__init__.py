"""Object detectors. Each returns :class:`~imgdiff.detect.base.Detections`."""

from .base import Detection, Detections

__all__ = ["Detection", "Detections"]
