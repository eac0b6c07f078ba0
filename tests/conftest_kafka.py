"""Pytest plugin: a real single-node Kafka broker on 127.0.0.1 for the whole test session.

Register from tests/conftest.py with ``pytest_plugins = ["tests.conftest_kafka"]`` (or run
pytest with ``-p tests.conftest_kafka``). Fixtures:

* ``kafka_jars``: repo root with ``jars/`` fetched (runs ``make -f mk/jvm.mk jars`` if needed);
* ``kafka_broker``: bootstrap ``127.0.0.1:PORT`` of a broker on free loopback ports in a temporary
  run folder, stopped by PID at the end of the session;
* ``kafka_topic``: a fresh, uniquely named 2-partition topic on that broker.

Tests are skipped, with the reason, when Java (or, with no jars yet, Maven/make) is missing.
"""
from __future__ import annotations

import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fink_t2.kafka import broker

REPO_ROOT = Path(__file__).resolve().parents[1]
_JAR_STAMPS = (REPO_ROOT / "jars" / "kafka" / ".stamp", REPO_ROOT / "jars" / "spark" / ".stamp")


def free_loopback_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _missing_tools() -> list[str]:
    tools = ["java"]
    if not all(stamp.is_file() for stamp in _JAR_STAMPS):
        tools += ["mvn", "make"]
    return [tool for tool in tools if shutil.which(tool) is None]


@pytest.fixture(scope="session")
def kafka_jars() -> Path:
    """Repo root whose ``jars/kafka`` and ``jars/spark`` are fetched (skip without Java/Maven)."""
    missing = _missing_tools()
    if missing:
        pytest.skip(f"Kafka tests need {', '.join(missing)} on PATH (Java 17 + Maven for `make jars`)")
    if not all(stamp.is_file() for stamp in _JAR_STAMPS):
        broker.fetch_jars(REPO_ROOT)
    return REPO_ROOT


@pytest.fixture(scope="session")
def kafka_broker(kafka_jars: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap ``127.0.0.1:PORT`` of the session's real Kafka broker (stopped by PID at the end)."""
    run_dir = tmp_path_factory.mktemp("kafka-run")
    port, controller_port = free_loopback_port(), free_loopback_port()
    bootstrap = broker.up(run_dir, port=port, controller_port=controller_port, timeout=90,
                          repo_root=kafka_jars)
    try:
        yield bootstrap
    finally:
        broker.down(run_dir)


@pytest.fixture
def kafka_topic(kafka_broker: str) -> Iterator[str]:
    """A fresh 2-partition topic on the session broker, deleted after the test."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    broker.create_topic(kafka_broker, name, partitions=2)
    yield name
    broker.delete_topics(kafka_broker, [name])
