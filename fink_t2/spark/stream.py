"""The Spark Structured Streaming job: Kafka → t2 (pandas, in Python workers) → Kafka.

Queries (each with its own checkpoint under ``[checkpoint] dir``):

* ``classify`` — raw ZTF alerts from the subscribed topics → :func:`fink_t2.science.classify.classify`
  in ``mapInPandas`` → the enriched topic (alerts, ``ok`` or ``cut:*``), the dead-letter
  topic (``error:*``, with the raw bytes) and the scores topic.
* ``filter-<name>`` — one per ``[[output.filters]]``: the scores topic → the filter's topic
  (pure Spark SQL on the compact JSON scores; a failing filter cannot stop classification).

Guarantee, exactly: at least once, not atomic. A micro-batch's offsets are committed only after
all its messages are acknowledged, so a restart from the checkpoint redoes an interrupted
micro-batch: every input alert ends in enriched + scores or in dead-letter, possibly twice under
the same key. The three outputs are no transaction: until that restart, a partial micro-batch can
be visible. In ``large_messages = "python"`` mode, enriched alerts and dead letters without their
scores (scores are written after the enriched alerts are acknowledged, never before); in
``"spark"`` mode, any part of it, scores without their enriched alert included.

Messages are keyed by candid (dead letters, and alerts without a candid, by
``topic/partition/offset``), so consumers and log compaction can drop the duplicates.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from fink_t2.config import Config, ConfigError, FilterConf, OutputConf
from fink_t2.kafka.broker import MAX_MESSAGE_BYTES, MAX_OUTPUT_BYTES, spark_kafka_jars
from fink_t2.kafka.producer import DirectProducer
from fink_t2.kafka.security import refusal_in, spark_kafka_options
from fink_t2.science.model import LOAD_LOG_ENV

log = logging.getLogger(__name__)

#: Columns the Kafka sink needs from every output row (headers: empty but for schemaless enriched alerts).
OUTPUT_SCHEMA = "topic string, key binary, value binary, headers array<struct<key:string,value:binary>>"


# --------------------------------------------------------------------------- Python worker side


class Message(NamedTuple):
    """One output message; ``headers`` are (name, value) pairs."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


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
    return Message(out.deadletter_topic, source.position_key, value)


def enriched_message(value: bytes, row: dict, out: OutputConf, schemas: set) -> tuple[bytes, tuple]:
    """The enriched value of an alert in ``[output] enriched_format`` and its headers; a schemaless
    message's schema is added to ``schemas`` (to be published before the message is sent)."""
    from fink_t2.kafka.messages import enrich_alert, enrich_alert_schemaless

    if out.enriched_format == "container":
        return enrich_alert(value, row), ()
    record, schema = enrich_alert_schemaless(value, row)
    schemas.add(schema)
    return record, (schema.header,)


def route_alert(row: dict, source: SourceMessage, out: OutputConf,
                schemas: set | None = None) -> tuple[str, list[Message]]:
    """The final status of one classified input message, and its output: enriched alert and score,
    or a dead letter. An alert whose enriched message or score would exceed the broker's limit is
    dead-lettered. ``schemas`` receives the writer schemas of schemaless enriched messages."""
    from fink_t2.kafka.messages import score_message

    status = row["t2_status"]
    if status.startswith("error:"):
        return status, [dead_letter(out, source, status.removeprefix("error:"))]
    try:
        enriched, headers = enriched_message(source.value, row, out, set() if schemas is None else schemas)
    except Exception as exc:  # a valid-looking alert we cannot re-frame: dead-letter it with the reason
        reason = f"enrich: {type(exc).__name__}: {exc}"[:300]
        return f"error:{reason}", [dead_letter(out, source, reason)]
    key = alert_key(row["candid"], source)
    score = score_message(row)
    header_bytes = sum(len(name) + len(value) for name, value in headers)
    largest = len(key) + max(len(enriched) + header_bytes, len(score))
    if largest > MAX_OUTPUT_BYTES:
        reason = f"output_too_large: {largest} bytes with the t2 fields, limit {MAX_OUTPUT_BYTES}"
        return f"error:{reason}", [dead_letter(out, source, reason)]
    return status, [Message(out.enriched_topic, key, enriched, headers), Message(out.scores_topic, key, score)]


def status_group(status: str) -> str:
    """A status without its details, for counting: ``ok``, ``cut:<reason>``, ``error:<kind>``."""
    kind, _, detail = status.partition(":")
    return status if kind != "error" else f"error:{detail.split(':', 1)[0].strip()}"


#: Where a worker batch started reading: (topic, partition, offset of its first message).
FrameStart = tuple[str, int, int]


@dataclass
class Tally:
    """What the workers did: input messages, alerts per status group, messages per output topic.

    ``frames`` (filled by the stream's workers, taken by the per-micro-batch monitoring) holds each worker
    batch's (statuses, topics) under its :data:`FrameStart`, so that the listener can attribute
    counts to the micro-batch whose offset range holds them (the listener bus runs behind the
    workers) and remove them; a retried task overwrites its entry instead of counting twice.
    """

    alerts: int = 0
    statuses: Counter = field(default_factory=Counter)
    topics: Counter = field(default_factory=Counter)
    frames: dict[FrameStart, tuple[Counter, Counter]] = field(default_factory=dict)

    def add(self, other: "Tally") -> "Tally":
        """Add ``other`` into this tally (in place) and return it."""
        self.alerts += other.alerts
        self.statuses.update(other.statuses)
        self.topics.update(other.topics)
        self.frames.update(other.frames)
        return self

    def keep_frame(self, frame: pd.DataFrame) -> None:
        """Record this tally's counts under the start of ``frame`` (Kafka rows: topic, partition, offset)."""
        if len(frame):
            start = (str(frame["topic"].iat[0]), int(frame["partition"].iat[0]), int(frame["offset"].iat[0]))
            self.frames[start] = (Counter(self.statuses), Counter(self.topics))


class TallyParam:
    """The ``AccumulatorParam`` of :class:`Tally` (workers add per batch, the driver reads the sum)."""

    def zero(self, value: Tally) -> Tally:
        return Tally()

    def addInPlace(self, value1: Tally, value2: Tally) -> Tally:
        return value1.add(value2)


def route_batch(frame: pd.DataFrame, config: Config) -> tuple[list[Message], Tally]:
    """Classify one Arrow batch of Kafka rows: the output messages (:class:`Message`) and the tally.

    ``frame`` has columns key, value, topic, partition, offset. Per alert: one enriched
    message and one score, or one dead letter. The writer schemas of schemaless enriched
    messages are published (``Config.schema_dir``) before this returns, so before they are sent.
    """
    from fink_t2.kafka.schema_files import publish_schema

    results = classify_payloads(frame["value"].tolist(), config)
    messages: list[Message] = []
    schemas: set = set()
    tally = Tally(alerts=len(frame))
    for row, source in zip(results.to_dict("records"), source_messages(frame)):
        status, routed = route_alert(row, source, config.output, schemas)
        tally.statuses[status_group(status)] += 1
        messages += routed
    for schema in schemas:
        publish_schema(schema, config.schema_dir())
    tally.topics.update(message.topic for message in messages)
    return messages, tally


def classify_payloads(payloads: list[bytes | None], config: Config) -> pd.DataFrame:
    """The ``classify`` table of one batch, by the configured classifier: t2 alone, t2 with
    embeddings, or the ASTROMER head (then the t2 model is not loaded). Models load once per process."""
    from fink_t2.science.classify import classify
    from fink_t2.science.model import load_model

    model = None
    if config.classifier.kind == "t2":
        model = load_model(config.model_path(), num_threads=config.model.num_threads)
    if not config.needs_encoder:
        return classify(payloads, model, config.cuts)
    from fink_t2.astromer.classify import cached_stage, classify as classify_with_encoder

    return classify_with_encoder(payloads, cached_stage(config), model, config.cuts)


def _frame(messages: list[Message]) -> pd.DataFrame:
    """The Kafka-sink rows of ``OUTPUT_SCHEMA``; object columns even when empty (an all-dead-letter
    batch in python mode), since Spark's Arrow conversion refuses empty float64 columns."""
    rows = [(m.topic, m.key, m.value, [{"key": name, "value": value} for name, value in m.headers])
            for m in messages]
    return pd.DataFrame(rows, columns=["topic", "key", "value", "headers"], dtype=object)


def direct_producer(config: Config) -> DirectProducer:
    """The worker's producer for the large messages, with the configured outage behaviour."""
    out = config.output
    return DirectProducer.for_endpoint(config.kafka, out.delivery_timeout_seconds,
                                       wait_for_broker=out.on_broker_outage == "wait")


def make_partition_function(config: Config, tally=None):
    """The ``mapInPandas`` function (closes over the config only; model and producer are per process).

    With ``[output] large_messages = "python"`` the enriched alerts and dead letters are
    produced by the worker itself (confluent-kafka) and only the scores go back to Spark;
    with ``"spark"`` every message goes through Spark's Kafka sink. ``tally``, a Spark
    accumulator of :class:`Tally`, receives each batch's counts, also under the batch's first offset
    (``Tally.frames``: its reader takes them, as :class:`~fink_t2.spark.monitoring.ProgressMonitor` does).
    """
    heavy = {config.output.enriched_topic, config.output.deadletter_topic}
    direct = config.output.large_messages == "python"

    def classify_partition(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in frames:
            messages, counts = route_batch(frame, config)
            if direct:
                _hold_if_asked("before_send")
                direct_producer(config).send_all([m for m in messages if m.topic in heavy])
                _hold_if_asked("after_send")
                messages = [m for m in messages if m.topic not in heavy]
            if tally is not None:
                counts.keep_frame(frame)
                tally.add(counts)
            yield _frame(messages)

    return classify_partition


#: Test-only fault injection, ``<stage>:<folder>``: at ``<stage>`` of every python-mode batch
#: (``before_send`` / ``after_send`` of the large messages) the worker creates a file in
#: ``<folder>`` and waits until ``<folder>/release`` exists (at most ``HOLD_MAX_SECONDS``). The
#: stream tests use it to land a broker outage or a kill -9 at an exact point of a micro-batch.
HOLD_ENV = "FINK_T2_TEST_HOLD"
HOLD_MAX_SECONDS = 600.0


def _hold_if_asked(stage: str) -> None:
    wanted, _, folder = os.environ.get(HOLD_ENV, "").partition(":")
    if wanted != stage:
        return
    folder_path = Path(folder)
    (folder_path / f"{stage}-{os.getpid()}-{time.monotonic_ns()}").touch()
    deadline = time.monotonic() + HOLD_MAX_SECONDS
    while not (folder_path / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.1)


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
        .config("spark.sql.execution.arrow.maxBytesPerBatch", str(config.spark.arrow_max_bytes_per_batch))
        .config("spark.sql.shuffle.partitions", str(config.spark.shuffle_partitions))
        .config("spark.python.worker.reuse", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.streaming.forceDeleteTempCheckpointLocation", "true")
        .config("spark.executorEnv.PYTHONHASHSEED", "0")
    )
    for name in (LOAD_LOG_ENV, HOLD_ENV):
        if name in os.environ:
            builder = builder.config(f"spark.executorEnv.{name}", os.environ[name])
    if config.spark.master:
        builder = builder.master(config.spark.master)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


#: The Kafka sink's linger, ms (its producer's request timeout must fit in the delivery timeout after it).
SINK_LINGER_MS = 5
#: "Without limit" for the Kafka clients' millisecond timeouts and retry counts (Java int max).
_NO_LIMIT = str(2**31 - 1)


def sink_outage_options(out: OutputConf) -> dict[str, str]:
    """Options of Spark's Kafka sink for ``[output] on_broker_outage``: "wait" retries without limit,
    "fail" gives up after ``delivery_timeout_seconds`` (the micro-batch fails, so does the job)."""
    if out.on_broker_outage == "wait":
        return {"kafka.delivery.timeout.ms": _NO_LIMIT, "kafka.max.block.ms": _NO_LIMIT}
    delivery_ms = int(out.delivery_timeout_seconds * 1000)
    return {"kafka.delivery.timeout.ms": str(delivery_ms),
            "kafka.request.timeout.ms": str(min(30_000, delivery_ms - SINK_LINGER_MS))}


def source_outage_options(out: OutputConf) -> dict[str, str]:
    """Options of Spark's Kafka source for ``[output] on_broker_outage``: with "wait" the driver's
    offset look-ups and the executors' fetches retry until the broker is back (Spark's defaults,
    kept with "fail", give up after about 3 × 60 s and 120 s)."""
    if out.on_broker_outage == "wait":
        return {"fetchOffset.numRetries": _NO_LIMIT, "kafkaConsumer.pollTimeoutMs": _NO_LIMIT}
    return {}


def _read_kafka(spark, config: Config, pattern: str, starting: str, max_offsets: int | None):
    reader = (
        spark.readStream.format("kafka")
        .options(**spark_kafka_options(config.kafka))
        .option("subscribePattern", pattern)
        .option("startingOffsets", starting)
        .option("failOnDataLoss", str(config.input.fail_on_data_loss).lower())
        .option("kafka.max.partition.fetch.bytes", str(MAX_MESSAGE_BYTES))
    )
    if max_offsets:
        reader = reader.option("maxOffsetsPerTrigger", str(max_offsets))
    return reader.options(**source_outage_options(config.output)).load()


def _write_kafka(frame, config: Config, name: str, once: bool, topic: str | None = None):
    """Start the Kafka sink query ``name``: to the rows' ``topic`` column, or to ``topic``."""
    writer = (
        frame.writeStream.format("kafka")
        .queryName(name)
        .options(**spark_kafka_options(config.kafka))
        .option("checkpointLocation", str(Path(config.checkpoint_dir()) / name))
        .option("kafka.max.request.size", str(MAX_MESSAGE_BYTES))
        .option("kafka.linger.ms", str(SINK_LINGER_MS))
        .option("kafka.batch.size", str(1 << 20))
        .option("kafka.acks", "all")
        .options(**sink_outage_options(config.output))
    )
    if topic is not None:
        writer = writer.option("topic", topic)
    trigger = {"availableNow": True} if once else {"processingTime": f"{config.spark.trigger_seconds} seconds"}
    return writer.trigger(**trigger).start()


def start_classify_query(spark, config: Config, once: bool, tally=None):
    """Start the ``classify`` query (raw alerts → enriched, scores, dead-letter); ``tally``: an
    optional accumulator of :class:`Tally` (``spark.sparkContext.accumulator(Tally(), TallyParam())``),
    whose per-frame entries :class:`~fink_t2.spark.monitoring.ProgressMonitor` takes."""
    raw = _read_kafka(spark, config, config.input.subscribe_pattern, config.input.starting_offsets,
                      config.input.max_offsets_per_trigger)
    rows = raw.select("key", "value", "topic", "partition", "offset")
    out = rows.mapInPandas(make_partition_function(config, tally), OUTPUT_SCHEMA)
    return _write_kafka(out, config, "classify", once)


def start_floor_query(spark, config: Config, input_topic: str, output_topic: str, name: str,
                      checkpoint: Path, once: bool):
    """The framework floor: ``input_topic`` → ``output_topic`` through the job's Kafka source and sink
    options (same trigger, ``max_offsets_per_trigger``, acks) with no Python: key and value copied
    by the JVM (``selectExpr("key", "value")``). ``checkpoint``: its own folder."""
    raw = _read_kafka(spark, config, _exact_pattern(input_topic), "earliest", config.input.max_offsets_per_trigger)
    copied = raw.selectExpr("key", "value")
    floor_config = config.with_run_files(checkpoint_dir=str(checkpoint))
    return _write_kafka(copied, floor_config, name, once, topic=output_topic)


def filter_condition(flt: FilterConf) -> str:
    """Spark SQL predicate of a filter: an ok alert with P(c) ≥ min_probability for a c in classes."""
    classes = ", ".join("'" + c.replace("'", "''") + "'" for c in flt.classes)
    return (f"s.t2_status = 'ok' AND exists(array({classes}), "
            f"c -> element_at(s.t2_probs, c) >= {float(flt.min_probability)!r})")


def start_filter_query(spark, config: Config, flt: FilterConf, once: bool):
    """Start the query of one filtered topic: the scores that pass the filter."""
    from pyspark.sql import functions as F

    scores = _read_kafka(spark, config, _exact_pattern(config.output.scores_topic), "earliest", None)
    schema = "t2_status string, t2_probs map<string,double>"  # what the condition reads; the value passes whole
    parsed = scores.select("key", "value", F.from_json(F.col("value").cast("string"), schema).alias("s"))
    selected = parsed.where(filter_condition(flt)).select("key", "value", F.lit(flt.topic).alias("topic"))
    return _write_kafka(selected, config, f"filter-{flt.name}", once)


def _exact_pattern(topic: str) -> str:
    import re

    return "^" + re.escape(topic) + "$"


@dataclass(frozen=True)
class RunStats:
    """What the job did: the workers' tally, its wall time and its micro-batches' time (s)."""

    tally: Tally
    wall_seconds: float
    batch_seconds: float
    micro_batches: int

    @property
    def alerts(self) -> int:
        return self.tally.alerts

    @property
    def alerts_per_second(self) -> float:
        """Input alerts per second of micro-batch time (recent progress reports)."""
        return self.alerts / self.batch_seconds if self.batch_seconds else 0.0

    def summary(self) -> str:
        """The end-of-run report: alerts in, per status, per output topic, rates."""
        wall_rate = self.alerts / self.wall_seconds if self.wall_seconds else 0.0
        lines = [f"alerts in: {self.alerts} in {self.wall_seconds:.1f} s ({wall_rate:.1f} alerts/s wall, "
                 f"{self.alerts_per_second:.1f} alerts/s in {self.micro_batches} micro-batches)", "per status:"]
        lines += [f"  {status:<40} {count:>9}" for status, count in sorted(self.tally.statuses.items())]
        lines += ["messages per output topic:"]
        lines += [f"  {topic:<40} {count:>9}" for topic, count in sorted(self.tally.topics.items())]
        return "\n".join(lines)


def check_model(config: Config) -> None:
    """Load the configured models and score them, so that a bad model stops the job at start-up
    (``ModelError``, ``HeadError``), not at its first micro-batch: t2 on an all-zero input, the
    encoder (and head) on a short light curve."""
    if config.needs_encoder:
        from fink_t2.astromer.classify import check_stage

        check_stage(config)
    if config.classifier.kind == "t2":
        _check_t2_model(config)


def _check_t2_model(config: Config) -> None:
    import numpy as np

    from fink_t2.contract import CLASS_NAMES
    from fink_t2.science.model import ModelError, load_model

    try:
        model = load_model(config.model_path(), num_threads=config.model.num_threads)
        steps, channels = model.interpreter.get_input_details()[0]["shape"][1:]  # whatever its input contract
        probs = model.predict(np.zeros((1, steps, channels), dtype=np.float32))
    except (ValueError, RuntimeError) as exc:  # LiteRT's own errors: not a FlatBuffer, bad tensors
        if isinstance(exc, ModelError):
            raise
        raise ModelError(f"model {config.model_path() or 'default'} is unusable: {exc}") from exc
    if probs.shape != (1, len(CLASS_NAMES)) or not np.isfinite(probs).all():
        raise ModelError(f"model {model.path} gives {probs.shape} / non-finite probabilities on a zero input")


def prepare_schema_dir(config: Config) -> None:
    """With schemaless enriched alerts, create the folder the workers publish their schemas in, so
    that an unwritable ``[output] schema_dir`` stops the job at start-up (``ConfigError``)."""
    if config.output.enriched_format != "schemaless":
        return
    folder = config.schema_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"[output] schema_dir {folder} is not a writable folder: {exc}") from exc


def prepare_broker(config: Config) -> str:
    """Check that the broker answers and create the output topics it lacks; its cluster id."""
    from fink_t2.kafka import broker

    cluster = broker.cluster_id(config.kafka)  # a refused login raises here, before Spark starts
    for topic in config.output.topics():
        broker.create_topic(config.kafka, topic, partitions=config.output.topic_partitions, exist_ok=True)
    return cluster


def run(config: Config, once: bool = False, timeout: float | None = None,
        report: Callable[[RunStats], None] | None = None) -> RunStats:
    """Run the job until stopped (or, with ``once``, until the topics are drained).

    Before any query: the model loads and scores, the broker answers and has the output topics
    (created if absent), and the checkpoint belongs to this broker and input. ``report`` gets the
    :class:`RunStats` when the job ends, however it ends (an error is raised after it). A refused
    Kafka login raises :class:`~fink_t2.kafka.security.KafkaAuthenticationError`: at start-up
    (the broker check), or when a query fails on it.
    """
    from pyspark.errors import StreamingQueryException

    from fink_t2.spark.checkpoint import claim_checkpoint
    from fink_t2.spark.monitoring import ProgressMonitor

    check_model(config)
    prepare_schema_dir(config)
    cluster = prepare_broker(config)
    spark = build_spark(config)
    tally = spark.sparkContext.accumulator(Tally(), TallyParam())
    try:
        monitor = ProgressMonitor(config.monitoring, tally)  # a taken Prometheus port fails here
    except BaseException:
        spark.stop()
        raise
    spark.streams.addListener(monitor)
    started = time.monotonic()
    queries: list = []
    previous_handlers = stop_on_signals(spark)
    try:
        claim_checkpoint(spark, config, cluster)
        _run_queries(spark, config, once, timeout, tally, queries)
    except StreamingQueryException as error:  # a refused login as one line, not Java stack traces
        refusal = refusal_in(config.kafka, error)
        if refusal is None:
            raise
        raise refusal from None
    finally:
        for query in spark.streams.active:
            query.stop()
        stats = run_stats(tally.value, time.monotonic() - started, queries[0] if queries else None)
        monitor.wait_for_batches(queries)
        monitor.close()
        spark.stop()
        restore_handlers(previous_handlers)
        if report is not None:
            report(stats)
    return stats


#: Signals that end the job gracefully: queries stopped, summary printed, exit code 0.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def stop_on_signals(spark) -> dict:
    """Make SIGINT and SIGTERM stop the queries, from another thread (a py4j call inside the handler
    would re-enter the main thread's blocked one: PySpark's own SIGINT handler fails so), so that
    the waits return and the run ends as usual. Returns the previous handlers (none off the main
    thread, where Python allows no handler)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def stop_queries(signum, _frame) -> None:
        log.warning("%s: stopping the streaming queries", signal.Signals(signum).name)
        threading.Thread(target=lambda: [query.stop() for query in spark.streams.active], daemon=True).start()

    return {signum: signal.signal(signum, stop_queries) for signum in STOP_SIGNALS}


def restore_handlers(handlers: dict) -> None:
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def _run_queries(spark, config: Config, once: bool, timeout: float | None, tally, queries: list) -> None:
    """Start the queries (appended to ``queries``, classify first) and wait for them."""
    queries.append(start_classify_query(spark, config, once, tally))
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


def run_stats(tally: Tally, wall_seconds: float, query) -> RunStats:
    """The run's figures: the workers' tally, and the micro-batch time of ``query``'s recent progress."""
    batches = [p for p in query.recentProgress if p.numInputRows > 0] if query is not None else []
    return RunStats(tally, wall_seconds, sum(p.batchDuration for p in batches) / 1000.0, len(batches))


def _raise_if_failed(query) -> None:
    error = query.exception()
    if error is not None:
        raise RuntimeError(f"streaming query {query.name} failed: {error}")
