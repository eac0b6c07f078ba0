"""A single-node KRaft Kafka broker on 127.0.0.1 for development and tests, plus jar look-ups.

The broker runs from the jars that ``make jars`` copies to ``<repo>/jars/kafka`` (see
``jvm/kafka/pom.xml``); its data, log, properties and PID file live in a git-ignored run folder
(default ``<repo>/run/kafka``). Only loopback addresses are ever used.

Plain functions: :func:`up`, :func:`down`, :func:`status`, :func:`create_topic`,
:func:`delete_topics`, :func:`cluster_id`, :func:`spark_kafka_jars`, :func:`run_foreground`. CLI pieces:
:func:`add_kafka_parser` and :func:`run_kafka` (``fink-t2 kafka up|run|down|status``), or :func:`main_kafka`
standalone.
"""
from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import ipaddress
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from fink_t2.config import CONF_DIR, REPO_ROOT, KafkaConf
from fink_t2.kafka.security import (KafkaAuthenticationError, KafkaEndpoint, add_endpoint_arguments,
                                    as_kafka_conf, client_config, describe, endpoint_from_args, jaas_config,
                                    list_topics, raise_if_refused)

log = logging.getLogger(__name__)

DEFAULT_RUN_DIR = REPO_ROOT / "run" / "kafka"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9092
DEFAULT_BOOTSTRAP = f"{DEFAULT_HOST}:{DEFAULT_PORT}"
LOG4J_CONFIG = CONF_DIR / "log4j-kafka.properties"

#: Largest message the broker, its topics and our producers accept, bytes (ZTF alerts are ~70 KB,
#: Fink-enriched ones a few hundred KB; 10 MB leaves room for long histories).
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
#: Bytes a message needs besides its key and value when it is alone in a record batch: Kafka's
#: record format v2 adds a 61 B batch header and at most 37 B of record framing (varints,
#: attributes, no headers); 1 KiB leaves room for both producers' own accounting.
RECORD_OVERHEAD_BYTES = 1024
#: Largest key + value of a message the job writes: it fits in :data:`MAX_MESSAGE_BYTES`. An input
#: message can be as large as the broker accepts, so its outputs are checked against this.
MAX_OUTPUT_BYTES = MAX_MESSAGE_BYTES - RECORD_OVERHEAD_BYTES

#: Jars the Spark Kafka source/sink needs on ``spark.jars``, by file-name prefix. Everything else
#: of the connector's runtime closure already ships with pyspark and must not be added twice.
SPARK_KAFKA_JAR_PREFIXES: tuple[str, ...] = (
    "spark-sql-kafka-0-10_",
    "spark-token-provider-kafka-0-10_",
    "kafka-clients-",
    "commons-pool2-",
)

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
#: SCRAM iterations of the local broker's user (Kafka's minimum is 4096).
SCRAM_ITERATIONS = 8192
_SCRAM_SALT_BYTES = 16
_BROKER_MAIN_CLASS = "kafka.Kafka"
_JVM_HEAP = "-Xmx1g"
#: Popen handles of brokers started by this process, by PID, so they are reaped (no zombies and
#: no "subprocess still running" ResourceWarning).
_STARTED: dict[int, subprocess.Popen[bytes]] = {}


class BrokerError(RuntimeError):
    """The broker could not be started, stopped or reached."""


class MissingJarsError(FileNotFoundError):
    """Jars expected under ``<repo>/jars`` are missing: run ``make jars``."""


@dataclass(frozen=True)
class TlsIdentity:
    """The local broker's TLS certificate chain and unencrypted PKCS#8 private key, as PEM files."""

    certificate_chain: Path
    private_key: Path


@dataclass(frozen=True)
class BrokerFiles:
    """Where one broker keeps its state, all under ``run_dir``."""

    run_dir: Path

    @property
    def properties(self) -> Path:
        return self.run_dir / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "broker.log"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "broker.pid"

    @property
    def formatted_marker(self) -> Path:
        """Written by the StorageTool when the log directory is formatted."""
        return self.data_dir / "meta.properties"


# --------------------------------------------------------------------------------------- jars
def _missing_jars_message(what: str, repo_root: Path) -> str:
    return f"{what} not found; run `make jars` in {repo_root} (needs Java 17 and Maven)"


def kafka_broker_jars_dir(repo_root: Path = REPO_ROOT) -> Path:
    """Folder of the broker's runtime classpath; raises :class:`MissingJarsError` if not fetched."""
    jars_dir = Path(repo_root) / "jars" / "kafka"
    if not (jars_dir / ".stamp").is_file():
        raise MissingJarsError(_missing_jars_message(f"Kafka broker jars in {jars_dir}", repo_root))
    return jars_dir


def spark_kafka_jars(repo_root: Path | str = REPO_ROOT) -> list[str]:
    """Absolute paths of the four jars the Spark Kafka connector needs on ``spark.jars``.

    Raises :class:`MissingJarsError` (telling to run ``make jars``) if any is missing.
    """
    root = Path(repo_root)
    jars_dir = root / "jars" / "spark"
    available = sorted(jars_dir.glob("*.jar")) if jars_dir.is_dir() else []
    paths: list[str] = []
    for prefix in SPARK_KAFKA_JAR_PREFIXES:
        matches = [jar for jar in available if jar.name.startswith(prefix)]
        if len(matches) != 1:
            found = ", ".join(jar.name for jar in matches) or "none"
            raise MissingJarsError(
                _missing_jars_message(f"exactly one {prefix}*.jar in {jars_dir} (found {found})", root)
            )
        paths.append(str(matches[0].resolve()))
    return paths


def fetch_jars(repo_root: Path = REPO_ROOT) -> None:
    """Run ``make -f mk/jvm.mk jars`` (a no-op when the jars are up to date)."""
    subprocess.run(["make", "--no-print-directory", "-f", "mk/jvm.mk", "jars"], cwd=repo_root, check=True)


# ----------------------------------------------------------------------------- configuration
def check_local_security(security: KafkaConf, tls: TlsIdentity | None = None) -> None:
    """Raise :class:`BrokerError` unless the local broker can serve ``security`` (with ``tls`` for SSL)."""
    if security.uses_ssl and (tls is None or not security.ssl_ca_location):
        raise BrokerError(f"a local {security.security_protocol} listener needs the broker's certificate and key "
                          f"(--tls-cert, --tls-key) and [kafka] ssl_ca_location (the CA that signed it, which "
                          f"the broker trusts for its own connections)")
    if security.uses_sasl and not security.sasl_username.replace("_", "").replace("-", "").isalnum():
        raise BrokerError("the local broker's SASL user name must be letters, digits, '_' or '-'")


def listener_properties(port: int, controller_port: int, security: KafkaConf,
                        tls: TlsIdentity | None = None) -> dict[str, str]:
    """Listener settings: one client listener with ``security``'s protocol, a PLAINTEXT controller.

    With SASL the listener offers ``security``'s mechanism and accepts one user, ``security``'s,
    who is also the broker's own (inter-broker) identity. A PLAIN user is listed here; a SCRAM
    user is stored in the metadata log when it is formatted (:func:`scram_credential`). With SSL
    the listener presents ``tls`` and trusts ``security.ssl_ca_location``.
    """
    check_local_security(security, tls)
    protocol = security.security_protocol
    settings = {
        "listeners": f"{protocol}://{DEFAULT_HOST}:{port},CONTROLLER://{DEFAULT_HOST}:{controller_port}",
        "advertised.listeners": f"{protocol}://{DEFAULT_HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": protocol,
        "listener.security.protocol.map": f"{protocol}:{protocol},CONTROLLER:PLAINTEXT",
    }
    if security.uses_sasl:
        mechanism, user, password = security.sasl_mechanism, security.sasl_username, security.resolved_password
        settings |= {
            "sasl.enabled.mechanisms": mechanism,
            "sasl.mechanism.inter.broker.protocol": mechanism,
            f"listener.name.{protocol.lower()}.{mechanism.lower()}.sasl.jaas.config":
                jaas_config(mechanism, user, password, **({f"user_{user}": password} if mechanism == "PLAIN" else {})),
        }
    if security.uses_ssl and tls is not None:
        settings |= {
            "ssl.keystore.type": "PEM",
            "ssl.keystore.certificate.chain": tls.certificate_chain.read_text(),
            "ssl.keystore.key": tls.private_key.read_text(),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": security.ssl_ca_location,
        }
    return settings


def server_properties(data_dir: Path, port: int, controller_port: int,
                      security: KafkaConf | None = None, tls: TlsIdentity | None = None) -> str:
    """Text of a single-node broker+controller ``server.properties`` bound to 127.0.0.1.

    ``security`` (default PLAINTEXT) is the client listener's protocol and, for SASL, its user;
    ``tls`` the certificate of an SSL listener.
    """
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{DEFAULT_HOST}:{controller_port}",
        **listener_properties(port, controller_port, security or KafkaConf(), tls),
        "log.dirs": str(data_dir),
        "num.partitions": "2",
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        # 50 by default: creating them slows the first consumer-group join on 2 cores.
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        # 50 by default: the idempotent producer's first PID request waits for them all.
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "message.max.bytes": str(MAX_MESSAGE_BYTES),
        "replica.fetch.max.bytes": str(MAX_MESSAGE_BYTES),
        "log.retention.hours": str(30 * 24),
        "log.retention.bytes": "-1",
        # 5 min by default: topics with a size retention (the LSST-night run) would outgrow it by GBs
        "log.retention.check.interval.ms": "30000",
    }
    lines = ["# Written by fink_t2.kafka.broker; rewritten at every start."]
    lines += [f"{key}={_escape_property(value)}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def _escape_property(value: str) -> str:
    r"""``value`` as written in a Java ``.properties`` file (which reads ``\\`` as ``\``)."""
    escaped = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return "\\" + escaped if escaped.startswith(" ") else escaped


def _read_properties(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs if not key.lstrip().startswith("#")}


def _configured_listener(files: BrokerFiles) -> tuple[str, str]:
    """``(protocol, HOST:PORT)`` of the client listener the broker of ``files`` advertises."""
    protocol, _, bootstrap = _read_properties(files.properties)["advertised.listeners"].partition("://")
    return protocol, bootstrap


def _parse_bootstrap(bootstrap: str) -> tuple[str, int]:
    host, sep, port = bootstrap.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"bootstrap must be HOST:PORT, got {bootstrap!r}")
    return host, int(port)


def is_loopback_bootstrap(bootstrap: str) -> bool:
    """True if every ``[PROTO://]HOST:PORT`` of a bootstrap list is on this machine's loopback
    (``localhost``, 127.0.0.0/8, ``[::1]``). Host names other than localhost count as remote."""
    for entry in bootstrap.split(","):
        host = entry.strip().split("://", 1)[-1].rpartition(":")[0].strip("[]")
        if host == "localhost":
            continue
        try:
            if not ipaddress.ip_address(host).is_loopback:
                return False
        except ValueError:  # a host name: it may resolve anywhere
            return False
    return True


def _new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (as StorageTool random-uuid)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):  # Kafka avoids ids that look like a CLI option
            return cluster_id


# --------------------------------------------------------------------------------- processes
def _java_command(jars_dir: Path, main_class: str, *args: str) -> list[str]:
    return [
        "java", _JVM_HEAP, "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        "-cp", f"{jars_dir}/*", main_class, *args,
    ]


def scram_credential(security: KafkaConf, salt: bytes | None = None) -> str:
    """StorageTool ``--add-scram`` value of ``security``'s SCRAM user: salted, so the password
    itself is neither on a command line nor in the metadata log (RFC 5802 SaltedPassword)."""
    salt = salt if salt is not None else os.urandom(_SCRAM_SALT_BYTES)
    digest = security.sasl_mechanism.removeprefix("SCRAM-SHA-")
    salted = hashlib.pbkdf2_hmac(f"sha{digest}", security.resolved_password.encode(), salt, SCRAM_ITERATIONS)
    return (f"{security.sasl_mechanism}=[name={security.sasl_username},iterations={SCRAM_ITERATIONS},"
            f'salt="{base64.b64encode(salt).decode()}",saltedpassword="{base64.b64encode(salted).decode()}"]')


def _format_storage(files: BrokerFiles, jars_dir: Path, security: KafkaConf) -> None:
    """Format the KRaft log directory once (about 1.5 s of JVM start), with the SCRAM user if any."""
    scram = ["--add-scram", scram_credential(security)] if security.sasl_mechanism.startswith("SCRAM-") else []
    command = _java_command(jars_dir, "kafka.tools.StorageTool", "format",
                            "-t", _new_cluster_id(), "-c", str(files.properties), *scram)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BrokerError(f"kafka StorageTool format failed ({result.returncode}):\n"
                          f"{result.stdout}{result.stderr}")


def _read_pid(files: BrokerFiles) -> int | None:
    try:
        return int(files.pid_file.read_text().strip())
    except FileNotFoundError:
        return None


def _is_running(pid: int) -> bool:
    """True if ``pid`` is alive (a child of ours that exited is reaped, not counted)."""
    process = _STARTED.get(pid)
    if process is not None:
        return process.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_our_broker(pid: int, files: BrokerFiles) -> bool:
    """True if ``pid`` is alive and is the broker of ``files`` (guards against PID reuse)."""
    if not _is_running(pid):
        return False
    cmdline_file = Path(f"/proc/{pid}/cmdline")
    if not cmdline_file.exists():  # no procfs (macOS): trust the PID file
        return True
    arguments = cmdline_file.read_bytes().split(b"\0")
    return _BROKER_MAIN_CLASS.encode() in arguments and str(files.properties).encode() in arguments


def _running_pid(files: BrokerFiles) -> int | None:
    """PID of the broker of ``files`` if it runs; removes a stale PID file."""
    pid = _read_pid(files)
    if pid is None:
        return None
    if _is_our_broker(pid, files):
        return pid
    log.info("removing stale PID file %s (pid %d is not running this broker)", files.pid_file, pid)
    files.pid_file.unlink(missing_ok=True)
    return None


def _log_tail(files: BrokerFiles, lines: int = 30) -> str:
    if not files.log_file.exists():
        return "(no broker log)"
    return "\n".join(files.log_file.read_text(errors="replace").splitlines()[-lines:])


def _start_broker(files: BrokerFiles, jars_dir: Path) -> int:
    """Start the broker JVM in the background, in its own session; returns its PID."""
    command = _java_command(jars_dir, _BROKER_MAIN_CLASS, str(files.properties))
    with files.log_file.open("ab") as log_stream:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_stream,
                                   stderr=subprocess.STDOUT, cwd=files.run_dir, start_new_session=True)
    _STARTED[process.pid] = process
    files.pid_file.write_text(f"{process.pid}\n")
    return process.pid


def _wait_until_ready(files: BrokerFiles, pid: int, endpoint: KafkaConf, timeout: float) -> None:
    """Poll the broker until it answers; stop it and raise :class:`BrokerError` if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _is_running(pid):
            files.pid_file.unlink(missing_ok=True)
            raise BrokerError(f"Kafka broker (pid {pid}) exited during start-up; log tail:\n{_log_tail(files)}")
        if status(endpoint, timeout=1.0):
            return
        time.sleep(0.2)
    down(files.run_dir)
    raise BrokerError(f"Kafka broker at {describe(endpoint)} not ready after {timeout:.0f} s (stopped it); "
                      f"log tail:\n{_log_tail(files)}")


# ------------------------------------------------------------------------------- public API
def _accepts_tcp(bootstrap: str, timeout: float) -> bool:
    """Fast pre-check: does anything accept TCP connections at ``bootstrap``?"""
    host, port = _parse_bootstrap(bootstrap)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError as error:
        log.debug("nothing accepts connections at %s: %s", bootstrap, error)
        return False


def status(endpoint: KafkaEndpoint = DEFAULT_BOOTSTRAP, timeout: float = 2.0) -> bool:
    """True if a broker at ``endpoint`` answers a metadata request within ``timeout`` seconds.

    Raises :class:`~fink_t2.kafka.security.KafkaAuthenticationError` if it refuses the credentials.
    """
    bootstrap = as_kafka_conf(endpoint).bootstrap_servers
    if not _accepts_tcp(bootstrap.split(",")[0], timeout):
        return False
    # A refused connection is the expected "no" here: keep librdkafka's own log quiet and report
    # the reason at debug level instead.
    admin = AdminClient(client_config(endpoint, log_level=0,
                                      **{"socket.connection.setup.timeout.ms": max(1000, int(timeout * 1000))}))
    try:
        metadata = list_topics(admin, endpoint, timeout)
    except KafkaException as error:
        log.debug("no Kafka broker answers at %s: %s", bootstrap, error)
        return False
    return bool(metadata.brokers)


def cluster_id(endpoint: KafkaEndpoint, timeout: float = 30.0) -> str:
    """Id of the Kafka cluster at ``endpoint`` (the same whatever address of it is given).

    Raises :class:`BrokerError` when no broker answers within ``timeout`` seconds, and
    :class:`~fink_t2.kafka.security.KafkaAuthenticationError` at once if it refuses the credentials.
    """
    where = describe(as_kafka_conf(endpoint))
    admin = AdminClient(client_config(endpoint, log_level=0))  # the refusal is reported by the error
    try:
        metadata = list_topics(admin, endpoint, timeout)
    except KafkaException as error:
        raise BrokerError(f"no Kafka broker answers at {where} within {timeout:.0f} s: {error}") from error
    if not metadata.cluster_id:
        raise BrokerError(f"the Kafka broker at {where} reports no cluster id")
    return metadata.cluster_id


def up(run_dir: Path | str = DEFAULT_RUN_DIR, port: int = DEFAULT_PORT, controller_port: int | None = None,
       timeout: float = 60.0, repo_root: Path = REPO_ROOT, security: KafkaConf | None = None,
       tls: TlsIdentity | None = None) -> str:
    """Start the broker of ``run_dir`` on 127.0.0.1:``port`` and wait until it answers.

    ``controller_port`` defaults to ``port + 1``; ``timeout`` is in seconds. ``security`` (a
    ``[kafka]`` config; its bootstrap is ignored) gives the client listener's protocol and, for
    SASL, its one user; default PLAINTEXT. SSL protocols need ``tls``, the broker's certificate.
    A no-op if this broker already runs on ``port`` with that protocol. Returns the bootstrap
    string ``127.0.0.1:PORT``.
    """
    files = BrokerFiles(Path(run_dir).resolve())
    bootstrap = f"{DEFAULT_HOST}:{port}"
    endpoint = dataclasses.replace(security or KafkaConf(), bootstrap_servers=bootstrap)
    check_local_security(endpoint, tls)
    running = _running_pid(files)
    if running is not None:
        return _attach_to_running(files, running, endpoint, timeout)
    jars_dir = _prepare(files, port, controller_port, repo_root, endpoint, tls)
    pid = _start_broker(files, jars_dir)
    log.info("started Kafka broker pid %d at %s (log %s)", pid, describe(endpoint), files.log_file)
    try:
        _wait_until_ready(files, pid, endpoint, timeout)
    except KafkaAuthenticationError as error:
        down(files.run_dir)
        raise BrokerError(f"{error} (stopped it). A SCRAM user is stored when the run folder is first "
                          f"formatted: start with that password, or remove {files.data_dir}") from None
    return bootstrap


def _prepare(files: BrokerFiles, port: int, controller_port: int | None, repo_root: Path,
             endpoint: KafkaConf, tls: TlsIdentity | None) -> Path:
    """Write the properties and format the log directory once; returns the broker's jar folder."""
    jars_dir = kafka_broker_jars_dir(repo_root)
    files.data_dir.mkdir(parents=True, exist_ok=True)
    _write_private(files.properties,
                   server_properties(files.data_dir, port, controller_port or port + 1, endpoint, tls))
    if not files.formatted_marker.exists():
        _format_storage(files, jars_dir, endpoint)
    return jars_dir


def run_foreground(run_dir: Path | str = DEFAULT_RUN_DIR, port: int = DEFAULT_PORT,
                   controller_port: int | None = None, repo_root: Path = REPO_ROOT,
                   security: KafkaConf | None = None, tls: TlsIdentity | None = None) -> None:
    """Become the broker: prepare ``run_dir``, then exec the JVM in place of this process.

    For a container, where the broker must be the main process: it gets the signals (SIGTERM
    stops it cleanly), its log goes to stdout, and its exit ends the container. No PID file.
    ``security`` and ``tls`` as for :func:`up`.
    """
    files = BrokerFiles(Path(run_dir).resolve())
    endpoint = dataclasses.replace(security or KafkaConf(), bootstrap_servers=f"{DEFAULT_HOST}:{port}")
    check_local_security(endpoint, tls)
    running = _running_pid(files)
    if running is not None:
        raise BrokerError(f"the broker of {files.run_dir} already runs (pid {running}); run `down` first")
    command = _java_command(_prepare(files, port, controller_port, repo_root, endpoint, tls), _BROKER_MAIN_CLASS,
                            str(files.properties))
    os.chdir(files.run_dir)
    os.execvp(command[0], command)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (it may hold the SASL password)."""
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)


def _attach_to_running(files: BrokerFiles, pid: int, endpoint: KafkaConf, timeout: float) -> str:
    """``up`` on a broker that already runs: check port and protocol, wait if it is still starting."""
    protocol, running_bootstrap = _configured_listener(files)
    if (protocol, running_bootstrap) != (endpoint.security_protocol, endpoint.bootstrap_servers):
        raise BrokerError(f"the broker of {files.run_dir} already runs at {protocol}://{running_bootstrap} "
                          f"(pid {pid}), not at {endpoint.security_protocol}://{endpoint.bootstrap_servers}; "
                          f"run `down` first")
    _wait_until_ready(files, pid, endpoint, timeout)
    return endpoint.bootstrap_servers


def down(run_dir: Path | str = DEFAULT_RUN_DIR, timeout: float = 30.0) -> bool:
    """Stop the broker whose PID is in ``run_dir``'s PID file: SIGTERM, then SIGKILL after ``timeout`` s.

    Returns True if a running broker was stopped, False if none was running.
    """
    files = BrokerFiles(Path(run_dir).resolve())
    pid = _running_pid(files)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    if not _wait_for_exit(pid, timeout):
        log.warning("Kafka broker pid %d ignored SIGTERM for %.0f s; sending SIGKILL", pid, timeout)
        os.kill(pid, signal.SIGKILL)
        if not _wait_for_exit(pid, 10.0):
            raise BrokerError(f"Kafka broker pid {pid} survived SIGKILL")
    _STARTED.pop(pid, None)
    files.pid_file.unlink(missing_ok=True)
    return True


def _wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _is_running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def create_topic(endpoint: KafkaEndpoint, name: str, partitions: int = 2, timeout: float = 30.0,
                 exist_ok: bool = False, config: dict[str, str] | None = None) -> None:
    """Create topic ``name`` (replication 1, ``max.message.bytes`` = :data:`MAX_MESSAGE_BYTES`, and
    the topic settings of ``config``, e.g. ``retention.bytes``)."""
    topic = NewTopic(name, num_partitions=partitions, replication_factor=1,
                     config={"max.message.bytes": str(MAX_MESSAGE_BYTES), **(config or {})})
    admin = AdminClient(client_config(endpoint))  # must outlive the future
    future = admin.create_topics([topic], request_timeout=timeout)[name]
    try:
        _result(admin, endpoint, future, timeout)
    except KafkaException as error:
        if exist_ok and error.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return
        raise


def delete_topics(endpoint: KafkaEndpoint, names: Iterable[str], timeout: float = 30.0,
                  missing_ok: bool = True) -> None:
    """Delete topics ``names``; unknown topics are ignored when ``missing_ok``."""
    names = list(names)
    if not names:
        return
    admin = AdminClient(client_config(endpoint))  # must outlive the futures
    futures = admin.delete_topics(names, request_timeout=timeout)
    for future in futures.values():
        try:
            _result(admin, endpoint, future, timeout)
        except KafkaException as error:
            if not (missing_ok and error.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
                raise


def _result(admin: AdminClient, endpoint: KafkaEndpoint, future: Future, timeout: float) -> Any:
    """The result of an admin ``future``, serving the client's callbacks while waiting (a refused
    login raises :class:`~fink_t2.kafka.security.KafkaAuthenticationError` at once)."""
    deadline = time.monotonic() + timeout
    while not future.done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"Kafka admin request to {describe(as_kafka_conf(endpoint))} "
                               f"not answered in {timeout:.0f} s")
        admin.poll(0.1)
    try:
        return future.result()
    except KafkaException as error:
        raise_if_refused(admin, endpoint, error)
        raise


# ------------------------------------------------------------------------------------- CLI
def add_kafka_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``kafka up|run|down|status [--conf FILE] [--bootstrap HOST:PORT] [--run-dir DIR]`` to a main CLI."""
    parser = subparsers.add_parser(
        "kafka", help="local single-node Kafka broker on 127.0.0.1",
        description="Manage the local single-node KRaft Kafka broker. With --conf FILE, `up` and `run` start "
                    "a listener of its [kafka] security_protocol: SASL accepts [kafka]'s user and password, "
                    "SSL presents --tls-cert/--tls-key and trusts ssl_ca_location. HOST must be loopback.")
    parser.add_argument("action", choices=("up", "run", "down", "status"),
                        help="up: start in the background; run: become the broker (foreground, e.g. a container's "
                             "main process); down; status (exit 0 if it answers)")
    add_endpoint_arguments(parser)
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR,
                        help=f"data, log and PID folder (default {DEFAULT_RUN_DIR})")
    parser.add_argument("--controller-port", type=int, default=None,
                        help="KRaft controller port (default: broker port + 1)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for start/stop")
    parser.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate chain of an SSL listener")
    parser.add_argument("--tls-key", type=Path, default=None, help="its unencrypted PKCS#8 PEM private key")
    parser.set_defaults(handler=run_kafka)
    return parser


def run_kafka(args: argparse.Namespace) -> int:
    """Run one ``kafka`` action; exit code 0 on success (for ``status``: only if the broker answers)."""
    if args.action == "down":  # by PID file: needs no credentials
        stopped = down(args.run_dir, timeout=args.timeout)
        print(f"Kafka broker of {args.run_dir}: {'stopped' if stopped else 'was not running'}")
        return 0
    endpoint = endpoint_from_args(args)
    host, port = _parse_bootstrap(endpoint.bootstrap_servers)
    if args.action == "status":
        answering = status(endpoint)
        print(f"Kafka broker at {describe(endpoint)}: {'up' if answering else 'down'}")
        return 0 if answering else 1
    if host not in _LOOPBACK_HOSTS:
        print(f"refusing to start a broker on {host}: only 127.0.0.1 is supported", file=sys.stderr)
        return 2
    tls = TlsIdentity(args.tls_cert, args.tls_key) if args.tls_cert and args.tls_key else None
    if args.action == "run":  # does not return: the broker JVM replaces this process
        run_foreground(args.run_dir, port=port, controller_port=args.controller_port, security=endpoint, tls=tls)
        return 0
    started = time.monotonic()
    up(args.run_dir, port=port, controller_port=args.controller_port, timeout=args.timeout, security=endpoint, tls=tls)
    pid = _read_pid(BrokerFiles(Path(args.run_dir).resolve()))
    print(f"Kafka broker up at {describe(endpoint)} (pid {pid}, {time.monotonic() - started:.1f} s, "
          f"run dir {args.run_dir})")
    return 0


def main_kafka(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point: ``python -m fink_t2.kafka.broker up|down|status [...]``."""
    parser = argparse.ArgumentParser(prog="fink-t2")
    add_kafka_parser(parser.add_subparsers(dest="command", required=True))
    return run_kafka(parser.parse_args(["kafka", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main_kafka())
