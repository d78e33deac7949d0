"""``imgdiff samples``: rebuild the shipped (simulated) sample sites and scenes."""

from __future__ import annotations

import json
from pathlib import Path

import click

from imgdiff.errors import OutputError
from imgdiff.simulate import write_samples

from .options import json_opt, show_progress, steps

#: The repository's samples folder (when run from a source checkout).
DEFAULT_ROOT = Path(__file__).resolve().parent.parent / "samples"


@click.command("samples")
@click.option("--regenerate", is_flag=True, required=True,
              help="Render the simulated scenes and write the site GeoJSON files again.")
@click.option("-o", "--output", "root", type=click.Path(file_okay=False), default=None,
              help=f"Samples folder (default: the repository's samples/, {DEFAULT_ROOT}).")
@json_opt
def samples_cmd(regenerate: bool, root: str | None, as_json: bool) -> None:
    """Rebuild samples/sites/*.geojson and samples/scenes/ bit-identically (fixed seeds).

    The scenes are SIMULATED Sentinel-2-like renderings with known truth (truth.json
    beside each band folder), not real images.
    """
    out = Path(root) if root else DEFAULT_ROOT
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out}: cannot create the samples folder ({e.strerror})") from None
    labels = ["tartus/2024-12-03", "tartus/2024-12-13", "tartus/2024-12-13_cloudy", "hmeimim/2024-12-03",
              "hmeimim/2024-12-13"]
    with steps(labels, show_progress(as_json)) as advance:
        written = write_samples(out, on_step=advance)
    if as_json:
        click.echo(json.dumps({"root": str(out), "files": [str(p) for p in written]}))
        return
    click.echo(f"wrote {len(written)} files under {out}")
