"""``imgdiff watch``: count objects per zone over many dates of one site, on dask."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import click

from imgdiff.errors import ImgdiffError, InputError
from imgdiff.watch import DETECTORS, read_manifest, run_watch
from imgdiff.watch.manifest import Manifest

from .options import (
    bands_opt,
    bbox_opt,
    check_max_shift_applies,
    echo_json,
    given,
    json_opt,
    max_shift_opt,
    overwrite_opt,
    show_progress,
)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while the block runs, so that cleanup code runs.

    Outputs are written under temporary names and moved into place at the end; an
    interrupted run therefore leaves no half-written file, only finished cache entries.
    """
    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.command("watch")
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False),
              help="Folder for counts.csv/.parquet, occupancy.csv, timeline.png, summary.json, detections/.")
@click.option("--zones", type=click.Path(dir_okay=False), help="GeoJSON of named zones, or a site name (overrides the manifest's and its site's).")
@click.option("--detector", help=f"{' | '.join(DETECTORS)} | package.module:function (overrides the manifest's).")
@click.option("--reference", help="Scene date, id or path to co-register every scene to (default: first scene).")
@bands_opt
@bbox_opt
@click.option("--scheduler", metavar="ADDRESS",
              help="dask scheduler to use (tcp://host:8786); default a local cluster; 'synchronous' for no dask.")
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Workers of the local dask cluster, one core each.  [default: one per core]")
@click.option("--threads", is_flag=True, help="Local workers as threads of this process instead of processes.")
@click.option("--no-coregister", is_flag=True,
              help="Do not co-register scenes to the reference (the manifest's max_shift is then ignored, with a "
                   "warning).")
@max_shift_opt(" Overrides the manifest's max_shift.")
@click.option("--min-score", type=click.FloatRange(0, 1), help="Drop detections scoring below this.")
@click.option("--match-radius", type=click.FloatRange(0.1, 100), default=3.0, show_default=True,
              help="Largest move (pixels) of an object between dates to count as the same berth/stand.")
@overwrite_opt
@json_opt
@click.pass_context
def watch_cmd(ctx: click.Context, manifest: str, outdir: str, zones: str | None, detector: str | None,
              reference: str | None, bands: list[str] | None, bbox: tuple | None, scheduler: str | None,
              workers: int | None, threads: bool, no_coregister: bool, max_shift: float, min_score: float | None,
              match_radius: float, overwrite: bool, as_json: bool) -> None:
    """Detect and count objects per zone on every dated scene of MANIFEST (YAML or CSV).

    Each scene is co-registered to a reference scene, its objects counted per zone, and
    objects matched across dates into berths/stands with their occupancy. Finished scenes
    are cached in OUTDIR/.cache by content hash: a rerun or an interrupted run resumes.
    A missing or corrupt scene is reported in the table and skipped; a run where no scene
    could be processed exits with code 2.

    \b
    YAML keys: site, zones, detector, reference, bands, bbox, max_shift,
    scenes (a list of {date, path, cloud_fraction}); CSV: date,path[,cloud_fraction].
    'site:' naming a catalogue site (tartus, hmeimim) without 'zones:'
    counts in that site's zones; another site name is only a label
    (one zone: the whole scene).
    """
    check_max_shift_applies(ctx, no_coregister, max_shift)
    m = read_manifest(manifest)
    changes = {k: v for k, v in {"zones": zones, "detector": detector, "bbox": tuple(bbox) if bbox else None,
                                 "bands": tuple(bands) if bands else None,
                                 "max_shift": max_shift if given(ctx, "max_shift") else None}.items() if v}
    m = replace(m, **changes)
    outside = zones_outside_reference(m, reference)  # all outside: an error before anything is written
    progress = show_progress(as_json)
    with sigterm_as_interrupt():
        if progress:
            with click.progressbar(length=len(m.scenes), label="imgdiff watch", file=sys.stderr,
                                   item_show_func=lambda x: x) as bar:
                result = run_watch(m, outdir, reference=reference, scheduler=scheduler, workers=workers,
                                   processes=not threads, register=not no_coregister, min_score=min_score,
                                   radius_px=match_radius, overwrite=overwrite,
                                   on_scene=lambda r, cached: bar.update(1, r["id"]))
        else:
            result = run_watch(m, outdir, reference=reference, scheduler=scheduler, workers=workers,
                               processes=not threads, register=not no_coregister, min_score=min_score,
                               radius_px=match_radius, overwrite=overwrite)
    s = result.summary
    if outside:  # on stderr, also in --json mode
        click.echo(f"warning: zone(s) {', '.join(outside)} of {m.zones} lie outside the reference scene "
                   "(counted 0 on every date)", err=True)
    if as_json:
        echo_json(s, default=str)
        _fail_if_nothing_processed(s, manifest, outdir)
        return
    click.echo(f"{s['site']}: {s['scenes_ok']} scene(s) processed ({s['scenes_cached']} from cache), "
               f"{s['scenes_failed']} failed; {len(result.slots)} berth/stand slot(s) tracked")
    for sc in s["scenes"]:
        if sc["status"] != "ok":
            click.echo(f"  {sc['id']}: skipped: {sc['error']}", err=True)
    click.echo(f"wrote {outdir}/counts.csv, counts.parquet, occupancy.csv, timeline.png, summary.json, detections/")
    _fail_if_nothing_processed(s, manifest, outdir)


def zones_outside_reference(m: Manifest, reference: str | None) -> list[str]:
    """Names of the manifest's zones that miss the reference scene; NoOverlapError when all of them do.

    Objects are counted per zone on the reference grid, so a zone outside it counts 0 on every
    date. Zones or a reference that cannot be read are left to :func:`run_watch` to report.
    """
    if not m.zones:
        return []
    from rasterio.errors import RasterioError

    from imgdiff.sites import load_zones
    from imgdiff.tiles import work_grid
    from imgdiff.watch.run import pick_reference
    from imgdiff.zones import placed

    from .detect import outside_zones  # not at the top: detect -> tiled -> watch

    try:
        ref = pick_reference(m, reference)
        grid = work_grid(ref, m.bands, m.bbox)
        zones = placed(load_zones(m.zones), grid.crs, where=ref)
    except (ImgdiffError, RasterioError):
        return []
    return outside_zones(zones, grid.bounds, ref, m.zones)


def _fail_if_nothing_processed(summary: dict, manifest: str, outdir: str) -> None:
    """A run in which every scene failed is an error (exit 2), not a success with an empty table."""
    if summary["scenes_ok"] or not summary["scenes"]:
        return
    first = summary["scenes"][0]
    raise InputError(f"{manifest}: no scene could be processed ({summary['scenes_failed']} failed; "
                     f"{first['id']}: {first['error']}); each scene's error is in {outdir}/counts.csv")
