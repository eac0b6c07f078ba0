"""Downstream experiments (fink_t2.train.downstream*): tasks, folds, methods, a tiny end-to-end table.

Real data from ../shared/data/labeled (skipped when absent); TensorFlow tests skip without the
``[train]`` extra.
"""
from __future__ import annotations

import numpy as np
import pytest

from fink_t2.train import data, downstream, labels

from tests.conftest import shared_path
from tests.train.test_train import needs_tf

pytestmark = pytest.mark.shared
#: PLAsTiCC classes with clearly different light curves (a periodic star, a long-lived AGN, a transient)
SEPARABLE = ("RRL", "AGN", "SNIa")


@pytest.fixture(scope="module")
def plasticc_small() -> downstream.Task:
    shared_path("data", "labeled", "plasticc_snmachine", "train")
    task = downstream.plasticc_task(max_objects=2500, seed=1)
    keep = np.isin(task.label, [task.class_names.index(c) for c in SEPARABLE])
    return _subset(task, keep)


def _subset(task: downstream.Task, keep: np.ndarray) -> downstream.Task:
    return downstream.Task(task.name, task.class_names, task.curves.subset(keep), task.label[keep],
                           None if task.fixed_test is None else task.fixed_test[keep], task.prepared.subset(keep))


@pytest.fixture(scope="module")
def bts_small() -> downstream.Task:
    shared_path("data", "labeled", "ztf_bts_antares")
    return downstream.bts_task(max_objects=300, seed=2)


def test_bts_task_classes():
    assert labels.bts_task_class("SN IIn") == "SN II"
    assert labels.bts_task_class("SN Ic-BL") == "SN Ibc"
    assert labels.bts_task_class("SN Ia-91T") == "SN Ia"
    assert labels.bts_task_class("SLSN-II") == "SLSN"
    assert labels.bts_task_class("SN Ia-CSM") == "other"
    assert labels.bts_task_class("nova") == "other"
    assert labels.bts_task_class(None) == "other"


def test_task_rows_are_aligned(plasticc_small):
    task = plasticc_small
    assert len(task.curves) == len(task.label) == len(task.prepared)
    assert list(task.curves.object_id.astype(str)) == list(task.prepared.object_id)
    assert (task.curves.n_points >= downstream.MIN_POINTS).all()
    # the baseline's GP saw exactly the magnitude points: same number per object
    assert np.array_equal(task.prepared.n_points, task.curves.n_points)
    assert np.array_equal(task.prepared.label, task.label)
    # magnitudes of S/N >= 3 fluxes: mag <= 27.5 - 2.5 log10(3 sigma) and magerr <= 2.5/ln10/3
    assert (task.curves.magerr <= 2.5 / np.log(10) / 3 + 1e-6).all()


def test_bts_test_set_is_the_science_report_val_split(bts_small):
    task = bts_small
    ids = task.curves.object_id.astype(str)
    assert np.array_equal(task.fixed_test, data.split_of(ids) == "val")
    splits = downstream.make_splits(task, spc_values=(5, 20), n_folds=2)
    for split in splits:
        assert np.array_equal(split.test, np.flatnonzero(task.fixed_test))
        assert not task.fixed_test[split.train].any() and not task.fixed_test[split.val].any()


def test_splits_disjoint_nested_capped(plasticc_small):
    task = plasticc_small
    splits = downstream.make_splits(task, spc_values=(10, 40, 100000), n_folds=3, seed=7)
    assert len(splits) == 9
    by = {(s.fold, s.spc): s for s in splits}
    for s in splits:
        assert not set(s.train) & set(s.val)
        assert not (set(s.train) | set(s.val)) & set(s.test)
        labelled = task.label[np.concatenate([s.train, s.val])]
        for c in np.unique(task.label):
            pool = int(((task.label == c) & ~np.isin(np.arange(len(task)), s.test)).sum())
            assert (labelled == c).sum() == min(s.spc, pool)  # SPC, or the whole class when smaller
            assert (task.label[s.val] == c).sum() >= 1  # every class can stop early
    for fold in range(3):
        small, large = by[(fold, 10)], by[(fold, 40)]
        assert set(small.train) | set(small.val) <= set(large.train) | set(large.val)
        assert np.array_equal(small.test, large.test)
    assert not np.array_equal(by[(0, 10)].test, by[(1, 10)].test)  # each fold its own test set
    again = downstream.make_splits(task, spc_values=(10, 40, 100000), n_folds=3, seed=7)
    assert all(np.array_equal(a.train, b.train) and np.array_equal(a.test, b.test) for a, b in zip(splits, again))


def test_feature_baseline_beats_chance(plasticc_small):
    from fink_t2.train import downstream_methods as methods

    task = plasticc_small
    ctx = methods.Context(task, raw_inputs={}, encoders={})
    split = downstream.make_splits(task, spc_values=(40,), n_folds=1)[0]
    probs = methods.METHODS["features + LR"](ctx, split, seed=0)
    assert probs.shape == (len(split.test), len(task.class_names))
    f1 = methods.metrics.macro_f1(task.label[split.test], probs)
    # the test set is ~80 % SNIa: always answering SNIa scores (0.88 + 0 + 0) / 3 ≈ 0.29, uniform guesses ≈ 0.27
    assert f1 > 0.6


# ------------------------------------------------------------------ encoders, heads, CLI (TensorFlow)


def _pretrain_folder(folder, seed=3):
    """A pretraining output folder as ``fink-t2 pretrain`` writes it (config + best weights), small random model."""
    import json

    from fink_t2.train import astromer_network as network

    config = {"d_model": 16, "layers": 1, "heads": 2, "dff": 32, "max_obs": 32, "dropout": 0.0, "pe_base": 1000.0,
              "batch_size": 32, "epochs": 1, "patience": 1, "warmup_steps": 10, "seed": seed}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pretrain.json").write_text(json.dumps({"config": config, "best_val_rmse": 0.5, "best_epoch": 1,
                                                      "baseline_val_rmse": 0.6}))
    cfg = network.EncoderConfig(variant="twoband", **{k: config[k] for k in
                                                      ("d_model", "layers", "heads", "dff", "max_obs", "dropout",
                                                       "pe_base")})
    model = network.build_pretraining_model(cfg)
    model.save_weights(str(folder / "best.weights.h5"))
    return folder, model


@needs_tf
def test_pretrained_encoder_has_the_pretraining_weights(tmp_path, plasticc_small):
    from fink_t2.train import downstream_encoders as enc

    folder, pretraining = _pretrain_folder(tmp_path / "pre")
    view = enc.ours_view(plasticc_small.curves, folder)
    encoder = view.make_encoder()
    by_name = {layer.name: layer for layer in pretraining.layers}
    compared = 0
    for layer in encoder.layers:
        for got, want in zip(layer.get_weights(), by_name[layer.name].get_weights() if layer.name in by_name else []):
            np.testing.assert_array_equal(got, want)
            compared += 1
    assert compared >= 10  # input projection, band embedding, mask token, Q/K/V/O, FFN, norms
    assert view.inputs["times"].shape == (len(plasticc_small), 32)
    # pooled = mean over valid observations of the last layer, by hand
    step = view.per_step
    valid = view.inputs["valid"]
    i = int(np.argmax(valid.sum(axis=1) < 32))  # a curve with padding
    np.testing.assert_allclose(view.pooled[i], step[i][valid[i]].mean(axis=0), rtol=1e-4, atol=1e-5)
    # a fresh copy is independent of the one fine-tuning changes
    encoder.layers[-1].set_weights([w + 1 for w in encoder.layers[-1].get_weights()])
    np.testing.assert_array_equal(view.make_encoder().layers[-1].get_weights()[0],
                                  by_name[encoder.layers[-1].name].get_weights()[0])


@needs_tf
def test_downstream_command_tiny_run(tmp_path):
    shared_path("data", "labeled", "plasticc_snmachine", "train")
    import json

    from fink_t2.cli import main

    methods = ["features + LR", "ours frozen + MLP", "ours frozen + attention"]
    code = main(["downstream", "--tasks", "plasticc", "--max-objects", "500", "--spc", "5", "10", "--folds", "2",
                 "--methods", *methods, "--docs", str(tmp_path / "docs"), "--out", str(tmp_path / "out")])
    assert code == 0
    records = json.loads((tmp_path / "out" / "records.json").read_text())["records"]
    assert len(records) == len(methods) * 2 * 2
    assert {(r["method_key"], r["fold"], r["spc"]) for r in records} == \
        {(m, f, s) for m in methods for f in (0, 1) for s in (5, 10)}
    for r in records:
        assert 0.0 <= r["macro_f1"] <= 1.0
        assert r["n_test"] > 0 and r["n_train"] > 0
    doc = (tmp_path / "docs" / "astromer-downstream.md").read_text()
    assert "| random twoband frozen + MLP |" in doc  # no --encoder: said to be random, not pretrained
    assert "No pretrained encoder was given" in doc
    assert (tmp_path / "docs" / "astromer-downstream.png").stat().st_size > 10_000
    assert (tmp_path / "docs" / "astromer-embeddings.png").stat().st_size > 10_000


@needs_tf
def test_v0_frozen_mlp_beats_chance(plasticc_small):
    """The published v0 weights on the r points, frozen, + MLP: separates a periodic star, an AGN and SNe Ia."""
    from fink_t2.train import downstream_encoders as enc
    from fink_t2.train import downstream_methods as methods

    checkpoint = shared_path("reference-models", "astromer-macho-v0")
    task = plasticc_small
    view = enc.v0_view(task.curves, checkpoint)
    assert view.label == "v0 MACHO r"
    r_points = [int((task.curves.band[task.curves.offsets[i]:task.curves.offsets[i + 1]] == 1).sum())
                for i in range(len(task))]
    np.testing.assert_array_equal(view.inputs["valid"].sum(axis=1), np.minimum(r_points, 200))
    ctx = methods.Context(task, raw_inputs={}, encoders={"v0": view})
    split = downstream.make_splits(task, spc_values=(40,), n_folds=1)[0]
    probs = methods.METHODS["v0 frozen + MLP"](ctx, split, seed=0)
    # majority-class and uniform guesses score ≈ 0.29 / 0.27 here (see the feature-baseline test)
    assert methods.metrics.macro_f1(task.label[split.test], probs) > 0.5


@needs_tf
@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_fine_tuning_starts_from_the_head_trained_on_the_frozen_encoder(tmp_path, plasticc_small, pooling):
    """Before any end-to-end step, encoder + head answer what the frozen head answers (the mean head's
    z-scoring is in the graph): fine-tuning refines a trained head instead of training a random one in
    the few epochs it has (a random head gave macro-F1 0.04-0.20 in the BTS/PLAsTiCC table, below the
    frozen head's 0.26-0.39)."""
    from fink_t2.train import downstream_encoders as enc
    from fink_t2.train import downstream_heads as heads
    from fink_t2.train import downstream_methods as methods

    folder, _ = _pretrain_folder(tmp_path / "pre")
    task = plasticc_small
    view = enc.ours_view(task.curves, folder)
    split = downstream.make_splits(task, spc_values=(40,), n_folds=1)[0]
    head = methods.train_head(view, pooling, task.label, len(task.class_names), split.train, split.val, seed=0)
    frozen = head.predict(view, split.test)
    # a head that learnt nothing would fail the next assertion: majority / uniform guesses score ≈ 0.29 / 0.27
    assert methods.metrics.macro_f1(task.label[split.test], frozen) > 0.4
    combined = heads.finetuned(view.make_encoder(), head.model, pooling, head.mean, head.scale)
    # float32 pooling in numpy vs in the graph: relative 1e-7 differences, amplified at most ~1e3 by the
    # z-scoring and the MLP on probabilities in [0, 1]
    np.testing.assert_allclose(heads.predict_proba(combined, view.rows(split.test)), frozen, atol=1e-4)


@needs_tf
def test_finetune_command_saves_a_reloadable_classifier(tmp_path, plasticc_small):
    import hashlib
    import json

    from fink_t2.cli import main
    from fink_t2.train import downstream_encoders as enc
    from fink_t2.train import downstream_heads as heads

    curves, names = _labelled_csvs(tmp_path, plasticc_small, per_class=15)
    folder, _ = _pretrain_folder(tmp_path / "pre")
    out = tmp_path / "clf"
    assert main(["finetune", "--encoder", str(folder), "--labels", str(tmp_path / "labels.csv"),
                 "--light-curves", str(tmp_path / "lc.csv"), "--head", "attention", "--out", str(out)]) == 0
    meta = json.loads((out / "classifier.json").read_text())
    assert meta["classes"] == sorted(set(names))
    assert meta["n_train"] + meta["n_val"] == len(names)
    assert meta["weights_sha256"] == hashlib.sha256((out / meta["weights"]).read_bytes()).hexdigest()
    # the stream runs dense heads only: none written, and the JSON says why
    assert meta["stream_head"] is None and "dense heads" in meta["no_stream_head_because"]
    assert not (out / "head.npz").exists()
    # the saved weights rebuild the same classifier: encoder of the folder + attention head
    view = enc.ours_view(curves, folder)
    encoder = view.make_encoder()
    head = heads.attention_mlp(encoder.output.shape[-1], len(meta["classes"]))
    model = heads.finetuned(encoder, head, "attention")
    model.load_weights(str(out / meta["weights"]))
    probs = heads.predict_proba(model, view.inputs)
    assert probs.shape == (len(names), len(meta["classes"]))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_labelled_csv_errors_are_clear(tmp_path):
    from fink_t2.train.downstream_cli import read_labelled_csv

    (tmp_path / "lc.csv").write_text("object_id,mjd,mag\na,1,20\n")
    (tmp_path / "labels.csv").write_text("object_id,label\na,SN\n")
    with pytest.raises(ValueError, match=r"missing columns \['band', 'magerr'\]"):
        read_labelled_csv(tmp_path / "lc.csv", tmp_path / "labels.csv")
    (tmp_path / "lc.csv").write_text("object_id,mjd,band,mag,magerr\na,1,g,20,0.1\na,2,i,20,0.1\n")
    with pytest.raises(ValueError, match="no labelled object with ≥ 5 g/r points"):
        read_labelled_csv(tmp_path / "lc.csv", tmp_path / "labels.csv")


def test_feature_baseline_weights_every_class_equally(plasticc_small, monkeypatch):
    """The baseline is fitted class-balanced, as the heads are (it was fitted one weight per object:
    at SPC 500 the BTS SN Ia outnumber SLSN 30 to 1 and it answered SN Ia)."""
    from fink_t2.train import downstream_methods as methods

    seen = {}
    real_fit = methods.FeatureBaseline.fit

    def spy(train, *args, **kwargs):
        seen["train"] = train
        return real_fit(train, *args, **kwargs)

    monkeypatch.setattr(methods.FeatureBaseline, "fit", staticmethod(spy))
    task = plasticc_small
    split = downstream.make_splits(task, spc_values=(1000,), n_folds=1)[0]
    labelled = task.label[np.concatenate([split.train, split.val])]
    assert np.bincount(labelled).max() > 4 * np.bincount(labelled)[np.bincount(labelled) > 0].min()  # imbalanced
    methods.METHODS["features + LR"](methods.Context(task, raw_inputs={}, encoders={}), split, seed=0)
    train = seen["train"]
    per_class = [train.weight[train.label == c].sum() for c in np.unique(train.label)]
    np.testing.assert_allclose(per_class, np.mean(per_class), rtol=1e-6)



def _labelled_csvs(tmp_path, task: downstream.Task, per_class: int):
    """``per_class`` objects of each class of ``task`` as the light-curve and label CSVs of ``finetune``."""
    import pandas as pd

    rows = np.concatenate([np.flatnonzero(task.label == c)[:per_class] for c in np.unique(task.label)])
    curves = task.curves.subset(rows)
    owner = np.repeat(curves.object_id.astype(str), curves.n_points)
    pd.DataFrame({"object_id": owner, "mjd": curves.mjd, "band": np.array(["g", "r"])[curves.band],
                  "mag": curves.mag, "magerr": curves.magerr}).to_csv(tmp_path / "lc.csv", index=False)
    names = np.array(task.class_names)[task.label[rows]]
    pd.DataFrame({"object_id": curves.object_id.astype(str), "label": names}).to_csv(tmp_path / "labels.csv",
                                                                                   index=False)
    return curves, names


@needs_tf
def test_finetune_on_the_shipped_encoder_writes_the_stream_head(tmp_path, plasticc_small, sample_payloads):
    import json

    from fink_t2.astromer.classify import AstromerStage, classify
    from fink_t2.astromer.encoder import DEFAULT_ENCODER, Encoder
    from fink_t2.astromer.head import load_head
    from fink_t2.cli import main
    from fink_t2.config import CutsConf
    from fink_t2.train import downstream_encoders as enc
    from fink_t2.train import downstream_heads as heads

    curves, names = _labelled_csvs(tmp_path, plasticc_small, per_class=15)
    out = tmp_path / "head"
    assert main(["finetune", "--labels", str(tmp_path / "labels.csv"), "--light-curves", str(tmp_path / "lc.csv"),
                 "--head", "mean", "--out", str(out)]) == 0
    meta = json.loads((out / "classifier.json").read_text())
    assert meta["stream_head"] == "head.npz"
    head = load_head(out / "head.npz")
    encoder = Encoder.load(DEFAULT_ENCODER)
    assert head.meta["encoder_sha256"] == encoder.meta["sha256"]
    assert list(head.class_names) == sorted(set(names)) == ["AGN", "RRL", "SNIa"]
    assert [layer["kind"] for layer in head.meta["layers"]] == ["standardize", "dense", "dense", "layer_norm", "dense"]
    # the numpy head on the LiteRT pooled embeddings = the saved Keras head on the same embeddings z-scored.
    # Keras runs float32 (unit roundoff 6e-8) through dot products of ≤ 256 terms in 4 layers: ≤ ~6e-5
    # relative on O(1) logits, and a probability moves by at most half a logit's change → atol 1e-4.
    pooled = encoder.pooled(encoder.windows(enc.light_curves(curves)))
    mean, scale = head.arrays["0.mean"], head.arrays["0.scale"]
    model = heads.pooled_mlp(pooled.shape[1], len(head.class_names))
    model.load_weights(str(out / meta["weights"]))
    keras_probs = heads.predict_proba(model, ((pooled - mean) / scale).astype(np.float32))
    np.testing.assert_allclose(head.predict(pooled), keras_probs, atol=1e-4, rtol=0)
    # the stream's astromer stage with that head on the sample alerts: valid probabilities, t2_snia set
    table = classify(sample_payloads, AstromerStage(encoder, head, False), None, CutsConf(stellar_counterpart=False))
    ok = table[table.t2_status == "ok"]
    assert len(ok) > 0
    probs = np.array([list(p.values()) for p in ok.t2_probs])
    assert ((probs >= 0) & (probs <= 1)).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(ok.t2_snia.to_numpy(dtype=float), probs[:, head.class_names.index("SNIa")])


def test_bts_heads_carry_t2_class_names():
    from fink_t2.train.downstream_cli import stream_class_names
    from fink_t2.train.labels import BTS_TASK_CLASSES

    assert stream_class_names("bts", BTS_TASK_CLASSES) == ["SNIa", "SNII", "SNIbc", "SLSN", "other"]
    assert stream_class_names("plasticc", ("SNIa", "RRL")) == ["SNIa", "RRL"]

