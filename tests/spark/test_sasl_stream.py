"""Integration: the streaming job on a SASL_PLAINTEXT (SCRAM-SHA-512, Fink's mechanism) broker,
and on a SASL_SSL one (the CA given by ``ssl_ca_location``).

Right credentials: replay + ``stream --once`` enrich and score every alert through Spark's
Kafka source and sink and the workers' own producer, and the password is printed nowhere.
A wrong password: one clear error, before Spark starts; and if Spark's own clients are the
first to be refused, the same one-line error instead of a stack of Java traces.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path

import pytest

from fink_t2.alerts.sources import iter_alert_messages
from fink_t2.config import CutsConf
from fink_t2.contract import CLASS_NAMES
from fink_t2.science.classify import classify
from fink_t2.science.model import load_model
from fink_t2.kafka.topics import read_topic

from tests.conftest import REPO, SAMPLE_ALERTS
from tests.conftest_kafka import SASL_PASSWORD, SaslBroker, fink_t2, sasl_kafka_table
from tests.kafka.test_sasl import SAMPLE_COUNT, WRONG_PASSWORD, sample_candids
from tests.spark.test_stream import candids_of

pytestmark = pytest.mark.integration
#: The SASL_PLAINTEXT broker of these tests: SCRAM-SHA-512 only (PLAIN is covered by tests/kafka).
SCRAM = pytest.mark.parametrize("sasl_broker", ["SCRAM-SHA-512"], indirect=True)

#: The pre-check's refusal arrives in about a second (tests/kafka/test_sasl.py); the rest is
#: interpreter start-up and imports. A run that reached Spark would take longer than this.
PRECHECK_BOUND_S = 30.0
#: Spark start-up (~10 s) plus its source's three offset-fetch attempts, with room for a loaded machine.
SPARK_REFUSAL_BOUND_S = 180.0


def write_job(tmp_path: Path, sasl_broker: SaslBroker, outage: str = "wait") -> tuple[Path, dict[str, str]]:
    """A job config on the SASL broker with unique topic names; returns (path, names)."""
    tag = uuid.uuid4().hex[:8]
    names = {"input": f"ztf_{tag}_programid1", "enriched": f"enriched_{tag}", "scores": f"scores_{tag}",
             "dead": f"dead_{tag}", "any": f"any_{tag}"}
    conf = tmp_path / "sasl_job.toml"
    conf.write_text(sasl_kafka_table(sasl_broker.bootstrap, sasl_broker.mechanism, sasl_broker.protocol,
                                     sasl_broker.ca) + f"""
[input]
subscribe_pattern = "ztf_{tag}_.*"
[output]
enriched_topic = "{names['enriched']}"
scores_topic = "{names['scores']}"
deadletter_topic = "{names['dead']}"
large_messages = "python"
on_broker_outage = "{outage}"
[[output.filters]]
name = "any_class"
topic = "{names['any']}"
classes = {json.dumps(list(CLASS_NAMES))}
[checkpoint]
dir = "{tmp_path / 'checkpoints'}"
[spark]
master = "local[2]"
trigger_seconds = 1.0
[cuts]
# most datasim sample alerts sit on PS1 point sources: keep them classified, the stream is under test
stellar_counterpart = false
""")
    return conf, names


def offline_ok_candids(conf: Path) -> set[int]:
    """Candids that ``classify`` scores ok, with the cuts of job config ``conf``, on the very messages
    replay sends (no Kafka, no Spark)."""
    cuts = CutsConf(**tomllib.loads(conf.read_text()).get("cuts", {}))
    results = classify([m.value for m in iter_alert_messages([SAMPLE_ALERTS])], load_model(None), cuts)
    return set(results.loc[results["t2_status"] == "ok", "candid"])


def replay_and_stream_every_alert(sasl_broker: SaslBroker, tmp_path: Path) -> None:
    """``fink-t2 replay`` + ``stream --once`` on ``sasl_broker``: every alert enriched and scored,
    the password printed nowhere and absent from the checkpoints."""
    conf, names = write_job(tmp_path, sasl_broker)
    replayed = fink_t2("replay", str(SAMPLE_ALERTS), "--topic", names["input"], "--conf", str(conf),
                       env=sasl_broker.env())
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    streamed = fink_t2("stream", "--conf", str(conf), "--once", env=sasl_broker.env())
    assert streamed.returncode == 0, streamed.stderr[-3000:]

    kafka = sasl_broker.kafka
    enriched = read_topic(kafka, names["enriched"])
    scores = [json.loads(m.value) for m in read_topic(kafka, names["scores"])]
    assert sorted(candids_of(enriched)) == sorted(sample_candids()) and len(enriched) == SAMPLE_COUNT
    assert sorted(s["candid"] for s in scores) == sorted(sample_candids())
    assert read_topic(kafka, names["dead"]) == []
    ok = {s["candid"] for s in scores if s["t2_status"] == "ok"}
    assert ok == offline_ok_candids(conf) and ok  # the same alerts classified as without Kafka and Spark
    assert len(read_topic(kafka, names["any"])) == len(ok)  # the filter query too
    printed = replayed.stdout + replayed.stderr + streamed.stdout + streamed.stderr
    assert "w0rd" not in printed
    checkpoint_bytes = b"".join(p.read_bytes() for p in (tmp_path / "checkpoints").rglob("*") if p.is_file())
    assert b"w0rd" not in checkpoint_bytes


@SCRAM
def test_stream_with_the_right_credentials_enriches_and_scores_every_alert(sasl_broker, tmp_path) -> None:
    replay_and_stream_every_alert(sasl_broker, tmp_path)


def test_stream_over_sasl_ssl_enriches_and_scores_every_alert(sasl_ssl_broker, tmp_path) -> None:
    replay_and_stream_every_alert(sasl_ssl_broker, tmp_path)  # Spark trusts the CA as a PEM truststore


@SCRAM
def test_stream_with_a_wrong_password_stops_before_spark_with_one_line(sasl_broker, tmp_path) -> None:
    conf, _ = write_job(tmp_path, sasl_broker)
    started = time.monotonic()
    done = fink_t2("stream", "--conf", str(conf), "--once", env=sasl_broker.env(WRONG_PASSWORD))
    seconds = time.monotonic() - started
    print(f"fink-t2 stream, wrong password: exit {done.returncode} after {seconds:.1f} s; stderr:\n{done.stderr}")
    assert done.returncode == 2 and seconds < PRECHECK_BOUND_S
    assert done.stderr.splitlines()[-1].startswith(
        f"fink-t2: error: Kafka authentication failed at {sasl_broker.bootstrap} "
        f"(SASL_PLAINTEXT SCRAM-SHA-512 as user 'fink'): ")
    assert "invalid credentials" in done.stderr
    assert "Traceback" not in done.stderr and "Spark" not in done.stderr  # Spark never started
    assert WRONG_PASSWORD not in done.stdout + done.stderr


#: ``fink_t2.spark.stream.run`` with its start-up broker check (our own client) switched off: Spark's
#: Kafka source is the first client to be refused. Prints the type and message of what ``run`` raised.
SPARK_FIRST = """
import sys
from fink_t2.config import load_config
from fink_t2.spark import stream
stream.prepare_broker = lambda config: "cluster-not-checked"
try:
    stream.run(load_config(sys.argv[1]), once=True)
except Exception as error:
    print(f"RAISED {type(error).__name__}: {error}")
"""


@SCRAM
def test_a_refusal_inside_spark_is_the_same_clear_error(sasl_broker, tmp_path) -> None:
    conf, _ = write_job(tmp_path, sasl_broker, outage="fail")  # "wait" retries Spark's offset look-ups forever
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", SPARK_FIRST, str(conf)], cwd=REPO,
                          env=sasl_broker.env(WRONG_PASSWORD), capture_output=True, text=True,
                          timeout=SPARK_REFUSAL_BOUND_S + 60)
    seconds = time.monotonic() - started
    raised = [line for line in done.stdout.splitlines() if line.startswith("RAISED ")]
    print(f"Spark refused after {seconds:.1f} s: {raised}")
    assert raised == [f"RAISED KafkaAuthenticationError: Kafka authentication failed at {sasl_broker.bootstrap} "
                      "(SASL_PLAINTEXT SCRAM-SHA-512 as user 'fink'): Authentication failed during authentication "
                      "due to invalid credentials with SASL mechanism SCRAM-SHA-512"]
    assert seconds < SPARK_REFUSAL_BOUND_S
    assert WRONG_PASSWORD not in done.stdout + done.stderr and SASL_PASSWORD not in done.stdout + done.stderr
