"""A tf_keras ASTROMER encoder → TFLite (float or int8 dynamic-range) + the metadata JSON beside it.

The metadata (read by ``fink_t2.astromer.encoder``) holds the file's sha256, the encoder config, the
input contract (window builder, tensor names of ``times``/``mags``/``bands``/``valid``, L, d) and
the training provenance given by the caller. Dynamic-range quantization (``Optimize.DEFAULT``, no
representative data): int8 weights for tensors ≥ 1,024 elements, float activations and I/O.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from fink_t2.contract import ASTROMER_INPUT_CONTRACTS, BANDS
from fink_t2.train import tf_setup
from fink_t2.train.astromer_network import INPUT_NAMES, EncoderConfig

METADATA_FORMAT = "fink_t2.astromer_encoder/1"


def input_contract_of(cfg: EncoderConfig) -> str:
    """The window builder a variant's weights were trained on."""
    return ASTROMER_INPUT_CONTRACTS[0] if cfg.variant == "v0" else ASTROMER_INPUT_CONTRACTS[1]


def to_tflite(encoder, quantize: bool) -> bytes:
    """FlatBuffer of ``encoder`` (batch dimension left dynamic: LiteRT resizes it).

    Through a concrete function with one named argument per input: ``from_keras_model`` cannot bind
    a dict-input functional model.
    """
    tf = tf_setup.tf()
    length = encoder.inputs[0].shape[1]
    dtypes = {"times": tf.float32, "mags": tf.float32, "bands": tf.int32, "valid": tf.bool}
    signature = [tf.TensorSpec((None, length), dtypes[name], name=name) for name in INPUT_NAMES]

    @tf.function(input_signature=signature)
    def serve(times, mags, bands, valid):
        return encoder({"times": times, "mags": mags, "bands": bands, "valid": valid}, training=False)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], encoder)
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def _tensor_names(tflite: bytes) -> tuple[dict[str, str], str]:
    """Input role → TFLite tensor name, and the output tensor name."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite)
    names = {}
    for detail in interp.get_input_details():
        roles = [role for role in INPUT_NAMES if detail["name"].split(":")[0].endswith(role)]
        if len(roles) != 1:
            raise ValueError(f"cannot tell which input TFLite tensor {detail['name']!r} is")
        names[roles[0]] = detail["name"]
    return names, interp.get_output_details()[0]["name"]


def encoder_metadata(encoder_id: str, tflite: bytes, cfg: EncoderConfig, quantized: bool,
                     provenance: dict) -> dict:
    """Metadata JSON of an exported encoder (``provenance``: data, recipe, commit, source checkpoint…)."""
    inputs, output = _tensor_names(tflite)
    length = cfg.max_obs
    return {
        "format": METADATA_FORMAT,
        "encoder_id": encoder_id,
        "sha256": hashlib.sha256(tflite).hexdigest(),
        "size_bytes": len(tflite),
        "quantization": "dynamic_range_int8" if quantized else "float32",
        "config": cfg.to_dict(),
        "input_contract": input_contract_of(cfg),
        "bands": list(BANDS),
        "inputs": {
            "times": {"name": inputs["times"], "shape": [-1, length], "dtype": "float32",
                      "meaning": "days minus the window mean"},
            "mags": {"name": inputs["mags"], "shape": [-1, length], "dtype": "float32",
                     "meaning": "magnitude minus the window mean"},
            "bands": {"name": inputs["bands"], "shape": [-1, length], "dtype": "int32",
                      "meaning": "band index, 0 = g, 1 = r (v0: always 0)"},
            "valid": {"name": inputs["valid"], "shape": [-1, length], "dtype": "bool",
                      "meaning": "True = a real observation, False = padding"},
        },
        "output": {"name": output, "shape": [-1, length, cfg.d_model], "dtype": "float32",
                   "meaning": "last encoder layer per observation; pooled = mean over valid observations"},
        "provenance": provenance,
    }


def export_encoder(encoder, cfg: EncoderConfig, out_dir: Path, encoder_id: str, quantize: bool,
                   provenance: dict) -> Path:
    """Write ``<encoder_id>.tflite`` and ``<encoder_id>.json`` into ``out_dir``; returns the .tflite path."""
    tflite = to_tflite(encoder, quantize)
    meta = encoder_metadata(encoder_id, tflite, cfg, quantize, provenance)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{encoder_id}.tflite"
    path.write_bytes(tflite)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return path


def checkpoint_sha256(directory: Path) -> str:
    """sha256 over a v0 checkpoint directory's conf.json and weights.* files (names and bytes, sorted)."""
    from fink_t2.train.astromer_v0 import CHECKPOINT_PREFIX, CONF_FILE

    directory = Path(directory)
    digest = hashlib.sha256()
    for path in sorted([directory / CONF_FILE, *directory.glob(f"{CHECKPOINT_PREFIX}.*")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def cache_dir() -> Path:
    """Where converted checkpoints are kept: ``$FINK_T2_CACHE`` or ``$XDG_CACHE_HOME/fink_t2`` (~/.cache)."""
    base = os.environ.get("FINK_T2_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fink_t2"
    return Path(base) / "astromer"


def v0_checkpoint_to_tflite(directory: str | Path) -> Path:
    """The float TFLite of a v0 checkpoint directory, converted once and cached by its sha256.

    Float, not int8: dynamic-range quantization moves v0 MACHO embeddings by up to 6.3 (of |e| ≤ 14),
    README "ASTROMER encoder". The file is written under a temporary name and renamed (atomic).
    """
    from fink_t2.train.astromer_v0 import load_v0

    directory = Path(directory)
    digest = checkpoint_sha256(directory)
    encoder_id = f"astromer-v0-{digest[:16]}"
    target = cache_dir() / digest / f"{encoder_id}.tflite"
    if target.is_file() and target.with_suffix(".json").is_file():
        return target
    encoder, cfg = load_v0(directory)
    staging = target.parent / f".staging-{os.getpid()}"
    written = export_encoder(encoder, cfg, staging, encoder_id, quantize=False,
                             provenance={"source": "ASTROMER v0 checkpoint", "checkpoint_sha256": digest,
                                         "checkpoint_dir": str(directory.resolve())})
    os.replace(written.with_suffix(".json"), target.with_suffix(".json"))
    os.replace(written, target)
    staging.rmdir()
    return target
