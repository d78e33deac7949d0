"""Write the vessel detector's score calibration (fraction real per score bin) into its model card.

The shipped vessel score is the rescored probability (network + rescorer). Its calibration
table comes from the nested leave-one-port-out protocol of ``training/train_vessel_rescore.py``
(each port's candidates from the network fold trained without it, rescored by a rescorer trained
on the other six ports only), read from that script's cache of out-of-fold network maps:

1. candidates of every port (:func:`train_vessel_rescore.port_candidates`) and their
   out-of-fold rescored probabilities (:func:`train_vessel_rescore.nested_lopo`);
2. per port, the candidates from :data:`CALIBRATION_EDGES` up are matched one-to-one to the
   ground truth by the issue's rule, highest probability first; a matched candidate is real;
3. pooled over the seven ports, the fraction real per score bin goes into
   ``imgdiff/detect/models/vessels.json`` as ``score_calibration`` (read by :mod:`imgdiff.claims`).

Usage (scikit-learn needed, ``pip install -e .[train]``; about 1.5 min on one core)::

    nice python training/calibrate_cards.py      # reads training/folds.py's FOLDS/vessel_maps and FOLDS/vessel_chips
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "training"))

from imgdiff.data import data_dir  # noqa: E402
from imgdiff.detect.vessels import CARD_PATH  # noqa: E402
from imgdiff.evaluate.detection import binned_precision, match_detections  # noqa: E402
from imgdiff.evaluate.vessels import scene_dirs  # noqa: E402

#: Score bin edges of the calibration table (lower edge inclusive; the last bin includes 1).
CALIBRATION_EDGES = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="sen2ships folder (default: $IMGDIFF_DATA_DIR/sen2ships)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="out-of-fold network maps (default: training/folds.py's FOLDS/vessel_maps)")
    ap.add_argument("--chips-dir", type=Path, default=None,
                    help="fold chip classifiers (default: FOLDS/vessel_chips; train_vessel_chips.py)")
    ap.add_argument("--dry-run", action="store_true", help="print the table, do not write the card")
    args = ap.parse_args()
    import train_vessel_rescore as tvr
    from folds import fold_paths

    folds = fold_paths()
    cache, chips = args.cache or folds.vessel_maps, args.chips_dir or folds.vessel_chips
    dirs = scene_dirs(args.data or data_dir() / "sen2ships")
    ports = [tvr.port_candidates(d, cache, chips=chips) for d in dirs]
    oof = tvr.nested_lopo(ports)
    sel = tvr.select(tvr.table(ports, oof))
    if sel is not None:  # the check that the cache is the shipped recipe: the card's selected entry again
        t, e = sel
        print(f"nested leave-one-port-out: threshold {t}, P {e['pooled']['precision']:.3f} "
              f"R {e['pooled']['recall']:.3f} F1 {e['pooled']['f1']:.3f}")
    scores, real = [], []
    for p in ports:
        prob = oof[p["name"]]
        k = prob >= CALIBRATION_EDGES[0]
        lab = np.zeros(int(k.sum()), bool)
        for i, _ in match_detections(p["boxes"][k], prob[k], p["gt"]).pairs:
            lab[i] = True
        scores.append(prob[k])
        real.append(lab)
    tab = binned_precision(np.concatenate(scores), np.concatenate(real), CALIBRATION_EDGES)
    for (lo, hi), n, nr, pr, ms in zip(tab["bins"], tab["n"], tab["n_real"], tab["precision"], tab["mean_score"]):
        print(f"  score {lo:.2f}-{hi:.2f}: n {n:5d} real {nr:4d} precision "
              f"{'-' if pr is None else f'{pr:.3f}'} mean score {'-' if ms is None else f'{ms:.3f}'}")
    if args.dry_run:
        return
    card = json.loads(CARD_PATH.read_text(encoding="utf-8"))
    card["score_calibration"] = {
        **tab,
        "source": "nested leave-one-port-out rescored probabilities (network fold and rescorer trained without "
                  "the port), sen2ships, 7 ports pooled; a candidate is real when the issue's matching rule "
                  "pairs it with a ground-truth vessel",
        "command": "nice python training/calibrate_cards.py  # with training/folds.py's folds",
    }
    CARD_PATH.write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    print(f"updated {CARD_PATH} (score_calibration)")


if __name__ == "__main__":
    main()
