"""``science-report``: rows in the order given, optional rows, the default's name, the ship gate.

The reports are small hand-made ``evaluate`` JSONs: what is under test is the document and the
exit code, not the figures (those come from ``evaluate``, tested in test_train.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fink_t2.train.__main__ import main
from fink_t2.train.metrics import AGE_BINS

AGES = [name for name, _, _ in AGE_BINS]


def _report(model_id: str, auc: float, beats: bool) -> dict:
    keys = {"snia_vs_rest_auc": auc, "accuracy": 0.8, "snia_purity_at_0.5": 0.85,
            "snia_completeness_at_0.5": 0.9, "snia_ece": 0.03, "log_loss": 0.6}
    by_age = {a: auc for a in AGES}
    ci = {k: [v - 0.01, v + 0.01] for k, v in keys.items()} | {
        "snia_vs_rest_auc_by_age_days": {a: [auc - 0.05, auc + 0.05] for a in AGES},
        "auc_minus_reference_by_age_days": {a: [-0.01, 0.1] for a in AGES}}
    baseline = keys | {"snia_vs_rest_auc_by_age_days": {a: 0.7 for a in AGES}, "ci95": ci,
                       "trained_on": {"n_alerts": 100, "n_objects": 10}}
    return keys | {"model_id": model_id, "model": "unused.tflite", "snia_vs_rest_auc_by_age_days": by_age,
                   "ci95": ci, "baseline": baseline, "alerts_by_age_days": {a: 5 for a in AGES},
                   "auc_minus_reference_by_age_days": {a: auc - 0.7 for a in AGES},
                   "beats_baseline_in_every_age_bin": beats, "n_objects": 10, "n_alerts": 50,
                   "data": {"directory": "/x/ztf_bts_antares", "split": "val", "split_seed": 42,
                            "val_fraction": 0.25, "per_object": 5, "seed": 2024}}


def _write(tmp_path, name: str, report: dict) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(report))
    return str(path)


def _rows(doc) -> list[str]:
    table = doc.read_text().split("## Headline")[1].split("## SN Ia")[0]
    return [line.split(" | ")[0].lstrip("| ") for line in table.splitlines() if line.startswith("| ")][1:]


def test_rows_follow_the_command_line_and_absent_optional_rows_are_said(tmp_path, capsys):
    default = _write(tmp_path, "default", _report("t2-ztf-clustered-quantized", 0.9, beats=True))
    a = _write(tmp_path, "a", _report("a", 0.8, beats=False))
    b = _write(tmp_path, "b", _report("b", 0.7, beats=False))
    doc = tmp_path / "docs" / "ztf-model.md"
    rc = main(["science-report", "--default", default, "--other", f"row b={b}",
               "--optional-other", f"row missing={tmp_path / 'none.json'}", "--optional-other", f"row a={a}",
               "--doc", str(doc)])
    assert rc == 0
    assert _rows(doc) == ["**t2-ztf-clustered-quantized** (default)", "row b", "row a",
                          "feature baseline (logistic regression, 13 GP features)"]
    assert "row left out" in capsys.readouterr().out and "row missing" not in doc.read_text()


def test_failed_gate_exits_3_ships_nothing_and_keeps_the_run_name(tmp_path):
    default = _write(tmp_path, "default", _report("t2-ztf-clustered-quantized", 0.6, beats=False))
    doc, ship = tmp_path / "ztf-model.md", tmp_path / "models"
    rc = main(["science-report", "--default", default, "--doc", str(doc), "--ship", str(ship),
               "--ship-id", "fink-t2-ztf-new"])
    assert rc == 3
    assert not ship.exists()
    assert _rows(doc)[0] == "**t2-ztf-clustered-quantized** (default)"
    assert "**FAILED**" in doc.read_text()


def test_selection_tables_are_shown_and_absent_ones_said(tmp_path, capsys):
    default = _write(tmp_path, "default", _report("t2-ztf-clustered-quantized", 0.9, beats=True))
    runs = [{"run": f"pw-{w}", "seed": 7, "plasticc_weight": w,
             "ztf_early_stopping_metrics": {"snia_vs_rest_auc": auc, "snia_vs_rest_auc_by_age_days": {a: auc for a in AGES}}}
            for w, auc in ((0.1, 0.91), (1.0, 0.93))]
    search = tmp_path / "search.json"
    search.write_text(json.dumps(runs))
    doc = tmp_path / "ztf-model.md"
    rc = main(["science-report", "--default", default, "--doc", str(doc),
               "--runs-comparison", f"PLAsTiCC weight={search}", "--runs-comparison", f"Seeds={tmp_path / 'no.json'}"])
    text = doc.read_text()
    assert rc == 0 and "## PLAsTiCC weight" in text and "## Seeds" not in text
    section = text.split("## PLAsTiCC weight")[1].split("## Notes")[0]
    assert "| pw-1.0 * | 7 | 1 |  | 0.930 |" in section and "| pw-0.1 | 7 | 0.1 |  | 0.910 |" in section
    assert "selection table left out" in capsys.readouterr().out


def test_a_row_without_label_is_a_usage_error_not_a_traceback(tmp_path, capsys):
    default = _write(tmp_path, "default", _report("t2-ztf-clustered-quantized", 0.9, beats=True))
    doc = tmp_path / "ztf-model.md"
    for flag, item in (("--other", default), ("--optional-other", f"={default}"), ("--runs-comparison", "title=")):
        with pytest.raises(SystemExit) as stop:
            main(["science-report", "--default", default, "--doc", str(doc), flag, item])
        assert stop.value.code == 2
        assert f"expected LABEL=PATH, got {item!r}" in capsys.readouterr().err
    assert not doc.exists()


def test_label_and_path_splits_at_the_first_equals_sign():
    from fink_t2.train.cli import label_and_path

    assert label_and_path("row b (seed 7)=/r/w=0.3/b.json") == ("row b (seed 7)", Path("/r/w=0.3/b.json"))


def test_kept_reports_rewrite_the_same_document_after_the_run_folder_is_gone(tmp_path, monkeypatch, capsys):
    import shutil

    from fink_t2.train import report

    run = tmp_path / "run"
    run.mkdir()
    default = _write(run, "ours", _report("t2-ztf-clustered-quantized", 0.9, beats=True))
    (run / "ours.auc-by-age.png").write_bytes(b"png by age")
    other = _write(run, "span", _report("span", 0.8, beats=False))
    search = run / "search.json"
    search.write_text(json.dumps([{"run": "pw-0.3", "seed": 7, "plasticc_weight": 0.3, "ztf_early_stopping_metrics": {
        "snia_vs_rest_auc": 0.92, "snia_vs_rest_auc_by_age_days": {a: 0.92 for a in AGES}}}]))
    monkeypatch.setattr(report, "ship", lambda model, folder, ship_id, *rest: Path(folder) / f"{ship_id}.tflite")
    docs, kept = tmp_path / "docs", tmp_path / "docs" / "reports"
    rc = main(["science-report", "--default", default, "--other", f"ablation: span={other}",
               "--runs-comparison", f"PLAsTiCC weight={search}", "--doc", str(docs / "ztf-model.md"),
               "--command", "make train", "--ship", str(tmp_path / "models"), "--ship-id", "fink-t2-ztf-new",
               "--published", other, "--keep", str(kept)])
    assert rc == 0 and "shipped" in capsys.readouterr().out
    first = (docs / "ztf-model.md").read_text()
    assert _rows(docs / "ztf-model.md")[0] == "**fink-t2-ztf-new** (default)"
    shutil.rmtree(run)
    (docs / "ztf-model.md").unlink()
    (docs / "ztf-model-auc-by-age.png").unlink()
    assert main(["science-report", "--from-kept", str(kept), "--doc", str(docs / "ztf-model.md")]) == 0
    assert (docs / "ztf-model.md").read_text() == first
    assert "## PLAsTiCC weight" in first and "| ablation: span |" in first and "![auc-by-age]" in first
    assert (docs / "ztf-model-auc-by-age.png").read_bytes() == b"png by age"
    assert "shipped" not in capsys.readouterr().out


def test_from_kept_refuses_rows_given_on_the_command_line(tmp_path, capsys):
    default = _write(tmp_path, "default", _report("t2-ztf-clustered-quantized", 0.9, beats=True))
    rc = main(["science-report", "--from-kept", str(tmp_path), "--default", default, "--doc", str(tmp_path / "d.md")])
    assert rc == 2 and "drop --default" in capsys.readouterr().err
    assert not (tmp_path / "d.md").exists()
