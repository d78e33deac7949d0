"""``imgdiff eval vessels``: score the vessel detector on harbour scenes with ground truth."""

from __future__ import annotations

import click

from imgdiff.evaluate.vessels import evaluate_vessels, scene_dirs

from .options import counter, echo_json, json_opt, naming, show_progress


@click.command("vessels")
@click.option("--data", "data", required=True, type=click.Path(),
              help="Folder of scenes laid out like sen2ships (band files + vessels.json each).")
@click.option("--method", type=click.Choice(["auto", "cnn", "classical"]), default="auto", show_default=True,
              help="The shipped network, the classical baseline, or auto (network when installed).")
@click.option("--min-score", type=click.FloatRange(0.0, 1.0), default=None,
              help="Score threshold (default: the detector's own).")
@json_opt
def eval_vessels_cmd(data: str, method: str, min_score: float | None, as_json: bool) -> None:
    """Score vessel detection on every scene under --data: per scene and pooled TP/FP/FN, P/R/F1, count error."""
    from imgdiff.detect.vessels import detect_vessels

    kw = {} if min_score is None else {"min_score": min_score}

    def detector(scene):
        with naming(scene.meta.get("source")):
            return detect_vessels(scene, method=method, **kw)

    n = len(scene_dirs(data))  # fail early on a bad folder
    with counter(n, "scenes", show_progress(as_json)) as tick:
        ev = evaluate_vessels(data, detector=detector, on_scene=tick)
    out = ev.to_dict()
    out["method"] = method
    if as_json:
        echo_json(out)
        return
    click.echo(f"{'scene':<20} {'GT':>4} {'det':>4} {'TP':>4} {'FP':>4} {'FN':>4} {'P':>6} {'R':>6} {'F1':>6} {'count':>7}")
    for s in [*out["scenes"], out["pooled"]]:
        ce = "n/a" if s["count_error"] is None else f"{s['count_error']:+.1%}"
        p, r, f = ("n/a" if s[k] is None else f"{s[k]:.3f}" for k in ("precision", "recall", "f1"))
        click.echo(f"{s['name'][:20]:<20} {s['n_gt']:>4} {s['n_pred']:>4} {s['tp']:>4} {s['fp']:>4} {s['fn']:>4} "
                   f"{p:>6} {r:>6} {f:>6} {ce:>7}")
