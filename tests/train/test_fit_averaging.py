"""``fit --average-best K``: the mean of the K best epochs' weights, kept only when its loss is lower."""
from __future__ import annotations

import numpy as np
import pytest

from tests.train.test_train import needs_tf


def _line_model():
    """y = w·x without bias, mean squared error: the loss of weight w on x = 1, y = 0 is w²."""
    from fink_t2.train import tf_setup

    keras = tf_setup.keras()
    model = keras.Sequential([keras.layers.Dense(1, use_bias=False, input_shape=(1,))])
    model.compile(optimizer="sgd", loss="mse")
    return model, (np.ones((1, 1), np.float32), np.zeros((1, 1), np.float32))


def _kept(*ws: float) -> list:
    return [(w * w, epoch, [np.array([[w]], np.float32)]) for epoch, w in enumerate(ws, start=1)]


@needs_tf
def test_the_average_is_kept_when_its_loss_is_lower():
    from fink_t2.train.fit import average_best_epochs

    model, validation = _line_model()
    done = average_best_epochs(model, _kept(1.0, -1.0), validation, batch_size=1)  # both loss 1, the mean 0
    assert done == {"epochs": [1, 2], "val_loss_best_epoch": 1.0, "val_loss_averaged": 0.0, "kept": "average"}
    assert model.get_weights()[0][0, 0] == 0.0


@needs_tf
def test_the_best_epoch_is_kept_when_the_average_is_worse():
    from fink_t2.train.fit import average_best_epochs

    model, validation = _line_model()
    done = average_best_epochs(model, _kept(2.0, 0.0), validation, batch_size=1)  # losses 4 and 0, the mean 1 → 1
    assert done["kept"] == "best epoch" and done["val_loss_averaged"] == pytest.approx(1.0)
    assert model.get_weights()[0][0, 0] == 0.0


@needs_tf
def test_fit_averages_the_epochs_of_lowest_validation_loss():
    from fink_t2.train import fit, tf_setup

    keras = tf_setup.keras()
    fit.seed_everything(3)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(256, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    model = keras.Sequential([keras.layers.Dense(8, activation="relu", input_shape=(4,)),
                              keras.layers.Dense(14, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="categorical_crossentropy")
    config = fit.TrainConfig(epochs=8, batch_size=32, patience=20, average_best=3)
    history = fit.fit(model, x[:192], y[:192], x[192:], y[192:], config, progress=False)
    three_best = sorted(int(i) + 1 for i in np.argsort(history["val_loss"])[:3])
    averaging = history["averaging"]
    assert averaging["epochs"] == three_best
    assert averaging["val_loss_best_epoch"] == pytest.approx(min(history["val_loss"]), rel=1e-6)
    final = fit._loss(model, (x[192:], fit.one_hot(y[192:])), 32)  # the model ends with the weights kept
    kept = averaging["val_loss_averaged"] if averaging["kept"] == "average" else averaging["val_loss_best_epoch"]
    assert final == pytest.approx(kept, rel=1e-5) and final <= averaging["val_loss_best_epoch"] * (1 + 1e-5)
