"""Stage 5: the LiteRT model runner against direct LiteRT invocation, batching, loading."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from fink_t2.science import model as model_module
from fink_t2.contract import CLASS_NAMES
from fink_t2.science.model import DEFAULT_MODEL, PUBLISHED_MODEL, ModelError, load_count, load_model, sha256_of


def _inputs(path=DEFAULT_MODEL) -> np.ndarray:
    """37 random inputs shaped for the model at ``path`` (its own channel count)."""
    interp = Interpreter(model_path=str(path), num_threads=1)
    channels = int(interp.get_input_details()[0]["shape"][2])
    rng = np.random.default_rng(42)
    x = rng.normal(size=(37, 100, channels)).astype(np.float32)
    x[:, :, 0] += np.sin(np.linspace(0, 3, 100))[None, :]
    return x


def _direct(x: np.ndarray, path=DEFAULT_MODEL) -> np.ndarray:
    interp = Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    rows = []
    for sample in x:
        interp.set_tensor(inp["index"], sample[None])
        interp.invoke()
        rows.append(interp.get_tensor(out["index"])[0])
    return np.array(rows)


@pytest.mark.parametrize("path", [DEFAULT_MODEL, PUBLISHED_MODEL], ids=["default", "published"])
def test_runner_equals_direct_litert(path):
    inputs = _inputs(path)
    model = load_model(path)
    probs = model.predict(inputs)
    direct = _direct(inputs, path)
    assert probs.shape == (37, len(CLASS_NAMES))
    # temperature scaling from the metadata: p ∝ p_raw^(1/T)
    expected = direct.astype(np.float64) ** (1.0 / model.temperature)
    np.testing.assert_allclose(probs, expected / expected.sum(axis=1, keepdims=True), atol=2e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)


@pytest.mark.parametrize("batch", [1, 8, 16])
def test_batched_equals_per_sample(batch):
    inputs = _inputs()
    model = load_model()
    saved = model.invoke_batch
    try:
        model.invoke_batch = 1
        single = model.predict(inputs)
        model.invoke_batch = batch
        batched = model.predict(inputs)
    finally:
        model.invoke_batch = saved
    np.testing.assert_allclose(batched, single, atol=1e-6)


def test_model_loaded_once_per_process():
    first = load_model()
    before = load_count()
    for _ in range(5):
        assert load_model() is first
    assert load_count() == before


def test_metadata_matches_file():
    meta = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    assert meta["sha256"] == sha256_of(DEFAULT_MODEL)
    assert meta["class_names"] == list(CLASS_NAMES)


def test_sha_mismatch_and_missing_files_are_clear_errors(tmp_path):
    copy = tmp_path / "m.tflite"
    shutil.copy(DEFAULT_MODEL, copy)
    with pytest.raises(ModelError, match="metadata not found"):
        load_model(copy)
    meta = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    meta["sha256"] = "0" * 64
    copy.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="sha256 mismatch"):
        load_model(copy)
    with pytest.raises(ModelError, match="model file not found"):
        load_model(tmp_path / "absent.tflite")


def test_temperature_scaling_keeps_argmax_and_softens():
    p = np.array([[0.7, 0.2, 0.1]])
    soft = model_module._calibrate(p, 2.0)
    assert soft.argmax() == 0 and soft[0, 0] < 0.7 and soft.sum() == pytest.approx(1.0)
