"""``fink-t2 consume`` against a real broker: every output format of the job, one line per message."""
from __future__ import annotations

import json

import pytest

from fink_t2.cli import main
from fink_t2.kafka.consume import decode_message
from fink_t2.kafka.messages import deadletter_message, enrich_alert, enrich_alert_schemaless, score_message
from fink_t2.kafka.producer import DirectProducer
from fink_t2.kafka.schema_files import publish_schema
from fink_t2.science.classify import classify

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
