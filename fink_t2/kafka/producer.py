"""The Python worker's own acknowledged Kafka producer (enriched alerts, dead letters)."""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from confluent_kafka import Producer

from fink_t2.kafka.broker import MAX_MESSAGE_BYTES
from fink_t2.kafka.security import KafkaAuthenticationError, KafkaEndpoint, as_kafka_conf, client_config, flush

log = logging.getLogger(__name__)

#: Longest wait for the delivery reports of purged messages, s: those in flight come asynchronously.
_PURGE_DRAIN_S = 5.0
#: One step of that wait, s.
_POLL_STEP_S = 0.1


class DeliveryError(RuntimeError):
    """A message was refused, or (when not waiting for the broker) not acknowledged in time."""


class DirectProducer:
    """The Python worker's own Kafka producer for the large messages (enriched, dead letters).

    ``send_all`` returns only after every message is acknowledged, and raises otherwise, so
    a micro-batch is committed by Spark only once its large messages are durable in Kafka.
    Messages unacknowledged after ``delivery_timeout_s`` seconds mean a broker outage: with
    ``wait_for_broker`` the producer logs a warning and keeps retrying (librdkafka never expires
    them), else it raises :class:`DeliveryError`.
    """

    _instances: dict[tuple, "DirectProducer"] = {}

    def __init__(self, endpoint: KafkaEndpoint, delivery_timeout_s: float = 120.0,
                 wait_for_broker: bool = False) -> None:
        self.failures: list[str] = []
        #: Messages produced and not yet reported (delivered, failed or purged). ``len(self.producer)``
        #: is not that count: it also holds librdkafka's queued log and error events.
        self.unreported = 0
        self.delivery_timeout_s = delivery_timeout_s
        self.wait_for_broker = wait_for_broker
        self.producer = Producer(client_config(endpoint, **{
            "acks": "all", "enable.idempotence": True,
            "linger.ms": 5, "batch.size": 1 << 20, "message.max.bytes": MAX_MESSAGE_BYTES,
            "queue.buffering.max.kbytes": 1 << 20, "compression.type": "none",
            "message.timeout.ms": 0 if wait_for_broker else int(delivery_timeout_s * 1000),
        }))

    @classmethod
    def for_endpoint(cls, endpoint: KafkaEndpoint, delivery_timeout_s: float = 120.0,
                     wait_for_broker: bool = False) -> "DirectProducer":
        """One producer per worker process, endpoint (bootstrap + credentials) and settings."""
        kafka = as_kafka_conf(endpoint)
        settings = (kafka, kafka.resolved_password, float(delivery_timeout_s), bool(wait_for_broker))
        if settings not in cls._instances:
            cls._instances[settings] = cls(kafka, delivery_timeout_s, wait_for_broker)
        return cls._instances[settings]

    def _on_delivery(self, error, message) -> None:
        self.unreported -= 1
        if error is not None:
            self.failures.append(f"{message.topic()}: {error}")

    def send_all(self, messages: Sequence[tuple]) -> None:
        """Produce ``messages``, (topic, key, value) or (topic, key, value, headers) with headers
        (name, bytes) pairs, and wait for all acknowledgements; :class:`DeliveryError` on any loss."""
        self.failures.clear()
        try:
            for topic, key, value, *headers in messages:
                self._produce(topic, key, value, list(headers[0]) if headers and headers[0] else None)
            self._await_acknowledgements()
        except (DeliveryError, KafkaAuthenticationError):  # a refused login never heals by waiting
            self._purge()
            raise

    def _purge(self) -> None:
        """Drop this batch's queued and in-flight messages and wait (up to :data:`_PURGE_DRAIN_S`)
        for their reports, so a reused worker does not see them in its next batch."""
        self.producer.purge()
        deadline = time.monotonic() + _PURGE_DRAIN_S
        while self.unreported > 0 and time.monotonic() < deadline:
            self.producer.poll(_POLL_STEP_S)
        if self.unreported > 0:
            log.warning("%d purged messages still unreported after %.0f s", self.unreported, _PURGE_DRAIN_S)

    def _produce(self, topic: str, key: bytes, value: bytes, headers: list | None = None) -> None:
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, headers=headers, on_delivery=self._on_delivery)
                self.unreported += 1
                break
            except BufferError:  # local queue full: let deliveries drain
                self.producer.poll(_POLL_STEP_S)
        self.producer.poll(0)

    def _await_acknowledgements(self) -> None:
        waited = 0.0
        while True:
            flush(self.producer, self.delivery_timeout_s)  # a refused login raises at once
            pending = self.unreported
            waited += self.delivery_timeout_s
            if self.failures:
                raise DeliveryError(f"{len(self.failures)} messages not delivered: {self.failures[:3]}")
            if not pending:
                return
            if not self.wait_for_broker:
                raise DeliveryError(f"{pending} messages unacknowledged after {waited:.0f} s: is the broker down? "
                                    f"([output] on_broker_outage = \"fail\")")
            log.warning("%d messages unacknowledged after %.0f s: waiting for the broker "
                        "([output] on_broker_outage = \"wait\")", pending, waited)
