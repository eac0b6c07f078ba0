"""tf_keras classifiers of the downstream experiments: heads on embeddings, fine-tuning, the raw LSTM.

Sizes are the paper's (§6 of ``../shared/notes/astromer.md``) shrunk for a shared 2-core CPU:
MLP 256/128 (paper 1024/512/256) and a 2×64 LSTM (paper 2×256). Every model ends in logits;
training is Adam on the class-weighted cross-entropy (each class counts equally, as macro-F1
does), early stopping on the labelled validation slice only, best weights restored.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fink_t2.train import tf_setup

#: hidden widths of the MLP heads (paper: 1024, 512, 256)
MLP_UNITS: tuple[int, ...] = (256, 128)
#: units of each of the two LSTM layers (paper: 256)
LSTM_UNITS = 64
ATTENTION_UNITS = 64
DROPOUT = 0.3
#: logit added to padded positions before the attention softmax
MASKED_LOGIT = -1e9
ENCODER_INPUTS: tuple[str, ...] = ("times", "mags", "bands", "valid")
#: the raw LSTM reads window-mean-subtracted times in units of this many days (keeps its inputs ~1)
LSTM_TIME_SCALE_DAYS = 100.0


@dataclass(frozen=True)
class FitConfig:
    """Optimisation of one classifier: epochs (max), early-stopping patience (epochs), batch, Adam lr."""

    epochs: int = 100
    patience: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    #: early stopping watches from this epoch on: a few-object validation slice can rate the untrained
    #: epoch-1 weights best, and restoring them answered one class for every object
    min_epochs: int = 5


HEAD_FIT = FitConfig()
#: fine-tuning and the LSTM are the CPU cost of the table: capped so the whole table fits the shared 2-core machine
FINETUNE_FIT = FitConfig(epochs=5, patience=2, batch_size=64, learning_rate=3e-4, min_epochs=2)
LSTM_FIT = FitConfig(epochs=12, patience=3, batch_size=64, learning_rate=1e-3, min_epochs=3)


def _mlp(x, n_classes: int):
    layers = tf_setup.keras().layers
    for units in MLP_UNITS:
        x = layers.Dense(units, activation="relu")(x)
        x = layers.Dropout(DROPOUT)(x)
    x = layers.LayerNormalization()(x)
    return layers.Dense(n_classes, name="logits")(x)


def masked_mean(embeddings, valid):
    """Mean over the valid steps of (B, L, d) embeddings with a (B, L) mask → (B, d)."""
    tf = tf_setup.tf()
    weight = tf.cast(valid, embeddings.dtype)[..., None]
    return tf.reduce_sum(embeddings * weight, axis=1) / tf.maximum(tf.reduce_sum(weight, axis=1), 1.0)


def attention_pool(embeddings, valid):
    """Learned attention pooling over the valid steps: softmax(w·tanh(W e)) weights → (B, d)."""
    tf, layers = tf_setup.tf(), tf_setup.keras().layers
    scores = layers.Dense(1)(layers.Dense(ATTENTION_UNITS, activation="tanh")(embeddings))[..., 0]
    scores = tf.where(tf.cast(valid, bool), scores, MASKED_LOGIT)
    weights = tf.nn.softmax(scores, axis=1)[..., None]
    return tf.reduce_sum(embeddings * weights, axis=1)


def pooled_mlp(d_model: int, n_classes: int):
    """MLP on mean-pooled embeddings (B, d) → logits."""
    keras = tf_setup.keras()
    pooled = keras.Input((d_model,), name="pooled")
    return keras.Model(pooled, _mlp(pooled, n_classes), name="pooled_mlp")


def attention_mlp(d_model: int, n_classes: int):
    """Attention-pooled MLP on per-step embeddings {"embeddings": (B, L, d), "valid": (B, L)} → logits."""
    keras = tf_setup.keras()
    embeddings = keras.Input((None, d_model), name="embeddings")
    valid = keras.Input((None,), name="valid")
    logits = _mlp(attention_pool(embeddings, valid), n_classes)
    return keras.Model({"embeddings": embeddings, "valid": valid}, logits, name="attention_mlp")


def finetuned(encoder, trained_head, head: str, mean: np.ndarray | None = None, scale: np.ndarray | None = None):
    """``encoder`` (inputs dict → (B, L, d)) + a trained head, to be trained end to end.

    ``head`` "mean": ``trained_head`` is a :func:`pooled_mlp` fitted on mean-pooled embeddings z-scored
    by (``mean``, ``scale``), which are applied in the graph; "attention": an :func:`attention_mlp`.
    """
    keras = tf_setup.keras()
    inputs = {name: keras.Input(tensor.shape[1:], dtype=tensor.dtype, name=name)
              for name, tensor in encoder.input.items()}
    embeddings = encoder(inputs)
    if head == "mean":
        if mean is None or scale is None:
            raise ValueError("a fine-tuned mean head needs the z-scoring (mean, scale) it was trained with")
        mean, scale = np.asarray(mean, np.float32), np.asarray(scale, np.float32)  # the graph's dtype
        logits = trained_head((masked_mean(embeddings, inputs["valid"]) - mean) / scale)
    elif head == "attention":
        logits = trained_head({"embeddings": embeddings, "valid": inputs["valid"]})
    else:
        raise ValueError(f"head {head!r}: 'mean' or 'attention'")
    return keras.Model(inputs, logits, name=f"finetuned_{head}")


def raw_lstm(n_bands: int, n_classes: int):
    """2-layer LSTM with LayerNorm between, on (time / 100 d, magnitude, band one-hot) per valid step → logits."""
    tf, keras = tf_setup.tf(), tf_setup.keras()
    layers = keras.layers
    inputs = {name: keras.Input((None,), name=name) for name in ENCODER_INPUTS}
    steps = tf.concat([tf.stack([inputs["times"] / LSTM_TIME_SCALE_DAYS, inputs["mags"]], axis=-1),
                       tf.one_hot(tf.cast(inputs["bands"], tf.int32), n_bands)], axis=-1)
    mask = tf.cast(inputs["valid"], bool)
    x = layers.LSTM(LSTM_UNITS, return_sequences=True, dropout=DROPOUT)(steps, mask=mask)
    x = layers.LayerNormalization()(x)
    x = layers.LSTM(LSTM_UNITS, dropout=DROPOUT)(x, mask=mask)
    return keras.Model(inputs, layers.Dense(n_classes, name="logits")(x), name="raw_lstm")


def balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Per-sample weights n / (k · n_c) over the k classes present: every class weighs the same in the loss."""
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return (len(labels) / (len(classes) * counts))[inverse].astype(np.float32)


def fit(model, x_train, y_train: np.ndarray, x_val, y_val: np.ndarray, config: FitConfig):
    """Train ``model`` (logits) with early stopping on the validation loss; returns it with its best weights."""
    tf, keras = tf_setup.tf(), tf_setup.keras()
    tf.random.set_seed(config.seed)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    has_val = len(y_val) > 0
    stop = keras.callbacks.EarlyStopping(monitor="val_loss" if has_val else "loss", patience=config.patience,
                                         restore_best_weights=True, start_from_epoch=config.min_epochs)
    validation = (x_val, y_val, balanced_weights(y_val)) if has_val else None
    model.fit(x_train, y_train, sample_weight=balanced_weights(y_train), validation_data=validation,
              epochs=config.epochs, batch_size=config.batch_size, callbacks=[stop], verbose=0, shuffle=True)
    return model


def predict_raw(encoder, inputs: dict[str, np.ndarray], batch_size: int = 256) -> np.ndarray:
    """(N, L, d) outputs of ``encoder`` on ``inputs``."""
    return encoder.predict(inputs, batch_size=batch_size, verbose=0)


def predict_pooled(encoder, inputs: dict[str, np.ndarray], batch_size: int = 256) -> np.ndarray:
    """(N, d) float32 mean over the valid observations of ``encoder``'s outputs, batch by batch."""
    valid = np.asarray(inputs["valid"], dtype=np.float32)
    parts = []
    for start in range(0, len(valid), batch_size):
        part = slice(start, start + batch_size)
        out = encoder({name: values[part] for name, values in inputs.items()}, training=False).numpy()
        weight = valid[part][..., None]
        parts.append((out * weight).sum(axis=1) / np.maximum(weight.sum(axis=1), 1.0))
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 0), np.float32)


def predict_proba(model, x, batch_size: int = 256) -> np.ndarray:
    """(N, n_classes) softmax probabilities of a logits model."""
    logits = model.predict(x, batch_size=batch_size, verbose=0)
    logits = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def dense_head_layers(model, mean: np.ndarray, scale: np.ndarray) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The ``fink_t2.dense_head.v1`` layers and arrays of a :func:`pooled_mlp` ``model`` trained on inputs
    z-scored by (``mean``, ``scale``): a ``standardize`` layer, its Dense and LayerNormalization layers
    (Dropout is the identity at inference), the final logits Dense given the softmax."""
    layers_mod = tf_setup.keras().layers
    layers, arrays = [{"kind": "standardize"}], {"0.mean": mean, "0.scale": scale}
    for layer in model.layers:
        i = len(layers)
        if isinstance(layer, layers_mod.Dense):
            kernel, bias = layer.get_weights()
            layers.append({"kind": "dense", "activation": layer.get_config()["activation"]})
            arrays.update({f"{i}.kernel": kernel, f"{i}.bias": bias})
        elif isinstance(layer, layers_mod.LayerNormalization):
            if list(np.atleast_1d(layer.axis)) != [-1] and list(np.atleast_1d(layer.axis)) != [1]:
                raise ValueError(f"{layer.name}: normalises axis {layer.axis}, the head format the last one")
            gamma, beta = layer.get_weights()
            layers.append({"kind": "layer_norm", "epsilon": float(layer.epsilon)})
            arrays.update({f"{i}.gamma": gamma, f"{i}.beta": beta})
        elif not isinstance(layer, (layers_mod.InputLayer, layers_mod.Dropout)):
            raise ValueError(f"{layer.name}: a {type(layer).__name__} layer has no dense-head equivalent")
    if layers[-1] != {"kind": "dense", "activation": "linear"}:
        raise ValueError("the model must end in a linear Dense (logits)")
    layers[-1]["activation"] = "softmax"
    return layers, arrays
