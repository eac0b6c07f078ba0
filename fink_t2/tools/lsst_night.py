"""``fink-t2 bench --lsst-night``: alert latency, throughput, backlog and worker memory under survey load.

One run, on a fresh local broker (``fink-t2 kafka`` scripts, loopback only), in two phases that
replay the same messages on the same schedule (:class:`NightPlan`: a sustained rate, 280 alerts/s
by default = LSST's 10 M alerts per 10-hour night, plus bursts of 10,000 at visit boundaries):

1. **floor**: a Spark query with the job's Kafka source and sink and no Python
   (``selectExpr("key", "value")`` to another topic), then the same query draining the whole
   floor input at once (its throughput); each in a process of its own
   (``python -m fink_t2.tools.lsst_night``), with the job's Spark settings;
2. **job**: a real ``fink-t2 stream`` process with the given (default: packaged) config, writing
   its per-micro-batch JSON lines (``[monitoring]``) to the run folder.

Per-alert latency = broker append time of the input message → broker append time of its output
(the score for the job, the copy for the floor), joined by key (the candid) after the run. Both
topics use ``LogAppendTime``: the input times come from the producer's delivery reports, the
outputs are consumed while they arrive (the large topics have a size retention, so the disk
holds a 30-minute run). Backlog = input end offsets − end offsets of the last micro-batch (from
the JSON lines), sampled every second; RSS of the job's Spark Python workers (psutil) likewise.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fink_t2.alerts.container import encode_long
from fink_t2.config import DEFAULT_CONF, REPO_ROOT, Config, KafkaConf, load_config

RUN_DIR = REPO_ROOT / "run" / "lsst-night"
INPUT_TOPIC = "ztf_lsstnight_programid1"  # matches the packaged subscribe_pattern "ztf_.*"
FLOOR_INPUT, FLOOR_OUTPUT, FLOOR_DRAIN = "lsstnight_floor_in", "lsstnight_floor_out", "lsstnight_floor_drain"
#: candids of the replayed copies: outside ZTF's range, all encoded on 9 bytes (zigzag < 2^63)
CANDID_BASE = 10**18
WARMUP_CANDID_BASE = 4 * 10**18  # the warm-up messages (Python workers, JIT): not timed
WARMUP_ALERTS = 500
#: size retention per partition of the large topics (disk of a long run: ~18 MB/s per topic at
#: 280 alerts/s); inputs keep ~16,000 alerts per partition, more than a burst and its backlog
INPUT_TOPIC_CONFIG = {"retention.bytes": str(2**30), "segment.bytes": str(128 * 2**20)}
OUTPUT_TOPIC_CONFIG = {"retention.bytes": str(256 * 2**20), "segment.bytes": str(64 * 2**20)}
APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}
PARTITIONS = 2
SAMPLE_PERIOD_S = 1.0
#: seconds allowed for the backlog to drain after the replay ends, and for the job to stop
DRAIN_TIMEOUT_S, STOP_TIMEOUT_S = 300.0, 90.0
#: targets of issue 13 on the 2-core machine
P99_TARGET_S = 10.0


# --------------------------------------------------------------------------- the schedule


@dataclass(frozen=True)
class NightPlan:
    """Offered load: ``rate`` alerts/s for ``minutes``, plus ``burst_size`` alerts at once every
    ``burst_period_s`` seconds (visit boundaries; the first at ``burst_period_s``)."""

    rate: float = 280.0
    burst_size: int = 10_000
    burst_period_s: float = 300.0
    minutes: float = 30.0

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.minutes <= 0 or self.burst_size < 0 or self.burst_period_s <= 0:
            raise ValueError(f"an LSST-night plan needs rate, minutes, burst period > 0 and burst size >= 0: {self}")

    @property
    def seconds(self) -> float:
        return self.minutes * 60.0

    def offered_by(self, t: float) -> int:
        """Alerts due by ``t`` seconds after the start (t clipped to the plan's duration)."""
        t = min(max(t, 0.0), self.seconds)
        bursts = int(t // self.burst_period_s) if t < self.seconds else int((self.seconds - 1e-9) // self.burst_period_s)
        return int(t * self.rate) + self.burst_size * bursts

    @property
    def total(self) -> int:
        return self.offered_by(self.seconds)


# --------------------------------------------------------------------------- messages


class MessageFactory:
    """The k-th replayed message: real alert ``k % len(templates)`` with candid ``base + k``.

    The copies are made by writing the candid's 9 bytes into a template framed once by
    :func:`fink_t2.tools.bench.replicate` (which re-encodes with fastavro: ~150 alerts/s, too slow
    for 280/s next to the job); the candid positions are where two such framings differ.
    """

    def __init__(self, messages: Sequence[bytes]) -> None:
        from fink_t2.tools.bench import replicate

        self.templates, self.positions = [], []
        for payload in messages:
            first, second = (replicate([payload], 1, candid_base=base)[0] for base in (CANDID_BASE, CANDID_BASE + 1))
            differ = [i for i, (a, b) in enumerate(zip(first, second)) if a != b]
            if len(first) != len(second) or len(differ) != 2:
                raise ValueError(f"cannot locate the two candids of a template ({len(differ)} differing bytes)")
            self.templates.append(first)
            self.positions.append(differ)

    def message(self, k: int, base: int = CANDID_BASE) -> tuple[bytes, bytes]:
        """(key, value) of copy ``k``: key = candid in decimal, as the job keys its outputs."""
        i = k % len(self.templates)
        candid = base + k
        varint = encode_long(candid)
        if len(varint) != 9:
            raise ValueError(f"candid {candid} is not encoded on 9 bytes")
        value = bytearray(self.templates[i])
        for position in self.positions[i]:
            value[position:position + 9] = varint
        return str(candid).encode(), bytes(value)


# --------------------------------------------------------------------------- Kafka side


class TimedProducer:
    """Sends messages and keeps the broker append time (ms) of each delivered key."""

    def __init__(self, kafka: KafkaConf) -> None:
        from confluent_kafka import Producer

        from fink_t2.kafka.replay import PRODUCER_DEFAULTS
        from fink_t2.kafka.security import client_config

        self.producer = Producer(client_config(kafka, **PRODUCER_DEFAULTS, **{"queue.buffering.max.kbytes": 2**21}))
        self.append_ms: dict[bytes, int] = {}
        self.failed = 0

    def _on_delivery(self, error, message) -> None:
        if error is None:
            self.append_ms[message.key()] = message.timestamp()[1]
        else:
            self.failed += 1

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, on_delivery=self._on_delivery)
                break
            except BufferError:
                self.producer.poll(0.1)
        self.producer.poll(0)

    def flush(self, timeout: float = 120.0) -> int:
        return self.producer.flush(timeout)


def replay_plan(plan: NightPlan, factory: MessageFactory, producer: TimedProducer, topic: str,
                stop: threading.Event | None = None) -> float:
    """Send the plan's messages on time (copies 0 … total−1); returns its start (``time.time()``)."""
    started_wall, started = time.time(), time.monotonic()
    sent = 0
    while sent < plan.total and not (stop is not None and stop.is_set()):
        due = plan.offered_by(time.monotonic() - started)
        while sent < due:
            producer.send(topic, *factory.message(sent))
            sent += 1
        producer.producer.poll(min(0.01, 1.0 / plan.rate))
    producer.flush()
    return started_wall


class ArrivalCollector(threading.Thread):
    """Consumes ``topics`` from the beginning, keeping the first append time (ms) of each key."""

    def __init__(self, kafka: KafkaConf, topics: Sequence[str]) -> None:
        super().__init__(daemon=True)
        from confluent_kafka import Consumer

        from fink_t2.kafka.broker import MAX_MESSAGE_BYTES
        from fink_t2.kafka.security import client_config

        self.consumer = Consumer(client_config(kafka, **{
            "group.id": f"fink-t2-lsst-night-{time.time_ns()}", "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "max.partition.fetch.bytes": MAX_MESSAGE_BYTES,
            "fetch.max.bytes": 4 * MAX_MESSAGE_BYTES, "log_level": 3}))
        self.consumer.subscribe(list(topics))
        self.arrival_ms: dict[bytes, int] = {}
        self.errors: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for message in self.consumer.consume(1000, timeout=0.5):
                if message.error():
                    self.errors.append(str(message.error()))
                    continue
                self.arrival_ms.setdefault(message.key(), message.timestamp()[1])
        self.consumer.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(30)


def end_offsets(consumer, topic: str) -> int:
    """Sum over partitions of ``topic``'s high watermarks (``consumer``: any confluent-kafka client)."""
    from confluent_kafka import TopicPartition

    return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS))


# --------------------------------------------------------------------------- progress and samples


def read_progress(path: Path, query: str) -> list[dict]:
    """The progress lines of ``query`` in a ``[monitoring]`` JSON-lines file (whole lines only)."""
    if not path.exists():
        return []
    lines = []
    for text in path.read_text().splitlines():
        try:
            line = json.loads(text)
        except json.JSONDecodeError:  # a line being written, or another process's stderr text
            continue
        if line.get("event") == "progress" and line.get("query") == query:
            lines.append(line)
    return lines


def processed_offsets(lines: list[dict], topic: str) -> int:
    """Input offsets read by the last micro-batch of ``lines`` (0 before the first)."""
    for line in reversed(lines):
        if topic in line.get("end_offsets", {}):
            return sum(line["end_offsets"][topic].values())
    return 0


@dataclass
class Samples:
    """Time series sampled every second: seconds since the replay start, backlog, worker RSS."""

    t: list[float] = field(default_factory=list)
    backlog: list[int] = field(default_factory=list)
    produced: list[int] = field(default_factory=list)
    worker_rss_mib: list[float] = field(default_factory=list)  # largest Python worker
    workers: list[int] = field(default_factory=list)


class Sampler(threading.Thread):
    """Every :data:`SAMPLE_PERIOD_S`: input end offsets − processed offsets, and the RSS of the Spark
    Python workers under ``root_pid`` (none for the floor)."""

    def __init__(self, kafka: KafkaConf, topic: str, progress: Path, query: str, start: float,
                 root_pid: int | None) -> None:
        super().__init__(daemon=True)
        from confluent_kafka import Consumer

        from fink_t2.kafka.security import client_config

        self.consumer = Consumer(client_config(kafka, **{"group.id": "fink-t2-lsst-night-sampler", "log_level": 3}))
        self.topic, self.progress, self.query, self.origin, self.root_pid = topic, progress, query, start, root_pid
        self.samples = Samples()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(SAMPLE_PERIOD_S):
            high = end_offsets(self.consumer, self.topic)
            processed = processed_offsets(read_progress(self.progress, self.query), self.topic)
            rss = worker_rss_mib(self.root_pid) if self.root_pid else []
            self.samples.t.append(time.time() - self.origin)
            self.samples.produced.append(high)
            self.samples.backlog.append(max(high - processed, 0))
            self.samples.worker_rss_mib.append(max(rss, default=0.0))
            self.samples.workers.append(len(rss))
        self.consumer.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(30)


def worker_rss_mib(root_pid: int) -> list[float]:
    """RSS (MiB) of each forked Spark Python worker under ``root_pid``."""
    import psutil

    from fink_t2.tools.bench import _is_python_worker

    try:
        children = psutil.Process(root_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    sizes = []
    for proc in children:
        try:
            if _is_python_worker(proc):
                sizes.append(proc.memory_info().rss / 2**20)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return sizes


# --------------------------------------------------------------------------- figures


def latency_figures(sent_ms: dict[bytes, int], arrived_ms: dict[bytes, int]) -> dict:
    """p50/p95/p99/max of output − input append time (s) over the keys sent; ``missing`` = keys
    without an output."""
    keys = [k for k in sent_ms if k in arrived_ms]
    latency = np.array([arrived_ms[k] - sent_ms[k] for k in keys], dtype=np.float64) / 1000.0
    figures = {"sent": len(sent_ms), "matched": len(keys), "missing": len(sent_ms) - len(keys)}
    if len(latency):
        p50, p95, p99 = (float(q) for q in np.percentile(latency, [50, 95, 99]))
        figures |= {"p50_s": p50, "p95_s": p95, "p99_s": p99, "max_s": float(latency.max()),
                    "mean_s": float(latency.mean())}
    return figures


def capacity(lines: list[dict], min_rows: int = 1) -> float:
    """Rows per second of micro-batch time over the batches of at least ``min_rows`` input rows
    (Spark's processed rate; large batches measure the capacity, small ones the trigger overhead)."""
    busy = [line for line in lines if line["alerts_in"] >= max(min_rows, 1)]
    seconds = sum(line["batch_duration_s"] for line in busy)
    return sum(line["alerts_in"] for line in busy) / seconds if seconds else 0.0


def trend_per_minute(t: Sequence[float], values: Sequence[float], after_s: float = 60.0) -> float:
    """Least-squares slope of ``values`` (per minute) over the samples after ``after_s``."""
    points = [(x, y) for x, y in zip(t, values) if x >= after_s and y > 0]
    if len(points) < 3:
        return 0.0
    x, y = np.array(points).T
    return float(np.polyfit(x / 60.0, y, 1)[0])


def burst_batch_rows(plan: NightPlan, max_offsets: int) -> int:
    """Input rows from which a micro-batch counts as a burst's (half a burst, at most half the
    largest micro-batch): the batches whose rate is the capacity."""
    return max(min(plan.burst_size, max_offsets) // 2, 1)


def phase_figures(name: str, plan: NightPlan, sent_ms: dict, arrived_ms: dict, lines: list[dict],
                  samples: Samples, replay_start: float, max_offsets: int) -> dict:
    """The figures of one phase (floor or job) and its time series for the plot."""
    in_plan = [t for t, b in zip(samples.t, samples.backlog) if t <= plan.seconds]
    last_in_plan = max(range(len(in_plan)), key=lambda i: in_plan[i], default=None)
    rss = [v for v in samples.worker_rss_mib if v > 0]
    latency = latency_figures(sent_ms, arrived_ms)
    outputs = sorted(arrived_ms[k] for k in sent_ms if k in arrived_ms)
    span_s = (outputs[-1] - outputs[0]) / 1000.0 if len(outputs) > 1 else 0.0
    return {
        "phase": name, **{f"latency_{k}": v for k, v in latency.items()},
        "throughput_alerts_per_s": len(outputs) / span_s if span_s else 0.0,
        "capacity_alerts_per_s": capacity(lines),
        "burst_capacity_alerts_per_s": capacity(lines, burst_batch_rows(plan, max_offsets)),
        "micro_batches": sum(1 for line in lines if line["alerts_in"]),
        "backlog_max": max(samples.backlog, default=0),
        "backlog_at_replay_end": samples.backlog[last_in_plan] if last_in_plan is not None else 0,
        "backlog_trend_per_min": trend_per_minute(samples.t[:len(in_plan)], samples.backlog[:len(in_plan)], 0.0),
        "worker_rss_first_mib": rss[0] if rss else 0.0, "worker_rss_last_mib": rss[-1] if rss else 0.0,
        "worker_rss_max_mib": max(rss, default=0.0),
        "worker_rss_trend_mib_per_min": trend_per_minute(samples.t, samples.worker_rss_mib),
        "series": {**dataclasses.asdict(samples),
                   "latency_t": [(sent_ms[k] / 1000.0 - replay_start) for k in sent_ms if k in arrived_ms],
                   "latency_s": [(arrived_ms[k] - sent_ms[k]) / 1000.0 for k in sent_ms if k in arrived_ms]},
    }


# --------------------------------------------------------------------------- the two phases


def _warm_up(factory: MessageFactory, producer: TimedProducer, topic: str) -> None:
    for k in range(WARMUP_ALERTS):
        producer.send(topic, *factory.message(k, base=WARMUP_CANDID_BASE))
    producer.flush()


def _wait_processed(progress: Path, query: str, topic: str, target: int, timeout: float,
                    alive: Callable[[], bool] = lambda: True) -> bool:
    """Whether the micro-batches of ``query`` read ``topic`` up to ``target`` within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        if processed_offsets(read_progress(progress, query), topic) >= target:
            return True
        time.sleep(1.0)
    return False


def _timed_phase(name: str, plan: NightPlan, factory: MessageFactory, kafka: KafkaConf, input_topic: str,
                 output_topics: Sequence[str], progress: Path, query: str, root_pid: int | None,
                 max_offsets: int, alive: Callable[[], bool] = lambda: True) -> dict:
    """Warm up, replay the plan while sampling, drain; the phase's figures. ``alive``: whether the
    process under test still runs (a dead job ends the wait at once)."""
    producer = TimedProducer(kafka)
    _warm_up(factory, producer, input_topic)
    if not _wait_processed(progress, query, input_topic, WARMUP_ALERTS, DRAIN_TIMEOUT_S, alive):
        raise RuntimeError(f"{name}: the {WARMUP_ALERTS} warm-up alerts were not processed within "
                           f"{DRAIN_TIMEOUT_S:.0f} s (or the job stopped: see its job.log)")
    collector = ArrivalCollector(kafka, output_topics)
    collector.start()
    warm = dict(producer.append_ms)
    producer.append_ms.clear()
    warm_lines = len(read_progress(progress, query))  # the warm-up's micro-batches are not timed
    sampler = Sampler(kafka, input_topic, progress, query, time.time(), root_pid)
    sampler.start()
    try:
        replay_start = replay_plan(plan, factory, producer, input_topic)
        drained = _wait_processed(progress, query, input_topic, WARMUP_ALERTS + plan.total, DRAIN_TIMEOUT_S, alive)
        _wait_arrivals(collector, len(producer.append_ms) + len(warm), 30.0)
    finally:
        sampler.stop()
        collector.stop()
    figures = phase_figures(name, plan, producer.append_ms, collector.arrival_ms,
                            read_progress(progress, query)[warm_lines:],
                            sampler.samples, replay_start, max_offsets)
    return figures | {"drained": drained, "send_failures": producer.failed}


def _wait_arrivals(collector: ArrivalCollector, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(collector.arrival_ms) < expected and time.monotonic() < deadline:
        time.sleep(0.5)


def floor_phase(plan: NightPlan, factory: MessageFactory, config: Config, conf_path: str, bootstrap: str,
                run_dir: Path) -> dict:
    """The framework floor at the offered load, then its drain throughput over the whole floor input;
    each a process of its own (:func:`run_floor_process`), like the job."""
    progress = run_dir / "floor-progress.jsonl"
    command = [sys.executable, "-m", "fink_t2.tools.lsst_night", "--conf", conf_path, "--bootstrap", bootstrap,
               "--run-dir", str(run_dir)]
    with (run_dir / "floor.log").open("w") as log:
        floor = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            figures = _timed_phase("floor", plan, factory, config.kafka, FLOOR_INPUT, [FLOOR_OUTPUT], progress,
                                   "floor", None, config.input.max_offsets_per_trigger,
                                   alive=lambda: floor.poll() is None)
        finally:
            exit_code = _stop(floor)
        drain = subprocess.run([*command, "--drain"], cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                               timeout=DRAIN_TIMEOUT_S * 4)
    figures["drain_alerts_per_s"] = capacity(read_progress(progress, "floor_drain"))
    return figures | {"floor_exit_code": exit_code, "drain_exit_code": drain.returncode}


def run_floor_process(conf_path: str, bootstrap: str, run_dir: Path, drain: bool) -> int:
    """One floor query in this process until SIGTERM (``drain``: over the whole floor input, then
    exit), with the job's Spark settings; progress lines to ``run_dir/floor-progress.jsonl``."""
    from fink_t2.spark import stream
    from fink_t2.spark.monitoring import ProgressMonitor

    config = load_config(conf_path).with_bootstrap(bootstrap)
    name, output = ("floor_drain", FLOOR_DRAIN) if drain else ("floor", FLOOR_OUTPUT)
    spark = stream.build_spark(config, app_name=f"fink_t2_{name}")
    monitor = ProgressMonitor(dataclasses.replace(config.monitoring, progress_jsonl=str(run_dir / "floor-progress.jsonl"),
                                                  prometheus=False))
    spark.streams.addListener(monitor)
    handlers = stream.stop_on_signals(spark)
    try:
        query = stream.start_floor_query(spark, config, FLOOR_INPUT, output, name, run_dir / f"checkpoints-{name}",
                                         once=drain)
        query.awaitTermination()
        monitor.wait_for_batches([query])
        return 0 if query.exception() is None else 1
    finally:
        monitor.close()
        spark.stop()
        stream.restore_handlers(handlers)


def job_phase(plan: NightPlan, factory: MessageFactory, config: Config, conf_path: str, bootstrap: str,
              run_dir: Path) -> dict:
    """A real ``fink-t2 stream`` process under the plan; its figures and exit code."""
    progress = run_dir / "job-progress.jsonl"
    command = [sys.executable, "-m", "fink_t2.cli", "stream", "--conf", conf_path, "--bootstrap", bootstrap,
               "--checkpoint-dir", str(run_dir / "checkpoints-job"), "--progress-jsonl", str(progress)]
    log = (run_dir / "job.log").open("w")
    job = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        figures = _timed_phase("job", plan, factory, config.kafka, INPUT_TOPIC, [config.output.scores_topic],
                               progress, "classify", job.pid, config.input.max_offsets_per_trigger,
                               alive=lambda: job.poll() is None)
    finally:
        exit_code = _stop(job)
        log.close()
    return figures | {"job_exit_code": exit_code, "command": "fink-t2 " + " ".join(command[3:])}


def _stop(job: subprocess.Popen) -> int:
    """SIGTERM (the job stops its queries and prints its summary), then SIGKILL after the timeout."""
    if job.poll() is None:
        job.send_signal(signal.SIGTERM)
    try:
        return job.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        job.kill()
        return job.wait()


def _prepare_topics(kafka: KafkaConf, config: Config) -> None:
    from fink_t2.kafka import broker

    for topic in (INPUT_TOPIC, FLOOR_INPUT):
        broker.create_topic(kafka, topic, partitions=PARTITIONS, config=INPUT_TOPIC_CONFIG | APPEND_TIME)
    for topic in (FLOOR_OUTPUT, FLOOR_DRAIN, config.output.enriched_topic):
        broker.create_topic(kafka, topic, partitions=PARTITIONS, config=OUTPUT_TOPIC_CONFIG | APPEND_TIME)
    broker.create_topic(kafka, config.output.scores_topic, partitions=PARTITIONS, config=APPEND_TIME)


def run_lsst_night(plan: NightPlan, alerts: Sequence[str], conf: str | None, run_dir: Path = RUN_DIR) -> dict:
    """Both phases on a fresh broker (stopped at the end) in ``run_dir`` (emptied first: this tool's
    own folder); the JSON-ready figures."""
    from fink_t2.kafka import broker
    from fink_t2.tools.bench import _free_port, environment_facts, load_messages

    conf_path = str(conf or DEFAULT_CONF)
    factory = MessageFactory(load_messages(alerts))
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh broker and checkpoints
    run_dir.mkdir(parents=True)
    bootstrap = broker.up(run_dir / "kafka", port=_free_port(), controller_port=_free_port(), timeout=90)
    try:
        config = load_config(conf_path).with_bootstrap(bootstrap)
        _prepare_topics(config.kafka, config)
        floor = floor_phase(plan, factory, config, conf_path, bootstrap, run_dir)
        job = job_phase(plan, factory, config, conf_path, bootstrap, run_dir)
    finally:
        broker.down(run_dir / "kafka")
    return {"plan": dataclasses.asdict(plan), "offered_alerts": plan.total, "floor": floor, "job": job,
            "ratio": ratios(job, floor), "environment": environment_facts(),
            "trigger_seconds": config.spark.trigger_seconds,
            "max_offsets_per_trigger": config.input.max_offsets_per_trigger}


def ratios(job: dict, floor: dict) -> dict:
    """The job's figures as multiples of the floor's (same run, same messages, same schedule)."""
    def ratio(a: float | None, b: float | None) -> float | None:
        return float(a / b) if a and b else None

    return {"capacity": ratio(job["burst_capacity_alerts_per_s"], floor["drain_alerts_per_s"]),
            **{f"latency_{q}": ratio(job.get(f"latency_{q}_s"), floor.get(f"latency_{q}_s"))
               for q in ("p50", "p95", "p99", "max")}}


# --------------------------------------------------------------------------- report


README_BEGIN = "<!-- lsst-night:begin (written by `fink-t2 bench --lsst-night --readme`; do not edit by hand) -->"
README_END = "<!-- lsst-night:end -->"


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _mark(ok: bool) -> str:
    return "✔" if ok else "✘"


def second_half_rss_trend(figures: dict) -> float:
    """MiB/min of the largest Python worker over the second half of the job's replay. Worker RSS rises
    in steps to the high-water mark of the largest micro-batches (the first bursts) and then stays;
    a leak keeps rising: by half-time a 30-minute night has had three bursts, so only a leak still
    climbs after it."""
    series = figures["job"]["series"]
    return trend_per_minute(series["t"], series["worker_rss_mib"], after_s=figures["plan"]["minutes"] * 30.0)


def verdicts(figures: dict) -> dict[str, bool]:
    """The issue's targets: p99 ≤ 10 s, no backlog growth (what is left when the replay ends is
    under 10 s of offered alerts, the p99 budget), RSS flat (the second half's fitted slope,
    extrapolated over the whole run, < 10 % of the largest worker)."""
    job, plan = figures["job"], figures["plan"]
    growth = abs(second_half_rss_trend(figures)) * plan["minutes"]
    return {"p99": (job.get("latency_p99_s") or float("inf")) <= P99_TARGET_S,
            "backlog": job["backlog_at_replay_end"] <= plan["rate"] * P99_TARGET_S and job["latency_missing"] == 0,
            "rss": job["worker_rss_max_mib"] > 0 and growth < 0.1 * job["worker_rss_max_mib"]}


def format_markdown(figures: dict, command: str, rendered_by: str | None = None) -> str:
    """The README block: provenance, then one row per figure (job, floor, ratio, target);
    ``rendered_by``: the command that wrote the block again from the run's JSON (with its commit)."""
    env, plan, job, floor = figures["environment"], figures["plan"], figures["job"], figures["floor"]
    ok, ratio = verdicts(figures), figures["ratio"]

    def times(value: float | None) -> str:
        return "—" if value is None else f"{value:.1f}×" if value >= 1 else f"{value:.3f}×"

    rows = [
        ("alerts offered (timed; + 500 warm-up)", f"{figures['offered_alerts']:,}", f"{figures['offered_alerts']:,}", "", ""),
        ("alerts with an output (missing)", f"{job['latency_matched']:,} ({job['latency_missing']})",
         f"{floor['latency_matched']:,} ({floor['latency_missing']})", "", "0 missing " + _mark(job["latency_missing"] == 0)),
        *[(f"latency {q}, s", _seconds(job.get(f"latency_{q}_s")), _seconds(floor.get(f"latency_{q}_s")),
           times(ratio.get(f"latency_{q}")), "≤ 10 " + _mark(ok["p99"]) if q == "p99" else "")
          for q in ("p50", "p95", "p99", "max")],
        ("throughput over the run, outputs/s", f"{job['throughput_alerts_per_s']:,.0f}",
         f"{floor['throughput_alerts_per_s']:,.0f}", "", ""),
        ("alerts/s of micro-batch time, all micro-batches with input",
         f"{job['capacity_alerts_per_s']:,.0f}", f"{floor['capacity_alerts_per_s']:,.0f}", "", ""),
        ("capacity: alerts/s of micro-batch time in the bursts' micro-batches (floor: draining its whole input)",
         f"{job['burst_capacity_alerts_per_s']:,.0f}", f"{floor['drain_alerts_per_s']:,.0f}", times(ratio["capacity"]), ""),
        ("backlog max / at the end of the replay, alerts", f"{job['backlog_max']:,} / {job['backlog_at_replay_end']:,}",
         f"{floor['backlog_max']:,} / {floor['backlog_at_replay_end']:,}", "", "no growth " + _mark(ok["backlog"])),
        ("Python worker RSS first / last / max, MiB",
         f"{job['worker_rss_first_mib']:.0f} / {job['worker_rss_last_mib']:.0f} / {job['worker_rss_max_mib']:.0f}",
         "(no Python)", "", ""),
        ("Python worker RSS trend over the run (after its first minute), MiB/min",
         f"{job['worker_rss_trend_mib_per_min']:+.2f}", "", "", ""),
        ("Python worker RSS trend over the second half of the run, MiB/min",
         f"{second_half_rss_trend(figures):+.2f}", "", "", "flat " + _mark(ok["rss"])),
    ]
    lines = [README_BEGIN, "",
             f"Run of {env['date']}, commit {env['git_commit']}, {env['cpu_model']} ({env['cpu_count']} cores), "
             f"Python {env['python']}, pyspark {env['pyspark']}; command `{command}`; offered load "
             f"{plan['rate']:g} alerts/s for {plan['minutes']:g} min plus {plan['burst_size']:,} alerts every "
             f"{plan['burst_period_s']:g} s; trigger {figures['trigger_seconds']:g} s, "
             f"max_offsets_per_trigger {figures['max_offsets_per_trigger']:,}."
             + (f" Block written again from that run's JSON by {rendered_by}." if rendered_by else ""), "",
             "| figure | job (`fink-t2 stream`) | floor (Kafka → Kafka, no Python) | job / floor | target |",
             "|---|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines + ["", README_END])


def format_table(figures: dict) -> str:
    """A terminal summary of the run."""
    lines = [f"LSST night: {figures['offered_alerts']:,} alerts offered ({figures['plan']})"]
    for phase in ("job", "floor"):
        f = figures[phase]
        lines.append(f"  {phase:<5} latency p50 {_seconds(f.get('latency_p50_s'))} s, p99 {_seconds(f.get('latency_p99_s'))} s, "
                     f"max {_seconds(f.get('latency_max_s'))} s; missing {f['latency_missing']}; "
                     f"{f['throughput_alerts_per_s']:,.0f} outputs/s; capacity {f['burst_capacity_alerts_per_s']:,.0f}/s "
                     f"(all batches {f['capacity_alerts_per_s']:,.0f}/s); "
                     f"backlog max {f['backlog_max']:,}, at end {f['backlog_at_replay_end']:,}; "
                     f"worker RSS max {f['worker_rss_max_mib']:.0f} MiB, trend {f['worker_rss_trend_mib_per_min']:+.2f} MiB/min")
    lines.append(f"  floor drain {figures['floor']['drain_alerts_per_s']:,.0f} alerts/s; ratios {figures['ratio']}")
    lines.append(f"  job worker RSS trend over the second half: {second_half_rss_trend(figures):+.2f} MiB/min")
    return "\n".join(lines)


def plot_night(figures: dict, out: Path) -> None:
    """Four panels over the run: latency per alert, backlog, offered vs output count, worker RSS."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(10, 11), sharex=True, constrained_layout=True)
    colours = {"job": "#c44e52", "floor": "#4c72b0"}
    for phase in ("floor", "job"):
        series = figures[phase]["series"]
        axes[0].plot(series["latency_t"], series["latency_s"], ".", ms=1, color=colours[phase], label=phase)
        axes[1].plot(series["t"], series["backlog"], color=colours[phase], label=phase)
        axes[2].plot(series["t"], series["produced"], color=colours[phase], label=f"{phase}: input end offsets")
    axes[0].axhline(P99_TARGET_S, color="grey", ls="--", lw=0.8, label="p99 target")
    axes[0].set(ylabel="latency, s (input → output append)", yscale="log")
    axes[1].set(ylabel="backlog, alerts")
    axes[2].set(ylabel="alerts in the input topic")
    job = figures["job"]["series"]
    axes[3].plot(job["t"], job["worker_rss_mib"], color=colours["job"], label="largest Python worker")
    axes[3].set(ylabel="RSS, MiB", xlabel="seconds since the timed replay started")
    for ax in axes:
        ax.legend(fontsize=8, markerscale=8)
    plan = figures["plan"]
    axes[0].set_title(f"LSST night: {plan['rate']:g} alerts/s + {plan['burst_size']:,} every {plan['burst_period_s']:g} s, "
                      f"{plan['minutes']:g} min; commit {figures['environment']['git_commit']}", fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def write_outputs(figures: dict, out: str | None, plot: str | None, readme: str | None, command: str,
                  rendered_by: str | None = None) -> None:
    """JSON (``out``, with the measuring ``command``), PNG (``plot``) and the README block between the
    lsst-night markers."""
    from fink_t2.readme_blocks import write_readme_block

    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps({**figures, "command": command}, indent=1))
    if plot:
        plot_night(figures, Path(plot))
    if readme:
        write_readme_block(Path(readme), format_markdown(figures, command, rendered_by), README_BEGIN, README_END)


# --------------------------------------------------------------------------- CLI


def add_lsst_night_arguments(bench_parser) -> None:
    """Add ``--lsst-night`` and its options to ``fink-t2 bench`` (its handler then dispatches)."""
    night = bench_parser.add_argument_group("LSST night (--lsst-night): latency under survey load")
    night.add_argument("--lsst-night", action="store_true",
                       help="replay an LSST-night load into a fresh broker through the framework floor, then "
                            "while `fink-t2 stream` runs; --out/--plot/--readme take its figures")
    night.add_argument("--minutes", type=float, default=NightPlan.minutes,
                       help=f"duration of each timed replay (default {NightPlan.minutes:g})")
    night.add_argument("--rate", type=float, default=NightPlan.rate,
                       help=f"sustained alerts/s (default {NightPlan.rate:g}: 10 M in 10 h)")
    night.add_argument("--burst-size", type=int, default=NightPlan.burst_size,
                       help=f"alerts sent at once at each visit boundary (default {NightPlan.burst_size})")
    night.add_argument("--burst-period", type=float, default=NightPlan.burst_period_s, metavar="SECONDS",
                       help=f"seconds between bursts (default {NightPlan.burst_period_s:g})")
    night.add_argument("--from-json", metavar="FILE",
                       help="no run: print and write --plot / --readme again from the JSON of an earlier run")
    bench_handler = bench_parser.get_default("handler")
    bench_parser.set_defaults(handler=lambda args: run_lsst_night_command(args) if args.lsst_night
                              else bench_handler(args))


def run_lsst_night_command(args) -> int:
    """``fink-t2 bench --lsst-night``: run, print, write JSON / PNG / README block."""
    if args.from_json:
        return _render_again(args)
    plan = NightPlan(rate=args.rate, burst_size=args.burst_size, burst_period_s=args.burst_period,
                     minutes=args.minutes)
    figures = run_lsst_night(plan, args.alerts, args.conf)
    print(format_table(figures))
    command = os.environ.get("FINK_T2_BENCH_COMMAND") or (
        f"fink-t2 bench --lsst-night --minutes {args.minutes:g} --rate {args.rate:g} --burst-size "
        f"{args.burst_size} --burst-period {args.burst_period:g}" + (f" --conf {args.conf}" if args.conf else ""))
    write_outputs(figures, args.out, args.plot, args.readme, command)
    codes = (figures["job"]["job_exit_code"], figures["floor"]["floor_exit_code"], figures["floor"]["drain_exit_code"])
    return 0 if codes == (0, 0, 0) else 1


def _render_again(args) -> int:
    """``--from-json``: the figures of an earlier run, printed and written to --plot / --readme (its
    JSON is not rewritten); the block names the run's commit and this command with today's."""
    from fink_t2.tools.bench import environment_facts

    figures = json.loads(Path(args.from_json).read_text())
    command = figures.get("command") or os.environ.get("FINK_T2_BENCH_COMMAND")
    if not command:
        raise SystemExit(f"{args.from_json} does not say which command measured it: set FINK_T2_BENCH_COMMAND")
    print(format_table(figures))
    rendered_by = (f"`fink-t2 bench --lsst-night --from-json {args.from_json}` at commit "
                   f"{environment_facts()['git_commit']}")
    write_outputs(figures, None, args.plot, args.readme, command, rendered_by)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fink_t2.tools.lsst_night --conf F --bootstrap B --run-dir D [--drain]``: the floor process."""
    import argparse

    parser = argparse.ArgumentParser(description=run_floor_process.__doc__)
    parser.add_argument("--conf", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--drain", action="store_true")
    args = parser.parse_args(argv)
    return run_floor_process(args.conf, args.bootstrap, args.run_dir, args.drain)


if __name__ == "__main__":
    sys.exit(main())
