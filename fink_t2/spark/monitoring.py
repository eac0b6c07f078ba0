"""Per-micro-batch metrics of the streaming job: a ``StreamingQueryListener`` that writes one JSON
line per progress event and, optionally, exports the same counters to Prometheus.

A line (``[monitoring] progress_jsonl``) holds: the query name, batch id, event time (UTC, ISO),
``alerts_in`` (input rows), for the classify query the alerts per status group and the messages
per output topic of that micro-batch (the workers' :class:`~fink_t2.spark.stream.Tally` entries
of the frames that start inside the batch's offset range), ``input_rows_per_s`` and ``processed_rows_per_s`` (Spark's),
``batch_duration_s`` (trigger start → commit, the micro-batch latency), Spark's ``durations_ms``,
and the source ``end_offsets`` ({topic: {partition: offset}}) the batch read up to.

Prometheus (``[monitoring] prometheus = true``; ``pip install 'fink_t2[monitoring]'``) serves, on
``prometheus_host:prometheus_port`` (loopback by default): ``fink_t2_alerts_total``,
``fink_t2_alerts_by_status_total{status}``, ``fink_t2_messages_total{topic}`` (counters), and per
query ``fink_t2_input_rows_per_second``, ``fink_t2_processed_rows_per_second``,
``fink_t2_batch_duration_seconds`` and ``fink_t2_batch_id`` (gauges of the last micro-batch).
"""
from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any

from pyspark.sql.streaming.listener import StreamingQueryListener

from fink_t2.config import PROGRESS_TO_STDERR, ConfigError, MonitoringConf

log = logging.getLogger(__name__)

#: Name of the query whose progress carries the workers' tally (the others: row counts only).
CLASSIFY_QUERY = "classify"
#: Seconds :meth:`ProgressMonitor.wait_for_batches` waits for the listener bus at the end of a run.
FLUSH_TIMEOUT_S = 15.0


def source_offsets(sources: list[Any], which: str) -> dict[str, dict[str, int]]:
    """{topic: {partition: offset}} of the Kafka sources of a progress (Spark gives JSON strings);
    ``which``: ``"startOffset"`` or ``"endOffset"``."""
    merged: dict[str, dict[str, int]] = {}
    for source in sources:
        text = getattr(source, which, None)
        parsed = json.loads(text) if isinstance(text, str) and text.startswith("{") else {}
        for topic, partitions in parsed.items():
            merged.setdefault(topic, {}).update({str(p): int(o) for p, o in partitions.items()})
    return merged


def progress_line(progress: Any, statuses: Counter | None = None, topics: Counter | None = None) -> dict:
    """The JSON-ready record of one ``StreamingQueryProgress`` (and its tally difference, if any)."""
    line = {
        "event": "progress", "query": progress.name, "batch_id": progress.batchId, "time": progress.timestamp,
        "alerts_in": progress.numInputRows,
        "input_rows_per_s": _finite(progress.inputRowsPerSecond),
        "processed_rows_per_s": _finite(progress.processedRowsPerSecond),
        "batch_duration_s": progress.batchDuration / 1000.0,
        "durations_ms": dict(progress.durationMs or {}),
        "end_offsets": source_offsets(list(progress.sources or []), "endOffset"),
    }
    if statuses is not None:
        line["statuses"] = dict(sorted(statuses.items()))
        line["topics"] = dict(sorted((topics or Counter()).items()))
    return line


def _finite(value: float | None) -> float | None:
    """Spark reports NaN rates for an empty first batch: None in JSON (NaN is not JSON)."""
    return None if value is None or value != value else float(value)


class PrometheusExport:
    """The progress counters on a Prometheus HTTP endpoint (its own registry, its own server)."""

    def __init__(self, host: str, port: int) -> None:
        try:
            import prometheus_client as prom
        except ImportError:
            raise ConfigError("[monitoring] prometheus = true needs prometheus_client, not installed: "
                              "pip install 'fink_t2[monitoring]'") from None
        self.registry = prom.CollectorRegistry()
        self.alerts = prom.Counter("fink_t2_alerts", "input alerts classified", registry=self.registry)
        self.by_status = prom.Counter("fink_t2_alerts_by_status", "alerts per status group", ["status"],
                                      registry=self.registry)
        self.messages = prom.Counter("fink_t2_messages", "messages per output topic", ["topic"],
                                     registry=self.registry)
        gauge = lambda name, text: prom.Gauge(name, text, ["query"], registry=self.registry)  # noqa: E731
        self.input_rate = gauge("fink_t2_input_rows_per_second", "input rows/s of the last micro-batch")
        self.processed_rate = gauge("fink_t2_processed_rows_per_second", "processed rows/s of the last micro-batch")
        self.batch_duration = gauge("fink_t2_batch_duration_seconds", "trigger start to commit, last micro-batch")
        self.batch_id = gauge("fink_t2_batch_id", "id of the last micro-batch")
        self.server, self.thread = prom.start_http_server(port, addr=host, registry=self.registry)
        log.warning("Prometheus metrics at http://%s:%d/metrics", host, port)

    def record(self, line: dict) -> None:
        """Add one progress line to the counters and set the gauges of its query."""
        query = line["query"] or ""
        for gauge, value in ((self.input_rate, line["input_rows_per_s"]),
                             (self.processed_rate, line["processed_rows_per_s"]),
                             (self.batch_duration, line["batch_duration_s"]), (self.batch_id, line["batch_id"])):
            if value is not None:
                gauge.labels(query=query).set(value)
        if "statuses" not in line:
            return
        self.alerts.inc(line["alerts_in"])
        for status, count in line["statuses"].items():
            self.by_status.labels(status=status).inc(count)
        for topic, count in line["topics"].items():
            self.messages.labels(topic=topic).inc(count)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ProgressMonitor(StreamingQueryListener):
    """Listener writing a JSON line per progress event; ``tally`` is the job's Tally accumulator.

    Spark calls it from its listener bus (another thread): lines are written under a lock.
    """

    def __init__(self, conf: MonitoringConf, tally=None) -> None:
        self.tally = tally
        self._seen: dict[str, int] = {}  # query name → last batch id logged
        self._lock = threading.Lock()
        self._stream = self._open(conf.progress_jsonl)
        self.prometheus = PrometheusExport(conf.prometheus_host, conf.prometheus_port) if conf.prometheus else None

    @staticmethod
    def _open(target: str) -> IO[str] | None:
        if not target:
            return None
        if target == PROGRESS_TO_STDERR:
            return sys.stderr
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        return open(target, "a", buffering=1)  # line-buffered: a reader sees whole lines

    def onQueryStarted(self, event) -> None:
        self._write({"event": "started", "query": event.name, "id": str(event.id), "time": event.timestamp})

    def onQueryProgress(self, event) -> None:
        progress = event.progress
        with self._lock:
            line = progress_line(progress, *self._take_batch_counts(progress)) if progress.name == CLASSIFY_QUERY \
                else progress_line(progress)
            self._seen[progress.name] = progress.batchId
        self._write(line)
        if self.prometheus is not None:
            self.prometheus.record(line)

    def onQueryIdle(self, event) -> None:
        pass  # idle triggers also come as progress events (numInputRows 0): nothing more to say

    def onQueryTerminated(self, event) -> None:
        self._write({"event": "terminated", "id": str(event.id), "exception": event.exception})

    def _take_batch_counts(self, progress: Any) -> tuple[Counter, Counter]:
        """(statuses, topics) of the worker frames that start inside this micro-batch's offset range,
        removed from the tally. Spark merges a task's accumulator update before the batch commits,
        so they are all there; frames of the next batch, already merged, stay for its event.
        The accumulator's server thread only adds keys: a key snapshot and ``pop`` are safe."""
        if self.tally is None:
            return Counter(), Counter()
        frames = self.tally.value.frames
        sources = list(progress.sources or [])
        starts, ends = source_offsets(sources, "startOffset"), source_offsets(sources, "endOffset")
        statuses, topics = Counter(), Counter()
        for key in list(frames):
            topic, partition, first = key
            end = ends.get(topic, {}).get(str(partition))
            if end is not None and starts.get(topic, {}).get(str(partition), 0) <= first < end:
                frame_statuses, frame_topics = frames.pop(key)
                statuses.update(frame_statuses)
                topics.update(frame_topics)
        return statuses, topics

    def _write(self, line: dict) -> None:
        if self._stream is None:
            return
        with self._lock:
            self._stream.write(json.dumps(line, separators=(",", ":")) + "\n")
            self._stream.flush()

    def wait_for_batches(self, queries, timeout: float = FLUSH_TIMEOUT_S) -> None:
        """Wait (at most ``timeout`` s) until the last progress of each of ``queries`` is logged:
        the listener bus is asynchronous, and the last events would be lost at ``spark.stop()``."""
        deadline = time.monotonic() + timeout
        for query in queries:
            last = query.lastProgress
            while last is not None and self._seen.get(query.name, -1) < last.batchId \
                    and time.monotonic() < deadline:
                time.sleep(0.05)

    def close(self) -> None:
        if self.prometheus is not None:
            self.prometheus.close()
        if self._stream is not None and self._stream is not sys.stderr:
            self._stream.close()
