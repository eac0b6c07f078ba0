"""The encoders of the downstream experiments, as :class:`~fink_t2.train.downstream_methods.EncoderView`.

* ours: a pretraining output folder (``pretrain.json`` with its ``config``, ``best.weights.h5`` of the
  pretraining model, as ``fink-t2 pretrain`` writes them) → the two-band inference encoder;
* a randomly initialised two-band encoder of the same size (seeded): what pretraining adds is the
  difference between the two;
* v0: the published ASTROMER MACHO checkpoint folder, fed the r band only (it is single band).
"""
from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Callable

import numpy as np

from fink_t2.astromer.inputs import EncoderBatch, LightCurve, batch_twoband, batch_v0
from fink_t2.contract import ASTROMER_BAND_INDEX
from fink_t2.train import tf_setup
from fink_t2.train.downstream_methods import EncoderView
from fink_t2.train.pretrain_data import Corpus

PRETRAIN_STATE = "pretrain.json"
PRETRAIN_WEIGHTS = "best.weights.h5"
V0_BAND = "r"


def light_curves(curves: Corpus, band: str | None = None) -> list[LightCurve]:
    """One :class:`LightCurve` per curve of ``curves``; with ``band`` only that band's points."""
    out = []
    for i, oid in enumerate(curves.object_id):
        part = slice(int(curves.offsets[i]), int(curves.offsets[i + 1]))
        lc = LightCurve(str(oid), curves.mjd[part], curves.band[part], curves.mag[part], curves.magerr[part])
        out.append(lc if band is None else lc.select(lc.band == ASTROMER_BAND_INDEX[band]))
    return out


def feed(batch: EncoderBatch) -> dict[str, np.ndarray]:
    """The tf_keras encoder inputs of a batch (bands as int32, as the encoder graph declares them)."""
    return {"times": batch.times, "mags": batch.mags, "bands": batch.bands.astype(np.int32), "valid": batch.valid}


def twoband_inputs(curves: Corpus, max_obs: int) -> dict[str, np.ndarray]:
    """Two-band windows (g and r, the most recent ``max_obs``) of every curve."""
    return feed(batch_twoband(light_curves(curves), max_obs))


def _copies(build: Callable[[], object], model) -> Callable[[], object]:
    """A factory of fresh encoders ``build()`` with the weights ``model`` has now (fine-tuning changes a copy)."""
    weights = model.get_weights()

    def make():
        copy = build()
        copy.set_weights(weights)
        return copy

    return make


def encoder_config_of(folder: Path):
    """The :class:`EncoderConfig` of a pretraining output folder (its ``pretrain.json`` ``config``)."""
    from fink_t2.train.astromer_network import EncoderConfig

    config = json.loads((Path(folder) / PRETRAIN_STATE).read_text())["config"]
    names = {f.name for f in fields(EncoderConfig)} - {"variant"}
    return EncoderConfig(variant="twoband", **{k: v for k, v in config.items() if k in names})


def pretrained_twoband(folder: Path):
    """The two-band inference encoder with the best weights of a pretraining run in ``folder``."""
    from fink_t2.train import astromer_network as network

    cfg = encoder_config_of(folder)
    pretraining = network.build_pretraining_model(cfg)
    pretraining.load_weights(str(Path(folder) / PRETRAIN_WEIGHTS))
    encoder = network.build_encoder(cfg)
    if network.copy_weights(pretraining, encoder) == 0:
        raise ValueError(f"{folder}: no encoder layer found in {PRETRAIN_WEIGHTS}")
    return encoder


def random_twoband(cfg=None, seed: int = 0):
    """A two-band encoder with seeded random initial weights (default size: ``EncoderConfig()``)."""
    from fink_t2.train.astromer_network import EncoderConfig, build_encoder

    tf_setup.keras().utils.set_random_seed(seed)
    return build_encoder(cfg or EncoderConfig())


def ours_view(curves: Corpus, folder: Path | None, seed: int = 0) -> EncoderView:
    """Our two-band encoder from ``folder`` (a pretraining run), or random weights when ``folder`` is None."""
    from fink_t2.train.astromer_network import EncoderConfig, build_encoder

    cfg = encoder_config_of(folder) if folder is not None else EncoderConfig()
    encoder = pretrained_twoband(folder) if folder is not None else random_twoband(cfg, seed)
    label = "ours" if folder is not None else "random twoband"
    return EncoderView(label, twoband_inputs(curves, cfg.max_obs), _copies(lambda: build_encoder(cfg), encoder))


def random_view(curves: Corpus, cfg, seed: int = 0) -> EncoderView:
    """A randomly initialised two-band encoder of size ``cfg`` (the control of the pretrained one)."""
    from fink_t2.train.astromer_network import build_encoder

    encoder = random_twoband(cfg, seed)
    return EncoderView("random twoband", twoband_inputs(curves, cfg.max_obs),
                       _copies(lambda: build_encoder(cfg), encoder))


def v0_view(curves: Corpus, checkpoint: Path) -> EncoderView:
    """The published v0 encoder on the r-band points (first 200 by time, v0 normalisation)."""
    from fink_t2.train import astromer_v0
    from fink_t2.train.astromer_network import build_encoder

    encoder, cfg = astromer_v0.load_v0(Path(checkpoint))
    inputs = feed(batch_v0(light_curves(curves, band=V0_BAND), cfg.max_obs))
    return EncoderView(f"v0 MACHO {V0_BAND}", inputs, _copies(lambda: build_encoder(cfg), encoder))
