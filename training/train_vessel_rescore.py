"""Train the second-stage vessel rescorer shipped in ``imgdiff/detect/models/vessels_rescore.json``.

The vessel network (``training/train_vessels.py``) proposes candidates at a low score
(:data:`imgdiff.detect.vessels.RESCORE_LOW`); a small gradient-boosted tree ensemble on per-candidate
features (:func:`imgdiff.detect.vessel_features.candidate_features`: score neighbourhood, size in
metres, contrast against the water per band, NDWI/NDVI, water rings, blob continuation, land edge,
texture) gives each one a vessel probability, evaluated with numpy at inference
(:func:`imgdiff.detect.vessel_features.rescore`). scikit-learn is used here only (``pip install -e .[train]``).

Honest protocol (nested leave-one-port-out, sen2ships only, fixed seed):

1. each port's candidates come from the fold model trained WITHOUT that port
   (``train_vessels.py --cv --cv-dir DIR`` saves ``DIR/<port>.onnx``), so they are out of fold;
   a candidate is a vessel when the issue's matching rule pairs it with a ground-truth box;
2. for each port P the rescorer is trained on the other six ports' candidates only and applied to P;
3. the threshold is the best pooled F1 over the seven out-of-fold rescored ports with
   |count error| <= 15 % (the rule that chose the network's own threshold), reported next to the
   network alone computed the same way;
4. the shipped rescorer is trained on all seven ports' out-of-fold candidates (the distribution of
   the shipped network's outputs on new scenes), with that threshold; the pooled table goes into the
   rescorer JSON and the ``selected`` entry of ``imgdiff/detect/models/vessels.json``.

Usage::

    pip install -e .[train]
    # all the fold models and rescorers at once, in $IMGDIFF_FOLDS_DIR (FOLDS below): training/folds.py
    # out-of-fold network maps of each port from the saved fold models, cached in --cache, then the
    # nested table (about 1.5 min on one core; the defaults are FOLDS/vessels and FOLDS/vessel_maps):
    nice python training/train_vessel_rescore.py --extract --cv-dir FOLDS/vessels --cache FOLDS/vessel_maps
    # maps of fewer test-time passes (--tta, default 8 as in the detector), e.g. of a two-network ensemble
    # (training/ensemble_vessels.py) at the cost of one network: the same with --tta 4
    # fold models that read B11 too (train_vessels.py --bands B02,B03,B04,B08,B11): the same command;
    # each model's input (8 or 10 channels) follows its bands (imgdiff.detect.vessels.model_bands)
    # nested leave-one-port-out table only (from the cached maps):
    nice python training/train_vessel_rescore.py
    # the same, then train on all ports and write the rescorer and the model card's "selected" entry:
    nice python training/train_vessel_rescore.py --write
    # also the nested table on hazy copies of the ports (path radiance added, maps from the fold models):
    nice python training/train_vessel_rescore.py --haze-test
    # each port's nested rescorer, for benchmarks/claims_outside_r3.py --honest (training/folds.py does it):
    nice python training/train_vessel_rescore.py --write-folds FOLDS/vessel_rescorers

Haze (measured 2026-11-26, ``--haze-test``): the contrast features are log ratios of the object to the water
around it, so path radiance (a top-of-atmosphere L1C date, a hazy day), which lifts dark water more than hulls,
lowers the rescored probabilities; the network alone barely moves (mean score -0.01 on Athens against -0.22 after
the rescorer). With Rayleigh + aerosol path radiance of B02 +0.013 to +0.057 reflectance (:func:`path_radiance`,
one draw per port), the nested table at the shipped threshold 0.28 falls from F1 0.536 (count -4.7 %) to 0.461
(P 0.511, R 0.420, count -17.9 %). Not kept: training the rescorer on two hazy copies of each port as well
(clean F1 0.500, hazy 0.508), and features on bands whose 1st percentile is moved to a common dark level
(clean 0.511, hazy 0.479; with the hazy copies 0.524 / 0.487), or to the ports' median 5th percentile of the
water pixels (clean 0.517, hazy 0.469). The claims' pair of dates was also tried with
the hazier date mapped onto the other's radiometry before detection (``imgdiff.radiometry.normalise``): outside
cases 443 against 445 of 502 right (piers exposed by departed ships then score as vessels), not kept.
Kept (2026-11-27): the path radiance above the darkest water of the seven ports is taken off before the features
and the water mask are computed (:func:`imgdiff.detect.vessels.remove_haze`; the offset of each band is how far
the scene's darkest open water, its 1st percentile, lies above the brightest such level among the ports, so the
ports themselves, and this table, are unchanged). Same fold networks and nested rescorers (no retraining), the
hazy copies of four draws (``--haze-test``'s seeds 5000 + i, and 6000, 7000, 8000 + i): F1 0.539, 0.537, 0.542,
0.536 (count -10.8 %, -3.3 %, -5.2 %, -4.7 %) against 0.510, 0.477, 0.455, 0.496 (count -15 % to -28 %) without
it; clear 0.553. (Before the rule that no band loses more than a shorter one, which keeps turbid water from being
taken for haze: 0.542, 0.539, 0.538, 0.529, count -1.4 % to +1.4 %.) Unlike the "common dark level" trial above it moves only scenes brighter than every port.
On a real L1C harbour (OSCD Beirut, unlabelled; offsets B02 0.045-0.052) the shipped detector finds 26 and 25
objects on the two dates with it, 15 and 20 without; of the 11 new ones on the first date about 3 are ships by
eye and the rest quay or breakwater clutter at 0.29-0.41.

Candidates of several network recipes (measured 2026-11-27, not kept): the rescorer of each nested fold trained
on the other ports' out-of-fold candidates of five fold-network sets at once (the shipped recipe, 6000 iterations,
weight decay 0.05, 10 % dropped bands, ignore regions; 5x the candidates) and applied to the shipped recipe's
candidates of the held-out port: F1 0.537 (P 0.546 R 0.528) against 0.553. More, differently scored candidates
do not make a better rescorer.

Multi-scale test-time averaging (measured 2026-11-26, not kept): the fold networks also run on the input
resized by a factor (area-averaged down, bilinear up; 8 passes each), their maps brought back to the 1x grid
(sizes and offsets rescaled; where the other scale's heat is higher its box is taken) and averaged (or the maximum
taken) with the 1x maps, cached like ``--extract`` does, then this table. Network alone / nested F1 against
0.430 / 0.536: x0.5 mean 0.437 / 0.484, x0.5 max 0.432 / 0.489, x0.75 mean 0.438 / 0.521, x1.5 mean
0.456 / 0.491, x2 mean 0.445 / 0.499, x2 max 0.430 / 0.492. As with every network change so far, the
network alone moves and the rescorer gives it back. Averaging the heat maps of fold networks of several
recipes (each never saw the port; boxes from their mean maps) does the same: the shipped recipe with the
radiometric-augmentation folds 0.467 / 0.545; with the 1.5x wider folds too 0.471 / 0.524; five fold sets (two
seeds) 0.481 / 0.523 (bar for shipping: +0.02 over 0.536, the seed-to-seed spread).

Retrained fold networks (2026-11-27, the shipped recipe, ``train_vessels.py --cv --no-final --cv-iters 3000``,
one fold per process): network alone 0.451, nested 0.553 (P 0.580 R 0.528, count -9.0 %, threshold 0.27); the
candidates hold 186 of the 212 GT vessels. Measured on them and not kept, all within the seed spread: the
object's log contrast against the land within 2-6 px of its box per band, and its colour difference from that
land (ships against quays of another material), 0.558; gradient-boosting settings depth 4 x 300 trees 0.531,
depth 2 x 400 0.557, min_samples_leaf 60 0.556, learning rate 0.015 x 400 0.552 (out-of-fold AUC 0.844-0.853);
the spread of the heat logit over the 8 test-time passes at each candidate (standard deviation, minimum,
range; the minimum alone separates vessels at AUC 0.79, the network's mean already carries it) 0.539.
Also measured 2026-11-27 and not kept: features standardised within each scene, added to the shipped ones (a
per-scene domain adaptation of the rescorer): the candidate's rank among its scene's candidates, or its robust
z-score (median, interquartile range), of the network score, of the contrasts, or of score, contrasts, spectral
indices and textures together: 0.511-0.565 (the z-scored network score 0.565 at count +13.7 %, the rest 0.511-0.548),
within the seed spread, and a candidate's score would then depend on the rest of its scene.
Also measured 2026-11-27, to see whether fewer degrees of freedom generalise better across ports: a logistic
regression on the standardised features (C 0.01-1) 0.458-0.473; the trees on 14 features (score, sizes, maximum
contrasts, NDWI, water) 0.468; the trees without one feature group: mean contrasts 0.558, spectral indices 0.524,
water rings 0.549, blob 0.549, land edge 0.552, textures 0.526. No group stands out and none is dead weight.
Also measured 2026-11-27 (evening) and not kept (same cached fold maps, nested table at the selected threshold, against 0.553):
each port weighted equally in training (Busan has 4.5x Honolulu's vessels) 0.525, and each port and class equally
0.531; the rescored probability held monotone in the network score (``monotonic_cst``) 0.553 (P 0.570 R 0.538),
also in the four maximum contrasts 0.546, with port weights 0.528; a random forest (500 trees, leaves of 5 or 20)
0.514 and 0.495; extra trees 0.488 and 0.479. Boosting as shipped stays.

Kept (2026-11-28): the chip classifier's probability as a feature (``chip_probability``;
:mod:`imgdiff.detect.vessel_chips`, ``training/train_vessel_chips.py``: a small CNN on the 32 x 32 px chip of each
candidate, trained on the candidates only; for the nested table each port's probability comes from the classifier
trained without that port, ``--chips-dir``). The shipped recipe's fold networks retrained that day on another
machine (``training/folds.py``; torch 2.14) are weaker than those of 2026-11-27: network alone 0.433, nested 0.486
(P 0.513 R 0.462, count -9.9 %) against 0.451 and 0.553, the same recipe and seed. With the chip feature, on the
same folds: **0.523** (P 0.532 R 0.514, count -3.3 %, threshold 0.26); on a second fold set (``--seed 7``) 0.527
(P 0.531 R 0.524, count -1.4 %) against 0.510 without it. The chip classifier alone (its probability as the
score) 0.42-0.45; its out-of-fold AUC per port 0.54 (Busan) to 0.88 (Athens). Views averaged per chip: 1 view
0.525, 2 views 0.523, 8 views 0.520 (``imgdiff.detect.vessel_chips.CHIP_VIEWS`` = 2). The feature stacked into the
trees and the plain mean of the two probabilities gave the same (0.528 and 0.525, experiment scripts); the heat
map as a fifth chip channel was worse (0.491). Hazy copies (``--haze-test``) 0.505 with it (chips cut from the
scene without its path radiance, :func:`imgdiff.detect.vessels.haze_free_chips`).
In-sample (the shipped network and chip classifier on the ports they were trained on, ``imgdiff eval vessels``)
the chain now over-counts: 310 detections for 212 ships (F1 0.724) against 222 before (0.770), because both
inputs of the trees are in-sample there while the trees learned from out-of-fold ones. On ports none of the
stages saw, the nested table is the figure.
Scene-relative features (measured 2026-11-28, fifth session, not kept): added to the shipped 38, computed by
one function inside ``candidate_features`` on the scene (the detection window) and its candidate set, three
variants registered before the run (the water one chosen beforehand, as it does not make a candidate's score
depend on the other candidates). "water": the box's maximum log reflectance per 10 m band minus the median log
reflectance of the scene's open water, and the fraction of the scene's land pixels darker than the box's
brightest pixel; "cands": the candidate's percentile rank among the scene's candidates of the network score, the
chip probability and the B08 maximum contrast, the robust z-score of its score logit (median, IQR >= 0.5), the
candidates per km2 of open water (log1p), their median network score; "both". Nested table, the 2026-11-28 folds,
against 0.523 (P 0.532 R 0.514, count -3.3 %): water 0.525 (P 0.565 R 0.491, count -13.2 %, threshold 0.30),
cands 0.524 (P 0.569 R 0.486, -14.6 %, 0.31), both 0.519 (P 0.557 R 0.486, -12.7 %, 0.31); each better at 3 of
the 7 ports (water and both at Genoa, Honolulu, Marseille; cands at Durban, Genoa, Marseille), not at the rest.
On the seed-7 folds against 0.527: 0.521, 0.518, 0.512. Out-of-fold AUC 0.831 against 0.824, 0.841, 0.833
(average precision 0.569 against 0.564, 0.569, 0.562). With the ranks and z-scores of 2026-11-27 above, scene
normalisation of the rescorer's inputs has not paid twice; the per-port F1 spread (0.32-0.78) stays as it was.
(The water features are stable under windowing: a central 1000 px crop of Marseille moved them by 0.02 or less
in log contrast and at most 0.07 in land rank, against an inter-candidate spread of 0.45-0.52; the candidate ranks
by up to 0.2.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from folds import fold_paths  # noqa: E402  (training/: the fold folder's layout)

from imgdiff.data import data_dir  # noqa: E402
from imgdiff.detect.vessel_chips import chip_probability  # noqa: E402
from imgdiff.detect.vessel_features import CONTEXT_FEATURES, FEATURE_NAMES, candidate_features, rescore  # noqa: E402
from imgdiff.detect.vessels import (  # noqa: E402
    CARD_PATH,
    MODEL_BANDS,
    RESCORE_LOW,
    RESCORE_PATH,
    VesselMaps,
    decode_maps,
    haze_free_chips,
    model_bands,
    near_water,
    remove_haze,
    run_network,
    vessel_input,
    water_mask,
)
from imgdiff.evaluate.detection import match_detections  # noqa: E402
from imgdiff.evaluate.vessels import pool, read_gt, scene_dirs, score  # noqa: E402
from imgdiff.io.read import read_scene  # noqa: E402

SEED = 20241126
MAX_COUNT_ERROR = 0.15
#: Gradient-boosting settings (scikit-learn HistGradientBoostingClassifier), fixed before the nested run.
GBT = {"max_depth": 3, "max_iter": 200, "learning_rate": 0.03, "min_samples_leaf": 30, "l2_regularization": 1.0}
THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.01), 2)
#: Features the rescorer reads: :data:`imgdiff.detect.vessel_features.FEATURE_NAMES` but its
#: ``CONTEXT_FEATURES`` (the other candidates around one). With those, a ship that stayed at its berth
#: scored lower on the date its neighbours had left (e.g. 0.62 against 0.36), and the claims compare
#: the two dates' scores of one place. Without them, nested leave-one-port-out F1 0.536 (P 0.550,
#: R 0.524, count -4.7 %) against 0.528 (P 0.537, R 0.519, count -3.3 %) with them, at the same
#: threshold 0.28.
RESCORER_FEATURES = tuple(n for n in FEATURE_NAMES if n not in CONTEXT_FEATURES)
#: ... and without the chip classifier's probability (``--no-chips``: the rescorer shipped before 2026-11-28).
FEATURES_WITHOUT_CHIPS = tuple(n for n in RESCORER_FEATURES if n != "chip_probability")


# ------------------------------------------------------------------------------------------
# candidates
# ------------------------------------------------------------------------------------------
def extract_maps(port_dir: Path, model: Path, out: Path, tta: int = 8) -> None:
    """Cache the out-of-fold network maps of one port (fold model trained without it) as npz."""
    scene = read_scene(port_dir)
    maps = run_network(vessel_input(scene, bands=model_bands(model)), model, tta=tta)  # 8 or 10 channels
    np.savez_compressed(out, heat=maps.heat, offset=maps.offset, log_size=maps.log_size)


def port_candidates(port_dir: Path, cache: Path, *, chips: Path | None, low: float = RESCORE_LOW,
                    water_px: float | None = 4.0, nms_iou: float = 0.2, scene=None) -> dict:
    """Candidates of one port: boxes, network scores, features, labels (matched to a GT box), GT boxes.

    ``chips``: folder of the fold chip classifiers (``train_vessel_chips.py``): the ``chip_probability``
    feature comes from ``<port>.onnx``, trained without the port; None leaves it NaN. ``scene``: the
    port's scene when the caller has read it already."""
    z = np.load(cache / f"{port_dir.name}.npz")
    scene = scene if scene is not None else read_scene(port_dir)
    return scene_candidates(port_dir, scene, VesselMaps(z["heat"], z["offset"], z["log_size"]),
                            chip_model=chips / f"{port_dir.name}.onnx" if chips is not None else None,
                            low=low, water_px=water_px, nms_iou=nms_iou)


def scene_candidates(port_dir: Path, scene, maps: VesselMaps, *, chip_model: Path | None,
                     low: float = RESCORE_LOW, water_px: float | None = 4.0, nms_iou: float = 0.2) -> dict:
    """:func:`port_candidates` from a scene of the port and its network maps (``chip_model``: the chip
    classifier that gives the ``chip_probability`` feature, or None)."""
    boxes, scores = decode_maps(maps, min_score=low, shape=scene.shape, nms_iou=nms_iou)
    clear, water = remove_haze(scene, water_mask(scene))  # as imgdiff.detect_vessels does
    chip_p = (chip_probability(haze_free_chips(vessel_input(scene, bands=MODEL_BANDS), scene, clear, boxes), chip_model)
              if chip_model is not None else None)  # the chips imgdiff.detect_vessels cuts
    scene = clear
    if water is not None and water_px is not None:
        keep = near_water(boxes, water, water_px)
        boxes, scores = boxes[keep], scores[keep]
        chip_p = chip_p[keep] if chip_p is not None else None
    feats = candidate_features(scene.bands, boxes, scores, maps.heat, water, scene.pixel_size_m,
                               chip_probability=chip_p)
    gt = read_gt(port_dir)
    label = np.zeros(len(boxes), bool)
    for i, _ in match_detections(boxes, scores, gt).pairs:
        label[i] = True
    return {"name": port_dir.name, "boxes": boxes, "scores": scores, "features": feats, "label": label, "gt": gt}


# ------------------------------------------------------------------------------------------
# model
# ------------------------------------------------------------------------------------------
def fit(x: np.ndarray, y: np.ndarray, seed: int = SEED, features: tuple[str, ...] = RESCORER_FEATURES):
    """The classifier on candidate features ``x`` (columns of :data:`FEATURE_NAMES`; it reads those named
    in ``features``)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    cols = [FEATURE_NAMES.index(n) for n in features]
    return HistGradientBoostingClassifier(random_state=seed, **GBT).fit(x[:, cols], y)


def export(clf, threshold: float | None, features: tuple[str, ...] = RESCORER_FEATURES) -> dict:
    """The fitted classifier as the JSON model read by :func:`imgdiff.detect.vessel_features.rescore`."""
    trees = []
    for (pred,) in clf._predictors:
        nodes = pred.nodes
        leaf = nodes["is_leaf"].astype(bool)
        trees.append({
            "feature": np.where(leaf, -1, nodes["feature_idx"]).astype(int).tolist(),
            "threshold": [float(v) for v in np.where(leaf, 0.0, nodes["num_threshold"])],
            "left": nodes["left"].astype(int).tolist(),
            "right": nodes["right"].astype(int).tolist(),
            "nan_left": nodes["missing_go_to_left"].astype(bool).tolist(),
            "value": [float(v) for v in np.where(leaf, nodes["value"], 0.0)],
        })
    return {"features": list(features), "base": float(np.ravel(clf._baseline_prediction)[0]),
            "learning_rate": 1.0, "trees": trees, "threshold": threshold}


# ------------------------------------------------------------------------------------------
# evaluation
# ------------------------------------------------------------------------------------------
def table(ports: list[dict], prob: dict[str, np.ndarray]) -> dict:
    """Pooled and per-port scores at each threshold of :data:`THRESHOLDS` (score = ``prob``)."""
    out = {}
    for t in THRESHOLDS:
        rows = []
        for p in ports:
            k = prob[p["name"]] >= t
            rows.append(score(p["name"], p["boxes"][k], prob[p["name"]][k], p["gt"]))
        out[f"{t:.2f}"] = {"pooled": pool(rows).to_dict(), "ports": [r.to_dict() for r in rows]}
    return out


def select(tab: dict) -> tuple[str, dict] | None:
    """Best pooled F1 among thresholds with |count error| <= MAX_COUNT_ERROR."""
    ok = [t for t in tab if abs(tab[t]["pooled"]["count_error"]) <= MAX_COUNT_ERROR]
    if not ok:
        return None
    best = max(ok, key=lambda t: tab[t]["pooled"]["f1"])
    return best, tab[best]


def fold_rescorers(ports: list[dict], features: tuple[str, ...] = RESCORER_FEATURES) -> dict[str, dict]:
    """Per port, the rescorer (:func:`export`, no threshold) trained on the other ports' candidates only."""
    models = {}
    for p in ports:
        rest = [q for q in ports if q["name"] != p["name"]]
        clf = fit(np.vstack([q["features"] for q in rest]), np.concatenate([q["label"] for q in rest]),
                  features=features)
        models[p["name"]] = export(clf, None, features)
    return models


def nested_lopo(ports: list[dict], models: dict[str, dict] | None = None,
                features: tuple[str, ...] = RESCORER_FEATURES) -> dict[str, np.ndarray]:
    """Out-of-fold rescored probabilities: port P scored by a rescorer trained on the other ports only
    (``models``: those of :func:`fold_rescorers`, fitted here when not given)."""
    models = models if models is not None else fold_rescorers(ports, features)
    return {p["name"]: rescore(models[p["name"]], p["features"]) for p in ports}


#: Wavelengths (micrometres) of the bands, for :func:`path_radiance`.
WAVELENGTH_UM = {"B02": 0.49, "B03": 0.56, "B04": 0.665, "B08": 0.842, "B11": 1.61}


def path_radiance(rng: np.random.Generator) -> dict[str, float]:
    """Additive reflectance per band of a hazy or top-of-atmosphere date: Rayleigh (wavelength^-4, up to
    0.05 in B02) plus aerosol (wavelength^-1.3, up to 0.03 in B02), amplitudes uniform."""
    r, a = rng.uniform(0.0, 0.05), rng.uniform(0.0, 0.03)
    b02 = WAVELENGTH_UM["B02"]
    return {b: float(r * (b02 / w) ** 4 + a * (b02 / w) ** 1.3) for b, w in WAVELENGTH_UM.items()}


def hazy_candidates(port_dir: Path, model: Path, cache: Path, seed: int, chips: Path | None) -> dict:
    """:func:`port_candidates` of a hazy copy of a port (:func:`path_radiance`), its maps from ``model``."""
    from dataclasses import replace

    scene = read_scene(port_dir)
    add = path_radiance(np.random.default_rng(seed))
    scene = replace(scene, bands={b: (v + np.float32(add.get(b, 0.0))).astype(np.float32)
                                  for b, v in scene.bands.items()})
    f = cache / f"{port_dir.name}_haze{seed}.npz"
    if not f.is_file():
        maps = run_network(vessel_input(scene, bands=model_bands(model)), model, tta=8)
        np.savez_compressed(f, heat=maps.heat, offset=maps.offset, log_size=maps.log_size)
    z = np.load(f)
    return scene_candidates(port_dir, scene, VesselMaps(z["heat"], z["offset"], z["log_size"]),
                            chip_model=chips / f"{port_dir.name}.onnx" if chips is not None else None)


def show(title: str, t: str, entry: dict) -> None:
    print(f"{title} (threshold {t}):")
    for s in [*entry["ports"], entry["pooled"]]:
        print(f"  {s['name']:<11} GT {s['n_gt']:>3} det {s['n_pred']:>4} TP {s['tp']:>3} FP {s['fp']:>4} "
              f"FN {s['fn']:>3}  P {s['precision']:.3f} R {s['recall']:.3f} F1 {s['f1']:.3f} "
              f"count {s['count_error']:+.1%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="sen2ships folder (default: $IMGDIFF_DATA_DIR/sen2ships)")
    ap.add_argument("--cv-dir", type=Path, default=fold_paths().vessels,
                    help="leave-one-port-out fold models <port>.onnx (train_vessels.py --cv)")
    ap.add_argument("--cache", type=Path, default=fold_paths().vessel_maps, help="folder for the out-of-fold network maps")
    ap.add_argument("--extract", action="store_true", help="(re)compute the out-of-fold maps first")
    ap.add_argument("--tta", type=int, default=8, help="test-time passes of --extract (the detector's default 8)")
    ap.add_argument("--write", action="store_true",
                    help="train on all ports and write the rescorer JSON and the card's 'selected' entry")
    ap.add_argument("--out", type=Path, default=RESCORE_PATH)
    ap.add_argument("--write-folds", type=Path, default=None,
                    help="also write each port's nested rescorer (trained without it) as DIR/<port>.json")
    ap.add_argument("--chips-dir", type=Path, default=fold_paths().vessel_chips,
                    help="fold chip classifiers <port>.onnx (train_vessel_chips.py): the chip_probability feature")
    ap.add_argument("--no-chips", action="store_true", help="leave the chip classifier's probability out")
    ap.add_argument("--haze-test", action="store_true",
                    help="also score each port's hazy copy (path radiance added) with the nested rescorers")
    args = ap.parse_args()
    root = args.data or data_dir() / "sen2ships"
    dirs = scene_dirs(root)
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.extract:
        for d in dirs:
            t0 = time.time()
            extract_maps(d, args.cv_dir / f"{d.name}.onnx", args.cache / f"{d.name}.npz", tta=args.tta)
            print(f"maps {d.name}: {time.time() - t0:.1f} s", flush=True)
    chips = None if args.no_chips else args.chips_dir
    missing = [d.name for d in dirs if chips is not None and not (chips / f"{d.name}.onnx").is_file()]
    if missing:
        raise SystemExit(f"{chips}: no fold chip classifier for {', '.join(missing)}; run training/train_vessel_chips.py "
                         "--no-final, or give --no-chips")
    features = FEATURES_WITHOUT_CHIPS if chips is None else RESCORER_FEATURES
    ports = [port_candidates(d, args.cache, chips=chips) for d in dirs]
    n_pos = sum(int(p["label"].sum()) for p in ports)
    print(f"candidates: {sum(len(p['boxes']) for p in ports)} ({n_pos} matched to one of "
          f"{sum(len(p['gt']) for p in ports)} GT vessels), {len(features)} of {len(FEATURE_NAMES)} features")
    cnn_tab = table(ports, {p["name"]: p["scores"] for p in ports})
    t_cnn, cnn = select(cnn_tab)
    show("network alone, leave-one-port-out", t_cnn, cnn)
    folds = fold_rescorers(ports, features)
    oof = nested_lopo(ports, folds, features)
    tab = table(ports, oof)
    sel = select(tab)
    if sel is None:
        print("no threshold keeps the pooled count error within 15 %")
        return
    t_rs, rs = sel
    show("network + rescorer, nested leave-one-port-out", t_rs, rs)
    if args.write_folds is not None:  # for benchmarks that need detectors which never saw a port
        args.write_folds.mkdir(parents=True, exist_ok=True)
        for name, model in folds.items():
            fold = model | {"threshold": float(t_rs), "candidate_min_score": RESCORE_LOW, "trained_without": name}
            (args.write_folds / f"{name}.json").write_text(json.dumps(fold, separators=(",", ":")) + "\n")
        print(f"wrote the 7 nested rescorers to {args.write_folds}")
    if args.haze_test:
        hazy = [hazy_candidates(d, args.cv_dir / f"{d.name}.onnx", args.cache, seed=5000 + i, chips=chips)
                for i, d in enumerate(dirs)]
        show("hazy copies, the same nested rescorers", t_rs, table(hazy, nested_lopo(hazy, folds, features))[t_rs])
    if not args.write:
        return
    if rs["pooled"]["f1"] <= cnn["pooled"]["f1"]:
        print("the rescorer does not beat the network alone: nothing written")
        return
    clf = fit(np.vstack([p["features"] for p in ports]), np.concatenate([p["label"] for p in ports]),
              features=features)
    model = export(clf, float(t_rs), features)
    model["candidate_min_score"] = RESCORE_LOW
    model["training"] = {"seed": SEED, "gbt": GBT, "ports": [p["name"] for p in ports],
                         "n_candidates": int(sum(len(p["boxes"]) for p in ports)), "n_positive": n_pos}
    model["nested_leave_one_port_out"] = {"threshold": float(t_rs), **rs}
    model["network_alone_leave_one_port_out"] = {"threshold": float(t_cnn), **cnn}
    args.out.write_text(json.dumps(model, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")
    card = json.loads(CARD_PATH.read_text(encoding="utf-8"))
    card["selected"] = {"min_score": float(t_rs), "max_count_error": MAX_COUNT_ERROR, "rescorer": args.out.name,
                        "protocol": "nested leave-one-port-out (network folds + rescorer trained without the port)",
                        **rs["pooled"]}
    card["selected_network_alone"] = {"min_score": float(t_cnn), "max_count_error": MAX_COUNT_ERROR, **cnn["pooled"]}
    card["rescorer_nested_leave_one_port_out"] = {t: v["pooled"] for t, v in tab.items()}
    CARD_PATH.write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    print(f"updated {CARD_PATH} (selected: threshold {t_rs}, P {rs['pooled']['precision']:.3f} "
          f"R {rs['pooled']['recall']:.3f} F1 {rs['pooled']['f1']:.3f})")


if __name__ == "__main__":
    main()
