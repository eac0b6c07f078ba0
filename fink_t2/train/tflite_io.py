"""TFLite file helpers without TensorFlow: metadata, writing, LiteRT predictions and timings.

Used by ``compress`` (with TF) and by ``evaluate`` / ``report`` / ``table1`` (LiteRT only).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from fink_t2.contract import BANDS, CLASS_NAMES, GRID_LENGTH, PLASTICC_IDS


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def gzip_size(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def tensor_names(tflite: bytes) -> tuple[str, str]:
    """(input, output) tensor names of a TFLite model."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=bytes(tflite))
    return interp.get_input_details()[0]["name"], interp.get_output_details()[0]["name"]


AXIS_2 = {"span_grid_v1": "band: 0 = g, 1 = r",
          "window_asinh_v2": "0 = asinh flux g, 1 = asinh flux r (one shared scale), 2 = mask (after the first "
                             "detection), 3 = alert age / 90 d"}


def base_metadata(model_id: str, tflite: bytes, scaling: str, scaling_stats: dict | None = None,
                  temperature: float = 1.0, input_contract: str = "span_grid_v1", channels: int = 2,
                  **extra) -> dict:
    """Metadata JSON in the format of ``fink_t2/data/models/fink-t2-quantized-28341.json``."""
    input_name, output_name = tensor_names(tflite)
    meta = {
        "model_id": model_id,
        "sha256": sha256_bytes(tflite),
        "size_bytes": len(tflite),
        "class_names": list(CLASS_NAMES),
        "plasticc_ids": list(PLASTICC_IDS),
        "bands": list(BANDS),
        "grid_length": GRID_LENGTH,
        "input_contract": input_contract,
        "input": {"name": input_name, "shape": [-1, GRID_LENGTH, channels], "dtype": "float32",
                  "axis_1": "GP grid time, ascending", "axis_2": AXIS_2[input_contract]},
        "output": {"name": output_name, "shape": [-1, len(CLASS_NAMES)], "dtype": "float32", "activation": "softmax"},
        "scaling": scaling,
        "temperature": float(temperature),
    }
    if scaling_stats is not None:
        meta["scaling_stats"] = scaling_stats
    meta.update(extra)
    return meta


def write_model(out_dir: Path, model_id: str, tflite: bytes, meta: dict) -> Path:
    """Write ``<model_id>.tflite`` and ``<model_id>.json`` (sha256 of the file checked)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{model_id}.tflite"
    path.write_bytes(tflite)
    assert meta["sha256"] == sha256_bytes(path.read_bytes())
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


def tflite_predict(tflite: bytes | Path, x: np.ndarray, batch: int = 64) -> np.ndarray:
    """Raw softmax outputs of a TFLite model with LiteRT (no temperature), (N, 14) float64."""
    from ai_edge_litert.interpreter import Interpreter

    kwargs = {"model_path": str(tflite)} if isinstance(tflite, Path) else {"model_content": bytes(tflite)}
    interp = Interpreter(num_threads=1, **kwargs)
    inp = interp.get_input_details()[0]
    out_index = interp.get_output_details()[0]["index"]
    out = np.empty((len(x), len(CLASS_NAMES)))
    shape = None
    for start in range(0, len(x), batch):
        chunk = np.ascontiguousarray(x[start:start + batch], dtype=np.float32)
        if chunk.shape != shape:
            interp.resize_tensor_input(inp["index"], list(chunk.shape))
            interp.allocate_tensors()
            shape = chunk.shape
        interp.set_tensor(inp["index"], chunk)
        interp.invoke()
        out[start:start + len(chunk)] = interp.get_tensor(out_index)
    return out


def time_tflite(path: Path, x: np.ndarray, repeats: int = 20, n_alerts: int = 500) -> dict[str, float]:
    """Load time (Interpreter + allocate_tensors, page-cached file, median) and per-alert invoke time."""
    from ai_edge_litert.interpreter import Interpreter

    loads = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        interp = Interpreter(model_path=str(path), num_threads=1)
        interp.allocate_tensors()
        loads.append(time.perf_counter() - t0)
    inp = interp.get_input_details()[0]
    out_index = interp.get_output_details()[0]["index"]
    sample = np.ascontiguousarray(x[:1], dtype=np.float32)
    for _ in range(20):  # warm-up (first invokes are slow)
        interp.set_tensor(inp["index"], sample)
        interp.invoke()
    xs = np.ascontiguousarray(x[:n_alerts], dtype=np.float32)
    t0 = time.perf_counter()
    for i in range(len(xs)):
        interp.set_tensor(inp["index"], xs[i:i + 1])
        interp.invoke()
        interp.get_tensor(out_index)
    per_alert = (time.perf_counter() - t0) / len(xs)
    return {"load_ms": 1e3 * float(np.median(loads)), "inference_ms": 1e3 * per_alert}
