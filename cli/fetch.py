"""``imgdiff fetch``: the site window of Sentinel-2 bands from STAC items, as scene folders imgdiff reads."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import click

from imgdiff.errors import InputError
from imgdiff.stac import default_cache_dir, fetch_item, load_item, resolve_aoi, search
from imgdiff.stac.items import DEFAULT_BANDS

from .options import bands_opt, given, json_opt, overwrite_opt, show_progress, steps
from .search import aoi_options, catalog_options, date_options, limit_opt, policy_of, unknown_cloud_note


@click.command("fetch")
@click.argument("items", nargs=-1)
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False),
              help="Scene folder (one item) or parent folder of one folder per item (several).")
@aoi_options
@bands_opt
@date_options(required=False)
@click.option("--best", type=click.IntRange(1, 50), default=1, show_default=True,
              help="Without ITEMS: fetch this many of the best acquisitions of the search.")
@limit_opt
@click.option("--margin", "margin_m", type=click.FloatRange(0, 20000), default=500.0, show_default=True,
              help="Ground margin around the zones, in metres.")
@click.option("--no-scl", is_flag=True, help="Do not fetch the scene classification band (SCL.tif).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Content-addressed cache of fetched windows [default: $IMGDIFF_CACHE_DIR or ~/.cache/imgdiff/stac].")
@click.option("--no-cache", is_flag=True, help="Neither read nor fill the cache.")
@catalog_options
@overwrite_opt
@json_opt
@click.pass_context
def fetch_cmd(ctx: click.Context, items: tuple[str, ...], outdir: str, site: str | None, zones_file: str | None,
              bbox: tuple | None, bands: list[str] | None, start: dt.date | None, end: dt.date | None,
              max_cloud: float | None, keep_unknown_cloud: bool, best: int, limit: int, margin_m: float, no_scl: bool,
              cache_dir: str | None,
              no_cache: bool, catalog: str, collection: str, retries: int, timeout_s: int, deadline_s: int,
              overwrite: bool, as_json: bool) -> None:
    """Fetch the site window of STAC ITEMS (URLs, item JSON files or ids) into scene folders.

    Without ITEMS, searches --from/--to (and --max-cloud: items that state no scene cloud
    cover are then left out unless --keep-unknown-cloud), ranks the first --limit items as
    'imgdiff search' does and fetches the --best acquisitions; with ITEMS, those search
    options are refused.
    Only the window of the zones (plus --margin) is read from each band, by HTTP range
    requests. Re-running resumes: finished bands are kept.
    """
    aoi = resolve_aoi(site=site, zones=zones_file, bbox=bbox)
    policy = policy_of(retries, timeout_s, deadline_s)
    searched = None
    if items:
        ignored = [name for name, was_given in (("--from", start is not None), ("--to", end is not None),
                                                ("--max-cloud", max_cloud is not None),
                                                ("--keep-unknown-cloud", keep_unknown_cloud),
                                                ("--best", given(ctx, "best")), ("--limit", given(ctx, "limit")))
                   if was_given]
        if ignored:
            raise click.UsageError(f"{', '.join(ignored)} only apply to a search, and with ITEMS given there is "
                                   "none: drop the option(s), or drop ITEMS to search")
        stac_items = [load_item(ref, catalog=catalog, collection=collection, policy=policy) for ref in items]
    else:
        if start is None or end is None:
            raise InputError("give STAC item URLs/ids, or --from and --to to search for the best acquisition")
        if best > limit:
            raise click.UsageError(f"--best {best} is more than --limit {limit}: the search ranks at most --limit "
                                   "items; raise --limit or lower --best")
        found = search(aoi, start, end, catalog=catalog, collection=collection, max_cloud=max_cloud,
                       keep_unknown_cloud=keep_unknown_cloud, max_items=limit, policy=policy)
        note = unknown_cloud_note(found.notes)
        if not found:
            raise InputError(f"{catalog}: no acquisition between {start} and {end}; widen the dates or --max-cloud"
                             + (f" ({note})" if note else ""))
        if note and not as_json:
            click.echo(note, err=True)
        searched = found.notes
        stac_items = [dict(a.item) for a in found[:best]]
    cache = None if no_cache else (Path(cache_dir) if cache_dir else default_cache_dir())
    wanted = bands or list(DEFAULT_BANDS)
    out = Path(outdir)
    results = []
    labels = [f"{it['id']} {b}" for it in stac_items for b in [*wanted, *([] if no_scl else ["SCL"])]]
    with steps(labels, show_progress(as_json)) as advance:
        for it in stac_items:
            folder = out if len(stac_items) == 1 else out / str(it["id"])
            res = fetch_item(it, folder, aoi, bands=wanted, scl=not no_scl, margin_m=margin_m, cache_dir=cache,
                             overwrite=overwrite, policy=policy,
                             on_band=lambda b, i=it["id"]: advance(f"{i} {b}"))
            results.append(res)
    if as_json:
        out: dict[str, Any] = {"fetched": [r.to_dict() for r in results]}
        if searched is not None:
            out["search"] = searched.to_dict()
        click.echo(json.dumps(out))
        return
    for r in results:
        states = ", ".join(f"{b.name} {b.status}" for b in r.bands)
        click.echo(f"{r.item_id} ({r.date}, baseline {r.processing_baseline or '?'}): {states}"
                   + (f"; {r.retries} retried request(s)" if r.retries else ""))
        click.echo(f"wrote {r.folder}/ (bands, item.json, fetch.json)")
