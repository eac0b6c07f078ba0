"""``docs/ztf-model.md``: the default ZTF model next to the feature baseline, by alert age.

Written from ``evaluate`` JSON reports only (every figure comes from one run of a documented
command), and the ship gate of the science issue: a model becomes the default only if its
SN Ia-vs-rest AUC beats the feature baseline in every age bin on the BTS validation split.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from fink_t2.train.metrics import AGE_BINS, SNIA_THRESHOLD

#: Targets of the science issue (BTS validation split).
TARGETS = {"snia_vs_rest_auc": (">=", 0.88), "auc_3-7": (">=", 0.75), "accuracy": (">=", 0.80),
           "snia_ece": ("<=", 0.05), "snia_purity_at_0.5": (">=", 0.90), "snia_completeness_at_0.5": (">=", 0.60)}
HEADLINE = ("snia_vs_rest_auc", "accuracy", "snia_purity_at_0.5", "snia_completeness_at_0.5", "snia_ece", "log_loss")
#: The default's plots copied next to the document (``<report stem>.<kind>.png`` → ``ztf-model-<kind>.png``).
PLOT_KINDS = ("auc-by-age", "snia-reliability")
#: The file in a kept folder that names the document's rows (see :func:`keep`).
KEPT_INDEX = "inputs.json"
#: Markers of the README's model figures (:func:`readme_block`).
README_BEGIN = "<!-- models:begin (written by `fink-t2 train science-report --readme`; do not edit by hand) -->"
README_END = "<!-- models:end -->"
#: The README's columns: (heading, report key); ``auc_3-7`` is the 3–7 d bin.
README_COLUMNS = (("SN Ia-vs-rest AUC", "snia_vs_rest_auc"), ("AUC at 3–7 d", "auc_3-7"), ("accuracy", "accuracy"),
                  (f"purity at P(SNIa) ≥ {SNIA_THRESHOLD}", f"snia_purity_at_{SNIA_THRESHOLD}"),
                  ("P(SNIa) ECE", "snia_ece"))


def _ci(report: dict, key: str) -> str:
    value = report[key]
    ci = report.get("ci95", {}).get(key)
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{value:.3f}"


def _age_cell(report: dict, age: str) -> str:
    value = report["snia_vs_rest_auc_by_age_days"][age]
    ci = report["ci95"]["snia_vs_rest_auc_by_age_days"][age]
    return f"{value:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]"


def _value(report: dict, key: str) -> float:
    return report["snia_vs_rest_auc_by_age_days"]["3-7"] if key == "auc_3-7" else report[key]


def target_lines(report: dict) -> list[str]:
    lines = ["| target | value | met |", "|---|---|---|"]
    for key, (op, threshold) in TARGETS.items():
        value = _value(report, key)
        met = value >= threshold if op == ">=" else value <= threshold
        lines.append(f"| {key} {op} {threshold} | {value:.3f} | {'✔' if met else '✘'} |")
    return lines


def run_comparison_table(rows: list[dict]) -> str:
    """Markdown table of ``pipeline.compare_runs`` rows (runs by folder name), the best SN Ia AUC marked ``*``."""
    ages = [name for name, _, _ in AGE_BINS]
    auc = [r["ztf_early_stopping_metrics"].get("snia_vs_rest_auc", float("nan")) for r in rows]
    best = int(np.nanargmax(auc)) if np.isfinite(auc).any() else -1
    lines = ["| run | seed | PLAsTiCC weight | learning rate | SN Ia AUC | " + " | ".join(f"{a} d" for a in ages)
             + " | purity | completeness | SN Ia ECE |", "|---" * (8 + len(ages)) + "|"]
    for i, r in enumerate(rows):
        m = r["ztf_early_stopping_metrics"]
        by_age = m.get("snia_vs_rest_auc_by_age_days", {})
        cells = [f"{Path(r['run']).name}{' *' if i == best else ''}", str(r["seed"]), f"{r['plasticc_weight']:g}",
                 f"{r['learning_rate']:.3g}" if "learning_rate" in r else "",
                 f"{auc[i]:.3f}", *(f"{by_age.get(a, float('nan')):.3f}" for a in ages),
                 f"{m.get(f'snia_purity_at_{SNIA_THRESHOLD}', float('nan')):.3f}",
                 f"{m.get(f'snia_completeness_at_{SNIA_THRESHOLD}', float('nan')):.3f}",
                 f"{m.get('snia_ece', float('nan')):.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ship_gate(report: dict) -> bool:
    """Beats the feature baseline's AUC in every age bin (point estimates, bins with both classes)."""
    return bool(report.get("beats_baseline_in_every_age_bin"))


def _readme_cell(report: dict, key: str) -> str:
    if key == "auc_3-7":
        return _age_cell(report, "3-7")
    if not np.isfinite(report[key]):  # purity when no alert reaches the threshold
        return "—"
    return _ci(report, key) if key in report.get("ci95", {}) else f"{report[key]:.3f}"


def _model_file(models_dir: Path, repo_root: Path, model_id: str) -> str:
    path = (models_dir / f"{model_id}.tflite").resolve()
    if not path.is_file():
        return "—"
    shown = path.relative_to(repo_root) if path.is_relative_to(repo_root) else path
    return f"`{shown}` ({path.stat().st_size / 1000:.0f} KB)"


def readme_block(default_json: Path, others: dict[str, Path], default_name: str, command: str,
                 models_dir: Path, repo_root: Path) -> str:
    """The README's model table (between :data:`README_BEGIN` and :data:`README_END`): the default,
    its feature baseline and the other reports whose model ships in ``models_dir`` (the selectable ones)."""
    default = json.loads(default_json.read_text())
    rows = {f"**default** `{default_name}`": (default, _model_file(models_dir, repo_root, default_name)),
            "feature baseline (not shipped)": (default["baseline"], "—")}
    for label, path in others.items():
        report = json.loads(path.read_text())
        if (models_dir / f"{report['model_id']}.tflite").is_file():
            rows[label] = (report, _model_file(models_dir, repo_root, report["model_id"]))
    lines = [README_BEGIN,
             f"BTS validation split, {default['n_objects']} objects never used for training, stopping, calibration",
             f"or selection, {default['n_alerts']} emulated alerts; 95 % bootstrap CIs over objects "
             f"(`{command}`, reports in `docs/reports`).", "",
             "| model | file | " + " | ".join(h for h, _ in README_COLUMNS) + " |",
             "|---|---|" + "---|" * len(README_COLUMNS)]
    for label, (report, file) in rows.items():
        lines.append(f"| {label} | {file} | " + " | ".join(_readme_cell(report, k) for _, k in README_COLUMNS) + " |")
    return "\n".join(lines + [README_END])


def write(doc: Path, default_json: Path, others: dict[str, Path], command: str, notes: list[str],
          default_name: str | None = None, comparisons: dict[str, list[dict]] | None = None) -> Path:
    """Write ``doc`` from the default model's report (with its baseline) and other models' reports.

    ``default_name`` names the default row (the id it ships as); the report's ``model_id`` otherwise.
    ``comparisons``: title → ``compare-runs`` rows, each shown as a selection table.
    """
    default = json.loads(default_json.read_text())
    reports = {f"**{default_name or default['model_id']}** (default)": default} | {
        label: json.loads(p.read_text()) for label, p in others.items()}
    reports["feature baseline (logistic regression, 13 GP features)"] = default["baseline"]
    d = default["data"]
    ages = [name for name, _, _ in AGE_BINS]
    lines = ["# The ZTF model: inputs, training, and how it compares", "",
             f"Generated by `{command}` from `fink-t2 evaluate` reports; do not edit by hand.", "",
             f"Data: BTS `{Path(d['directory']).name}`, split `{d['split']}` (objects hashed with seed "
             f"{d.get('split_seed')}, {d.get('val_fraction', 0):.0%} of the objects; never used for training, early "
             f"stopping, calibration or model selection), {default['n_objects']} objects, {default['n_alerts']} "
             f"emulated alerts ({d.get('per_object')} per object, seed {d.get('seed')}). Every alert weighs "
             "1/(alerts of its object); 95 % intervals from 200 bootstrap resamples of the objects. The baseline "
             f"is trained on {default['baseline']['trained_on']['n_alerts']:,} alerts of the "
             f"{default['baseline']['trained_on']['n_objects']} BTS train-split objects (every eligible epoch).", "",
             "## Headline (SN Ia vs rest)", "",
             "| model | " + " | ".join(HEADLINE) + " |", "|---|" + "---|" * len(HEADLINE)]
    for label, r in reports.items():
        lines.append(f"| {label} | " + " | ".join(_ci(r, k) if k in r.get("ci95", {}) else f"{r[k]:.3f}"
                                                  for k in HEADLINE) + " |")
    lines += ["", "## SN Ia-vs-rest AUC by days since the first detection at the alert", "",
              "| model | " + " | ".join(ages) + " |", "|---|" + "---|" * len(ages)]
    for label, r in reports.items():
        lines.append(f"| {label} | " + " | ".join(_age_cell(r, a) for a in ages) + " |")
    lines.append("| alerts in the bin | " + " | ".join(str(default["alerts_by_age_days"][a]) for a in ages) + " |")
    diff, ci = default["auc_minus_reference_by_age_days"], default["ci95"]["auc_minus_reference_by_age_days"]
    lines.append("| default − baseline (paired) | " + " | ".join(
        f"{diff[a]:+.3f} [{ci[a][0]:+.2f}, {ci[a][1]:+.2f}]" for a in ages) + " |")
    lines += ["", f"Ship gate (beats the baseline in every age bin): **{'passed' if ship_gate(default) else 'FAILED'}**.",
              "", "## Targets (default model, BTS val)", ""] + target_lines(default)
    for title, rows in (comparisons or {}).items():
        lines += ["", f"## {title}", "", "SN Ia metrics on the ZTF rows of the early-stopping hold-out (train-split "
                  "objects, each object once; not the split above), float models before calibration; `*` the best "
                  "AUC (`fink-t2 train compare-runs`).", "", run_comparison_table(rows)]
    lines += ["", "## Notes", ""] + [f"* {n}" for n in notes]
    doc.parent.mkdir(parents=True, exist_ok=True)
    stem = default_json.with_suffix("")
    images = []
    for kind in PLOT_KINDS:
        src = stem.with_name(stem.name + f".{kind}.png")
        if src.is_file():
            dst = doc.parent / f"ztf-model-{kind}.png"
            shutil.copyfile(src, dst)
            images.append(f"![{kind}]({dst.name})")
    lines += [""] + images + [""]
    doc.write_text("\n".join(lines))
    return doc



def keep(folder: Path, default_json: Path, others: dict[str, Path], comparisons: dict[str, Path], command: str,
         default_name: str | None) -> Path:
    """Copy the reports a document was written from into ``folder`` (git-tracked), with ``inputs.json``
    naming their rows, so that the document can be rewritten after the run folders are gone
    (:func:`kept_inputs`). Files are renamed by role (``default.json``, ``other-1.json``, …)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*"):
        if stale.suffix in (".json", ".png"):
            stale.unlink()
    shutil.copyfile(default_json, folder / "default.json")
    stem = default_json.with_suffix("")
    for kind in PLOT_KINDS:
        plot = stem.with_name(stem.name + f".{kind}.png")
        if plot.is_file():
            shutil.copyfile(plot, folder / f"default.{kind}.png")
    index = {"command": command, "default_name": default_name, "others": [], "comparisons": []}
    for role, rows in (("other", others), ("comparison", comparisons)):
        for i, (label, path) in enumerate(rows.items(), start=1):
            shutil.copyfile(path, folder / f"{role}-{i}.json")
            index[f"{role}s"].append([label, f"{role}-{i}.json"])
    (folder / KEPT_INDEX).write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n")
    return folder / KEPT_INDEX


def kept_inputs(folder: Path) -> dict:
    """The arguments of :func:`write` from a folder written by :func:`keep`: ``default_json``, ``others``,
    ``command``, ``default_name`` and ``comparisons`` (rows loaded)."""
    index = json.loads((folder / KEPT_INDEX).read_text())
    return {"default_json": folder / "default.json", "command": index["command"],
            "default_name": index["default_name"],
            "others": {label: folder / name for label, name in index["others"]},
            "comparisons": {title: json.loads((folder / name).read_text()) for title, name in index["comparisons"]}}
