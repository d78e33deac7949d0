"""Train the vessel detector shipped in ``imgdiff/detect/models/vessels.onnx``.

A small CenterNet-style network: a stride-2 centre heat map, the sub-cell centre offset and the
log box size, trained on ``sen2ships`` only (``$IMGDIFF_DATA_DIR/sen2ships``), fixed seed.
Its input is :func:`imgdiff.detect.vessels.vessel_input` (per-scene normalised B02 B03 B04 B08 and
band-presence flags), so training and inference share one normalisation.

Usage (torch and onnx are training-only dependencies)::

    pip install torch==2.13.0 onnx          # or: pip install -e .[train]
    # the shipped model (about 40 min on a busy 2-core machine, 1 torch thread):
    nice python training/train_vessels.py --iters 3000
    # leave-one-port-out with the same recipe (folds can run as parallel processes), then pool the
    # folds into imgdiff/detect/models/vessels.json:
    nice python training/train_vessels.py --cv --no-final --cv-iters 3000 --cv-dir /tmp/cv --folds athens,busan
    python training/train_vessels.py --merge-cv --cv-iters 3000 --cv-dir /tmp/cv
    # after a detector change (decoding, test-time passes): re-score the saved fold models, re-pool
    # (the pooled table picks the default threshold: best F1 with |count error| <= 15 %, key "selected"):
    nice python training/train_vessels.py --cv --no-final --rescore --cv-iters 3000 --cv-dir /tmp/cv
    # the same folds with another seed (--seed, default the shipped model's), e.g. for a two-network ensemble
    # (training/ensemble_vessels.py averages networks in one ONNX graph the detector runs unchanged):
    nice python training/train_vessels.py --cv --no-final --cv-iters 3000 --cv-dir /tmp/cv_s7 --seed 7
    # one fold, keeping its model:
    nice python training/train_vessels.py --holdout genoa --iters 3000 --out /tmp/genoa.onnx
    # the second stage (rescorer) is trained on the fold models' out-of-fold candidates afterwards, and
    # writes the card's "selected" entry: see training/train_vessel_rescore.py

Augmentations: flips and 90-degree turns, scale 0.7-1.4 (other pixel sizes), per-band gain,
dropped bands (any subset of the four, or five with B11, must work), noise.
Bands: ``--bands B02,B03,B04,B08,B11`` trains a 10-channel network that reads B11 too (the detector
tells a model's bands from its input channel count, :func:`imgdiff.detect.vessels.model_bands`).
Measured 2026-11-26 (seed A, 3000 iterations, 7 folds): with B11 the nested leave-one-port-out F1 of
network + rescorer is 0.481 (P 0.508 R 0.458) against 0.528 without it, network alone 0.450 against 0.430;
recall of ships against quays unchanged (0.41 vs 0.40, network alone). B11 is not shipped.
Also measured 2026-11-26 and not kept (the option is gone): a hull-footprint head (a 6th output map, target
the fraction of each stride-2 cell inside the ellipse inscribed in each box, loss 1 x BCE per footprint
area), seed A, 7 folds: network alone 0.438 against 0.430; nested network + rescorer 0.489 against 0.528
(0.464 with footprint features for the rescorer); recall of ships beside land unchanged (0.52 vs 0.51
rescored). The predicted footprint is the heat score again (Spearman 0.89 with it, vessel-vs-not AUC
0.797 vs 0.799): the dense target does not teach where a hull ends and a quay begins.
Also measured 2026-11-26 and not kept (the option is gone): 30 % of the training crops centred on a land/water
edge pixel (water pixels beside land components of 200 px or more: quays, piers, breakwaters and hulls against
them; the rest 75 : 25 as before), seed A, 7 folds: network alone 0.443 (P 0.464 R 0.425, 104 false alarms)
against 0.430 (P 0.406 R 0.458, 142); nested network + rescorer 0.494 (P 0.530 R 0.462, count -12.7 %)
against 0.528. The hard negatives cut false alarms but cost ships against quays: their recall (land within
3 px outside the GT box, 194 of 212) falls to 0.40 from 0.44 (network alone) and 0.46 from 0.51 (rescored).
Also measured 2026-11-26 and not kept (the option is gone): a half-width network (every channel count x 0.5,
at least 8: 8-8-16-24 encoder, 16-8 decoder, head 8; 26.8 k parameters against 105.5 k), to test whether
the in-sample / leave-one-port-out gap is over-capacity. Seed A, 3000 iterations, 7 folds: network alone
0.405 (P 0.431 R 0.382, count -11.3 %) against 0.430; nested network + rescorer 0.436 (P 0.421 R 0.453,
count +7.5 %) against 0.528, lower at 5 of 7 ports. In-sample (all ports, network alone at the detector's
threshold) 0.683 against 0.741: the gap narrows only because in-sample falls too; the smaller network fits
less and generalises worse. Speed of one 1000 x 1000 px detection: 0.45-0.49 s against 0.51-0.52 s
(network alone 0.35 s against 0.42 s); not worth the loss.
Also measured 2026-11-26 and not kept (the option is gone): a 1.5x wider network (every channel count x 1.5:
24-24-48-72 encoder, 48-24 decoder, head 24; 236.0 k parameters against 105.5 k). Seed A, 3000 iterations,
7 folds: network alone 0.450 (P 0.434 R 0.467, count +7.5 %) against 0.430, higher at 6 of 7 ports; nested
network + rescorer 0.526 (P 0.502 R 0.552, count +9.9 %) against 0.528, higher at 3 of 7 ports (genoa,
honolulu, marseille), lower at casablanca (0.48 vs 0.67) and durban (0.67 vs 0.75). Within the seed noise
(+-0.02-0.04) of both; the rescorer absorbs the network's gain. Speed of one 1000 x 1000 px detection:
1.01 s against 0.50 s (network alone 0.93 s against 0.42 s): twice the time for nothing. Neither a half-width
nor a 1.5x wider network helps: capacity is not what limits the held-out F1.
Also measured 2026-11-26 and not kept (the option is gone): copy-paste augmentation (Ghiasi et al. 2021),
``--paste 0.5``: half of the crops got 1-3 ships of the training ports pasted at the source resolution (bank:
each GT box grown by 2 px; contrast = patch minus the median of the water pixels of a 2-5 px ring, added in the
network's input space under a 1 px feathered ellipse, the inscribed one or a slim one along a box diagonal,
whichever is brighter; random flip and 90-degree turn), hull on water only (the detector's water mask), half
of them within 2 px of land, never on a GT box grown by 2 px (63 % of the requested ships found a place, 54 %
of those beside land). Seed A, 3000 iterations, 7 folds: network alone 0.413 (P 0.387 R 0.443, count
+14.6 %) against 0.430; nested network + rescorer 0.518 (P 0.496 R 0.542, count +9.4 %) against 0.528, higher
at durban, genoa, honolulu and marseille, lower at athens, busan and casablanca. Recall of ships against quays
0.41 against 0.44 (network alone), 0.54 against 0.51 (rescored). Within the seed noise: more ships in more
contexts add candidates (2210 for the rescorer against 1458) without lifting either stage.
Also measured 2026-11-26 and not kept (the option is gone): radiometric augmentation for the domain gap
between ports, ``--radiometry``: per crop, on the band channels, contrast x * exp(N(0, 0.2)) (a gamma change
about the p99 level), haze with probability 0.5 (log(exp(x) + h), h ~ U(0, 0.04) times a per-band factor
U(0.8, 1.2), blue the largest), Gaussian blur with probability 0.3 (sigma U(0.3, 0.9) px), clipped at the
input's floor, and a global level shift N(0, 0.25) instead of N(0, 0.12). Seed A, 3000 iterations, 7 folds:
network alone 0.475 (P 0.511 R 0.443, count -13.2 %) against 0.430 (P 0.406 R 0.458), higher at 5 of 7
ports (athens 0.46 vs 0.39, genoa 0.53 vs 0.44, marseille 0.28 vs 0.21), lower at busan (0.44 vs 0.48) and
honolulu (0.316 vs 0.320); nested network + rescorer 0.523 (P 0.514 R 0.533, count +3.8 %) against 0.528,
higher at athens, genoa, honolulu and marseille, lower at busan (0.43 vs 0.47), casablanca (0.52 vs 0.67)
and durban (0.69 vs 0.75). Recall of ships against quays 0.43 against 0.44 (network alone), 0.53 against
0.51 (rescored). Second seed (7, against the seed-7 folds of today's recipe): network alone 0.478
(P 0.479 R 0.476) against 0.470, nested 0.494 (P 0.465 R 0.528, count +13.7 %) against 0.509. Mean of the
two seeds: network alone 0.477 against 0.450, nested 0.509 against 0.519. The network gains a little
(mostly precision), within the seed noise; the rescorer absorbs it and the two-stage figure does not move.
Also measured 2026-11-27: training length. The shipped recipe's folds retrained that day (3000 iterations) give
network alone 0.451, nested 0.553 (``train_vessel_rescore.py``); with ``--cv-iters 1500`` 0.421 and 0.447
(candidates hold 195 of the 212 GT vessels against 186, with 1998 candidates against 1404): a shorter run
does not close the in-sample / held-out gap, it fits worse everywhere. With ``--cv-iters 6000`` the network alone
gains (0.500: P 0.505 R 0.495, count -1.9 %) but the nested two-stage figure does not move (0.553: P 0.599
R 0.514, count -14.2 %; candidates hold 174 of the 212 GT vessels, 958 candidates): not kept, twice the time.
Also measured 2026-11-27: a two-network ensemble of those fold networks (3000 and 6000 iterations, one seed; heat
logits and log sizes averaged, offsets from the first), network alone: 0.486 (P 0.473 R 0.500, count +5.7 %) with
8 passes each and 0.476 with 4 passes each (the cost of one network at 8), against 0.500 for the 6000-iteration
network alone and 0.451 for the 3000 one: averaging with the weaker network costs more than it steadies. Not kept.
Also measured 2026-11-27 and not kept: test-time adaptation of the fold networks to the held-out scene (AdaBN-like;
the batch norms are folded into the exported convolutions, so each conv->ReLU output channel was re-standardised
to the mean and variance it has on the fold's six training scenes, layer after layer from the input, scale clipped
to 0.5-2). All 10 such layers: network alone 0.403, nested network + rescorer 0.522; the first 2 layers only:
0.415 and 0.511; against 0.451 and 0.553 unadapted. Probably a scene's channel statistics follow its content (how
much land, how many ships) more than its radiometry, which the input's log / 99th-percentile scaling already removes.
Also measured 2026-11-27 and not kept: AdamW weight decay 0.05 instead of 1e-4 (the stronger regulariser usual for
small data), seed A, 3000 iterations, 7 folds: network alone 0.466 (P 0.465 R 0.467, count +0.5 %) against 0.451,
nested network + rescorer 0.511 (P 0.517 R 0.505) against 0.553.
Also measured 2026-11-27 and not kept: dropped bands in 10 % of the crops instead of 35 % (the held-out scenes have
all four bands; fewer crops spent on missing ones), seed A, 3000 iterations, 7 folds: network alone 0.460 (P 0.436
R 0.486, count +11.3 %) against 0.451, nested 0.516 (P 0.522 R 0.509) against 0.553. Like every network change
before it, the network alone moves within the seed spread and the two-stage figure does not rise with it.
Also measured 2026-11-27 and not kept: ignore regions for the labels' gaps. Half of the fold networks' in-sample
false alarms at 0.4 and above are vessels the labels leave out (small boats in open water at Athens, Marseille and
Genoa, a ship in a row of labelled ones at Busan), the rest quays and pier heads. For each held-out port H, the
unmatched detections (network alone, score >= 0.3) of H's fold network on its six training ports became regions
where the heat loss has no negative term (box grown by 1 px; H's labels are never used), and the folds were
retrained (seed A, 3000 iterations). Only those with open water on >= 70 % of a 1-3 px ring around the box (42 boxes
per fold): network alone 0.448 (P 0.452 R 0.443) against 0.451, nested 0.528 (P 0.542 R 0.514) against 0.553. All
of them (91 per fold, quays included): 0.443 and 0.467. The gaps in the labels are not what holds the network back.
Also measured 2026-11-28 (third session), to see whether the input's level (each band over its scene's 99th
percentile) moves ports apart: the fold networks of the shipped recipe run with every band channel shifted by
delta in the log input (``detect_vessels(levels=...)``), delta -0.6 / -0.3 / 0 / +0.3 / +0.6: network alone 0.423 /
0.425 / 0.433 / 0.454 / 0.460, network + chip classifier + nested rescorer 0.466 / 0.474 / 0.523 / 0.488 / 0.451
(the second stages were trained at delta 0). The best delta of a port (network + rescorer) does not follow how far
its open water lies below the 99th percentile (Busan -1.8 log units, best at -0.6; Marseille -3.5, best at -0.6;
Athens -2.6 and Durban -3.2, best at 0): a water-referenced input level would not line the ports up.
Reproducibility (2026-11-28): the same recipe and seed retrained on another machine (torch 2.14, ``training/folds.py``)
gives other networks: network alone 0.433 and nested 0.486 against 0.451 and 0.553 on 2026-11-27; seed 7 that day
0.470 and 0.510. The spread between retrainings (about +-0.03) is as large as most effects measured above.
Also measured 2026-11-28 (fourth session) and not kept: a two-seed ensemble of EQUAL networks, to see whether the
seed spread is variance that averaging removes. The fold networks of that day (seed A, ``IMGDIFF_FOLDS_DIR``, and
seed 7, both 3000 iterations), each port's two fold networks averaged in one ONNX graph
(``training/ensemble_vessels.py``: the mean of the five output maps, so heat logits and log sizes are averaged over
both networks and all test-time passes, offsets over both networks on the direct pass), the fold chip classifiers
and nested rescorers retrained on the ensemble's out-of-fold candidates (``train_vessel_chips.py`` and
``train_vessel_rescore.py`` on them; out-of-fold chip AUC 0.60 Busan to 0.89 Athens). Nested leave-one-port-out,
pooled F1 (P, R, count) and per port (athens busan casablanca durban genoa honolulu marseille):
network alone: seed A 0.433 (P 0.465 R 0.406, -12.7 %; .39 .43 .50 .66 .40 .35 .21), seed 7 0.470 (P 0.450 R 0.491,
+9.0 %; .47 .48 .58 .64 .39 .30 .31), ensemble 0.477 (P 0.468 R 0.486, +3.8 %; .45 .48 .50 .68 .46 .32 .29);
network + chip classifier + nested rescorer: seed A 0.523 (P 0.532 R 0.514, -3.3 %; .61 .32 .58 .78 .49 .35 .41),
seed 7 0.527 (P 0.531 R 0.524, -1.4 %; .64 .36 .52 .70 .51 .32 .45), ensemble **0.524** (P 0.507 R 0.542, +7.1 %;
.64 .36 .52 .74 .46 .31 .48; ``benchmarks/vessels.py --folds`` through ``detect_vessels`` gives the same table);
with seed A's or seed 7's fold chip classifiers instead (trained on that seed's candidates, never on the port) 0.532
and 0.501. The network alone gains +0.025 over the mean of the two seeds; the chain does not move (0.524 against
0.523 and 0.527): the candidates hold 186 of the 212 ships against 187 and 188, and the rescorer re-ranks them as it
did for either network. Without the chip feature: 0.509 against 0.486 and 0.510. With 4 passes per network (the cost
of one network at 8): network alone 0.472, chain 0.534 (P 0.580 R 0.495, count -14.6 %; chip classifiers of the
8-pass ensemble); each network on other passes (seed A the four untransposed, seed 7 the four transposed): 0.461 and
0.526. Speed of one 1000 x 1000 px detection (median of 7): 0.90 s against 0.52 s for one fold network and 0.56 s
for the shipped one (4 passes each: 0.60 s). Like the unequal ensemble of 2026-11-27, averaging networks steadies
the first stage only; the two-stage figure stays within the seed spread.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from imgdiff.data import data_dir  # noqa: E402
from imgdiff.detect.vessels import (  # noqa: E402
    EXTRA_BANDS,
    MODEL_BANDS,
    MODEL_PATH,
    STRIDE,
    detect_vessels,
    model_bands,
    vessel_input,
)
from imgdiff.evaluate.vessels import pool, read_gt, scene_dirs, score  # noqa: E402
from imgdiff.io.read import read_scene  # noqa: E402

SEED = 20240805
CROP = 128
NB = len(MODEL_BANDS)


# ------------------------------------------------------------------------------------------
# model
# ------------------------------------------------------------------------------------------
def cbr(cin: int, cout: int, stride: int = 1, dil: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding=dil, dilation=dil, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class VesselNet(nn.Module):
    """Encoder 1/2-1/4-1/8 with skips back to 1/2; outputs 5 maps at stride 2."""

    def __init__(self, cin: int = 2 * NB):
        super().__init__()
        self.stem = cbr(cin, 16, stride=2)
        self.e1 = cbr(16, 16)
        self.e2 = nn.Sequential(cbr(16, 32), cbr(32, 32))
        self.e3 = nn.Sequential(cbr(32, 48), cbr(48, 48, dil=2), cbr(48, 48, dil=4))
        self.d2 = cbr(48 + 32, 32)
        self.d1 = cbr(32 + 16, 16)
        self.head = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(16, 5, 1))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        with torch.no_grad():
            self.head[-1].bias.zero_()
            self.head[-1].bias[0] = -4.0
            self.head[-1].bias[3:5] = math.log(12.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.e1(self.stem(x))
        b = self.e2(F.max_pool2d(a, 2))
        c = self.e3(F.max_pool2d(b, 2))
        d = self.d2(torch.cat([self.up(c), b], 1))
        e = self.d1(torch.cat([self.up(d), a], 1))
        return self.head(e)


# ------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------
def load_ports(names: list[str], root: Path, bands: tuple[str, ...] = MODEL_BANDS
               ) -> list[tuple[str, np.ndarray, np.ndarray]]:
    out = []
    for d in scene_dirs(root):
        if d.name in names:
            scene = read_scene(d)
            out.append((d.name, vessel_input(scene, bands=bands), read_gt(d)))
    return out


def parse_bands(text: str) -> tuple[str, ...]:
    """The ``--bands`` list: B02,B03,B04,B08 then optionally B11 (the order the network reads)."""
    bands = tuple(b.strip().upper() for b in text.split(",") if b.strip())
    allowed = [MODEL_BANDS + EXTRA_BANDS[:k] for k in range(len(EXTRA_BANDS) + 1)]
    if bands not in allowed:
        raise SystemExit(f"--bands must be one of {'; '.join(','.join(a) for a in allowed)}, not {text!r}")
    return bands


def render_targets(boxes: np.ndarray, size: int) -> tuple[np.ndarray, ...]:
    """Heat (S,S), offset (2,S,S), log size (2,S,S), size weight (S,S), offset weight (S,S) on the stride grid."""
    s = size // STRIDE
    heat = np.zeros((s, s), np.float32)
    off = np.zeros((2, s, s), np.float32)
    lsz = np.zeros((2, s, s), np.float32)
    wsz = np.zeros((s, s), np.float32)
    woff = np.zeros((s, s), np.float32)
    gi = np.arange(s) + 0.5
    for x0, y0, x1, y1 in boxes:
        w, h = x1 - x0, y1 - y0
        if w < 1 or h < 1:
            continue
        cx, cy = (x0 + x1) / 2 / STRIDE, (y0 + y1) / 2 / STRIDE
        ix, iy = int(math.floor(cx)), int(math.floor(cy))
        if not (0 <= ix < s and 0 <= iy < s):
            continue
        sx, sy = max(0.6, w / STRIDE / 6), max(0.6, h / STRIDE / 6)
        g = np.exp(-((gi[None, :] - cx) ** 2) / (2 * sx * sx) - ((gi[:, None] - cy) ** 2) / (2 * sy * sy))
        g[iy, ix] = 1.0
        better = g > heat
        heat = np.maximum(heat, g)
        szm = better & (g >= 0.6)
        lsz[0][szm], lsz[1][szm] = math.log(w), math.log(h)
        wsz[szm] = g[szm]
        off[:, iy, ix] = (cx - ix, cy - iy)
        woff[iy, ix] = 1.0
    return heat, off, lsz, wsz, woff


def sample(ports, rng: np.random.Generator, batch: int):
    nb = ports[0][1].shape[0] // 2  # bands the network reads (the rest are presence flags)
    xs, hs, os_, ls, ws, wos = [], [], [], [], [], []
    for _ in range(batch):
        name, x, boxes = ports[rng.integers(len(ports))]
        _, hh, ww = x.shape
        scale = float(np.exp(rng.uniform(math.log(0.7), math.log(1.4))))
        src = int(round(CROP / scale))
        src = min(src, hh, ww)
        scale = CROP / src
        if len(boxes) and rng.random() < 0.75:
            b = boxes[rng.integers(len(boxes))]
            cx, cy = (b[0] + b[2]) / 2 + rng.uniform(-0.4, 0.4) * src, (b[1] + b[3]) / 2 + rng.uniform(-0.4, 0.4) * src
            x0, y0 = int(np.clip(cx - src / 2, 0, ww - src)), int(np.clip(cy - src / 2, 0, hh - src))
        else:
            x0, y0 = int(rng.integers(0, ww - src + 1)), int(rng.integers(0, hh - src + 1))
        img = np.ascontiguousarray(x[:nb, y0:y0 + src, x0:x0 + src].transpose(1, 2, 0))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        if nb <= 4:
            img = cv2.resize(img, (CROP, CROP), interpolation=interp)
        else:  # OpenCV resizes at most 4 channels at once
            img = np.stack([cv2.resize(np.ascontiguousarray(img[:, :, i]), (CROP, CROP), interpolation=interp)
                            for i in range(nb)], axis=2)
        crop = np.concatenate([img.transpose(2, 0, 1), np.ones((nb, CROP, CROP), np.float32)])
        bx = boxes.copy()
        bx[:, [0, 2]] = (bx[:, [0, 2]] - x0) * scale
        bx[:, [1, 3]] = (bx[:, [1, 3]] - y0) * scale
        cxs, cys = (bx[:, 0] + bx[:, 2]) / 2, (bx[:, 1] + bx[:, 3]) / 2
        bx = bx[(cxs >= 0) & (cxs < CROP) & (cys >= 0) & (cys < CROP)]
        # flips and turns (boxes follow)
        if rng.random() < 0.5:
            crop = crop[:, :, ::-1]
            bx[:, [0, 2]] = CROP - bx[:, [2, 0]]
        if rng.random() < 0.5:
            crop = crop[:, ::-1, :]
            bx[:, [1, 3]] = CROP - bx[:, [3, 1]]
        if rng.random() < 0.5:
            crop = crop.transpose(0, 2, 1)
            bx = bx[:, [1, 0, 3, 2]]
        crop = np.ascontiguousarray(crop)
        # radiometry: per-band gain (log offset), noise, dropped bands
        crop[:nb] += rng.normal(0, 0.12) + rng.normal(0, 0.06, size=(nb, 1, 1)).astype(np.float32)
        crop[:nb] += rng.normal(0, 0.03, size=crop[:nb].shape).astype(np.float32)
        if rng.random() < 0.35:  # dropped bands (B11 too when the network reads it)
            keep = rng.random(nb) < 0.5
            if not keep.any():
                keep[rng.integers(nb)] = True
            fill = crop[:nb][keep].mean(axis=0)
            for i in range(nb):
                if not keep[i]:
                    crop[i] = fill
                    crop[nb + i] = 0.0
        t = render_targets(bx, CROP)
        xs.append(crop)
        hs.append(t[0]); os_.append(t[1]); ls.append(t[2]); ws.append(t[3]); wos.append(t[4])  # noqa: E702
    f = lambda a: torch.from_numpy(np.stack(a))  # noqa: E731
    return f(xs), f(hs), f(os_), f(ls), f(ws), f(wos)


def loss_fn(out: torch.Tensor, heat, off, lsz, wsz, woff) -> torch.Tensor:
    p = torch.sigmoid(out[:, 0]).clamp(1e-4, 1 - 1e-4)
    pos = heat >= 1.0
    npos = pos.sum().clamp(min=1)
    lpos = -((1 - p) ** 2 * torch.log(p))[pos].sum()
    lneg = -((1 - heat) ** 4 * p ** 2 * torch.log(1 - p))[~pos].sum()
    lheat = (lpos + lneg) / npos
    lsize = (wsz[:, None] * (out[:, 3:5] - lsz).abs()).sum() / wsz.sum().clamp(min=1)
    loff = (woff[:, None] * (out[:, 1:3] - off).abs()).sum() / woff.sum().clamp(min=1)
    return lheat + lsize + loff


def train(ports, iters: int, seed: int, log_every: int = 50) -> VesselNet:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = VesselNet(cin=ports[0][1].shape[0])
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=iters, pct_start=0.1)
    net.train()
    t0, run = time.time(), 0.0
    for it in range(iters):
        batch = sample(ports, rng, 12)
        out = net(batch[0])
        loss = loss_fn(out, *batch[1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        run = 0.95 * run + 0.05 * loss.item() if it else loss.item()
        if (it + 1) % log_every == 0:
            print(f"  iter {it + 1}/{iters} loss {run:.3f} ({time.time() - t0:.0f} s)", flush=True)
    return net.eval()


def export(net: VesselNet, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.zeros(1, net.stem[0].in_channels, 64, 64)
    torch.onnx.export(net, x, str(path), input_names=["x"], output_names=["maps"], opset_version=13,
                      dynamic_axes={"x": {2: "h", 3: "w"}, "maps": {2: "h2", 3: "w2"}}, dynamo=False)


# ------------------------------------------------------------------------------------------
# evaluation
# ------------------------------------------------------------------------------------------
THRESHOLDS = tuple(round(0.2 + 0.02 * i, 2) for i in range(16))  # 0.20, 0.22, ..., 0.50
#: Largest |count error| allowed when choosing the default threshold from the pooled folds.
MAX_COUNT_ERROR = 0.15


def eval_port(model: Path, port_dir: Path) -> dict[float, object]:
    scene = read_scene(port_dir)
    gt = read_gt(port_dir)
    dets = detect_vessels(scene, model=model, min_score=min(THRESHOLDS), rescore=False)  # the network alone
    out = {}
    for t in THRESHOLDS:
        d = dets.filter(min_score=t)
        out[t] = score(port_dir.name, d.boxes, d.scores, gt)
    return out


def summarise_cv(cv_dir: Path) -> dict:
    """Pool the per-fold results in ``cv_dir`` (one JSON per held-out port) and print them."""
    from imgdiff.evaluate.vessels import SceneScore

    folds = {p.stem: json.loads(p.read_text()) for p in sorted(cv_dir.glob("*.json")) if p.stem != "summary"}
    print(f"leave-one-port-out over {len(folds)} ports ({', '.join(folds)}), pooled, by threshold:")
    out = {}
    for t in THRESHOLDS:
        scores = []
        for r in folds.values():
            d = dict(r[str(t)])
            d["count_error"] = float("nan") if d["count_error"] is None else d["count_error"]
            scores.append(SceneScore(**d))
        p = pool(scores)
        out[str(t)] = {"pooled": p.to_dict(), "ports": [x.to_dict() for x in scores]}
        print(f"  t={t:.2f} P {p.precision:.3f} R {p.recall:.3f} F1 {p.f1:.3f} count {p.n_pred}/{p.n_gt} "
              f"({p.count_error:+.1%})")
    sel = select_threshold(out)
    if sel:
        print(f"  selected t={sel['min_score']} (best pooled F1 with |count error| <= {MAX_COUNT_ERROR:.0%}; "
              f"set imgdiff.detect.vessels.NETWORK_MIN_SCORE to it; then retrain the rescorer: "
              f"training/train_vessel_rescore.py --extract --write)")
    (cv_dir / "summary.json").write_text(json.dumps(out, indent=1))
    return out


def select_threshold(table: dict) -> dict | None:
    """The threshold with the best pooled F1 among those with |count error| <= MAX_COUNT_ERROR."""
    ok = [t for t in table if abs(table[t]["pooled"]["count_error"]) <= MAX_COUNT_ERROR]
    if not ok:
        return None
    best = max(ok, key=lambda t: table[t]["pooled"]["f1"])
    return {"min_score": float(best), "max_count_error": MAX_COUNT_ERROR, **table[best]["pooled"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="sen2ships folder (default: $IMGDIFF_DATA_DIR/sen2ships)")
    ap.add_argument("--iters", type=int, default=3000)
    ap.add_argument("--cv-iters", type=int, default=None, help="iterations per leave-one-port-out fold")
    ap.add_argument("--cv", action="store_true", help="leave-one-port-out estimate before the final model")
    ap.add_argument("--no-final", action="store_true", help="with --cv: skip the final model")
    ap.add_argument("--holdout", default=None, help="train without this port and score on it")
    ap.add_argument("--folds", default=None, help="with --cv: comma-separated ports to hold out (default all)")
    ap.add_argument("--cv-dir", type=Path, default=None,
                    help="folder for per-fold results (pooled over every fold found there)")
    ap.add_argument("--rescore", action="store_true",
                    help="with --cv: re-score fold models already saved in --cv-dir instead of training them")
    ap.add_argument("--merge-cv", action="store_true",
                    help="only pool the folds in --cv-dir into the JSON beside --out (no training)")
    ap.add_argument("--out", type=Path, default=MODEL_PATH)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is fastest on a loaded 2-core machine: 2 threads oversubscribe)")
    ap.add_argument("--seed", type=int, default=SEED,
                    help=f"torch and sampling seed (default {SEED}, the shipped model's; another seed for ensembles)")
    ap.add_argument("--bands", default=",".join(MODEL_BANDS),
                    help="bands the network reads, in order: B02,B03,B04,B08 (default) or B02,B03,B04,B08,B11")
    args = ap.parse_args()
    bands = parse_bands(args.bands)
    torch.set_num_threads(args.threads)
    root = args.data or data_dir() / "sen2ships"
    dirs = scene_dirs(root)
    names = [d.name for d in dirs]
    meta: dict = {"seed": args.seed, "iters": args.iters, "cv_iters": args.cv_iters or args.iters, "crop": CROP, "bands": list(bands),
                  "ports": names}

    cv_dir = args.cv_dir
    folds = ([f for f in args.folds.split(",") if f] if args.folds else names) if args.cv else (
        [args.holdout] if args.holdout else [])
    for hold in folds:
        t0 = time.time()
        print(f"fold: hold out {hold}", flush=True)
        saved = cv_dir / f"{hold}.onnx" if cv_dir else None
        rescored = bool(args.rescore and saved is not None and saved.is_file())
        if rescored:
            res = eval_port(saved, root / hold)  # re-score a saved fold model with the current detector
        else:
            net = train(load_ports([n for n in names if n != hold], root, bands), args.cv_iters or args.iters,
                        args.seed)
            with tempfile.TemporaryDirectory() as td:
                p = args.out if args.holdout else (saved or Path(td) / "fold.onnx")
                p.parent.mkdir(parents=True, exist_ok=True)
                export(net, p)
                res = eval_port(p, root / hold)
        s = res[0.4]
        print(f"  {hold}: P {s.precision:.3f} R {s.recall:.3f} F1 {s.f1:.3f} count {s.n_pred}/{s.n_gt} "
              f"({time.time() - t0:.0f} s)", flush=True)
        if cv_dir:
            cv_dir.mkdir(parents=True, exist_ok=True)
            fold_json = cv_dir / f"{hold}.json"
            # the seed the saved fold model was trained with (a re-score keeps the recorded one)
            seed = json.loads(fold_json.read_text()).get("seed") if rescored and fold_json.is_file() else args.seed
            fold = {str(t): r.to_dict() for t, r in res.items()}
            if seed is not None:
                fold["seed"] = seed
            fold["bands"] = list(model_bands(saved) if rescored else bands)
            fold_json.write_text(json.dumps(fold, indent=1))
    if cv_dir and cv_dir.is_dir():
        meta["leave_one_port_out"] = summarise_cv(cv_dir)
    if folds and (args.holdout or args.no_final):
        return
    if args.merge_cv:
        meta_path = args.out.with_suffix(".json")
        shipped = json.loads(meta_path.read_text())
        shipped[f"leave_one_port_out_{args.cv_iters or args.iters}_iters"] = meta.get("leave_one_port_out")
        # "selected" (the shipped pipeline, network + rescorer) is written by train_vessel_rescore.py --write
        shipped["selected_network_alone"] = select_threshold(meta.get("leave_one_port_out") or {})
        meta_path.write_text(json.dumps(shipped, indent=1) + "\n")
        print(f"merged the leave-one-port-out summary of {cv_dir} into {meta_path}")
        return
    print(f"final model on {', '.join(names)}", flush=True)
    net = train(load_ports(names, root, bands), args.iters, args.seed)
    export(net, args.out)
    meta["params"] = int(sum(p.numel() for p in net.parameters()))
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
