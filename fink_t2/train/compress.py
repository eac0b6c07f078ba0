"""Compression variants of a trained t2 network and their TFLite export (contract §7).

* **baseline**: the float Keras model → float TFLite (``from_keras_model``).
* **quantized**: dynamic-range int8 (``Optimize.DEFAULT``, no representative data): int8
  weights for tensors ≥ 1,024 elements, float activations and I/O.
* **clustered**: tfmot ``cluster_weights`` on the final Dense(14) only (16 clusters, LINEAR
  centroid init, not per channel), fine-tuned, ``strip_clustering`` → float TFLite. The 14×32
  kernel then holds ≤ 16 distinct values; the bias is not clustered.
* **clustered + quantized**: the same, dynamic-range int8 (the published recipe). The head has
  448 < 1,024 weights, so it stays float and keeps its 16 values.
* **pruned**: ``prune_low_magnitude`` on every Dense/Conv1D kernel (polynomial decay to the
  target sparsity), fine-tuned, ``strip_pruning`` → float TFLite (the paper found pruning hurt).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from fink_t2.train import tf_setup
from fink_t2.train.fit import TrainConfig, compile_model, fit
from fink_t2.train.network import CUSTOM_OBJECTS, HEAD_NAME
from fink_t2.train.tflite_io import (  # noqa: F401  (re-exported: the variants' export helpers)
    base_metadata, gzip_size, sha256_bytes, tensor_names, tflite_predict, time_tflite, write_model,
)

N_CLUSTERS = 16
VARIANTS = ("baseline", "quantized", "clustered", "clustered_quantized", "pruned")

def copy_model(model):
    """An independent copy (new layers, same weights)."""
    keras = tf_setup.keras()
    with keras.utils.custom_object_scope(CUSTOM_OBJECTS):
        clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def cluster_head(model, n_clusters: int = N_CLUSTERS):
    """A copy of ``model`` whose final Dense is wrapped by tfmot weight clustering (LINEAR init)."""
    keras = tf_setup.keras()
    clustering = tf_setup.tfmot().clustering.keras
    base = copy_model(model)

    def wrap(layer):
        if layer.name == HEAD_NAME:
            return clustering.cluster_weights(
                layer, number_of_clusters=n_clusters,
                cluster_centroids_init=clustering.CentroidInitialization.LINEAR)
        return layer

    with keras.utils.custom_object_scope(CUSTOM_OBJECTS):
        return keras.models.clone_model(base, clone_function=wrap)


def strip_clustering(model):
    return tf_setup.tfmot().clustering.keras.strip_clustering(model)


def prune_model(model, target_sparsity: float, end_step: int):
    """A copy with every Dense/Conv1D wrapped by ``prune_low_magnitude`` (0 → target over end_step)."""
    keras = tf_setup.keras()
    sparsity = tf_setup.tfmot().sparsity.keras
    base = copy_model(model)
    schedule = sparsity.PolynomialDecay(initial_sparsity=0.0, final_sparsity=target_sparsity,
                                        begin_step=0, end_step=max(int(end_step), 1), frequency=max(int(end_step) // 10, 1))

    def wrap(layer):
        if isinstance(layer, (keras.layers.Dense, keras.layers.Conv1D)):
            return sparsity.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    with keras.utils.custom_object_scope(CUSTOM_OBJECTS):
        return keras.models.clone_model(base, clone_function=wrap)


def fine_tune_clustered(model, x_train, y_train, x_val, y_val, config: TrainConfig, progress: bool = True,
                        w_train=None, w_val=None):
    """Cluster the head of ``model``, fine-tune, strip; returns (stripped model, history)."""
    clustered = compile_model(cluster_head(model), config.learning_rate, config.clipnorm, config.loss)
    history = fit(clustered, x_train, y_train, x_val, y_val, config, progress, w_train=w_train, w_val=w_val)
    return strip_clustering(clustered), history


def fine_tune_pruned(model, x_train, y_train, x_val, y_val, config: TrainConfig, target_sparsity: float = 0.5,
                     progress: bool = True, w_train=None, w_val=None):
    """Prune Dense/Conv1D kernels to ``target_sparsity`` while fine-tuning; returns (stripped, history)."""
    tfmot = tf_setup.tfmot()
    steps = int(np.ceil(len(x_train) / config.batch_size)) * config.epochs
    pruned = compile_model(prune_model(model, target_sparsity, end_step=max(steps - 1, 1)),
                           config.learning_rate, config.clipnorm, config.loss)
    history = fit(pruned, x_train, y_train, x_val, y_val, config, progress,
                  extra_callbacks=[tfmot.sparsity.keras.UpdatePruningStep()], restore_best=False,
                  w_train=w_train, w_val=w_val)
    return tfmot.sparsity.keras.strip_pruning(pruned), history


def to_tflite(model, quantize: bool) -> bytes:
    """TFLite FlatBuffer of a (stripped) Keras model; dynamic-range int8 when ``quantize``."""
    tf = tf_setup.tf()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def head_unique_values(model) -> int:
    """Distinct values in the final Dense kernel."""
    return int(np.unique(model.get_layer(HEAD_NAME).get_weights()[0]).size)


def sparsity_of(model) -> float:
    """Fraction of exact zeros over the Dense/Conv1D kernels."""
    keras = tf_setup.keras()
    kernels = [layer.get_weights()[0] for layer in model.layers
               if isinstance(layer, (keras.layers.Dense, keras.layers.Conv1D))]
    return float(sum((k == 0).sum() for k in kernels) / sum(k.size for k in kernels))


def time_savedmodel(model, directory: Path, x: np.ndarray, repeats: int = 3, n_alerts: int = 200) -> dict[str, float]:
    """Save as a TF SavedModel; its size, Keras load time (median) and per-alert call time."""
    keras = tf_setup.keras()
    model.save(directory, save_format="tf", include_optimizer=False)
    size = sum(p.stat().st_size for p in Path(directory).rglob("*") if p.is_file())
    loads = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        loaded = keras.models.load_model(directory, custom_objects=CUSTOM_OBJECTS, compile=False)
        loads.append(time.perf_counter() - t0)
    xs = np.ascontiguousarray(x[:n_alerts], dtype=np.float32)
    for i in range(10):
        loaded(xs[:1], training=False)
    t0 = time.perf_counter()
    for i in range(len(xs)):
        loaded(xs[i:i + 1], training=False).numpy()
    per_alert = (time.perf_counter() - t0) / len(xs)
    return {"size_bytes": size, "load_ms": 1e3 * float(np.median(loads)), "inference_ms": 1e3 * per_alert}
