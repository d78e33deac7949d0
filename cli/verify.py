"""``imgdiff verify``: check claims about a site against a before and an after scene."""

from __future__ import annotations

from dataclasses import replace

import click

from imgdiff.claims import load_claims, verify
from imgdiff.io.write import check_outputs
from imgdiff.report.verify import VERIFY_OUTPUTS, write_verify

from .options import (
    echo_json,
    given,
    json_opt,
    max_shift_opt,
    naming,
    overwrite_opt,
    pair_warnings,
    show_progress,
    steps,
)


@click.command("verify")
@click.argument("claims_file", metavar="CLAIMS.yaml", type=click.Path())
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False),
              help="Folder for report.json, report.html, report.md, detections_*.geojson and change.tif.")
@max_shift_opt(" Overrides the claims file's max_shift.")
@overwrite_opt
@json_opt
@click.pass_context
def verify_cmd(ctx: click.Context, claims_file: str, outdir: str, max_shift: float, overwrite: bool,
               as_json: bool) -> None:
    """Give each claim of CLAIMS.yaml a verdict (SUPPORTED, REFUTED, INCONCLUSIVE) with its evidence.

    The claims file names the before and after scenes and the zones (or a site), relative
    to itself; see samples/claims/tartus.yaml.
    """
    cf = load_claims(claims_file)
    if given(ctx, "max_shift"):
        cf = replace(cf, max_shift=max_shift)
    if cf.unused_keys:  # on stderr, also in --json mode
        click.echo(f"warning: {claims_file}: key(s) not used by imgdiff: {', '.join(cf.unused_keys)}", err=True)
    check_outputs(outdir, VERIFY_OUTPUTS, overwrite, create=False)  # fail before the work, not after
    objects = sorted({c.object for c in cf.claims})
    labels = ["read", "align", "co-register", "change", "clouds", *[f"detect {o}" for o in objects], "claims",
              "write"]
    with steps(labels, show_progress(as_json)) as advance:
        with naming(claims_file):  # "vessel detection needs ..." names no file
            v = verify(cf, on_step=advance)
        advance("write")
        report = write_verify(v, outdir, overwrite=overwrite)
    for name in v.zones_outside():
        click.echo(f"warning: {cf.zones_source}: zone {name} lies wholly outside the scenes' overlap (its claims are "
                   "INCONCLUSIVE); check the zones' coordinates (GeoJSON is lon/lat, RFC 7946)", err=True)
    for line in pair_warnings(report, None, "check 'before' and 'after'"):  # on stderr, also in --json mode
        click.echo(f"warning: {claims_file}: {line}", err=True)
    if as_json:
        echo_json(report)
        return
    for c in report["claims"]:
        click.echo(f"{c['id']}: {c['verdict']} (confidence {c['confidence']:.2f}; "
                   f"{c['counts']['before']} before, {c['counts']['after']} after in {c['zone']})")
    click.echo(f"wrote {outdir}/{', '.join(VERIFY_OUTPUTS)}")
