"""Does the change map show vessels that left or arrived? Run by hand (not a test); prints figures.

    python benchmarks/change_vessels.py [--model PATH ...]

The change models are trained on OSCD's urban change; imgdiff's claims are about ships. For every
sen2ships port, the after date is the before date with every labelled vessel removed (OpenCV
inpainting of the box grown by 2 px), moved by a sub-pixel shift, scaled by a gain and given noise,
as in ``benchmarks/claims.py``: a pair where every vessel departed. Swapping the dates gives a pair
where every vessel arrived. ``imgdiff.compare`` (method ``mlp``) runs on both; a vessel counts as
flagged when its box (grown by 1 px) holds a changed pixel. Also printed: the changed fraction of
the valid pixels farther than 3 px from any vessel box (nothing else changed in these pairs).

With ``--model`` (``.npz`` files written by ``training/train_change.py``), each model is measured in
turn instead of the shipped one.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage as ndi

import imgdiff
from imgdiff.change import MLPModel
from imgdiff.change import learned as change  # the module whose pick_model reads _shipped_models
from imgdiff.data import data_dir

sys.path.insert(0, str(Path(__file__).resolve().parent))
from claims import GAIN, SHIFT, load_case  # noqa: E402  (the same pair construction as the claims benchmark)


def without_vessels(scene: imgdiff.Scene, boxes: np.ndarray, seed: int = 7) -> imgdiff.Scene:
    """The scene with every box inpainted, shifted by SHIFT px, scaled by GAIN, plus noise (sigma 0.003)."""
    mask = np.zeros(scene.shape, np.uint8)
    for x0, y0, x1, y1 in boxes:
        mask[max(0, int(y0) - 2):int(np.ceil(y1)) + 2, max(0, int(x0) - 2):int(np.ceil(x1)) + 2] = 1
    rng = np.random.default_rng(seed)
    bands = {}
    for name, a in scene.bands.items():
        filled = np.nan_to_num(a, nan=float(np.nanmedian(a)))
        hi = float(np.percentile(filled, 99.9)) or 1.0
        u8 = (np.clip(filled / hi * 65535, 0, 65535).astype(np.uint16) >> 8).astype(np.uint8)
        inp = cv2.inpaint(u8, mask, 5, cv2.INPAINT_TELEA).astype(np.float32) / 255 * hi
        moved = ndi.shift(np.where(mask > 0, inp, filled), (SHIFT[1], SHIFT[0]), order=3, mode="nearest") * GAIN
        bands[name] = np.where(np.isfinite(a), moved + rng.normal(0, 0.003, moved.shape), np.nan).astype(np.float32)
    return replace(scene, bands=bands)


def flagged(mask: np.ndarray, boxes: np.ndarray) -> int:
    """Boxes (grown by 1 px) holding at least one changed pixel."""
    return sum(bool(mask[max(0, int(y0) - 1):int(np.ceil(y1)) + 1, max(0, int(x0) - 1):int(np.ceil(x1)) + 1].any())
               for x0, y0, x1, y1 in boxes)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, action="append", help="change model .npz (repeatable); default the shipped")
    args = p.parse_args()
    models: dict[str, MLPModel | None] = {str(m): MLPModel.load(m) for m in args.model} if args.model else {
        "shipped": None}
    ports = [d for d in sorted((data_dir() / "sen2ships").iterdir()) if (d / "vessels.json").is_file()]
    cases = []
    for port in ports:
        scene, boxes, _, _ = load_case(port)
        boxed = np.zeros(scene.shape, bool)
        for x0, y0, x1, y1 in boxes:
            boxed[max(0, int(y0)):int(np.ceil(y1)), max(0, int(x0)):int(np.ceil(x1))] = True
        near = ndi.binary_dilation(boxed, iterations=5)  # the inpainted margin (2 px) and 3 px more
        cases.append((port.name, scene, without_vessels(scene, boxes), boxes, near))
    shipped = change._shipped_models
    for name, model in models.items():
        if model is not None:
            change._shipped_models = lambda model=model: (model,)  # measure this model in place of the shipped one
        try:
            dep = arr = n = 0
            other = valid = 0
            per = []
            for port, scene, gone, boxes, near in cases:
                r_dep = imgdiff.compare(scene, gone)
                r_arr = imgdiff.compare(gone, scene)
                d, a = flagged(r_dep.change.mask, boxes), flagged(r_arr.change.mask, boxes)
                dep, arr, n = dep + d, arr + a, n + len(boxes)
                other += int((r_dep.change.mask & ~near).sum())
                valid += int((r_dep.change.valid & ~near).sum())
                per.append(f"{port} {d}/{a}/{len(boxes)}")
        finally:
            change._shipped_models = shipped
        print(f"{name}: departures flagged {dep}/{n} = {dep / n:.2f}, arrivals flagged {arr}/{n} = {arr / n:.2f}, "
              f"changed away from vessels {other / max(valid, 1):.4f} (per port departed/arrived/vessels: "
              f"{', '.join(per)})")


if __name__ == "__main__":
    main()
