"""A published ASTROMER v0 checkpoint directory (conf.json + TF checkpoint ``weights``) → our v0 encoder.

conf.json keys (../shared/notes/astromer.md §1): ``head_dim`` is d_model, ``layers``, ``heads``,
``dff``, ``max_obs``, ``dropout``; its ``base`` is never used by the original (the effective base is
10 000, ``ASTROMER_V0_PE_BASE``). The checkpoint is read variable by variable
(``tf.train.load_checkpoint``) and each variable is set on the layer of ``astromer_network`` that
plays its part, so a missing or extra variable is an error, not a silent partial load.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fink_t2.contract import ASTROMER_V0_PE_BASE
from fink_t2.train import tf_setup
from fink_t2.train.astromer_network import EncoderConfig, build_encoder, build_pretraining_model

CONF_FILE = "conf.json"
CHECKPOINT_PREFIX = "weights"
_ENCODER = "layer_with_weights-0"
_HEAD = "layer_with_weights-1"
_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
#: checkpoint sub-path (under an encoder layer k) → our layer name suffix
_BLOCK_PARTS = {"mha/wq": "wq", "mha/wk": "wk", "mha/wv": "wv", "mha/dense": "wo",
                "ffn/layer_with_weights-0": "ffn_1", "ffn/layer_with_weights-1": "ffn_2",
                "layernorm1": "norm_1", "layernorm2": "norm_2"}
#: Keras weight order of each layer type: Dense (kernel, bias), LayerNormalization (gamma, beta)
_WEIGHT_ORDER = {"kernel": ("kernel", "bias"), "gamma": ("gamma", "beta")}


class CheckpointError(ValueError):
    """The directory is not a usable ASTROMER v0 checkpoint."""


def read_conf(directory: Path) -> EncoderConfig:
    """The v0 ``EncoderConfig`` of a checkpoint directory's conf.json."""
    conf_path = Path(directory) / CONF_FILE
    if not conf_path.is_file():
        raise CheckpointError(f"{directory}: no {CONF_FILE} (not an ASTROMER v0 checkpoint directory)")
    conf = json.loads(conf_path.read_text())
    missing = [key for key in ("head_dim", "layers", "heads", "dff", "max_obs") if key not in conf]
    if missing:
        raise CheckpointError(f"{conf_path}: missing keys {missing}")
    if conf.get("use_leak", False):
        raise CheckpointError(f"{conf_path}: use_leak=true (residual) checkpoints are not the v0 architecture")
    return EncoderConfig(variant="v0", d_model=int(conf["head_dim"]), layers=int(conf["layers"]),
                         heads=int(conf["heads"]), dff=int(conf["dff"]), max_obs=int(conf["max_obs"]),
                         pe_base=ASTROMER_V0_PE_BASE, dropout=float(conf.get("dropout", 0.1)))


def _layer_names(cfg: EncoderConfig, with_head: bool) -> dict[str, str]:
    """checkpoint layer path → our layer name."""
    names = {f"{_ENCODER}/inp_transform": "inp_transform"}
    for k in range(cfg.layers):
        names.update({f"{_ENCODER}/enc_layers/{k}/{part}": f"block{k}_{ours}" for part, ours in _BLOCK_PARTS.items()})
    if with_head:
        names.update({f"{_HEAD}/bn_0": "head_norm", f"{_HEAD}/reg_layer": "head_dense"})
    return names


def _read_variables(directory: Path) -> dict[str, np.ndarray]:
    tf = tf_setup.tf()
    prefix = str(Path(directory) / CHECKPOINT_PREFIX)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError) as exc:
        raise CheckpointError(f"{directory}: cannot read the TF checkpoint {prefix}: {exc}") from exc
    return {name[: -len(_SUFFIX)]: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.endswith(_SUFFIX) and name.startswith((_ENCODER, _HEAD))}


def _assign(model, variables: dict[str, np.ndarray], names: dict[str, str], directory: Path) -> None:
    for path, layer_name in names.items():
        first = "kernel" if f"{path}/kernel" in variables else "gamma"
        keys = [f"{path}/{w}" for w in _WEIGHT_ORDER[first]]
        if not all(key in variables for key in keys):
            raise CheckpointError(f"{directory}: checkpoint lacks {keys}")
        layer = model.get_layer(layer_name)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        values = [variables[key] for key in keys]
        if [v.shape for v in values] != expected:
            raise CheckpointError(f"{directory}: {path} shapes {[v.shape for v in values]} != {expected} (conf.json)")
        layer.set_weights(values)


def load_v0(directory: str | Path, with_head: bool = False):
    """Our v0 encoder (or the pretraining model with its head) carrying the checkpoint's weights."""
    directory = Path(directory)
    cfg = read_conf(directory)
    model = build_pretraining_model(cfg) if with_head else build_encoder(cfg)
    variables = _read_variables(directory)
    names = _layer_names(cfg, with_head)
    _assign(model, variables, names, directory)
    placed_prefixes = tuple(path + "/" for path in names)
    extra = sorted(k for k in variables if k.startswith(_ENCODER) and not k.startswith(placed_prefixes))
    if extra:
        raise CheckpointError(f"{directory}: encoder variables not placed (conf.json layers?): {extra}")
    return model, cfg
