"""The Python-worker side of the stream, without Spark or Kafka: routing and output frames."""
from __future__ import annotations

import io
import json
from collections import Counter

import fastavro
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pyspark.sql.pandas.serializers import ArrowStreamPandasUDFSerializer
from pyspark.sql.pandas.types import to_arrow_type
from pyspark.sql.types import ArrayType, BinaryType, StringType, StructField, StructType

from fink_t2.config import Config
from fink_t2.kafka.broker import MAX_MESSAGE_BYTES, MAX_OUTPUT_BYTES
from fink_t2.spark.stream import Message, Tally, _frame, route_batch, status_group

from tests.conftest import SAMPLE_ALERTS, rewritten_alert

#: OUTPUT_SCHEMA as a Spark type (parsing the DDL string needs a running session)
HEADER_TYPE = StructType([StructField("key", StringType()), StructField("value", BinaryType())])
OUTPUT_TYPE = StructType([StructField("topic", StringType()), StructField("key", BinaryType()),
                          StructField("value", BinaryType()), StructField("headers", ArrayType(HEADER_TYPE))])


def to_spark_arrow(frame) -> pa.RecordBatch:
    """What Spark does with a ``mapInPandas`` result: its Arrow conversion of the returned frame."""
    serializer = ArrowStreamPandasUDFSerializer("UTC", False, True, True, "dict", False)
    return serializer._create_batch([(frame, to_arrow_type(OUTPUT_TYPE))])


@pytest.mark.parametrize("messages", [[], [Message("enriched", b"42", b"\x00avro")],
                                      [Message("enriched", b"42", b"\x00", (("avro.schema.crc64", b"0123"),)),
                                       Message("scores", b"42", b"{}")]], ids=["empty", "one", "headers"])
def test_output_frame_converts_to_arrow_even_when_empty(messages):
    # An all-dead-letter batch in python mode returns no row to Spark: the empty frame used to have
    # float64 columns and Spark's conversion raised "Expected Array, got ChunkedArray".
    batch = to_spark_arrow(_frame(messages))
    assert batch.num_rows == len(messages)
    assert [row["_0"] for row in batch.to_pylist()] == [
        {"topic": m.topic, "key": m.key, "value": m.value,
         "headers": [{"key": name, "value": value} for name, value in m.headers]} for m in messages]


def kafka_rows(values: list[bytes | None], topic: str = "ztf_test_programid1", partition: int = 0) -> pd.DataFrame:
    """A Kafka source batch as ``mapInPandas`` hands it to the worker."""
    return pd.DataFrame({"key": [f"k{i}".encode() for i in range(len(values))], "value": values,
                         "topic": topic, "partition": partition, "offset": range(100, 100 + len(values))})


def dead_record(message) -> dict:
    return next(fastavro.reader(io.BytesIO(message[2])))


@pytest.fixture(scope="module")
def real_alert() -> bytes:
    return sorted((SAMPLE_ALERTS / "fink-broker_basic_alerts_local_20200101").glob("*.avro"))[0].read_bytes()


def test_every_alert_gets_its_own_key_negative_candids_dead_lettered(real_alert):
    """A valid candid keys its alert; a negative one (never a ZTF id) is a dead letter keyed by its
    source position: no two alerts share the b"None" key they all used to get."""
    positive = next(fastavro.reader(io.BytesIO(real_alert)))["candid"]
    values = [real_alert, rewritten_alert(real_alert, candid=-positive), rewritten_alert(real_alert, candid=-7)]
    frame = kafka_rows(values)
    messages, tally = route_batch(frame, Config())
    out = Config().output
    scores = [(key, json.loads(value)) for topic, key, value, _ in messages if topic == out.scores_topic]
    assert [key for key, _ in scores] == [str(positive).encode()] and scores[0][1]["candid"] == positive
    dead = [m for m in messages if m[0] == out.deadletter_topic]
    assert [m[1] for m in dead] == [f"ztf_test_programid1/0/{o}".encode() for o in frame["offset"][1:]]
    assert [dead_record(m)["reason"] for m in dead] == [f"invalid_field: candid {-positive} < 0",
                                                        "invalid_field: candid -7 < 0"]
    assert all(b"None" not in m[1] for m in messages)
    assert tally.alerts == 3 and tally.statuses["error:invalid_field"] == 2


def test_an_oversize_input_is_dead_lettered_and_truncated_to_fit(real_alert):
    largest_input = MAX_MESSAGE_BYTES - 200  # what the broker still accepts (batch header 61 B + framing)
    big = rewritten_alert(real_alert, size=largest_input)
    junk = b"\xff" * largest_input  # not Avro, as large
    messages, tally = route_batch(kafka_rows([big, junk]), Config())
    assert [m[0] for m in messages] == [Config().output.deadletter_topic] * 2
    for message, source in zip(messages, (big, junk)):
        assert len(message[1]) + len(message[2]) <= MAX_OUTPUT_BYTES
        record = dead_record(message)
        assert record["truncated"] and record["value_size"] == len(source) and record["key_size"] == 2
        assert source.startswith(record["value"]) and len(record["value"]) > len(source) - 2048
        assert record["key"] == b"k0" or record["key"] == b"k1"
        assert f"dead letter truncated to {MAX_OUTPUT_BYTES - len(message[1])} bytes" in record["reason"]
        assert record["reason"].startswith("avro_decode")  # the decoder bounds a block to 1 MiB
    assert tally.statuses == Counter({"error:avro_decode": 2})


def test_an_alert_too_large_once_enriched_is_dead_lettered(real_alert, monkeypatch):
    """With a broker limit below the enriched size (here 20 kB for a 66 kB alert) the alert becomes
    an ``output_too_large`` dead letter that fits the limit, never a refused produce."""
    from fink_t2.spark import stream

    limit = 20_000
    monkeypatch.setattr(stream, "MAX_OUTPUT_BYTES", limit)
    messages, tally = route_batch(kafka_rows([real_alert]), Config())
    assert [m[0] for m in messages] == [Config().output.deadletter_topic]
    record = dead_record(messages[0])
    assert record["reason"].startswith("output_too_large: ") and record["truncated"]
    assert len(messages[0][1]) + len(messages[0][2]) <= limit and record["value_size"] == len(real_alert)
    assert tally.statuses == Counter({"error:output_too_large": 1})


def test_a_batch_of_poison_only_gives_one_dead_letter_each():
    frame = kafka_rows([b"definitely not avro", b"Obj\x01", b"", None])
    messages, tally = route_batch(frame, Config())
    assert [m[0] for m in messages] == [Config().output.deadletter_topic] * 4
    assert [m[1] for m in messages] == [f"ztf_test_programid1/0/{o}".encode() for o in frame["offset"]]
    records = [dead_record(m) for m in messages]
    assert [r["value"] for r in records] == list(frame["value"])
    assert [r["value_size"] for r in records] == [19, 4, 0, None] and not any(r["truncated"] for r in records)
    assert records[2]["reason"] == records[3]["reason"] == "empty_message"
    assert tally == Tally(alerts=4, statuses=Counter({"error:avro_decode": 2, "error:empty_message": 2}),
                          topics=Counter({Config().output.deadletter_topic: 4}))


@pytest.mark.parametrize("status, group", [
    ("ok", "ok"), ("cut:bad_quality", "cut:bad_quality"), ("error:empty_message", "error:empty_message"),
    ("error:avro_decode: ContainerError: truncated varint", "error:avro_decode"),
    ("error:output_too_large: 10485600 bytes with the t2 fields, limit 10484736", "error:output_too_large"),
])
def test_status_groups_drop_the_details(status, group):
    assert status_group(status) == group


def test_an_embedding_rides_in_both_messages_and_counts_in_the_size_limit(sample_payloads, tmp_path, monkeypatch):
    """``[embedding] enabled``: the enriched alert and the score carry the same float32 embedding, and
    an alert that fits the limit without it but not with it is an ``output_too_large`` dead letter."""
    from fink_t2.config import parse_config
    from fink_t2.science.classify import classify
    from fink_t2.spark import stream
    from tests.astromer.encoders import stream_encoder

    encoder_path, encoder = stream_encoder(tmp_path)
    plain = parse_config({"cuts": {"stellar_counterpart": False}})
    embedding = parse_config({"cuts": {"stellar_counterpart": False},
                              "embedding": {"enabled": True, "encoder": str(encoder_path)}})
    statuses = classify(sample_payloads, cuts=plain.cuts).t2_status
    alert = sample_payloads[int(statuses.index[statuses == "ok"][0])]
    messages, _ = route_batch(kafka_rows([alert]), embedding)
    (enriched,), (score,) = ([m for m in messages if m[0] == t] for t in (plain.output.enriched_topic,
                                                                          plain.output.scores_topic))
    from_avro = next(fastavro.reader(io.BytesIO(enriched[2])))["t2_embedding"]
    from_json = json.loads(score[2])["t2_embedding"]
    assert len(from_avro) == encoder.width
    assert np.array_equal(np.float32(from_avro), np.float32(from_json))

    without = [m for m in route_batch(kafka_rows([alert]), plain)[0] if m[0] == plain.output.enriched_topic][0]
    limit = len(without[1]) + len(without[2]) + 2  # fits without the embedding (4·d + 2 bytes more with it)
    monkeypatch.setattr(stream, "MAX_OUTPUT_BYTES", limit)
    assert [m[0] for m in route_batch(kafka_rows([alert]), plain)[0]] == [plain.output.enriched_topic,
                                                                           plain.output.scores_topic]
    messages, tally = route_batch(kafka_rows([alert]), embedding)
    assert [m[0] for m in messages] == [plain.output.deadletter_topic]
    assert dead_record(messages[0])["reason"].startswith("output_too_large: ")
    assert tally.statuses == Counter({"error:output_too_large": 1})


def schemaless_config(schema_dir) -> Config:
    from fink_t2.config import OutputConf

    return Config(output=OutputConf(enriched_format="schemaless", schema_dir=str(schema_dir)))


def test_schemaless_batch_publishes_its_schema_and_heads_each_enriched_message(sample_payloads, tmp_path):
    """Same alerts, both formats: the schemaless enriched messages name the published schema in a
    header and decode to the container records; scores and dead letters are the same."""
    from fink_t2.kafka.messages import SCHEMA_FINGERPRINT_HEADER
    from fink_t2.kafka.schema_files import fingerprint_of, published_schema, read_schemaless

    frame = kafka_rows(sample_payloads[:5] + [b"not avro"])
    container, container_tally = route_batch(frame, Config())
    schemaless, schemaless_tally = route_batch(frame, schemaless_config(tmp_path / "schemas"))
    assert container_tally == schemaless_tally
    enriched_topic = Config().output.enriched_topic
    pairs = [(c, s) for c, s in zip(container, schemaless) if c.topic == enriched_topic]
    assert len(pairs) == 5 and [c.topic for c in container] == [s.topic for s in schemaless]
    for c, s in pairs:
        assert c.headers == () and [name for name, _ in s.headers] == [SCHEMA_FINGERPRINT_HEADER]
        schema = published_schema(tmp_path / "schemas", fingerprint_of(s.headers))
        assert read_schemaless(s.value, schema) == next(fastavro.reader(io.BytesIO(c.value)))
        assert c.key == s.key and len(s.value) < len(c.value) - 20_000
    scores = [(c, s) for c, s in zip(container, schemaless) if c.topic == Config().output.scores_topic]
    assert len(scores) == 5 and all(c == s for c, s in scores)  # the scores do not change
    (dead_c, dead_s), = [(c, s) for c, s in zip(container, schemaless) if c.topic == Config().output.deadletter_topic]
    assert dead_record(dead_c) == dead_record(dead_s) and dead_c.key == dead_s.key  # nor the dead letter


def test_the_size_limit_counts_the_schemaless_message_and_its_header(real_alert, monkeypatch, tmp_path):
    """The schemaless message of an alert is ~23 kB smaller: a limit between the two sizes dead-letters
    only the container one; at exactly key + value + header bytes the schemaless one still passes."""
    from fink_t2.spark import stream

    config = schemaless_config(tmp_path)
    (message, _), _ = route_batch(kafka_rows([real_alert]), config)
    exact = len(message.key) + len(message.value) + sum(len(n) + len(v) for n, v in message.headers)
    monkeypatch.setattr(stream, "MAX_OUTPUT_BYTES", exact)
    assert [m.topic for m in route_batch(kafka_rows([real_alert]), config)[0]] == [
        Config().output.enriched_topic, Config().output.scores_topic]
    assert [m.topic for m in route_batch(kafka_rows([real_alert]), Config())[0]] == [Config().output.deadletter_topic]
    monkeypatch.setattr(stream, "MAX_OUTPUT_BYTES", exact - 1)
    (dead,), tally = route_batch(kafka_rows([real_alert]), config)
    assert dead.topic == Config().output.deadletter_topic and tally.statuses == Counter({"error:output_too_large": 1})
    assert dead_record(dead)["reason"].startswith(f"output_too_large: {exact} bytes")


def test_an_unwritable_schema_dir_stops_the_job_at_start_up(tmp_path):
    from fink_t2.config import ConfigError
    from fink_t2.spark.stream import prepare_schema_dir

    prepare_schema_dir(schemaless_config(tmp_path / "a" / "schemas"))
    assert (tmp_path / "a" / "schemas").is_dir() and not list((tmp_path / "a" / "schemas").iterdir())
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"schema_dir .*/file/schemas is not a writable folder"):
        prepare_schema_dir(schemaless_config(tmp_path / "file" / "schemas"))
    prepare_schema_dir(Config())  # container format: nothing to prepare
