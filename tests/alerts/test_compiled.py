"""Stage 1: the schema-compiled decoder equals the fastavro path, alert by alert.

Both decode the same values and refuse the same payloads; where bytes are refused, each
words its own ``avro_decode:`` reason (``reason_class``).
"""
from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import fastavro
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fink_t2.alerts import compiled as fast_avro
from fink_t2.alerts.batch import AlertBatch, records_to_batch
from fink_t2.alerts.fastavro_path import decode_one
from fink_t2.alerts.decode import decode_payloads
from fink_t2.alerts.container import build_single_record_container, encode_long, parse_container
from fink_t2.alerts.schema import SchemaError
from fink_t2.tools.fuzz import STRICTER_REASONS
from fink_t2.tools.fuzz_cases import trace_record

from tests.conftest import SAMPLE_ALERTS, SHARED, shared_path

pytestmark = pytest.mark.skipif(not fast_avro.enabled(), reason="numba not installed (fast path off)")

SHARED_AVRO = SHARED / "data" / "ztf" / "avro"
SCHEMA_VERSIONS = ("2.0", "3.0", "3.1", "3.2", "3.3", "4.02")


# --------------------------------------------------------------------------- helpers


def fastavro_batch(payloads: list[bytes | None]) -> AlertBatch:
    """The AlertBatch of the fastavro path (what decode_payloads did before the fast path)."""
    decoded = [decode_one(p) for p in payloads]
    return records_to_batch([record for record, _ in decoded], [error for _, error in decoded])


def reason_class(reason: str | None) -> str | None:
    """The reason both decoders give alike: the text of field/schema/framing reasons, the mere
    prefix of byte-level ones (``avro_decode: <what each decoder saw>``)."""
    if reason is None or not reason.startswith("avro_decode:") or "expected 1 record" in reason:
        return reason
    return "avro_decode"


def assert_batches_equal(ours: AlertBatch, ref: AlertBatch) -> None:
    """Every field equal: same dtypes and shapes, NaN equal to NaN; errors by ``reason_class``."""
    for name in AlertBatch.__dataclass_fields__:
        a, b = getattr(ours, name), getattr(ref, name)
        if isinstance(b, np.ndarray):
            assert isinstance(a, np.ndarray), name
            assert a.dtype == b.dtype and a.shape == b.shape, (name, a.dtype, b.dtype, a.shape, b.shape)
            np.testing.assert_array_equal(a, b, err_msg=name)  # NaN == NaN here
        elif name == "error":
            assert list(map(reason_class, a)) == list(map(reason_class, b)), list(zip(a, b))
        else:
            assert a == b, name


def compiled_matches_fastavro(payloads: list[bytes | None], **options) -> dict[str, int]:
    """Decode with the compiled path, check it equals fastavro, return its stats. A payload we refuse
    for bytes the Avro spec forbids but fastavro reads (``fuzz.STRICTER_REASONS``, e.g. a union index
    of -1 that fastavro takes as the last branch) is compared as a missing payload on both sides."""
    stats: dict[str, int] = {}
    ours = fast_avro.decode_container_payloads(payloads, stats=stats, **options)
    ref = fastavro_batch(payloads)
    stricter = [i for i, (a, b) in enumerate(zip(ours.error, ref.error))
                if b is None and a is not None and a.startswith(STRICTER_REASONS)]
    if stricter:
        payloads = [None if i in stricter else p for i, p in enumerate(payloads)]
        ours, ref = fast_avro.decode_container_payloads(payloads, **options), fastavro_batch(payloads)
    assert_batches_equal(ours, ref)
    return stats


def split_container(payload: bytes) -> list[bytes]:
    """One single-record container per record of ``payload`` (the records' exact bytes)."""
    container = parse_container(payload)
    writer = fastavro.parse_schema(json.loads(container.schema_json))
    singles = []
    for block in container.blocks:
        stream = io.BytesIO(block.data)
        for _ in range(block.count):
            start = stream.tell()
            fastavro.schemaless_reader(stream, writer, None)
            record = block.data[start : stream.tell()]
            singles.append(build_single_record_container(container.schema_json, container.sync, record))
    return singles


def avro_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.avro"))


def single_alerts(root: Path) -> list[bytes]:
    return [single for path in avro_files(root) for single in split_container(path.read_bytes())]


def write_container(schema: dict, records: list[dict]) -> bytes:
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), records)
    return buf.getvalue()


@pytest.fixture(scope="module")
def sample_files() -> list[bytes]:
    files = avro_files(SAMPLE_ALERTS)
    assert len(files) == 97, f"expected the 97 shipped sample files under {SAMPLE_ALERTS}"
    return [path.read_bytes() for path in files]


@pytest.fixture(scope="module")
def spark_schema_and_record() -> tuple[dict, dict]:
    """The Spark-written (topLevelRecord, all fields nullable) schema and a full record with
    18 of its 21 prv_candidates detected."""
    payload = (SAMPLE_ALERTS / "fink-client_datatest" / "avro_multi_alerts.avro").read_bytes()
    reader = fastavro.reader(io.BytesIO(payload))
    records = list(reader)
    return reader.writer_schema, records[3]


# --------------------------------------------------------------------------- real alerts


def test_every_shipped_file_matches_fastavro(sample_files):
    stats = compiled_matches_fastavro(sample_files)
    # the 3 multi-record containers are errors: one alert per message
    assert stats == {"compiled": 94, "rejected": 3}


def test_every_shipped_record_as_its_own_message_matches(sample_files):
    singles = [s for payload in sample_files for s in split_container(payload)]
    assert len(singles) == 139
    stats = compiled_matches_fastavro(singles)
    assert stats == {"compiled": 139, "rejected": 0}  # incl. Spark-written topLevelRecord schemas
    batch = decode_payloads(singles)
    assert batch.roid is not None and batch.cdsxmatch is not None
    assert all(error is None for error in batch.error)


def test_every_shared_alert_matches_fastavro():
    root = shared_path("data", "ztf", "avro")
    files = [path.read_bytes() for path in avro_files(root)]
    compiled_matches_fastavro(files)
    singles = single_alerts(root)
    assert compiled_matches_fastavro(singles)["rejected"] == 0


def _alerts_by_version() -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    roots = [SAMPLE_ALERTS] + ([SHARED_AVRO] if SHARED_AVRO.exists() else [])
    for root in roots:
        for payload in single_alerts(root):
            record = next(fastavro.reader(io.BytesIO(payload)))
            found.setdefault(record.get("schemavsn"), payload)
    return found


@pytest.fixture(scope="module")
def alerts_by_version() -> dict[str, bytes]:
    return _alerts_by_version()


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_schema_versions_are_compiled(version, alerts_by_version):
    if version not in alerts_by_version:
        shared_path("data", "ztf", "avro")  # skips with a clear message when ../shared is absent
        pytest.fail(f"no alert of schema {version} in the sample or in {SHARED_AVRO}")
    payload = alerts_by_version[version]
    assert compiled_matches_fastavro([payload]) == {"compiled": 1, "rejected": 0}
    corrupt = bytearray(payload)
    corrupt[len(payload) // 3] ^= 0x55
    compiled_matches_fastavro([payload, bytes(corrupt), payload[: len(payload) // 2]])


def test_mixed_schemas_bad_payloads_and_order(sample_files):
    singles = [s for payload in sample_files for s in split_container(payload)]
    rng = np.random.default_rng(7)
    bad = [None, b"", b"not avro", singles[0][:100], singles[5][:-3], b"Obj\x01" + b"\x00" * 40]
    mixed = singles + bad + sample_files[:5]
    order = rng.permutation(len(mixed))
    compiled_matches_fastavro([mixed[i] for i in order])


def test_small_chunks_and_point_growth(sample_files, monkeypatch):
    monkeypatch.setattr(fast_avro, "CHUNK_BYTES", 100_000)  # ~2 alerts per kernel call
    compiled_matches_fastavro(sample_files[:30])


# --------------------------------------------------------------------------- constructed records


@pytest.mark.parametrize("edit, error", [
    (lambda r: r.update(candidate=None), "missing_field: candidate"),
    (lambda r: r["candidate"].update(jd=None), "missing_field: candidate.jd"),
    (lambda r: r["candidate"].update(fid=None), "missing_field: candidate.fid"),
    (lambda r: r.update(candid=None), None),  # the id is then candidate.candid (issue 10, item 7)
    (lambda r: (r.update(candid=None), r["candidate"].update(candid=None)), "missing_field: candid"),
    (lambda r: r.update(candid=-5), "invalid_field: candid -5 < 0"),
    (lambda r: r.update(objectId=None, cdsxmatch=None), None),
    (lambda r: r.update(prv_candidates=None), None),
    (lambda r: r["candidate"].update(magpsf=None, rb=None, ssdistnr=None), None),
    (lambda r: [p.update(isdiffpos=v) for p, v in zip(r["prv_candidates"], ("0", "f", "t", "1", None, "ff"))], None),
    (lambda r: [p.update(jd=None, fid=None, sigmapsf=None) for p in r["prv_candidates"][:3]], None),
    (lambda r: r.update(prv_candidates=[]), None),
])
def test_nullable_fields_of_spark_records(spark_schema_and_record, edit, error):
    schema, record = spark_schema_and_record
    record = copy.deepcopy(record)
    edit(record)
    payload = write_container(schema, [record])
    assert compiled_matches_fastavro([payload]) == {"compiled": 1, "rejected": 0}
    assert decode_payloads([payload]).error == [error]


def test_long_history_grows_the_point_arrays(spark_schema_and_record):
    schema, record = spark_schema_and_record
    record = copy.deepcopy(record)
    detection = next(p for p in record["prv_candidates"] if p["magpsf"] is not None)
    record["prv_candidates"] = [detection] * 500
    payload = write_container(schema, [record])
    assert compiled_matches_fastavro([payload]) == {"compiled": 1, "rejected": 0}
    assert np.diff(decode_payloads([payload]).offsets).tolist() == [501]


def test_wrong_schema_is_a_missing_field_error():
    payload = write_container({"type": "record", "name": "other", "fields": [{"name": "x", "type": "int"}]}, [{"x": 1}])
    assert compiled_matches_fastavro([payload]) == {"compiled": 1, "rejected": 0}
    assert decode_payloads([payload]).error == ["missing_field: candidate"]


def test_refused_schemas_are_error_rows_on_both_paths(spark_schema_and_record):
    recursive = {"type": "record", "name": "node", "fields": [
        {"name": "next", "type": ["null", "node"]}, {"name": "candid", "type": "long"}]}
    with pytest.raises(SchemaError, match="recursive type node"):
        fast_avro.compile_schema(json.dumps(recursive).encode())
    schema, record = spark_schema_and_record
    timestamped = copy.deepcopy(schema)
    candid = next(f for f in timestamped["fields"] if f["name"] == "candid")
    candid["type"] = [{"type": "long", "logicalType": "timestamp-micros"}, "null"]
    payloads = [write_container(recursive, [{"next": {"next": None, "candid": 1}, "candid": 2}]),
                write_container(timestamped, [record])]
    assert compiled_matches_fastavro(payloads) == {"compiled": 0, "rejected": 2}
    assert decode_payloads(payloads).error == [
        "schema: recursive type node",
        "type_mismatch: candid is long (timestamp-micros) (expected int, long or null)"]


def test_deflate_container_is_compiled(spark_schema_and_record):
    schema, record = spark_schema_and_record
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), [record], codec="deflate")
    assert compiled_matches_fastavro([buf.getvalue()]) == {"compiled": 1, "rejected": 0}
    assert decode_payloads([buf.getvalue()]).candid.tolist() == [record["candid"]]


# --------------------------------------------------------------------------- damaged bytes

SAMPLE_PACKET = sorted(SAMPLE_ALERTS.glob("fink-alert-simulator_datasim_20181129/*.avro"))[0].read_bytes()
SPARK_PACKET = split_container((SAMPLE_ALERTS / "fink-client_datatest" / "part-3-305711.avro").read_bytes())[0]


@pytest.mark.parametrize("packet", [SAMPLE_PACKET, SPARK_PACKET], ids=["ztf-3.2", "spark-4.02"])
def test_truncated_payloads(packet):
    header = parse_container(packet).header_size
    cuts = sorted({*range(0, len(packet), 997), *range(header - 20, header + 400, 7), len(packet) - 1})
    payloads = [packet[:cut] for cut in cuts]
    compiled_matches_fastavro(payloads)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([SAMPLE_PACKET, SPARK_PACKET]), st.floats(0, 1, exclude_max=True),
       st.integers(min_value=0, max_value=255))
def test_byte_flips_match_fastavro(packet, where, value):
    start = parse_container(packet).header_size
    position = start + int(where * (len(packet) - start))  # in the data block
    payload = bytearray(packet)
    payload[position] = value
    compiled_matches_fastavro([bytes(payload), packet])


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=len(SAMPLE_PACKET) - 1), st.integers(min_value=0, max_value=255))
def test_byte_flips_anywhere_never_raise(position, value):
    payload = bytearray(SAMPLE_PACKET)
    payload[position] = value
    batch = fast_avro.decode_container_payloads([bytes(payload)])
    assert len(batch) == 1 and (batch.error[0] is not None or batch.candid[0] >= 0)
    compiled_matches_fastavro([bytes(payload)])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), min_size=2, max_size=12))
def test_several_flips_in_the_fields_match_fastavro(flips):
    start = parse_container(SPARK_PACKET).header_size
    payload = bytearray(SPARK_PACKET)
    for offset, value in flips:
        payload[start + offset % 3000] = value  # the candidate and history, before the cutouts
    compiled_matches_fastavro([bytes(payload)])


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=3000))
def test_random_record_bytes_never_raise(body):
    container = parse_container(SAMPLE_PACKET)
    payload = build_single_record_container(container.schema_json, container.sync, body)
    compiled_matches_fastavro([payload])


def _edited_varint(packet: bytes, what: str, old: bytes, new: bytes) -> bytes:
    """``packet`` with the first record varint of kind ``what`` (union, count) that is ``old``
    replaced by ``new`` such that fastavro still reads it, re-framed."""
    container = parse_container(packet)
    record = container.blocks[0].data
    for pos, kind in trace_record(container.schema_json, record):
        if kind == what and record[pos : pos + len(old)] == old:
            edited = record[:pos] + new + record[pos + len(old):]
            payload = build_single_record_container(container.schema_json, container.sync, edited)
            if fastavro_reads_something(payload):
                return payload
    raise AssertionError(f"no {what} {old!r} to edit")


@pytest.mark.parametrize("edit, reason", [
    # index 1 of [T, "null"] written as -1: fastavro takes the last branch, the same null
    (lambda p: _edited_varint(p, "union", b"\x02", encode_long(-1)), "avro_decode: negative union or enum index"),
    # an empty array as a block of -2^63 items and 0 bytes, then the end: fastavro reads no item
    (lambda p: _edited_varint(p, "count", b"\x00", b"\xff" * 9 + b"\x01\x00\x00"), "avro_decode: block count -2^63"),
    (lambda p: _edited_varint(p, "union", b"\x02", b"\x82" + b"\x80" * 9 + b"\x00"),
     "avro_decode: varint longer than 10 bytes"),
    (lambda p: b"Obz" + p[3:], "avro_decode: not an Avro container (bad magic)"),
])
def test_spec_violations_fastavro_reads_are_refused(edit, reason):
    """fastavro 1.13 reads these (index -1 = last branch, -2^63 = empty block, magic unchecked...);
    the Avro spec forbids them, and the compiled decoder refuses them, with the reason."""
    payload = edit(SPARK_PACKET)
    assert fastavro_reads_something(payload)
    assert fast_avro.decode_container_payloads([payload]).error[0].startswith(reason)


def fastavro_reads_something(payload: bytes) -> bool:
    try:
        return len(list(fastavro.reader(io.BytesIO(payload)))) == 1
    except (EOFError, ValueError, IndexError, OverflowError):
        return False
