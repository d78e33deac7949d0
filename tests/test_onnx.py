"""The ONNX Runtime wrapper the detectors run their networks through (imgdiff.detect.onnx)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from imgdiff.detect.onnx import load_network, run_network_file
from imgdiff.detect.vessels import MODEL_PATH
from imgdiff.errors import InputError


def test_a_broken_or_missing_network_file_is_an_input_error_naming_the_file(tmp_path: Path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a network")
    with pytest.raises(InputError, match="broken.onnx"):
        load_network(bad)
    with pytest.raises(InputError, match="missing.onnx"):
        run_network_file(tmp_path / "missing.onnx", np.zeros((1, 8, 32, 32), np.float32))


def test_onnxruntime_gives_the_same_vessel_maps_as_opencv_dnn_and_from_two_threads_at_once():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 8, 96, 128)).astype(np.float32)
    net = cv2.dnn.readNetFromONNX(str(MODEL_PATH))
    net.setInput(x)
    ref = net.forward()
    out = run_network_file(MODEL_PATH, x)
    assert out.shape == ref.shape == (1, 5, 48, 64)
    assert np.abs(out - ref).max() < 1e-4
    with ThreadPoolExecutor(2) as pool:  # one session shared by threads
        outs = list(pool.map(lambda _: run_network_file(MODEL_PATH, x), range(4)))
    assert all(np.array_equal(o, out) for o in outs)
