"""Export to TFLite and the LiteRT encoder: same embeddings as tf_keras, sha256 checked, loaded once.

Real light curves: the MACHO samples through the published v0 weights (the tf_keras v0 encoder is
bit-identical to ASTROMER 0.1.8, tests/train/test_astromer_v0.py).

Tolerance of LiteRT float vs tf_keras, 1e-3: XNNPACK's kernels (GEMM order, tanh/exp/sin
approximations) differ from TF's by a few float32 ulp, ~4·2⁻²³·|x| ≈ 2e-6 on activations |x| ≈ 5;
the v0 network amplifies a perturbation of its input embedding ~150× (1e-6 on the window's mean
magnitude moves its outputs by 1.5e-4, test_astromer_v0), so ≈ 3e-4; 1e-3 is 3× that and still
~1/14,000 of the embeddings' range, while a wrong convention moves them by ≥ 1e-2.
"""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

if importlib.util.find_spec("tf_keras") is None:  # not importorskip: tf_setup must import TF first
    pytest.skip("the training stack (make train-venv) is not installed", allow_module_level=True)

from fink_t2.astromer.encoder import Encoder, EncoderError  # noqa: E402
from fink_t2.astromer.inputs import LightCurve, batch_twoband, batch_v0  # noqa: E402
from fink_t2.train import tf_setup  # noqa: E402
from fink_t2.train.astromer_export import export_encoder, v0_checkpoint_to_tflite  # noqa: E402
from fink_t2.train.astromer_network import EncoderConfig, build_encoder  # noqa: E402
from fink_t2.train.astromer_v0 import load_v0  # noqa: E402
from tests.astromer.macho import macho_light_curves, require_reference  # noqa: E402

LITERT_TOLERANCE = 1e-3
TINY = EncoderConfig(variant="twoband", d_model=32, layers=1, heads=2, dff=64, max_obs=32)  # Q K V O, FFN ≥ 1,024 weights: int8


def _feed(batch):
    return {"times": batch.times, "mags": batch.mags, "bands": batch.bands.astype(np.int32), "valid": batch.valid}


@pytest.fixture(scope="module")
def v0_export(tmp_path_factory):
    """The MACHO checkpoint converted through the cache (FINK_T2_CACHE in a temp dir) and its Keras twin."""
    directory = require_reference()
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FINK_T2_CACHE", str(cache))
        path = v0_checkpoint_to_tflite(directory)
        again = v0_checkpoint_to_tflite(directory)
    keras_model, _ = load_v0(directory)
    return path, again, keras_model


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    tf_setup.keras().utils.set_random_seed(3)
    encoder = build_encoder(TINY)
    out = tmp_path_factory.mktemp("tiny")
    return encoder, export_encoder(encoder, TINY, out, "tiny-float", False, {"source": "random init"}), \
        export_encoder(encoder, TINY, out, "tiny-int8", True, {"source": "random init"})


def test_v0_litert_float_matches_keras(v0_export):
    path, again, keras_model = v0_export
    assert again == path  # the second call found the cache
    encoder = Encoder.load(path)
    batch = encoder.windows(macho_light_curves())
    got = encoder.embed(batch)
    expected = keras_model(_feed(batch), training=False).numpy()
    assert np.abs(got - expected)[batch.valid].max() <= LITERT_TOLERANCE
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["input_contract"] == "astromer_v0_first" and meta["quantization"] == "float32"


def test_pooled_is_the_mean_over_valid_observations(v0_export):
    encoder = Encoder.load(v0_export[0])
    curves = macho_light_curves()[-2:]  # 45 and 148 points: padded windows
    batch = batch_v0(curves)
    per_obs = encoder.embed(batch)
    for row, n in enumerate(batch.valid.sum(axis=1)):
        np.testing.assert_allclose(encoder.pooled(batch)[row], per_obs[row, :n].mean(axis=0), rtol=1e-6, atol=1e-6)


def test_windows_do_not_depend_on_their_batch_neighbours(tiny_export):
    """One window alone, or among others with zero-padded invoke rows: the same pooled embedding."""
    _, path, _ = tiny_export
    encoder = Encoder.load(path, invoke_batch=4)
    curves = _macho_as_two_band()
    alone = np.concatenate([encoder.pooled(batch_twoband([lc], max_obs=32)) for lc in curves])
    together = encoder.pooled(batch_twoband(curves, max_obs=32))
    np.testing.assert_allclose(together, alone, rtol=1e-6, atol=1e-6)


def test_empty_window_pools_to_nan(tiny_export):
    encoder = Encoder.load(tiny_export[1])
    empty = LightCurve("none", np.array([]), np.array([], np.int8), np.array([]), np.array([]))
    pooled = encoder.pooled(batch_twoband([empty, _macho_as_two_band()[0]], max_obs=32))
    assert np.isnan(pooled[0]).all() and np.isfinite(pooled[1]).all()


def test_quantized_export_has_int8_weights(tiny_export):
    keras_model, float_path, int8_path = tiny_export
    assert int8_path.stat().st_size < float_path.stat().st_size
    meta = json.loads(int8_path.with_suffix(".json").read_text())
    assert meta["quantization"] == "dynamic_range_int8" and meta["config"] == TINY.to_dict()


def test_encoder_is_loaded_once_per_process(tiny_export):
    assert Encoder.load(tiny_export[1]) is Encoder.load(str(tiny_export[1]))


def test_sha256_mismatch_is_refused(tiny_export, tmp_path):
    _, path, _ = tiny_export
    copy = tmp_path / path.name
    copy.write_bytes(path.read_bytes()[:-1] + b"\0")
    copy.with_suffix(".json").write_text(path.with_suffix(".json").read_text())
    with pytest.raises(EncoderError, match="sha256 mismatch"):
        Encoder.load(copy)


def test_missing_metadata_is_refused(tiny_export, tmp_path):
    copy = tmp_path / "x.tflite"
    copy.write_bytes(tiny_export[1].read_bytes())
    with pytest.raises(EncoderError, match="metadata not found"):
        Encoder.load(copy)


def test_window_length_must_match(tiny_export):
    encoder = Encoder.load(tiny_export[1])
    with pytest.raises(EncoderError, match="takes 32"):
        encoder.embed(batch_twoband(_macho_as_two_band(), max_obs=16))


def _macho_as_two_band() -> list[LightCurve]:
    """MACHO R curves with alternate points labelled g and r (a two-band shape from real cadences)."""
    require_reference()
    return [LightCurve(lc.object_id, lc.mjd, (np.arange(len(lc.mjd)) % 2).astype(np.int8), lc.mag, lc.magerr)
            for lc in macho_light_curves()]
