"""``imgdiff detect``: vessels or aircraft in one scene, written as GeoJSON."""

from __future__ import annotations

from pathlib import Path

import click
import shapely

import imgdiff
from imgdiff.detect.vessels import path_radiance, path_radiance_note, path_radiance_record
from imgdiff.errors import NoOverlapError, OutputError
from imgdiff.io.geojson import write_detections_geojson
from imgdiff.zones import Zones, placed, read_zones

from .options import bands_opt, bbox_opt, echo_json, json_opt, naming, overwrite_opt, show_progress, steps
from .tiled import detect_tiled_cli, should_tile


@click.command("detect")
@click.argument("scene", type=click.Path())
@click.option("--objects", type=click.Choice(["vessels", "aircraft"]), default="vessels", show_default=True,
              help="What to detect.")
@click.option("--zones", "zones_path", type=click.Path(), default=None,
              help="GeoJSON of named zones (lon/lat); only objects inside a zone are kept, labelled with it. "
                   "Of a whole tile (over 4096 x 4096 px) only the zones' window plus 2 km is read.")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False),
              help="GeoJSON FeatureCollection to write (one Polygon per object, scene CRS).")
@click.option("--min-score", type=click.FloatRange(0.0, 1.0), default=None,
              help="Score threshold in [0, 1] (default: the detector's own).")
@click.option("--method", type=click.Choice(["auto", "cnn", "classical"]), default="auto", show_default=True,
              help="The shipped network, the classical baseline, or auto (network when installed).")
@click.option("--tile-size", type=click.IntRange(256, 16384),
              help="Detect in windows of this many pixels (automatic for scenes over 4096 x 4096 px).")
@click.option("--tta", type=click.IntRange(1, 8), default=None,
              help="Vessel network passes averaged over flipped images, 1-8 (default 8; 4 halves the network time "
                   "of a whole-tile sweep).")
@bands_opt
@bbox_opt
@overwrite_opt
@json_opt
def detect_cmd(scene: str, objects: str, zones_path: str | None, output: str, min_score: float | None,
               method: str, bands: list[str] | None, bbox: tuple | None, tile_size: int | None, overwrite: bool,
               as_json: bool, tta: int | None = None) -> None:
    """Detect vessels or aircraft in SCENE and write them to OUTPUT as GeoJSON.

    With --json, by_zone counts the objects per zone of --zones (0 for a zone outside the scene, with a
    warning on stderr); without --zones, the whole scene is one zone named "scene"."""
    out = Path(output)
    if out.exists() and not overwrite:
        raise OutputError(f"{out}: exists already; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise OutputError(f"{out}: folder {out.parent} does not exist")
    zones = read_zones(zones_path) if zones_path else None
    warn_outside: list[str] = []
    if zones is not None and bbox is None and not tile_size:  # a whole tile: only the zones' window (+2 km)
        from rasterio.warp import transform_bounds

        from imgdiff.tiles import zones_window

        window = zones_window(scene, zones, bands)
        if window is not None:
            bbox = transform_bounds(window[1], "EPSG:4326", *window[0])
    with steps(["read", "detect", "write"], show_progress(as_json)) as advance:
        advance("read")
        if tile_size or should_tile(scene, bands, bbox):  # whole tiles: windows with overlap (imgdiff.tiles)
            if zones is not None:
                from imgdiff.tiles import work_grid

                grid = work_grid(scene, bands, bbox)
                zones = placed(zones, grid.crs, where=scene)
                warn_outside = outside_zones(zones, grid.bounds, scene, zones_path)
            with naming(scene):
                dets, haze = detect_tiled_cli(scene, objects, zones, min_score=min_score, method=method,
                                              bands=bands, bbox=bbox, tile_size=tile_size, on_step=advance, tta=tta)
        else:
            sc = imgdiff.read_scene(scene, bands=bands, bbox=bbox)
            if zones is not None:  # lon/lat zones cannot go on a scene without CRS: say so, do not count 0
                zones = placed(zones, sc.crs, where=scene)
                warn_outside = outside_zones(zones, sc.bounds, scene, zones_path)
            advance("detect")
            if objects == "vessels":
                kw = {} if min_score is None else {"min_score": min_score}
                kw.update({} if tta is None else {"tta": tta})
                # measured once: the path radiance reported is the one the rescorer's features lose
                haze = path_radiance(sc) if method != "classical" else None
                with naming(scene):
                    dets = imgdiff.detect_vessels(sc, zones, method=method, haze=haze, **kw)
            else:
                from imgdiff.detect.aircraft import detect_aircraft

                haze = None
                with naming(scene):
                    dets = detect_aircraft(sc, zones, method=method, min_score=min_score)
                if zones is not None:
                    dets = dets.filter([d.zone is not None for d in dets])
        advance("write")
        write_detections_geojson(out, dets)
    if warn_outside:
        click.echo(f"warning: zone(s) {', '.join(warn_outside)} of {zones_path} lie outside the scene (counted 0)",
                   err=True)
    if zones is not None:
        by_zone = dets.count_by_zone()
        counts = {n: by_zone.get(n, 0) for n in zones.names}
    else:  # no zones: the whole scene is one zone, named as `watch` names it (imgdiff.watch.WHOLE_SCENE)
        counts = {"scene": len(dets)}
    if as_json:
        summary = {"scene": scene, "objects": objects, "output": str(out), "count": len(dets),
                   "by_zone": counts}
        if objects == "vessels":
            summary["moving"] = sum(1 for d in dets if d.extra.get("moving"))
            summary["path_radiance"] = path_radiance_record(haze)
        echo_json(summary)
        return
    click.echo(f"{len(dets)} {object_noun(objects, len(dets))} detected; wrote {out}")
    if note := path_radiance_note(haze):
        click.echo(f"hazy or top-of-atmosphere (L1C) water: path radiance taken off before vessel scoring ({note}); "
                   "the detector's figures were measured on surface-reflectance (L2A) scenes")
    if objects == "aircraft" and zones is None:
        click.echo("the aircraft detector was trained on airfield aprons: off them (roofs, yards) expect false "
                   "alarms; give --zones to count on the apron")
    if zones is not None:
        for name, n in counts.items():
            click.echo(f"  {name}: {n}")


def outside_zones(zones: Zones, bounds: tuple[float, float, float, float], scene: str, zones_path: str | None) -> list[str]:
    """Names of the zones (placed on the scene) that miss its bounds; NoOverlapError when all of them do."""
    footprint = shapely.box(*bounds)
    out = [n for n, g in zones.geometries.items() if not g.intersects(footprint) or g.intersection(footprint).area <= 0]
    if out and len(out) == len(zones.names):
        raise NoOverlapError(f"{zones_path}: none of its zones ({', '.join(out)}) overlaps the scene {scene}; "
                             "give zones of the place the scene shows")
    return out


def object_noun(objects: str, n: int) -> str:
    """``objects`` ("vessels" or "aircraft") for a count of ``n``: "1 vessel", "1 aircraft" (its own plural)."""
    return objects[:-1] if n == 1 and objects.endswith("s") else objects
