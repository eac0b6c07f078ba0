"""The t2 network (tf_keras) and its class-weighted log-loss (t2-model-contract.md §5–§6).

Architecture of the no-redshift GR model: (B, 100, 2) → Conv1D(32, kernel 1, ReLU) → + fixed
sinusoidal positional encoding → one post-norm transformer block (16-head self-attention with
separate Dense(32) Q/K/V/O, scores QKᵀ/√2; FFN 128 → 32; dropout 0.1; LayerNorm ε 1e-6) →
global average pooling → dropout 0.1 → Dense(14, softmax): 13,262 parameters.

Every weighted layer is a stock Keras layer at the top level of a functional model (the
attention arithmetic is a weight-free layer), so tfmot can wrap any of them for clustering or
pruning without custom ``PrunableLayer`` code, and ``clone_model`` works.

Built with ``tf_keras`` (Keras 2): tfmot does not work with Keras 3 (environment.md §3).
"""
from __future__ import annotations

import numpy as np

from fink_t2.contract import CLASS_NAMES, GRID_LENGTH
from fink_t2.train import tf_setup

keras = tf_setup.keras()
tf = tf_setup.tf()

EMBED_DIM = 32
NUM_HEADS = 16
FF_DIM = 128
NUM_FILTERS = 32
DROPOUT = 0.1
LAYER_NORM_EPSILON = 1e-6
#: Parameter count of the published architecture (contract §5).
N_PARAMETERS = 13_262


def n_parameters(channels: int = 2) -> int:
    """Trainable parameters of ``build_t2`` with ``channels`` input channels (Conv1D: 32 per channel)."""
    return N_PARAMETERS + EMBED_DIM * (channels - 2)
HEAD_NAME = "head"  # the final Dense(14): the only layer clustered (contract §7)
INPUT_NAME = "input_1"


def positional_encoding(length: int, depth: int) -> np.ndarray:
    """(1, length, depth) fixed encoding: channel 2i = sin(p/10000^(2i/depth)), 2i+1 = cos(same)."""
    position = np.arange(length, dtype=np.float64)[:, None]
    pair = np.arange(depth, dtype=np.float64)[None, :] // 2  # i for channels 2i and 2i+1
    angle = position / np.power(10000.0, 2.0 * pair / depth)
    out = np.where(np.arange(depth)[None, :] % 2 == 0, np.sin(angle), np.cos(angle))
    return out[None].astype(np.float32)


@keras.utils.register_keras_serializable(package="fink_t2")
class AddPositionalEncoding(keras.layers.Layer):
    """Adds the fixed sinusoidal encoding (no weights)."""

    def build(self, input_shape):
        self.encoding = tf.constant(positional_encoding(int(input_shape[1]), int(input_shape[2])))
        super().build(input_shape)

    def call(self, x):
        return x + self.encoding


@keras.utils.register_keras_serializable(package="fink_t2")
class ScaledDotProductAttention(keras.layers.Layer):
    """Multi-head softmax(QKᵀ/√d_head)V on already projected Q, K, V (no weights, no mask)."""

    def __init__(self, num_heads: int, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads

    def _split(self, x, batch, length, head_dim):
        x = tf.reshape(x, (batch, length, self.num_heads, head_dim))
        return tf.transpose(x, (0, 2, 1, 3))  # (B, heads, L, d)

    def call(self, inputs):
        q, k, v = inputs
        batch, length, width = tf.shape(q)[0], tf.shape(q)[1], q.shape[-1]
        head_dim = width // self.num_heads
        q, k, v = (self._split(t, batch, length, head_dim) for t in (q, k, v))
        scores = tf.matmul(q, k, transpose_b=True) / tf.math.sqrt(tf.cast(head_dim, q.dtype))
        weights = tf.nn.softmax(scores, axis=-1)
        out = tf.transpose(tf.matmul(weights, v), (0, 2, 1, 3))
        return tf.reshape(out, (batch, length, width))

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads}


def build_t2(
    num_classes: int = len(CLASS_NAMES), length: int = GRID_LENGTH, bands: int = 2,
    embed_dim: int = EMBED_DIM, num_heads: int = NUM_HEADS, ff_dim: int = FF_DIM, droprate: float = DROPOUT,
) -> "keras.Model":
    """The t2 functional model (uncompiled): (B, length, bands) float32 → (B, num_classes) softmax."""
    layers = keras.layers
    inputs = keras.Input(shape=(length, bands), name=INPUT_NAME)
    x = layers.Conv1D(embed_dim, kernel_size=1, activation="relu", name="embedding")(inputs)
    x = AddPositionalEncoding(name="positional_encoding")(x)
    q = layers.Dense(embed_dim, name="query")(x)
    k = layers.Dense(embed_dim, name="key")(x)
    v = layers.Dense(embed_dim, name="value")(x)
    attention = ScaledDotProductAttention(num_heads, name="attention")([q, k, v])
    attention = layers.Dense(embed_dim, name="attention_output")(attention)
    attention = layers.Dropout(droprate, name="attention_dropout")(attention)
    x = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="norm_1")(layers.Add(name="residual_1")([x, attention]))
    ffn = layers.Dense(ff_dim, activation="relu", name="ffn_1")(x)
    ffn = layers.Dense(embed_dim, name="ffn_2")(ffn)
    ffn = layers.Dropout(droprate, name="ffn_dropout")(ffn)
    x = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="norm_2")(layers.Add(name="residual_2")([x, ffn]))
    x = layers.GlobalAveragePooling1D(name="pooling")(x)
    x = layers.Dropout(droprate, name="head_dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name=HEAD_NAME)(x)
    return keras.Model(inputs, outputs, name="t2")


def weighted_log_loss(y_true, y_pred):
    """t2 ``WeightedLogLoss``: −(1/C) Σ_c (1/N_c) Σ_{i∈c} y_ic ln p_ic, N_c counted in the batch.

    ``p`` is clipped to [1e-15, 1 − 1e-15] and not renormalised; a class absent from the batch
    contributes 0 but still counts in 1/C. Returns a scalar.
    """
    y_true = tf.cast(y_true, y_pred.dtype)
    p = tf.clip_by_value(y_pred, 1e-15, 1.0 - 1e-15)
    counts = tf.reduce_sum(y_true, axis=0)
    per_class = tf.reduce_sum(y_true * tf.math.log(p), axis=0) / tf.maximum(counts, 1.0)
    return -tf.reduce_mean(per_class)


@keras.utils.register_keras_serializable(package="fink_t2")
class WeightedLogLoss(keras.losses.Loss):
    """Keras wrapper of :func:`weighted_log_loss` (one value per batch)."""

    def __init__(self, name: str = "weighted_log_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return weighted_log_loss(y_true, y_pred)


CUSTOM_OBJECTS = {
    "AddPositionalEncoding": AddPositionalEncoding,
    "ScaledDotProductAttention": ScaledDotProductAttention,
    "WeightedLogLoss": WeightedLogLoss,
}
