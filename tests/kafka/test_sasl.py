"""Integration: every confluent-kafka client of the package on a real SASL_PLAINTEXT broker
(PLAIN and SCRAM-SHA-512) and a SASL_SSL one: right credentials work, a wrong password (or an
untrusted broker certificate) is one clear error at once.

Time bound of a refusal: the broker answers a failed login after its 100 ms
``connection.failed.authentication.delay.ms`` and the clients look every 0.5 s, so a refusal
surfaces in about a second; each call below is given a 60 s timeout, and passing under
:data:`REFUSAL_BOUND_S` shows the error came from the refusal, not from a timeout running out.
"""
from __future__ import annotations

import dataclasses
import stat
import time
import uuid
from pathlib import Path

import fastavro
import pytest

from fink_t2.kafka import broker
from fink_t2.kafka.producer import DirectProducer
from fink_t2.kafka.replay import replay
from fink_t2.kafka.security import KafkaAuthenticationError
from fink_t2.kafka.topics import read_topic, topic_sizes

from tests.conftest import SAMPLE_ALERTS
from tests.conftest_kafka import SASL_PASSWORD, SaslBroker, fink_t2, make_ca_and_broker_certificate

pytestmark = pytest.mark.integration

SAMPLE_COUNT = 139  # alerts in data/alerts (see data/alerts/README.md)
REFUSAL_BOUND_S = 20.0
CALL_TIMEOUT_S = 60.0
WRONG_PASSWORD = "not-the-password"


def sample_candids() -> set[int]:
    candids = set()
    for path in SAMPLE_ALERTS.rglob("*.avro"):
        with path.open("rb") as stream:
            candids.update(record["candid"] for record in fastavro.reader(stream))
    return candids


def test_every_client_works_with_the_right_credentials(sasl_broker: SaslBroker) -> None:
    kafka, topic = sasl_broker.kafka, f"sasl-{uuid.uuid4().hex[:8]}"
    assert broker.status(kafka)
    broker.create_topic(kafka, topic, partitions=2)
    stats = replay([SAMPLE_ALERTS], topic, bootstrap=kafka)
    assert (stats.delivered, stats.failed) == (SAMPLE_COUNT, 0)
    messages = read_topic(kafka, topic)
    assert {int(m.key) for m in messages} == sample_candids() and len(messages) == SAMPLE_COUNT
    DirectProducer.for_endpoint(kafka).send_all([(topic, b"k", b"worker message")])
    assert topic_sizes(kafka, [topic]) == {topic: SAMPLE_COUNT + 1}
    broker.delete_topics(kafka, [topic])
    assert topic_sizes(kafka, [topic]) == {topic: 0}


def refusal_seconds(call) -> tuple[float, str]:
    """Seconds until ``call()`` raised KafkaAuthenticationError, and its message."""
    started = time.monotonic()
    with pytest.raises(KafkaAuthenticationError) as raised:
        call()
    return time.monotonic() - started, str(raised.value)


def test_wrong_password_is_one_clear_error_at_once_in_every_client(sasl_broker: SaslBroker) -> None:
    bad = sasl_broker.with_password(WRONG_PASSWORD)
    worker = DirectProducer(bad, delivery_timeout_s=CALL_TIMEOUT_S)
    calls = {
        "status": lambda: broker.status(bad, timeout=CALL_TIMEOUT_S),
        "create_topic": lambda: broker.create_topic(bad, "never-created", timeout=CALL_TIMEOUT_S),
        "delete_topics": lambda: broker.delete_topics(bad, ["never-created"], timeout=CALL_TIMEOUT_S),
        "replay": lambda: replay([SAMPLE_ALERTS], "never-created", bootstrap=bad, flush_timeout=CALL_TIMEOUT_S),
        "read_topic": lambda: read_topic(bad, "never-created", timeout=CALL_TIMEOUT_S),
        "topic_sizes": lambda: topic_sizes(bad, ["never-created"], timeout=CALL_TIMEOUT_S),
        "worker producer": lambda: worker.send_all([("never-created", b"k", b"v")] * 3),
    }
    expected = f"Kafka authentication failed at {sasl_broker.bootstrap} (SASL_PLAINTEXT {sasl_broker.mechanism} " \
               f"as user 'fink'): "
    for name, call in calls.items():
        seconds, message = refusal_seconds(call)
        print(f"{sasl_broker.mechanism} {name}: refused after {seconds:.2f} s")
        assert seconds < REFUSAL_BOUND_S, name
        assert message.startswith(expected), message
        assert "credentials" in message or "Invalid username or password" in message
        assert WRONG_PASSWORD not in message
    assert len(worker.producer) == 0  # purged: nothing left queued for the worker's next batch
    assert topic_sizes(sasl_broker.kafka, ["never-created"]) == {"never-created": 0}  # nothing got through


def test_cli_replay_with_a_wrong_password_exits_with_one_line(sasl_broker: SaslBroker) -> None:
    started = time.monotonic()
    done = fink_t2("replay", str(SAMPLE_ALERTS), "--topic", "never-created", "--conf", str(sasl_broker.conf),
                   env=sasl_broker.env(WRONG_PASSWORD))
    seconds = time.monotonic() - started
    print(f"fink-t2 replay, wrong password: exit {done.returncode} after {seconds:.1f} s; stderr:\n{done.stderr}")
    assert done.returncode == 2 and seconds < REFUSAL_BOUND_S + 10  # + interpreter and import start-up
    ours = [line for line in done.stderr.splitlines() if line.startswith("fink-t2: error: ")]
    assert len(ours) == 1 and "Kafka authentication failed" in ours[0]
    assert "Traceback" not in done.stderr
    assert "SASL authentication error" not in done.stderr.replace(ours[0], "")  # said once, by us
    assert WRONG_PASSWORD not in done.stdout + done.stderr


def test_cli_replay_and_status_with_the_right_password(sasl_broker: SaslBroker) -> None:
    topic = f"sasl-cli-{uuid.uuid4().hex[:8]}"
    done = fink_t2("replay", str(SAMPLE_ALERTS), "--topic", topic, "--conf", str(sasl_broker.conf),
                   env=sasl_broker.env())
    assert done.returncode == 0, done.stderr
    assert f"replayed {SAMPLE_COUNT}/{SAMPLE_COUNT} messages" in done.stdout
    assert topic_sizes(sasl_broker.kafka, [topic]) == {topic: SAMPLE_COUNT}
    status = fink_t2("kafka", "status", "--conf", str(sasl_broker.conf), env=sasl_broker.env())
    assert status.returncode == 0 and ": up" in status.stdout
    assert SASL_PASSWORD not in done.stdout + done.stderr + status.stdout + status.stderr


def test_the_password_stays_out_of_the_broker_log_and_its_properties_are_private(sasl_broker: SaslBroker) -> None:
    files = broker.BrokerFiles(sasl_broker.run_dir.resolve())
    assert "w0rd" not in files.log_file.read_text()
    assert stat.S_IMODE(files.properties.stat().st_mode) == 0o600


def test_up_again_as_plaintext_is_refused_while_it_runs(sasl_broker: SaslBroker) -> None:
    port = int(sasl_broker.bootstrap.rsplit(":", 1)[1])
    with pytest.raises(broker.BrokerError, match="already runs at SASL_PLAINTEXT://"):
        broker.up(sasl_broker.run_dir, port=port, timeout=5)
    plaintext = dataclasses.replace(sasl_broker.kafka, security_protocol="PLAINTEXT", sasl_mechanism="",
                                    sasl_username="", sasl_password="")
    assert broker.status(plaintext, timeout=2.0) is False  # a PLAINTEXT client is not answered


# ------------------------------------------------------------------------------------ SASL_SSL
def test_sasl_ssl_clients_trust_the_configured_ca(sasl_ssl_broker: SaslBroker) -> None:
    kafka, topic = sasl_ssl_broker.kafka, f"sasl-ssl-{uuid.uuid4().hex[:8]}"
    broker.create_topic(kafka, topic, partitions=2)
    stats = replay([SAMPLE_ALERTS], topic, bootstrap=kafka)
    assert (stats.delivered, stats.failed) == (SAMPLE_COUNT, 0)
    assert {int(m.key) for m in read_topic(kafka, topic)} == sample_candids()


def test_sasl_ssl_with_another_ca_is_one_clear_error_at_once(sasl_ssl_broker: SaslBroker, tmp_path: Path) -> None:
    other_ca = make_ca_and_broker_certificate(tmp_path, "other-ca")["ca"]
    untrusting = sasl_ssl_broker.with_password(SASL_PASSWORD, ca=other_ca)
    seconds, message = refusal_seconds(lambda: replay([SAMPLE_ALERTS], "never-created", bootstrap=untrusting,
                                                      flush_timeout=CALL_TIMEOUT_S))
    print(f"SASL_SSL, broker certificate from another CA: refused after {seconds:.2f} s: {message}")
    assert seconds < REFUSAL_BOUND_S
    assert message.startswith(f"Kafka authentication failed at {sasl_ssl_broker.bootstrap} (SASL_SSL ")
    assert "certificate verify failed" in message
