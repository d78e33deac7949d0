"""``imgdiff compare``: change between two acquisitions of one place."""

from __future__ import annotations

import json

import click

import imgdiff
from imgdiff.io.write import check_outputs
from imgdiff.report.compare import COMPARE_OUTPUTS

from .options import bands_opt, bbox_opt, json_opt, overwrite_opt, show_progress, steps


@click.command("compare")
@click.argument("before", type=click.Path())
@click.argument("after", type=click.Path())
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False),
              help="Folder for change.tif, report.json and report.md.")
@bands_opt
@bbox_opt
@click.option("--no-coregister", is_flag=True, help="Do not estimate or remove the shift between dates.")
@overwrite_opt
@json_opt
def compare_cmd(before: str, after: str, outdir: str, bands: list[str] | None, bbox: tuple | None,
                no_coregister: bool, overwrite: bool, as_json: bool) -> None:
    """Compare BEFORE and AFTER scenes and write a change map and report into OUTDIR."""
    check_outputs(outdir, COMPARE_OUTPUTS, overwrite, create=False)  # fail before the work, not after
    with steps(["read", "align", "co-register", "change", "write"], show_progress(as_json)) as advance:
        b = imgdiff.read_scene(before, bands=bands, bbox=bbox)
        a = imgdiff.read_scene(after, bands=bands, bbox=bbox)
        result = imgdiff.compare(b, a, bands=bands, register=not no_coregister, on_step=advance)
        advance("write")
        report = imgdiff.write_compare(result, outdir, overwrite=overwrite, inputs=(b, a))
    if as_json:
        click.echo(json.dumps(report))
        return
    r, c = report["coregistration"], report["change"]
    click.echo(f"shift dx={r['dx']:+.3f} px dy={r['dy']:+.3f} px (reliability {r['reliability']:.2f}); "
               f"changed {c['changed_fraction']:.2%} of valid pixels ({c['changed_area_m2'] / 1e6:.3f} km²)")
    click.echo(f"wrote {outdir}/change.tif, report.json, report.md")
