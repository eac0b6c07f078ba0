"""``fink-t2 evaluate``: metrics of a TFLite model on labelled PLAsTiCC or ZTF BTS data.

The model is loaded with :func:`fink_t2.science.model.load_model` (sha256 check, metadata) and fed by
the shared preprocessing (:mod:`fink_t2.train.data`: cuts → light curves → batched GP → grid)
and :func:`fink_t2.science.model_input.scale_input` with the model's own scaling rule, then
``T2Model.predict`` — so the reported numbers include the temperature stored in the
metadata, exactly as the runner applies it. ``uncalibrated`` repeats the metrics at T = 1.

BTS data are evaluated as emulated alerts (``per_object`` alert epochs per object drawn with a
fixed seed); every metric weights an alert by 1/(alerts of its object), so each object counts
once. PLAsTiCC data default to full light curves (the t2 paper's set-up, Table 1).
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from fink_t2.contract import CLASS_NAMES
from fink_t2.science.model import T2Model, load_model, metadata_path, read_metadata
from fink_t2.train import data, metrics

log = logging.getLogger(__name__)

EVAL_SEED = 2024  # alert-epoch draw of evaluation sets (training draws use other seeds)
EVAL_PER_OBJECT = 5


def uncalibrated(model: T2Model) -> T2Model:
    """The same interpreter with temperature 1 (raw softmax)."""
    return dataclasses.replace(model, meta={**model.meta, "temperature": 1.0})


def load_eval_data(plasticc: str | Path | None = None, bts: str | Path | None = None, split: str = "all",
                   mode: str | None = None, per_object: int = EVAL_PER_OBJECT, seed: int = EVAL_SEED,
                   progress: bool = False, cache_dir: Path | None = None) -> tuple[data.Prepared, dict]:
    """Prepared evaluation data and its description (source, folder, mode, split, draw).

    Nothing is cached unless ``cache_dir`` is given (``fink-t2 evaluate --cache-dir DIR``).
    """
    if (plasticc is None) == (bts is None):
        raise ValueError("give exactly one of --plasticc DIR or --bts DIR")
    if plasticc is not None:
        source, directory, mode = "plasticc", Path(plasticc), mode or "full"
    else:
        source, directory, mode = "bts", Path(bts), mode or "alert"
    if not directory.is_dir():
        raise ValueError(f"not a directory: {directory}")
    prepared = data.prepare(source, directory, mode=mode, split=split, seed=seed, per_object=per_object,
                            cache_dir=cache_dir, progress=progress)
    desc = {"source": source, "directory": str(directory), "mode": mode, "split": split}
    if mode == "alert":
        desc.update(per_object=per_object, seed=seed, history_days=data.HISTORY_DAYS, max_age_days=data.MAX_AGE_DAYS)
    if source == "bts":
        desc.update(split_seed=data.SPLIT_SEED, val_fraction=data.VAL_FRACTION)
    return prepared, desc


def predict(model: T2Model, prepared: data.Prepared) -> np.ndarray:
    """``model.predict`` on the inputs its metadata declares (input contract, scaling)."""
    return model.predict(prepared.model_inputs(model.meta))


def _cross_fitted(y, p_raw, w, object_id) -> tuple[np.ndarray, list[float]]:
    """Probabilities with T fitted on the other half of the objects (2-fold), and both T."""
    half = data.split_of(object_id, seed=7, val_fraction=0.5) == "val"
    out = np.empty_like(p_raw)
    temps = []
    for fit_rows in (half, ~half):
        t = metrics.fit_temperature(y[fit_rows], p_raw[fit_rows], w[fit_rows])
        out[~fit_rows] = metrics.apply_temperature(p_raw[~fit_rows], t)
        temps.append(t)
    return out, temps


#: Emulated alerts per BTS training object for the baseline: every eligible epoch.
BASELINE_PER_OBJECT = 1_000_000
BASELINE_SEED = 1
BOOTSTRAP_RESAMPLES = 200


def train_baseline(bts_dir: str | Path = data.BTS_DIR, progress: bool = False):
    """The feature baseline fitted on every eligible alert epoch of the BTS *train* split objects.

    These are the ZTF training alerts of our models (never the val split); cached in the
    training cache like any training data.
    """
    from fink_t2.train.baseline import FeatureBaseline

    train = data.prepare("bts", bts_dir, split="train", per_object=BASELINE_PER_OBJECT, seed=BASELINE_SEED,
                         cache_dir=data.CACHE_DIR, progress=progress)
    return FeatureBaseline.fit(train), {"source": "bts", "directory": str(bts_dir), "split": "train",
                                       "per_object": "every eligible epoch", "n_alerts": len(train),
                                       "n_objects": train.n_objects}


def snia_report(y, p, age, w, object_id, reference: np.ndarray | None = None) -> dict:
    """SN Ia keys with 95 % bootstrap CIs over objects; with ``reference`` probabilities, also the
    paired difference of the by-age AUC (this minus reference) and its CI."""
    report = metrics.snia_metrics(y, p, age, w)

    def statistic(times):
        out = metrics.snia_metrics(y, p, age, w * times)
        if reference is not None:
            ref = metrics.auc_by_age(y, reference, age, w * times)
            out["auc_minus_reference_by_age_days"] = {k: out["snia_vs_rest_auc_by_age_days"][k] - ref[k] for k in ref}
            out["auc_minus_reference"] = out["snia_vs_rest_auc"] - metrics.snia_vs_rest_auc(y, reference, w * times)
        return out

    if reference is not None:
        ref = metrics.auc_by_age(y, reference, age, w)
        report["auc_minus_reference_by_age_days"] = {k: report["snia_vs_rest_auc_by_age_days"][k] - ref[k] for k in ref}
        report["auc_minus_reference"] = report["snia_vs_rest_auc"] - metrics.snia_vs_rest_auc(y, reference, w)
    report["ci95"] = metrics.bootstrap_ci(statistic, object_id, BOOTSTRAP_RESAMPLES)
    report["alerts_by_age_days"] = {name: int(((age >= lo) & (age < hi)).sum()) for name, lo, hi in metrics.AGE_BINS}
    return report


def evaluate(model_path: str | Path, prepared: data.Prepared, description: dict | None = None,
             fit_temperature: bool = False, baseline=None) -> tuple[dict, dict[str, np.ndarray]]:
    """Metrics report and the probability sets (``calibrated``, ``uncalibrated``[, ``fitted``,
    ``baseline``]). With a fitted ``baseline`` (:func:`train_baseline`) its metrics on the same
    alerts are under ``report["baseline"]``, and the model's by-age AUC minus the baseline's."""
    model = load_model(model_path)
    # the loader caches interpreters by file hash; re-read the metadata (a temperature may have been stored since)
    model = dataclasses.replace(model, meta=read_metadata(Path(model_path).resolve()))
    y, w = prepared.label, prepared.weight
    p = predict(model, prepared)
    p_raw = predict(uncalibrated(model), prepared)
    counts = {CLASS_NAMES[c]: int(n) for c, n in zip(*np.unique(y, return_counts=True))}
    object_counts = {CLASS_NAMES[c]: int(len(np.unique(prepared.object_id[y == c]))) for c in np.unique(y)}
    report = {
        "model": str(model_path), "model_id": model.model_id, "model_sha256": model.meta["sha256"],
        "data": description or {},
        "n_objects": prepared.n_objects, "n_alerts": len(prepared),
        "class_counts_alerts": counts, "class_counts_objects": object_counts,
        "temperature": model.temperature,
        **metrics.summary(y, p, w),
        "per_class_log_loss": {CLASS_NAMES[c]: v for c, v in metrics.per_class_log_loss(y, p, w).items()},
        "uncalibrated": metrics.summary(y, p_raw, w),
        "weighting": "each alert weighted 1/(alerts of its object)",
    }
    probs = {"calibrated": p, "uncalibrated": p_raw}
    p_base = baseline[0].predict(prepared) if baseline is not None else None
    report |= snia_report(y, p, prepared.age, w, prepared.object_id, reference=p_base)
    if baseline is not None:
        report["baseline"] = {"model": "logistic regression on GP features (fink_t2.train.baseline)",
                              "trained_on": baseline[1],
                              **metrics.summary(y, p_base, w), **snia_report(y, p_base, prepared.age, w, prepared.object_id)}
        report["beats_baseline_in_every_age_bin"] = bool(all(
            v > 0 for v in report["auc_minus_reference_by_age_days"].values() if np.isfinite(v)))
        probs["baseline"] = p_base
    if fit_temperature:
        t = metrics.fit_temperature(y, p_raw, w)
        p_fit = metrics.apply_temperature(p_raw, t)
        p_cross, temps = _cross_fitted(y, p_raw, w, prepared.object_id)
        report["temperature_fit"] = {
            "temperature": t, "fitted_on": "these data (all alerts, object-weighted log-loss)",
            "ece_before": metrics.ece(y, p_raw, w), "ece_after": metrics.ece(y, p_fit, w),
            "metrics_in_sample": metrics.summary(y, p_fit, w),
            "cross_fitted": {"temperatures": temps, **metrics.summary(y, p_cross, w),
                             "note": "T fitted on one half of the objects, applied to the other (2-fold)"},
        }
        probs["fitted"] = p_fit
    return report, probs


def write_plots(report: dict, prepared: data.Prepared, probs: dict[str, np.ndarray], stem: Path) -> list[Path]:
    """``<stem>.confusion.png``, ``<stem>.reliability.png``, ``<stem>.auc-by-age.png`` (model and
    baseline) and ``<stem>.snia-reliability.png`` (P(SNIa))."""
    from fink_t2.train import plots

    y, w = prepared.label, prepared.weight
    name = f"{report['model_id']} on {report['data'].get('source', '?')} {report['data'].get('split', '')}".strip()
    out = [plots.confusion(y, probs["calibrated"], stem.with_name(stem.name + ".confusion.png"), w,
                           title=f"{name} (T={report['temperature']:.3g}, {report['n_objects']} objects)")]
    curves = {"T=1": probs["uncalibrated"]}
    if report["temperature"] != 1.0:
        curves[f"metadata T={report['temperature']:.3g}"] = probs["calibrated"]
    if "fitted" in probs:
        curves[f"fitted T={report['temperature_fit']['temperature']:.3g}"] = probs["fitted"]
    out.append(plots.reliability(y, curves, stem.with_name(stem.name + ".reliability.png"), w, title=name))
    out.append(plots.auc_by_age(report, stem.with_name(stem.name + ".auc-by-age.png"), title=name))
    snia_curves = {report["model_id"]: probs["calibrated"]} | (
        {"feature baseline": probs["baseline"]} if "baseline" in probs else {})
    out.append(plots.snia_reliability(y, snia_curves, stem.with_name(stem.name + ".snia-reliability.png"), w,
                                      title=name))
    return out


def store_temperature(model_path: str | Path, temperature: float, calibration: dict) -> None:
    """Write ``temperature`` (and how it was fitted) into the model's metadata JSON."""
    meta_file = metadata_path(Path(model_path))
    meta = json.loads(meta_file.read_text())
    meta["temperature"] = float(temperature)
    meta["calibration"] = calibration
    meta_file.write_text(json.dumps(meta, indent=2) + "\n")


def _snia_line(r: dict) -> str:
    ages = " ".join(f"{k}:{v:.3f}" for k, v in r["snia_vs_rest_auc_by_age_days"].items())
    ci = r["ci95"]["snia_vs_rest_auc"]
    return (f"AUC {r['snia_vs_rest_auc']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]; by age {ages}; purity@0.5 "
            f"{r['snia_purity_at_0.5']:.3f} completeness@0.5 {r['snia_completeness_at_0.5']:.3f} "
            f"snia_ece {r['snia_ece']:.3f}")


def format_report(report: dict) -> str:
    keys = ("log_loss", "weighted_log_loss", "accuracy", "macro_f1", "snia_vs_rest_auc", "ece")
    lines = [f"{report['model_id']}: {report['n_objects']} objects, {report['n_alerts']} alerts, T={report['temperature']:.4g}"]
    lines.append("  " + "  ".join(f"{k}={report[k]:.4f}" for k in keys))
    lines.append("  uncalibrated: " + "  ".join(f"{k}={report['uncalibrated'][k]:.4f}" for k in keys))
    lines.append("  SN Ia: " + _snia_line(report))
    if "baseline" in report:
        lines.append("  baseline: " + _snia_line(report["baseline"]))
    if "temperature_fit" in report:
        fit = report["temperature_fit"]
        lines.append(f"  fitted T={fit['temperature']:.4f}: ECE {fit['ece_before']:.4f} -> {fit['ece_after']:.4f}; "
                     f"cross-fitted log_loss={fit['cross_fitted']['log_loss']:.4f} ece={fit['cross_fitted']['ece']:.4f}")
    return "\n".join(lines)
