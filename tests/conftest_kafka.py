"""Pytest plugin: a real single-node Kafka broker on 127.0.0.1 for the whole test session.

Register from tests/conftest.py with ``pytest_plugins = ["tests.conftest_kafka"]`` (or run
pytest with ``-p tests.conftest_kafka``). Fixtures:

* ``kafka_jars``: repo root with ``jars/`` fetched (runs ``make -f mk/jvm.mk jars`` if needed);
* ``kafka_broker``: bootstrap ``127.0.0.1:PORT`` of a broker on free loopback ports in a temporary
  run folder, stopped by PID at the end of the session;
* ``kafka_topic``: a fresh, uniquely named 2-partition topic on that broker;
* ``sasl_broker``, ``sasl_ssl_broker``: a :class:`SaslBroker` with a SASL_PLAINTEXT listener (PLAIN,
  then SCRAM-SHA-512), or a SASL_SSL one (SCRAM-SHA-512, certificate of a throw-away CA),
  started by ``fink-t2 kafka up --conf``.

Tests are skipped, with the reason, when Java (or, with no jars yet, Maven/make) is missing.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fink_t2.config import KafkaConf
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


# --------------------------------------------------------------------------- SASL broker
#: The SASL test user's password: quotes, backslash, space and the separators of the JAAS, Java
#: properties and StorageTool syntaxes, so every escaping on the way is exercised.
SASL_PASSWORD = 'pa"ss\\ w0rd,]=;'
SASL_USER = "fink"
SASL_PASSWORD_ENV = "FINK_T2_TEST_KAFKA_PASSWORD"


@dataclass(frozen=True)
class SaslBroker:
    """A broker with one SASL listener, started by ``fink-t2 kafka up --conf``."""

    mechanism: str
    bootstrap: str
    conf: Path  # its [kafka] table: bootstrap, protocol, mechanism, user, password from SASL_PASSWORD_ENV
    run_dir: Path
    protocol: str = "SASL_PLAINTEXT"
    ca: Path | None = None  # PEM of the CA that signed the broker's certificate (SASL_SSL)

    @property
    def kafka(self) -> KafkaConf:
        """The client settings, right password."""
        return self.with_password(SASL_PASSWORD)

    def with_password(self, password: str, ca: Path | None = None) -> KafkaConf:
        """The client settings with ``password`` (and another CA file, if given)."""
        ca = ca or self.ca
        return KafkaConf(bootstrap_servers=self.bootstrap, security_protocol=self.protocol,
                         sasl_mechanism=self.mechanism, sasl_username=SASL_USER, sasl_password=password,
                         ssl_ca_location=str(ca) if ca else "")

    def env(self, password: str = SASL_PASSWORD) -> dict[str, str]:
        """Environment of a ``fink-t2`` subprocess whose password variable holds ``password``."""
        return os.environ | {SASL_PASSWORD_ENV: password}


def sasl_kafka_table(bootstrap: str, mechanism: str, protocol: str = "SASL_PLAINTEXT", ca: Path | None = None) -> str:
    """The ``[kafka]`` TOML table of a SASL client whose password is in SASL_PASSWORD_ENV."""
    table = (f'[kafka]\nbootstrap_servers = "{bootstrap}"\nsecurity_protocol = "{protocol}"\n'
             f'sasl_mechanism = "{mechanism}"\nsasl_username = "{SASL_USER}"\n'
             f'sasl_password_env = "{SASL_PASSWORD_ENV}"\n')
    return table + (f'ssl_ca_location = "{ca}"\n' if ca else "")


def fink_t2(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``fink-t2 ARGS`` (this interpreter, repo as cwd); output captured as text."""
    return subprocess.run([sys.executable, "-m", "fink_t2.cli", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _start_sasl_broker(run_dir: Path, mechanism: str, protocol: str = "SASL_PLAINTEXT",
                       tls: dict[str, Path] | None = None) -> SaslBroker:
    """``fink-t2 kafka up --conf`` a broker on free loopback ports, as an operator would."""
    bootstrap = f"127.0.0.1:{free_loopback_port()}"
    conf = run_dir / "client.toml"
    conf.write_text(sasl_kafka_table(bootstrap, mechanism, protocol, tls["ca"] if tls else None))
    tls_args = ["--tls-cert", str(tls["cert"]), "--tls-key", str(tls["key"])] if tls else []
    started = fink_t2("kafka", "up", "--conf", str(conf), "--run-dir", str(run_dir / "broker"),
                      "--controller-port", str(free_loopback_port()), "--timeout", "90", *tls_args,
                      env=os.environ | {SASL_PASSWORD_ENV: SASL_PASSWORD})
    assert started.returncode == 0, started.stderr[-3000:]
    return SaslBroker(mechanism, bootstrap, conf, run_dir / "broker", protocol, tls["ca"] if tls else None)


@pytest.fixture(scope="session", params=["PLAIN", "SCRAM-SHA-512"])
def sasl_broker(request: pytest.FixtureRequest, kafka_jars: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaslBroker]:
    """A SASL_PLAINTEXT broker (PLAIN, then SCRAM-SHA-512), stopped by PID at the end."""
    started = _start_sasl_broker(tmp_path_factory.mktemp(f"kafka-sasl-{request.param.lower()}"), request.param)
    try:
        yield started
    finally:
        broker.down(started.run_dir)


def make_ca_and_broker_certificate(folder: Path, name: str = "ca") -> dict[str, Path]:
    """A throw-away CA (``name``.pem) and a broker certificate for IP 127.0.0.1 signed by it (openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("TLS tests need the openssl command")
    files = {"ca": folder / f"{name}.pem", "ca_key": folder / f"{name}.key",
             "cert": folder / f"{name}-broker.pem", "key": folder / f"{name}-broker.key"}
    csr, extensions = folder / f"{name}-broker.csr", folder / f"{name}-broker.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1\n")
    for command in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=fink-t2 test {name}",
         "-keyout", files["ca_key"], "-out", files["ca"]],
        ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", files["key"], "-out", csr],
        ["x509", "-req", "-in", csr, "-CA", files["ca"], "-CAkey", files["ca_key"], "-CAcreateserial",
         "-days", "2", "-extfile", extensions, "-out", files["cert"]],
    ):
        subprocess.run(["openssl", *map(str, command)], check=True, capture_output=True)
    return files


@pytest.fixture(scope="session")
def sasl_ssl_broker(kafka_jars: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaslBroker]:
    """A SASL_SSL (SCRAM-SHA-512) broker with a certificate of a throw-away CA."""
    run_dir = tmp_path_factory.mktemp("kafka-sasl-ssl")
    started = _start_sasl_broker(run_dir, "SCRAM-SHA-512", "SASL_SSL", make_ca_and_broker_certificate(run_dir))
    try:
        yield started
    finally:
        broker.down(started.run_dir)
