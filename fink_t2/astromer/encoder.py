"""The ASTROMER encoder at inference: a memory-mapped LiteRT interpreter, loaded once per process.

The .tflite file's sha256 is checked against the metadata JSON beside it (written by
``fink_t2.train.astromer_export``) before the interpreter is built; interpreters are cached by
(path, sha256) as the t2 model is (``fink_t2.science.model``). Windows are invoked in fixed chunks
of ``invoke_batch`` rows (the last one zero-padded), so the tensor shapes are allocated once.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fink_t2.astromer.inputs import EncoderBatch, LightCurve, batch_twoband, batch_v0
from fink_t2.config import package_file
from fink_t2.contract import ASTROMER_INPUT_CONTRACTS, ASTROMER_SHIPPED_ENCODER_ID
from fink_t2.science.model import ModelError, _interpreter_class, read_tflite_metadata, verified_sha256

DEFAULT_ENCODER = package_file("data", "models") / f"{ASTROMER_SHIPPED_ENCODER_ID}.tflite"
#: Windows per invoke. Measured (LiteRT 2.3.0, 1 thread, XNNPACK, a loaded 2-core machine), two-band
#: d 64, L 64: batch 1: 1,024/s, 8: 1,342/s, 16: 1,140/s, 32: 1,161/s, 64: 750/s.
DEFAULT_INVOKE_BATCH = 8
INPUT_ROLES = ("times", "mags", "bands", "valid")
_WINDOW_BUILDERS = dict(zip(ASTROMER_INPUT_CONTRACTS, (batch_v0, batch_twoband)))

_CACHE: dict[tuple[str, str], "Encoder"] = {}
_CACHE_LOCK = threading.Lock()


class EncoderError(ModelError):
    """The encoder file or its metadata is missing, inconsistent or unusable."""


def read_encoder_metadata(path: Path) -> dict:
    """The metadata JSON beside ``path``, with its keys checked."""
    meta_file = path.with_suffix(".json")
    meta = read_tflite_metadata(path, "encoder", ("encoder_id", "sha256", "config", "input_contract", "inputs", "output"),
                                EncoderError)
    if meta["input_contract"] not in _WINDOW_BUILDERS:
        raise EncoderError(f"{meta_file}: unknown input_contract {meta['input_contract']!r}")
    if set(meta["inputs"]) != set(INPUT_ROLES):
        raise EncoderError(f"{meta_file}: inputs {sorted(meta['inputs'])} are not {sorted(INPUT_ROLES)}")
    return meta


@dataclass
class Encoder:
    """A loaded encoder: ``embed`` (n, L, d) per observation, ``pooled`` (n, d) per window."""

    path: Path
    meta: dict
    interpreter: object
    invoke_batch: int

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, num_threads: int = 1,
             invoke_batch: int = DEFAULT_INVOKE_BATCH) -> "Encoder":
        """The process-wide encoder for ``path`` (default: the shipped two-band encoder), sha256-checked."""
        model_path = Path(path if path is not None else DEFAULT_ENCODER).resolve()
        meta = read_encoder_metadata(model_path)
        key = (str(model_path), verified_sha256(model_path, meta, EncoderError))
        with _CACHE_LOCK:
            if key not in _CACHE:
                interpreter = _interpreter_class()(model_path=str(model_path), num_threads=num_threads)
                _CACHE[key] = cls(model_path, meta, interpreter, invoke_batch)
                _CACHE[key]._allocate(invoke_batch)
            return _CACHE[key]

    @property
    def encoder_id(self) -> str:
        return self.meta["encoder_id"]

    @property
    def max_obs(self) -> int:
        return int(self.meta["config"]["max_obs"])

    @property
    def width(self) -> int:
        return int(self.meta["config"]["d_model"])

    def windows(self, light_curves: list[LightCurve]) -> EncoderBatch:
        """The windows this encoder was trained on (its metadata's ``input_contract``)."""
        return _WINDOW_BUILDERS[self.meta["input_contract"]](light_curves, max_obs=self.max_obs)

    def _allocate(self, rows: int) -> None:
        interp = self.interpreter
        for detail in interp.get_input_details():
            interp.resize_tensor_input(detail["index"], [rows, self.max_obs])
        interp.allocate_tensors()
        by_name = {d["name"]: d["index"] for d in interp.get_input_details()}
        self._inputs = {role: by_name[self.meta["inputs"][role]["name"]] for role in INPUT_ROLES}
        self._output = interp.get_output_details()[0]["index"]

    def _invoke(self, chunk: EncoderBatch) -> np.ndarray:
        arrays = {"times": chunk.times.astype(np.float32), "mags": chunk.mags.astype(np.float32),
                  "bands": chunk.bands.astype(np.int32), "valid": chunk.valid.astype(bool)}
        for role, index in self._inputs.items():
            self.interpreter.set_tensor(index, np.ascontiguousarray(arrays[role]))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output)

    def embed(self, batch: EncoderBatch) -> np.ndarray:
        """Per-observation embeddings (n, L, d) float32 (padded positions carry values: mask them)."""
        if batch.max_obs != self.max_obs:
            raise EncoderError(f"windows of {batch.max_obs} observations, encoder {self.encoder_id} takes {self.max_obs}")
        out = np.empty((len(batch), self.max_obs, self.width), np.float32)
        step = self.invoke_batch
        for start in range(0, len(batch), step):
            chunk = _padded(batch.slice(start, start + step), step)
            out[start:start + step] = self._invoke(chunk)[: len(batch) - start]
        return out

    def pooled(self, batch: EncoderBatch) -> np.ndarray:
        """Mean over the valid observations of the last layer, (n, d) float32; NaN for an empty window."""
        embeddings = self.embed(batch)
        counts = batch.valid.sum(axis=1, keepdims=True)
        total = np.einsum("nld,nl->nd", embeddings, batch.valid.astype(np.float32))
        with np.errstate(invalid="ignore", divide="ignore"):
            return (total / counts).astype(np.float32)


def _padded(chunk: EncoderBatch, rows: int) -> EncoderBatch:
    """``chunk`` with all-padding rows appended up to ``rows`` (one tensor shape for every invoke)."""
    missing = rows - len(chunk)
    if missing <= 0:
        return chunk
    pad = ((0, missing), (0, 0))
    return EncoderBatch(np.pad(chunk.times, pad), np.pad(chunk.mags, pad), np.pad(chunk.bands, pad),
                        np.pad(chunk.valid, pad), chunk.object_ids + ("",) * missing)
