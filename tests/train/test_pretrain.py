"""Pretraining: the warm-up schedule, the TF loss against the numpy one, and a tiny real run
(beats the window-mean baseline; ``--resume`` continues from the saved epoch, as if never stopped)."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tf_keras", reason="the training stack (make train-venv) is not installed")

from fink_t2.train import pretrain, pretrain_data  # noqa: E402
from fink_t2.cli import build_parser  # noqa: E402
from fink_t2.train.cli import cmd_pretrain  # noqa: E402
from tests.conftest import shared_path  # noqa: E402

#: curves of the tiny runs: a seeded subset of the real corpus (about 45 hold-out curves)
TINY_CURVES = 900


def test_warmup_peaks_at_the_warmup_step():
    steps = np.arange(1, 5001)
    lr = pretrain.learning_rate(steps, d_model=32, warmup_steps=1500)
    assert int(steps[np.argmax(lr)]) == 1500
    assert lr.max() == pytest.approx(32 ** -0.5 * 1500 ** -0.5, rel=1e-12)
    assert (np.diff(lr[:1499]) > 0).all() and (np.diff(lr[1500:]) < 0).all()


def test_the_keras_schedule_is_the_numpy_schedule():
    schedule = pretrain._schedule_class()(32, 1500)
    for iteration in (0, 10, 1499, 4000):  # the optimizer's iteration count starts at 0: step = iteration + 1
        assert float(schedule(iteration)) == pytest.approx(float(pretrain.learning_rate(iteration + 1, 32, 1500)),
                                                           rel=1e-5)


def test_the_tf_loss_equals_the_numpy_rmse():
    tf = pretrain.tf_setup.tf()
    rng = np.random.default_rng(0)
    predicted, target = rng.normal(size=(2, 6, 10)).astype(np.float32)
    probed = rng.random((6, 10)) < 0.4
    probed[2] = False  # a window with no probed point is left out of both
    got = float(pretrain.rmse_loss(tf, tf.constant(predicted), tf.constant(target), tf.constant(probed)))
    assert got == pytest.approx(pretrain_data.probed_rmse(predicted, target, probed), rel=1e-5)


@pytest.fixture(scope="module")
def corpus_cache(tmp_path_factory):
    shared_path("data", "labeled", "ztf_bts_antares")
    path = tmp_path_factory.mktemp("corpus") / "corpus.npz"
    pretrain_data.load_corpus(path)
    return path


def _run(out, cache, epochs: int, resume: bool = False) -> dict:
    argv = ["pretrain", "--config", "tiny", "--out", str(out), "--epochs", str(epochs), "--max-curves",
            str(TINY_CURVES), "--corpus-cache", str(cache), "--no-progress"] + (["--resume"] if resume else [])
    args = build_parser().parse_args(argv)
    assert cmd_pretrain(args) == 0
    return json.loads((out / "pretrain.json").read_text())


def test_tiny_pretraining_beats_the_window_mean_and_resumes_where_it_stopped(tmp_path, corpus_cache):
    once = _run(tmp_path / "once", corpus_cache, epochs=4)
    assert [h["epoch"] for h in once["history"]] == [1, 2, 3, 4]
    # the hold-out RMSE of predicting the window mean is ~0.8 mag on these curves; learning must beat it clearly
    assert once["best_val_rmse"] < 0.9 * once["baseline_val_rmse"]
    assert (tmp_path / "once" / "best.weights.h5").is_file() and (tmp_path / "once" / "pretrain.png").is_file()

    _run(tmp_path / "split", corpus_cache, epochs=2)
    resumed = _run(tmp_path / "split", corpus_cache, epochs=4, resume=True)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4]
    assert resumed["history"][2]["steps"] == once["history"][2]["steps"]  # optimizer state restored
    # same seeds per epoch, same weights and optimizer state: the resumed run is the uninterrupted one
    # (float32 on one thread, deterministic ops; 1e-5 mag covers summation-order differences)
    for a, b in zip(resumed["history"], once["history"]):
        assert a["val_rmse"] == pytest.approx(b["val_rmse"], abs=1e-5)
