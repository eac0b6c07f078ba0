"""Per-micro-batch metrics of a real `fink-t2 stream` run: the JSON lines and the Prometheus endpoint.

The sample alerts and five poison messages are replayed, the job runs (processing-time trigger,
a small ``max_offsets_per_trigger`` so that there are several micro-batches) with
``[monitoring]`` on, and the lines and the scraped counters must add up to what was sent: every
alert counted once, the statuses those of an offline ``classify`` of the same messages, the
messages per topic those that the topics hold.
"""
from __future__ import annotations

import json
import signal
import subprocess
import tomllib
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from fink_t2.config import CutsConf
from fink_t2.kafka import broker
from fink_t2.kafka.replay import iter_alert_messages, replay
from fink_t2.kafka.topics import topic_sizes
from fink_t2.science.classify import classify
from fink_t2.science.model import load_model
from fink_t2.spark.stream import status_group

from tests.conftest import REPO, SAMPLE_ALERTS
from tests.conftest_kafka import free_loopback_port
from tests.spark.test_stream import SAMPLE_COUNT, poison_messages, produce, stream_command, wait_for, write_conf

pytestmark = pytest.mark.integration

POISON = 5
MAX_OFFSETS = 40  # alerts per micro-batch: 144 messages make at least 4 batches


def offline_statuses(conf: Path) -> Counter:
    """Status groups of the sample alerts by ``classify`` with the job's cuts (no Kafka, no Spark)."""
    cuts = CutsConf(**tomllib.loads(conf.read_text()).get("cuts", {}))
    results = classify([m.value for m in iter_alert_messages([SAMPLE_ALERTS])], load_model(None), cuts)
    return Counter(status_group(s) for s in results["t2_status"])


def progress_lines(path: Path, query: str) -> list[dict]:
    if not path.exists():
        return []
    lines = [json.loads(text) for text in path.read_text().splitlines() if text.strip()]
    return [line for line in lines if line["event"] == "progress" and line["query"] == query]


def scrape(port: int) -> dict[str, float]:
    """``name{labels}`` → value of every sample on the endpoint (Prometheus text format)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_json_lines_and_prometheus_count_every_alert(kafka_broker, tmp_path):
    conf, names = write_conf(tmp_path, kafka_broker, max_offsets=MAX_OFFSETS, trigger=1.0)
    jsonl, port = tmp_path / "progress.jsonl", free_loopback_port()
    conf.write_text(conf.read_text() + f'[monitoring]\nprogress_jsonl = "{jsonl}"\nprometheus = true\n'
                                       f'prometheus_port = {port}\n')
    broker.create_topic(kafka_broker, names["input"], partitions=2)
    assert replay([SAMPLE_ALERTS], names["input"], bootstrap=kafka_broker).delivered == SAMPLE_COUNT
    valid = next(SAMPLE_ALERTS.rglob("*.avro")).read_bytes()
    produce(kafka_broker, names["input"], poison_messages(valid))
    job = subprocess.Popen([*stream_command(conf, once=False), "--timeout", "400"], cwd=REPO,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: sum(l["alerts_in"] for l in progress_lines(jsonl, "classify")) >= SAMPLE_COUNT + POISON,
                 300, "progress lines counting every input message")
        lines = progress_lines(jsonl, "classify")
        wait_for(lambda: scrape(port).get("fink_t2_alerts_total", 0) >= SAMPLE_COUNT + POISON, 10,
                 "the endpoint counting the last progress line")  # it is updated just after the line
        metrics = scrape(port)
    finally:
        job.send_signal(signal.SIGTERM)  # what `docker stop` sends: a graceful stop with the summary
        try:
            stdout, stderr = job.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            job.kill()
            stdout, stderr = job.communicate()
    assert job.returncode == 0, stderr[-3000:]
    assert f"alerts in: {SAMPLE_COUNT + POISON} " in stdout and "SIGTERM: stopping the streaming queries" in stderr

    busy = [l for l in lines if l["alerts_in"]]
    assert len(busy) >= (SAMPLE_COUNT + POISON) // MAX_OFFSETS
    assert all(l["alerts_in"] <= MAX_OFFSETS and sum(l["statuses"].values()) == l["alerts_in"] for l in lines)
    statuses = sum((Counter(l["statuses"]) for l in lines), Counter())
    expected = offline_statuses(conf) + Counter({"error:empty_message": 2, "error:avro_decode": 2,
                                                 "error:missing_field": 1})
    assert statuses == expected
    topics = sum((Counter(l["topics"]) for l in lines), Counter())
    sizes = topic_sizes(kafka_broker, [names["enriched"], names["scores"], names["dead"]])
    assert topics == Counter({names["enriched"]: SAMPLE_COUNT, names["scores"]: SAMPLE_COUNT, names["dead"]: POISON})
    assert sizes == dict(topics)
    last = busy[-1]
    assert sum(last["end_offsets"][names["input"]].values()) == SAMPLE_COUNT + POISON  # read up to the end
    assert all(l["batch_duration_s"] > 0 and l["processed_rows_per_s"] > 0 for l in busy)

    assert metrics["fink_t2_alerts_total"] == SAMPLE_COUNT + POISON
    for status, count in expected.items():
        assert metrics[f'fink_t2_alerts_by_status_total{{status="{status}"}}'] == count
    for topic, count in topics.items():
        assert metrics[f'fink_t2_messages_total{{topic="{topic}"}}'] == count
    assert metrics['fink_t2_batch_id{query="classify"}'] >= last["batch_id"]
