"""ZTF validation section of ``docs/table1.md`` and shipping of the trained model.

Compares two ``evaluate`` reports on the same BTS validation split (ours vs the published
model) and decides whether ours may become the default: it must have a higher SN Ia-vs-rest
ROC AUC *and* a lower log-loss, both with the raw softmax (T = 1 for both) and as shipped
(each model with the temperature in its metadata).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from fink_t2.science import model as runtime
from fink_t2.train.data import REPO_ROOT

SECTION = "## ZTF validation: our model vs the published model"
KEYS = ("log_loss", "weighted_log_loss", "accuracy", "macro_f1", "snia_vs_rest_auc", "ece")
MAX_SHIP_BYTES = 60_000


def verdict(ours: dict, published: dict) -> dict:
    """Per-criterion comparison and the overall decision."""
    checks = {
        "auc_raw": ours["uncalibrated"]["snia_vs_rest_auc"] > published["uncalibrated"]["snia_vs_rest_auc"],
        "log_loss_raw": ours["uncalibrated"]["log_loss"] < published["uncalibrated"]["log_loss"],
        "auc_shipped": ours["snia_vs_rest_auc"] > published["snia_vs_rest_auc"],
        "log_loss_shipped": ours["log_loss"] < published["log_loss"],
    }
    return {**checks, "beats_published": all(checks.values())}


def _row(name: str, values: dict) -> str:
    return f"| {name} | " + " | ".join(f"{values[k]:.4f}" for k in KEYS) + " |"


def mapping_lines(bts_dir: Path) -> list[str]:
    """The BTS type → t2 class mapping (``fink_t2.train.labels``) with object counts of ``labels.csv``."""
    import pandas as pd

    from fink_t2.train.labels import mapping_table

    labels_csv = bts_dir / "labels.csv"
    if not labels_csv.is_file():
        return []
    counts = pd.read_csv(labels_csv)["type"].value_counts()
    rows = mapping_table(counts.index)
    lines = ["BTS spectroscopic type → t2 class (`fink_t2.train.labels.bts_class`; objects in this folder's "
             "`labels.csv`, all splits):", "", "| BTS type | t2 class | objects |", "|---|---|---|"]
    lines += [f"| {t} | {c} | {counts[t]} |" for t, c in sorted(rows, key=lambda r: -counts[r[0]])]
    return lines + [""]


def section(ours: dict, published: dict, images: dict[str, str], extra: list[str] | None = None) -> str:
    v = verdict(ours, published)
    d = ours["data"]
    lines = [SECTION, "",
             f"Data: BTS `{Path(d['directory']).name}`, split `{d['split']}` (objects hashed with seed {d.get('split_seed')}, "
             f"{d.get('val_fraction', 0):.0%} validation; never used for training or early stopping), "
             f"{ours['n_objects']} objects, {ours['n_alerts']} emulated alerts ({d.get('per_object')} per object, "
             f"seed {d.get('seed')}, ≤ {d.get('history_days')} d of detections, ≤ {d.get('max_age_days')} d since the "
             "first detection). Every metric weights an alert by 1/(alerts of its object). Both models go through the "
             "same preprocessing (`fink_t2.science.lightcurve` cuts and light curves, `fink_t2.science.classify.run_gp`, "
             "`fink_t2.science.model_input.build_input` with each model's metadata contract, `T2Model.predict`). "
             "The SN Ia view by alert age, with the feature baseline, is in `docs/ztf-model.md`.", "",
             "| model | " + " | ".join(KEYS) + " |", "|---|" + "---|" * len(KEYS)]
    lines.append(_row(f"published `{published['model_id']}` (T = 1, as shipped)", published["uncalibrated"]))
    if "temperature_fit" in published:
        lines.append(_row(f"published, T = {published['temperature_fit']['temperature']:.3f} cross-fitted on val",
                          published["temperature_fit"]["cross_fitted"]))
    lines.append(_row(f"ours `{ours['model_id']}` (T = 1)", ours["uncalibrated"]))
    lines.append(_row(f"ours, metadata T = {ours['temperature']:.3f} (as shipped; see the metadata's calibration)",
                      ours))
    if "temperature_fit" in ours:
        lines.append(_row("ours, T cross-fitted on val (2-fold by object: honest)", ours["temperature_fit"]["cross_fitted"]))
    lines += ["",
              f"**Verdict: {'ours beats' if v['beats_published'] else 'ours does NOT beat'} the published model** "
              f"(SN Ia-vs-rest AUC higher: raw {v['auc_raw']}, shipped {v['auc_shipped']}; "
              f"log-loss lower: raw {v['log_loss_raw']}, shipped {v['log_loss_shipped']}).", ""]
    lines += extra or []
    lines += ["", "Per-class log-loss (ours as shipped / published): " + ", ".join(
        f"{c} {ours['per_class_log_loss'][c]:.2f} / {published['per_class_log_loss'].get(c, float('nan')):.2f}"
        for c in ours["per_class_log_loss"]) + ".", ""]
    lines += ["Objects per class: " + ", ".join(f"{c} {n}" for c, n in ours["class_counts_objects"].items()) + ".", ""]
    lines += mapping_lines(Path(d["directory"]))
    for caption, path in images.items():
        lines.append(f"![{caption}]({path})")
        lines.append("")
    return "\n".join(lines)


def plasticc_lines(ours: dict, published: dict) -> list[str]:
    """A small table: both models on PLAsTiCC test objects as emulated alerts."""
    d = ours["data"]
    lines = [f"Same two models on the PLAsTiCC test objects (`{Path(d['directory']).name}`, SNIa/SNII/SNIbc) as "
             f"emulated alerts ({ours['n_objects']} objects, {ours['n_alerts']} alerts, LSST wavelengths), T = 1:", "",
             "| model | " + " | ".join(KEYS) + " |", "|---|" + "---|" * len(KEYS)]
    lines.append(_row(f"published `{published['model_id']}`", published["uncalibrated"]))
    lines.append(_row(f"ours `{ours['model_id']}`", ours["uncalibrated"]))
    return lines + [""]


def training_lines(out_dir: Path, model_id: str) -> list[str]:
    """How our ZTF model was trained (from ``<id>.train.json`` and ``<id>.compress.json``)."""
    train_file = Path(out_dir) / f"{model_id}.train.json"
    if not train_file.is_file():
        return []
    rec = json.loads(train_file.read_text())
    comp_file = Path(out_dir) / f"{model_id}.compress.json"
    comp = json.loads(comp_file.read_text()) if comp_file.is_file() else None
    parts = "; ".join(f"{k}: {d['alerts_or_curves']} alerts of {d['objects']} objects"
                      for k, d in rec["data"].items() if isinstance(d, dict) and "alerts_or_curves" in d)
    lines = [f"Our model `{model_id}`: t2 architecture ({rec.get('channels', 2)} input channels, contract "
             f"`{rec['spec'].get('input_contract', 'span_grid_v1')}`), {rec['config'].get('loss', 'weighted_log_loss')} "
             f"loss, trained on "
             f"emulated alerts ({parts}; ≤ {rec['spec']['history_days']} d of detections, ≤ 90 d since the first "
             f"detection; at most {rec['spec']['plasticc_per_object']} / {rec['spec']['bts_per_object']} alert epochs "
             f"per PLAsTiCC / BTS object, seed {rec['spec']['seed']}), scaling `{rec['spec']['scaling']}`; "
             f"{rec['n_train']} training rows, {rec['n_early_stopping']} early-stopping rows (15 % of the objects); "
             f"batch {rec['config']['batch_size']}, {rec['epochs_run']} epochs (best {rec['best_epoch']}), "
             f"{rec['train_seconds'] / 60:.1f} min."]
    if comp:
        cq = comp["variants"]["clustered_quantized"]
        lines[0] += (f" Then the final Dense was clustered (16 clusters, LINEAR; {cq['head_unique_values']} distinct "
                     f"values after fine-tuning {len(comp['cluster_history']['loss'])} epochs at lr 1e-3) and the model "
                     f"quantized (dynamic-range int8): {cq['size_bytes']:,} bytes.")
    return lines + [""]


def write_report(out_dir: Path, doc: Path, ours_json: str, published_json: str, ship_dir: str | None = None,
                 ship_id: str = runtime.DEFAULT_MODEL_ID, plasticc_ours: str | None = None,
                 plasticc_published: str | None = None) -> Path:
    """Append (replace) the ZTF section of ``doc``, copy figures to ``doc``'s folder, optionally ship."""
    ours = json.loads(Path(ours_json).read_text())
    published = json.loads(Path(published_json).read_text())
    extra, plasticc = training_lines(Path(out_dir), ours["model_id"].removesuffix("-clustered-quantized")), None
    if plasticc_ours and plasticc_published:
        plasticc = json.loads(Path(plasticc_ours).read_text())
        extra += plasticc_lines(plasticc, json.loads(Path(plasticc_published).read_text()))
    docs = doc.parent
    docs.mkdir(parents=True, exist_ok=True)
    images = {}
    for label, report_json in (("ours", Path(ours_json)), ("published", Path(published_json))):
        stem = report_json.with_suffix("")
        for kind in ("confusion", "reliability"):
            src = stem.with_name(stem.name + f".{kind}.png")
            if src.is_file():
                dst = docs / f"bts-val-{label}-{kind}.png"
                shutil.copyfile(src, dst)
                images[f"{label}: {kind} (BTS val)"] = dst.name
    for name in ("t2-plasticc", "t2-ztf"):
        png = Path(out_dir) / f"{name}.training.png"
        if png.is_file():
            shutil.copyfile(png, docs / f"{name}-training.png")
            images[f"training curves {name}"] = f"{name}-training.png"
    text = doc.read_text() if doc.is_file() else ""
    if SECTION in text:
        text = text[: text.index(SECTION)].rstrip() + "\n"
    text += "\n" + section(ours, published, images, extra) + "\n"
    if ship_dir:
        shipped = ship(Path(ours["model"]), Path(ship_dir), ship_id, ours, published, plasticc)
        text += f"\nShipped: `{shipped.relative_to(REPO_ROOT) if shipped.is_relative_to(REPO_ROOT) else shipped}` " \
                f"({shipped.stat().st_size:,} bytes, sha256 `{runtime.sha256_of(shipped)}`).\n"
    doc.write_text(text)
    return doc


def ship(model_path: Path, ship_dir: Path, ship_id: str, ours: dict, published: dict,
         plasticc: dict | None = None) -> Path:
    """Copy the model to ``ship_dir/<ship_id>.tflite`` with metadata (metrics, temperature, verdict)."""
    size = model_path.stat().st_size
    if size > MAX_SHIP_BYTES:
        raise ValueError(f"{model_path} is {size} bytes, above the {MAX_SHIP_BYTES} B budget")
    meta = json.loads(runtime.metadata_path(model_path).read_text())
    meta["model_id"] = ship_id
    from fink_t2.train.tflite_io import tensor_names

    input_name, output_name = tensor_names(model_path.read_bytes())
    meta["input"]["name"], meta["output"]["name"] = input_name, output_name
    meta["license"] = "model weights: this repository's licence; training data: PLAsTiCC (Kessler et al. 2019; " \
                      "CC BY 4.0, unverified) and ZTF BTS / ANTARES light curves (MIT, HSE-LAMBDA/light_curve_approx)"
    meta["metrics"] = {
        "bts_val": {k: ours[k] for k in KEYS} | {"n_objects": ours["n_objects"], "n_alerts": ours["n_alerts"]},
        "bts_val_uncalibrated": {k: ours["uncalibrated"][k] for k in KEYS},
        "bts_val_cross_fitted_temperature": {k: ours["temperature_fit"]["cross_fitted"][k] for k in KEYS}
        if "temperature_fit" in ours else None,
        "published_bts_val": {k: published["uncalibrated"][k] for k in KEYS},
        "bts_val_data": ours["data"],
        "verdict_vs_published": verdict(ours, published),
    }
    if plasticc is not None:
        meta["metrics"]["plasticc_test_alerts_uncalibrated"] = {k: plasticc["uncalibrated"][k] for k in KEYS} | {
            "n_objects": plasticc["n_objects"], "n_alerts": plasticc["n_alerts"]}
    ship_dir.mkdir(parents=True, exist_ok=True)
    dst = ship_dir / f"{ship_id}.tflite"
    shutil.copyfile(model_path, dst)
    meta["sha256"] = runtime.sha256_of(dst)
    meta["size_bytes"] = dst.stat().st_size
    runtime.metadata_path(dst).write_text(json.dumps(meta, indent=2) + "\n")
    runtime.load_model(dst)  # sha256 and contract checks
    return dst
