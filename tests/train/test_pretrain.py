"""Pretraining: the warm-up schedule, the TF loss against the numpy one, and a tiny real run
(beats the window-mean baseline; ``--resume`` continues from the saved epoch, as if never stopped)."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tf_keras", reason="the training stack (make train-venv) is not installed")

from fink_t2.train import pretrain, pretrain_data  # noqa: E402
from fink_t2.cli import build_parser  # noqa: E402
from fink_t2.config import git_commit  # noqa: E402
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


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, corpus_cache):
    out = tmp_path_factory.mktemp("tiny") / "once"
    return out, _run(out, corpus_cache, epochs=4)


def test_tiny_pretraining_beats_the_window_mean(tiny_run):
    out, once = tiny_run
    assert [h["epoch"] for h in once["history"]] == [1, 2, 3, 4]
    # the hold-out RMSE of predicting the window mean is ~0.8 mag on these curves; learning must beat it clearly
    assert once["best_val_rmse"] < 0.9 * once["baseline_val_rmse"]
    assert (out / "best.weights.h5").is_file() and (out / "pretrain.png").is_file()


def test_resume_continues_from_the_saved_epoch_as_if_never_stopped(tmp_path, corpus_cache, tiny_run, monkeypatch):
    _, once = tiny_run
    monkeypatch.setattr(pretrain, "git_commit", lambda: "aaaaaaa")
    _run(tmp_path / "split", corpus_cache, epochs=2)
    monkeypatch.setattr(pretrain, "git_commit", lambda: "bbbbbbb")  # resumed after a commit
    resumed = _run(tmp_path / "split", corpus_cache, epochs=4, resume=True)
    assert resumed["commits"] == ["aaaaaaa", "bbbbbbb"]
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4]
    assert resumed["history"][2]["steps"] == once["history"][2]["steps"]  # optimizer state restored
    # same seeds per epoch, same weights and optimizer state: the resumed run is the uninterrupted one
    # (float32 on one thread, deterministic ops; 1e-5 mag covers summation-order differences)
    for a, b in zip(resumed["history"], once["history"]):
        assert a["val_rmse"] == pytest.approx(b["val_rmse"], abs=1e-5)


def test_the_shipped_encoder_is_the_best_checkpoint_with_its_provenance(tmp_path, corpus_cache, tiny_run):
    from fink_t2.astromer.encoder import Encoder

    out, once = tiny_run
    argv = ["pretrain", "--config", "tiny", "--out", str(out), "--max-curves", str(TINY_CURVES), "--corpus-cache",
            str(corpus_cache), "--export-only", "--ship", str(tmp_path), "--ship-id", "tiny-gr", "--command", "test"]
    assert cmd_pretrain(build_parser().parse_args(argv)) == 0
    meta = json.loads((tmp_path / "tiny-gr.json").read_text())
    prov = meta["provenance"]
    assert prov["holdout_rmse_mag"] == once["best_val_rmse"] and prov["best_epoch"] == once["best_epoch"]
    assert prov["command"] == "test" and prov["corpus"] == once["corpus"]
    # the code that trained it (recorded as training started) and the code that shipped it: here the same
    assert prov["training_commits"] == once["commits"] == [git_commit() or "unknown"]
    assert prov["ship_commit"] == git_commit()
    assert set(prov["holdout_by_source"]) <= set(once["corpus"])
    assert meta["input_contract"] == "astromer_gr_recent" and meta["config"]["d_model"] == 16

    cfg = pretrain.CONFIGS["tiny"]
    corpus = pretrain_data.Corpus.load(corpus_cache)
    light_curves = pretrain.window_light_curves(corpus, np.arange(0, len(corpus), 97)[:40], np.zeros(40, int), 10_000)
    encoder = Encoder.load(tmp_path / "tiny-gr.tflite")
    batch = encoder.windows(light_curves)
    lite = encoder.pooled(batch)
    keras_encoder = pretrain.trained_encoder(cfg, out / "best.weights.h5")
    feed = {"times": batch.times, "mags": batch.mags, "bands": batch.bands.astype(np.int32), "valid": batch.valid}
    full = keras_encoder(feed, training=False).numpy()
    reference = (full * batch.valid[..., None]).sum(1) / batch.valid.sum(1, keepdims=True)
    # int8 weights (127 levels per tensor) perturb each matmul by ≲ 1 % of its output: pooled vectors
    # keep their direction (cosine > 0.99) — a wrong checkpoint or window gives unrelated vectors
    cosine = (lite * reference).sum(1) / np.linalg.norm(lite, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() > 0.99
