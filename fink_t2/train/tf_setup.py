"""Importing TensorFlow for training: tf_keras (Keras 2) explicitly, quiet logs, one thread.

``tf.keras`` is Keras 3 in TF 2.21 until tfmot sets ``TF_USE_LEGACY_KERAS``; tfmot silently
fails on Keras 3 objects, so every model here is built with ``tf_keras`` (environment.md §3).
"""
from __future__ import annotations

import os

_CONFIGURED = False


class MissingTrainingStack(ImportError):
    """TensorFlow / tf_keras / tfmot are not installed (``make train-venv``)."""


def configure(threads: int | None = None) -> None:
    """Set env vars before TF is imported; ``threads`` caps TF's intra/inter-op pools."""
    global _CONFIGURED
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
    threads = threads or int(os.environ.get("FINK_T2_TRAIN_THREADS", "1"))
    if not _CONFIGURED:
        import tensorflow as tf_module

        try:
            tf_module.config.threading.set_intra_op_parallelism_threads(threads)
            tf_module.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # already initialised: keep the existing pools
            pass
        _CONFIGURED = True


def _require(module: str, purpose: str):
    """Import ``module`` or raise :class:`MissingTrainingStack` saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingTrainingStack(f"{purpose} needs {module}: make train-venv (tensorflow-cpu, tf-keras, tfmot)") \
            from exc


def tf():
    """TensorFlow, configured (quiet logs, legacy Keras, thread caps)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    tensorflow = _require("tensorflow", "training")
    configure()
    return tensorflow


def keras():
    """tf_keras (Keras 2), after TensorFlow is configured."""
    tf()
    return _require("tf_keras", "training")


def tfmot():
    """tensorflow-model-optimization (clustering, pruning), after tf_keras."""
    keras()
    return _require("tensorflow_model_optimization", "compression")
