"""The fink-t2 command line: classify, plot, errors (real alerts, no Spark)."""
from __future__ import annotations

import hashlib
import json
import tarfile

import pandas as pd
import pytest

from fink_t2.cli import main
from fink_t2.science.classify import OUTPUT_COLUMNS
from fink_t2.science.model import DEFAULT_MODEL

from tests.conftest import SAMPLE_ALERTS, shared_path
from tests.conftest_kafka import free_loopback_port


def test_classify_writes_one_row_per_alert(tmp_path, capsys):
    out = tmp_path / "r.parquet"
    assert main(["classify", str(SAMPLE_ALERTS), "--out", str(out)]) == 0
    results = pd.read_parquet(out)
    assert len(results) == 139 and set(OUTPUT_COLUMNS) <= set(results.columns)
    text = capsys.readouterr().out
    assert "139 alerts" in text and "status counts" in text and "ok" in text


def test_classify_jsonl_and_tar_gz_archive(tmp_path):
    archive = tmp_path / "night.tar.gz"
    files = sorted((SAMPLE_ALERTS / "fink-alert-simulator_datasim_20181129").glob("*.avro"))[:7]
    with tarfile.open(archive, "w:gz") as tar:
        for f in files:
            tar.add(f, arcname=f"ztf_public_night/{f.name}")
    out = tmp_path / "r.jsonl"
    assert main(["classify", str(archive), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 7 and all(r["candid"] == int(f.stem) for r, f in zip(rows, files))


@pytest.mark.shared
def test_classify_covers_every_shared_alert(tmp_path):
    out = tmp_path / "all.parquet"
    assert main(["classify", str(shared_path("data", "ztf")), "--out", str(out)]) == 0
    results = pd.read_parquet(out)
    assert len(results) >= 617 + 190  # every Avro and Parquet alert (PROVENANCE.md, minus withheld)
    assert results["t2_status"].str.match(r"^(ok|cut:|error:)").all()
    assert not results["t2_status"].str.startswith("error:").any()


def test_bad_paths_and_bad_model_are_clear_errors(tmp_path, capsys):
    assert main(["classify", str(tmp_path / "absent")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    bad_model = tmp_path / "m.tflite"
    bad_model.write_bytes(b"x")
    assert main(["classify", str(SAMPLE_ALERTS), "--model", str(bad_model)]) == 2
    assert "metadata not found" in capsys.readouterr().err


def test_corrupt_file_is_an_error_row_not_a_crash(tmp_path):
    good = next((SAMPLE_ALERTS / "fink-alert-simulator_datasim_20181129").glob("*.avro"))
    (tmp_path / "good.avro").write_bytes(good.read_bytes())
    (tmp_path / "bad.avro").write_bytes(good.read_bytes()[:5000])
    out = tmp_path / "r.parquet"
    assert main(["classify", str(tmp_path), "--out", str(out)]) == 0
    results = pd.read_parquet(out).set_index("source")
    assert results.loc[str(tmp_path / "bad.avro"), "t2_status"].startswith("error:avro_decode")
    assert results.loc[str(tmp_path / "good.avro"), "candid"] == int(good.stem)


def test_plot_writes_a_png(tmp_path):
    out = tmp_path / "p.png"
    assert main(["plot", str(SAMPLE_ALERTS), "--candid", "697251920415015001", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
    assert main(["plot", str(SAMPLE_ALERTS), "--candid", "1", "--out", str(out)]) == 2


def test_stream_refuses_a_bad_model_at_start_up(tmp_path, capsys):
    # sha256 and metadata right, content not a model: before, the job started and failed at its first batch
    model = tmp_path / "bad.tflite"
    model.write_bytes(b"not a flatbuffer" * 3000)
    meta = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    (tmp_path / "bad.json").write_text(json.dumps(meta | {"sha256": hashlib.sha256(model.read_bytes()).hexdigest()}))
    conf = tmp_path / "job.toml"
    conf.write_text(f'[kafka]\nbootstrap_servers = "127.0.0.1:{free_loopback_port()}"\n[model]\npath = "{model}"\n')
    assert main(["stream", "--conf", str(conf), "--once"]) == 2
    assert "is unusable: The model is not a valid Flatbuffer buffer" in capsys.readouterr().err


def test_truncated_archive_classifies_what_it_holds_reports_and_exits_1(tmp_path, capsys):
    """Was: a raw tarfile.ReadError and no output at all."""
    from tests.conftest import ARCHIVE_MEMBERS, truncated_archive

    archive, readable = truncated_archive(tmp_path, keep=0.6)
    out = tmp_path / "r.parquet"
    assert main(["classify", str(archive), str(ARCHIVE_MEMBERS[-1]), "--out", str(out)]) == 1
    results = pd.read_parquet(out)
    candids = [int(f.stem) for f in [*readable, ARCHIVE_MEMBERS[-1]]]
    assert results["candid"].dropna().tolist() == candids  # the file after the archive is classified too
    (error,) = results.loc[results["candid"].isna(), "t2_status"]
    assert error.startswith(f"error:archive_incomplete: {archive}: truncated or corrupt after {len(readable)} ")
    assert "incomplete input" in capsys.readouterr().err


def test_schema_prints_the_avsc_the_job_publishes_for_that_version(capsys, tmp_path):
    """`fink-t2 schema --ztf-version 3.3` = the file a worker publishes for a real 3.3 alert; the
    default (4.02) reads a 4.02 record written with it; an unknown version is refused."""
    from fink_t2.kafka.messages import enrich_alert_schemaless
    from fink_t2.kafka.schema_files import publish_schema
    from fink_t2.science.classify import classify

    payload = next((SAMPLE_ALERTS / "fink-broker_basic_alerts_local_20200101").glob("*.avro")).read_bytes()
    _, schema = enrich_alert_schemaless(payload, classify([payload]).iloc[0].to_dict())
    assert main(["schema", "--ztf-version", "3.3"]) == 0
    assert capsys.readouterr().out.encode() == publish_schema(schema, tmp_path).read_bytes() + b"\n"
    assert main(["schema", "--ztf-version", "3.3", "--fingerprint"]) == 0
    assert capsys.readouterr().out == schema.fingerprint + "\n"
    assert main(["schema"]) == 0
    latest = json.loads(capsys.readouterr().out)
    assert latest["version"] == "4.02" and [f["name"] for f in latest["fields"]][-7:] == [
        "t2_schema_version", "t2_status", "t2_class", "t2_probs", "t2_snia", "t2_model", "t2_embedding"]
    assert "fp_hists" in {f["name"] for f in latest["fields"]}
    with pytest.raises(SystemExit):
        main(["schema", "--ztf-version", "9.9"])
    assert "invalid choice: '9.9'" in capsys.readouterr().err
