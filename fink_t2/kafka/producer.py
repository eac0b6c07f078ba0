"""The Python worker's own acknowledged Kafka producer (enriched alerts, dead letters)."""
from __future__ import annotations

from confluent_kafka import Producer

from fink_t2.kafka.broker import MAX_MESSAGE_BYTES


class DirectProducer:
    """The Python worker's own Kafka producer for the large messages (enriched, dead letters).

    ``send_all`` returns only after every message is acknowledged, and raises otherwise, so
    a micro-batch is committed by Spark only once its large messages are durable in Kafka.
    """

    _instances: dict[str, "DirectProducer"] = {}

    def __init__(self, bootstrap: str) -> None:
        self.failures: list[str] = []
        self.producer = Producer({
            "bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
            "linger.ms": 5, "batch.size": 1 << 20, "message.max.bytes": MAX_MESSAGE_BYTES,
            "queue.buffering.max.kbytes": 1 << 20, "compression.type": "none",
        })

    @classmethod
    def for_bootstrap(cls, bootstrap: str) -> "DirectProducer":
        """One producer per worker process and bootstrap."""
        if bootstrap not in cls._instances:
            cls._instances[bootstrap] = cls(bootstrap)
        return cls._instances[bootstrap]

    def _on_delivery(self, error, message) -> None:
        if error is not None:
            self.failures.append(f"{message.topic()}: {error}")

    def send_all(self, messages: list[tuple[str, bytes, bytes]], timeout: float = 120.0) -> None:
        """Produce ``messages`` and wait for all acknowledgements; ``RuntimeError`` on any loss."""
        self.failures.clear()
        for topic, key, value in messages:
            while True:
                try:
                    self.producer.produce(topic, value=value, key=key, on_delivery=self._on_delivery)
                    break
                except BufferError:  # local queue full: let deliveries drain
                    self.producer.poll(0.1)
            self.producer.poll(0)
        pending = self.producer.flush(timeout)
        if pending or self.failures:
            raise RuntimeError(f"{pending} messages undelivered after {timeout} s, {len(self.failures)} failed: "
                               f"{self.failures[:3]}")
