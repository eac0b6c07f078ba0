"""v0 compatibility: our v0 encoder with the published MACHO checkpoint against ASTROMER 0.1.8 itself.

The oracle is the original library (PyPI ``ASTROMER`` 0.1.8, installed ``--no-deps`` by ``make
train-venv``): its ``Encoder`` layer loaded by its own ``load_weights``, its own ``load_numpy`` windows.
Inputs: the 10 MACHO R-band samples beside the checkpoint (../shared, not in the repository).

Tolerance of the forward pass, 1e-4: embeddings reach |e| ≈ 14; an output is 2 blocks of 256-term
float32 dot products (QKV/O, FFN) and LayerNorms; summing in another order changes each dot product by
≤ ~√256·2⁻²⁴·|terms| ≈ 1e-6 relative, ≈ 1e-5 on |e| ≈ 14 after the two blocks. 1e-4 leaves 10× for
other kernels (TFLite, oneDNN) while a wrong convention (mask sign, PE parity, base 1000 vs 10 000,
a residual) moves them by ≥ 1e-2 (``test_a_wrong_convention_is_seen``).
"""
from __future__ import annotations

import json

import importlib.util

import numpy as np
import pytest

if importlib.util.find_spec("tf_keras") is None:  # not importorskip: tf_setup must import TF first
    pytest.skip("the training stack (make train-venv) is not installed", allow_module_level=True)

from fink_t2.astromer.inputs import batch_v0  # noqa: E402
from fink_t2.contract import ASTROMER_V0_PE_BASE  # noqa: E402
from fink_t2.train.astromer_v0 import CheckpointError, load_v0, read_conf  # noqa: E402
from tests.astromer.macho import macho_light_curves, require_reference  # noqa: E402

FORWARD_TOLERANCE = 1e-4
FLOAT32_UNIT_ROUNDOFF = 2.0 ** -24


def _feed(batch):
    return {"times": batch.times, "mags": batch.mags, "bands": batch.bands.astype(np.int32), "valid": batch.valid}


@pytest.fixture(scope="module")
def reference():
    directory = require_reference()
    model, cfg = load_v0(directory)
    return directory, model, cfg


@pytest.fixture(scope="module")
def original(reference):
    """ASTROMER 0.1.8's SingleBandEncoder with the checkpoint (its import runs os.system('clear'))."""
    pytest.importorskip("ASTROMER", reason="ASTROMER 0.1.8 is not installed (make train-venv installs it)")
    from ASTROMER.models import SingleBandEncoder

    directory, _, cfg = reference
    conf = json.loads((directory / "conf.json").read_text())
    model = SingleBandEncoder(num_layers=cfg.layers, d_model=cfg.d_model, num_heads=cfg.heads, dff=cfg.dff,
                              base=conf["base"], dropout=cfg.dropout, maxlen=cfg.max_obs)
    model.load_weights(str(directory))
    return model


def _original_embed(original, batch) -> np.ndarray:
    encoder = original.model.get_layer("encoder")
    data = {"input": batch.mags[..., None], "times": batch.times[..., None],
            "mask_in": (~batch.valid).astype(np.float32)[..., None]}
    return encoder(data, training=False).numpy()


def test_conf_reads_head_dim_as_width_and_ignores_base(reference):
    _, _, cfg = reference
    assert (cfg.d_model, cfg.layers, cfg.heads, cfg.dff, cfg.max_obs) == (256, 2, 4, 128, 200)
    assert cfg.pe_base == ASTROMER_V0_PE_BASE == 10_000  # conf.json says 1000; the original never uses it


def test_forward_pass_matches_the_original(reference, original):
    _, ours, _ = reference
    batch = batch_v0(macho_light_curves())
    assert batch.valid.sum(axis=1).tolist() == [200] * 8 + [45, 148]  # two curves shorter than a window
    expected = _original_embed(original, batch)
    got = ours(_feed(batch), training=False).numpy()
    assert np.abs(got - expected)[batch.valid].max() <= FORWARD_TOLERANCE


def test_a_wrong_convention_is_seen(reference, original):
    """The check has teeth: dropping the +1 padding mask, or a 0.1 % error in the PE rates, moves the
    valid outputs by far more than the tolerance (the two short curves exercise the padding)."""
    _, ours, _ = reference
    batch = batch_v0(macho_light_curves())
    got = ours(_feed(batch), training=False).numpy()
    no_mask = batch.__class__(batch.times, batch.mags, batch.bands, np.ones_like(batch.valid), batch.object_ids)
    unmasked = _original_embed(original, no_mask)
    short = batch.valid[-2:]
    assert np.abs(unmasked[-2:] - got[-2:])[short].max() > 100 * FORWARD_TOLERANCE
    stretched = batch.__class__(batch.times * np.float32(1.001), batch.mags, batch.bands, batch.valid, batch.object_ids)
    assert np.abs(ours(_feed(stretched), training=False).numpy() - got)[batch.valid].max() > 100 * FORWARD_TOLERANCE


def _float32_mean_bound(values: np.ndarray) -> float:
    """|float32 mean − exact mean| bound: recursive summation n·u·mean|x|, plus casting each x (½ ulp)."""
    n = len(values)
    return n * FLOAT32_UNIT_ROUNDOFF * float(np.abs(values).mean()) + float(np.spacing(np.float32(np.abs(values).max())))


def test_windows_match_the_originals_up_to_its_float32_means(original):
    """Same points, same padding; time zero and magnitude zero differ only by the original's float32 sums."""
    from ASTROMER.core.data import load_numpy

    curves = macho_light_curves()
    ours = batch_v0(curves)
    arrays = [np.stack([lc.mjd, lc.mag, lc.magerr], axis=1).astype(np.float32) for lc in curves]
    first = {}
    for window in load_numpy(arrays, ids=[lc.object_id for lc in curves], batch_size=1, max_obs=200):
        first.setdefault(window["id"].numpy()[0].decode(), window)
    for row, lc in enumerate(curves):
        theirs = first[lc.object_id]
        valid = theirs["mask_in"].numpy()[0, :, 0] == 0
        np.testing.assert_array_equal(valid, ours.valid[row])
        window = slice(0, int(valid.sum()))
        for key, column, raw in (("times", ours.times, lc.mjd), ("input", ours.mags, lc.mag)):
            delta = np.abs(theirs[key].numpy()[0, :, 0] - column[row])[window].max()
            assert delta <= _float32_mean_bound(raw[window]), (lc.object_id, key, delta)


def test_missing_conf_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no conf.json"):
        read_conf(tmp_path)


def test_conf_that_does_not_fit_the_weights_is_refused(reference, tmp_path):
    """conf.json saying 3 layers over a 2-layer checkpoint: an error naming the missing variables."""
    directory, _, _ = reference
    conf = json.loads((directory / "conf.json").read_text())
    (tmp_path / "conf.json").write_text(json.dumps({**conf, "layers": 3}))
    for path in directory.glob("weights.*"):
        (tmp_path / path.name).symlink_to(path)
    with pytest.raises(CheckpointError, match="enc_layers/2"):
        load_v0(tmp_path)
