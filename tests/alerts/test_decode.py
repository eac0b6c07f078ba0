"""Stage 1: decoding real ZTF alerts of every schema version, and bad bytes."""
from __future__ import annotations

import copy
import io
import json
import re
import zlib
from pathlib import Path

import fastavro
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fink_t2.alerts.fastavro_path import decode_container_records, decode_one, read_parquet_records
from fink_t2.alerts.decode import decode_payloads
from fink_t2.alerts.container import MAX_BLOCK_BYTES, encode_long, parse_container
from fink_t2.tools.fuzz_cases import container_bytes
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
        candidate = record["candidate"]  # the position and photometry the score messages carry
        assert (batch.ra[i], batch.dec[i], batch.jd[i]) == (candidate["ra"], candidate["dec"], candidate["jd"])
        assert batch.magpsf[i] == np.float32(candidate["magpsf"]) and batch.candidate_fid[i] == candidate["fid"]


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


# --------------------------------------------------------------------------- issue 10: hostile alerts
# Each payload is a real alert (or its schema) edited one way; both decoders must turn it into an
# error row with its reason (or decode it) and never raise, the rest of the batch going on.

ZTF_PACKET = SAMPLE_PACKET  # schema 3.2, one record, cutouts included
SPARK_FILE = SAMPLE_ALERTS / "fink-client_datatest" / "part-3-305711.avro"


@pytest.fixture(params=["compiled", "fastavro"])
def decoder(request, monkeypatch):
    """Run the test on both decoding paths."""
    monkeypatch.setenv("FINK_T2_FAST_AVRO", "1" if request.param == "compiled" else "0")
    return request.param


def _schema_and_record(packet: bytes) -> tuple[dict, dict]:
    return json.loads(parse_container(packet).schema_json), next(fastavro.reader(io.BytesIO(packet)))


def _container(schema: dict, record_bytes: bytes, codec: bytes = b"null") -> bytes:
    return container_bytes(json.dumps(schema).encode(), [(1, record_bytes)], codec, b"s" * 16)


def _written(schema: dict, record: dict, codec: str = "null") -> bytes:
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(copy.deepcopy(schema)), [record], codec=codec)
    return out.getvalue()


def _decode_between_good_alerts(payload: bytes) -> str | None:
    """The error of ``payload`` decoded between two real alerts, which must still decode."""
    batch = decode_payloads([ZTF_PACKET, payload, ZTF_PACKET])
    assert batch.error[0] is None and batch.error[2] is None
    assert batch.candid[0] == batch.candid[2] == 697251920415015001
    return batch.error[1]


def test_recursive_schema_is_an_error_row(decoder):
    schema = {"type": "record", "name": "alert", "fields": [{"name": "candid", "type": "long"},
                                                           {"name": "self", "type": "alert"}]}
    payload = _container(schema, b"\x02" * 64)  # fastavro alone: SIGSEGV of the worker
    assert _decode_between_good_alerts(payload) == "schema: recursive type alert"


def test_null_history_items_with_a_huge_count_are_refused(decoder):
    """The 237-byte alert of issue 10 (fastavro alone: memory grows without end)."""
    schema, record = _schema_and_record(ZTF_PACKET)
    history = next(f for f in schema["fields"] if f["name"] == "prv_candidates")
    history.pop("default", None)
    history["type"] = {"type": "array", "items": "null"}
    empty, one = (_written_record(schema, record | {"prv_candidates": items}) for items in ([], [None]))
    at = next(i for i, (a, b) in enumerate(zip(empty, one)) if a != b)  # the block count
    payload = _container(schema, one[:at] + encode_long(1 << 62) + one[at + 1:])
    assert _decode_between_good_alerts(payload).startswith(
        "schema: array of null items can decode more than 4 values per byte")


def _written_record(schema: dict, record: dict) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(copy.deepcopy(schema)), record)
    return out.getvalue()


def test_block_count_larger_than_the_bytes_left_is_an_error(decoder):
    schema, record = _schema_and_record(ZTF_PACKET)
    schema["fields"].append({"name": "flags", "type": {"type": "array", "items": "boolean"}})
    payload = _container(schema, parse_container(ZTF_PACKET).blocks[0].data + encode_long(1 << 62))
    assert _decode_between_good_alerts(payload).startswith("avro_decode:")
    assert fastavro_reads(payload) is False


def fastavro_reads(payload: bytes) -> bool:
    """Whether the consumers' reader (fastavro.reader) reads ``payload`` (safe payloads only)."""
    try:
        list(fastavro.reader(io.BytesIO(payload)))
    except (EOFError, ValueError, IndexError, OverflowError):
        return False
    return True


def test_compressed_containers_are_refused_or_inflated_within_the_cap(decoder):
    schema, record = _schema_and_record(ZTF_PACKET)
    bzip2 = _written(schema, record, codec="bzip2")  # issue 10: a 2.3 KB bzip2 container took 5.9 GiB
    assert _decode_between_good_alerts(bzip2) == "avro_decode: unsupported codec 'bzip2' (supported: null, deflate)"
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    bomb = compressor.compress(bytes(64 << 20)) + compressor.flush()  # 64 MiB of zeros in 64 KB
    assert _decode_between_good_alerts(_container(schema, bomb, b"deflate")) == (
        f"avro_decode: deflate block inflates to more than {MAX_BLOCK_BYTES} bytes")
    assert _decode_between_good_alerts(_written(schema, record, codec="deflate")) is None


@pytest.mark.parametrize("packet, field, value, reason", [
    (ZTF_PACKET, "candid", "697251920415015001", "type_mismatch: candid is string (expected int, long or null)"),
    (SPARK_FILE, "roid", "3", "type_mismatch: roid is string (expected int, long or null)"),
])
def test_wrong_field_types_are_error_rows(decoder, packet, field, value, reason):
    """Issue 10 item 3: these raised ValueError out of decode_payloads."""
    schema, record = _schema_and_record(packet.read_bytes() if isinstance(packet, Path) else packet)
    next(f for f in schema["fields"] if f["name"] == field)["type"] = ["null", "string"]
    assert _decode_between_good_alerts(_written(schema, record | {field: value})) == reason


def test_history_point_without_jd_is_not_a_detection_time(decoder):
    """Issue 10 item 3: a prv_candidates record without jd raised KeyError on the fastavro path."""
    schema, record = _schema_and_record(ZTF_PACKET)
    history = next(f for f in schema["fields"] if f["name"] == "prv_candidates")["type"][0]["items"]
    history["fields"] = [f for f in history["fields"] if f["name"] != "jd"]
    record["prv_candidates"] = [{k: v for k, v in p.items() if k != "jd"} for p in record["prv_candidates"]]
    batch = decode_payloads([_written(schema, record)])
    detected = [p for p in record["prv_candidates"] if p["magpsf"] is not None]
    assert batch.error == [None] and len(detected) >= 2
    assert np.isnan(batch.hist_jd[: len(detected)]).all()  # later cut as invalid_photometry
    assert batch.hist_jd[len(detected)] == record["candidate"]["jd"]
    np.testing.assert_array_equal(batch.hist_mag[: len(detected)], np.float32([p["magpsf"] for p in detected]))


def _field_offset(record_bytes: bytes, text: bytes) -> int:
    at = record_bytes.find(text)
    assert at > 0 and record_bytes.find(text, at + 1) == -1
    return at


def test_invalid_utf8_in_a_skipped_string_is_an_error(decoder):
    """Issue 10 item 5: it was classified and enriched, and the enriched alert was unreadable."""
    _, record = _schema_and_record(ZTF_PACKET)
    body = bytearray(parse_container(ZTF_PACKET).blocks[0].data)
    body[_field_offset(body, record["cutoutScience"]["fileName"].encode())] = 0xFF  # same length: framing intact
    payload = _container(json.loads(parse_container(ZTF_PACKET).schema_json), bytes(body))
    assert _decode_between_good_alerts(payload).startswith("avro_decode:")
    assert fastavro_reads(payload) is False  # the consumers fail on it too


def test_record_truncated_inside_a_cutout_is_an_error(decoder):
    """Issue 10 item 5: with consistent framing the projected reader skipped past the end."""
    schema, record = _schema_and_record(ZTF_PACKET)
    body = parse_container(ZTF_PACKET).blocks[0].data
    stamp = record["cutoutDifference"]["stampData"]  # the last field: the projected reader skipped past the end
    cut = _field_offset(body, stamp[:64]) + len(stamp) // 2
    payload = _container(schema, body[:cut])
    assert _decode_between_good_alerts(payload).startswith("avro_decode:")
    assert fastavro_reads(payload) is False


def test_duplicate_field_names_are_an_error_not_a_choice(decoder):
    """Issue 10 item 6: fastavro reads the last candid, the compiled decoder read the first."""
    schema, _ = _schema_and_record(ZTF_PACKET)
    schema["fields"].append({"name": "candid", "type": "long"})
    payload = _container(schema, parse_container(ZTF_PACKET).blocks[0].data + encode_long(42))
    assert next(fastavro.reader(io.BytesIO(payload)))["candid"] == 42
    assert _decode_between_good_alerts(payload) == "schema: record ztf.alert has duplicate field names ['candid']"


def test_candid_only_inside_the_candidate_is_the_alert_id(decoder):
    """Issue 10 item 7: such alerts were dead-lettered as missing_field: candid."""
    schema, record = _schema_and_record(ZTF_PACKET)
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "candid"]
    del record["candid"]
    batch = decode_payloads([_written(schema, record)])
    assert batch.error == [None] and batch.candid.tolist() == [record["candidate"]["candid"]] == [697251920415015001]


def test_negative_candid_is_an_error_row(decoder):
    """Issue 10 item 7: a negative candid went out as key b"None"; it is now a dead letter's reason."""
    schema, record = _schema_and_record(ZTF_PACKET)
    assert _decode_between_good_alerts(_written(schema, record | {"candid": -5})) == "invalid_field: candid -5 < 0"


def test_header_metadata_key_not_utf8_is_an_error(decoder):
    """Found by the fuzz run (seed 2, case 160029): the key avro.code\\xe3 was read as a foreign key,
    the codec taken as null and the alert accepted, while fastavro.reader fails on the header."""
    at = ZTF_PACKET.find(b"avro.codec") + len(b"avro.code")
    payload = ZTF_PACKET[:at] + b"\xe3" + ZTF_PACKET[at + 1:]
    assert fastavro_reads(payload) is False
    assert _decode_between_good_alerts(payload) == "avro_decode: header metadata key is not UTF-8 (b'avro.code\\xe3')"
