"""The ASTROMER encoder graph: shapes of both variants, and whether hidden positions are hidden.

Structural tests on small random windows (3 rows: full, 7 and 3 observations of 12); the real-data
checks are the v0 compatibility test (MACHO samples) and the export / embed tests (ZTF alerts).
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

if importlib.util.find_spec("tf_keras") is None:  # not importorskip: tf_setup must import TF first
    pytest.skip("the training stack (make train-venv) is not installed", allow_module_level=True)

from fink_t2.astromer.inputs import EncoderBatch  # noqa: E402
from fink_t2.train.astromer_network import (  # noqa: E402
    EncoderConfig, build_encoder, build_pretraining_model, copy_weights,
)

SMALL = {"d_model": 16, "layers": 2, "heads": 2, "dff": 32, "max_obs": 12, "dropout": 0.1}


def _batch(n_valid=(12, 7, 3), length=12, seed=0) -> EncoderBatch:
    rng = np.random.default_rng(seed)
    n = len(n_valid)
    valid = np.arange(length)[None, :] < np.array(n_valid)[:, None]
    times = np.where(valid, np.sort(rng.uniform(-30, 30, (n, length)), axis=1), 0).astype(np.float32)
    mags = np.where(valid, rng.normal(0, 0.5, (n, length)), 0).astype(np.float32)
    bands = np.where(valid, rng.integers(0, 2, (n, length)), 0).astype(np.int8)
    return EncoderBatch(times, mags, bands, valid, tuple(f"o{i}" for i in range(n)))


def _feed(batch: EncoderBatch, **extra) -> dict:
    feed = {"times": batch.times, "mags": batch.mags, "bands": batch.bands.astype(np.int32), "valid": batch.valid}
    feed.update(extra)
    return feed


@pytest.mark.parametrize("variant", ["v0", "twoband"])
def test_both_variants_give_one_embedding_per_observation(variant):
    cfg = EncoderConfig(variant=variant, **SMALL)
    out = build_encoder(cfg)(_feed(_batch()), training=False).numpy()
    assert out.shape == (3, 12, 16) and out.dtype == np.float32
    assert np.isfinite(out).all()


def _valid_outputs_move(variant: str, probe: bool) -> float:
    """Max |Δ| of the valid, unprobed positions' outputs when hidden positions get other inputs."""
    cfg = EncoderConfig(variant=variant, **SMALL)
    batch = _batch()
    hidden = ~batch.valid
    probe_mask = np.zeros_like(batch.valid)
    if probe:
        probe_mask[:, 1] = True  # position 1 is a real observation of every row
        hidden = hidden | probe_mask
    model = build_pretraining_model(cfg) if probe else build_encoder(cfg)
    extra = {"probe_mask": probe_mask} if probe else {}
    before = model(_feed(batch, **extra), training=False).numpy()
    changed = EncoderBatch(np.where(hidden, 99.0, batch.times).astype(np.float32),
                           np.where(hidden, -7.0, batch.mags).astype(np.float32),
                           np.where(hidden, 1, batch.bands).astype(np.int8), batch.valid, batch.object_ids)
    after = model(_feed(changed, **extra), training=False).numpy()
    return float(np.abs(after - before)[~hidden].max())


def test_twoband_hides_padded_keys():
    """Only float32 round-off (a hidden key's weight is exp(−1e9) = 0): equal to the bit."""
    assert _valid_outputs_move("twoband", probe=False) == 0.0


def test_twoband_hides_probe_masked_keys():
    assert _valid_outputs_move("twoband", probe=True) == 0.0


def test_v0_padding_leaks_into_valid_outputs():
    """The same check fails for v0 (its +1 mask does not hide padding): the test above can fail."""
    assert _valid_outputs_move("v0", probe=False) > 1e-3


def test_pretraining_head_and_weight_copy():
    cfg = EncoderConfig(variant="twoband", **SMALL)
    pretraining, encoder = build_pretraining_model(cfg), build_encoder(cfg)
    batch = _batch()
    assert pretraining(_feed(batch, probe_mask=np.zeros_like(batch.valid))).shape == (3, 12)
    n_layers = copy_weights(pretraining, encoder)
    assert n_layers == 3 + cfg.layers * 8  # mask token, input Dense, band embedding; Q K V O, 2 LN, 2 FFN
    assert len(encoder.get_weights()) + 4 == len(pretraining.get_weights())  # head LN (2) + Dense (2)
    tail = keras_model_without_head(pretraining)
    np.testing.assert_array_equal(encoder(_feed(batch)).numpy(),
                                  tail(_feed(batch, probe_mask=np.zeros_like(batch.valid))).numpy())


def keras_model_without_head(model):
    """The pretraining model cut before its head (the last encoder LayerNorm's output)."""
    import tf_keras

    last = [layer for layer in model.layers if layer.name.endswith("_norm_2")][-1]
    return tf_keras.Model(model.inputs, last.output)
