"""``imgdiff compare``: change between two acquisitions of one place."""

from __future__ import annotations

import json

import click

import imgdiff
from imgdiff.claims import zone_section
from imgdiff.io.write import check_outputs
from imgdiff.report.compare import COMPARE_OUTPUTS
from imgdiff.sites import load_zones

from .options import bands_opt, bbox_opt, json_opt, overwrite_opt, show_progress, steps
from .tiled import compare_tiled_with_progress, should_tile


@click.command("compare")
@click.argument("before", type=click.Path())
@click.argument("after", type=click.Path())
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False),
              help="Folder for change.tif, report.json and report.md.")
@bands_opt
@bbox_opt
@click.option("--no-coregister", is_flag=True, help="Do not estimate or remove the shift between dates.")
@click.option("--tile-size", type=click.IntRange(64, 16384),
              help="Work in windows of this many pixels (automatic for scenes over 4096 x 4096 px).")
@click.option("--site", help="Named site (tartus, hmeimim): add object counts and change per zone.")
@click.option("--zones", "zones_file", type=click.Path(dir_okay=False),
              help="GeoJSON zones file (lon/lat): add object counts and change per zone.")
@overwrite_opt
@json_opt
def compare_cmd(before: str, after: str, outdir: str, bands: list[str] | None, bbox: tuple | None,
                no_coregister: bool, tile_size: int | None, site: str | None, zones_file: str | None,
                overwrite: bool, as_json: bool) -> None:
    """Compare BEFORE and AFTER scenes and write a change map and report into OUTDIR."""
    zones = load_zones(zones_file or site) if (zones_file or site) else None
    check_outputs(outdir, COMPARE_OUTPUTS, overwrite, create=False)  # fail before the work, not after
    if zones is None and (tile_size or should_tile(before, bands, bbox)):  # whole tiles: windows, bounded memory (imgdiff.tiles)
        report = compare_tiled_with_progress(before, after, outdir, bands=bands, bbox=bbox, tile_size=tile_size,
                                             register=not no_coregister, overwrite=overwrite,
                                             progress=show_progress(as_json))
    else:
        with steps(["read", "align", "co-register", "change", "write"], show_progress(as_json)) as advance:
            b = imgdiff.read_scene(before, bands=bands, bbox=bbox)
            a = imgdiff.read_scene(after, bands=bands, bbox=bbox)
            result = imgdiff.compare(b, a, bands=bands, register=not no_coregister, on_step=advance)
            extra = {"zones": zone_section(result, zones)} if zones is not None else None
            advance("write")
            report = imgdiff.write_compare(result, outdir, overwrite=overwrite, inputs=(b, a), extra=extra)
    if as_json:
        click.echo(json.dumps(report))
        return
    r, c = report["coregistration"], report["change"]
    click.echo(f"shift dx={r['dx']:+.3f} px dy={r['dy']:+.3f} px (reliability {r['reliability']:.2f}); "
               f"changed {c['changed_fraction']:.2%} of valid pixels ({c['changed_area_m2'] / 1e6:.3f} km²)")
    click.echo(f"wrote {outdir}/change.tif, report.json, report.md")
