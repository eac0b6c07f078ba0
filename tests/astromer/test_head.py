"""The numpy classifier head: its file format is checked at load, and its forward pass equals
tf_keras (which trains the heads) and hand-computed values."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from fink_t2.astromer.head import HeadError, load_head, metadata_path, save_head

CLASSES = ["SNIa", "SNII", "SNIbc"]
ENCODER_SHA = "0" * 64


def _softmax_head(tmp_path, bias, name="h"):
    layers = [{"kind": "dense", "activation": "softmax"}]
    arrays = {"0.kernel": np.zeros((4, len(bias))), "0.bias": np.asarray(bias)}
    return save_head(tmp_path / name, layers, arrays, "test-head", CLASSES[:len(bias)], ENCODER_SHA)


def test_a_zero_kernel_softmax_head_returns_the_softmax_of_its_bias(tmp_path):
    head = load_head(_softmax_head(tmp_path, np.log([0.2, 0.3, 0.5])))
    probs = head.predict(np.random.default_rng(0).normal(size=(5, 4)))
    # float32 storage of log(p): relative error ≤ 2^-24 per logit, so |Δp| ≲ 1e-7
    assert probs == pytest.approx(np.tile([0.2, 0.3, 0.5], (5, 1)), abs=1e-6)
    assert head.class_names == tuple(CLASSES) and head.input_width == 4


def test_layer_norm_and_standardize_follow_their_definitions(tmp_path):
    layers = [{"kind": "standardize"}, {"kind": "layer_norm", "epsilon": 0.0},
              {"kind": "dense", "activation": "softmax"}]
    arrays = {"0.mean": [1.0, 1.0], "0.scale": [2.0, 0.5], "1.gamma": [1.0, 1.0], "1.beta": [0.0, 0.0],
              "2.kernel": np.eye(2), "2.bias": [0.0, 0.0]}
    head = load_head(save_head(tmp_path / "h", layers, {k: np.asarray(v) for k, v in arrays.items()},
                               "ln", CLASSES[:2], ENCODER_SHA))
    # x = (3, 1): standardized (1, 0) → layer norm (1, -1) → softmax (e, 1/e) / sum
    expected = np.exp([1.0, -1.0]) / np.exp([1.0, -1.0]).sum()
    assert head.predict(np.array([[3.0, 1.0]]))[0] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda meta, npz: meta.update(sha256="1" * 64), "sha256 mismatch"),
    (lambda meta, npz: meta.update(format="keras"), "format 'keras'"),
    (lambda meta, npz: meta.pop("class_names"), "missing key(s) class_names"),
    (lambda meta, npz: meta.update(class_names=CLASSES[:2]), "3 outputs for 2 class names"),
    (lambda meta, npz: meta["layers"][0].update(activation="relu"), "last layer must be a dense softmax"),
    (lambda meta, npz: meta["layers"].insert(0, {"kind": "conv"}), "unknown kind"),
    (lambda meta, npz: meta.update(class_names=["SNIa", "SNIa", "SNII"]), "must be distinct non-empty strings"),
])
def test_a_malformed_head_is_refused_with_its_reason(tmp_path, edit, message):
    npz = _softmax_head(tmp_path, [0.0, 0.0, 0.0])
    meta = json.loads(metadata_path(npz).read_text())
    edit(meta, npz)
    metadata_path(npz).write_text(json.dumps(meta))
    with pytest.raises(HeadError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_head(npz)


def test_shapes_that_do_not_chain_and_wrong_inputs_are_refused(tmp_path):
    layers = [{"kind": "dense", "activation": "relu"}, {"kind": "dense", "activation": "softmax"}]
    arrays = {"0.kernel": np.zeros((4, 8)), "0.bias": np.zeros(8), "1.kernel": np.zeros((7, 3)), "1.bias": np.zeros(3)}
    with pytest.raises(HeadError, match="layer 1 .* do not fit input width 8"):
        save_head(tmp_path / "h", layers, arrays, "bad", CLASSES, ENCODER_SHA)
    head = load_head(_softmax_head(tmp_path, [0.0, 0.0, 0.0], name="ok"))
    with pytest.raises(HeadError, match=r"takes \(n, 4\) embeddings, not \(2, 5\)"):
        head.predict(np.zeros((2, 5)))
    with pytest.raises(HeadError, match="head file not found"):
        load_head(tmp_path / "absent.npz")


@pytest.mark.skipif(importlib.util.find_spec("tf_keras") is None, reason="needs tf_keras: pip install -e '.[train]'")
def test_the_numpy_head_equals_the_keras_head_it_was_saved_from(tmp_path):
    import tf_keras as keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.LayerNormalization(), keras.layers.Dense(3, activation="softmax")])
    dense0, norm, dense1 = model.layers
    arrays = {"0.kernel": dense0.kernel.numpy(), "0.bias": dense0.bias.numpy(), "1.gamma": norm.gamma.numpy(),
              "1.beta": norm.beta.numpy(), "2.kernel": dense1.kernel.numpy(), "2.bias": dense1.bias.numpy()}
    layers = [{"kind": "dense", "activation": "relu"}, {"kind": "layer_norm", "epsilon": norm.epsilon},
              {"kind": "dense", "activation": "softmax"}]
    head = load_head(save_head(tmp_path / "k", layers, arrays, "keras", CLASSES, ENCODER_SHA))
    x = np.random.default_rng(1).normal(size=(64, 16)).astype(np.float32)
    # keras runs in float32 (relative round-off ~1e-7 per op over 16- and 32-term sums), numpy in float64
    assert head.predict(x) == pytest.approx(model.predict(x, verbose=0), abs=1e-5)
