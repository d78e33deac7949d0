"""Aircraft detection: accuracy and speed figures (run by hand, prints figures).

    python benchmarks/aircraft.py            # needs $IMGDIFF_DATA_DIR/aircraft_s2sim

Prints
1. the grouped cross-validation figures of the shipped network (from its model card: these are
   the honest held-out estimate; the network was trained on every dev chip afterwards),
2. the classical baseline (white top-hat, robust z, components) and the shipped network on the
   dev chips (the network's figures here are on its own training data: optimistic),
3. recall on simulated aprons with known aircraft (never seen in training),
4. speed: a 128 x 128 chip and a 1000 x 1000 scene (mosaic of chips), median of several runs.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np

from imgdiff.data import data_dir
from imgdiff.detect.aircraft import CARD_PATH, detect_aircraft
from imgdiff.detect.aircraft_sim import simulate_apron
from imgdiff.evaluate.aircraft import evaluate_aircraft
from imgdiff.evaluate.detection import match_detections, prf


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


if __name__ == "__main__":
    main()
