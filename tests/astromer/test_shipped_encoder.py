"""The shipped two-band encoder (``make pretrain``): loads by default, is what its metadata says, and
embeds real ZTF alert histories deterministically."""
from __future__ import annotations

import numpy as np

from fink_t2.astromer.encoder import DEFAULT_ENCODER, Encoder
from fink_t2.astromer.inputs import LightCurve
from fink_t2.contract import ASTROMER_TWOBAND_MAX_OBS
from fink_t2.train.pretrain_data import read_alert_history_mags
from tests.conftest import SAMPLE_ALERTS


def _alert_light_curves() -> list[LightCurve]:
    table = read_alert_history_mags([SAMPLE_ALERTS])
    return [LightCurve(str(oid), g["mjd"].to_numpy(), g["band"].to_numpy(np.int8), g["mag"].to_numpy(),
                       g["magerr"].to_numpy()) for oid, g in table.groupby("object_id")]


def test_the_default_encoder_is_the_pretrained_two_band_encoder():
    encoder = Encoder.load()  # sha256 checked against the metadata
    assert encoder.path == DEFAULT_ENCODER.resolve()
    assert encoder.meta["input_contract"] == "astromer_gr_recent" and encoder.max_obs == ASTROMER_TWOBAND_MAX_OBS
    prov = encoder.meta["provenance"]
    # pretraining halved the reconstruction error of the "predict the window mean" baseline on the hold-out
    assert prov["holdout_rmse_mag"] < 0.6 * prov["holdout_window_mean_rmse_mag"]
    assert prov["command"] == "make pretrain" and prov["corpus"]["ztf_bts"]["light_curves"] > 1000


def test_real_alert_histories_embed_deterministically_and_distinctly():
    curves = _alert_light_curves()
    assert len(curves) > 50  # the sample alerts with at least one positive g/r detection
    encoder = Encoder.load()
    batch = encoder.windows(curves)
    first, second = encoder.pooled(batch), encoder.pooled(batch)
    assert first.shape == (len(curves), encoder.width) and np.isfinite(first).all()
    assert np.array_equal(first, second)
    # windows differ ⇔ embeddings differ: no collapse to one vector (single-point curves are all the same
    # window after mean subtraction, apart from their band)
    windows = np.concatenate([batch.times, batch.mags, batch.bands, batch.valid], axis=1)
    n_windows = len(np.unique(windows, axis=0))
    assert n_windows > 40
    assert len(np.unique(np.round(first, 4), axis=0)) == n_windows
