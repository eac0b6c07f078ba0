"""The Spark Structured Streaming job: Kafka → t2 (pandas, in Python workers) → Kafka.

Queries (each with its own checkpoint under ``[checkpoint] dir``):

* ``classify`` — raw ZTF alerts from the subscribed topics → :func:`fink_t2.science.classify.classify`
  in ``mapInPandas`` → the enriched topic (alerts, ``ok`` or ``cut:*``), the dead-letter
  topic (``error:*``, with the raw bytes) and the scores topic. The three outputs of a
  micro-batch come from one Kafka write, so an alert is never scored without being enriched,
  and every input alert lands in enriched or dead-letter.
* ``filter-<name>`` — one per ``[[output.filters]]``: the scores topic → the filter's topic
  (pure Spark SQL on the compact JSON scores; a failing filter cannot stop classification).

Messages are keyed by candid (dead letters by ``topic/partition/offset``), so consumers and
log compaction can drop the duplicates an at-least-once restart may produce.
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fink_t2.config import Config, FilterConf, OutputConf
from fink_t2.kafka.broker import MAX_MESSAGE_BYTES, MAX_OUTPUT_BYTES, spark_kafka_jars
from fink_t2.kafka.producer import DirectProducer
from fink_t2.science.model import LOAD_LOG_ENV

log = logging.getLogger(__name__)

#: Columns the Kafka sink needs from every output row.
OUTPUT_SCHEMA = "topic string, key binary, value binary"


# --------------------------------------------------------------------------- Python worker side


#: One output message: (topic, key, value).
Message = tuple[str, bytes, bytes]


@dataclass(frozen=True)
class SourceMessage:
    """One input Kafka message: where it came from and its bytes (``value`` None for a null value)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @property
    def position_key(self) -> bytes:
        """``topic/partition/offset``, unique per input message: the key of its dead letter."""
        return f"{self.topic}/{self.partition}/{self.offset}".encode()


def alert_key(candid, source: SourceMessage) -> bytes:
    """Kafka key of an alert's enriched and score messages: its candid in decimal (negative ones
    too), or the source position when the alert has no candid, never a shared ``b"None"``."""
    if candid is None or pd.isna(candid):
        return source.position_key
    return str(int(candid)).encode()


def source_messages(frame: pd.DataFrame) -> Iterator[SourceMessage]:
    """The rows of a Kafka source batch (columns key, value, topic, partition, offset)."""
    for key, value, topic, partition, offset in zip(frame["key"], frame["value"], frame["topic"],
                                                    frame["partition"], frame["offset"]):
        yield SourceMessage(topic, int(partition), int(offset), key, value)


def dead_letter(out: OutputConf, source: SourceMessage, reason: str) -> Message:
    """The dead letter of ``source``: reason + raw bytes, cut to fit the broker's limit if need be."""
    from fink_t2.kafka.messages import deadletter_message

    value = deadletter_message(reason, source.value, source.key, source.topic, source.partition, source.offset,
                               max_bytes=MAX_OUTPUT_BYTES - len(source.position_key))
    return out.deadletter_topic, source.position_key, value


def route_alert(row: dict, source: SourceMessage, out: OutputConf) -> list[Message]:
    """The output of one classified input message: its enriched alert and score, or a dead letter.

    An alert whose enriched message or score would exceed the broker's limit is dead-lettered.
    """
    from fink_t2.kafka.messages import enrich_alert, score_message

    status = row["t2_status"]
    if status.startswith("error:"):
        return [dead_letter(out, source, status.removeprefix("error:"))]
    try:
        enriched = enrich_alert(source.value, row)
    except Exception as exc:  # a valid-looking alert we cannot re-frame: dead-letter it with the reason
        return [dead_letter(out, source, f"enrich: {type(exc).__name__}: {exc}"[:300])]
    key = alert_key(row["candid"], source)
    score = score_message(row)
    largest = max(len(enriched), len(score))
    if len(key) + largest > MAX_OUTPUT_BYTES:
        return [dead_letter(out, source, f"output_too_large: {len(key) + largest} bytes with the t2 fields, "
                                         f"limit {MAX_OUTPUT_BYTES}")]
    return [(out.enriched_topic, key, enriched), (out.scores_topic, key, score)]


def route_batch(frame: pd.DataFrame, config: Config) -> list[Message]:
    """Classify one Arrow batch of Kafka rows; the output messages as (topic, key, value).

    ``frame`` has columns key, value, topic, partition, offset. Per alert: one enriched
    message and one score, or one dead letter.
    """
    from fink_t2.science.classify import classify
    from fink_t2.science.model import load_model

    model = load_model(config.model_path(), num_threads=config.model.num_threads)
    results = classify(frame["value"].tolist(), model)
    messages: list[Message] = []
    for row, source in zip(results.to_dict("records"), source_messages(frame)):
        messages += route_alert(row, source, config.output)
    return messages


def _frame(messages: list[Message]) -> pd.DataFrame:
    """The Kafka-sink rows of ``OUTPUT_SCHEMA``; object columns even when empty (an all-dead-letter
    batch in python mode), since Spark's Arrow conversion refuses empty float64 columns."""
    return pd.DataFrame(messages, columns=["topic", "key", "value"], dtype=object)


def make_partition_function(config: Config):
    """The ``mapInPandas`` function (closes over the config only; model and producer are per process).

    With ``[output] large_messages = "python"`` the enriched alerts and dead letters are
    produced by the worker itself (confluent-kafka) and only the scores go back to Spark;
    with ``"spark"`` every message goes through Spark's Kafka sink.
    """
    heavy = {config.output.enriched_topic, config.output.deadletter_topic}
    direct = config.output.large_messages == "python"

    def classify_partition(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in frames:
            messages = route_batch(frame, config)
            if direct:
                DirectProducer.for_bootstrap(config.kafka.bootstrap_servers).send_all(
                    [m for m in messages if m[0] in heavy])
                messages = [m for m in messages if m[0] not in heavy]
            yield _frame(messages)

    return classify_partition


# --------------------------------------------------------------------------- driver side


def build_spark(config: Config, app_name: str = "fink_t2"):
    """A SparkSession with the Kafka connector jars and the job's settings."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.appName(app_name)
        .config("spark.jars", ",".join(spark_kafka_jars()))
        .config("spark.driver.memory", config.spark.driver_memory)
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(config.spark.arrow_max_records_per_batch))
        .config("spark.sql.shuffle.partitions", str(config.spark.shuffle_partitions))
        .config("spark.python.worker.reuse", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.streaming.forceDeleteTempCheckpointLocation", "true")
        .config("spark.executorEnv.PYTHONHASHSEED", "0")
    )
    if LOAD_LOG_ENV in os.environ:
        builder = builder.config(f"spark.executorEnv.{LOAD_LOG_ENV}", os.environ[LOAD_LOG_ENV])
    if config.spark.master:
        builder = builder.master(config.spark.master)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def _read_kafka(spark, config: Config, pattern: str, starting: str, max_offsets: int | None):
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", config.kafka.bootstrap_servers)
        .option("subscribePattern", pattern)
        .option("startingOffsets", starting)
        .option("failOnDataLoss", str(config.input.fail_on_data_loss).lower())
        .option("kafka.max.partition.fetch.bytes", str(MAX_MESSAGE_BYTES))
    )
    if max_offsets:
        reader = reader.option("maxOffsetsPerTrigger", str(max_offsets))
    return reader.load()


def _write_kafka(frame, config: Config, name: str, once: bool):
    writer = (
        frame.writeStream.format("kafka")
        .queryName(name)
        .option("kafka.bootstrap.servers", config.kafka.bootstrap_servers)
        .option("checkpointLocation", str(Path(config.checkpoint_dir()) / name))
        .option("kafka.max.request.size", str(MAX_MESSAGE_BYTES))
        .option("kafka.linger.ms", "5")
        .option("kafka.batch.size", str(1 << 20))
        .option("kafka.acks", "all")
    )
    trigger = {"availableNow": True} if once else {"processingTime": f"{config.spark.trigger_seconds} seconds"}
    return writer.trigger(**trigger).start()


def start_classify_query(spark, config: Config, once: bool):
    """Start the ``classify`` query (raw alerts → enriched, scores, dead-letter)."""
    raw = _read_kafka(spark, config, config.input.subscribe_pattern, config.input.starting_offsets,
                      config.input.max_offsets_per_trigger)
    rows = raw.select("key", "value", "topic", "partition", "offset")
    out = rows.mapInPandas(make_partition_function(config), OUTPUT_SCHEMA)
    return _write_kafka(out, config, "classify", once)


def filter_condition(flt: FilterConf) -> str:
    """Spark SQL predicate of a filter: an ok alert with P(c) ≥ min_probability for a c in classes."""
    classes = ", ".join("'" + c.replace("'", "''") + "'" for c in flt.classes)
    return (f"s.t2_status = 'ok' AND exists(array({classes}), "
            f"c -> element_at(s.t2_probs, c) >= {float(flt.min_probability)!r})")


def start_filter_query(spark, config: Config, flt: FilterConf, once: bool):
    """Start the query of one filtered topic: the scores that pass the filter."""
    from pyspark.sql import functions as F

    scores = _read_kafka(spark, config, _exact_pattern(config.output.scores_topic), "earliest", None)
    schema = "objectId string, candid long, t2_status string, t2_class string, t2_probs map<string,double>, " \
             "t2_snia double, t2_model string"
    parsed = scores.select("key", "value", F.from_json(F.col("value").cast("string"), schema).alias("s"))
    selected = parsed.where(filter_condition(flt)).select("key", "value", F.lit(flt.topic).alias("topic"))
    return _write_kafka(selected, config, f"filter-{flt.name}", once)


def _exact_pattern(topic: str) -> str:
    import re

    return "^" + re.escape(topic) + "$"


@dataclass(frozen=True)
class RunStats:
    """What the classify query did: input rows and the time spent in its micro-batches (s)."""

    alerts: int
    batch_seconds: float
    micro_batches: int

    @property
    def alerts_per_second(self) -> float:
        return self.alerts / self.batch_seconds if self.batch_seconds else 0.0


def run(config: Config, once: bool = False, timeout: float | None = None) -> RunStats:
    """Run the job until stopped (or, with ``once``, until the topics are drained)."""
    spark = build_spark(config)
    try:
        return _run_queries(spark, config, once, timeout)
    finally:
        for query in spark.streams.active:
            query.stop()
        spark.stop()


def _run_queries(spark, config: Config, once: bool, timeout: float | None) -> RunStats:
    queries = [start_classify_query(spark, config, once)]
    if once:  # filters read the scores topic: let classify finish first
        queries[0].awaitTermination(timeout)
        _raise_if_failed(queries[0])
    queries += [start_filter_query(spark, config, flt, once) for flt in config.output.filters]
    for query in queries:
        if once:
            query.awaitTermination(timeout)
            _raise_if_failed(query)
    if not once:
        spark.streams.awaitAnyTermination(timeout)
        for query in queries:
            _raise_if_failed(query)
    return classify_stats(queries[0])


def classify_stats(query) -> RunStats:
    """Input rows and micro-batch time of a query, from its recent progress reports."""
    batches = [p for p in query.recentProgress if p.numInputRows > 0]
    return RunStats(sum(p.numInputRows for p in batches), sum(p.batchDuration for p in batches) / 1000.0,
                    len(batches))


def _raise_if_failed(query) -> None:
    error = query.exception()
    if error is not None:
        raise RuntimeError(f"streaming query {query.name} failed: {error}")
