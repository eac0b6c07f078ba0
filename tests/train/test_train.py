"""Tests of fink_t2.train: metrics, labels, alert emulation, the shared preprocessing path,
the t2 network and loss, a few-epoch training → TFLite, and clustering.

TensorFlow tests skip when the ``[train]`` extra is not installed; data tests skip when
``../shared`` is absent.
"""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from fink_t2.contract import CLASS_NAMES
from fink_t2.train import labels, metrics

from tests.conftest import shared_path

HAS_TF = all(importlib.util.find_spec(m) is not None for m in ("tensorflow", "tf_keras", "tensorflow_model_optimization"))
needs_tf = pytest.mark.skipif(not HAS_TF, reason="needs the training stack: pip install -e '.[train]' "
                                                 "(tensorflow-cpu, tf-keras, tensorflow-model-optimization)")
SNIA, SNII, SNIBC = (CLASS_NAMES.index(c) for c in ("SNIa", "SNII", "SNIbc"))


# ------------------------------------------------------------------------------------ metrics


def _one_hot_probs(rows):
    """(N, 14) probabilities from {class: p} dicts, rest spread evenly."""
    out = np.zeros((len(rows), len(CLASS_NAMES)))
    for i, row in enumerate(rows):
        rest = (1.0 - sum(row.values())) / (len(CLASS_NAMES) - len(row))
        out[i] = rest
        for c, p in row.items():
            out[i, c] = p
    return out


def test_metrics_hand_made_case():
    y = np.array([SNIA, SNIA, SNIA, SNII])
    p = _one_hot_probs([{SNIA: 0.8, SNII: 0.1}, {SNIA: 0.6, SNII: 0.3}, {SNIA: 0.2, SNII: 0.7}, {SNIA: 0.3, SNII: 0.6}])
    assert metrics.accuracy(y, p) == pytest.approx(0.75)
    assert metrics.log_loss(y, p) == pytest.approx(-np.mean(np.log([0.8, 0.6, 0.2, 0.6])))
    # class-balanced: mean over present classes of the per-class mean
    assert metrics.weighted_log_loss(y, p) == pytest.approx(
        0.5 * (-np.mean(np.log([0.8, 0.6, 0.2]))) + 0.5 * (-np.log(0.6)))
    # SNIa F1: tp 2, fp 0, fn 1 -> 0.8; SNII: tp 1, fp 1, fn 0 -> 2/3
    assert metrics.macro_f1(y, p) == pytest.approx((0.8 + 2 / 3) / 2)
    # P(SNIa) positives 0.8, 0.6, 0.2 vs negative 0.3: 2 of 3 pairs ranked right
    assert metrics.snia_vs_rest_auc(y, p) == pytest.approx(2 / 3)
    # ECE with 15 bins: confidences 0.8 (ok), 0.6 (ok), 0.7 (wrong), 0.6 (ok)
    # bins: 0.6 -> [0.6, 0.667) twice: acc 1, conf 0.6; 0.7 -> [0.667, 0.733): acc 0; 0.8 -> [0.733, 0.8]: acc 1
    assert metrics.ece(y, p) == pytest.approx((2 * 0.4 + 0.7 + 0.2) / 4)


def test_metrics_weights_count_objects_once():
    y = np.array([SNIA, SNIA, SNII])
    p = _one_hot_probs([{SNIA: 0.9}, {SNIA: 0.9}, {SNII: 0.5}])
    w = np.array([0.5, 0.5, 1.0])
    assert metrics.accuracy(y, p, w) == pytest.approx(1.0)
    assert metrics.log_loss(y, p, w) == pytest.approx(-(np.log(0.9) + np.log(0.5)) / 2)


def test_age_balanced_weights_split_each_object_over_its_age_bins():
    from fink_t2.train import data

    # object a: ages 0.5, 1 (bin 0-3), 4 (3-7), 40, 50 (30-60); b: 2, 2 (0-3) and 100 d (past 60-90: joins it)
    ids = np.array(["a"] * 5 + ["b"] * 3)
    age = np.array([0.5, 1.0, 4.0, 40.0, 50.0, 2.0, 2.0, 100.0])
    w = data.age_balanced_weights(ids, age)
    np.testing.assert_allclose(w, [1 / 6, 1 / 6, 1 / 3, 1 / 6, 1 / 6, 1 / 4, 1 / 4, 1 / 2])
    assert data.age_balanced_weights(np.array([], dtype=str), np.array([])).size == 0


def test_training_weights_age_balanced_per_source_and_plasticc_factor():
    from types import SimpleNamespace

    from fink_t2.train import pipeline

    bts = SimpleNamespace(object_id=np.array(["a", "a", "a"]), age=np.array([1.0, 2.0, 40.0]),
                          weight=np.full(3, 1 / 3))
    plasticc = SimpleNamespace(object_id=np.array(["p", "p"]), age=np.array([1.0, 1.0]), weight=np.full(2, 0.5))
    parts = [("plasticc_train_alerts", plasticc), ("bts_train_alerts", bts)]
    np.testing.assert_allclose(pipeline._sample_weights(parts, 0.3), [0.15, 0.15, 1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_allclose(pipeline._sample_weights(parts, 0.3, age_balanced=True), [0.15, 0.15, 0.25, 0.25, 0.5])


def test_ztf_holdout_metrics_use_the_ztf_rows_only():
    from fink_t2.train import pipeline

    # rows 0-3 ZTF (2 SN Ia ranked above 2 SN II), rows 4-5 PLAsTiCC ranked the wrong way round
    y = np.array([SNIA, SNIA, SNII, SNII, SNIA, SNII])
    p = _one_hot_probs([{SNIA: 0.9}, {SNIA: 0.8}, {SNIA: 0.2}, {SNIA: 0.1}, {SNIA: 0.05}, {SNIA: 0.95}])
    td = pipeline.TrainingData(np.zeros((0, 1, 1)), np.zeros(0), np.zeros((6, 1, 1)), y, None,
                               w_es=np.ones(6), ztf_es=np.array([True] * 4 + [False] * 2),
                               age_es=np.array([1.0, 5.0, 1.0, 5.0, 1.0, 1.0]))
    m = pipeline.ztf_holdout_metrics(td, p)
    assert m["snia_vs_rest_auc"] == pytest.approx(1.0)  # the PLAsTiCC rows alone would give 0
    assert m["snia_vs_rest_auc_by_age_days"]["0-3"] == pytest.approx(1.0)
    assert np.isnan(m["snia_vs_rest_auc_by_age_days"]["7-14"])
    assert m["snia_purity_at_0.5"] == pytest.approx(1.0) and m["snia_completeness_at_0.5"] == pytest.approx(1.0)
    td.ztf_es[:] = False
    assert pipeline.ztf_holdout_metrics(td, p) == {}


def test_run_comparison_marks_the_best_auc():
    from fink_t2.train.science_report import run_comparison_table

    rows = [{"run": name, "seed": 7, "plasticc_weight": w, "learning_rate": 0.01733092265976495,
             "ztf_early_stopping_metrics": {"snia_vs_rest_auc": auc}}
            for name, w, auc in (("a", 0.1, 0.91), ("b", 0.3, 0.93), ("c", 1.0, float("nan")))]
    table = run_comparison_table(rows).splitlines()
    assert len(table) == 5 and table[3].startswith("| b * | 7 | 0.3 | 0.0173 | 0.930 |")
    assert {line.count("|") for line in table} == {15}  # 14 columns in every line, the separator included
    assert "*" not in table[2] + table[4]


def test_auc_ties_and_degenerate():
    assert metrics.roc_auc([True, False], [0.5, 0.5]) == pytest.approx(0.5)
    assert metrics.roc_auc([True, True, False, False], [0.9, 0.8, 0.1, 0.2]) == pytest.approx(1.0)
    assert np.isnan(metrics.roc_auc([True, True], [0.1, 0.2]))


def test_temperature_scaling_round_trip():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(400, 14)) * 3
    y = np.array([rng.choice(14, p=np.exp(row) / np.exp(row).sum()) for row in logits])
    calibrated = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    overconfident = metrics.apply_temperature(calibrated, 0.5)  # sharpened
    t = metrics.fit_temperature(y, overconfident)
    assert t == pytest.approx(2.0, rel=0.25)
    assert metrics.log_loss(y, metrics.apply_temperature(overconfident, t)) < metrics.log_loss(y, overconfident)
    # same rule as the runner
    from fink_t2.science.model import _calibrate
    np.testing.assert_allclose(metrics.apply_temperature(calibrated, 1.7), _calibrate(calibrated, 1.7), atol=1e-12)


# ------------------------------------------------------------------------------------ labels


@pytest.mark.parametrize(("bts_type", "expected"), [
    ("SN Ia", "SNIa"), ("SN Ia-91T", "SNIa"), ("SN Ia-pec", "SNIa"), ("SN Ia-91bg", "SNIa-91bg"),
    ("SN Iax", "SNIax"), ("SN Ia-CSM", None), ("SN II", "SNII"), ("SN IIn", "SNII"), ("SN IIb", "SNII"),
    ("SN IIP", "SNII"), ("SN Ib", "SNIbc"), ("SN Ic-BL", "SNIbc"), ("SN Ib/c", "SNIbc"), ("SN Ibn", "SNIbc"),
    ("SLSN-I", "SLSN-I"), ("SLSN-II", None), ("TDE", "TDE"), ("TDE-H-He", "TDE"), ("nova", None),
    ("LBV", None), ("other", None), ("SNIbc", "SNIbc"), ("SLSN", "SLSN-I"),
])
def test_bts_mapping(bts_type, expected):
    assert labels.bts_class(bts_type) == expected


# ------------------------------------------------------------------------------------ data


def _synthetic_photometry():
    from fink_t2.train.data import Photometry

    # one object: g/r detections every 2 days over 150 days, first at day 0
    mjd = 59000.0 + np.repeat(np.arange(0, 150, 2.0), 2) + np.tile([0.0, 0.1], 75)
    band = np.tile([0, 1], 75).astype(np.int8)
    flux = 1000 * np.exp(-0.5 * ((mjd - 59030) / 15) ** 2) + 10
    return Photometry("ztf", np.array(["obj"], dtype=object), np.array([SNIA]), np.array([0, mjd.size]),
                      mjd, band, flux, 0.05 * flux, np.ones(mjd.size, bool))


def test_alert_emulation_windows():
    from fink_t2.train import data

    phot = _synthetic_photometry()
    alerts = data.sample_alerts(phot, per_object=1000, seed=1)
    # eligible: detections ≤ 90 d after the first with ≥ 2 g and ≥ 2 r in the window:
    # r at day 2.1 … 88.1 (44) and g at day 4 … 90 (44)
    assert len(alerts.row) == 88
    assert alerts.mjd.max() - 59000 <= 90.0 + 0.1
    batch = data.alert_batch(phot, alerts)
    for i in range(len(batch)):
        jd = batch.hist_jd[batch.offsets[i]:batch.offsets[i + 1]]
        assert jd.max() - 2400000.5 == pytest.approx(alerts.mjd[i])
        assert jd.max() - jd.min() <= data.HISTORY_DAYS
        assert batch.jdstarthist[i] == pytest.approx(59000.0 + 2400000.5)
    # flux -> magnitude -> flux is the identity through the inference path
    from fink_t2.science.lightcurve import build_light_curves, cut_reasons
    assert all(r is None for r in cut_reasons(batch))
    lcs = build_light_curves(batch, np.arange(len(batch)))
    last = lcs.flux[0][lcs.mask[0]]
    t0 = alerts.mjd[0] - data.HISTORY_DAYS
    expected = phot.flux[(phot.mjd >= t0) & (phot.mjd <= alerts.mjd[0])]
    np.testing.assert_allclose(last, expected, rtol=1e-12)


def test_split_is_stable_and_seeded():
    from fink_t2.train import data

    ids = [f"ZTF{i:05d}" for i in range(2000)]
    split = data.split_of(ids)
    assert 0.22 < np.mean(split == "val") < 0.28
    np.testing.assert_array_equal(data.split_of(ids[:100]), split[:100])  # per object, not per list
    assert (data.split_of(ids, seed=1) != split).any()


@pytest.mark.shared
@pytest.mark.parametrize("model_file", ["default", "published"])
def test_bts_alerts_take_the_inference_path(model_file):
    """Probabilities computed by the training/evaluation path equal classify.run_stages on the same
    alerts, for the default model (its own input contract) and the published one (span grid)."""
    from fink_t2.science import classify
    from fink_t2.science import model_input
    from fink_t2.science.model import PUBLISHED_MODEL, load_model
    from fink_t2.train import data

    phot = data.read_bts(shared_path("data", "labeled", "ztf_bts_antares"), split="val")
    phot = phot.subset(np.arange(12))
    alerts = data.sample_alerts(phot, per_object=2, seed=3)
    batch = data.alert_batch(phot, alerts)
    model = load_model(None if model_file == "default" else PUBLISHED_MODEL)
    status, index, means = data.batch_gp_means(batch, phot.wavelengths)
    window = model_input.contract_of(model.meta) == model_input.WINDOW
    ours = model.predict(model_input.build_input(model.meta, means.window if window else means.span,
                                                 model_input.window_grid(means.last_t), means.age))
    reference = classify.run_stages(batch, model)
    assert status == reference.status
    ok = np.isfinite(reference.probs).all(axis=1)
    np.testing.assert_array_equal(reference.light_curves.index[ok], index)
    np.testing.assert_allclose(ours, reference.probs[ok], atol=0, rtol=0)


# ------------------------------------------------------------------------------------ network


@needs_tf
def test_weighted_log_loss_unit_pin():
    from fink_t2.train import network

    tf = network.tf
    y_true = tf.constant([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], tf.float64)
    y_pred = tf.constant([[0.9, 0.1, 0.2], [0.9, 0.4, 0.1], [0.2, 0.9, 0.2]], tf.float64)
    value = float(network.weighted_log_loss(y_true, y_pred))
    assert value == pytest.approx(0.07024034167855889)  # astronet's pin (rel 1e-6)
    assert value == pytest.approx(2 * abs(np.log(0.9)) / 3, abs=1e-15)  # exact: absent class counts in 1/3
    assert float(network.WeightedLogLoss()(y_true, y_true)) == pytest.approx(0.0, abs=1e-12)


@needs_tf
def test_architecture_matches_contract():
    from fink_t2.train import network

    model = network.build_t2()
    assert model.count_params() == network.N_PARAMETERS == 13_262
    assert model.input_shape == (None, 100, 2) and model.output_shape == (None, 14)
    pe = network.positional_encoding(100, 32)[0]
    assert pe[7, 4] == pytest.approx(np.sin(7 / 10000 ** (4 / 32)))
    assert pe[7, 5] == pytest.approx(np.cos(7 / 10000 ** (4 / 32)))


@pytest.fixture(scope="module")
def tiny_training(tmp_path_factory):
    """A 2-epoch training on a small real subset (PLAsTiCC + BTS train alerts), data cache in tmp."""
    if not HAS_TF:
        pytest.skip("needs the training stack: pip install -e '.[train]'")
    plasticc = shared_path("data", "labeled", "plasticc_snmachine", "train")
    bts = shared_path("data", "labeled", "ztf_bts_antares")
    from fink_t2.train import data, pipeline
    from fink_t2.train.fit import TrainConfig

    out = tmp_path_factory.mktemp("train")
    mp = pytest.MonkeyPatch()
    mp.setattr(data, "CACHE_DIR", out / "cache")
    spec = pipeline.DataSpec(data="ztf", plasticc_dir=str(plasticc), bts_dir=str(bts), plasticc_per_object=2,
                             bts_per_object=2, max_objects=60, seed=1)
    result = pipeline.train(spec, TrainConfig(epochs=2, batch_size=64, seed=1), out, "tiny", progress=False)
    yield out, result
    mp.undo()


@needs_tf
@pytest.mark.shared
def test_tiny_training_exports_matching_tflite(tiny_training):
    from fink_t2.science.model import load_model
    from fink_t2.train import fit

    out, result = tiny_training
    assert result["record"]["epochs_run"] == 2
    for name in ("tiny.tflite", "tiny.json", "tiny.h5", "tiny.train.json", "tiny.training.png"):
        assert (out / name).is_file()
    meta = json.loads((out / "tiny.json").read_text())
    assert meta["class_names"] == list(CLASS_NAMES) and meta["scaling"] == "robust_per_alert_per_band"
    model = load_model(out / "tiny.tflite")  # sha256 + contract checks of the runner
    x = result["data"].x_es[:40]
    np.testing.assert_allclose(model.predict(x), fit.predict_keras(result["keras"], x), atol=1e-5)


@needs_tf
@pytest.mark.shared
def test_training_records_and_compares_the_ztf_holdout(tiny_training, capsys, monkeypatch):
    from fink_t2.science.model import load_model
    from fink_t2.train import fit, pipeline
    from fink_t2.train.__main__ import main as train_main

    out, result = tiny_training
    td, record = result["data"], result["record"]
    assert td.ztf_es.any() and not td.ztf_es.all()  # BTS and PLAsTiCC rows in the hold-out
    same = lambda a, b: json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # NaN (empty age bin) too
    assert same(record["ztf_early_stopping_metrics"], pipeline.ztf_holdout_metrics(td, fit.predict_keras(result["keras"], td.x_es)))
    assert set(record["ztf_early_stopping_metrics"]) >= {"snia_vs_rest_auc", "snia_vs_rest_auc_by_age_days", "snia_ece"}
    # compare-runs re-prepares the same hold-out from the spec and scores the float TFLite
    loads = []
    monkeypatch.setattr(pipeline, "load_training_data", lambda *a: loads.append(a) or td)
    row, again = pipeline.compare_runs([out, out], "tiny")
    assert len(loads) == 1 and same(again, row)  # one data load for runs of the same data
    monkeypatch.undo()
    (row,) = pipeline.compare_runs([out], "tiny")
    expected = pipeline.ztf_holdout_metrics(td, load_model(out / "tiny.tflite").predict(td.x_es))
    assert same(row["ztf_early_stopping_metrics"], expected) and row["ztf_rows"] == int(td.ztf_es.sum())
    assert row["plasticc_weight"] == 1.0 and row["seed"] == 1 and row["learning_rate"] == record["config"]["learning_rate"]
    assert train_main(["compare-runs", str(out), "--model-id", "tiny", "--out", str(out / "cmp.json")]) == 0
    assert f"{expected['snia_vs_rest_auc']:.3f}" in capsys.readouterr().out
    assert json.loads((out / "cmp.json").read_text())[0]["seed"] == 1


@needs_tf
@pytest.mark.shared
def test_train_command_passes_its_options_and_prints_the_ztf_holdout_row(tiny_training, capsys, monkeypatch):
    from fink_t2.train import pipeline
    from fink_t2.train.__main__ import main as train_main
    from fink_t2.train.fit import TrainConfig

    out, result = tiny_training
    calls = []
    monkeypatch.setattr(pipeline, "train", lambda *a, **k: calls.append((a, k)) or result)  # the fixture's run
    rc = train_main(["train", "--data", "ztf", "--plasticc", "/p", "--bts", "/b", "--input-contract", "window_asinh_v2",
                     "--plasticc-per-object", "3", "--bts-per-object", "4", "--max-objects", "60", "--seed", "5",
                     "--plasticc-weight", "0.3", "--age-balanced", "--bts-augment-copies", "1", "--epochs", "7",
                     "--batch-size", "32", "--lr", "0.002", "--patience", "3", "--loss", "cross_entropy",
                     "--out", str(out), "--model-id", "tiny", "--no-progress"])
    assert rc == 0
    (spec, config, run_dir, model_id), kwargs = calls[0]
    assert spec == pipeline.DataSpec(data="ztf", plasticc_dir="/p", bts_dir="/b", plasticc_per_object=3,
                                     bts_per_object=4, max_objects=60, seed=5, input_contract="window_asinh_v2",
                                     plasticc_weight=0.3, bts_augment_copies=1, age_balanced=True)
    assert config == TrainConfig(epochs=7, batch_size=32, learning_rate=0.002, patience=3, seed=5, loss="cross_entropy")
    assert (run_dir, model_id, kwargs) == (out, "tiny", {"progress": False})
    printed = capsys.readouterr().out
    record = result["record"]
    assert f"{record['epochs_run']} epochs, best {record['best_epoch']}" in printed
    auc = record["ztf_early_stopping_metrics"]["snia_vs_rest_auc"]
    (row,) = [line for line in printed.splitlines() if line.startswith(f"| {out.name} ")]
    assert f"| {auc:.3f} |" in row  # the run's own hold-out AUC, in the compare-runs table format


@needs_tf
@pytest.mark.shared
def test_clustering_leaves_16_values_and_quantized_file_matches(tiny_training):
    from fink_t2.train import compress, fit
    from fink_t2.train.network import HEAD_NAME

    _, result = tiny_training
    td = result["data"]
    cfg = fit.TrainConfig(epochs=1, batch_size=64, learning_rate=1e-3, seed=1)
    clustered, _ = compress.fine_tune_clustered(result["keras"], td.x_train[:256], td.y_train[:256],
                                                td.x_es[:64], td.y_es[:64], cfg, progress=False)
    kernel = clustered.get_layer(HEAD_NAME).get_weights()[0]
    assert kernel.shape == (32, 14)
    assert np.unique(kernel).size <= compress.N_CLUSTERS
    tflite = compress.to_tflite(clustered, quantize=True)
    assert len(tflite) <= 60_000
    x = td.x_es[:32]
    np.testing.assert_allclose(compress.tflite_predict(tflite, x), fit.predict_keras(clustered, x), atol=5e-3)


def test_evaluation_caches_nothing_unless_asked(tmp_path, monkeypatch):
    """Evaluation data are not cached by default; ``cache_dir`` caches them and reloads the same inputs."""
    from fink_t2.train import data

    monkeypatch.setattr(data, "CACHE_DIR", tmp_path / "default-cache")
    bts = shared_path("data", "labeled", "ztf_bts_antares")
    fresh = data.prepare("bts", bts, split="val", per_object=1, max_objects=8)
    assert not (tmp_path / "default-cache").exists()
    cached = data.prepare("bts", bts, split="val", per_object=1, max_objects=8, cache_dir=tmp_path / "eval")
    assert len(list((tmp_path / "eval").glob("*.npz"))) == 1
    again = data.prepare("bts", bts, split="val", per_object=1, max_objects=8, cache_dir=tmp_path / "eval")
    assert len(fresh.object_id) > 0
    np.testing.assert_array_equal(fresh.object_id, cached.object_id)
    np.testing.assert_array_equal(cached.object_id, again.object_id)
    np.testing.assert_array_equal(fresh.gp_mean, cached.gp_mean)
    np.testing.assert_array_equal(cached.gp_mean, again.gp_mean)


@needs_tf
@pytest.mark.shared
def test_savedmodel_timing_of_table1(tiny_training, tmp_path):
    """Table 1's SavedModel row (`compress.time_savedmodel`, run by `make train`'s compress step): the
    model is saved, reloaded and called per alert, and the row has its size and timings."""
    from fink_t2.train import compress

    _, result = tiny_training
    x = result["data"].x_es[:20]
    row = compress.time_savedmodel(result["keras"], tmp_path / "savedmodel", x, repeats=1, n_alerts=5)
    assert row["size_bytes"] > 50_000  # variables + graph of 13,262 float32 parameters
    assert row["load_ms"] > 0 and row["inference_ms"] > 0


def test_table1_compares_with_the_published_model_not_the_default():
    """Table 1's "published_28341" row times the published Fink file on its own span-grid input: with the
    default model (window contract, 4 channels) in its place `make train` stopped at a LiteRT shape error."""
    import inspect

    from fink_t2.science import model_input
    from fink_t2.science.model import DEFAULT_MODEL, PUBLISHED_MODEL, load_model
    from fink_t2.train import table1

    assert inspect.signature(table1.measure).parameters["published"].default == PUBLISHED_MODEL != DEFAULT_MODEL
    assert model_input.contract_of(load_model(PUBLISHED_MODEL).meta) != model_input.WINDOW
    assert model_input.contract_of(load_model(DEFAULT_MODEL).meta) == model_input.WINDOW
