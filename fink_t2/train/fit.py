"""Training loop for the t2 network (contract §6 set-up, scaled to this machine).

Adam(lr 0.01733…, clipnorm 1, β 0.9/0.999, ε 1e-7), the class-weighted log-loss with per-batch
class counts, EarlyStopping(val_loss, min_delta 0.001, restore best), ReduceLROnPlateau(loss,
×0.1, patience 5, cooldown 5), seeded and deterministic (``TF_DETERMINISTIC_OPS=1``). The epoch
count, batch size and early-stopping patience are parameters (the paper used ~2.6 M samples and
patience 50; the data here are ~100× smaller).
"""
from __future__ import annotations

import logging
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from fink_t2.contract import CLASS_NAMES
from fink_t2.train import tf_setup

log = logging.getLogger(__name__)

LEARNING_RATE = 0.01733092265976495


@dataclass
class TrainConfig:
    epochs: int = 40
    batch_size: int = 512
    learning_rate: float = LEARNING_RATE
    clipnorm: float = 1.0
    patience: int = 10  # EarlyStopping on val_loss
    min_delta: float = 0.001
    lr_factor: float = 0.1  # ReduceLROnPlateau on the training loss
    lr_patience: int = 5
    lr_cooldown: int = 5
    seed: int = 42
    #: "weighted_log_loss" (t2's class-balanced loss) or "cross_entropy" (sample-weighted: the
    #: class mix of the weighted training set is the prior the probabilities are calibrated to)
    loss: str = "weighted_log_loss"
    #: average the weights of this many epochs with the lowest val_loss at the end, kept only when the
    #: average's val_loss is lower than the best epoch's (0 or 1: off; the fine-tunes never average)
    average_best: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def one_hot(y: np.ndarray, n_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    return np.eye(n_classes, dtype=np.float32)[np.asarray(y)]


def seed_everything(seed: int) -> None:
    keras = tf_setup.keras()
    keras.utils.set_random_seed(seed)
    try:
        tf_setup.tf().config.experimental.enable_op_determinism()
    except (AttributeError, RuntimeError):  # pragma: no cover - older TF
        pass


LOSSES = ("weighted_log_loss", "cross_entropy")


def compile_model(model, learning_rate: float = LEARNING_RATE, clipnorm: float = 1.0, loss: str = LOSSES[0]):
    keras = tf_setup.keras()
    from fink_t2.train.network import WeightedLogLoss

    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate, beta_1=0.9, beta_2=0.999,
                                        epsilon=1e-7, clipnorm=clipnorm),
        loss=WeightedLogLoss() if loss == "weighted_log_loss" else keras.losses.CategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    return model


def _progress_callback(total_epochs: int, enabled: bool):
    """A tqdm bar over epochs with loss / val_loss / lr in the postfix."""
    keras = tf_setup.keras()
    from tqdm import tqdm

    class EpochBar(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.bar = tqdm(total=total_epochs, desc="train", unit="epoch", disable=not enabled,
                            file=sys.stderr, dynamic_ncols=True)
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            lr = float(keras.backend.get_value(self.model.optimizer.learning_rate))
            self.bar.set_postfix(loss=f"{logs.get('loss', np.nan):.4f}", val_loss=f"{logs.get('val_loss', np.nan):.4f}",
                                 lr=f"{lr:.1e}")
            self.bar.update(1)

        def on_train_end(self, logs=None):
            self.bar.close()

    return EpochBar()


def fit(model, x_train, y_train, x_val, y_val, config: TrainConfig, progress: bool = True,
        extra_callbacks: list | None = None, restore_best: bool = True,
        w_train: np.ndarray | None = None, w_val: np.ndarray | None = None) -> dict[str, list[float]]:
    """Train ``model`` in place; returns the Keras history dict plus per-epoch ``lr`` and ``seconds``.

    ``w_train``/``w_val``: per-sample weights (normalised to mean 1), used by the loss.
    """
    keras = tf_setup.keras()
    lrs: list[float] = []
    times: list[float] = []

    class Recorder(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            lrs.append(float(keras.backend.get_value(self.model.optimizer.learning_rate)))
            times.append(time.perf_counter() - self.t0)
            logs = logs or {}
            log.info("epoch %d: loss %.4f val_loss %.4f lr %.2e (%.1f s)", epoch + 1, logs.get("loss", np.nan),
                     logs.get("val_loss", np.nan), lrs[-1], times[-1])

    callbacks = [
        Recorder(),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=config.lr_factor, patience=config.lr_patience,
                                          cooldown=config.lr_cooldown, verbose=0),
        _progress_callback(config.epochs, progress),
        *(extra_callbacks or []),
    ]
    snapshots = _best_epochs(config.average_best) if restore_best and config.average_best > 1 else None
    if restore_best:
        callbacks.insert(1, keras.callbacks.EarlyStopping(monitor="val_loss", min_delta=config.min_delta,
                                                          patience=config.patience, restore_best_weights=True))
    if snapshots is not None:
        callbacks.append(snapshots)
    validation = (x_val, one_hot(y_val)) if w_val is None else (x_val, one_hot(y_val), _mean_one(w_val))
    history = model.fit(
        x_train, one_hot(y_train), sample_weight=None if w_train is None else _mean_one(w_train),
        validation_data=validation, epochs=config.epochs,
        batch_size=config.batch_size, shuffle=True, verbose=0, callbacks=callbacks,
    )
    out = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    out["lr"] = lrs
    out["seconds"] = times
    if snapshots is not None and len(snapshots.kept) > 1:
        out["averaging"] = average_best_epochs(model, snapshots.kept, validation, config.batch_size)
    return out


def _best_epochs(k: int):
    """Callback keeping ``kept``: ``(val_loss, epoch, weights)`` of the ``k`` epochs with the lowest finite
    val_loss (built here: Keras is imported only when training)."""
    keras = tf_setup.keras()

    class BestEpochs(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.kept: list[tuple[float, int, list[np.ndarray]]] = []

        def on_epoch_end(self, epoch, logs=None):
            loss = (logs or {}).get("val_loss")
            if loss is None or not np.isfinite(loss):
                return
            self.kept.append((float(loss), epoch + 1, [w.copy() for w in self.model.get_weights()]))
            self.kept.sort(key=lambda item: item[0])
            del self.kept[k:]

    return BestEpochs()


def average_best_epochs(model, kept: list[tuple[float, int, list[np.ndarray]]], validation: tuple,
                        batch_size: int) -> dict:
    """Set ``model`` to the mean of the ``kept`` epochs' weights if its val_loss (on ``validation``:
    x, one-hot y[, weights]) is below the best epoch's, else to the best epoch's weights; what was done."""
    best_loss, _, best_weights = min(kept, key=lambda item: item[0])
    averaged = [np.mean([weights[i] for _, _, weights in kept], axis=0) for i in range(len(best_weights))]
    model.set_weights(averaged)
    averaged_loss = _loss(model, validation, batch_size)
    keep_average = averaged_loss < best_loss
    if not keep_average:
        model.set_weights(best_weights)
    log.info("average of epochs %s: val_loss %.4f against the best epoch's %.4f: kept the %s",
             sorted(epoch for _, epoch, _ in kept), averaged_loss, best_loss, "average" if keep_average else "best epoch")
    return {"epochs": sorted(epoch for _, epoch, _ in kept), "val_loss_best_epoch": best_loss,
            "val_loss_averaged": averaged_loss, "kept": "average" if keep_average else "best epoch"}


def _loss(model, validation: tuple, batch_size: int) -> float:
    x, y, *weights = validation
    result = model.evaluate(x, y, sample_weight=weights[0] if weights else None, batch_size=batch_size, verbose=0)
    return float(result[0] if isinstance(result, list) else result)


def _mean_one(w: np.ndarray) -> np.ndarray:
    w = np.asarray(w, dtype=np.float32)
    return w / w.mean()


def predict_keras(model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64)
