"""Train the aircraft network on aircraft_s2sim, cross-validated by airport, and export it to ONNX.

Run by hand (torch is needed for training only, never at run time)::

    pip install torch==2.13.0
    nice python training/train_aircraft.py --folds 4 --iters 1500
    # -> imgdiff/detect/models/aircraft_cnn.onnx and aircraft_limits.json

Steps
-----
1. Read every chip of ``$IMGDIFF_DATA_DIR/aircraft_s2sim`` (B02 B03 B04 + aircraft.json).
2. Group chips by airport: chips whose high-passed brightness matches (normalised
   cross-correlation of a central crop, any translation) belong to the same airport;
   groups are the connected components of that graph.
3. Grouped K-fold: train on the other airports, predict the held-out ones with the exported
   ONNX network through :func:`imgdiff.detect.aircraft.detect_aircraft` (the very code path
   users run), pool the out-of-fold detections.
4. Choose the score threshold that maximises out-of-fold pooled F1 (aircraft >= 40 m),
   record recall per length bin at it (the detection limit).
5. Train on every chip with the same recipe and export the network and the model card.

Score calibration (``--calibrate --work DIR``, reusing the fold networks and ``final.onnx`` of
``DIR``, which must be the shipped network): the pooled out-of-fold detections from
:data:`CALIBRATION_EDGES` up are matched to the truth (any aircraft, any length, counts as
real), and the fraction real per score bin (:func:`calibration_table`) goes into the card's
``score_calibration`` with the recall per length bin at the card's threshold::

    nice python training/train_aircraft.py --calibrate --work /tmp/acrun/work1

The chip -> fold table of the same grouped folds (for ``benchmarks/claims.py --aircraft --honest``,
which verifies each apron with the fold network that never saw its airport)::

    python training/train_aircraft.py --write-folds /tmp/acrun/work1/folds.json

Hard negatives from real Sentinel-2 (``--negatives FRACTION``, default 0: chips only, the recipe bit for bit):
that fraction of each batch's crops (rounded to whole crops) is cut from the airport-free OSCD cities
(:data:`NEGATIVE_CITIES`, both dates, B02 B03 B04 of ``$IMGDIFF_DATA_DIR/oscd``): a random scene, a random
:data:`NEG_WINDOW` px window without invalid pixels, then the chips' augmentation and normalisation with all-zero
targets. beirut (an airport apron) is never used. The cities go round-robin to the folds in the order of
:data:`NEGATIVE_CITIES` (the desert cities abudhabi and dubai in different folds); fold k's network trains only on
the negatives of the other folds' cities and its false alarms are counted on fold k's cities
(``--oscd-check``, always on with ``--negatives``): out-of-fold detections per Mpx at :data:`OSCD_CHECK_SCORES`,
through :func:`~imgdiff.detect.aircraft.detect_aircraft` with every band. The final network uses all nine cities::

    nice python training/train_aircraft.py --negatives 0.25 --no-final --work DIR
    nice python training/train_aircraft.py --reuse --no-final --oscd-check --work /tmp/acrun/work1  # baseline

Measured 2026-11-27, not shipped (pooled out-of-fold; OSCD false alarms per Mpx at 0.25 / 0.5; seeds 0, 1):
chips only (/tmp/acrun/work1) F1 0.716 at 0.225, OSCD 2133 / 448, claims 56/64; ``--negatives 0.25`` F1 0.711 / 0.657
(thresholds 0.2 / 0.175), OSCD 375 / 44 and 393 / 49, claims 55 / 59; ``--negatives 0.5`` F1 0.684 / 0.653, OSCD
381 / 46 and 443 / 42, claims 60 / 62. City roofs: false alarms / 5-10 (near 0 on bercy, paris, nantes, cupertino),
but the desert cities (abudhabi, dubai: no desert city in their fold networks' negatives) stay near 900-1200 / Mpx.
At a fixed threshold the chips' precision rises (0.25: P 0.73 against 0.69) and recall falls about 1 point, so the
threshold rule (recall >= 50 m of 0.85) moves down to 0.2 or 0.175, where chip F1 is low: the F1 of the rule's
threshold is within (seed 0) or below (seed 1) the chips-only seed spread 0.697-0.721.
On the real airport no fold ever saw (OSCD beirut, final ``--negatives 0.25`` network against the shipped one):
whole scene 4273 -> 90 detections (before date) and 5190 -> 78 (after) at 0.25; on the apron the bright aircraft
are all found again, but their scores fall on the before date (0.58-0.64 -> 0.34-0.54), below the 0.5 / 0.45 at
which a claim counts an object (:data:`imgdiff.claims.evidence.MIN_EVIDENCE_SCORE`, ``STATIC_EVIDENCE_SCORE``): the
network may have learned "real Sentinel-2 texture" as well as "roof". On the chips, out of fold, the scores of
matched aircraft fall less: median 0.623 -> 0.557 / 0.566 (seeds 0, 1), the share at 0.5 or more 0.62 -> 0.57 /
0.58. Shipping it would need those cuts measured again and negatives of every city type in every fold (a desert
city in each).

Second trial, measured 2026-11-28, not shipped (the first trial's city folds were the sorted order, abudhabi and
dubai both in fold 0; since then :data:`NEGATIVE_CITIES` puts them in folds 0 and 1). Chips only with these city
folds: seed 0 (/tmp/acrun/work1) F1 0.716 at 0.225, OSCD 2119 / 456 (abudhabi 2341 / 522, dubai 1035 / 185), chip
aircraft score median 0.623, share >= 0.5: 0.62, claims 56/64; seed 1 F1 0.700 at 0.2, OSCD 1954 / 412, median
0.625, share 0.63, claims 52/64. ``--negatives 0.1`` (one crop of 12), seeds 0 / 1: F1 0.707 / 0.695 at 0.2 (recall
>= 50 m 0.864 / 0.860; at 0.225 it is 0.849 / 0.848, just under the rule's 0.85), OSCD 422 / 55 and 426 / 56
(abudhabi 610 / 76 and 689 / 96, dubai 791 / 112 and 701 / 102; beihai, now in fold 0, 737-761 / 106), chip aircraft
score median 0.606 / 0.581, share >= 0.5: 0.62 / 0.59, claims 58 / 56. One desert city in the training negatives did
not bring the other down: the desert cities still give 600-800 false alarms / Mpx at 0.25, like the first trial
without any. Chip F1 sits at the low end of the chips-only seed spread (0.697-0.721) and claims within noise (58 is
one case, two claims, above the chips-only 52-56); false alarms fall 5x at 0.25 and 8x at 0.5 (about as with 0.25);
the chip score median falls less than with 0.25 (0.606 / 0.581 against 0.557 / 0.566; chips-only seeds 0.623 /
0.625). On beirut (final network of seed 0 against the shipped one): whole scene 4273 -> 138 (before) and 5190 ->
112 (after) at 0.25; on the apron the shipped network's five aircraft >= 0.5 of the before date come back at 0.55,
0.46, 0.34, 0.26 and not at all (one >= 0.5, as with 0.25), after: 0.78 / 0.77 / 0.67 -> 0.76 / 0.76 / 0.47. A
smaller fraction does not keep the real aircraft's scores: not shippable either.

Fixed seeds (numpy, torch); deterministic single-thread-friendly ops.

Recipe options (``--seed-offset``, ``--iters``, ``--width``, ``--batch``, ``--crop``, ``--only-fold K`` to train one
fold network into ``--work`` and evaluate later with ``--reuse --no-final``) default to the shipped recipe.
Measured 2026-11-26 and not shipped (pooled out-of-fold, the card's threshold rule; "matched" = F1 where recall
>= 50 m is 0.85; claims = ``IMGDIFF_AIRCRAFT_FOLDS=DIR python benchmarks/claims.py --aircraft --honest``):
today's recipe over three seeds F1 0.721 / 0.697 / 0.710, matched 0.710-0.723, claims 54-56/64;
``--iters 3000`` F1 0.696, matched 0.719, claims 59/64; ``--width 1.5`` F1 0.724 / 0.691 (seeds 0, 1), matched
0.739 / 0.702, claims 61 / 59. Neither beats the seed noise on F1; the claims gain rests on one fold network
(three chips of fold 2 decide 6 of the 64 claims: today's recipe scores 18-24/24 on them across seeds).
Longer training lowers the training loss (focal 0.20-0.35 against 0.25-0.46) without helping unseen airports.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
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
from imgdiff.detect.aircraft import LENGTH_BINS_M, detect_aircraft  # noqa: E402
from imgdiff.detect.aircraft_features import RGB_BANDS, fill_invalid, normalised_stack  # noqa: E402
from imgdiff.evaluate.aircraft import chip_dirs, read_truth, score_chip  # noqa: E402
from imgdiff.evaluate.detection import binned_precision, match_detections, prf  # noqa: E402
from imgdiff.io.read import read_scene  # noqa: E402

SEED = 20261125
#: Normalisation options (written beside each network as <model>.json; see norm_params).
NORM: dict[str, float] = {}
#: Issue 6: recall >= 0.85 for aircraft of 50 m and longer.
RECALL50_TARGET = 0.85
OUT_DIR = ROOT / "imgdiff" / "detect" / "models"
#: Score bin edges of the calibration table (lower edge inclusive; the last bin includes 1).
CALIBRATION_EDGES = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 1.0)
#: Real Sentinel-2 OSCD cities without any airport in the scene (checked by eye): hard negatives (city roofs,
#: both dates). beirut holds an airport apron and stays out of training (the real-airport check).
#: The order sets the city folds (:func:`city_folds`, round-robin in this order): the two desert cities abudhabi
#: and dubai go to different folds (0 and 1), so every fold network trains on at least one desert city; otherwise
#: the sorted order with dubai and beihai swapped (bercy and paris, both Paris, stay together in fold 2).
NEGATIVE_CITIES = ("abudhabi", "dubai", "bercy", "cupertino", "beihai", "nantes", "paris", "rio", "valencia")
#: Side (px) of a negative window cut from an OSCD scene: the size of an aircraft_s2sim chip, so that a
#: negative goes through :func:`sample` exactly like a chip.
NEG_WINDOW = 128
#: Scores at which the out-of-fold OSCD false alarms are counted (``--oscd-check``).
OSCD_CHECK_SCORES = (0.25, 0.5)


# ----------------------------------------------------------------------------- data
def load_chips(root: Path) -> list[dict]:
    chips = []
    for d in chip_dirs(root):
        s = read_scene(d, bands=list(RGB_BANDS))
        t = read_truth(d / "aircraft.json")
        raw = np.stack([s.bands[b] for b in RGB_BANDS]).astype(np.float32)
        chips.append({"name": d.name, "dir": d, "raw": raw, "truth": t})
    return chips


def airport_groups(chips: list[dict], thr: float = 0.5) -> np.ndarray:
    """Group index of each chip: connected components of 'same airport' (NCC of a central crop >= thr)."""
    imgs = []
    for c in chips:
        g = c["raw"].mean(0)
        g = g - cv2.GaussianBlur(g, (0, 0), 8)
        imgs.append(((g - g.mean()) / (g.std() + 1e-9)).astype(np.float32))
    n = len(imgs)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    sim = np.zeros((n, n))
    for i in range(n):
        h, w = imgs[i].shape
        crop = imgs[i][h // 4:3 * h // 4, w // 4:3 * w // 4]
        for j in range(n):
            if i == j:
                continue
            sim[i, j] = float(cv2.matchTemplate(imgs[j], crop, cv2.TM_CCOEFF_NORMED).max())
    sim = np.maximum(sim, sim.T)
    for i in range(n):
        for j in range(i + 1, n):
            if sim[i, j] >= thr:
                parent[find(i)] = find(j)
    roots = [find(i) for i in range(n)]
    uniq = {r: k for k, r in enumerate(dict.fromkeys(roots))}
    return np.array([uniq[r] for r in roots])


def grouped_folds(groups: np.ndarray, k: int) -> np.ndarray:
    """Fold of each chip: whole airport groups, largest first, each to the fold with fewest chips."""
    ng = int(groups.max()) + 1
    fold_of_group = np.zeros(ng, int)
    load = np.zeros(k, int)
    for g in np.argsort(-np.bincount(groups, minlength=ng), kind="stable"):
        f = int(np.argmin(load))
        fold_of_group[g] = f
        load[f] += int((groups == g).sum())
    return fold_of_group[groups]


def city_folds(cities: tuple[str, ...] | list[str], k: int) -> dict[str, int]:
    """Fold of each negative city: round-robin over the ``k`` folds in the order given (not sorted: the order of
    :data:`NEGATIVE_CITIES` spreads the desert cities)."""
    return {c: i % k for i, c in enumerate(cities)}


def load_negatives(root: Path, cities: tuple[str, ...] | list[str]) -> list[dict]:
    """Both dates of each OSCD city as negative scenes (B02 B03 B04 reflectance, no aircraft).

    Parameters
    ----------
    root : Path
        The ``oscd`` folder (``<city>/{before,after}/B02.tif ...``).
    cities : sequence of str
        Cities to read.

    Returns
    -------
    list of dict
        ``{"name": "<city>/<date>", "city", "raw": (3, rows, columns) float32, "bad": integral image
        (rows + 1, columns + 1) of the pixels invalid in any band}``, sorted by city then date.
    """
    out = []
    for city in sorted(cities):
        for date in ("before", "after"):
            s = read_scene(root / city / date, bands=list(RGB_BANDS))
            raw = np.stack([np.asarray(s.bands[b], np.float32) for b in RGB_BANDS])
            bad = ~(np.asarray(s.valid, bool) & np.isfinite(raw).all(axis=0))
            if raw.shape[1] < NEG_WINDOW or raw.shape[2] < NEG_WINDOW:
                raise SystemExit(f"{root / city / date}: smaller than {NEG_WINDOW} px, not usable as a negative")
            out.append({"name": f"{city}/{date}", "city": city, "raw": raw,
                        "bad": cv2.integral(bad.astype(np.uint8), sdepth=cv2.CV_32S)})
    return out


def negative_window(scene: dict, rng: np.random.Generator, side: int = NEG_WINDOW, tries: int = 20) -> dict:
    """A chip-like window of a negative scene: ``side`` x ``side`` raw pixels and all-zero targets.

    Windows holding an invalid pixel are redrawn (up to ``tries`` draws); if every draw holds one, the
    last window's invalid pixels are filled with the window's median (:func:`fill_invalid`).
    """
    _, h, w = scene["raw"].shape
    ii = scene["bad"]

    def n_bad(r0: int, c0: int) -> int:
        """Invalid pixels in the window at (r0, c0), from the integral image."""
        return int(ii[r0 + side, c0 + side] - ii[r0, c0 + side] - ii[r0 + side, c0] + ii[r0, c0])

    for _ in range(tries):
        r0, c0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        if n_bad(r0, c0) == 0:
            break
    raw = scene["raw"][:, r0:r0 + side, c0:c0 + side]
    if n_bad(r0, c0) > 0:
        bad = np.diff(np.diff(ii[r0:r0 + side + 1, c0:c0 + side + 1], axis=0), axis=1) > 0
        raw = np.stack([fill_invalid(np.where(bad, np.float32(np.nan), b)) for b in raw])
    zero = np.zeros((side, side), np.float32)
    return {"name": scene["name"], "raw": np.ascontiguousarray(raw, np.float32),
            "targets": (zero, np.zeros((3, side, side), np.float32), zero, zero)}


def targets(truth, shape: tuple[int, int], ignore_below_m: float = 0.0) -> tuple[np.ndarray, ...]:
    """Heat map (H, W), regression targets (3, H, W) = log(w, h, length px), regression mask (H, W),
    and ignore mask (H, W): 1 around aircraft shorter than ``ignore_below_m`` (neither positive nor negative)."""
    h, w = shape
    heat = np.zeros((h, w), np.float32)
    reg = np.zeros((3, h, w), np.float32)
    rmask = np.zeros((h, w), np.float32)
    ignore = np.zeros((h, w), np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    for box, length in zip(truth.boxes, truth.length_m):
        x0, y0, x1, y1 = box
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        bw, bh = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
        if np.isfinite(length) and length < ignore_below_m:
            ignore[((xx - cx) ** 2 + (yy - cy) ** 2) <= 2.5 ** 2] = 1.0
            continue
        lp = length / 10.0 if np.isfinite(length) else max(bw, bh)
        sig = float(np.clip(lp / 6.0, 0.7, 1.4))
        g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sig * sig))
        r, c = int(np.clip(np.floor(cy), 0, h - 1)), int(np.clip(np.floor(cx), 0, w - 1))
        g[r, c] = 1.0
        heat = np.maximum(heat, g)
        near = ((xx - cx) ** 2 + (yy - cy) ** 2) <= 1.5 ** 2
        near[r, c] = True
        reg[0][near], reg[1][near], reg[2][near] = math.log(bw), math.log(bh), math.log(max(lp, 1.0))
        rmask[near] = 1.0
    ignore[heat >= 0.5] = 0.0
    return heat, reg, rmask, ignore


# ----------------------------------------------------------------------------- model
def conv(i: int, o: int, d: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(i, o, 3, padding=d, dilation=d, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))


class AircraftNet(nn.Module):
    """Tiny U-shaped network: full-res in/out, two 2x poolings, about 40 k parameters."""

    def __init__(self, c1: int = 16, c2: int = 32, c3: int = 48) -> None:
        super().__init__()
        self.e1 = nn.Sequential(conv(3, c1), conv(c1, c1))
        self.e2 = nn.Sequential(conv(c1, c2), conv(c2, c2))
        self.e3 = nn.Sequential(conv(c2, c3), conv(c3, c3, 2), conv(c3, c3, 4))
        self.l3 = nn.Conv2d(c3, c2, 1)
        self.d2 = conv(c2, c2)
        self.l2 = nn.Conv2d(c2, c1, 1)
        self.d1 = conv(c1, c1)
        self.head = nn.Conv2d(c1, 4, 1)
        nn.init.constant_(self.head.bias, 0.0)
        with torch.no_grad():
            self.head.bias[0] = -4.0
            self.head.bias[1:] = 1.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1 = self.e1(x)
        f2 = self.e2(F.max_pool2d(f1, 2))
        f3 = self.e3(F.max_pool2d(f2, 2))
        u2 = self.d2(f2 + F.interpolate(self.l3(f3), scale_factor=2.0, mode="nearest"))
        u1 = self.d1(f1 + F.interpolate(self.l2(u2), scale_factor=2.0, mode="nearest"))
        return self.head(u1)


def focal_loss(logit: torch.Tensor, heat: torch.Tensor, ignore: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logit).clamp(1e-4, 1 - 1e-4)
    pos = heat.ge(0.999).float()
    neg = (1 - pos) * (1 - ignore)
    pos_l = -torch.log(p) * (1 - p) ** 2 * pos
    neg_l = -torch.log(1 - p) * p ** 2 * (1 - heat) ** 4 * neg
    npos = pos.sum().clamp(min=1.0)
    return (pos_l.sum() + neg_l.sum()) / npos


# ----------------------------------------------------------------------------- augmentation
def sample(chip: dict, rng: np.random.Generator, crop: int) -> tuple[np.ndarray, ...]:
    raw = chip["raw"].copy()
    # radiometric jitter before normalisation: per-band gain, noise, PSF change
    raw *= rng.uniform(0.8, 1.25, size=(3, 1, 1)).astype(np.float32)
    s = float(rng.uniform(0.0, 0.7))
    if s > 0.15:
        raw = np.stack([cv2.GaussianBlur(b, (0, 0), s) for b in raw])
    sd = float(np.median(np.abs(np.diff(raw, axis=2))))
    raw += rng.normal(0, rng.uniform(0, 0.6) * sd + 1e-9, raw.shape).astype(np.float32)
    x = normalised_stack(list(raw), **NORM)
    # band mixing (colour jitter in normalised space)
    mix = np.eye(3, dtype=np.float32) + rng.normal(0, 0.08, (3, 3)).astype(np.float32)
    x = np.einsum("ij,jhw->ihw", mix, x)
    heat, reg, rmask, ign = chip["targets"]
    h, w = heat.shape
    r0, c0 = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    sl = (slice(r0, r0 + crop), slice(c0, c0 + crop))
    x, heat, reg, rmask, ign = x[:, sl[0], sl[1]], heat[sl], reg[:, sl[0], sl[1]], rmask[sl], ign[sl]
    k = int(rng.integers(0, 4))
    flip = bool(rng.integers(0, 2))
    x, heat, reg, rmask, ign = (np.rot90(a, k, axes=(-2, -1)) for a in (x, heat, reg, rmask, ign))
    if k % 2 == 1:  # width and height swap under a quarter turn
        reg = reg[[1, 0, 2]]
    if flip:
        x, heat, reg, rmask, ign = (a[..., ::-1] for a in (x, heat, reg, rmask, ign))
    return tuple(np.ascontiguousarray(a, np.float32) for a in (x, heat, reg, rmask, ign))


def train(chips: list[dict], iters: int, seed: int, batch: int = 12, crop: int = 80, log=None,
          width: float = 1.0, negatives: list[dict] | None = None, neg_fraction: float = 0.0) -> AircraftNet:
    """Train one network on ``chips``.

    Parameters
    ----------
    chips : list of dict
        Training chips (``raw`` and ``targets``).
    iters, seed, batch, crop, width
        The recipe (iterations, seed of numpy and torch, crops per iteration, crop side, channel multiplier).
    log : callable, optional
        Called with a progress line every 200 iterations.
    negatives : list of dict, optional
        Negative scenes (:func:`load_negatives`): no aircraft anywhere.
    neg_fraction : float
        Fraction of each batch's crops (rounded to a whole number of crops) taken from ``negatives``:
        a random scene, a random :data:`NEG_WINDOW` window of it, then the chips' augmentation with
        all-zero targets. 0 (or no negatives): the chips-only recipe, unchanged.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n_neg = int(round(neg_fraction * batch)) if negatives else 0
    if n_neg >= batch:
        raise ValueError(f"neg_fraction {neg_fraction} leaves no chip crop in a batch of {batch}")
    net = AircraftNet() if width == 1.0 else AircraftNet(*(int(round(c * width)) for c in (16, 32, 48)))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=iters, pct_start=0.1)
    net.train()
    t0 = time.time()
    for it in range(iters):
        idx = rng.integers(0, len(chips), batch - n_neg)
        crops = [sample(chips[i], rng, crop) for i in idx]
        for _ in range(n_neg):
            neg = negatives[int(rng.integers(0, len(negatives)))]
            crops.append(sample(negative_window(neg, rng, max(NEG_WINDOW, crop)), rng, crop))
        xs, hs, rs, ms, igs = zip(*crops)
        x, heat, reg, rmask, ign = (torch.from_numpy(np.stack(a)) for a in (xs, hs, rs, ms, igs))
        out = net(x)
        lf = focal_loss(out[:, 0], heat, ign)
        m = rmask[:, None]
        lr_ = (F.l1_loss(out[:, 1:], reg, reduction="none") * m).sum() / m.sum().clamp(min=1.0) / 3
        loss = lf + lr_
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if log and (it % 200 == 0 or it == iters - 1):
            log(f"  it {it:5d} focal {lf.item():.3f} reg {lr_.item():.3f} ({time.time() - t0:.0f} s)")
    net.eval()
    return net


def export(net: AircraftNet, path: Path) -> None:
    import warnings

    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.zeros(1, 3, 128, 128)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, x, str(path), dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {2: "h", 3: "w"}, "y": {2: "h", 3: "w"}}, opset_version=13)
    side = path.with_suffix(".json")
    if NORM:
        side.write_text(json.dumps({"norm": NORM}) + "\n", encoding="utf-8")
    elif side.exists():
        side.unlink()


# ----------------------------------------------------------------------------- evaluation
def predict(chips: list[dict], model: Path, thr: float) -> dict[str, object]:
    return {c["name"]: detect_aircraft(read_scene(c["dir"]), method="cnn", threshold=thr, model_path=model)
            for c in chips}


def score(chips: list[dict], dets: dict, thr: float, min_length_m: float = 40.0) -> dict:
    tp = fp = fn = 0
    hits = np.zeros(len(LENGTH_BINS_M), int)
    counts = np.zeros(len(LENGTH_BINS_M), int)
    for c in chips:
        d = dets[c["name"]]
        d = d.filter(min_score=thr)
        cs, h, n = score_chip(d, c["truth"], min_length_m=min_length_m)
        tp, fp, fn = tp + cs.tp, fp + cs.fp, fn + cs.fn
        hits += h
        counts += n
    return {"tp": tp, "fp": fp, "fn": fn, **prf(tp, fp, fn), "bin_hits": hits.tolist(), "bin_counts": counts.tolist()}


def oscd_false_alarms(root: Path, fold_models: list[Path], cities: tuple[str, ...] | list[str],
                      scores: tuple[float, ...] = OSCD_CHECK_SCORES, log=None) -> dict:
    """Out-of-fold false alarms on airport-free OSCD scenes.

    City ``c`` (fold :func:`city_folds` ``[c]``) is scanned on both dates, with every band (as users read a
    scene, so the vegetation and water masks apply), by the fold network that never saw it in training,
    through :func:`~imgdiff.detect.aircraft.detect_aircraft`. Every detection is a false alarm.

    Returns
    -------
    dict
        ``{"per_city": {city: {"fold", "mpx", "n": {score: count}, "per_mpx": {score: rate}}},
        "pooled": {"mpx", "n", "per_mpx"}}``; scores as strings (``"0.25"``), Mpx of valid B02-B04 pixels.
    """
    cf = city_folds(cities, len(fold_models))
    keys = [f"{t:g}" for t in scores]

    def rates(n: dict[str, int], mpx: float) -> str:
        return " ".join(f">={k}: {n[k]} ({n[k] / mpx:.1f}/Mpx)" for k in keys)

    per_city: dict[str, dict] = {}
    for city in sorted(cities):
        mpx, n = 0.0, dict.fromkeys(keys, 0)
        for date in ("before", "after"):
            scene = read_scene(root / city / date)
            valid = np.asarray(scene.valid, bool) & np.all([np.isfinite(scene.bands[b]) for b in RGB_BANDS], axis=0)
            mpx += float(valid.sum()) / 1e6
            d = detect_aircraft(scene, method="cnn", threshold=min(scores), model_path=fold_models[cf[city]])
            sc = np.asarray(d.scores, float)
            for k, t in zip(keys, scores):
                n[k] += int((sc >= t).sum())
        per_city[city] = {"fold": cf[city], "mpx": round(mpx, 4), "n": n,
                          "per_mpx": {k: round(v / mpx, 2) for k, v in n.items()}}
        if log:
            log(f"  OSCD {city:10s} fold {cf[city]} {mpx:.3f} Mpx: {rates(n, mpx)}")
    mpx = sum(v["mpx"] for v in per_city.values())
    n = {k: sum(v["n"][k] for v in per_city.values()) for k in keys}
    pooled = {"mpx": round(mpx, 4), "n": n, "per_mpx": {k: round(v / mpx, 2) for k, v in n.items()}}
    if log:
        log(f"  OSCD pooled {mpx:.3f} Mpx: {rates(n, mpx)}")
    return {"per_city": per_city, "pooled": pooled}


def calibration_table(chips: list[dict], dets: dict, edges: tuple[float, ...] = CALIBRATION_EDGES) -> dict:
    """Fraction of detections that are real aircraft per score bin (pooled out-of-fold detections).

    Each chip's detections from ``edges[0]`` up are matched one-to-one to its truth (the issue's
    rule, highest score first; every aircraft counts, whatever its length or truncation).
    Returns ``{"bins": [[lo, hi], ...], "n": [...], "n_real": [...], "precision": [...] (None
    where empty), "mean_score": [...]}``.
    """
    sc, real = [], []
    for c in chips:
        d = dets[c["name"]].filter(min_score=edges[0])
        lab = np.zeros(len(d.items), bool)
        for i, _ in match_detections(d.boxes, d.scores, c["truth"].boxes).pairs:
            lab[i] = True
        sc.append(np.asarray(d.scores, float))
        real.append(lab)
    return binned_precision(np.concatenate(sc), np.concatenate(real), edges)


def calibrate(args: argparse.Namespace, chips: list[dict], folds: np.ndarray) -> None:
    """Add the out-of-fold score calibration to the shipped card (fold networks of ``--work`` reused)."""
    import hashlib

    if args.work is None:
        raise SystemExit("--calibrate needs --work (the folder of fold<k>.onnx and final.onnx)")
    md5 = [hashlib.md5(p.read_bytes()).hexdigest() for p in (args.work / "final.onnx", args.out / "aircraft_cnn.onnx")]
    if md5[0] != md5[1]:
        raise SystemExit(f"{args.work / 'final.onnx'} is not the shipped network: its folds do not calibrate it")
    card = json.loads((args.out / "aircraft_limits.json").read_text(encoding="utf-8"))
    thr = float(card["score_threshold"])
    oof: dict[str, object] = {}
    for f in range(args.folds):
        path = args.work / f"fold{f}.onnx"
        if not path.is_file():
            raise SystemExit(f"{path}: missing fold network")
        te = [c for c, k in zip(chips, folds) if k == f]
        t0 = time.time()
        oof.update(predict(te, path, CALIBRATION_EDGES[0]))
        print(f"fold {f}: {len(te)} chips predicted ({time.time() - t0:.0f} s)", flush=True)
    tab = calibration_table(chips, oof)
    for (lo, hi), n, nr, p, ms in zip(tab["bins"], tab["n"], tab["n_real"], tab["precision"], tab["mean_score"]):
        print(f"  score {lo:.2f}-{hi:.2f}: n {n:5d} real {nr:5d} precision "
              f"{'-' if p is None else f'{p:.3f}'} mean score {'-' if ms is None else f'{ms:.3f}'}")
    r = score(chips, oof, thr)
    rec = [h / n if n else None for h, n in zip(r["bin_hits"], r["bin_counts"])]
    print(f"at the card's threshold {thr}: P {r['precision']:.3f} R {r['recall']:.3f} F1 {r['f1']:.3f}; "
          "recall by length:", [None if v is None else round(v, 3) for v in rec], "n", r["bin_counts"])
    card["score_calibration"] = {
        **tab,
        "source": f"pooled out-of-fold detections, {card['cross_validation']['scheme']}, aircraft_s2sim; "
                  "a detection is real when the issue's matching rule pairs it with any aircraft",
        "command": "nice python training/train_aircraft.py --calibrate --work DIR (DIR: fold networks of the "
                   "shipped recipe)",
    }
    card["detection_limits"]["recall"] = rec
    card["detection_limits"]["n"] = r["bin_counts"]
    (args.out / "aircraft_limits.json").write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    print(f"updated {args.out / 'aircraft_limits.json'} (score_calibration, detection_limits)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="aircraft_s2sim folder")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--iters", type=int, default=1500)
    ap.add_argument("--final-iters", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed-offset", type=int, default=0, help="added to SEED for fold and final training")
    ap.add_argument("--width", type=float, default=1.0, help="channel multiplier of AircraftNet (16, 32, 48)")
    ap.add_argument("--batch", type=int, default=12, help="crops per iteration")
    ap.add_argument("--crop", type=int, default=80, help="crop side (px, a multiple of 4)")
    ap.add_argument("--only-fold", type=int, default=None,
                    help="train and export fold<k>.onnx into --work only, and stop (evaluate later with --reuse)")
    ap.add_argument("--wide-floor", type=float, default=0.0,
                    help="floor the local std at this fraction of the std over a 64 px Gaussian window")
    ap.add_argument("--ignore-below", type=float, default=0.0,
                    help="aircraft shorter than this (m) are ignored in training (neither positive nor negative)")
    ap.add_argument("--negatives", type=float, default=0.0,
                    help="fraction of each batch's crops cut from the airport-free OSCD cities (NEGATIVE_CITIES; "
                         "a fold network only from the cities of the other folds); 0 = chips only")
    ap.add_argument("--oscd-check", action="store_true",
                    help="after cross-validation, count the fold networks' out-of-fold detections on the "
                         "NEGATIVE_CITIES (always done with --negatives)")
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    ap.add_argument("--no-final", action="store_true", help="cross-validate only")
    ap.add_argument("--work", type=Path, default=None, help="folder for the fold networks (default: a temp folder)")
    ap.add_argument("--reuse", action="store_true",
                    help="use fold<k>.onnx / final.onnx already in --work instead of training them again")
    ap.add_argument("--write-folds", type=Path, default=None,
                    help="only write the chip -> fold table (JSON) of the grouped folds, e.g. for "
                         "benchmarks/claims.py --aircraft --honest, and stop")
    ap.add_argument("--calibrate", action="store_true",
                    help="only add the out-of-fold score calibration to the shipped card (reuses --work's networks)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.wide_floor > 0:
        NORM.update({"wide_sigma_px": 64.0, "wide_floor": args.wide_floor})
    data = args.data or data_dir() / "aircraft_s2sim"
    chips = load_chips(data)
    for c in chips:
        c["targets"] = targets(c["truth"], c["raw"].shape[1:], args.ignore_below)
    groups = airport_groups(chips)
    ng = int(groups.max()) + 1
    print(f"{len(chips)} chips, {sum(len(c['truth'].boxes) for c in chips)} aircraft, {ng} airport groups "
          f"(sizes {sorted(np.bincount(groups).tolist(), reverse=True)})", flush=True)
    folds = grouped_folds(groups, args.folds)
    oscd = data_dir() / "oscd"
    cfolds = city_folds(NEGATIVE_CITIES, args.folds)
    negatives: list[dict] = []
    if args.negatives > 0:
        negatives = load_negatives(oscd, NEGATIVE_CITIES)
        print(f"negatives: {len(negatives)} OSCD scenes, {args.negatives:g} of each batch; city folds "
              f"{cfolds}", flush=True)

    def negs(f: int | None) -> dict:
        """Negative scenes for fold ``f``'s network (the cities of the other folds; all for the final one)."""
        if not negatives:
            return {}
        return {"negatives": [n for n in negatives if f is None or cfolds[n["city"]] != f],
                "neg_fraction": args.negatives}

    if args.write_folds:
        args.write_folds.write_text(json.dumps({c["name"]: int(k) for c, k in zip(chips, folds)}, indent=1) + "\n")
        print(f"wrote {args.write_folds}")
        return
    if args.calibrate:
        calibrate(args, chips, folds)
        return
    oof: dict[str, object] = {}
    tmp = args.work or Path(tempfile.mkdtemp(prefix="aircraft_cv_"))
    tmp.mkdir(parents=True, exist_ok=True)
    recipe = {"batch": args.batch, "crop": args.crop, "width": args.width, "log": lambda s: print(s, flush=True)}
    if args.only_fold is not None:
        f = args.only_fold
        tr = [c for c, k in zip(chips, folds) if k != f]
        print(f"fold {f}: train {len(tr)} chips (training only)", flush=True)
        export(train(tr, args.iters, SEED + args.seed_offset + f, **recipe, **negs(f)), tmp / f"fold{f}.onnx")
        print(f"wrote {tmp / f'fold{f}.onnx'}")
        return
    for f in range(args.folds):
        tr = [c for c, k in zip(chips, folds) if k != f]
        te = [c for c, k in zip(chips, folds) if k == f]
        print(f"fold {f}: train {len(tr)} chips, test {len(te)} chips", flush=True)
        path = tmp / f"fold{f}.onnx"
        if not (args.reuse and path.is_file()):
            net = train(tr, args.iters, SEED + args.seed_offset + f, **recipe, **negs(f))
            export(net, path)
        oof.update(predict(te, path, 0.05))
        r = score(te, oof, 0.35)
        print(f"  fold {f} @0.35: P {r['precision']:.3f} R {r['recall']:.3f} F1 {r['f1']:.3f}", flush=True)
    # threshold: the best pooled F1 (>= 40 m) among those meeting the recall target for >= 50 m
    # (recall >= 0.85); the best F1 overall if none does
    cands = []
    for thr in np.round(np.arange(0.10, 0.76, 0.025), 3):
        r = score(chips, oof, float(thr))
        r["recall50"] = (r["bin_hits"][3] + r["bin_hits"][4]) / max(r["bin_counts"][3] + r["bin_counts"][4], 1)
        print(f"  thr {thr:.3f}: TP {r['tp']} FP {r['fp']} FN {r['fn']} P {r['precision']:.3f} R {r['recall']:.3f} "
              f"F1 {r['f1']:.3f} R(>=50 m) {r['recall50']:.3f}")
        cands.append((float(thr), r))
    ok = [c for c in cands if c[1]["recall50"] >= RECALL50_TARGET]
    thr, r = max(ok or cands, key=lambda c: c[1]["f1"])
    rec = [h / n if n else None for h, n in zip(r["bin_hits"], r["bin_counts"])]
    per_fold = []
    for f in range(args.folds):
        te = [c for c, k in zip(chips, folds) if k == f]
        rf = score(te, oof, thr)
        per_fold.append({"fold": f, "n_chips": len(te), "precision": rf["precision"], "recall": rf["recall"],
                         "f1": rf["f1"]})
    print(f"chosen threshold {thr}: out-of-fold pooled P {r['precision']:.3f} R {r['recall']:.3f} F1 {r['f1']:.3f} "
          f"R(>=50 m) {r['recall50']:.3f}")
    print("recall by length:", [None if v is None else round(v, 3) for v in rec], "n", r["bin_counts"])
    fa = None
    if args.negatives > 0 or args.oscd_check:
        fa = oscd_false_alarms(oscd, [tmp / f"fold{f}.onnx" for f in range(args.folds)], NEGATIVE_CITIES,
                               log=lambda s: print(s, flush=True))
    card = {
        "model": "aircraft_cnn.onnx",
        "trained_on": "aircraft_s2sim (all chips)",
        "seed": SEED + args.seed_offset,
        "iters": args.final_iters or args.iters,
        "cv_iters": args.iters,
        "ignore_below_m": args.ignore_below,
        "norm": dict(NORM),
        **({"recipe": {"batch": args.batch, "crop": args.crop, "width": args.width}}
           if (args.batch, args.crop, args.width) != (12, 80, 1.0) else {}),
        **({"negatives": {"fraction": args.negatives, "cities": list(NEGATIVE_CITIES), "dates": ["before", "after"],
                          "source": "OSCD real Sentinel-2 L1C scenes without airports (B02 B03 B04), "
                                    f"{NEG_WINDOW} px windows, all-zero targets"}}
           if args.negatives > 0 else {}),
        "score_threshold": thr,
        "inference": "heat map and sizes averaged over the input and its half-turn rotation",
        "cross_validation": {
            "scheme": f"grouped {args.folds}-fold by airport ({ng} groups from image similarity)",
            "min_length_m": 40.0,
            "pooled": {k: r[k] for k in ("tp", "fp", "fn", "precision", "recall", "f1")},
            "recall_50m_and_longer": r["recall50"],
            "per_fold": per_fold,
            "threshold_note": "threshold chosen on the pooled out-of-fold detections: best F1 among thresholds "
                              f"with recall >= {RECALL50_TARGET} for aircraft >= 50 m",
            **({"oscd_false_alarms": {**fa, "scheme": "cities of NEGATIVE_CITIES round-robin over the folds "
                                                      "(in that order); each scanned by the fold network that did not "
                                                      "train on it"}} if fa else {}),
        },
        "detection_limits": {
            "bins_m": [[lo, None if math.isinf(hi) else hi] for lo, hi in LENGTH_BINS_M],
            "recall": rec,
            "n": r["bin_counts"],
            "source": "out-of-fold recall, grouped cross-validation by airport on aircraft_s2sim, "
                      "non-truncated aircraft, default threshold",
        },
    }
    if args.no_final:
        print(json.dumps(card, indent=1))
        return
    print("final model on all chips", flush=True)
    final = tmp / "final.onnx"
    if not (args.reuse and final.is_file()):
        net = train(chips, args.final_iters or args.iters, SEED + args.seed_offset, **recipe, **negs(None))
        export(net, final)
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(final, args.out / "aircraft_cnn.onnx")
    side = args.out / "aircraft_cnn.json"
    if final.with_suffix(".json").is_file():
        shutil.copyfile(final.with_suffix(".json"), side)
    elif side.exists():
        side.unlink()
    (args.out / "aircraft_limits.json").write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out / 'aircraft_cnn.onnx'} and aircraft_limits.json")


if __name__ == "__main__":
    main()
