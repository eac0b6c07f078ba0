"""Replay ZTF alert files into a Kafka topic as raw ZTF Avro bytes, one alert per message.

Inputs: ``.avro`` files, folders (searched recursively) and nightly ``.tar.gz``/``.tgz`` archives
(streamed member by member, never extracted to disk). A single-record Avro container is sent
byte-for-byte; a container holding several records is split into one container per record with
the same writer schema (codec null). Message keys are the alert ``candid`` as decimal ASCII.

Library: :func:`iter_alert_messages`, :func:`iter_avro_messages`, :func:`split_avro_container`,
:func:`replay`. CLI pieces: :func:`add_replay_parser`, :func:`run_replay` (``fink-t2 replay``).
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from tqdm import tqdm

from fink_t2.kafka.broker import DEFAULT_BOOTSTRAP, MAX_MESSAGE_BYTES
from fink_t2.alerts.sources import AlertMessage, iter_alert_messages, split_avro_container

log = logging.getLogger(__name__)

_MAX_ERRORS_KEPT = 5

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

    @property
    def messages_per_second(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else 0.0

    def summary(self, topic: str) -> str:
        megabytes = self.bytes_delivered / 1e6
        rate_mb = megabytes / self.seconds if self.seconds > 0 else 0.0
        return (f"replayed {self.delivered}/{self.produced} messages ({megabytes:.1f} MB) to topic "
                f"{topic!r} in {self.seconds:.2f} s: {self.messages_per_second:.0f} msg/s, "
                f"{rate_mb:.1f} MB/s, {self.failed} failed")


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


def replay(paths: Iterable[Path | str], topic: str, bootstrap: str = DEFAULT_BOOTSTRAP,
           rate: float | None = None, progress: bool | None = None,
           producer_config: dict[str, Any] | None = None, flush_timeout: float = 120.0) -> ReplayStats:
    """Send every alert of ``paths`` to ``topic``; ``rate`` caps alerts per second.

    ``progress`` shows a tqdm bar (default: when stderr is a TTY). Messages still queued after
    ``flush_timeout`` seconds count as failed. Raises nothing on delivery failures: check
    ``stats.failed``.
    """
    if rate is not None and rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    stats = ReplayStats()
    producer = Producer({**PRODUCER_DEFAULTS, **(producer_config or {}), "bootstrap.servers": bootstrap})
    on_delivery = _DeliveryCounter(stats)
    show_progress = sys.stderr.isatty() if progress is None else progress
    started = time.monotonic()
    with tqdm(unit="alert", disable=not show_progress, desc=f"replay -> {topic}") as bar:
        for message in iter_alert_messages(paths):
            _throttle(producer, started, stats.produced, rate)
            _produce_with_retry(producer, topic, message, on_delivery)
            stats.produced += 1
            bar.update(1)
    undelivered = producer.flush(flush_timeout)
    stats.seconds = time.monotonic() - started
    if undelivered:
        stats.failed += undelivered
        stats.errors.append(f"{undelivered} messages still queued after {flush_timeout:.0f} s flush")
    return stats


# ------------------------------------------------------------------------------------- CLI
def add_replay_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``replay PATH... --topic TOPIC [--rate R] [--bootstrap HOST:PORT]`` to a main CLI."""
    parser = subparsers.add_parser("replay", help="replay ZTF alert files into a Kafka topic",
                                   description="Send ZTF alerts (.avro files, folders, .tar.gz nightly "
                                               "archives) to a Kafka topic, one raw alert per message.")
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--rate", type=float, default=None, metavar="ALERTS_PER_S",
                        help="throttle to this many alerts per second (default: as fast as possible)")
    parser.add_argument("--bootstrap", default=DEFAULT_BOOTSTRAP,
                        help=f"Kafka bootstrap HOST:PORT (default {DEFAULT_BOOTSTRAP})")
    parser.set_defaults(handler=run_replay)
    return parser


def run_replay(args: argparse.Namespace) -> int:
    """Replay ``args.paths``, print a summary; exit code 1 if any message was not delivered."""
    missing = [str(path) for path in args.paths if not path.exists()]
    if missing:
        print(f"no such alert file or folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    stats = replay(args.paths, args.topic, bootstrap=args.bootstrap, rate=args.rate)
    print(stats.summary(args.topic))
    if stats.failed:
        for error in stats.errors:
            print(f"delivery failed: {error}", file=sys.stderr)
        return 1
    return 0


def main_replay(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point: ``python -m fink_t2.kafka.replay PATH... --topic TOPIC``."""
    parser = argparse.ArgumentParser(prog="fink-t2")
    add_replay_parser(parser.add_subparsers(dest="command", required=True))
    return run_replay(parser.parse_args(["replay", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main_replay())
