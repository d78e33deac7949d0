"""``imgdiff eval change``: change-mask precision, recall, F1 and IoU on labelled cities."""

from __future__ import annotations

from pathlib import Path

import click

from imgdiff.change import METHODS
from imgdiff.data import data_dir
from imgdiff.errors import InputError
from imgdiff.evaluate.change import evaluate_change, labelled_cities

from .options import echo_json, json_opt, show_progress, steps


@click.command("change")
@click.option("--data", "data", type=click.Path(file_okay=False),
              help="Tree laid out like ../shared/data/oscd (<city>/before, after, change.tif); "
                   "default IMGDIFF_DATA_DIR/oscd.")
@click.option("--method", type=click.Choice(METHODS), default=None,
              help="Change method (default: that of imgdiff compare).")
@click.option("--city", "cities", multiple=True, help="Only these cities (repeatable).")
@json_opt
def eval_change_cmd(data: str | None, method: str | None, cities: tuple[str, ...], as_json: bool) -> None:
    """Score band 2 of the change.tif that `imgdiff compare` writes against labelled change maps."""
    root = Path(data) if data else data_dir() / "oscd"
    if (root / "oscd").is_dir() and not any((root / c).is_dir() for c in cities):
        root = root / "oscd"
    known = labelled_cities(root)
    unknown = [c for c in cities if c not in known]
    if unknown:
        raise InputError(f"{root}: no labelled city {', '.join(unknown)} (<city>/before, after, change.tif); "
                         f"it has {', '.join(known)}")
    names = list(dict.fromkeys(cities)) or known  # --city beirut --city beirut: once
    with steps(names, show_progress(as_json)) as advance:
        res = evaluate_change(root, method=method, cities=names, on_city=advance)
    out = res.to_dict()
    if as_json:
        echo_json(out)
        return
    click.echo(f"method {res.method} on {root}")
    click.echo(f"{'city':12s} {'precision':>9s} {'recall':>7s} {'F1':>6s} {'IoU':>6s} {'s':>6s}")
    for c, s in res.per_city.items():
        click.echo(f"{c:12s} {s['precision']:9.3f} {s['recall']:7.3f} {s['f1']:6.3f} {s['iou']:6.3f} "
                   f"{s['seconds']:6.1f}")
    p = res.pooled
    click.echo(f"{'pooled':12s} {p['precision']:9.3f} {p['recall']:7.3f} {p['f1']:6.3f} {p['iou']:6.3f}")
    click.echo(f"mean per-city F1 {out['mean_city_f1']:.3f}")
