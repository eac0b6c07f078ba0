"""A classifier head on pooled ASTROMER embeddings, run in numpy (no TensorFlow in the stream).

File format (``fink_t2.dense_head.v1``), two files side by side:

* ``<name>.npz``: the float arrays of layer ``i`` as ``"<i>.<array>"``: ``dense`` → ``kernel``
  (d_in, d_out), ``bias`` (d_out,); ``layer_norm`` → ``gamma``, ``beta`` (d,); ``standardize``
  → ``mean``, ``scale`` (d,) (x ↦ (x − mean) / scale).
* ``<name>.json``: ``format``, ``head_id``, ``sha256`` (of the .npz, checked at load),
  ``class_names`` (output order; t2's names, e.g. ``SNIa``, keep filters and ``t2_snia`` working:
  ``t2_snia`` is the probability of the class named ``SNIa``, null without one), ``encoder_sha256`` (of the .tflite whose pooled embeddings it
  was trained on), ``layers``: a list of ``{"kind": "dense", "activation": "relu" | "tanh" |
  "linear" | "softmax"}``, ``{"kind": "layer_norm", "epsilon": 1e-3}`` or ``{"kind": "standardize"}``;
  the last layer is a dense softmax. Other keys (training provenance, metrics) are kept as they are.

:func:`save_head` writes both files from numpy arrays (what ``fink-t2 finetune`` does with a
trained Keras head); :func:`load_head` reads and checks them.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fink_t2.science.model import sha256_of

HEAD_FORMAT = "fink_t2.dense_head.v1"
#: Arrays of each layer kind, in the npz as "<layer index>.<name>".
LAYER_ARRAYS: dict[str, tuple[str, ...]] = {"dense": ("kernel", "bias"), "layer_norm": ("gamma", "beta"),
                                            "standardize": ("mean", "scale")}
ACTIVATIONS = ("relu", "tanh", "linear", "softmax")
DEFAULT_LAYER_NORM_EPSILON = 1e-3  # tf_keras LayerNormalization default


class HeadError(ValueError):
    """The head files are missing, inconsistent with each other, or malformed."""


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


_ACTIVATE = {"relu": lambda x: np.maximum(x, 0.0), "tanh": np.tanh, "linear": lambda x: x, "softmax": _softmax}


@dataclass(frozen=True)
class DenseHead:
    """A loaded head: its metadata, its layers and their arrays (float64)."""

    path: Path
    meta: dict
    arrays: dict[str, np.ndarray]

    @property
    def head_id(self) -> str:
        return self.meta["head_id"]

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.meta["class_names"])

    @property
    def input_width(self) -> int:
        """Embedding width d the head takes."""
        first = self.meta["layers"][0]
        return int(self.arrays["0.kernel" if first["kind"] == "dense" else f"0.{LAYER_ARRAYS[first['kind']][0]}"]
                   .shape[0])

    def predict(self, pooled: np.ndarray) -> np.ndarray:
        """Class probabilities (n, classes) float64, rows summing to 1, of pooled embeddings (n, d)."""
        x = np.asarray(pooled, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.input_width:
            raise HeadError(f"head {self.head_id} takes (n, {self.input_width}) embeddings, not {x.shape}")
        for i, layer in enumerate(self.meta["layers"]):
            x = self._apply(i, layer, x)
        return x

    def _apply(self, i: int, layer: dict, x: np.ndarray) -> np.ndarray:
        a = {name: self.arrays[f"{i}.{name}"] for name in LAYER_ARRAYS[layer["kind"]]}
        if layer["kind"] == "dense":
            return _ACTIVATE[layer["activation"]](x @ a["kernel"] + a["bias"])
        if layer["kind"] == "standardize":
            return (x - a["mean"]) / a["scale"]
        eps = float(layer.get("epsilon", DEFAULT_LAYER_NORM_EPSILON))
        centred = x - x.mean(axis=1, keepdims=True)
        return centred / np.sqrt((centred ** 2).mean(axis=1, keepdims=True) + eps) * a["gamma"] + a["beta"]


def metadata_path(head_path: Path) -> Path:
    """The metadata JSON beside a head's .npz."""
    return Path(head_path).with_suffix(".json")


def save_head(path: str | os.PathLike, layers: list[dict], arrays: dict[str, np.ndarray], head_id: str,
              class_names: list[str], encoder_sha256: str, **provenance) -> Path:
    """Write ``<path>.npz`` + ``<path>.json`` (format above); arrays keyed "<i>.<name>". The files are
    checked by loading them back, so a malformed head fails here, not in the stream."""
    npz = Path(path).with_suffix(".npz")
    np.savez(npz, **{name: np.asarray(value, dtype=np.float32) for name, value in arrays.items()})
    meta = {"format": HEAD_FORMAT, "head_id": head_id, "sha256": sha256_of(npz), "class_names": list(class_names),
            "encoder_sha256": encoder_sha256, "layers": layers, **provenance}
    metadata_path(npz).write_text(json.dumps(meta, indent=2) + "\n")
    load_head(npz)
    return npz


def load_head(path: str | os.PathLike) -> DenseHead:
    """Read a head, checking its sha256, its layer list and the shapes of its arrays (``HeadError``)."""
    npz, meta_file = Path(path), metadata_path(Path(path))
    for f in (npz, meta_file):
        if not f.is_file():
            raise HeadError(f"head file not found: {f}")
    meta = json.loads(meta_file.read_text())
    missing = [k for k in ("format", "head_id", "sha256", "class_names", "encoder_sha256", "layers") if k not in meta]
    if missing:
        raise HeadError(f"{meta_file}: missing key(s) {', '.join(missing)}")
    if meta["format"] != HEAD_FORMAT:
        raise HeadError(f"{meta_file}: format {meta['format']!r}, expected {HEAD_FORMAT!r}")
    digest = sha256_of(npz)
    if digest != meta["sha256"]:
        raise HeadError(f"sha256 mismatch for {npz}: file {digest}, metadata {meta['sha256']}")
    with np.load(npz, allow_pickle=False) as stored:
        arrays = {name: stored[name].astype(np.float64) for name in stored.files}
    _check_layers(meta_file, meta, arrays)
    return DenseHead(npz, meta, arrays)


def _check_layers(where: Path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    layers = meta["layers"]
    if not layers or layers[-1].get("kind") != "dense" or layers[-1].get("activation") != "softmax":
        raise HeadError(f"{where}: the last layer must be a dense softmax")
    width = None
    for i, layer in enumerate(layers):
        kind = layer.get("kind")
        if kind not in LAYER_ARRAYS or (kind == "dense" and layer.get("activation") not in ACTIVATIONS):
            raise HeadError(f"{where}: layer {i}: unknown kind/activation {layer}")
        names = [f"{i}.{a}" for a in LAYER_ARRAYS[kind]]
        if any(n not in arrays for n in names):
            raise HeadError(f"{where}: layer {i} ({kind}) needs arrays {', '.join(names)}")
        width = _checked_width(where, i, kind, [arrays[n] for n in names], width)
    names = meta["class_names"]
    if not names or len(set(names)) != len(names) or not all(isinstance(c, str) and c for c in names):
        raise HeadError(f"{where}: class_names must be distinct non-empty strings, not {names}")
    if width != len(meta["class_names"]):
        raise HeadError(f"{where}: {width} outputs for {len(meta['class_names'])} class names")


def _checked_width(where: Path, i: int, kind: str, parts: list[np.ndarray], width: int | None) -> int:
    """The layer's output width, after checking its arrays' shapes against its input ``width``."""
    first, second = parts
    d_in = first.shape[0] if first.ndim >= 1 else -1
    d_out = first.shape[1] if kind == "dense" and first.ndim == 2 else d_in
    good = (first.ndim == (2 if kind == "dense" else 1) and second.shape == (d_out,)
            and (width is None or d_in == width) and np.isfinite(first).all() and np.isfinite(second).all()
            and (kind != "standardize" or (second > 0).all()))
    if not good:
        raise HeadError(f"{where}: layer {i} ({kind}) arrays {[p.shape for p in parts]} do not fit input width "
                        f"{width} (or are not finite, or a scale ≤ 0)")
    return d_out
