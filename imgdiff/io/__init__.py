"""Readers and writers: the only place imgdiff touches files."""

from .read import find_band_sources, read_scene

__all__ = ["find_band_sources", "read_scene"]
