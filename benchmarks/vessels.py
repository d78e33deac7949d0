"""Vessel detection: speed on 1000 x 1000 px and accuracy on the sen2ships dev ports.

Run by hand::

    python benchmarks/vessels.py            # speed + dev-port scores of the shipped model and the baseline
                                            # (cnn = network + rescorer, cnn-only = rescore=False)
    python benchmarks/vessels.py --folds    # held-out scores through detect_vessels (see below)

The dev ports are the training set of the shipped model, so its scores here are in-sample; the honest
held-out estimate is the nested leave-one-port-out figure recorded by ``training/train_vessel_rescore.py``
in ``imgdiff/detect/models/vessels_rescore.json`` (printed at the end).

``--folds [DIR]`` scores each dev port with the detectors that never saw it, through the public
:func:`imgdiff.detect.vessels.detect_vessels` (``model=``, ``rescorer=``, ``chip_model=``): the port's fold
network, fold chip classifier and nested rescorer from the fold folder built by ``training/folds.py``
(default ``$IMGDIFF_FOLDS_DIR``). It should give the nested table of ``train_vessel_rescore.py`` exactly (the
training scripts compute the same candidates and features their own way); a difference means the shipped
detection path and the path the figures were measured on have drifted apart.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from imgdiff.data import data_dir
from imgdiff.detect.vessels import MODEL_PATH, RESCORE_PATH, detect_vessels
from imgdiff.evaluate.vessels import evaluate_vessels, pool, read_gt, scene_dirs, score
from imgdiff.io.read import read_scene

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "training"))
from folds import fold_paths  # noqa: E402  (training/: the fold folder's layout)


def speed(repeats: int = 5) -> None:
    d = data_dir() / "sen2ships" / "marseille"
    scene = read_scene(d)
    rows, cols = scene.shape
    y0, x0 = (rows - 1000) // 2, (cols - 1000) // 2
    crop = scene.__class__({b: v[y0:y0 + 1000, x0:x0 + 1000] for b, v in scene.bands.items()}, scene.crs,
                           scene.transform, scene.valid[y0:y0 + 1000, x0:x0 + 1000])
    detect_vessels(crop)  # warm-up: model load
    for method, kw in (("cnn", {}), ("cnn-only", {"rescore": False}), ("classical", {})):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            n = len(detect_vessels(crop, method=method.split("-")[0], **kw))
            times.append(time.perf_counter() - t)
        print(f"speed {method:<9}: 1000x1000 px, {len(crop.bands)} bands, {n} vessels: "
              f"median {np.median(times):.2f} s, min {min(times):.2f} s  (cpus {os.cpu_count()})")


def accuracy() -> None:
    root = data_dir() / "sen2ships"
    for method in ("cnn", "classical"):
        ev = evaluate_vessels(root, detector=lambda s, m=method: detect_vessels(s, method=m))
        print(f"dev ports, {method} ({'in-sample' if method == 'cnn' else 'no training'}):")
        for s in [*ev.scenes, ev.pooled]:
            print(_row(s))
    meta = MODEL_PATH.with_suffix(".json")
    if meta.is_file():
        for key, cv in json.loads(meta.read_text()).items():
            if not key.startswith("leave_one_port_out") or not cv:
                continue
            ports = [s["name"] for s in next(iter(cv.values()))["ports"]]
            print(f"{key} (training/train_vessels.py --cv; held out: {', '.join(ports)}), pooled, by threshold:")
            for t, r in cv.items():
                p = r["pooled"]
                print(f"  t={float(t):.2f} P {p['precision']:.3f} R {p['recall']:.3f} F1 {p['f1']:.3f} "
                      f"count {p['n_pred']}/{p['n_gt']} ({p['count_error']:+.1%})")
    if RESCORE_PATH.is_file():
        rs = json.loads(RESCORE_PATH.read_text())
        print("network + rescorer, nested leave-one-port-out (training/train_vessel_rescore.py), "
              f"threshold {rs['threshold']}; the network alone at its own threshold "
              f"{rs['network_alone_leave_one_port_out']['threshold']}:")
        for s_new, s_old in zip([*rs["nested_leave_one_port_out"]["ports"], rs["nested_leave_one_port_out"]["pooled"]],
                                [*rs["network_alone_leave_one_port_out"]["ports"],
                                 rs["network_alone_leave_one_port_out"]["pooled"]]):
            print(f"  {s_new['name']:<11} GT {s_new['n_gt']:>3}  rescored P {s_new['precision']:.3f} "
                  f"R {s_new['recall']:.3f} F1 {s_new['f1']:.3f} count {s_new['count_error']:+.1%}   "
                  f"network alone F1 {s_old['f1']:.3f} count {s_old['count_error']:+.1%}")


def _row(s) -> str:
    return (f"  {s.name:<11} GT {s.n_gt:>3} det {s.n_pred:>4} TP {s.tp:>3} FP {s.fp:>4} FN {s.fn:>3} "
            f"P {s.precision:.3f} R {s.recall:.3f} F1 {s.f1:.3f} count {s.count_error:+.1%}")


def held_out(folds: Path) -> None:
    """Each dev port through ``detect_vessels`` with its fold network, chip classifier and nested rescorer."""
    f = fold_paths(folds)
    rows = []
    print(f"dev ports, held out (fold detectors in {folds}):")
    for d in scene_dirs(data_dir() / "sen2ships"):
        det = detect_vessels(read_scene(d), model=f.vessels / f"{d.name}.onnx",
                             rescorer=f.vessel_rescorers / f"{d.name}.json",
                             chip_model=f.vessel_chips / f"{d.name}.onnx")
        rows.append(score(d.name, det.boxes, det.scores, read_gt(d)))
        print(_row(rows[-1]), flush=True)
    print(_row(pool(rows)))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", nargs="?", type=Path, const=fold_paths().root, default=None, metavar="DIR",
                    help="held-out scores with the fold detectors of DIR (default $IMGDIFF_FOLDS_DIR) only")
    args = ap.parse_args()
    if args.folds is not None:
        held_out(args.folds)
    else:
        speed()
        accuracy()
