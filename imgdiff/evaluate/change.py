"""Scoring change masks against labelled change maps (OSCD layout).

A labelled tree looks like ``../shared/data/oscd``::

    <root>/<city>/before/B*.tif   <root>/<city>/after/B*.tif   <root>/<city>/change.tif (uint8 1 = change)

:func:`evaluate_change` runs :func:`imgdiff.compare` on every labelled city, writes
``change.tif`` as ``imgdiff compare`` does, reads its band 2 back and scores it pixel
by pixel against the label; pixels not assessed (band 3: cloud, no-data) count as
"no change" predicted. Pooled scores add the pixel counts of all cities.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject

from ..errors import InputError
from ..grid import Grid

#: The labelled OSCD cities of the shared dev data.
CITIES_LABELLED: tuple[str, ...] = ("beirut", "abudhabi", "beihai", "bercy", "cupertino", "nantes", "paris")


def scores_from_counts(tp: int, fp: int, fn: int) -> dict[str, float | int]:
    """Precision, recall, F1 and IoU of the change class from pixel counts (0 when undefined)."""
    tp, fp, fn = int(tp), int(fp), int(fn)
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    iou = tp / (tp + fp + fn) if tp + fp + fn else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r, "f1": f1, "iou": iou}


def scores(pred: np.ndarray, truth: np.ndarray, ignore: np.ndarray | None = None) -> dict[str, float | int]:
    """Pixel scores of a predicted change mask against the truth (both (rows, cols) bool).

    ``ignore`` marks pixels left out of the count (e.g. outside the labelled area).
    """
    pred = np.asarray(pred, bool)
    truth = np.asarray(truth, bool)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} differ in shape")
    keep = ~ignore if ignore is not None else np.ones(pred.shape, bool)
    tp = int(np.sum(pred & truth & keep))
    fp = int(np.sum(pred & ~truth & keep))
    fn = int(np.sum(~pred & truth & keep))
    return scores_from_counts(tp, fp, fn)


def read_label(path: str | Path, grid: Grid) -> np.ndarray:
    """A change label (1 = change) resampled (nearest) onto ``grid``, as (rows, cols) bool."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: change label not found")
    with rasterio.open(path) as ds:
        lab = ds.read(1)
        same = (ds.crs == grid.crs or grid.crs is None) and ds.transform.almost_equals(grid.transform) \
            and ds.shape == grid.shape
        if same:
            return lab > 0
        out = np.zeros(grid.shape, np.uint8)
        reproject(lab, out, src_transform=ds.transform, src_crs=ds.crs, dst_transform=grid.transform,
                  dst_crs=grid.crs or ds.crs, resampling=Resampling.nearest)
    return out > 0


def read_change_mask(path: str | Path) -> tuple[np.ndarray, Grid]:
    """Band 2 (change mask) of a ``change.tif`` written by ``imgdiff compare``, and its grid."""
    with rasterio.open(path) as ds:
        if ds.count < 2:
            raise InputError(f"{path}: has {ds.count} band(s); a change.tif from imgdiff compare has 3")
        m = ds.read(2)
        grid = Grid(ds.crs, ds.transform, ds.width, ds.height)
    return np.nan_to_num(m.astype(np.float32)) > 0.5, grid


@dataclass(frozen=True)
class ChangeEvaluation:
    """Scores of a change method over a labelled tree.

    Attributes
    ----------
    per_city : dict
        City -> scores (tp, fp, fn, precision, recall, f1, iou) plus ``seconds``.
    pooled : dict
        Scores from the pixel counts of all cities together.
    method : str
    """

    per_city: dict
    pooled: dict
    method: str

    def to_dict(self) -> dict:
        return {"method": self.method, "per_city": self.per_city, "pooled": self.pooled,
                "mean_city_f1": float(np.mean([s["f1"] for s in self.per_city.values()])) if self.per_city else 0.0}


def labelled_cities(root: str | Path) -> list[str]:
    """Sub-folders of ``root`` holding ``before/``, ``after/`` and ``change.tif``, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder; pass a tree laid out like ../shared/data/oscd")
    out = sorted(p.name for p in root.iterdir()
                 if (p / "change.tif").is_file() and (p / "before").is_dir() and (p / "after").is_dir())
    if not out:
        raise InputError(f"{root}: no labelled city (<city>/before, <city>/after, <city>/change.tif) found")
    return out


def evaluate_change(root: str | Path, *, method: str | None = None, cities: Sequence[str] | None = None,
                    on_city: Callable[[str], None] | None = None) -> ChangeEvaluation:
    """Run ``compare`` on each labelled city of ``root`` and score band 2 of its ``change.tif``.

    Parameters
    ----------
    root : path
        Tree laid out like ``../shared/data/oscd``.
    method : str, optional
        Change method (default that of :func:`imgdiff.compare`).
    cities : sequence of str, optional
        Subset of cities; default every labelled one.
    on_city : callable, optional
        Called with each city name before it is processed (progress).
    """
    import time

    from ..compare import compare
    from ..io.read import read_scene
    from ..report.compare import write_change_tif

    root = Path(root)
    names = list(dict.fromkeys(cities)) if cities else labelled_cities(root)  # a city named twice counts once
    per: dict = {}
    tot = np.zeros(3, np.int64)
    used = method or ""
    for c in names:
        if on_city:
            on_city(c)
        t0 = time.perf_counter()
        b = read_scene(root / c / "before")
        a = read_scene(root / c / "after")
        res = compare(b, a, method=method)
        used = res.change.method
        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp) / "change.tif"
            write_change_tif(f, res)
            pred, grid = read_change_mask(f)
        truth = read_label(root / c / "change.tif", grid)
        s = scores(pred, truth)
        s["seconds"] = time.perf_counter() - t0
        per[c] = s
        tot += [s["tp"], s["fp"], s["fn"]]
    return ChangeEvaluation(per_city=per, pooled=scores_from_counts(*tot), method=used)
