"""The learned change classifier: :class:`MLPModel`, a small multilayer perceptron over the features.

Its ``.npz`` format (:meth:`MLPModel.save`, :meth:`MLPModel.load`), its prediction in numpy or
through the model's ONNX export with ONNX Runtime (when the export records the same weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class MLPModel:
    """A small multilayer perceptron over :func:`change_features`.

    :meth:`predict` runs the model's ONNX export with ONNX Runtime when :meth:`load` found one
    beside the ``.npz`` holding the same weights (the shipped models have one, written by
    ``training/train_change.py``: 83 against 145 ns per pixel on one core), else in numpy;
    the two give the same probabilities to about 1e-6.

    Attributes
    ----------
    bands : tuple of str
        Bands the model needs, in feature order.
    feature_names : tuple of str
    mean, std : ndarray, shape (features,)
        Input standardisation.
    weights, biases : tuple of ndarray
        Layer ``k`` maps ``h @ weights[k] + biases[k]``; ReLU between layers, sigmoid at the end.
    threshold : float
        Probability threshold chosen by leave-one-city-out validation.
    smooth_sigma : float
        Gaussian smoothing (pixels) of the probability map before thresholding.
    name : str
    feature_set : str
        Which :func:`change_features` set the model reads.
    clip_z : float
        Standardised inputs are clipped to [-clip_z, clip_z] (in training too).
    onnx_path : str, optional
        The ONNX export of this model (:meth:`layer_matrices` as a graph; input (features,
        pixels), output (1, pixels)); used only while it records :meth:`weights_digest`.
    """

    bands: tuple[str, ...]
    feature_names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    threshold: float
    smooth_sigma: float
    name: str = "mlp"
    feature_set: str = "v1"
    clip_z: float = 6.0
    onnx_path: str | None = field(default=None, compare=False)

    def weights_digest(self) -> str:
        """SHA-256 of everything :meth:`predict` computes with (standardisation, clip, layers), hex."""
        import hashlib

        h = hashlib.sha256()
        for a in (self.mean, self.std, np.float32(self.clip_z), *self.weights, *self.biases):
            h.update(np.ascontiguousarray(a, np.float32).tobytes())
        return h.hexdigest()

    def layer_matrices(self) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """The model as :meth:`predict` evaluates it, on pixels as columns.

        Returns
        -------
        lo, hi : ndarray of float32, shape (features, 1)
            Raw features are clipped to ``[lo, hi]`` (``mean -+ clip_z std``).
        mats : list of ndarray of float32
            Layer ``k`` is ``mats[k] @ [h; 1]``, shape (units, inputs + 1): the bias is the last
            column and the first layer has the standardisation folded in. ReLU between layers,
            sigmoid at the end.
        """
        mean, std = self.mean.astype(np.float64), self.std.astype(np.float64)
        lo = (mean - self.clip_z * std).astype(np.float32)[:, None]
        hi = (mean + self.clip_z * std).astype(np.float32)[:, None]
        w0 = self.weights[0].astype(np.float64)
        mats = [np.hstack([(w0 / std[:, None]).T, (self.biases[0] - (mean / std) @ w0)[:, None]]).astype(np.float32)]
        mats += [np.hstack([W.T, bias[:, None]]).astype(np.float32) for W, bias in zip(self.weights[1:], self.biases[1:])]
        return lo, hi, mats

    def predict(self, features: np.ndarray | Sequence[np.ndarray], *, chunk: int = 4096) -> np.ndarray:
        """Change probability of each pixel: features (features, rows, cols) -> (rows, cols).

        ``features`` is a stacked array or a sequence of (rows, cols) planes (:func:`feature_planes`).
        Pixels go through the layers ``chunk`` at a time in preallocated float32 buffers (4096
        pixels: inputs and activations, about 2 MB, stay in cache; the ONNX path takes 4096). Standardised inputs are clipped
        to +-``clip_z`` so that changes stronger than any seen in training saturate instead of
        extrapolating; the clip is done on the raw features (to ``mean +- clip_z std``), the
        standardisation is folded into the first layer and each bias is a weight on a row of ones.
        """
        planes = list(features)
        if len(planes) != self.mean.size:
            raise ValueError(f"model {self.name} reads {self.mean.size} features, got {len(planes)}")
        shape = planes[0].shape
        session = _export_session(self.onnx_path, self.weights_digest()) if self.onnx_path else None
        if session is not None:
            return _predict_session(session, planes).reshape(shape)
        flat = [np.ascontiguousarray(p, dtype=np.float32).reshape(-1) for p in planes]
        n, f = flat[0].size, len(flat)
        lo, hi, mats = self.layer_matrices()
        chunk = max(1, min(chunk, n))
        x = np.empty((f + 1, chunk), np.float32)
        x[f] = 1
        bufs = []
        for k, W in enumerate(mats):
            hidden = k < len(mats) - 1
            buf = np.empty((W.shape[0] + hidden, chunk), np.float32)
            if hidden:
                buf[-1] = 1  # the ones row of the next layer's bias (ReLU keeps it)
            bufs.append(buf)
        out = np.empty(n, np.float32)
        for s in range(0, n, chunk):
            e = min(s + chunk, n)
            h = x[:, :e - s]
            for k, p in enumerate(flat):
                h[k] = p[s:e]
            np.maximum(h[:f], lo, out=h[:f])
            np.minimum(h[:f], hi, out=h[:f])
            for k, (W, buf) in enumerate(zip(mats, bufs)):
                y = buf[:W.shape[0], :e - s]
                np.matmul(W, h, out=y)
                if k < len(mats) - 1:
                    np.maximum(y, 0, out=y)
                h = buf[:, :e - s]
            z = h[0]
            np.clip(z, -50, 50, out=z)
            np.negative(z, out=z)
            np.exp(z, out=z)
            z += 1
            np.reciprocal(z, out=out[s:e])
        return out.reshape(shape)

    def save(self, path: str | Path) -> None:
        """Write the model as an ``.npz`` (no pickles)."""
        arrays = {f"W{k}": w for k, w in enumerate(self.weights)}
        arrays.update({f"b{k}": b for k, b in enumerate(self.biases)})
        np.savez_compressed(
            path, bands=np.array(self.bands), feature_names=np.array(self.feature_names),
            mean=self.mean.astype(np.float32), std=self.std.astype(np.float32),
            threshold=np.float64(self.threshold), smooth_sigma=np.float64(self.smooth_sigma),
            name=np.array(self.name), feature_set=np.array(self.feature_set), clip_z=np.float64(self.clip_z),
            n_layers=np.int64(len(self.weights)), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> MLPModel:
        """Read a model written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            n = int(z["n_layers"])
            return cls(
                bands=tuple(str(s) for s in z["bands"]), feature_names=tuple(str(s) for s in z["feature_names"]),
                mean=z["mean"].astype(np.float32), std=z["std"].astype(np.float32),
                weights=tuple(z[f"W{k}"].astype(np.float32) for k in range(n)),
                biases=tuple(z[f"b{k}"].astype(np.float32) for k in range(n)),
                threshold=float(z["threshold"]), smooth_sigma=float(z["smooth_sigma"]), name=str(z["name"]),
                feature_set=str(z["feature_set"]) if "feature_set" in z.files else "v1",
                clip_z=float(z["clip_z"]) if "clip_z" in z.files else 6.0,
                onnx_path=str(export) if (export := Path(path).with_suffix(".onnx")).is_file() else None)


#: Metadata key of an ONNX export that records the :meth:`MLPModel.weights_digest` it was made from.
ONNX_DIGEST_KEY = "imgdiff_weights_sha256"
#: Pixels per ONNX Runtime call (inputs and activations of one call stay in cache).
ONNX_CHUNK = 4096


def _export_session(path: str, digest: str):
    """The ONNX Runtime session of a model's export, or None when the file holds other weights."""
    from ..detect.onnx import load_network

    session = load_network(path)
    return session if session.get_modelmeta().custom_metadata_map.get(ONNX_DIGEST_KEY) == digest else None


def _predict_session(session, planes: Sequence[np.ndarray], chunk: int = ONNX_CHUNK) -> np.ndarray:
    """Probabilities from an :class:`MLPModel` export, one per pixel of the feature ``planes``
    (all of one shape; views of larger arrays are read in place, not copied whole). Rows of
    pixels, about ``chunk`` pixels at a time, go in as columns of a (features, pixels) buffer."""
    planes = [p.reshape(p.shape[0], -1) if p.ndim > 1 else p.reshape(1, -1) for p in planes]
    (h, w), f = planes[0].shape, len(planes)
    name = session.get_inputs()[0].name
    out = np.empty((h, w), np.float32)
    step = max(1, chunk // max(w, 1))
    buf = np.empty((f, min(step, h) * w), np.float32)
    for r0 in range(0, h, step):
        r1 = min(r0 + step, h)
        x = buf if (r1 - r0) * w == buf.shape[1] else np.empty((f, (r1 - r0) * w), np.float32)
        for k, p in enumerate(planes):
            x[k].reshape(r1 - r0, w)[...] = p[r0:r1]
        out[r0:r1] = session.run(None, {name: x})[0][0].reshape(r1 - r0, w)
    return out
