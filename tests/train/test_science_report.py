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


def _readme(tmp_path) -> Path:
    from fink_t2.train.science_report import README_BEGIN, README_END

    readme = tmp_path / "README.md"
    readme.write_text(f"# t\n\nbefore\n{README_BEGIN}\nold figures\n{README_END}\nafter\n")
    return readme


def _readme_rows(readme: Path) -> list[list[str]]:
    return [line.strip("| ").split(" | ") for line in readme.read_text().splitlines() if line.startswith("| ")][1:]


def test_shipping_writes_the_readme_table_with_the_selectable_models_only(tmp_path, monkeypatch):
    from fink_t2.train import report

    models = tmp_path / "models"
    models.mkdir()
    (models / "fink-t2-ztf-new.tflite").write_bytes(b"x" * 51_600)
    (models / "published.tflite").write_bytes(b"x" * 60_300)
    monkeypatch.setattr(report, "ship", lambda model, folder, ship_id, *rest: Path(folder) / f"{ship_id}.tflite")
    default = _write(tmp_path, "ours", _report("t2-ztf-clustered-quantized", 0.91, beats=True))
    published = _write(tmp_path, "published", _report("published", 0.64, beats=False) | {"snia_purity_at_0.5": float("nan")})
    ablation = _write(tmp_path, "ablation", _report("t2-ztf-float", 0.85, beats=False))
    readme = _readme(tmp_path)
    rc = main(["science-report", "--default", default, "--other", f"published p={published}",
               "--other", f"ablation: float={ablation}", "--doc", str(tmp_path / "d.md"), "--command", "make train",
               "--ship", str(models), "--ship-id", "fink-t2-ztf-new", "--published", published, "--readme", str(readme)])
    assert rc == 0
    text = readme.read_text()
    assert text.startswith("# t\n\nbefore\n<!-- models:begin") and text.endswith("<!-- models:end -->\nafter\n")
    assert "old figures" not in text and "10 objects" in text and "50 emulated alerts" in text
    rows = _readme_rows(readme)
    assert [r[0] for r in rows] == ["**default** `fink-t2-ztf-new`", "feature baseline (not shipped)", "published p"]
    assert rows[0][1:4] == [f"`{models / 'fink-t2-ztf-new.tflite'}` (52 KB)", "0.910 [0.900, 0.920]",
                            "0.910 [0.86, 0.96]"]
    assert rows[1][1] == "—" and rows[1][2] == "0.910 [0.900, 0.920]" and rows[1][3].startswith("0.700 ")
    assert rows[2][1].endswith("(60 KB)") and rows[2][5] == "—"  # purity undefined: no alert at P >= 0.5


def test_a_failed_gate_leaves_the_readme_alone(tmp_path):
    readme = _readme(tmp_path)
    before = readme.read_text()
    default = _write(tmp_path, "default", _report("t2-ztf-clustered-quantized", 0.6, beats=False))
    rc = main(["science-report", "--default", default, "--doc", str(tmp_path / "d.md"), "--ship",
               str(tmp_path / "models"), "--readme", str(readme)])
    assert rc == 3 and readme.read_text() == before


def test_the_readme_model_table_is_the_one_the_kept_reports_give():
    """README figures are regenerated (make train-science-report-kept), never hand-edited."""
    from fink_t2.readme_blocks import read_readme_block
    from fink_t2.science.model import MODELS_DIR
    from fink_t2.train import science_report
    from tests.conftest import REPO

    kept = science_report.kept_inputs(REPO / "docs" / "reports")
    expected = science_report.readme_block(kept["default_json"], kept["others"], kept["default_name"],
                                           kept["command"], MODELS_DIR, REPO)
    shown = read_readme_block(REPO / "README.md", science_report.README_BEGIN, science_report.README_END)
    assert shown == expected
