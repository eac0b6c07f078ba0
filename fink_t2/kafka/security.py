"""Client security of every Kafka client, from ``[kafka]``: librdkafka and Java client properties.

One mapping each: :func:`librdkafka_security` for confluent-kafka (replay, topics, admin, the
workers' producer) and :func:`spark_kafka_options` for Spark's Kafka source and sink (Java client
properties prefixed ``kafka.``). :func:`client_config` builds a whole librdkafka configuration
whose error callback turns a refused login or a failed TLS handshake into
:class:`KafkaAuthenticationError` at once, instead of librdkafka retrying until a delivery or
poll timeout.

Passwords go only into the client properties: never into a message, a ``repr`` or a log line.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import time
from pathlib import Path
from typing import Any, Union

from confluent_kafka import KafkaError, KafkaException

from fink_t2.config import KafkaConf, load_config

log = logging.getLogger(__name__)
#: librdkafka's own log lines, forwarded by the client's ``poll``/``flush`` (so none after a refusal
#: was raised, and none printed to stderr behind the logging configuration's back).
LIBRDKAFKA_LOG = logging.getLogger("fink_t2.kafka.librdkafka")
#: What librdkafka's log says of a refusal, again at each reconnect: :class:`KafkaAuthenticationError`
#: says it once instead.
_REFUSAL_LOG_MARKERS = ("SASL authentication error", "SSL handshake failed")


class _WithoutRefusals(logging.Filter):
    """Drops librdkafka's log lines that repeat a refusal (the raised error reports it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(marker in record.getMessage() for marker in _REFUSAL_LOG_MARKERS)


LIBRDKAFKA_LOG.addFilter(_WithoutRefusals())

#: Longest single ``flush`` or ``list_topics`` call, s: neither returns early on a refused login.
_STEP_S = 0.5
#: librdkafka's syslog levels: default ``log_level`` and the level of errors.
_LIBRDKAFKA_DEFAULT_LOG_LEVEL, _LIBRDKAFKA_LOG_ERR = 6, 3

#: A Kafka endpoint as the clients take it: ``HOST:PORT[,HOST:PORT]`` (PLAINTEXT) or a ``[kafka]`` config.
KafkaEndpoint = Union[str, KafkaConf]  # not `str | KafkaConf`: evaluated at import, Python 3.9 (tests import it)

#: JAAS login module of each SASL mechanism (Java clients and the broker's listener).
JAAS_LOGIN_MODULES: dict[str, str] = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


#: How a refused login reads in a Spark query's exception: a Java client's exception, or ours raised
#: in a Python worker.
_REFUSAL_IN_SPARK_ERROR = re.compile(
    r"(?:org\.apache\.kafka\.common\.errors\.\w*AuthenticationException|KafkaAuthenticationError): "
    r"(?P<reason>.*?)(?: SQLSTATE: \w+)?$", re.MULTILINE)


class KafkaAuthenticationError(RuntimeError):
    """A broker refused the client's credentials (SASL user, password or mechanism), or the TLS
    handshake failed (e.g. the broker's certificate is not signed by ``ssl_ca_location``)."""


#: librdkafka errors that retrying cannot cure: raised at once as :class:`KafkaAuthenticationError`.
_REFUSALS = (KafkaError._AUTHENTICATION, KafkaError._SSL)


def as_kafka_conf(endpoint: KafkaEndpoint) -> KafkaConf:
    """``endpoint`` as a :class:`KafkaConf` (a bare bootstrap string means PLAINTEXT)."""
    return endpoint if isinstance(endpoint, KafkaConf) else KafkaConf(bootstrap_servers=endpoint)


def librdkafka_security(kafka: KafkaConf) -> dict[str, str]:
    """confluent-kafka (librdkafka) properties of ``kafka``'s security settings."""
    props = {"security.protocol": kafka.security_protocol}
    if kafka.uses_sasl:
        props |= {"sasl.mechanism": kafka.sasl_mechanism, "sasl.username": kafka.sasl_username,
                  "sasl.password": kafka.resolved_password}
    if kafka.ssl_ca_location:
        props["ssl.ca.location"] = kafka.ssl_ca_location
    return props


def jaas_quote(value: str) -> str:
    """``value`` as a double-quoted JAAS option value (backslash and double quote escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def jaas_config(mechanism: str, username: str, password: str, **extra: str) -> str:
    """A ``sasl.jaas.config`` value: the mechanism's login module with these options."""
    options = {"username": username, "password": password, **extra}
    quoted = " ".join(f"{name}={jaas_quote(value)}" for name, value in options.items())
    return f"{JAAS_LOGIN_MODULES[mechanism]} required {quoted};"


def java_security(kafka: KafkaConf) -> dict[str, str]:
    """Java Kafka client properties of ``kafka``'s security settings (a PEM CA file as truststore)."""
    props = {"security.protocol": kafka.security_protocol}
    if kafka.uses_sasl:
        props |= {"sasl.mechanism": kafka.sasl_mechanism,
                  "sasl.jaas.config": jaas_config(kafka.sasl_mechanism, kafka.sasl_username,
                                                  kafka.resolved_password)}
    if kafka.ssl_ca_location:
        props |= {"ssl.truststore.type": "PEM", "ssl.truststore.location": kafka.ssl_ca_location}
    return props


def spark_kafka_options(kafka: KafkaConf) -> dict[str, str]:
    """Options of Spark's Kafka source and sink: bootstrap and security, as ``kafka.<property>``."""
    props = {"bootstrap.servers": kafka.bootstrap_servers, **java_security(kafka)}
    return {f"kafka.{name}": value for name, value in props.items()}


def describe(kafka: KafkaConf) -> str:
    """Who connects where, for messages: bootstrap, protocol, mechanism and user (no password)."""
    who = f" {kafka.sasl_mechanism} as user {kafka.sasl_username!r}" if kafka.uses_sasl else ""
    return f"{kafka.bootstrap_servers} ({kafka.security_protocol}{who})"


def authentication_error(kafka: KafkaConf, reason: object) -> KafkaAuthenticationError:
    """The error to raise when the brokers of ``kafka`` refuse its credentials."""
    return KafkaAuthenticationError(f"Kafka authentication failed at {describe(kafka)}: {reason}")


class _ErrorCallback:
    """librdkafka ``error_cb``: raise once on a refusal (:data:`_REFUSALS`; it surfaces from the
    client's next ``poll``/``flush``/``consume``), log every other error (at debug level for a ``quiet`` client,
    after a refusal, and for connection failures, which librdkafka's own log already reports)."""

    _IN_LIBRDKAFKA_LOG = (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE)

    def __init__(self, kafka: KafkaConf, quiet: bool) -> None:
        self.kafka = kafka
        self.quiet = quiet
        self.refused = False

    def __call__(self, error: KafkaError) -> None:
        if error.code() not in _REFUSALS:
            repeated = self.quiet or self.refused or error.code() in self._IN_LIBRDKAFKA_LOG
            log.log(logging.DEBUG if repeated else logging.WARNING, "Kafka client error at %s: %s",
                    self.kafka.bootstrap_servers, error.str())
        elif not self.refused:  # librdkafka retries and reports it again every few 100 ms
            self.refused = True
            raise authentication_error(self.kafka, error.str())


def client_config(endpoint: KafkaEndpoint, **settings: Any) -> dict[str, Any]:
    """A librdkafka configuration: bootstrap and security of ``endpoint``, then ``settings``.

    Its ``error_cb`` raises :class:`KafkaAuthenticationError` from the client's next
    ``poll``/``flush``/``consume`` when the brokers refuse the credentials. Blocking calls
    (``list_topics``, futures) do not serve callbacks: see :func:`raise_if_refused`. The
    client's log goes to :data:`LIBRDKAFKA_LOG`.
    """
    kafka = as_kafka_conf(endpoint)
    quiet = int(settings.get("log_level", _LIBRDKAFKA_DEFAULT_LOG_LEVEL)) < _LIBRDKAFKA_LOG_ERR
    return {"bootstrap.servers": kafka.bootstrap_servers, **librdkafka_security(kafka), "logger": LIBRDKAFKA_LOG,
            **settings, "error_cb": _ErrorCallback(kafka, quiet)}


def raise_if_refused(client: Any, endpoint: KafkaEndpoint, error: KafkaException | None = None) -> None:
    """After a blocking call of ``client`` failed (``error``) or timed out: raise
    :class:`KafkaAuthenticationError` if the brokers refused the credentials, else return."""
    client.poll(0)  # serves the error callback, which raises on a refused login
    if error is not None and error.args and isinstance(error.args[0], KafkaError) \
            and error.args[0].code() in _REFUSALS:
        raise authentication_error(as_kafka_conf(endpoint), error.args[0].str()) from None


def list_topics(client: Any, endpoint: KafkaEndpoint, timeout: float, topic: str | None = None) -> Any:
    """``client.list_topics`` (cluster metadata) in short steps, so that a refused login raises
    :class:`KafkaAuthenticationError` within about :data:`_STEP_S` s; else the last ``KafkaException``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.list_topics(topic, timeout=max(0.01, min(_STEP_S, deadline - time.monotonic())))
        except KafkaException as error:
            raise_if_refused(client, endpoint, error)
            if time.monotonic() >= deadline:
                raise


def flush(producer: Any, timeout: float) -> int:
    """``producer.flush`` in short steps, so a refused login raises at once; returns ``len(producer)``:
    messages still queued plus log and error events not yet served (count messages by their reports)."""
    deadline = time.monotonic() + timeout
    while len(producer) and (remaining := deadline - time.monotonic()) > 0:
        producer.flush(min(_STEP_S, remaining))
    return len(producer)


def refusal_in(kafka: KafkaConf, spark_error: BaseException) -> KafkaAuthenticationError | None:
    """The :class:`KafkaAuthenticationError` a failed Spark query's exception reports, if any
    (its first line only, not the Java stack traces)."""
    match = _REFUSAL_IN_SPARK_ERROR.search(str(spark_error))
    if match is None:
        return None
    reason = match.group("reason")
    if reason.startswith("Kafka authentication failed at "):  # ours, from a Python worker
        return KafkaAuthenticationError(reason)
    return authentication_error(kafka, reason)


# ------------------------------------------------------------------------------------- CLI
def add_endpoint_arguments(parser: argparse.ArgumentParser) -> None:
    """``--conf FILE`` (its ``[kafka]``: brokers and security) and ``--bootstrap HOST:PORT``."""
    parser.add_argument("--conf", type=Path, default=None,
                        help="take the brokers and client security (SASL/SSL) from this TOML config's [kafka]")
    parser.add_argument("--bootstrap", default=None,
                        help=f"Kafka bootstrap HOST:PORT (default: --conf's, else {KafkaConf.bootstrap_servers})")


def endpoint_from_args(args: argparse.Namespace) -> KafkaConf:
    """The ``[kafka]`` of ``args.conf`` (defaults without one), its address replaced by ``args.bootstrap``."""
    kafka = load_config(args.conf).kafka if args.conf else KafkaConf()
    return dataclasses.replace(kafka, bootstrap_servers=args.bootstrap) if args.bootstrap else kafka
