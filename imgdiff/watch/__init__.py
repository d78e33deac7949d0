"""Time series of one site: many dated scenes -> counts per zone per date, and berth/stand occupancy.

The flow::

    manifest (YAML/CSV) ─► read_manifest ─► Manifest(scenes, zones, detector, reference)
    for each scene (a dask task, pure function of its inputs):
        read ─► align to the reference grid ─► co-register ─► detect ─► shift detections onto
        the reference ─► zones, cloud fraction per zone ─► SceneResult (JSON-ready dict)
    results ─► tidy table (date, zone, object class, count, cloud fraction, confidence)
            ─► slots (berths / stands: detections matched across dates) ─► occupancy per date
            ─► CSV, Parquet, timeline PNG, per-date GeoJSON, summary JSON

Submodules
----------
manifest
    ``read_manifest``, ``Manifest``, ``SceneEntry``; detector names (``resolve_detector``).
cache
    ``WatchParams`` (what a scene task depends on), content hashes and cache keys.
process
    ``process_scene``: the dask task of one scene (whole, or window by window).
tracking
    ``Slot``, ``track_slots``, ``slot_runs``, ``occupancy_rows``.
outputs
    Tidy table (CSV, Parquet), timeline PNG, per-date GeoJSON.
cluster
    The dask engine: local cluster, worker set-up, task submission.
run
    ``run_watch``, ``pick_reference``, ``WatchResult``.
"""

from __future__ import annotations

from ..io.bands import parse_bands
from .cache import KEY_THREADS, WatchParams, content_hash, scene_key
from .cluster import WORKER_MALLOC_ENV, usable_cores
from .cluster import _worker_environ as _worker_environ  # private, used by the tests
from .manifest import (
    DETECTOR_CLASSES,
    DETECTORS,
    MANIFEST_KEYS,
    SCENE_KEYS,
    Manifest,
    SceneEntry,
    parse_bbox,
    parse_cloud_fraction,
    read_manifest,
    resolve_detector,
    zones_geojson,
)
from .outputs import (
    CLOUDY_ZONE,
    COLUMNS,
    WATCH_OUTPUTS,
    detections_geojson,
    plot_timeline,
    result_detections,
    tidy_rows,
    write_csv,
    write_parquet,
)
from .process import OUTSIDE, WHOLE_SCENE, pack_mask, process_scene, reduce_mask, unpack_mask
from .run import WatchResult, pick_reference, run_watch
from .tracking import OCCUPANCY_COLUMNS, Slot, occupancy_rows, slot_runs, track_slots

__all__ = [
    "COLUMNS", "DETECTORS", "Manifest", "SceneEntry", "Slot", "WatchParams", "WatchResult", "content_hash",
    "detections_geojson", "occupancy_rows", "parse_bands", "parse_bbox", "parse_cloud_fraction", "pick_reference",
    "plot_timeline", "process_scene", "read_manifest", "resolve_detector", "run_watch", "scene_key", "slot_runs",
    "tidy_rows", "track_slots", "usable_cores", "write_parquet", "zones_geojson",
]
# Further public names of the former single module (TILED_ABOVE_PX is not re-exported: the task reads it
# from imgdiff.watch.process, so patch it there).
__all__ += [
    "CLOUDY_ZONE", "DETECTOR_CLASSES", "KEY_THREADS", "MANIFEST_KEYS", "OCCUPANCY_COLUMNS", "OUTSIDE", "SCENE_KEYS",
    "WATCH_OUTPUTS", "WHOLE_SCENE", "WORKER_MALLOC_ENV", "pack_mask", "reduce_mask", "result_detections", "unpack_mask", "write_csv",
]
