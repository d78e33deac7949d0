"""``imgdiff info``: what a scene holds."""

from __future__ import annotations

import click

from imgdiff.io.inspect import describe_scene

from .options import bands_opt, echo_json, json_opt


@click.command("info")
@click.argument("path", type=click.Path())
@bands_opt
@json_opt
def info_cmd(path: str, bands: list[str] | None, as_json: bool) -> None:
    """Describe the scene at PATH: bands, resolution, CRS, bounds, shape, date, valid fraction."""
    d = describe_scene(path, bands)
    if as_json:
        echo_json(d)
        return
    click.echo(f"{d['path']}")
    click.echo(f"  crs:       {d['crs'] or 'none (local frame)'}")
    click.echo(f"  shape:     {d['shape'][0]} rows x {d['shape'][1]} cols, pixel {d['pixel_size_m'][0]} x {d['pixel_size_m'][1]} m")
    click.echo(f"  bounds:    {', '.join(f'{v:.6g}' for v in d['bounds'])}")
    if d["bounds_lonlat"]:
        click.echo(f"  lon/lat:   {', '.join(f'{v:.5f}' for v in d['bounds_lonlat'])}")
    click.echo(f"  date:      {d['date'] or 'unknown'}" + (f" (baseline {d['processing_baseline']})" if d["processing_baseline"] else ""))
    click.echo(f"  valid:     {d['valid_fraction']:.1%}")
    for b in d["bands"]:
        click.echo(f"  {b['name']:4s} {b['resolution_m'][0]:5.1f} m  {b['shape'][0]}x{b['shape'][1]}  {b['dtype']}  {b['file']}"
                   + ("  (no georeferencing: local frame, native pixel size assumed)" if b.get("georeferencing") else ""))
