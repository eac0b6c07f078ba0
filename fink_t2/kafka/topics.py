"""Read whole Kafka topics back (demo summaries, tests, benchmark): loopback consumers only."""
from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from fink_t2.kafka.broker import MAX_MESSAGE_BYTES
from fink_t2.kafka.security import KafkaEndpoint, client_config, list_topics


@dataclass(frozen=True)
class Message:
    """One consumed message."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: tuple[tuple[str, bytes], ...] = ()


def _consumer(endpoint: KafkaEndpoint) -> Consumer:
    return Consumer(client_config(endpoint, **{
        "group.id": "fink-t2-reader", "enable.auto.commit": False,
        "fetch.max.bytes": 4 * MAX_MESSAGE_BYTES, "max.partition.fetch.bytes": MAX_MESSAGE_BYTES,
        "log_level": 3,
    }))


def topic_sizes(bootstrap: KafkaEndpoint, topics: list[str], timeout: float = 10.0) -> dict[str, int]:
    """Number of messages in each topic (sum of high − low watermarks; 0 if absent)."""
    consumer = _consumer(bootstrap)
    try:
        metadata = list_topics(consumer, bootstrap, timeout).topics
        sizes = {}
        for topic in topics:
            if topic not in metadata or metadata[topic].error is not None:
                sizes[topic] = 0
                continue
            sizes[topic] = sum(
                high - low for low, high in (
                    consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
                    for p in metadata[topic].partitions))
        return sizes
    finally:
        consumer.close()


def read_topic(bootstrap: KafkaEndpoint, topic: str, timeout: float = 60.0) -> list[Message]:
    """Every message of ``topic`` from the beginning to its current end (empty if absent)."""
    consumer = _consumer(bootstrap)
    try:
        metadata = list_topics(consumer, bootstrap, timeout, topic).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return []
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1]
                for p in metadata.partitions}
        pending = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        messages: list[Message] = []
        while pending:
            msg = consumer.poll(timeout)
            if msg is None:
                raise TimeoutError(f"reading {topic}: no message for {timeout} s, {len(messages)} read")
            if msg.error():
                raise KafkaException(msg.error())
            messages.append(Message(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                                    msg.timestamp()[1], tuple(msg.headers() or ())))
            if msg.offset() + 1 >= ends[msg.partition()]:
                pending.discard(msg.partition())
        return messages
    finally:
        consumer.close()
