"""``fink-t2 consume`` against a real broker: every output format of the job, one line per message."""
from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from fink_t2.alerts.container import MAX_BLOCK_BYTES, encode_long
from fink_t2.alerts.decode import decode_payloads
from fink_t2.cli import main
from fink_t2.kafka.consume import MAX_REASON_CHARS, decode_message
from fink_t2.kafka.messages import deadletter_message, enrich_alert, enrich_alert_schemaless, score_message
from fink_t2.kafka.producer import DirectProducer
from fink_t2.kafka.schema_files import publish_schema
from fink_t2.science.classify import classify
from fink_t2.tools import fuzz
from fink_t2.tools.fuzz_cases import CLASSES, container_bytes, load_corpus, make_case

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rows(sample_payloads):
    payloads = sample_payloads[:3] + sample_payloads[-3:]  # schemas 3.3 and 3.1
    return payloads, classify(payloads).to_dict("records")


def consume_lines(capsys, *args: str) -> list[str]:
    assert main(["consume", *args, "--idle-timeout", "3"]) == 0
    return capsys.readouterr().out.splitlines()


def test_consume_prints_one_line_per_message_of_every_format(kafka_broker, kafka_topic, rows, tmp_path, capsys):
    """Container and schemaless enriched alerts (headers through the worker's producer), scores, a
    dead letter, and two messages it cannot read (junk; a schema it is not given) in one topic."""
    payloads, results = rows
    schema_dir = tmp_path / "schemas"
    messages = []
    for payload, row in zip(payloads, results):
        key = str(row["candid"]).encode()
        value, schema = enrich_alert_schemaless(payload, row)
        publish_schema(schema, schema_dir)
        messages += [(kafka_topic, key, enrich_alert(payload, row)), (kafka_topic, key, value, (schema.header,)),
                     (kafka_topic, key, score_message(row))]
    messages += [(kafka_topic, b"t/0/9", deadletter_message("avro_decode: bad magic", b"junk", b"k", "t", 0, 9)),
                 (kafka_topic, b"junk", b"\x00\x01 not an output"),
                 (kafka_topic, b"elsewhere", b"\x02", (("avro.schema.crc64", b"0123456789abcdef"),))]
    DirectProducer(kafka_broker).send_all(messages)

    lines = consume_lines(capsys, kafka_topic, "--bootstrap", kafka_broker, "--schema-dir", str(schema_dir),
                          "--plot", str(tmp_path / "consumed.png"))
    assert lines[-2] == f"# {len(messages)} messages from {kafka_topic}: 1 deadletter, 12 enriched, 6 score, " \
                        "2 undecodable"
    assert lines[-1] == f"wrote {tmp_path / 'consumed.png'}" and (tmp_path / "consumed.png").stat().st_size > 10_000
    body = lines[:-2]
    for row in results:
        candid = str(row["candid"])
        about = [line.split(" ", 1)[0] for line in body if f" {candid} ra=" in line]
        assert sorted(about) == ["enriched", "enriched", "score"]  # both enriched formats, same line
        same = {line.split(" ", 1)[1].strip() for line in body if f" {candid} ra=" in line}
        assert len(same) == 1, same
        (text,) = same
        assert text.startswith(f"{row['objectId']} {candid} ra={row['ra']:.6f} dec={row['dec']:.6f} jd={row['jd']:.5f}")
        assert f" fid={row['fid']} {row['t2_status']} " in text
    assert "deadletter  key=t/0/9 reason=avro_decode: bad magic" in body
    assert any(line.startswith("undecodable key=junk reason=ValueError: neither") for line in body)
    assert any(line.startswith("undecodable key=elsewhere reason=SchemaFileError: no published schema") for line in body)


def test_max_stops_early_and_a_remote_broker_is_refused(kafka_broker, kafka_topic, rows, capsys):
    payloads, results = rows
    DirectProducer(kafka_broker).send_all([(kafka_topic, b"k", score_message(row)) for row in results])
    lines = consume_lines(capsys, kafka_topic, "--bootstrap", kafka_broker, "--max", "2")
    assert len(lines) == 3 and lines[-1] == f"# 2 messages from {kafka_topic}: 2 score"
    assert main(["consume", kafka_topic, "--bootstrap", "192.0.2.1:9093"]) == 2
    assert "192.0.2.1:9093 is not on loopback: pass --allow-remote-broker" in capsys.readouterr().err


def test_a_schemaless_message_without_a_schema_dir_says_what_is_missing(rows):
    payloads, results = rows
    value, schema = enrich_alert_schemaless(payloads[0], results[0])
    consumed = decode_message(value, [schema.header], b"k", schema_dir=None)
    assert consumed.kind == "undecodable" and "give --schema-dir" in consumed.fields["reason"]
    score = decode_message(score_message(results[0]))
    assert score.kind == "score" and score.fields == json.loads(score_message(results[0]))


def test_the_idle_clock_starts_at_the_partition_assignment(monkeypatch):
    """A slow group join (no assignment yet) is not taken for an empty topic; after the assignment,
    idle_seconds without a message ends the read."""
    from fink_t2.kafka import consume as module

    now = [10.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: now[0])
    started = last = 0.0
    assert not module._idle_over([], last, started, idle_seconds=3.0)  # 10 s > 3 s idle, but not assigned
    now[0] = module.ASSIGNMENT_TIMEOUT_SECONDS + 1.0
    assert module._idle_over([], last, started, idle_seconds=3.0)  # no assignment in time: give up
    now[0] = 102.0
    assert not module._idle_over([100.0], last, started, idle_seconds=3.0)  # 2 s after the assignment
    now[0] = 103.0
    assert module._idle_over([100.0], last, started, idle_seconds=3.0)


def _undecodable_reason(value: bytes) -> str:
    consumed = decode_message(value, None, b"k")
    line = consumed.line()
    assert consumed.kind == "undecodable" and "\n" not in line and len(consumed.fields["reason"]) <= MAX_REASON_CHARS
    return consumed.fields["reason"]


def test_a_score_with_fields_of_other_types_is_undecodable_and_says_which(rows):
    """JSON that is not a score as the job writes it: each message is one undecodable line, never a
    crash of the line, the count or the plot (these crashed or were printed as scores before)."""
    payloads, results = rows
    score = json.loads(score_message(results[0]))
    edits = {"ra": "x", "fid": 1.5, "candid": True, "t2_probs": [0.1, 0.9], "t2_class": ["SNIa"], "t2_snia": "0.5",
             "t2_status": None}
    for name, value in edits.items():
        assert name in _undecodable_reason(json.dumps(score | {name: value}).encode()), name
    assert "t2_snia" in _undecodable_reason(json.dumps(score | {"t2_snia": True}).encode())  # a bool is no P(SNIa)
    assert "RecursionError" in _undecodable_reason(b'{"a":' + b"[" * 100_000)


def test_hostile_containers_are_refused_by_the_bounded_decoder_before_any_work():
    """A deflate bomb (fastavro.reader inflated all of it) and an array of nulls with a 2^60 count
    (fastavro.reader looped for ever) are undecodable, with the job's own reasons."""
    reason_schema = json.dumps({"type": "record", "name": "d", "fields": [{"name": "reason", "type": "string"}]})
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    bomb = compressor.compress(bytes(64 * MAX_BLOCK_BYTES)) + compressor.flush()
    reason = _undecodable_reason(container_bytes(reason_schema.encode(), [(1, bomb)], codec=b"deflate"))
    assert f"inflates to more than {MAX_BLOCK_BYTES} bytes" in reason
    nulls = json.dumps({"type": "record", "name": "n", "fields": [
        {"name": "a", "type": {"type": "array", "items": "null"}}]})
    reason = _undecodable_reason(container_bytes(nulls.encode(), [(1, encode_long(1 << 60) + encode_long(0))]))
    assert "array of null items" in reason
    long_reason = container_bytes(reason_schema.encode(), [(1, encode_long(2000) + b"x\n" * 1000)])
    consumed = decode_message(long_reason, None, b"k")
    assert consumed.kind == "deadletter" and consumed.fields["reason"] == " ".join(["x"] * (MAX_REASON_CHARS // 2))


def test_fuzzed_alerts_and_their_enriched_messages_read_as_the_decoder_reads_them():
    """Every fuzz class: the raw case is one line whatever it is; when the job's decoder accepts it,
    its enriched message reads back as enriched with the decoder's objectId and candid."""
    corpus, accepted = load_corpus(), 0
    for name in sorted(CLASSES):
        rng = np.random.default_rng(20261203)
        for _ in range(15):
            payload = make_case(name, rng, corpus)
            assert "\n" not in decode_message(payload, None, b"k").line()
            batch = decode_payloads([payload])
            if batch.error[0] is None:
                consumed = decode_message(enrich_alert(payload, fuzz.ENRICH_RESULT), None, b"k")
                assert consumed.kind == "enriched", (name, consumed.fields)
                assert (consumed.fields["objectId"], consumed.fields["candid"]) == (batch.object_id[0], batch.candid[0])
                assert consumed.fields["t2_status"] == fuzz.ENRICH_RESULT["t2_status"]
                accepted += 1
    assert accepted > 15  # not vacuous: several classes keep decodable alerts
