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
from confluent_kafka.admin import AdminClient

from fink_t2.kafka import broker
from fink_t2.contract import CLASS_NAMES
from fink_t2.kafka.replay import replay
from fink_t2.kafka.topics import read_topic, topic_sizes
from fink_t2.spark.stream import HOLD_ENV

from tests.conftest import REPO, SAMPLE_ALERTS, rewritten_alert
from tests.conftest_kafka import free_loopback_port

pytestmark = pytest.mark.integration

SAMPLE_COUNT = 139  # alerts in data/alerts (see data/alerts/README.md)


def write_conf(tmp_path: Path, bootstrap: str, max_offsets: int = 5000, trigger: float = 1.0,
               large_messages: str = "python", outage: str = "wait",
               delivery_timeout: float = 120.0, enriched_format: str = "container",
               input_tag: str | None = None) -> tuple[Path, dict]:
    """A config with unique topic names for one test (the input topic of ``input_tag`` if given),
    in its own folder ``tmp_path/<tag>`` (config, checkpoints, schemas); returns (path, names)."""
    tag = uuid.uuid4().hex[:8]
    names = {
        "tag": tag, "input": f"ztf_{input_tag or tag}_programid1", "pattern": f"ztf_{input_tag or tag}_.*",
        "enriched": f"enriched_{tag}", "scores": f"scores_{tag}", "dead": f"dead_{tag}", "snia": f"snia_{tag}",
        "any": f"any_{tag}", "schemas": str(tmp_path / tag / "schemas"),
    }
    tmp_path = tmp_path / tag
    tmp_path.mkdir(parents=True)
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
enriched_format = "{enriched_format}"
schema_dir = "{names['schemas']}"
on_broker_outage = "{outage}"
delivery_timeout_seconds = {delivery_timeout}
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
[cuts]
# most datasim sample alerts sit on PS1 point sources: keep them classified, the stream is under test
stellar_counterpart = false
""")
    return conf, names


def stream_command(conf: Path, once: bool = True) -> list[str]:
    return [sys.executable, "-m", "fink_t2.cli", "stream", "--conf", str(conf), *(["--once"] if once else [])]


def run_stream(conf: Path, env: dict | None = None, timeout: float = 300, expect: int = 0,
               extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``fink-t2 stream --once`` in a subprocess; asserts its exit code, returns it (stdout: the summary)."""
    done = subprocess.run([*stream_command(conf), *extra], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == expect, done.stderr[-3000:]
    return done


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


def same_values(a, b) -> bool:
    """Equal decoded Avro values, NaN equal to NaN (Fink's lc_features hold NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_values(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(same_values, a, b))
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("large_messages", ["python", "spark"])
def test_schemaless_topic_read_with_the_published_avsc_equals_the_container_topic(kafka_broker, tmp_path,
                                                                                  large_messages):
    """The same input through a container job and a schemaless one (workers' producer, or Spark's
    sink carrying the header): a consumer holding only the published .avsc files reads records equal
    to the container ones, key by key; scores and dead letters are the same; every value is smaller."""
    from fink_t2.alerts.container import single_record
    from fink_t2.kafka.messages import enriched_schema
    from fink_t2.kafka.schema_files import fingerprint_of, published_schema, read_schemaless

    container_conf, names = write_conf(tmp_path, kafka_broker)
    schemaless_conf, names2 = write_conf(tmp_path, kafka_broker, large_messages=large_messages,
                                         enriched_format="schemaless", input_tag=names["tag"])
    broker.create_topic(kafka_broker, names["input"], partitions=2)
    assert replay([SAMPLE_ALERTS], names["input"], bootstrap=kafka_broker).delivered == SAMPLE_COUNT
    valid = next((SAMPLE_ALERTS / "fink-broker_basic_alerts_local_20200101").glob("*.avro")).read_bytes()
    produce(kafka_broker, names["input"], poison_messages(valid))
    run_stream(container_conf)
    run_stream(schemaless_conf)

    container = {m.key: m for m in read_topic(kafka_broker, names["enriched"])}
    schemaless = {m.key: m for m in read_topic(kafka_broker, names2["enriched"])}
    assert len(container) == SAMPLE_COUNT and set(schemaless) == set(container)
    published = {p.name for p in Path(names2["schemas"]).iterdir()}
    writer_schemas = {single_record(m.value)[0].schema_json for m in read_topic(kafka_broker, names["input"])
                      if not m.key.startswith(b"p-")}
    assert published == {enriched_schema(w).file_name for w in writer_schemas}  # one file per writer schema
    assert {fingerprint_of(list(m.headers)) + ".avsc" for m in schemaless.values()} == published
    for key, message in schemaless.items():
        fingerprint = fingerprint_of(list(message.headers))
        record = read_schemaless(message.value, published_schema(Path(names2["schemas"]), fingerprint))
        assert same_values(record, next(fastavro.reader(io.BytesIO(container[key].value)))), key
        assert len(message.value) < len(container[key].value)
    assert sorted(m.value for m in read_topic(kafka_broker, names["scores"])) == sorted(
        m.value for m in read_topic(kafka_broker, names2["scores"]))
    dead = [{k: v for k, v in next(fastavro.reader(io.BytesIO(m.value))).items()}
            for name in (names["dead"], names2["dead"]) for m in read_topic(kafka_broker, name)]
    assert len(dead) == 2 * len(poison_messages(valid))
    assert sorted(map(repr, dead[:len(dead) // 2])) == sorted(map(repr, dead[len(dead) // 2:]))
    assert sorted(m.value for m in read_topic(kafka_broker, names["snia"])) == sorted(
        m.value for m in read_topic(kafka_broker, names2["snia"]))


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


def produce_to(bootstrap: str, topic: str, partition: int, messages: list[tuple[bytes, bytes | None]]) -> None:
    """Produce ``messages`` (key, value) to one partition, acknowledged."""
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": broker.MAX_MESSAGE_BYTES})
    for key, value in messages:
        producer.produce(topic, key=key, value=value, partition=partition)
    assert producer.flush(60) == 0


def dead_records(bootstrap: str, topic: str) -> dict[bytes, dict]:
    """Dead-letter records by source key."""
    records = [next(fastavro.reader(io.BytesIO(m.value))) for m in read_topic(bootstrap, topic)]
    return {r["key"]: r for r in records}


@pytest.mark.parametrize("large_messages", ["python", "spark"])
def test_a_partition_of_hostile_messages_only_does_not_stop_the_job(kafka_broker, tmp_path, large_messages):
    conf, names = write_conf(tmp_path, kafka_broker, large_messages=large_messages)
    broker.create_topic(kafka_broker, names["input"], partitions=2)
    valid = sorted((SAMPLE_ALERTS / "fink-broker_basic_alerts_local_20200101").glob("*.avro"))[0].read_bytes()
    largest = broker.MAX_MESSAGE_BYTES - 200  # the broker still takes it: 61 B batch header + framing
    hostile = [(b"h-nonavro", b"definitely not avro"), (b"h-truncated", valid[: len(valid) // 3]),
               (b"h-empty", b""), (b"h-null", None), (b"h-10mib-junk", b"\xff" * largest),
               (b"h-oversize-alert", rewritten_alert(valid, size=largest))]
    produce_to(kafka_broker, names["input"], 0, hostile)  # partition 0: every message is a dead letter
    candid = next(fastavro.reader(io.BytesIO(valid)))["candid"]
    negatives = [rewritten_alert(valid, candid=-candid), rewritten_alert(valid, candid=-7)]
    produce_to(kafka_broker, names["input"], 1, [(b"a-valid", valid), (b"a-neg-1", negatives[0]),
                                                 (b"a-neg-2", negatives[1])])
    first = run_stream(conf)
    print(first.stdout)
    assert "alerts in: 9 " in first.stdout and "error:avro_decode" in first.stdout

    dead = dead_records(kafka_broker, names["dead"])
    # the negative candids are not ZTF ids: dead letters too, keyed by their source position
    assert sorted(dead) == sorted([k for k, _ in hostile] + [b"a-neg-1", b"a-neg-2"])
    assert dead[b"a-neg-2"]["reason"] == "invalid_field: candid -7 < 0"
    assert dead[b"h-empty"]["reason"] == dead[b"h-null"]["reason"] == "empty_message"
    assert "bad magic" in dead[b"h-nonavro"]["reason"] and dead[b"h-truncated"]["reason"].startswith("avro_decode")
    assert dead[b"h-oversize-alert"]["reason"].startswith("avro_decode")  # a block above 1 MiB
    for key in (b"h-10mib-junk", b"h-oversize-alert"):  # too large to carry whole: cut, sizes recorded
        assert dead[key]["truncated"] and dead[key]["value_size"] == largest
        assert dict(hostile)[key].startswith(dead[key]["value"])
    assert not any(dead[k]["truncated"] for k in (b"h-nonavro", b"h-truncated", b"h-empty", b"h-null"))
    enriched = read_topic(kafka_broker, names["enriched"])
    keys = [m.key for m in enriched]
    assert keys == [str(candid).encode()]
    assert sorted(keys) == sorted(m.key for m in read_topic(kafka_broker, names["scores"]))

    second = run_stream(conf)  # the partition is not blocked: nothing is left to redo
    assert "alerts in: 0 " in second.stdout


def test_start_up_creates_the_output_topics_and_a_checkpoint_keeps_to_its_broker(kafka_broker, tmp_path):
    conf, names = write_conf(tmp_path, kafka_broker)
    broker.create_topic(kafka_broker, names["input"], partitions=1)
    run_stream(conf)  # no alert at all
    sizes = topic_sizes(kafka_broker, [names[k] for k in ("enriched", "scores", "dead", "snia", "any")])
    assert set(sizes.values()) == {0}
    metadata = AdminClient({"bootstrap.servers": kafka_broker}).list_topics(timeout=30).topics
    assert all(names[k] in metadata for k in ("enriched", "scores", "dead", "snia", "any"))  # consumers can subscribe

    run_dir = tmp_path / "other-broker"
    other = broker.up(run_dir, port=free_loopback_port(), controller_port=free_loopback_port(), timeout=90)
    try:
        refused = run_stream(conf, expect=2, extra=("--bootstrap", other))
    finally:
        broker.down(run_dir)
    assert "belongs to Kafka cluster" in refused.stderr and "kafka_cluster_id differ" in refused.stderr


def test_kill_9_between_the_enriched_and_the_scores_write_then_restart_completes(kafka_broker, tmp_path):
    conf, names = write_conf(tmp_path, kafka_broker, max_offsets=40)
    broker.create_topic(kafka_broker, names["input"], partitions=2)
    replay([SAMPLE_ALERTS], names["input"], bootstrap=kafka_broker)
    hold = tmp_path / "hold"
    hold.mkdir()
    env = os.environ | {HOLD_ENV: f"after_send:{hold}"}  # workers stop after their enriched alerts are acked
    proc = subprocess.Popen(stream_command(conf), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: any(hold.iterdir()), 240, "a worker holding after its acknowledged send")
        sizes = topic_sizes(kafka_broker, [names["enriched"], names["dead"], names["scores"]])
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    print(f"kill -9 with {sizes} written")
    assert sizes[names["enriched"]] > 0 and sizes[names["scores"]] == 0  # really mid-batch
    run_stream(conf)
    enriched = read_topic(kafka_broker, names["enriched"])
    expected = input_candids(kafka_broker, names["input"])
    assert set(candids_of(enriched)) == set(expected)  # nothing lost
    scores = [json.loads(m.value)["candid"] for m in read_topic(kafka_broker, names["scores"])]
    assert set(scores) == set(expected)  # every enriched alert has its score after the restart
    duplicates = len(enriched) - len(set(candids_of(enriched)))
    print(f"after restart: {duplicates} enriched duplicates")
    assert duplicates <= 40  # at most the interrupted micro-batch (maxOffsetsPerTrigger)


@pytest.mark.parametrize("outage", ["wait", "fail"])
def test_broker_outage_longer_than_the_delivery_timeout(kafka_jars, tmp_path, outage):
    timeout = 5.0
    run_dir = tmp_path / "broker"
    port = free_loopback_port()
    bootstrap = broker.up(run_dir, port=port, controller_port=free_loopback_port(), timeout=90)
    hold = tmp_path / "hold"
    hold.mkdir()
    proc = None
    try:
        conf, names = write_conf(tmp_path, bootstrap, max_offsets=40, outage=outage, delivery_timeout=timeout)
        broker.create_topic(bootstrap, names["input"], partitions=2)
        replay([SAMPLE_ALERTS], names["input"], bootstrap=bootstrap)
        expected = input_candids(bootstrap, names["input"])
        env = os.environ | {HOLD_ENV: f"before_send:{hold}"}  # the outage starts just before a send
        log_file = tmp_path / "stream.log"
        with log_file.open("w") as log:
            proc = subprocess.Popen(stream_command(conf), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        wait_for(lambda: any(hold.iterdir()), 240, "a worker about to send")
        assert broker.down(run_dir)
        (hold / "release").touch()
        if outage == "wait":
            time.sleep(4 * timeout)  # the outage outlasts the delivery timeout several times
            assert proc.poll() is None, log_file.read_text()[-3000:]
            broker.up(run_dir, port=port, timeout=90)
            assert proc.wait(300) == 0, log_file.read_text()[-3000:]
            assert "waiting for the broker" in log_file.read_text()
        else:
            assert proc.wait(240) != 0  # the job gives up while the broker is still down
            assert "unacknowledged after" in log_file.read_text() or "not delivered" in log_file.read_text()
            broker.up(run_dir, port=port, timeout=90)
            run_stream(conf)  # restart from the checkpoint
        assert set(candids_of(read_topic(bootstrap, names["enriched"]))) == set(expected)  # nothing lost
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        broker.down(run_dir)
