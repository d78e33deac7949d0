"""``imgdiff search``: Sentinel-2 acquisitions of a site between two dates, from a STAC API, best first."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import click

from imgdiff.stac import DEFAULT_CATALOG, DEFAULT_COLLECTION, RetryPolicy, SearchNotes, resolve_aoi, search
from imgdiff.stac.aoi import aoi_lonlat_bounds

from .options import _parse_bbox, json_opt


def _date(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date; use YYYY-MM-DD") from None


def aoi_options(f: Callable) -> Callable:
    """--site / --zones / --bbox: the area of interest (exactly one)."""
    f = click.option("--bbox", callback=_parse_bbox, metavar="W,S,E,N", help="Area of interest in lon/lat degrees.")(f)
    f = click.option("--zones", "zones_file", type=click.Path(dir_okay=False),
                     help="GeoJSON of named zone polygons (lon/lat).")(f)
    f = click.option("--site", help="A named site (e.g. tartus, hmeimim).")(f)
    return f


def catalog_options(f: Callable) -> Callable:
    """--catalog / --collection / --retries / --timeout / --deadline."""
    f = click.option("--deadline", "deadline_s", type=click.IntRange(1, 86400), default=300, show_default=True,
                     help="Most time, in seconds, one band's download (or one SCL read) may take in all, and the "
                          "catalogue's search in all (its landing page and every page of items), retries and waits "
                          "included; also each request of an item's JSON: a server sending too slowly fails then "
                          "(not retried), leaving no partial file or output.")(f)
    f = click.option("--timeout", "timeout_s", type=click.IntRange(1, 600), default=30, show_default=True,
                     help="Most time, in seconds, one HTTP request of a band or SCL file (a range of it) may take "
                          "in all, connect and transfer; a request of the catalogue's JSON (a page of the search, an "
                          "item) may wait this long to connect, and again for each piece of its answer (--deadline "
                          "bounds it whole).")(f)
    f = click.option("--retries", type=click.IntRange(1, 20), default=4, show_default=True,
                     help="Attempts in all, the first included, of each band or SCL read, of an item's JSON and of "
                          "the catalogue search as a whole (waits of 1, 2, 4 ... s between them).")(f)
    f = click.option("--collection", default=DEFAULT_COLLECTION, show_default=True, help="STAC collection id.")(f)
    f = click.option("--catalog", default=DEFAULT_CATALOG, show_default=True, help="STAC API root URL.")(f)
    return f


def date_options(required: bool) -> Callable[[Callable], Callable]:
    def deco(f: Callable) -> Callable:
        f = click.option("--keep-unknown-cloud", is_flag=True,
                         help="With --max-cloud, keep items that state no scene cloud cover (eo:cloud_cover).")(f)
        f = click.option("--max-cloud", type=click.FloatRange(0, 100), default=None,
                         help="Keep only items whose scene cloud cover (eo:cloud_cover) is at most this (percent); "
                              "asked of the catalogue when it can filter, so that --limit counts items that pass. "
                              "Items stating no cloud cover are left out (and counted) unless --keep-unknown-cloud.")(f)
        f = click.option("--to", "end", callback=_date, required=required, metavar="YYYY-MM-DD",
                         help="Last day (UTC, included).")(f)
        f = click.option("--from", "start", callback=_date, required=required, metavar="YYYY-MM-DD",
                         help="First day (UTC).")(f)
        return f

    return deco


#: ``--limit`` of ``search`` and ``fetch`` (``max_items`` of :func:`imgdiff.stac.search`).
limit_opt = click.option("--limit", type=click.IntRange(1, 10000), default=200, show_default=True,
                         help="At most this many items from the catalogue (that pass --max-cloud) are ranked; "
                              "a warning says when more match.")


def policy_of(retries: int, timeout_s: int, deadline_s: int) -> RetryPolicy:
    return RetryPolicy(attempts=retries, timeout_s=timeout_s, deadline_s=deadline_s)


def unknown_cloud_note(notes: SearchNotes) -> str:
    """The line telling how many items without eo:cloud_cover --max-cloud left out ("" when none)."""
    n = notes.unknown_cloud_left_out
    return f"{n} item(s) without eo:cloud_cover left out; --keep-unknown-cloud keeps them" if n else ""


def _pct(v: float | None) -> str:
    return "?" if v is None or v != v else f"{100 * v:.1f}%"


@click.command("search")
@aoi_options
@date_options(required=True)
@catalog_options
@click.option("--no-scl", is_flag=True, help="Do not read the SCL band (no cloud fraction inside the zones).")
@limit_opt
@json_opt
def search_cmd(site: str | None, zones_file: str | None, bbox: tuple | None, start: dt.date, end: dt.date,
               max_cloud: float | None, keep_unknown_cloud: bool, catalog: str, collection: str, retries: int,
               timeout_s: int, deadline_s: int, no_scl: bool, limit: int, as_json: bool) -> None:
    """List Sentinel-2 acquisitions covering a site between two dates, best first.

    Best means least cloud and no-data inside the site's zones (read by window from each
    item's SCL band), then least scene cloud cover. With --max-cloud, items that state no
    scene cloud cover are left out (a note on stderr, or unknown_cloud_left_out in --json
    says how many) unless --keep-unknown-cloud.
    """
    aoi = resolve_aoi(site=site, zones=zones_file, bbox=bbox)
    found = search(aoi, start, end, catalog=catalog, collection=collection, max_cloud=max_cloud,
                   keep_unknown_cloud=keep_unknown_cloud, max_items=limit, read_scl=not no_scl,
                   policy=policy_of(retries, timeout_s, deadline_s))
    rows = [a.to_dict() for a in found]
    if as_json:
        out: dict[str, Any] = {
            "catalog": catalog, "collection": collection, "from": start.isoformat(), "to": end.isoformat(),
            "area": site or zones_file or "bbox", "bbox_lonlat": list(aoi_lonlat_bounds(aoi)),
            "max_cloud": max_cloud, "keep_unknown_cloud": keep_unknown_cloud, **found.notes.to_dict(),
            "acquisitions": rows,
        }
        click.echo(json.dumps(out))
        return
    click.echo(f"{'date':10s}  {'item':34s}  {'tile':5s}  {'baseline':8s}  {'scene cloud':>11s}  "
               f"{'zone cloud':>10s}  {'zone no-data':>12s}")
    for r in rows:
        zc = r["zone_cover"] or {}
        scene = r["scene_cloud_cover_pct"]
        click.echo(f"{r['date'] or '?':10s}  {r['id']:34s}  {r['tile'] or '?':5s}  {r['processing_baseline'] or '?':8s}  "
                   f"{'?' if scene is None else f'{scene:.1f}%':>11s}  {_pct(zc.get('cloud_fraction')):>10s}  "
                   f"{_pct(zc.get('nodata_fraction')):>12s}")
    note = unknown_cloud_note(found.notes)
    if note:
        click.echo(note, err=True)
    if not rows:
        click.echo("no acquisition found; widen the dates or raise --max-cloud", err=True)
