"""``imgdiff compare``: change between two acquisitions of one place."""

from __future__ import annotations

from pathlib import Path

import click

import imgdiff
from imgdiff.change import METHODS
from imgdiff.claims import survey
from imgdiff.errors import InputError
from imgdiff.io.write import check_outputs
from imgdiff.report.compare import COMPARE_OUTPUTS
from imgdiff.report.verify import VERIFY_OUTPUTS, write_verify
from imgdiff.sites import load_zones
from imgdiff.stac.resolve import resolve_scene_path

from .options import (
    bands_opt,
    bbox_opt,
    check_max_shift_applies,
    echo_json,
    json_opt,
    max_shift_opt,
    naming,
    overwrite_opt,
    pair_warnings,
    show_progress,
    steps,
)
from .tiled import compare_tiled_with_progress, should_tile


@click.command("compare")
@click.argument("before", type=click.Path())
@click.argument("after", type=click.Path())
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False),
              help="Folder for change.tif, report.json and report.md.")
@bands_opt
@bbox_opt
@click.option("--no-coregister", is_flag=True, help="Do not estimate or remove the shift between dates.")
@max_shift_opt()
@click.option("--method", type=click.Choice(METHODS), default=None,
              help="Change method (default mlp, the best on labelled OSCD cities).")
@click.option("--tile-size", type=click.IntRange(64, 16384),
              help="Work in windows of this many pixels (automatic for scenes over 4096 x 4096 px).")
@click.option("--site", help="Named site (tartus, hmeimim): object counts and change per zone, the report of "
              "'imgdiff verify' without claims (report.html, detections_*.geojson too).")
@click.option("--zones", "zones_file", type=click.Path(dir_okay=False),
              help="GeoJSON zones file (lon/lat), as --site.")
@overwrite_opt
@json_opt
@click.pass_context
def compare_cmd(ctx: click.Context, before: str, after: str, outdir: str, bands: list[str] | None, bbox: tuple | None,
                no_coregister: bool, max_shift: float, method: str | None, tile_size: int | None, site: str | None,
                zones_file: str | None, overwrite: bool, as_json: bool) -> None:
    """Compare BEFORE and AFTER scenes and write a change map and report into OUTDIR.

    BEFORE and AFTER are scene paths, or STAC item URLs / ids (fetched for --bbox or the site's zones).
    """
    check_max_shift_applies(ctx, no_coregister, max_shift)
    if site and zones_file:
        raise InputError(f"--site {site} and --zones {zones_file}: give exactly one (--site names a catalogue site, "
                         "--zones a GeoJSON file)")
    zones = load_zones(zones_file or site) if (zones_file or site) else None
    before, after = (str(resolve_scene_path(ref, aoi=zones, bbox=bbox, bands=bands)) for ref in (before, after))
    if zones is not None:  # per-zone counts and change: the verify report without claims
        if tile_size:
            raise click.UsageError("--tile-size does not apply with --site/--zones: a whole tile is read only "
                                   "around the zones (imgdiff.claims.read_for_zones)")
        check_outputs(outdir, VERIFY_OUTPUTS, overwrite, create=False)
        labels = ["read", "align", "co-register", "change", "clouds", "detect vessels", "detect aircraft", "write"]
        with steps(labels, show_progress(as_json)) as advance:
            with naming(before, after):
                v = survey(before, after, zones, zones_source=f"site:{site}" if site else str(zones_file),
                           bands=bands, bbox=bbox, method=method, register=not no_coregister, on_step=advance,
                           max_shift=max_shift)
            advance("write")
            report = write_verify(v, outdir, overwrite=overwrite)
        for line in pair_warnings(report, method):  # on stderr, also in --json mode
            click.echo(f"warning: {line}", err=True)
        for name in v.zones_outside():  # on stderr, also in --json mode (as imgdiff verify says it)
            click.echo(f"warning: {zones_file or f'site {site}'}: zone {name} lies wholly outside the scenes' overlap "
                       "(nothing counted there); check the zones' coordinates (GeoJSON is lon/lat, RFC 7946)", err=True)
        if as_json:
            echo_json(report)
            return
        for n, z in report["zones"].items():
            click.echo(f"{n}: " + ", ".join(f"{k} {c['before']} -> {c['after']}" for k, c in z["counts"].items())
                       + f"; clear {z['before']['clear_fraction']:.0%} / {z['after']['clear_fraction']:.0%}")
        click.echo(f"wrote {outdir}/{', '.join(VERIFY_OUTPUTS)}")
        return
    check_outputs(outdir, COMPARE_OUTPUTS, overwrite, create=False)  # fail before the work, not after
    if tile_size or should_tile(before, bands, bbox):  # whole tiles: windows, bounded memory (imgdiff.tiles)
        report = compare_tiled_with_progress(before, after, outdir, bands=bands, bbox=bbox, tile_size=tile_size,
                                             register=not no_coregister, overwrite=overwrite,
                                             progress=show_progress(as_json), method=method, max_shift=max_shift)
    else:
        with steps(["read", "align", "co-register", "change", "write"], show_progress(as_json)) as advance:
            b = imgdiff.read_scene(before, bands=bands, bbox=bbox)
            a = imgdiff.read_scene(after, bands=bands, bbox=bbox)
            result = imgdiff.compare(b, a, bands=bands, register=not no_coregister, on_step=advance,
                                     method=method, max_shift=max_shift)
            advance("write")
            report = imgdiff.write_compare(result, outdir, overwrite=overwrite, inputs=(b, a))
    if overwrite:  # files of a zone report written here before no longer describe this run
        for name in sorted(set(VERIFY_OUTPUTS) - set(COMPARE_OUTPUTS)):
            (Path(outdir) / name).unlink(missing_ok=True)
    for line in pair_warnings(report, method):  # on stderr, also in --json mode (report.json holds them too)
        click.echo(f"warning: {line}", err=True)
    if as_json:
        echo_json(report)
        return
    r, c = report["coregistration"], report["change"]
    shift = (f"shift dx={r['dx']:+.3f} px dy={r['dy']:+.3f} px (reliability {r['reliability']:.2f})"
             if r["method"] != "none" else f"no shift removed ({'co-registration failed' if r['notes'] else 'not co-registered'})")
    click.echo(f"{shift}; "
               f"changed {c['changed_fraction']:.2%} of valid pixels ({c['changed_area_m2'] / 1e6:.3f} km²)")
    click.echo(f"wrote {outdir}/change.tif, report.json, report.md")
