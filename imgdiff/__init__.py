"""imgdiff: Sentinel-2 before/after change evidence for named sites.

The library is plain functions over numpy arrays and small dataclasses::

    import imgdiff
    before = imgdiff.read_scene("scenes/beirut/before")
    after = imgdiff.read_scene("scenes/beirut/after")
    result = imgdiff.compare(before, after)
    imgdiff.write_compare(result, "out/")
"""

from __future__ import annotations

__version__ = "0.1.0"

from .change import ChangeMap, change_map  # noqa: E402
from .compare import CompareResult, compare  # noqa: E402
from .coregister import Registration, ShiftModel, TiePoint, coregister, coregister_paths, warp  # noqa: E402
from .detect.aircraft import detect_aircraft  # noqa: E402
from .detect.vessels import detect_vessels  # noqa: E402
from .errors import (  # noqa: E402
    BandError,
    CoregistrationError,
    EmptySceneError,
    GridError,
    ImgdiffError,
    InputError,
    NoOverlapError,
    OutputError,
    ReflectanceError,
)
from .grid import AlignedPair, Grid, align, reproject_scene, utm_grid  # noqa: E402
from .io.read import read_scene  # noqa: E402
from .radiometry import cloud_mask, water_mask  # noqa: E402
from .report import compare_report, write_compare  # noqa: E402
from .scene import Scene  # noqa: E402
from .tiles import compare_tiled, detect_tiled  # noqa: E402
from .watch import read_manifest, run_watch  # noqa: E402

__all__ = [
    "AlignedPair", "BandError", "CompareResult", "CoregistrationError", "EmptySceneError", "Grid",
    "GridError", "ImgdiffError", "InputError", "NoOverlapError", "OutputError", "ReflectanceError", "Registration", "Scene",
    "__version__", "align", "cloud_mask", "compare", "compare_report", "coregister", "detect_vessels", "detect_aircraft", "read_scene", "reproject_scene",
    "utm_grid", "warp", "water_mask", "write_compare",
]
__all__ += ["compare_tiled", "detect_tiled", "read_manifest", "run_watch"]
__all__ += ["ChangeMap", "change_map"]
from .claims import load_claims, verify  # noqa: E402
from .sites import get_site, load_zones  # noqa: E402

__all__ += ["get_site", "load_claims", "load_zones", "verify"]
from . import stac  # noqa: E402  (STAC search and windowed fetch: imgdiff.stac.search, .fetch_item)

__all__ += ["stac"]
__all__ += ["ShiftModel", "TiePoint", "coregister_paths"]
from . import evaluate  # noqa: E402  (detector scores: imgdiff.evaluate.match_detections, .prf)
from .detect import Detection, Detections  # noqa: E402
from .errors import ArgumentTypeError  # noqa: E402
from .io.geojson import write_detections_geojson  # noqa: E402
from .match import ObjectMatch, match_objects  # noqa: E402
from .report import verify_report, write_verify  # noqa: E402
from .vacated import water_changes  # noqa: E402
from .zones import Zones, read_zones  # noqa: E402

__all__ += ["ArgumentTypeError", "Detection", "Detections", "ObjectMatch", "Zones", "evaluate", "match_objects",
            "read_zones", "verify_report", "water_changes", "write_detections_geojson", "write_verify"]
