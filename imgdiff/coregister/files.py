"""Co-registration of two scenes on disk (:func:`coregister_paths`).

Large files on one grid are never read whole: only the strips of rows around the chips are read,
and only the chip windows kept (a mosaic of chips, measured as one image). Other pairs are read,
aligned onto the reference grid and passed to :func:`~imgdiff.coregister.registration.coregister`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import CoregistrationError, EmptySceneError, check_type
from .chips import _SHIFT_MARGIN
from .matching import MATCH_BANDS, SIGMA_HI, matching_image
from .registration import _summarise, coregister
from .results import Registration
from .tiepoints import MAX_SHIFT_PX, ChipLayout, chip_layout, measure_image


def coregister_paths(reference: str | Path, target: str | Path, *, bands: Sequence[str] | None = None,
                     local: bool = False, max_shift: float = MAX_SHIFT_PX, spacing: int | None = None, degree: int = 2,
                     full_read_pixels: int = 4096 * 4096) -> Registration:
    """Co-register two scenes on disk (anything :func:`imgdiff.read_scene` reads).

    Scenes on one grid larger than ``full_read_pixels`` are never read whole: only
    the rows around the tie-point chips are read (one band, B08 when present),
    which keeps full 10980 x 10980 px tiles fast. Other pairs are read, aligned
    onto the reference grid and passed to :func:`coregister`.

    Returns
    -------
    Registration
        As :func:`coregister`; tie-point coordinates are reference pixels.
    """
    for label, p in (("reference", reference), ("target", target)):
        check_type(p, (str, os.PathLike), f"coregister_paths: {label}", "for Scenes use imgdiff.coregister(reference, target)")
    import rasterio

    from ..grid import align
    from ..io.read import SCENE_FRAME, find_band_sources, read_scene, select_bands

    # a band folder lists all its bands whatever ``bands`` says: keep the wanted ones (BandError if absent)
    rs = select_bands(find_band_sources(reference, bands), bands, reference)
    ts = select_bands(find_band_sources(target, bands), bands, target)
    names = [s.name for s in rs if s.name in {t.name for t in ts}]
    if bands is None:
        pref = [b for b in MATCH_BANDS if b in names]
        names = pref or names
    if not names:
        raise CoregistrationError(f"{reference} and {target} share no band to match on")

    def grid(srcs: list) -> tuple:
        s = next(x for x in srcs if x.name == names[0])
        with rasterio.open(s.path) as ds:
            return ds.crs, ds.transform, ds.shape

    g_ref, g_tgt = grid(rs), grid(ts)
    h, w = g_ref[2]
    if g_ref != g_tgt or h * w <= full_read_pixels:
        ref_scene = read_scene(reference, bands=names)
        tgt_scene = read_scene(target, bands=names)
        pair = align(ref_scene, tgt_scene, bands=names, roles=("reference", "target"))
        return coregister(pair.before, pair.after, bands=names if bands is not None else None, mask=pair.overlap,
                          local=local, max_shift=max_shift, spacing=spacing, degree=degree)
    one = names[:1] if bands is None else names
    crs, tr, _ = g_ref
    layout = chip_layout((h, w), local=local, spacing=spacing, per_axis=None if local else 5,
                         chip=128 if not local else int(np.clip(round((spacing or math.sqrt(h * w / 400.0)) * 1.5),
                                                                 48, 128)))
    pad = _SHIFT_MARGIN + int(math.ceil(max_shift)) + int(math.ceil(3 * SIGMA_HI)) + 4
    size = layout.size
    tile = size + 2 * pad
    rows = np.unique(layout.origins[:, 1])
    cols = np.unique(layout.origins[:, 0])
    mos = [np.full((len(rows) * tile, len(cols) * tile), np.nan, np.float32) for _ in range(2)]
    px = None
    # Read only the strips of rows around each chip row, and keep only the chip windows (a mosaic).
    for i, r0 in enumerate(rows):
        top, bottom = max(0, int(r0) - pad), min(h, int(r0) + size + pad)
        x0, y0 = tr * (0, top)
        x1, y1 = tr * (w, bottom)
        bbox = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        for k, path in enumerate((reference, target)):
            try:
                sc = read_scene(path, bands=one, bbox=bbox, bbox_crs=crs or SCENE_FRAME)
            except EmptySceneError:
                continue  # a strip of no-data: its chips stay unusable
            row_off = int(sc.meta.get("window", {}).get("row_off", top))
            img = np.where(sc.valid, matching_image(sc.stack(one)), np.nan)
            if px is None:
                sx, sy = sc.pixel_size_m
                px = (sx * float(np.sign(tr.a) or 1), sy * float(np.sign(tr.e) or -1))
            for j, c0 in enumerate(cols):
                _paste(mos[k], img, i * tile, j * tile, int(r0) - pad - row_off, int(c0) - pad, tile)
    cc, rr = np.meshgrid(np.arange(len(cols)) * tile + pad, np.arange(len(rows)) * tile + pad)
    mos_layout = ChipLayout(np.stack([cc.ravel(), rr.ravel()], axis=1), size)
    meas = measure_image(mos[0], np.isfinite(mos[0]), mos[1], np.isfinite(mos[1]), mos_layout,
                         max_shift=max_shift, local=local)
    meas = replace(meas, centers=layout.centers)
    return _summarise(meas, local=local, degree=degree, reference=None, pixel_size=px, bands=list(one))


def _paste(dst: np.ndarray, src: np.ndarray, dr: int, dc: int, sr: int, sc: int, n: int) -> None:
    """Copy the n x n window of ``src`` starting at (sr, sc) into ``dst`` at (dr, dc); outside stays NaN."""
    r0, c0 = max(sr, 0), max(sc, 0)
    r1, c1 = min(sr + n, src.shape[0]), min(sc + n, src.shape[1])
    if r1 > r0 and c1 > c0:
        dst[dr + r0 - sr:dr + r1 - sr, dc + c0 - sc:dc + c1 - sc] = src[r0:r1, c0:c1]
