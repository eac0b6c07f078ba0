"""Integration: the streaming job on a real Kafka broker and real Spark (local[2]).

Every replayed alert must end exactly once in enriched or dead-letter; poison messages go
to dead-letter with reasons; kill -9 of the driver and a broker restart lose nothing.
"""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import fastavro
import pytest
from confluent_kafka import Producer

from fink_t2.kafka import broker
from fink_t2.contract import CLASS_NAMES
from fink_t2.kafka.replay import replay
from fink_t2.kafka.topics import read_topic, topic_sizes

from tests.conftest import REPO, SAMPLE_ALERTS
from tests.conftest_kafka import free_loopback_port

pytestmark = pytest.mark.integration

SAMPLE_COUNT = 139  # alerts in data/alerts (see data/alerts/README.md)


def write_conf(tmp_path: Path, bootstrap: str, max_offsets: int = 5000, trigger: float = 1.0,
               large_messages: str = "python") -> tuple[Path, dict]:
    """A config with unique topic names for one test; returns (path, names)."""
    tag = uuid.uuid4().hex[:8]
    names = {
        "input": f"ztf_{tag}_programid1", "pattern": f"ztf_{tag}_.*",
        "enriched": f"enriched_{tag}", "scores": f"scores_{tag}", "dead": f"dead_{tag}", "snia": f"snia_{tag}",
        "any": f"any_{tag}",
    }
    conf = tmp_path / "job.toml"
    conf.write_text(f"""
[kafka]
bootstrap_servers = "{bootstrap}"
[input]
subscribe_pattern = "{names['pattern']}"
starting_offsets = "earliest"
max_offsets_per_trigger = {max_offsets}
fail_on_data_loss = false
[output]
enriched_topic = "{names['enriched']}"
scores_topic = "{names['scores']}"
deadletter_topic = "{names['dead']}"
large_messages = "{large_messages}"
[[output.filters]]
name = "any_class"
topic = "{names['any']}"
classes = {json.dumps(list(CLASS_NAMES))}
min_probability = 0.0
[[output.filters]]
name = "snia"
topic = "{names['snia']}"
classes = ["SNIa"]
min_probability = 0.3
[checkpoint]
dir = "{tmp_path / 'checkpoints'}"
[spark]
master = "local[2]"
arrow_max_records_per_batch = 500
trigger_seconds = {trigger}
""")
    return conf, names


def stream_command(conf: Path, once: bool = True) -> list[str]:
    return [sys.executable, "-m", "fink_t2.cli", "stream", "--conf", str(conf), *(["--once"] if once else [])]


def run_stream(conf: Path, env: dict | None = None, timeout: float = 300) -> None:
    done = subprocess.run(stream_command(conf), cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]


def poison_messages(valid: bytes) -> list[tuple[bytes, bytes | None]]:
    """(key, value) messages that are not alerts: all must reach the dead-letter topic."""
    other = io.BytesIO()
    fastavro.writer(other, {"type": "record", "name": "other", "fields": [{"name": "x", "type": "int"}]}, [{"x": 1}])
    return [(b"p-nonavro", b"definitely not avro"), (b"p-truncated", valid[: len(valid) // 3]),
            (b"p-wrong-schema", other.getvalue()), (b"p-empty", b""), (b"p-null", None)]


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes | None]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": broker.MAX_MESSAGE_BYTES})
    for key, value in messages:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def candids_of(messages) -> list[int]:
    return [next(fastavro.reader(io.BytesIO(m.value)))["candid"] for m in messages]


def input_candids(bootstrap: str, topic: str) -> Counter:
    return Counter(candids_of(m for m in read_topic(bootstrap, topic) if not m.key.startswith(b"p-")))


@pytest.mark.parametrize("large_messages", ["python", "spark"])
def test_every_alert_lands_once_and_poison_goes_to_deadletter(kafka_broker, tmp_path, large_messages):
    conf, names = write_conf(tmp_path, kafka_broker, large_messages=large_messages)
    broker.create_topic(kafka_broker, names["input"], partitions=2)
    stats = replay([SAMPLE_ALERTS], names["input"], bootstrap=kafka_broker)
    assert stats.delivered == SAMPLE_COUNT and stats.failed == 0
    valid = next((SAMPLE_ALERTS / "fink-broker_basic_alerts_local_20200101").glob("*.avro")).read_bytes()
    produce(kafka_broker, names["input"], poison_messages(valid))
    load_log = tmp_path / "loads.log"
    run_stream(conf, env=os.environ | {"FINK_T2_MODEL_LOAD_LOG": str(load_log)})

    enriched = read_topic(kafka_broker, names["enriched"])
    dead = read_topic(kafka_broker, names["dead"])
    scores = [json.loads(m.value) for m in read_topic(kafka_broker, names["scores"])]
    expected = input_candids(kafka_broker, names["input"])
    assert sum(expected.values()) == SAMPLE_COUNT
    assert Counter(candids_of(enriched)) == expected  # every alert exactly once
    assert all(m.key == str(c).encode() for m, c in zip(enriched, candids_of(enriched)))
    assert sorted(s["candid"] for s in scores) == sorted(expected.elements())
    dead_records = [next(fastavro.reader(io.BytesIO(m.value))) for m in dead]
    assert sorted(r["key"] for r in dead_records) == sorted(k for k, _ in poison_messages(valid))
    reasons = {r["key"]: r["reason"] for r in dead_records}
    assert reasons[b"p-empty"] == reasons[b"p-null"] == "empty_message"
    assert "bad magic" in reasons[b"p-nonavro"] and "missing_field: candidate" == reasons[b"p-wrong-schema"]
    assert all(r["topic"] == names["input"] and r["offset"] >= 0 for r in dead_records)
    ok = [s for s in scores if s["t2_status"] == "ok"]
    assert len(ok) >= 20 and all(abs(sum(s["t2_probs"].values()) - 1) < 1e-5 for s in ok)
    assert len(read_topic(kafka_broker, names["any"])) == len(ok)  # the catch-all filter
    snia = [json.loads(m.value)["candid"] for m in read_topic(kafka_broker, names["snia"])]
    assert sorted(snia) == sorted(s["candid"] for s in ok if s["t2_probs"]["SNIa"] >= 0.3)
    assert 0 < len(snia) < len(ok)  # the SN Ia filter selects
    pids = [line.split()[0] for line in load_log.read_text().splitlines()]
    assert pids and len(pids) == len(set(pids))  # one model load per Python worker process


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.5)


def test_kill_9_of_the_driver_then_restart_loses_nothing(kafka_broker, tmp_path):
    conf, names = write_conf(tmp_path, kafka_broker, max_offsets=20)
    broker.create_topic(kafka_broker, names["input"], partitions=2)
    replay([SAMPLE_ALERTS], names["input"], bootstrap=kafka_broker)
    proc = subprocess.Popen(stream_command(conf, once=False), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: topic_sizes(kafka_broker, [names["enriched"]])[names["enriched"]] >= 20, 240,
                 "the first micro-batches")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its JVM, no clean shutdown
        proc.wait(30)
    partial = topic_sizes(kafka_broker, [names["enriched"]])[names["enriched"]]
    assert partial < SAMPLE_COUNT, "the job finished before the kill: make the test slower"
    print(f"kill -9 after {partial} of {SAMPLE_COUNT} alerts were enriched")
    run_stream(conf)  # restart from the checkpoint
    enriched = read_topic(kafka_broker, names["enriched"])
    counts = Counter(candids_of(enriched))
    assert set(counts) == set(input_candids(kafka_broker, names["input"]))  # nothing lost
    duplicates = sum(c - 1 for c in counts.values())
    print(f"after restart: {len(counts)} distinct alerts, {duplicates} duplicates")
    assert duplicates <= 20  # at most one micro-batch (maxOffsetsPerTrigger) written twice
    keys = {}
    for message, candid in zip(enriched, candids_of(enriched)):
        assert keys.setdefault(candid, message.key) == message.key == str(candid).encode()


def test_broker_restart_mid_run_loses_nothing(kafka_jars, tmp_path):
    run_dir = tmp_path / "broker"
    port = free_loopback_port()
    bootstrap = broker.up(run_dir, port=port, controller_port=free_loopback_port(), timeout=90)
    proc = None
    try:
        conf, names = write_conf(tmp_path, bootstrap, max_offsets=30)
        broker.create_topic(bootstrap, names["input"], partitions=2)
        first = sorted((SAMPLE_ALERTS / "fink-alert-simulator_datasim_20181129").glob("*.avro"))
        replay(first, names["input"], bootstrap=bootstrap)
        proc = subprocess.Popen(stream_command(conf, once=False), cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for(lambda: topic_sizes(bootstrap, [names["enriched"]])[names["enriched"]] >= 30, 240, "first output")
        assert broker.down(run_dir)
        time.sleep(5)  # the job sees the broker gone
        broker.up(run_dir, port=port, timeout=90)
        second = sorted((SAMPLE_ALERTS / "fink-broker_basic_alerts_local_20200101").glob("*.avro"))
        replay(second, names["input"], bootstrap=bootstrap)
        expected = input_candids(bootstrap, names["input"])
        assert sum(expected.values()) == len(first) + len(second)

        def all_out() -> bool:
            return topic_sizes(bootstrap, [names["enriched"]])[names["enriched"]] >= len(first) + len(second)

        try:
            wait_for(all_out, 120, "the job to resume after the broker restart")
            print("broker restart: the running job resumed by itself")
        except TimeoutError:
            if proc.poll() is None:
                raise
            print(f"broker restart: the job exited ({proc.returncode}); restarted from the checkpoint")
            run_stream(conf)  # the job died with the broker: a restart from the checkpoint resumes
        assert set(candids_of(read_topic(bootstrap, names["enriched"]))) == set(expected)
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)
        broker.down(run_dir)
