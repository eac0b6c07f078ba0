"""Lifecycle of the local KRaft broker (real JVM, real sockets on 127.0.0.1) and jar look-ups."""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from fink_t2.kafka import broker
from tests.conftest import REPO
from tests.conftest_kafka import free_loopback_port


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_server_properties_bind_loopback_only_and_allow_large_messages(tmp_path: Path) -> None:
    text = broker.server_properties(tmp_path, port=19092, controller_port=19093)
    settings = dict(line.split("=", 1) for line in text.splitlines() if not line.startswith("#"))
    assert settings["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert settings["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert int(settings["message.max.bytes"]) == int(settings["replica.fetch.max.bytes"]) == 10 * 1024 * 1024
    assert settings["auto.create.topics.enable"] == "true"
    assert settings["num.partitions"] == "2"
    assert settings["group.initial.rebalance.delay.ms"] == "0"


@pytest.mark.integration
def test_spark_kafka_jars_are_the_four_connector_jars(kafka_jars: Path) -> None:
    jars = broker.spark_kafka_jars(kafka_jars)
    names = [Path(jar).name for jar in jars]
    assert [name.split("-")[0] for name in names] == ["spark", "spark", "kafka", "commons"]
    import pyspark  # the connector must match the installed Spark exactly

    assert names[0] == f"spark-sql-kafka-0-10_2.13-{pyspark.__version__}.jar"
    assert names[1] == f"spark-token-provider-kafka-0-10_2.13-{pyspark.__version__}.jar"
    assert all(Path(jar).is_file() and Path(jar).is_absolute() for jar in jars)


def test_spark_kafka_jars_missing_tells_to_run_make_jars(tmp_path: Path) -> None:
    with pytest.raises(broker.MissingJarsError, match="make jars"):
        broker.spark_kafka_jars(tmp_path)


def test_up_without_broker_jars_tells_to_run_make_jars(tmp_path: Path) -> None:
    with pytest.raises(broker.MissingJarsError, match="make jars"):
        broker.up(tmp_path / "run", port=free_loopback_port(), repo_root=tmp_path)


def test_status_false_when_nothing_listens() -> None:
    assert broker.status(f"127.0.0.1:{free_loopback_port()}", timeout=1.0) is False


def test_down_without_broker_is_a_no_op(tmp_path: Path) -> None:
    assert broker.down(tmp_path) is False


def test_stale_pid_file_is_ignored_and_removed(tmp_path: Path) -> None:
    files = broker.BrokerFiles(tmp_path)
    files.pid_file.write_text(f"{os.getpid()}\n")  # alive, but not a broker: must never be signalled
    assert broker.down(tmp_path) is False
    assert not files.pid_file.exists()


@pytest.mark.integration
def test_lifecycle_status_up_twice_down(kafka_jars: Path, tmp_path: Path) -> None:
    port = free_loopback_port()
    bootstrap = f"127.0.0.1:{port}"
    files = broker.BrokerFiles(tmp_path.resolve())
    assert broker.status(bootstrap) is False
    try:
        assert broker.up(tmp_path, port=port, controller_port=free_loopback_port(), timeout=90) == bootstrap
        pid = int(files.pid_file.read_text())
        assert broker.status(bootstrap) is True
        assert files.formatted_marker.is_file()

        assert broker.up(tmp_path, port=port, timeout=5) == bootstrap  # no-op: same process
        assert int(files.pid_file.read_text()) == pid
        with pytest.raises(broker.BrokerError, match="already runs"):
            broker.up(tmp_path, port=free_loopback_port(), timeout=5)
    finally:
        stopped = broker.down(tmp_path)
    assert stopped is True
    assert not _pid_alive(pid)
    assert not files.pid_file.exists()
    assert broker.status(bootstrap) is False
    assert "Kafka Server started" in files.log_file.read_text()


@pytest.mark.integration
def test_create_and_delete_topic(kafka_broker: str) -> None:
    broker.create_topic(kafka_broker, "lifecycle-topic", partitions=3)
    broker.create_topic(kafka_broker, "lifecycle-topic", partitions=3, exist_ok=True)
    topics = AdminClient({"bootstrap.servers": kafka_broker}).list_topics(timeout=10).topics
    assert len(topics["lifecycle-topic"].partitions) == 3
    broker.delete_topics(kafka_broker, ["lifecycle-topic", "never-created"])


def _kafka_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    broker.add_kafka_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["kafka", *argv])


@pytest.mark.integration
def test_cli_status_exit_codes(kafka_broker: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert broker.run_kafka(_kafka_args("status", "--bootstrap", kafka_broker)) == 0
    assert broker.run_kafka(_kafka_args("status", "--bootstrap", f"127.0.0.1:{free_loopback_port()}")) == 1
    assert "up" in capsys.readouterr().out


def test_cli_up_refuses_non_loopback_host(tmp_path: Path) -> None:
    args = _kafka_args("up", "--bootstrap", "10.0.0.1:9092", "--run-dir", str(tmp_path))
    assert broker.run_kafka(args) == 2


@pytest.mark.parametrize(("bootstrap", "loopback"), [
    ("127.0.0.1:9092", True), ("localhost:9092", True), ("127.0.0.2:1", True), ("[::1]:9092", True),
    ("PLAINTEXT://127.0.0.1:9092", True), ("127.0.0.1:9092, localhost:9093", True),
    ("10.0.0.1:9092", False), ("kafka:9092", False), ("127.0.0.1:9092,192.168.1.2:9092", False),
    ("[2001:db8::1]:9092", False),
])
def test_is_loopback_bootstrap(bootstrap: str, loopback: bool) -> None:
    assert broker.is_loopback_bootstrap(bootstrap) is loopback


def _start_foreground(run_dir: Path, port: int, controller_port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fink_t2.kafka.broker", "run", "--bootstrap", f"127.0.0.1:{port}",
                             "--controller-port", str(controller_port), "--run-dir", str(run_dir)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _wait_answering(bootstrap: str, process: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not broker.status(bootstrap, timeout=1.0):
        assert process.poll() is None, f"broker exited with {process.returncode}"
        assert time.monotonic() < deadline, f"no broker at {bootstrap} after {timeout} s"
        time.sleep(0.5)


@pytest.mark.integration
def test_run_makes_the_broker_the_main_process_and_keeps_its_data(kafka_jars: Path, tmp_path: Path) -> None:
    """The container entry point: same PID is the JVM (it gets SIGTERM), data survives a restart."""
    port, controller_port = free_loopback_port(), free_loopback_port()
    bootstrap = f"127.0.0.1:{port}"
    first = _start_foreground(tmp_path, port, controller_port)
    try:
        _wait_answering(bootstrap, first)
        cmdline = Path(f"/proc/{first.pid}/cmdline").read_bytes().split(b"\0")
        assert b"kafka.Kafka" in cmdline and cmdline[0].endswith(b"java")  # exec'd, not a child
        assert not (tmp_path / "broker.pid").exists()
        broker.create_topic(bootstrap, "kept", partitions=1)
        first.send_signal(signal.SIGTERM)
        assert first.wait(60) in (0, 143)  # clean shutdown (143 = 128 + SIGTERM)
    finally:
        if first.poll() is None:
            first.kill()
    second = _start_foreground(tmp_path, port, controller_port)  # the restarted container, same volume
    try:
        _wait_answering(bootstrap, second)
        assert "kept" in AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(60)
