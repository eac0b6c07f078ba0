"""The worker's acknowledged producer when no broker answers (a closed loopback port)."""
from __future__ import annotations

import pytest

from fink_t2.kafka.producer import DeliveryError, DirectProducer

from tests.conftest_kafka import free_loopback_port


def test_fail_mode_raises_with_the_reason_when_nothing_is_acknowledged():
    producer = DirectProducer(f"127.0.0.1:{free_loopback_port()}", delivery_timeout_s=1.0, wait_for_broker=False)
    with pytest.raises(DeliveryError, match=r"^[123] messages (not delivered|unacknowledged after 1 s)"):
        producer.send_all([("t", b"k", b"v")] * 3)
    assert producer.unreported == 0  # every message reported (failed or purged): none left for the next batch


def test_one_producer_per_worker_and_settings():
    bootstrap = f"127.0.0.1:{free_loopback_port()}"
    assert DirectProducer.for_endpoint(bootstrap, 5, True) is DirectProducer.for_endpoint(bootstrap, 5.0, True)
    assert DirectProducer.for_endpoint(bootstrap, 5, True) is not DirectProducer.for_endpoint(bootstrap, 5, False)
