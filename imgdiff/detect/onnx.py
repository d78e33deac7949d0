"""Running the shipped ONNX networks on the CPU with ONNX Runtime.

The detectors' networks (``imgdiff/detect/models/*.onnx``) are small fully convolutional
models. ONNX Runtime runs them about 1.8 times faster than OpenCV's ``cv2.dnn`` on one core
(vessel network, 512 x 512 px input: 19.5 ms against 35.2 ms; outputs equal to 4e-6), and a
session may be called from several threads at once.

Threads: a session uses as many threads as OpenCV is allowed (:func:`cv2.getNumThreads`).
imgdiff's tile threads and dask workers set OpenCV to one thread each
(:func:`imgdiff.tiles.one_thread_per_worker`), so every network pass then stays on its
worker's core; elsewhere a pass may use every core.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError


@lru_cache(maxsize=8)
def _session(path: str, mtime: float, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads sleep
    opts.enable_mem_pattern = False  # inputs change size from call to call
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for unreadable models
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise InputError(f"{path}: cannot load the network ({msg}); reinstall imgdiff") from None


def load_network(path: str | Path):
    """The ONNX Runtime session of a network file (cached per file version and thread count).

    Raises
    ------
    InputError
        If the file is missing or is not a network ONNX Runtime can run.
    """
    p = Path(path)
    try:
        mtime = p.stat().st_mtime
    except OSError:
        raise InputError(f"{p}: network file not found; reinstall imgdiff") from None
    return _session(str(p), mtime, max(1, cv2.getNumThreads()))


def run_network_file(path: str | Path, x: np.ndarray) -> np.ndarray:
    """Output of a single-input, single-output network for one batch.

    Parameters
    ----------
    path : str or Path
        ONNX file.
    x : ndarray, shape (batch, channels, rows, cols)
        Input; converted to contiguous float32.

    Returns
    -------
    ndarray, float32
        The network's first output.
    """
    return run_session(load_network(path), x)


def run_session(session, x: np.ndarray) -> np.ndarray:
    """First output of a single-input network session (:func:`load_network`) for one batch
    ``x`` of shape (batch, channels, rows, cols), converted to contiguous float32."""
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.ascontiguousarray(x, np.float32)})[0]


__all__ = ["load_network", "run_network_file", "run_session"]
