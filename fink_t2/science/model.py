"""Stage 5 — the t2 model runner (TFLite via ai-edge-litert).

One interpreter per process, cached by (path, sha256): a Spark Python worker that is
reused across batches loads the model once. The FlatBuffer is memory-mapped by LiteRT
(``model_path=``). The file's sha256 is checked against the metadata JSON that sits
beside it (``<model>.json``) before the interpreter is built.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fink_t2.contract import BANDS, CLASS_NAMES, GRID_LENGTH, INPUT_CONTRACTS
from fink_t2.config import package_file

log = logging.getLogger(__name__)

#: Default model: our clustered + quantized t2 trained on emulated ZTF alerts (beats the
#: published model on the BTS validation split, see docs/table1.md). The published Fink
#: model stays selectable: PUBLISHED_MODEL, or ``--model`` on the command line.
MODELS_DIR = package_file("data", "models")
DEFAULT_MODEL_ID = "fink-t2-ztf-w5"
DEFAULT_MODEL = MODELS_DIR / f"{DEFAULT_MODEL_ID}.tflite"
PUBLISHED_MODEL = MODELS_DIR / "fink-t2-quantized-28341.tflite"
#: Samples per invoke. Measured here (ai-edge-litert 2.3.0, 1 thread, XNNPACK, 2,048
#: random inputs): batch 1: 4,719/s, 4: 4,700/s, 8: 5,013/s, 16: 4,687/s, 32: 3,501/s.
#: Attention memory grows as B×16×100×100 floats, so large batches also cost RSS.
DEFAULT_INVOKE_BATCH = 8
#: Environment variable naming a file where every process appends "pid model_id" per model load
#: (how the stream tests and the benchmark count loads per Spark Python worker).
LOAD_LOG_ENV = "FINK_T2_MODEL_LOAD_LOG"

_CACHE: dict[tuple[str, str], "T2Model"] = {}
_CACHE_LOCK = threading.Lock()
_LOAD_COUNT = 0


class ModelError(RuntimeError):
    """The model file or its metadata is missing, inconsistent or unusable."""


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def metadata_path(model_path: Path) -> Path:
    """The metadata JSON beside a model file."""
    return model_path.with_suffix(".json")


def read_tflite_metadata(path: Path, kind: str, required_keys: tuple[str, ...],
                         error: type[ModelError] = ModelError) -> dict:
    """The metadata JSON beside a TFLite ``kind`` file ("model", "encoder"): both files must exist and
    the JSON hold ``required_keys``; otherwise ``error``."""
    meta_file = metadata_path(path)
    if not path.is_file():
        raise error(f"{kind} file not found: {path}")
    if not meta_file.is_file():
        raise error(f"{kind} metadata not found: {meta_file} (expected beside the {kind})")
    meta = json.loads(meta_file.read_text())
    for key in required_keys:
        if key not in meta:
            raise error(f"{meta_file}: missing key {key!r}")
    return meta


def verified_sha256(path: Path, meta: dict, error: type[ModelError] = ModelError) -> str:
    """The sha256 of ``path``, which must equal ``meta["sha256"]`` (else ``error``)."""
    digest = sha256_of(path)
    if digest != meta["sha256"]:
        raise error(f"sha256 mismatch for {path}: file {digest}, metadata {meta['sha256']}")
    return digest


def read_metadata(model_path: Path) -> dict:
    """Load and check the metadata of a model: contract fields must match ``contract``."""
    meta_file = metadata_path(model_path)
    meta = read_tflite_metadata(model_path, "model",
                                ("model_id", "sha256", "class_names", "bands", "grid_length", "scaling", "input"))
    if tuple(meta["class_names"]) != CLASS_NAMES:
        raise ModelError(f"{meta_file}: class_names differ from the t2 contract order")
    if tuple(meta["bands"]) != BANDS or meta["grid_length"] != GRID_LENGTH:
        raise ModelError(f"{meta_file}: bands/grid_length differ from the t2 contract")
    if meta.get("input_contract", INPUT_CONTRACTS[0]) not in INPUT_CONTRACTS:
        raise ModelError(f"{meta_file}: unknown input_contract {meta['input_contract']!r} "
                         f"(known: {', '.join(INPUT_CONTRACTS)})")
    return meta


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # fall back only when LiteRT is absent
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as exc:
            raise ModelError("no TFLite interpreter: pip install ai-edge-litert") from exc
    return Interpreter


@dataclass
class T2Model:
    """A loaded t2 model: interpreter, metadata and a batched ``predict``."""

    path: Path
    meta: dict
    interpreter: object
    invoke_batch: int

    @property
    def model_id(self) -> str:
        return self.meta["model_id"]

    @property
    def temperature(self) -> float:
        return float(self.meta.get("temperature", 1.0))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (N, 14) float64 for inputs (N, 100, channels) float32, rows sum to 1."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = np.empty((len(x), len(CLASS_NAMES)), dtype=np.float64)
        step = self.invoke_batch
        for start in range(0, len(x), step):
            chunk = x[start:start + step]
            if len(chunk) < step and len(x) > step:  # pad: keep one tensor shape, no re-allocation
                chunk = np.concatenate([chunk, np.zeros((step - len(chunk), *x.shape[1:]), np.float32)])
            out[start:start + step] = self.invoke(chunk)[: len(out) - start]
        return _calibrate(out, self.temperature)

    def invoke(self, chunk: np.ndarray) -> np.ndarray:
        """One interpreter invocation on (B, 100, channels) float32: raw softmax outputs (B, 14)."""
        interp = self.interpreter
        inp = interp.get_input_details()[0]
        if tuple(inp["shape"]) != chunk.shape:
            interp.resize_tensor_input(inp["index"], list(chunk.shape))
            interp.allocate_tensors()
        interp.set_tensor(inp["index"], chunk)
        interp.invoke()
        return interp.get_tensor(interp.get_output_details()[0]["index"])


def _calibrate(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Renormalise softmax outputs; with T ≠ 1 apply temperature scaling p ∝ p^(1/T)."""
    if temperature != 1.0:
        logp = np.log(np.clip(probs, 1e-30, None)) / temperature
        probs = np.exp(logp - logp.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True)


def load_model(path: str | os.PathLike | None = None, num_threads: int = 1,
               invoke_batch: int = DEFAULT_INVOKE_BATCH) -> T2Model:
    """The process-wide model for ``path`` (default model when None), loaded at most once.

    The sha256 of the file must equal the metadata's; otherwise ``ModelError``.
    """
    global _LOAD_COUNT
    model_path = Path(path) if path is not None else DEFAULT_MODEL
    model_path = model_path.resolve()
    meta = read_metadata(model_path)
    key = (str(model_path), verified_sha256(model_path, meta))
    with _CACHE_LOCK:
        if key not in _CACHE:
            interpreter = _interpreter_class()(model_path=str(model_path), num_threads=num_threads)
            interpreter.allocate_tensors()
            _CACHE[key] = T2Model(model_path, meta, interpreter, invoke_batch)
            _LOAD_COUNT += 1
            log.info("t2 model loaded: %s (pid %d, load #%d)", meta["model_id"], os.getpid(), _LOAD_COUNT)
            _append_load_log(meta["model_id"])
        return _CACHE[key]


def _append_load_log(model_id: str) -> None:
    path = os.environ.get(LOAD_LOG_ENV)
    if path:
        with open(path, "a") as fh:
            fh.write(f"{os.getpid()} {model_id}\n")


def load_count() -> int:
    """How many interpreters this process has built (one per distinct model)."""
    return _LOAD_COUNT
