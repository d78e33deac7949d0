"""The whole run: a manifest's scenes on dask -> tables, slots, timeline, detections, summary.

``run_watch`` checks everything the run depends on before writing anything, reuses cached
scene results, runs the others (:mod:`imgdiff.watch.cluster`) and writes the outputs
(:mod:`imgdiff.watch.outputs`). A missing or corrupt scene becomes a row with
``status = "error"`` and its message; it never stops the run.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from .._repr import short_repr
from ..coregister import MAX_SHIFT_PX
from ..errors import ImgdiffError, InputError, check_type
from ..io.inspect import check_decodes
from ..io.layout import one_line
from ..io.write import atomic_path, check_outputs, write_json, write_outputs
from .cache import WatchParams, _scene_keys, content_hash
from .cluster import _run_tasks, usable_cores
from .manifest import DETECTOR_CLASSES, Manifest, SceneEntry, resolve_detector, zones_geojson
from .outputs import COLUMNS, WATCH_OUTPUTS, detections_geojson, plot_timeline, tidy_rows, write_csv, write_parquet
from .process import _reference_grid
from .tracking import OCCUPANCY_COLUMNS, Slot, occupancy_rows, slot_runs, track_slots

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchResult:
    """What :func:`run_watch` did.

    Attributes
    ----------
    results : tuple of dict
        One per scene, in date order (see :func:`process_scene`).
    rows : tuple of dict
        The tidy table.
    slots : tuple of Slot
    summary : dict
        Also written as ``summary.json``.
    """

    results: tuple[dict, ...]
    rows: tuple[dict, ...]
    slots: tuple[Slot, ...]
    summary: dict

    __repr__ = short_repr  # scene results, rows and slots as their counts


def pick_reference(manifest: Manifest, reference: str | None = None) -> str:
    """Path of the reference scene: a scene id, date or path given, else the first scene."""
    ref = reference or manifest.reference
    if ref is None:
        return manifest.scenes[0].path
    for s in manifest.scenes:
        if ref in (s.id, s.date.isoformat(), s.path):
            return s.path
    p = Path(ref)
    if not p.is_absolute() and manifest.source:
        p = Path(manifest.source).parent / p
    if p.exists():
        return str(p)
    raise InputError(f"{manifest.source}: reference {ref!r} is neither a scene of the manifest nor a path")



def _max_shift(given: float | None, manifest: Manifest, register: bool) -> float:
    """The shift limit of a run (pixels): ``given``, else the manifest's; :data:`MAX_SHIFT_PX` when scenes
    are not co-registered (not used then, nor part of the scenes' cache keys: :meth:`WatchParams.to_json`)."""
    if not register:
        return MAX_SHIFT_PX
    return manifest.max_shift if given is None else float(given)

def run_watch(
    manifest: Manifest,
    outdir: str | Path,
    *,
    reference: str | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    processes: bool = True,
    register: bool = True,
    min_score: float | None = None,
    radius_px: float = 3.0,
    overwrite: bool = False,
    on_scene: Callable[[dict[str, Any], bool], None] | None = None,
    max_shift: float | None = None,
) -> WatchResult:
    """Process every scene of a manifest on dask and write the tables, plot and detections.

    Parameters
    ----------
    manifest : Manifest
    outdir : str or Path
        Output folder (see :data:`WATCH_OUTPUTS`; also ``detections/<scene>.geojson`` and
        the cache ``.cache/``).
    reference : str, optional
        Scene id, date or path of the reference; default the manifest's, else the first scene.
    scheduler : str, optional
        Address of a running dask scheduler (``tcp://host:8786``); ``"synchronous"`` runs
        the tasks one by one in this process (tests, debugging); default a new
        ``LocalCluster`` of ``workers`` single-threaded workers.
    workers : int, optional
        Workers of the local cluster (single-threaded each); default one per core this process
        may use (:func:`usable_cores`).
    processes : bool
        Local workers as processes (default) or threads of this process.
    register : bool
        Co-register each scene to the reference. Without, a ``max_shift:`` the manifest states is not
        used: one warning line says so (a manifest may serve runs with and without co-registration).
    max_shift : float, optional
        Largest plausible shift of a scene, in pixels of the reference grid along either axis; a scene
        shifted farther is counted unregistered, its ``registration.note`` saying why. Default the
        manifest's (``manifest.max_shift``: its ``max_shift:``, else :data:`imgdiff.coregister.MAX_SHIFT_PX`).
        Refused without ``register`` (no shift is sought), as ``imgdiff watch`` refuses ``--max-shift`` with
        ``--no-coregister``.
    min_score : float, optional
        Drop detections below this score.
    radius_px : float
        Largest distance, in reference pixels, between detections of one slot on two dates.
    overwrite : bool
        Replace the outputs of a finished run (cached scene results are reused either way).
    on_scene : callable, optional
        ``on_scene(result, cached)`` as each scene finishes (progress bars).

    Returns
    -------
    WatchResult

    Raises
    ------
    ValueError
        ``max_shift`` given with ``register`` False, before anything is written.
    InputError
        Before anything is written: bad zones, unknown detector, a reference scene that
        cannot be read, lacks the bands, or that the bbox misses.
    OutputError
        Outputs of a finished run exist and ``overwrite`` is False.
    """
    from rasterio.errors import RasterioError

    # Everything the whole run depends on is checked before anything is written: a bad
    # setting is one error line, not every scene skipped.
    check_type(manifest, Manifest, "run_watch: manifest", "read the file with imgdiff.read_manifest(path)")
    if not register and max_shift is not None:
        raise ValueError(f"run_watch: max_shift {max_shift!r} does not apply with register=False (no shift is sought)")
    check_outputs(outdir, WATCH_OUTPUTS, overwrite, create=False)
    zones = zones_geojson(manifest.zones) if manifest.zones else None
    resolve_detector(manifest.detector)  # fail early on an unknown detector
    ref_path = pick_reference(manifest, reference)
    params = WatchParams(reference=ref_path, detector=manifest.detector, zones=zones, bands=manifest.bands,
                         bbox=manifest.bbox, register=register, min_score=min_score,
                         max_shift=_max_shift(max_shift, manifest, register))
    try:
        ref_hash = content_hash(ref_path, manifest.bands)
        _reference_grid(ref_path, manifest.bands, manifest.bbox)  # its bands, and the bbox on it
        check_decodes(ref_path, manifest.bands, manifest.bbox)  # its pixels: every scene is compared with them
    except (ImgdiffError, RasterioError) as e:
        raise InputError(f"reference scene {ref_path}: {one_line(e)}") from None
    if not register and "max_shift" in manifest.stated:
        log.warning("%s: max_shift %g is ignored: scenes are not co-registered (--no-coregister)",
                    manifest.source or "manifest", manifest.max_shift)
    out = check_outputs(outdir, WATCH_OUTPUTS, overwrite)
    cache = out / ".cache"
    cache.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    results: dict[str, dict] = {}
    counts = {"cached": 0, "computed": 0}

    def pending() -> Iterator[tuple[SceneEntry, str]]:
        """Scenes still to compute, as their keys come in; cached and unreadable scenes are recorded here."""
        for entry, key, error in _scene_keys(manifest.scenes, params, ref_hash):
            if key is None:
                results[entry.id] = {"id": entry.id, "date": entry.date.isoformat(), "path": entry.path,
                                     "status": "error", "error": error}
                if on_scene:
                    on_scene(results[entry.id], False)
                continue
            hit = cache / f"{key}.json"
            if hit.is_file():
                try:
                    # the same content may have been cached under another name, date or place
                    results[entry.id] = {**json.loads(hit.read_text(encoding="utf-8")), "id": entry.id,
                                         "date": entry.date.isoformat(), "path": entry.path}
                    counts["cached"] += 1
                    if on_scene:
                        on_scene(results[entry.id], True)
                    continue
                except ValueError:
                    hit.unlink()
            counts["computed"] += 1
            yield entry, key

    def done(entry_key: tuple[SceneEntry, str], res: dict) -> None:
        entry, key = entry_key
        results[entry.id] = res
        if res["status"] == "ok":
            with atomic_path(cache / f"{key}.json") as p:
                write_json(p, res)
        if on_scene:
            on_scene(res, False)

    closing: list[threading.Thread] = []  # a local cluster shuts down while the tables are written
    try:
        engine = _run_tasks(pending(), params, done, scheduler=scheduler, workers=workers or usable_cores(),
                            processes=processes, closing=closing)
        ordered = tuple(results[s.id] for s in manifest.scenes)
        default_cls = DETECTOR_CLASSES.get(manifest.detector)
        rows = tuple(tidy_rows(ordered, [default_cls] if default_cls else []))
        slots = tuple(track_slots(ordered, radius_px=radius_px))
        order = [r["id"] for r in ordered]
        summary = {
            "imgdiff_version": __version__, "site": manifest.site, "manifest": manifest.source,
            "reference": ref_path, "detector": manifest.detector, "engine": engine,
            "scenes": [{"id": r["id"], "date": r["date"], "path": r["path"], "status": r["status"], "error": r.get("error"),
                        "detections": len(r.get("detections", [])), "seconds": r.get("seconds")} for r in ordered],
            "scenes_ok": sum(r["status"] == "ok" for r in ordered),
            "scenes_failed": sum(r["status"] != "ok" for r in ordered),
            "scenes_cached": counts["cached"],
            "scenes_computed": counts["computed"],
            "slots": [{"id": s.id, "object_class": s.cls, "zone": s.zone, "x_px": s.x, "y_px": s.y,
                       **slot_runs(s, order)} for s in slots],
            "seconds": round(time.perf_counter() - t0, 3),
        }
        det_dir = out / "detections"
        det_dir.mkdir(exist_ok=True)
        for r in ordered:
            if r["status"] == "ok":
                with atomic_path(det_dir / f"{r['id']}.geojson") as p:
                    p.write_text(json.dumps(detections_geojson(r), separators=(",", ":")) + "\n", encoding="utf-8")
        occ = occupancy_rows(slots, ordered)
        write_outputs(out, {
            "counts.csv": lambda p: write_csv(p, rows, COLUMNS),
            "counts.parquet": lambda p: write_parquet(p, rows),
            "occupancy.csv": lambda p: write_csv(p, occ, OCCUPANCY_COLUMNS),
            "timeline.png": lambda p: plot_timeline(p, rows, slots, ordered, title=f"{manifest.site}: objects per zone"),
            "summary.json": lambda p: write_json(p, summary),
        })
        return WatchResult(ordered, rows, slots, summary)
    finally:
        for t in closing:
            t.join()
