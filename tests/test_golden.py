"""Golden regression tests of the sample reports (pytest-regressions).

Re-bless after an intended change (a better detector, a new report field):

    pytest tests/test_golden.py --force-regen     # rewrites tests/test_golden/*
    git diff tests/test_golden/                   # review every change, then commit

The goldens hold the report JSON (volatile fields removed, floats rounded), the change
magnitude (4 x 4 block means) and detection boxes with tolerances, and the quicklooks.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgdiff.claims import load_claims, verify
from imgdiff.report.html import quicklooks
from imgdiff.report.verify import merged_detections, verify_report

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
VOLATILE = ("imgdiff_version", "claims_file", "inputs")


def stable(obj, ndigits=3):
    """A copy with floats rounded (NaN/inf as strings) so the YAML golden is platform-stable."""
    if isinstance(obj, float):
        return str(obj) if not math.isfinite(obj) else round(obj, ndigits) + 0.0
    if isinstance(obj, dict):
        return {k: stable(v, ndigits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [stable(v, ndigits) for v in obj]
    return obj


@pytest.fixture(scope="module", params=["tartus", "hmeimim"])
def sample(request):
    if not (SAMPLES / "scenes").is_dir():
        pytest.skip("samples not present")
    v = verify(load_claims(SAMPLES / "claims" / f"{request.param}.yaml"))
    return request.param, v, verify_report(v)


def test_report_json_matches_golden(sample, data_regression):
    name, _, report = sample
    rep = {k: v for k, v in report.items() if k not in VOLATILE}
    reg = rep["coregistration"]
    rep["coregistration"] = {k: round(reg[k], 2) for k in ("dx", "dy")} | {"failed": reg["failed"]}
    data_regression.check(stable(rep), basename=f"{name}_report")


def test_change_map_and_detections_match_golden(sample, ndarrays_regression):
    name, v, _ = sample
    mag = np.nan_to_num(v.result.change.magnitude, nan=-1.0)
    h, w = (mag.shape[0] // 4) * 4, (mag.shape[1] // 4) * 4
    blocks = mag[:h, :w].reshape(h // 4, 4, w // 4, 4).mean(axis=(1, 3))
    db, _ = merged_detections(v, "before")
    da, _ = merged_detections(v, "after")
    data = {"change_magnitude_4x4": blocks.astype(np.float64), "changed_fraction": np.array([v.result.change.mask.mean()]),
            "boxes_before": db.boxes, "boxes_after": da.boxes}
    ndarrays_regression.check(data, basename=f"{name}_arrays", tolerances={
        "change_magnitude_4x4": {"atol": 2e-3}, "changed_fraction": {"atol": 0.01},
        "boxes_before": {"atol": 0.5}, "boxes_after": {"atol": 0.5}})


def test_quicklooks_match_golden(sample, image_regression):
    name, v, _ = sample
    q = quicklooks(v, full_width_px=400)["full"]
    ims = [q["before"], q["after"], q["change"]]
    strip = Image.new("RGB", (sum(i.width for i in ims), max(i.height for i in ims)))
    x = 0
    for im in ims:
        strip.paste(im, (x, 0))
        x += im.width
    strip = strip.resize((strip.width // 2, strip.height // 2), Image.BOX)  # keeps the golden small
    buf = io.BytesIO()
    strip.save(buf, format="PNG")
    image_regression.check(buf.getvalue(), diff_threshold=1.0, basename=f"{name}_quicklook")
