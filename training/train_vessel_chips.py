"""Train the vessel chip classifier shipped in ``imgdiff/detect/models/vessels_chips.onnx``.

A second look at the vessel network's candidates (:mod:`imgdiff.detect.vessel_chips`): a small CNN on the
32 x 32 px chip of normalised B02 B03 B04 B08 around each candidate, trained on sen2ships only
(``$IMGDIFF_DATA_DIR/sen2ships``), fixed seeds. Its probability is a feature of the rescorer
(``training/train_vessel_rescore.py``).

Protocol (the rescorer's, one level down):

1. the candidates of each port are those of the fold network trained WITHOUT that port (their
   out-of-fold maps, cached by ``train_vessel_rescore.py --extract`` in ``FOLDS/vessel_maps``; made here
   when missing), labelled by the issue's matching rule (a candidate is a vessel when it pairs with a GT box);
2. for each port P, the chip classifier is trained on the other six ports' candidates only and saved as
   ``FOLDS/vessel_chips/<P>.onnx``: the rescorer's nested table reads P's chip probabilities from it;
3. the shipped classifier is trained on all seven ports' candidates.

Each classifier is :data:`SEEDS` networks (seeds ``--seed`` + k) whose probabilities are averaged inside one
ONNX graph. Training samples 16 vessels and 48 other candidates per batch; chips are shifted by up to
+-4 px, turned and mirrored, with a per-chip gain and noise in the network's log-input space.

Usage (torch: ``pip install -e .[train]``; ``FOLDS`` is ``$IMGDIFF_FOLDS_DIR``, see ``training/folds.py``)::

    nice python training/train_vessel_chips.py --no-final           # the seven fold classifiers
    nice python training/train_vessel_chips.py --ports athens,busan  # some of them (parallel processes)
    nice python training/train_vessel_chips.py --final-only         # the shipped one
    # then the rescorer with the chip probability as a feature:
    nice python training/train_vessel_rescore.py [--write]

Measured 2026-11-28 (nested leave-one-port-out, network + rescorer, on the fold networks retrained that day):
0.486 -> 0.523 with the chip probability as a rescorer feature, and 0.510 -> 0.527 on a second fold set; details
in ``train_vessel_rescore.py``'s docstring. One classifier (two networks, 1500 iterations each) takes about
2 min on one core; the seven fold classifiers about 15 min.
Measured 2026-11-28 and not kept: each fold classifier trained on the candidates of two fold-network sets at once
(the shipped seed's and seed 7's, twice the chips, other clutter), the same classifiers then used for both sets'
nested tables: 0.544 against 0.523 on the first set, 0.535 against 0.527 on the second (out-of-fold AUC per port
0.53-0.84 against 0.54-0.88). A mean gain of +0.015, under the +0.02 seed spread, for a second set of fold networks
in the recipe.
Also measured 2026-11-28 and not kept: a wider look, the 64 x 64 px window around each candidate averaged down to
32 x 32 px as four more channels beside the 32 px chip (640 m of context: whole container ships, the quay behind
them): out-of-fold AUC athens 0.812, busan 0.394, casablanca 0.597, durban 0.829 against 0.886, 0.539, 0.705 and
0.853 for the 32 px chip in the same experiment script (stopped there). The context is where ports differ most.
Also measured 2026-11-28 and not kept: four networks per classifier instead of two (``--seeds 4``): nested 0.547
against 0.523 on the first fold set, 0.533 against 0.527 on the second (mean +0.015, under the +0.02 seed spread);
at one view per chip (the cost of two networks at two views) 0.544 and 0.526. Out-of-fold AUC rose at 9 of the 14
ports. Not worth retraining the rescorer, the card and the goldens for.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from folds import fold_paths  # noqa: E402  (training/: the fold folder's layout)
from train_vessel_rescore import extract_maps, port_candidates  # noqa: E402

from imgdiff.data import data_dir  # noqa: E402
from imgdiff.detect.vessel_chips import CHIP_CHANNELS, CHIP_MODEL_PATH, CHIP_PX, candidate_chips, chip_probability  # noqa: E402
from imgdiff.detect.vessels import MODEL_BANDS, vessel_input  # noqa: E402
from imgdiff.evaluate.vessels import scene_dirs  # noqa: E402
from imgdiff.io.read import read_scene  # noqa: E402

SEED = 20251128
#: Networks averaged in one classifier.
SEEDS = 2
ITERS = 1500
#: Random shift of the training chips (pixels, each axis).
SHIFT_PX = 4


class ChipNet(nn.Module):
    """Six 3 x 3 conv-BN-ReLU layers (two of stride 2), mean and max pooling, one linear logit."""

    def __init__(self, cin: int = CHIP_CHANNELS):
        super().__init__()

        def cbr(i: int, o: int, s: int = 1) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))

        self.features = nn.Sequential(cbr(cin, 16), cbr(16, 16), cbr(16, 32, 2), cbr(32, 32), cbr(32, 48, 2),
                                      cbr(48, 48))
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(96, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.head(torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1))[:, 0]


class Ensemble(nn.Module):
    """The mean probability of several :class:`ChipNet`: what the ONNX file computes."""

    def __init__(self, nets: list[ChipNet]):
        super().__init__()
        self.nets = nn.ModuleList(nets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.sigmoid(n(x)) for n in self.nets]).mean(0)


def port_chips(port_dir: Path, cache: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chips (with a :data:`SHIFT_PX` margin), labels and boxes of one port's out-of-fold candidates."""
    scene = read_scene(port_dir)
    c = port_candidates(port_dir, cache, chips=None, scene=scene)
    x = vessel_input(scene, bands=MODEL_BANDS)
    return candidate_chips(x, c["boxes"], margin=SHIFT_PX), c["label"], c["boxes"]


def augment(chips: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    out = np.empty((len(chips), CHIP_CHANNELS, CHIP_PX, CHIP_PX), np.float32)
    for i, c in enumerate(chips):
        dx, dy = rng.integers(0, 2 * SHIFT_PX + 1, 2)
        c = np.rot90(c[:, dy:dy + CHIP_PX, dx:dx + CHIP_PX], int(rng.integers(4)), axes=(1, 2))
        if rng.random() < 0.5:
            c = c[:, :, ::-1]
        c = c + np.float32(rng.normal(0, 0.1)) + rng.normal(0, 0.05, (CHIP_CHANNELS, 1, 1)).astype(np.float32)
        out[i] = c + rng.normal(0, 0.03, c.shape).astype(np.float32)
    return torch.from_numpy(out)


def train_one(chips: np.ndarray, labels: np.ndarray, seed: int, iters: int = ITERS) -> ChipNet:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = ChipNet()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=iters, pct_start=0.1)
    pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)
    net.train()
    for _ in range(iters):
        idx = np.concatenate([rng.choice(pos, 16), rng.choice(neg, 48)])
        loss = F.binary_cross_entropy_with_logits(net(augment(chips[idx], rng)),
                                                  torch.from_numpy(labels[idx].astype(np.float32)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


def train_classifier(chips: np.ndarray, labels: np.ndarray, seed: int, seeds: int = SEEDS,
                     iters: int = ITERS) -> Ensemble:
    return Ensemble([train_one(chips, labels, seed + k, iters) for k in range(seeds)]).eval()


def export(model: Ensemble, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.zeros(1, CHIP_CHANNELS, CHIP_PX, CHIP_PX)
    torch.onnx.export(model, x, str(path), input_names=["chips"], output_names=["probability"], opset_version=13,
                      dynamic_axes={"chips": {0: "n"}, "probability": {0: "n"}}, dynamo=False)


def main() -> None:
    folds = fold_paths()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="sen2ships folder (default: $IMGDIFF_DATA_DIR/sen2ships)")
    ap.add_argument("--cv-dir", type=Path, default=folds.vessels, help="fold networks <port>.onnx (train_vessels.py --cv)")
    ap.add_argument("--cache", type=Path, default=folds.vessel_maps, help="their out-of-fold maps (made when missing)")
    ap.add_argument("--chips-dir", type=Path, default=folds.vessel_chips, help="where the fold classifiers go")
    ap.add_argument("--ports", default=None, help="comma-separated ports to hold out (default all)")
    ap.add_argument("--no-final", action="store_true", help="fold classifiers only")
    ap.add_argument("--final-only", action="store_true", help="the shipped classifier only")
    ap.add_argument("--out", type=Path, default=CHIP_MODEL_PATH)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--seeds", type=int, default=SEEDS, help="networks averaged in one classifier")
    ap.add_argument("--iters", type=int, default=ITERS)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dirs = scene_dirs(args.data or data_dir() / "sen2ships")
    args.cache.mkdir(parents=True, exist_ok=True)
    for d in dirs:
        if not (args.cache / f"{d.name}.npz").is_file():
            extract_maps(d, args.cv_dir / f"{d.name}.onnx", args.cache / f"{d.name}.npz")
    data = {d.name: port_chips(d, args.cache) for d in dirs}
    print(f"{sum(len(v[1]) for v in data.values())} candidates, {sum(int(v[1].sum()) for v in data.values())} "
          f"vessels, {len(dirs)} ports", flush=True)
    holdouts = [] if args.final_only else ([p for p in args.ports.split(",") if p] if args.ports else list(data))
    for hold in holdouts:
        t0 = time.time()
        rest = [v for k, v in data.items() if k != hold]
        model = train_classifier(np.concatenate([v[0] for v in rest]), np.concatenate([v[1] for v in rest]),
                                 args.seed, args.seeds, args.iters)
        path = args.chips_dir / f"{hold}.onnx"
        export(model, path)
        chips, labels, _ = data[hold]
        p = chip_probability(chips[:, :, SHIFT_PX:SHIFT_PX + CHIP_PX, SHIFT_PX:SHIFT_PX + CHIP_PX], path)
        auc = roc_auc_score(labels, p) if 0 < labels.sum() < len(labels) else float("nan")
        print(f"  {hold}: out-of-fold AUC {auc:.3f} ({len(labels)} candidates, {int(labels.sum())} vessels; "
              f"{time.time() - t0:.0f} s) -> {path}", flush=True)
    if args.no_final or args.ports:
        return
    model = train_classifier(np.concatenate([v[0] for v in data.values()]),
                             np.concatenate([v[1] for v in data.values()]), args.seed, args.seeds, args.iters)
    export(model, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
