"""Training, compression and Table 1 pipelines behind ``fink-t2 train | compress``.

Data sets (``--data``):

* ``plasticc``: the t2 paper's set-up for Table 1 — full light curves (forced photometry,
  ±50 d) of the PLAsTiCC *training* objects (the only 14-class labelled PLAsTiCC data here)
  plus, with ``plasticc_test_dir``, the ``train`` split (75 %, seeded hash) of the PLAsTiCC
  test objects (the paper trained on the test set); 25 % of those objects held out for early
  stopping; Table 1 is measured on the test objects' ``val`` split, never seen in training.
* ``ztf``: the model for the ZTF stream — emulated alerts (30-day detection history, ≤ 90 d
  since the first detection) from the PLAsTiCC training objects (LSST g/r wavelengths, all 14
  classes) plus the *train* split of the ZTF BTS objects (ZTF wavelengths). 15 % of those
  objects (seeded hash) are held out for early stopping; the BTS *val* split is never used
  in training or model selection, only for the temperature fit and the reported metrics.

``train`` writes ``<id>.h5`` (Keras weights), ``<id>.train.json`` (data spec, configuration,
history, scaling statistics), the float TFLite ``<id>.tflite`` + metadata JSON, and the
training-curves PNG. ``compress`` re-loads those (and the cached data) to build the five
variants; the clustered + quantized one is the shippable file.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fink_t2.config import git_commit
from fink_t2.contract import CLASS_NAMES, ZTF_WAVELENGTH_A
from fink_t2.train import data as datasets
from fink_t2.train import metrics
from fink_t2.train.fit import TrainConfig

log = logging.getLogger(__name__)

DEFAULT_OUT = datasets.REPO_ROOT / "run" / "train"
ES_SEED = 4242  # object hash for the early-stopping hold-out
ES_FRACTION = {"ztf": 0.15, "plasticc": 0.25}
DEFAULT_SCALING = "robust_per_alert_per_band"
#: Training rows whose scaled input exceeds this (absolute) are dropped: per-alert robust scaling
#: divides by the grid's IQR, which can be ~0 when a band's GP mean is flat except for a narrow
#: peak, giving values up to 1e27 that overflow float32 activations (NaN loss).
MAX_ABS_INPUT = 1e4


@dataclass
class DataSpec:
    """What a model is trained on (stored in ``<id>.train.json``; reloaded by ``compress``)."""

    data: str = "ztf"  # "ztf" | "plasticc"
    plasticc_dir: str = str(datasets.PLASTICC_TRAIN_DIR)
    #: plasticc data only: also train on the ``train`` split of these test objects (the paper trained on
    #: the PLAsTiCC test set); Table 1 is then measured on their ``val`` split. "" = do not.
    plasticc_test_dir: str = ""
    bts_dir: str = str(datasets.BTS_DIR)
    plasticc_per_object: int = 6
    bts_per_object: int = 10
    history_days: float = datasets.HISTORY_DAYS
    max_objects: int | None = None  # subset for quick runs / tests
    seed: int = 42
    scaling: str = DEFAULT_SCALING
    input_contract: str = "span_grid_v1"
    #: sample weight of the PLAsTiCC rows relative to the BTS rows (objects count once per source)
    plasticc_weight: float = 1.0
    #: extra emulations of every BTS train object with cadence and noise augmentation
    #: (``data.augment_photometry``): points dropped and fluxes re-drawn within their errors
    bts_augment_copies: int = 0
    #: training rows only: within each object, every alert-age bin (``metrics.AGE_BINS``) it has rows
    #: in weighs the same, not every row (early alerts, a few per object, no longer outweighed by late
    #: ones); the early-stopping and calibration rows keep "each object once", the evaluated population
    age_balanced: bool = False

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class TrainingData:
    x_train: np.ndarray
    y_train: np.ndarray
    x_es: np.ndarray
    y_es: np.ndarray
    scaling_stats: dict | None
    description: dict = field(default_factory=dict)
    w_train: np.ndarray | None = None  # sample weights (objects count once, PLAsTiCC × plasticc_weight)
    w_es: np.ndarray | None = None
    ztf_es: np.ndarray | None = None  # (early-stopping rows,) bool: ZTF (BTS) rows, the calibration set
    age_es: np.ndarray | None = None  # (early-stopping rows,) days since the first detection at the alert

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[2])


def _robust_stats(gp_mean: np.ndarray) -> dict:
    flat = gp_mean.reshape(-1, gp_mean.shape[-1])
    q25, q50, q75 = np.percentile(flat, [25, 50, 75], axis=0)
    return {"median": q50.tolist(), "iqr": (q75 - q25).tolist()}


def load_training_data(spec: DataSpec, progress: bool = True) -> TrainingData:
    """Prepared (cached) inputs of ``spec``, split by object into train / early-stopping sets."""
    parts: list[tuple[str, datasets.Prepared]] = []
    if spec.data == "plasticc":
        parts.append(("plasticc_train_full", datasets.prepare(
            "plasticc", spec.plasticc_dir, mode="full", seed=spec.seed, max_objects=spec.max_objects, cache_dir=datasets.CACHE_DIR, progress=progress)))
        if spec.plasticc_test_dir:
            parts.append(("plasticc_test_trainsplit_full", datasets.prepare(
                "plasticc", spec.plasticc_test_dir, mode="full", split="train", seed=spec.seed,
                max_objects=spec.max_objects, cache_dir=datasets.CACHE_DIR, progress=progress)))
    elif spec.data == "ztf":
        if spec.plasticc_per_object > 0:
            parts.append(("plasticc_train_alerts", datasets.prepare(
                "plasticc", spec.plasticc_dir, mode="alert", seed=spec.seed, per_object=spec.plasticc_per_object,
                history_days=spec.history_days, max_objects=spec.max_objects, cache_dir=datasets.CACHE_DIR, progress=progress)))
        if spec.bts_per_object > 0:
            parts.append(("bts_train_alerts", datasets.prepare(
                "bts", spec.bts_dir, mode="alert", split="train", seed=spec.seed, per_object=spec.bts_per_object,
                history_days=spec.history_days, max_objects=spec.max_objects, cache_dir=datasets.CACHE_DIR, progress=progress)))
        for copy in range(1, spec.bts_augment_copies + 1):
            parts.append((f"bts_train_alerts_augmented_{copy}", datasets.prepare(
                "bts", spec.bts_dir, mode="alert", split="train", seed=spec.seed + copy, per_object=spec.bts_per_object,
                history_days=spec.history_days, max_objects=spec.max_objects, cache_dir=datasets.CACHE_DIR,
                augment_seed=spec.seed + copy, progress=progress)))
    else:
        raise ValueError(f"unknown --data {spec.data!r} (ztf | plasticc)")
    if not parts:
        raise ValueError("no training data selected")
    full = datasets.Prepared.concat([p for _, p in parts])
    held = datasets.split_of(full.object_id, seed=ES_SEED, val_fraction=ES_FRACTION[spec.data]) == "val"
    stats = _robust_stats(full.gp_mean[~held]) if spec.scaling == "robust_global" else None
    x = full.model_inputs({"input_contract": spec.input_contract, "scaling": spec.scaling, "scaling_stats": stats})
    extreme = ~(np.abs(x).max(axis=(1, 2)) <= MAX_ABS_INPUT)  # NaN counts as extreme
    weight = _sample_weights(parts, spec.plasticc_weight)  # early stopping and calibration: objects once
    train_weight = _sample_weights(parts, spec.plasticc_weight, age_balanced=True) if spec.age_balanced else weight
    is_ztf = np.concatenate([np.full(len(p), name.startswith("bts")) for name, p in parts])
    description = {
        name: {"alerts_or_curves": len(p), "objects": p.n_objects,
               "class_counts": {CLASS_NAMES[c]: int(n) for c, n in zip(*np.unique(p.label, return_counts=True))}}
        for name, p in parts
    }
    description["early_stopping_holdout"] = {"fraction_of_objects": ES_FRACTION[spec.data], "seed": ES_SEED,
                                             "rows": int((held & ~extreme).sum())}
    description["dropped_extreme_inputs"] = {"max_abs_input": MAX_ABS_INPUT, "rows": int(extreme.sum())}
    train, es = ~held & ~extreme, held & ~extreme
    description["sample_weights"] = {"each_object_once_per_source": True, "plasticc_weight": spec.plasticc_weight,
                                     "age_bins_equal_within_object": spec.age_balanced}
    return TrainingData(x[train], full.label[train], x[es], full.label[es], stats, description,
                        train_weight[train], weight[es], is_ztf[es], full.age[es])


def _sample_weights(parts: list[tuple[str, "datasets.Prepared"]], plasticc_weight: float,
                    age_balanced: bool = False) -> np.ndarray:
    """Per-row weights: each object 1 within each part (split evenly over its rows, or over its
    age bins then rows with ``age_balanced``), PLAsTiCC parts × ``plasticc_weight``, augmented
    copies share their object's weight with the original."""
    augmented = sum(name.startswith("bts_train_alerts") for name, _ in parts)
    out = []
    for name, part in parts:
        factor = plasticc_weight if name.startswith("plasticc") else 1.0 / max(augmented, 1)
        weight = datasets.age_balanced_weights(part.object_id, part.age) if age_balanced else part.weight
        out.append(weight * factor)
    return np.concatenate(out)


def _metadata(model_id: str, tflite: bytes, spec: DataSpec, stats: dict | None, description: str,
              channels: int = 2, commit: str | None = None, **extra) -> dict:
    """Model metadata; ``commit``: the code that trained it (default: this checkout's, now)."""
    from fink_t2.train.compress import base_metadata
    from fink_t2.train.network import n_parameters

    return base_metadata(
        model_id, tflite, spec.scaling, stats, input_contract=spec.input_contract, channels=channels,
        description=description,
        source=f"trained here with fink_t2.train (git {commit or git_commit() or 'unknown'})",
        reference="architecture and loss: Allam & McEwen 2021, arXiv:2105.06178; compression: Allam, Peloton & "
                  "McEwen 2023, arXiv:2303.08951 (re-implemented, no code copied)",
        parameters=n_parameters(channels),
        gp_wavelengths_A={"plasticc": datasets.PLASTICC_WAVELENGTH_A, "ztf_bts": dict(ZTF_WAVELENGTH_A)},
        **extra,
    )


def train(spec: DataSpec, config: TrainConfig, out_dir: Path, model_id: str, progress: bool = True) -> dict:
    """Train the float model; write weights, float TFLite + metadata, history and curves."""
    from fink_t2.train import compress, fit, network, plots

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    commit = git_commit()  # the code as training starts (the checkout may move on during a 40-min run)
    t0 = time.perf_counter()
    td = load_training_data(spec, progress)
    prep_seconds = time.perf_counter() - t0
    log.info("training data: %d train, %d early-stopping rows (%.1f s)", len(td.y_train), len(td.y_es), prep_seconds)
    fit.seed_everything(config.seed)
    model = fit.compile_model(network.build_t2(bands=td.channels), config.learning_rate, config.clipnorm, config.loss)
    t0 = time.perf_counter()
    history = fit.fit(model, td.x_train, td.y_train, td.x_es, td.y_es, config, progress,
                      w_train=td.w_train, w_val=td.w_es)
    train_seconds = time.perf_counter() - t0
    model.save_weights(out_dir / f"{model_id}.h5")
    p_es = fit.predict_keras(model, td.x_es)
    es_metrics = metrics.summary(td.y_es, p_es, td.w_es)
    ztf_es_metrics = ztf_holdout_metrics(td, p_es)
    tflite = compress.to_tflite(model, quantize=False)
    record = {
        "model_id": model_id, "spec": spec.as_dict(), "config": config.as_dict(), "history": history,
        "scaling_stats": td.scaling_stats, "data": td.description, "early_stopping_metrics": es_metrics,
        "ztf_early_stopping_metrics": ztf_es_metrics,
        "best_epoch": int(np.argmin(history["val_loss"])) + 1 if history.get("val_loss") else None,
        "epochs_run": len(history["loss"]), "train_seconds": train_seconds, "prep_seconds": prep_seconds,
        "n_train": int(len(td.y_train)), "n_early_stopping": int(len(td.y_es)), "git": commit,
        "channels": td.channels,
    }
    (out_dir / f"{model_id}.train.json").write_text(json.dumps(record, indent=1) + "\n")
    meta = _metadata(model_id, tflite, spec, td.scaling_stats,
                     f"t2 float baseline trained on {spec.data} data", channels=td.channels, commit=commit,
                     training=_training_summary(record))
    path = compress.write_model(out_dir, model_id, tflite, meta)
    plots.training_curves({"baseline": history}, out_dir / f"{model_id}.training.png",
                          title=f"{model_id}: {spec.data} data, {len(td.y_train)} train rows")
    return {"model": path, "record": record, "keras": model, "data": td}


def ztf_holdout_metrics(td: TrainingData, p_es: np.ndarray) -> dict:
    """SN Ia keys of ``evaluate`` (``metrics.snia_metrics``) on the ZTF (BTS) rows of the early-stopping
    hold-out, each object once: where runs with other PLAsTiCC weights, seeds or options are compared
    (these rows and their weights do not depend on the PLAsTiCC weight; ``early_stopping_metrics``
    mixes in the PLAsTiCC rows, weighted by it). Empty without ZTF rows."""
    rows = td.ztf_es
    if rows is None or td.age_es is None or not rows.any():
        return {}
    return metrics.snia_metrics(td.y_es[rows], p_es[rows], td.age_es[rows], td.w_es[rows] if td.w_es is not None else None)


#: DataSpec fields that change only the training weights: runs differing in them share the early-stopping
#: rows, and the weights of its ZTF rows (``ztf_holdout_metrics``)
_WEIGHT_ONLY_FIELDS = ("plasticc_weight", "age_balanced")


def comparison_row(run: Path | str, record: dict, td: TrainingData, ztf_metrics: dict) -> dict:
    """One ``compare-runs`` row: what the run varied (from its ``.train.json`` record) and its metrics."""
    spec, config = record["spec"], record["config"]
    return {"run": str(run), "seed": spec["seed"], "plasticc_weight": spec["plasticc_weight"],
            "learning_rate": config["learning_rate"], "input_contract": spec["input_contract"],
            "age_balanced": spec.get("age_balanced", False), "bts_augment_copies": spec["bts_augment_copies"],
            "ztf_rows": int(td.ztf_es.sum()), "ztf_early_stopping_metrics": ztf_metrics}


def compare_runs(run_dirs: list[Path], model_id: str, progress: bool = False) -> list[dict]:
    """``ztf_holdout_metrics`` of the float TFLite ``<id>.tflite`` of each training run folder, its data
    re-prepared from its ``.train.json`` spec (cached; once for runs that differ only in weights); runs
    trained before that key existed included."""
    from fink_t2.science.model import load_model

    prepared: dict[str, TrainingData] = {}
    rows = []
    for run in map(Path, run_dirs):
        record = json.loads((run / f"{model_id}.train.json").read_text())
        spec = DataSpec(**record["spec"])
        key = json.dumps({k: v for k, v in spec.as_dict().items() if k not in _WEIGHT_ONLY_FIELDS}, sort_keys=True)
        if key not in prepared:
            prepared[key] = load_training_data(spec, progress)
        td = prepared[key]
        p_es = load_model(run / f"{model_id}.tflite").predict(td.x_es)
        rows.append(comparison_row(run, record, td, ztf_holdout_metrics(td, p_es)))
    return rows


def _training_summary(record: dict) -> dict:
    return {
        "data": record["spec"], "counts": record["data"], "config": record["config"],
        "epochs_run": record["epochs_run"], "best_epoch": record["best_epoch"],
        "early_stopping_metrics": record["early_stopping_metrics"], "train_seconds": round(record["train_seconds"], 1),
    }


def _calibration(td: TrainingData, p_es: np.ndarray) -> tuple[float, dict]:
    """Temperature fitted on the ZTF rows of the early-stopping hold-out (training objects, never val).

    With the cross-entropy loss the probabilities already carry the training prior of the
    object-weighted BTS mix (the ZTF population the stream sees); T only corrects over- or
    under-confidence. With t2's class-balanced loss T cannot fix the uniform prior: stated.
    """
    rows = td.ztf_es if td.ztf_es is not None and td.ztf_es.any() else np.ones(len(td.y_es), bool)
    if not rows.any():
        return 1.0, {"method": "none (no early-stopping rows)"}
    t = metrics.fit_temperature(td.y_es[rows], p_es[rows], td.w_es[rows] if td.w_es is not None else None)
    p_cal = metrics.apply_temperature(p_es[rows], t)
    return t, {"method": "temperature scaling p ∝ p^(1/T), T minimising the object-weighted log-loss",
               "fitted_on": "ZTF BTS rows of the early-stopping hold-out (train-split objects; never the val split)",
               "rows": int(rows.sum()),
               "snia_ece_before": metrics.snia_ece(td.y_es[rows], p_es[rows], td.w_es[rows] if td.w_es is not None else None),
               "snia_ece_after": metrics.snia_ece(td.y_es[rows], p_cal, td.w_es[rows] if td.w_es is not None else None)}


def load_trained(out_dir: Path, model_id: str):
    """(Keras model with the trained weights, its ``train.json`` record)."""
    from fink_t2.train import fit, network

    record = json.loads((Path(out_dir) / f"{model_id}.train.json").read_text())
    fit.seed_everything(record["config"]["seed"])  # deterministic ops refuse unseeded initialisers
    model = network.build_t2(bands=record.get("channels", 2))
    model.load_weights(Path(out_dir) / f"{model_id}.h5")
    return model, record


def compress_variants(out_dir: Path, model_id: str, cluster_epochs: int = 10, cluster_lr: float = 1e-3,
                      prune_epochs: int = 2, prune_sparsity: float = 0.5, progress: bool = True,
                      keras_model=None, record: dict | None = None, training: TrainingData | None = None) -> dict:
    """Build, export and describe the five variants; returns {variant: info}."""
    from fink_t2.train import compress, fit

    out_dir = Path(out_dir)
    if keras_model is None or record is None:
        keras_model, record = load_trained(out_dir, model_id)
    spec = DataSpec(**record["spec"])
    td = training or load_training_data(spec, progress)
    base_cfg = TrainConfig(**record["config"])
    fit.seed_everything(base_cfg.seed)
    tune = TrainConfig(**{**record["config"], "epochs": cluster_epochs, "learning_rate": cluster_lr,
                          "patience": max(3, cluster_epochs // 2), "average_best": 0})
    t0 = time.perf_counter()
    clustered, cluster_hist = compress.fine_tune_clustered(keras_model, td.x_train, td.y_train, td.x_es, td.y_es,
                                                           tune, progress, td.w_train, td.w_es)
    cluster_seconds = time.perf_counter() - t0
    prune_cfg = TrainConfig(**{**record["config"], "epochs": prune_epochs, "learning_rate": cluster_lr,
                               "average_best": 0})
    t0 = time.perf_counter()
    pruned, prune_hist = compress.fine_tune_pruned(keras_model, td.x_train, td.y_train, td.x_es, td.y_es,
                                                   prune_cfg, prune_sparsity, progress, td.w_train, td.w_es)
    prune_seconds = time.perf_counter() - t0
    models = {"baseline": (keras_model, False), "quantized": (keras_model, True), "clustered": (clustered, False),
              "clustered_quantized": (clustered, True), "pruned": (pruned, False)}
    notes = {
        "baseline": "float32 TFLite of the trained model",
        "quantized": "dynamic-range int8 weights (Optimize.DEFAULT), float activations",
        "clustered": f"final Dense clustered ({compress.N_CLUSTERS} clusters, LINEAR init), fine-tuned "
                     f"{len(cluster_hist['loss'])} epochs, float32",
        "clustered_quantized": "clustered + dynamic-range int8 (the published recipe)",
        "pruned": f"Dense/Conv1D kernels pruned to {compress.sparsity_of(pruned):.0%} sparsity "
                  f"({prune_epochs} fine-tuning epochs), float32",
    }
    out = {}
    for variant, (km, quantize) in models.items():
        tflite = compress.to_tflite(km, quantize)
        vid = f"{model_id}-{variant.replace('_', '-')}"
        p_keras_es = fit.predict_keras(km, td.x_es)
        p_tfl_es = compress.tflite_predict(tflite, td.x_es)
        temperature, calibration = _calibration(td, p_tfl_es)
        info = {
            "variant": variant, "note": notes[variant], "size_bytes": len(tflite), "gzip_bytes": compress.gzip_size(tflite),
            "head_unique_values": compress.head_unique_values(km), "kernel_sparsity": compress.sparsity_of(km),
            "max_abs_diff_vs_keras": float(np.abs(p_keras_es - p_tfl_es).max()) if len(td.x_es) else None,
            "early_stopping_metrics": metrics.summary(td.y_es, p_tfl_es, td.w_es),
        }
        meta = _metadata(vid, tflite, spec, record.get("scaling_stats"),
                         f"t2 ({variant.replace('_', ' + ')}) trained on {spec.data} data", channels=td.channels,
                         compression=info, training=_training_summary(record),
                         temperature=temperature, calibration=calibration)
        info["path"] = str(compress.write_model(out_dir, vid, tflite, meta))
        out[variant] = info
    from fink_t2.train import plots

    plots.training_curves({"baseline": record["history"], "clustering fine-tune": cluster_hist,
                           "pruning fine-tune": prune_hist},
                          out_dir / f"{model_id}.training.png", title=f"{model_id}: {spec.data} data")
    summary = {"variants": out, "cluster_history": cluster_hist, "prune_history": prune_hist,
               "cluster_seconds": cluster_seconds, "prune_seconds": prune_seconds}
    (out_dir / f"{model_id}.compress.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary
