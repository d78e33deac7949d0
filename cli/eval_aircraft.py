"""``imgdiff eval aircraft``: score the aircraft detector on labelled chips."""

from __future__ import annotations

import click

from imgdiff.evaluate.aircraft import chip_dirs, evaluate_aircraft

from .options import counter, echo_json, json_opt, naming, show_progress


@click.command("aircraft")
@click.option("--data", "data", required=True, type=click.Path(),
              help="Folder of chips laid out like aircraft_s2sim (B02..B04.tif + aircraft.json each).")
@click.option("--min-length", "min_length", type=click.FloatRange(0.0), default=40.0, show_default=True,
              help="Aircraft shorter than this (metres) or truncated are don't-care.")
@click.option("--method", type=click.Choice(["auto", "cnn", "classical"]), default="auto", show_default=True,
              help="Detector: the shipped network, the top-hat baseline, or auto (network when installed).")
@click.option("--min-score", "--threshold", "threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="Score threshold, 0-1 (default: the detector's own); --threshold is the older name.")
@click.option("--merge-duplicates", is_flag=True,
              help="Merge ground-truth boxes listed twice (centres < 1 px apart) before scoring.")
@json_opt
def eval_aircraft_cmd(data: str, min_length: float, method: str, threshold: float | None, merge_duplicates: bool,
                      as_json: bool) -> None:
    """Score aircraft detection on every chip under --data: per chip and pooled P/R/F1, recall by length."""
    from imgdiff.detect.aircraft import detect_aircraft

    def detector(scene):
        with naming(scene.meta.get("source")):
            return detect_aircraft(scene, method=method, min_score=threshold)

    n = len(chip_dirs(data))  # fail early on a bad folder
    with counter(n, "chips", show_progress(as_json)) as tick:
        ev = evaluate_aircraft(data, min_length_m=min_length, detector=detector, on_chip=tick,
                               dedupe=merge_duplicates)
    out = ev.to_dict()
    out["method"] = method
    if as_json:
        echo_json(out)
        return
    click.echo(f"{'chip':<40} {'TP':>4} {'FP':>4} {'FN':>4} {'P':>6} {'R':>6} {'F1':>6}")
    for c in out["chips"]:
        click.echo(f"{c['chip'][:40]:<40} {c['tp']:>4} {c['fp']:>4} {c['fn']:>4} "
                   f"{c['precision']:>6.3f} {c['recall']:>6.3f} {c['f1']:>6.3f}")
    p = out["pooled"]
    click.echo(f"pooled (aircraft >= {min_length:g} m, {out['n_chips']} chips): TP {p['tp']} FP {p['fp']} FN {p['fn']} "
               f"P {p['precision']:.3f} R {p['recall']:.3f} F1 {p['f1']:.3f}")
    click.echo("recall by length (detection limit):")
    for b in out["recall_by_length"]:
        lo, hi = b["bin_m"]
        label = f"{lo:g}-{hi:g} m" if hi is not None else f">{lo:g} m"
        rec = "n/a" if b["recall"] is None else f"{b['recall']:.3f}"
        click.echo(f"  {label:<10} n={b['n']:<5} recall {rec}")
