"""``imgdiff coregister``: sub-pixel shift between two scenes, optionally the warped target."""

from __future__ import annotations

from pathlib import Path

import click

import imgdiff
from imgdiff.change import saturation_in_place
from imgdiff.compare import register_paths
from imgdiff.coregister import MATCH_BANDS
from imgdiff.errors import OutputError
from imgdiff.grid import Grid, reproject_scene
from imgdiff.io.read import find_band_sources
from imgdiff.io.write import atomic_path, write_geotiff

from .options import bands_opt, echo_json, json_opt, max_shift_opt, naming, overwrite_opt, show_progress, steps


@click.command("coregister")
@click.argument("reference", type=click.Path())
@click.argument("target", type=click.Path())
@click.option("--local", is_flag=True, help="Measure a grid of tie points and fit a smooth displacement model "
              "(--json then lists the tie points too).")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write the target warped onto the reference grid (tiled, compressed float32 GeoTIFF; "
              "saturated pixels kept in place, none of their light spread).")
@bands_opt
@max_shift_opt()
@click.option("--spacing", type=click.IntRange(16, 4096), help="Tie-point spacing in pixels (with --local).")
@click.option("--interpolation", type=click.Choice(["spline", "cubic", "lanczos", "linear", "nearest"]), default="spline",
              show_default=True, help="Resampling kernel of the warped output.")
@overwrite_opt
@json_opt
def coregister_cmd(reference: str, target: str, local: bool, output: str | None, bands: list[str] | None,
                   max_shift: float, spacing: int | None, interpolation: str, overwrite: bool, as_json: bool) -> None:
    """Estimate the shift of TARGET relative to REFERENCE (a feature at reference pixel (x, y)
    appears at target pixel (x + dx, y + dy)); with -o also write the target resampled onto
    the reference grid with the shift (or the local model) removed, its saturated pixels kept
    in place: on the pixels whose sample position falls on one, none of their light around them
    (imgdiff.change.saturation_in_place)."""
    if output and Path(output).suffix.lower() not in (".tif", ".tiff"):
        raise OutputError(f"{output}: the warped scene is written as a GeoTIFF; name it .tif")
    if output and Path(output).exists() and not overwrite:
        raise OutputError(f"{output}: exists already; pass --overwrite to replace it")
    if output and not Path(output).parent.is_dir():  # fail before the work, not after
        raise OutputError(f"{output}: folder {Path(output).parent} does not exist")
    labels = ["co-register"] + (["read", "warp", "write"] if output else [])
    with steps(labels, show_progress(as_json)) as advance:
        advance("co-register")
        with naming(reference, target):  # "the strongest correlation is at ..." names no scene
            # measured again without clouds when they take most tie points (scenes up to 4096 x 4096 px)
            reg = register_paths(reference, target, bands=bands, local=local, max_shift=max_shift, spacing=spacing)
        if output:
            advance("read")
            ref = imgdiff.read_scene(reference, bands=bands[:1] if bands else _grid_band(reference))
            tgt = reproject_scene(imgdiff.read_scene(target, bands=bands), Grid.of(ref))
            advance("warp")
            # saturated pixels stay where they fall, unspread (as reproject_scene and the change path keep them)
            moved = saturation_in_place(tgt, imgdiff.warp(tgt, reg, interpolation=interpolation), reg,
                                        interpolation=interpolation)
            advance("write")
            names = list(moved.bands)
            with atomic_path(output) as tmp:
                tags = {"IMGDIFF_SHIFT_PX": f"{reg.dx:.4f},{reg.dy:.4f}"}
                if moved.date is not None:  # the target's date travels with its pixels (read back by read_scene)
                    tags["ACQUISITION_DATE"] = moved.date.isoformat()
                write_geotiff(tmp, [moved.bands[n] for n in names], Grid.of(moved), descriptions=names,
                              nodata=float("nan"), tags=tags)
    out = reg.to_dict()
    if as_json:
        echo_json(out)
        return
    click.echo(f"shift dx={reg.dx:+.3f} px dy={reg.dy:+.3f} px ({reg.dx_m:+.2f} m east, {reg.dy_m:+.2f} m north), "
               f"uncertainty {reg.uncertainty_px:.3f} px, reliability {reg.reliability:.2f}")
    click.echo(f"tie points: {len(reg.points)} accepted, {len(reg.rejected)} rejected"
               + (f"; local model degree {reg.model.degree}, rmse {reg.model.rmse_px:.3f} px" if reg.model else ""))
    for note in reg.notes:
        click.echo(f"warning: {note}", err=True)
    if output:
        click.echo(f"wrote {output}")


def _grid_band(path: str) -> list[str] | None:
    """One sharp band of a scene (its grid is the scene's grid), to avoid reading every band."""
    names = [s.name for s in find_band_sources(path)]
    sharp = [b for b in MATCH_BANDS if b in names]
    return sharp[:1] or None
