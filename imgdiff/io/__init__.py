"""Readers and writers: the only place imgdiff touches files.

Submodules
----------
read
    :func:`read_scene`: a Sentinel-2 scene (or a window of it) as float32 reflectance; re-exports
    the names of the reading modules below.
layout
    The band files of a scene: :func:`find_band_sources`, :func:`select_bands`, :func:`open_raster`.
georeferencing
    CRS and transform of a raster (a local frame for files without), the pixel window of a bbox.
metadata
    SAFE product metadata and acquisition dates.
scaling
    Digital numbers to reflectance: the scaling rules of one scene.
harmonise
    One scaling for both dates of a pair.
bands
    Sentinel-2 band names in file names and band descriptions.
inspect
    Describing a scene on disk without reading it whole.
geojson
    Detections as GeoJSON.
write
    GeoTIFF, JSON and text outputs, written under a temporary name and moved into place.
"""

from .geojson import detections_to_geojson, write_detections_geojson
from .layout import find_band_sources
from .read import read_scene

__all__ = ["detections_to_geojson", "find_band_sources", "read_scene", "write_detections_geojson"]
