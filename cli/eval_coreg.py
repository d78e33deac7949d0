"""``imgdiff eval coreg``: the co-registration accuracy benchmark on the dev data."""

from __future__ import annotations

import math

import click

from imgdiff.data import data_dir
from imgdiff.errors import InputError
from imgdiff.evaluate.coreg import run_benchmark

from .options import echo_json, json_opt, show_progress, steps

TARGETS = {"same_date_rmse_px": 0.03, "cross_date_rmse_px": 0.04, "local_rmse_px": 0.05}


@click.command("coreg")
@click.option("--data", "data", type=click.Path(file_okay=False), help="Shared data folder (default IMGDIFF_DATA_DIR).")
@click.option("--quick", is_flag=True, help="Fewer cases (four cities, one case each).")
@click.option("--cases", "show_cases", is_flag=True, help="Also print every case.")
@json_opt
def eval_coreg_cmd(data: str | None, quick: bool, show_cases: bool, as_json: bool) -> None:
    """Same-date, cross-date (differential) and local-field co-registration RMSE on OSCD."""
    from pathlib import Path

    root = Path(data) if data else data_dir()
    if not (root / "oscd").is_dir():
        raise InputError(f"{root}: no oscd/ folder; set IMGDIFF_DATA_DIR or pass --data")
    if not any((c / "before" / "B08.tif").is_file() and (c / "after" / "B08.tif").is_file()
               for c in (root / "oscd").iterdir()):
        raise InputError(f"{root / 'oscd'}: no city with before/B08.tif and after/B08.tif; pass a folder laid out "
                         "like ../shared/data (oscd/<city>/before, after)")
    with steps(["same-date", "cross-date", "local"], show_progress(as_json)) as advance:
        res = run_benchmark(root, quick=quick, on_case=advance)
    out = res.to_dict()
    if not show_cases:
        out.pop("cases")
    out["targets"] = TARGETS
    if as_json:  # NaN (no case of a kind) is not JSON: null
        echo_json(out)
        return

    def fmt(v: float) -> str:
        return "n/a" if not math.isfinite(v) else f"{v:.4f} px"

    n = out["n_cases"]
    click.echo(f"same-date RMSE  {fmt(res.same_date_rmse)} ({n['same-date']} cases; target <= 0.03)")
    click.echo(f"cross-date RMSE {fmt(res.cross_date_rmse)} ({n['cross-date']} cases; target <= 0.04)")
    click.echo(f"local RMSE      {fmt(res.local_rmse)} ({n['local']} scenes, >= {res.local_points} points each; "
               "target <= 0.05, >= 150 points)")
    for f in res.failures:
        click.echo(f"failed: {f}", err=True)
    if show_cases:
        for c in res.cases:
            click.echo(f"  {c.kind:10s} {c.name:14s} truth ({c.truth[0]:+.3f}, {c.truth[1]:+.3f}) "
                       f"error ({c.error[0]:+.4f}, {c.error[1]:+.4f}) rel {c.reliability:.2f} {c.seconds:.2f}s")
