"""Stage 1: decoding real ZTF alerts of every schema version, and bad bytes."""
from __future__ import annotations

import io
import re

import fastavro
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fink_t2.alerts.fastavro_path import decode_container_records, decode_one, read_parquet_records
from fink_t2.alerts.decode import decode_payloads
from fink_t2.alerts.container import parse_container
from fink_t2.alerts.sources import iter_records

from tests.conftest import SAMPLE_ALERTS, shared_path


def _provenance_totals() -> tuple[int, int]:
    """(avro records, parquet records) stated by ../shared/data/ztf/PROVENANCE.md, minus withheld."""
    text = shared_path("data", "ztf", "PROVENANCE.md").read_text()
    m = re.search(r"\((\d+) records / \d+ unique in Avro, (\d+) records / \d+ unique in Parquet\)", text)
    withheld = re.search(r"`avro/(fink-broker_all_distribute_topics_\d+)/` \((\d+) alerts", text)
    assert m and withheld, "PROVENANCE.md format changed"
    absent = not shared_path("data", "ztf", "avro").joinpath(withheld.group(1)).exists()
    return int(m.group(1)) - (int(withheld.group(2)) if absent else 0), int(m.group(2))


def test_every_shared_alert_decodes_and_counts_match_provenance():
    avro_expected, parquet_expected = _provenance_totals()
    root = shared_path("data", "ztf")
    avro = list(iter_records([root / "avro"]))
    parquet = list(iter_records([root / "parquet"]))
    assert [r.error for r in avro if r.error] == []
    assert len(avro) == avro_expected
    assert len(parquet) == parquet_expected
    for rec in avro + parquet:
        assert isinstance(rec.record["candid"], int) and rec.record["candidate"]["jd"] > 2.4e6


@pytest.mark.parametrize("version", ["v3.0", "v3.1", "v3.2"])
def test_schema_evolution_same_alert_same_fields(version):
    folder = shared_path("data", "ztf", "avro", "ztf-avro-alert")
    ref = decode_container_records((folder / "472263571115115000.avro").read_bytes())[0]
    old = decode_container_records((folder / "schema_evolution" / f"472263571115115000_{version}.avro").read_bytes())[0]
    assert old["candid"] == ref["candid"] == 472263571115115000
    assert old["candidate"]["magpsf"] == pytest.approx(ref["candidate"]["magpsf"])
    assert old["candidate"]["jd"] == ref["candidate"]["jd"]


def test_fastavro_path_decodes_the_whole_record(sample_payloads):
    """The fastavro path reads every field with the writer schema, as a consumer does."""
    for payload in sample_payloads[:20]:
        ours, error = decode_one(payload)
        assert error is None
        assert ours == next(fastavro.reader(io.BytesIO(payload)))


def test_multi_record_and_spark_written_containers():
    folder = SAMPLE_ALERTS / "fink-client_datatest"
    multi = decode_container_records((folder / "avro_multi_alerts.avro").read_bytes())
    spark = decode_container_records((folder / "part-3-305711.avro").read_bytes())
    assert len(multi) == 11 and len(spark) == 31
    assert all("cdsxmatch" in r and "roid" in r for r in spark)
    # a multi-record container is not one Kafka message: decode_one says so
    record, error = decode_one((folder / "avro_multi_alerts.avro").read_bytes())
    assert record is None and "expected 1 record" in error


def test_batch_columns_match_the_packet(sample_payloads):
    batch = decode_payloads(sample_payloads)
    assert len(batch) == len(sample_payloads) and all(e is None for e in batch.error)
    for i in (0, len(batch) - 1):
        record = next(fastavro.reader(io.BytesIO(sample_payloads[i])))
        dets = [p for p in (record["prv_candidates"] or []) if p["magpsf"] is not None] + [record["candidate"]]
        sl = slice(batch.offsets[i], batch.offsets[i + 1])
        assert batch.candid[i] == record["candid"]
        np.testing.assert_array_equal(batch.hist_jd[sl], [p["jd"] for p in dets])
        np.testing.assert_array_equal(batch.hist_mag[sl], np.array([p["magpsf"] for p in dets], dtype=np.float32))
        np.testing.assert_array_equal(batch.hist_negative[sl], [p["isdiffpos"] in ("f", "0") for p in dets])


def test_bad_payloads_become_error_rows_and_the_rest_survives(sample_payloads):
    good = sample_payloads[0]
    bad = [None, b"", b"not avro at all", good[: len(good) // 2], good[:-5], good[:100]]
    corrupt = bytearray(good)
    corrupt[-10] ^= 0xFF  # inside the sync marker
    bad.append(bytes(corrupt))
    batch = decode_payloads([good, *bad, good])
    assert batch.error[0] is None and batch.error[-1] is None
    assert batch.candid[0] == batch.candid[-1] > 0
    for reason in batch.error[1:-1]:
        assert reason is not None and reason.strip()
    assert batch.error[1] == batch.error[2] == "empty_message"
    assert "bad magic" in batch.error[3]


def test_wrong_schema_record_is_an_error(sample_payloads):
    schema = {"type": "record", "name": "other", "fields": [{"name": "x", "type": "int"}]}
    buf = io.BytesIO()
    fastavro.writer(buf, schema, [{"x": 1}])
    batch = decode_payloads([buf.getvalue(), sample_payloads[0]])
    assert batch.error[0] == "missing_field: candidate" and batch.error[1] is None


def test_schemaless_record_with_writer_schema(sample_payloads):
    container = parse_container(sample_payloads[0])
    record, error = decode_one(container.blocks[0].data, container.schema_json)
    assert error is None and record["candid"] == decode_one(sample_payloads[0])[0]["candid"]


def test_parquet_alerts_read():
    path = shared_path("data", "ztf", "parquet", "fink-science", "alerts.parquet")
    records = read_parquet_records(str(path))
    assert len(records) == 51 and all(r["candidate"]["fid"] == 2 for r in records)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(data):
    batch = decode_payloads([data])
    assert len(batch) == 1 and (batch.error[0] is not None or batch.candid[0] >= 0)


SAMPLE_PACKET = sorted(SAMPLE_ALERTS.glob("fink-alert-simulator_datasim_20181129/*.avro"))[0].read_bytes()


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=len(SAMPLE_PACKET) - 1), st.integers(min_value=0, max_value=255))
def test_single_byte_corruption_never_raises(position, value):
    payload = bytearray(SAMPLE_PACKET)
    payload[position % len(payload)] = value
    batch = decode_payloads([bytes(payload)])
    assert len(batch) == 1
