"""Aircraft detection: accuracy and speed figures (run by hand, prints figures).

    python benchmarks/aircraft.py            # needs $IMGDIFF_DATA_DIR/aircraft_s2sim
    python benchmarks/aircraft.py --lengths  # detected against true lengths: aircraft_s2sim and the Hmeimim samples

Prints
1. the grouped cross-validation figures of the shipped network (from its model card: these are
   the honest held-out estimate; the network was trained on every dev chip afterwards),
2. the classical baseline (white top-hat, robust z, components) and the shipped network on the
   dev chips (the network's figures here are on its own training data: optimistic),
3. recall on simulated aprons with known aircraft (never seen in training),
4. speed: a 128 x 128 chip and a 1000 x 1000 scene (mosaic of chips), median of several runs.

``--lengths [DIR]`` prints the detected length against the truth instead: on ``aircraft_s2sim`` (matched,
non-truncated aircraft; the label is the long side of the aircraft's axis-aligned box, what the network
learned), with the shipped network (its own training data) and, when the fold networks of DIR are there
(default ``$IMGDIFF_FOLDS_DIR``, see ``training/folds.py``), with the grouped fold network that never saw
the airport; then on the simulated Hmeimim samples (``samples/scenes/hmeimim``, the truth's length and the
long side of its box).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from imgdiff.data import data_dir
from imgdiff.detect.aircraft import CARD_PATH, detect_aircraft
from imgdiff.detect.aircraft_sim import simulate_apron
from imgdiff.evaluate.aircraft import evaluate_aircraft
from imgdiff.evaluate.detection import match_detections, prf
from imgdiff.io.read import read_scene

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "training"))
from folds import aircraft_detector_files, fold_paths  # noqa: E402  (training/: the fold folder's layout)


def _fmt(ev) -> str:
    p = ev.pooled
    rec = " ".join("n/a" if r is None else f"{r:.2f}" for r in ev.recall_by_length)
    return (f"TP {ev.tp} FP {ev.fp} FN {ev.fn}  P {p['precision']:.3f} R {p['recall']:.3f} F1 {p['f1']:.3f}"
            f"  | recall by length 20-30/30-40/40-50/50-70/>70 m: {rec}")


def main() -> None:
    card = json.loads(CARD_PATH.read_text())
    cv = card["cross_validation"]
    p = cv["pooled"]
    print(f"[1] grouped CV ({cv['scheme']}), aircraft >= 40 m, threshold {card['score_threshold']}:")
    print(f"    pooled TP {p['tp']} FP {p['fp']} FN {p['fn']}  P {p['precision']:.3f} R {p['recall']:.3f} "
          f"F1 {p['f1']:.3f}")
    for f in cv["per_fold"]:
        print(f"    fold {f['fold']} ({f['n_chips']} chips): P {f['precision']:.3f} R {f['recall']:.3f} F1 {f['f1']:.3f}")
    lim = card["detection_limits"]
    print("    recall by length:", ", ".join(
        f"{lo}-{hi or 'inf'} m: {'n/a' if r is None else f'{r:.2f}'} (n={n})"
        for (lo, hi), r, n in zip(lim["bins_m"], lim["recall"], lim["n"])))

    data = data_dir() / "aircraft_s2sim"
    if data.is_dir():
        ev = evaluate_aircraft(data, detector=lambda s: detect_aircraft(s, method="classical"))
        print(f"[2] classical baseline, dev chips:        {_fmt(ev)}")
        ev = evaluate_aircraft(data)
        print(f"[2] network, dev chips (training data!):  {_fmt(ev)}")
    else:
        print(f"[2] skipped: {data} missing")

    tp = fp = fn = 0
    for seed in range(20):
        scene, planes = simulate_apron(1000 + seed, lengths_m=(40, 50, 60, 70, 80, 90))
        dets = detect_aircraft(scene)
        m = match_detections(dets.boxes, dets.scores, np.array([q.box for q in planes]))
        tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
    s = prf(tp, fp, fn)
    print(f"[3] simulated aprons (20 x 6 aircraft of 40-90 m): TP {tp} FP {fp} FN {fn}  "
          f"P {s['precision']:.3f} R {s['recall']:.3f} F1 {s['f1']:.3f}")

    chip, _ = simulate_apron(1, lengths_m=(40, 50, 60, 70))
    if data.is_dir():
        from imgdiff.io.read import read_scene

        chips = [read_scene(d) for d in sorted(data.iterdir())[:64] if (d / "B02.tif").is_file()]
        chip = chips[0]
    else:
        chips = [simulate_apron(i)[0] for i in range(8)]
    k = int(np.ceil(1000 / 128))
    bands = {}
    for b in ("B02", "B03", "B04"):
        rows = [np.hstack([chips[(r * k + c) % len(chips)].bands[b] for c in range(k)]) for r in range(k)]
        bands[b] = np.vstack(rows)[:1000, :1000].astype(np.float32)
    big = replace(chip, bands=bands, valid=np.ones((1000, 1000), bool))
    detect_aircraft(chip)  # load the network once
    for name, sc, n in (("128 x 128 chip", chip, 20), ("1000 x 1000 scene", big, 5)):
        ts = []
        for _ in range(n):
            t0 = time.perf_counter()
            d = detect_aircraft(sc)
            ts.append(time.perf_counter() - t0)
        print(f"[4] speed {name}: median {np.median(ts):.3f} s, max {max(ts):.3f} s ({len(d)} detections)")


def _ratios(q: list[float]) -> str:
    if not q:
        return "none matched"
    p = np.percentile(q, [25, 50, 75])
    return f"median {p[1]:.2f} (IQR {p[0]:.2f}-{p[2]:.2f}, n={len(q)})"


def lengths(folds: Path | None) -> None:
    """Detected / true length on aircraft_s2sim (shipped and, when present, fold networks) and the Hmeimim samples."""
    from imgdiff.evaluate.aircraft import read_truth

    data = data_dir() / "aircraft_s2sim"
    chips = sorted(d for d in data.iterdir() if (d / "aircraft.json").is_file()) if data.is_dir() else []
    paths = fold_paths(folds)
    have_folds = (paths.aircraft / "folds.json").is_file()
    for label, honest in (("shipped network (its training data)", False), ("fold network, airport unseen", True)):
        if honest and not have_folds:
            print(f"aircraft_s2sim, {label}: skipped ({paths.aircraft / 'folds.json'} missing)")
            continue
        every, big = [], []
        for d in chips:
            truth = read_truth(d / "aircraft.json")
            kw = aircraft_detector_files(paths, d.name) if honest else {}
            dets = detect_aircraft(read_scene(d), **kw)
            for i, j in match_detections(dets.boxes, dets.scores, truth.boxes).pairs:
                if not truth.truncated[j]:
                    every.append(dets.items[i].length_m / truth.length_m[j])
                    if truth.length_m[j] >= 40:
                        big.append(dets.items[i].length_m / truth.length_m[j])
        print(f"aircraft_s2sim, {label}: detected / labelled length {_ratios(every)}; aircraft >= 40 m {_ratios(big)}")

    by_length, by_side = [], []
    for d in sorted((ROOT / "samples" / "scenes" / "hmeimim").iterdir()):
        truth = json.loads((d / "truth.json").read_text())
        objs = [o for o in truth["objects"] if o["cls"] == "aircraft"]
        dets = detect_aircraft(read_scene(d))
        m = match_detections(dets.boxes, dets.scores, np.array([o["box_px"] for o in objs]).reshape(-1, 4))
        found = []
        for i, j in m.pairs:
            o, L = objs[j], dets.items[i].length_m
            x0, y0, x1, y1 = o["box_px"]
            by_length.append(L / o["length_m"])
            by_side.append(L / (10.0 * max(x1 - x0, y1 - y0)))
            found.append(f"{o['id']} {o['length_m']:g} m -> {L:g} m")
        print(f"hmeimim {d.name}: {m.tp} of {len(objs)} aircraft found: {', '.join(found)}")
    print(f"hmeimim samples: detected / true length {_ratios(by_length)}; / long side of the truth box "
          f"{_ratios(by_side)}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", nargs="?", type=Path, const=fold_paths().root, default=None, metavar="DIR",
                    help="detected against true lengths (fold networks of DIR, default $IMGDIFF_FOLDS_DIR) only")
    args = ap.parse_args()
    if args.lengths is not None:
        lengths(args.lengths)
    else:
        main()
