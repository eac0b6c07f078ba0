"""The ASTROMER encoder in tf_keras: the v0 variant (published weights) and our two-band variant.

Inputs of both (``build_encoder``): a dict of (B, L) tensors ``times`` (days, window mean
subtracted), ``mags`` (window mean subtracted), ``bands`` (int32 band index, 0 = g, 1 = r) and
``valid`` (bool, True = a real observation); output (B, L, d_model) per-observation embeddings.

* ``v0``: bug-compatible with ASTROMER 0.1.8 (../shared/notes/astromer.md §1, §4): Dense(1→d) of the
  magnitude + PE of the time (rates base^(−2i/d) with base 10 000, even i sin, odd i cos); each
  block LN(Dropout(MHA(x))) then LN(Dropout(FFN(·))) with no residual, FFN Dense(dff, tanh) →
  Dense(d); attention logits QKᵀ/√depth **plus** min(1, m_q + m_k) with m = 1 for padding, so
  padding is not hidden. ``bands`` is ignored.
* ``twoband``: Dense(1→d) of the magnitude (a learned mask token in place of the magnitude where
  ``probe_mask``) + Embedding(2, d) of the band + PE of the time with the configured base (pairs
  sin/cos at rate base^(−2⌊i/2⌋/d)); post-norm blocks with residuals, GELU FFN; keys of padded and
  probe-masked positions at −1e9, so they cannot reach a valid position's output.

Every weighted layer is a stock Keras layer with a name that says where it sits (``block{k}_wq``…),
which ``astromer_v0`` uses to load a checkpoint and ``copy_weights`` to move weights between the
pretraining model and the inference encoder.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from fink_t2.contract import ASTROMER_TWOBAND_MAX_OBS, ASTROMER_V0_MAX_OBS, ASTROMER_V0_PE_BASE
from fink_t2.train import tf_setup

keras = tf_setup.keras()
tf = tf_setup.tf()

VARIANTS = ("v0", "twoband")
INPUT_NAMES = ("times", "mags", "bands", "valid")
PROBE_MASK_INPUT = "probe_mask"
LAYER_NORM_EPSILON = 1e-6
#: Logit added to a hidden key (twoband): exp(−1e9) is 0 in float32, and −1e9 stays finite.
HIDDEN_KEY_LOGIT = -1e9
#: Logit added by v0 to a (query, key) pair touching a padded position (its additive mask).
V0_MASK_LOGIT = 1.0
N_BANDS = 2


@dataclass(frozen=True)
class EncoderConfig:
    """Size and variant of an encoder; ``max_obs`` = window length L (observations)."""

    variant: str = "twoband"
    d_model: int = 64
    layers: int = 2
    heads: int = 4
    dff: int = 128
    max_obs: int = ASTROMER_TWOBAND_MAX_OBS
    pe_base: float = 1000.0
    dropout: float = 0.1

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"variant {self.variant!r} not in {VARIANTS}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not a multiple of heads {self.heads}")

    def to_dict(self) -> dict:
        return asdict(self)


#: The published ASTROMER v0 MACHO size (conf.json: head_dim 256, 2 layers, 4 heads, dff 128).
V0_MACHO = EncoderConfig(variant="v0", d_model=256, layers=2, heads=4, dff=128,
                         max_obs=ASTROMER_V0_MAX_OBS, pe_base=ASTROMER_V0_PE_BASE, dropout=0.1)


@keras.utils.register_keras_serializable(package="fink_t2")
class TimeEncoding(keras.layers.Layer):
    """Sinusoidal encoding of real times (B, L) days → (B, L, depth); no weights.

    ``paired=False`` (v0): rate_i = base^(−2i/depth), even i sin, odd i cos, the rates computed in
    float32 as the original does. ``paired=True``: rate_i = base^(−2⌊i/2⌋/depth) (sin/cos pairs).
    """

    def __init__(self, depth: int, base: float, paired: bool, **kwargs):
        super().__init__(**kwargs)
        self.depth, self.base, self.paired = depth, float(base), paired

    def call(self, times):
        index = tf.range(self.depth, dtype=tf.float32)
        exponent_index = tf.floor(index / 2.0) * 2.0 if self.paired else index
        exponent = tf.divide(tf.multiply(2.0, exponent_index), float(self.depth))
        rates = tf.math.reciprocal(tf.pow(tf.constant(self.base, tf.float32), exponent))
        angle = times[..., None] * rates
        even = tf.cast(tf.math.floormod(tf.range(self.depth), 2) == 0, tf.float32)
        return even * tf.sin(angle) + (1.0 - even) * tf.cos(angle)

    def get_config(self):
        return {**super().get_config(), "depth": self.depth, "base": self.base, "paired": self.paired}


@keras.utils.register_keras_serializable(package="fink_t2")
class AttentionBias(keras.layers.Layer):
    """Additive attention logits (B, 1, L, L) from the hidden positions ``hidden`` (B, L) bool.

    ``convention="v0"``: +1 where the query or the key is hidden (not a real mask).
    ``convention="keys"``: −1e9 on every hidden key.
    """

    def __init__(self, convention: str, **kwargs):
        super().__init__(**kwargs)
        self.convention = convention

    def call(self, hidden):
        m = tf.cast(hidden, tf.float32)
        if self.convention == "v0":
            pair = tf.minimum(1.0, m[:, :, None] + m[:, None, :])
            return V0_MASK_LOGIT * pair[:, None, :, :]
        return HIDDEN_KEY_LOGIT * m[:, None, None, :]

    def get_config(self):
        return {**super().get_config(), "convention": self.convention}


@keras.utils.register_keras_serializable(package="fink_t2")
class BiasedAttention(keras.layers.Layer):
    """Multi-head softmax(QKᵀ/√depth + bias)V on projected Q, K, V (B, L, d); no weights."""

    def __init__(self, num_heads: int, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads

    def _split(self, x, depth):
        x = tf.reshape(x, (tf.shape(x)[0], -1, self.num_heads, depth))
        return tf.transpose(x, (0, 2, 1, 3))

    def call(self, inputs):
        q, k, v, bias = inputs
        width = q.shape[-1]
        depth = width // self.num_heads
        q, k, v = (self._split(t, depth) for t in (q, k, v))
        logits = tf.matmul(q, k, transpose_b=True) / tf.math.sqrt(float(depth)) + bias
        out = tf.matmul(tf.nn.softmax(logits, axis=-1), v)
        return tf.reshape(tf.transpose(out, (0, 2, 1, 3)), (tf.shape(out)[0], -1, width))

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads}


@keras.utils.register_keras_serializable(package="fink_t2")
class MaskToken(keras.layers.Layer):
    """Replaces the magnitudes where ``probe_mask`` by one learned value (a scalar weight)."""

    def build(self, input_shape):
        self.token = self.add_weight(name="token", shape=(), initializer="zeros", trainable=True)
        super().build(input_shape)

    def call(self, inputs):
        mags, probe_mask = inputs
        return tf.where(probe_mask, self.token * tf.ones_like(mags), mags)


CUSTOM_OBJECTS = {cls.__name__: cls for cls in (TimeEncoding, AttentionBias, BiasedAttention, MaskToken)}


def _inputs(cfg: EncoderConfig, with_probe_mask: bool) -> dict:
    length = cfg.max_obs
    inputs = {"times": keras.Input((length,), name="times", dtype="float32"),
              "mags": keras.Input((length,), name="mags", dtype="float32"),
              "bands": keras.Input((length,), name="bands", dtype="int32"),
              "valid": keras.Input((length,), name="valid", dtype="bool")}
    if with_probe_mask:
        inputs[PROBE_MASK_INPUT] = keras.Input((length,), name=PROBE_MASK_INPUT, dtype="bool")
    return inputs


def _embed(cfg: EncoderConfig, inputs: dict):
    """Input embedding (B, L, d): magnitude projection + time encoding (+ band embedding)."""
    layers = keras.layers
    mags = inputs["mags"]
    if cfg.variant == "twoband":
        probe = inputs.get(PROBE_MASK_INPUT)
        if probe is None:  # the inference encoder: nothing masked, same weights as in pretraining
            probe = layers.Lambda(lambda m: tf.zeros_like(m, dtype=tf.bool), name="no_probe_mask")(mags)
        mags = MaskToken(name="mask_token")([mags, probe])
    x = layers.Dense(cfg.d_model, name="inp_transform")(layers.Reshape((cfg.max_obs, 1), name="mags_column")(mags))
    pe = TimeEncoding(cfg.d_model, cfg.pe_base if cfg.variant == "twoband" else ASTROMER_V0_PE_BASE,
                      paired=cfg.variant == "twoband", name="time_encoding")(inputs["times"])
    terms = [x, pe]
    if cfg.variant == "twoband":
        terms.append(layers.Embedding(N_BANDS, cfg.d_model, name="band_embedding")(inputs["bands"]))
    x = layers.Add(name="input_embedding")(terms)
    return layers.Dropout(cfg.dropout, name="input_dropout")(x)


def _hidden_positions(cfg: EncoderConfig, inputs: dict):
    """(B, L) bool: positions no valid output may attend to (padding; probe-masked in twoband)."""
    hidden = keras.layers.Lambda(tf.logical_not, name="padding")(inputs["valid"])
    if cfg.variant == "twoband" and PROBE_MASK_INPUT in inputs:
        hidden = keras.layers.Lambda(lambda t: tf.logical_or(t[0], t[1]), name="hidden")(
            [hidden, inputs[PROBE_MASK_INPUT]])
    return hidden


def _block(cfg: EncoderConfig, x, bias, k: int):
    """One encoder block; v0 without residuals (its ``use_leak=False``), twoband with."""
    layers = keras.layers
    q, key, v = (layers.Dense(cfg.d_model, name=f"block{k}_{n}")(x) for n in ("wq", "wk", "wv"))
    att = BiasedAttention(cfg.heads, name=f"block{k}_attention")([q, key, v, bias])
    att = layers.Dense(cfg.d_model, name=f"block{k}_wo")(att)
    att = layers.Dropout(cfg.dropout, name=f"block{k}_attention_dropout")(att)
    residual = cfg.variant == "twoband"
    if residual:
        att = layers.Add(name=f"block{k}_residual_1")([x, att])
    h = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=f"block{k}_norm_1")(att)
    activation = "gelu" if residual else "tanh"
    ffn = layers.Dense(cfg.dff, activation=activation, name=f"block{k}_ffn_1")(h)
    ffn = layers.Dense(cfg.d_model, name=f"block{k}_ffn_2")(ffn)
    ffn = layers.Dropout(cfg.dropout, name=f"block{k}_ffn_dropout")(ffn)
    if residual:
        ffn = layers.Add(name=f"block{k}_residual_2")([h, ffn])
    return layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=f"block{k}_norm_2")(ffn)


def _encoder_graph(cfg: EncoderConfig, with_probe_mask: bool):
    inputs = _inputs(cfg, with_probe_mask)
    x = _embed(cfg, inputs)
    bias = AttentionBias("v0" if cfg.variant == "v0" else "keys", name="attention_bias")(
        _hidden_positions(cfg, inputs))
    for k in range(cfg.layers):
        x = _block(cfg, x, bias, k)
    return inputs, x


def build_encoder(cfg: EncoderConfig) -> "keras.Model":
    """The inference encoder: inputs {times, mags, bands, valid} (B, L) → (B, L, d_model) float32."""
    inputs, x = _encoder_graph(cfg, with_probe_mask=False)
    return keras.Model(inputs, x, name=f"astromer_{cfg.variant}_encoder")


def build_pretraining_model(cfg: EncoderConfig) -> "keras.Model":
    """Encoder + reconstruction head LN → Dense(1): (B, L) reconstructed magnitudes.

    The twoband variant takes one more input, ``probe_mask`` (B, L) bool: those magnitudes are
    replaced by the mask token and hidden as keys. v0 has none (v1 never replaced them).
    """
    inputs, x = _encoder_graph(cfg, with_probe_mask=cfg.variant == "twoband")
    x = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="head_norm")(x)
    x = keras.layers.Dense(1, name="head_dense")(x)
    out = keras.layers.Reshape((cfg.max_obs,), name="reconstruction")(x)
    return keras.Model(inputs, out, name=f"astromer_{cfg.variant}_pretraining")


def copy_weights(source: "keras.Model", target: "keras.Model") -> int:
    """Copy the weights of every layer of ``target`` found by name in ``source``; returns how many layers."""
    by_name = {layer.name: layer for layer in source.layers}
    copied = 0
    for layer in target.layers:
        if layer.weights and layer.name in by_name:
            layer.set_weights(by_name[layer.name].get_weights())
            copied += 1
    return copied
