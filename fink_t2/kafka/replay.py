"""Replay ZTF alert files into a Kafka topic as raw ZTF Avro bytes, one alert per message.

Inputs: ``.avro`` files, folders (searched recursively) and nightly ``.tar.gz``/``.tgz`` archives
(streamed member by member, never extracted to disk). A single-record Avro container is sent
byte-for-byte; a container holding several records is split into one container per record with
the same writer schema (codec null). Message keys are the alert ``candid`` as decimal ASCII.
The broker is probed first (:func:`check_broker`): a dead one is one clear error, not minutes of
retries. Parquet (decoded alerts) is refused; a truncated archive is replayed up to the damage
and reported.

Library: :func:`iter_alert_messages`, :func:`iter_avro_messages`, :func:`replay` (containers are
split by :func:`fink_t2.alerts.sources.split_avro_container`). CLI pieces: :func:`add_replay_parser`,
:func:`run_replay` (``fink-t2 replay``).
"""
from __future__ import annotations

import argparse
import itertools
import logging
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from tqdm import tqdm

from fink_t2.kafka.broker import DEFAULT_BOOTSTRAP, MAX_MESSAGE_BYTES, BrokerError
from fink_t2.kafka.security import (KafkaEndpoint, add_endpoint_arguments, as_kafka_conf, client_config, describe,
                                    endpoint_from_args, flush, list_topics)
from fink_t2.alerts.sources import AlertMessage, InputError, iter_alert_messages

log = logging.getLogger(__name__)

_MAX_ERRORS_KEPT = 5
#: Seconds to wait for the broker's first answer before giving up (``--connect-timeout``).
CONNECT_TIMEOUT_S = 10.0

#: Producer settings tuned for ~70 KB alerts on a local broker; callers may override any of them.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "message.max.bytes": MAX_MESSAGE_BYTES,
    "linger.ms": 20,
    "batch.size": 4 * 1024 * 1024,
    "acks": "all",
    "enable.idempotence": True,  # broker-side de-duplication of librdkafka's internal retries
    "compression.type": "none",  # cutouts are already gzipped; lz4 would only cost CPU
}


@dataclass
class ReplayStats:
    """Counts of one replay; ``seconds`` is wall time from the first message to the final flush."""

    produced: int = 0
    delivered: int = 0
    failed: int = 0
    bytes_delivered: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    #: inputs that could not be read to their end (truncated or corrupt archives)
    incomplete_inputs: list[str] = field(default_factory=list)

    @property
    def messages_per_second(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else 0.0

    def summary(self, topic: str) -> str:
        megabytes = self.bytes_delivered / 1e6
        rate_mb = megabytes / self.seconds if self.seconds > 0 else 0.0
        return (f"replayed {self.delivered}/{self.produced} messages ({megabytes:.1f} MB) to topic "
                f"{topic!r} in {self.seconds:.2f} s: {self.messages_per_second:.0f} msg/s, "
                f"{rate_mb:.1f} MB/s, {self.failed} failed"
                + (f", {len(self.incomplete_inputs)} incomplete input(s)" if self.incomplete_inputs else ""))


# ------------------------------------------------------------------------------------ reading
def iter_avro_messages(paths: Iterable[Path | str]) -> Iterator[tuple[str, bytes]]:
    """``(source name, Avro container bytes)`` per alert; see :func:`iter_alert_messages`."""
    for message in iter_alert_messages(paths):
        yield message.source, message.value


# ---------------------------------------------------------------------------------- producing
class _DeliveryCounter:
    """Delivery-report callback that counts successes, failures and delivered bytes."""

    def __init__(self, stats: ReplayStats) -> None:
        self.stats = stats

    def __call__(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            self.stats.delivered += 1
            self.stats.bytes_delivered += len(message.value() or b"")
            return
        self.stats.failed += 1
        if len(self.stats.errors) < _MAX_ERRORS_KEPT:
            self.stats.errors.append(f"key={message.key()!r}: {error}")


def _produce_with_retry(producer: Producer, topic: str, message: AlertMessage,
                        on_delivery: _DeliveryCounter) -> None:
    """Produce one message; while the local queue is full, serve delivery reports and retry."""
    while True:
        try:
            producer.produce(topic, value=message.value, key=message.key, on_delivery=on_delivery)
            break
        except BufferError:
            producer.poll(0.1)
    producer.poll(0)


def _throttle(producer: Producer, started: float, sent: int, rate: float | None) -> None:
    """Wait (serving delivery reports) until ``sent`` messages fit ``rate`` messages per second."""
    if rate is None:
        return
    wait = started + sent / rate - time.monotonic()
    while wait > 0:
        producer.poll(wait)
        wait = started + sent / rate - time.monotonic()


def check_broker(endpoint: KafkaEndpoint, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise :class:`BrokerError` unless the broker of ``endpoint`` answers within ``timeout`` s
    (:class:`~fink_t2.kafka.security.KafkaAuthenticationError` at once if it refuses the credentials).

    The probe client logs nothing (librdkafka would print a line per failed connection attempt):
    the one error raised says what happened.
    """
    probe = Producer(client_config(endpoint, log_level=0))
    try:
        list_topics(probe, endpoint, timeout)
    except KafkaException as exc:
        where = describe(as_kafka_conf(endpoint))
        raise BrokerError(f"no Kafka broker answers at {where} within {timeout:g} s: "
                          f"{exc.args[0].str()}") from None


def replay(paths: Iterable[Path | str], topic: str, bootstrap: KafkaEndpoint = DEFAULT_BOOTSTRAP,
           rate: float | None = None, progress: bool | None = None,
           producer_config: dict[str, Any] | None = None, flush_timeout: float = 120.0,
           connect_timeout: float = CONNECT_TIMEOUT_S) -> ReplayStats:
    """Send every alert of ``paths`` to ``topic``; ``rate`` caps alerts per second.

    ``progress`` shows a tqdm bar (default: when stderr is a TTY). Raises :class:`BrokerError`
    when no broker answers within ``connect_timeout`` s,
    :class:`~fink_t2.kafka.security.KafkaAuthenticationError` at once if it refuses ``bootstrap``'s
    credentials, :class:`InputError` for a Parquet file or
    when ``paths`` hold no Avro alert. Delivery failures are counted, not raised (check
    ``stats.failed``); messages still queued after ``flush_timeout`` seconds count as failed.
    Truncated or corrupt archives are replayed up to the damage and listed in
    ``stats.incomplete_inputs``.
    """
    if rate is not None and rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    paths = list(paths)
    stats = ReplayStats()
    messages = iter_alert_messages(paths, stats.incomplete_inputs)
    first = next(messages, None)  # bad inputs fail here, before any broker contact
    if first is None and not stats.incomplete_inputs:
        raise InputError(f"no Avro alert in {', '.join(map(str, paths))} (replay sends .avro files and "
                         f".tar.gz archives of them)")
    check_broker(bootstrap, connect_timeout)
    producer = Producer(client_config(bootstrap, **{**PRODUCER_DEFAULTS, **(producer_config or {})}))
    on_delivery = _DeliveryCounter(stats)
    show_progress = sys.stderr.isatty() if progress is None else progress
    started = time.monotonic()
    with tqdm(unit="alert", disable=not show_progress, desc=f"replay -> {topic}") as bar:
        for message in itertools.chain([first] if first is not None else [], messages):
            _throttle(producer, started, stats.produced, rate)
            _produce_with_retry(producer, topic, message, on_delivery)
            stats.produced += 1
            bar.update(1)
    flush(producer, flush_timeout)
    undelivered = stats.produced - stats.delivered - stats.failed  # len(producer) also counts log events
    stats.seconds = time.monotonic() - started
    if undelivered:
        stats.failed += undelivered
        stats.errors.append(f"{undelivered} messages still queued after {flush_timeout:.0f} s flush")
    return stats


# ------------------------------------------------------------------------------------- CLI
def add_replay_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``replay PATH... --topic TOPIC [--rate R] [--conf FILE] [--bootstrap HOST:PORT]`` to a main CLI."""
    parser = subparsers.add_parser("replay", help="replay ZTF alert files into a Kafka topic",
                                   description="Send ZTF alerts (.avro files, folders, .tar.gz nightly "
                                               "archives) to a Kafka topic, one raw alert per message.")
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--rate", type=float, default=None, metavar="ALERTS_PER_S",
                        help="throttle to this many alerts per second (default: as fast as possible)")
    add_endpoint_arguments(parser)
    parser.add_argument("--connect-timeout", type=float, default=CONNECT_TIMEOUT_S, metavar="SECONDS",
                        help=f"give up when no broker answers within this time (default {CONNECT_TIMEOUT_S:g})")
    parser.set_defaults(handler=run_replay)
    return parser


def run_replay(args: argparse.Namespace) -> int:
    """Replay ``args.paths``, print a summary; exit code 1 if a message was not delivered or an input
    was incomplete."""
    missing = [str(path) for path in args.paths if not path.exists()]
    if missing:
        print(f"no such alert file or folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    endpoint = endpoint_from_args(args)
    stats = replay(args.paths, args.topic, bootstrap=endpoint, rate=args.rate, connect_timeout=args.connect_timeout)
    print(f"{stats.summary(args.topic)} at {describe(endpoint)}")
    for problem in stats.incomplete_inputs:
        print(f"incomplete input (replayed up to the damage): {problem}", file=sys.stderr)
    for error in stats.errors if stats.failed else ():
        print(f"delivery failed: {error}", file=sys.stderr)
    return 1 if stats.failed or stats.incomplete_inputs else 0


def main_replay(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point: ``python -m fink_t2.kafka.replay PATH... --topic TOPIC``."""
    parser = argparse.ArgumentParser(prog="fink-t2")
    add_replay_parser(parser.add_subparsers(dest="command", required=True))
    return run_replay(parser.parse_args(["replay", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main_replay())
