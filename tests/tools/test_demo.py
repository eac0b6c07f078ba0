"""``fink-t2 demo`` deletes and recreates its topics: it refuses a broker off loopback unless asked,
and never touches the configured checkpoints (it keeps its own)."""
from __future__ import annotations

import dataclasses

import pytest

from fink_t2.cli import main
from fink_t2.config import CheckpointConf, Config, KafkaConf
from fink_t2.kafka import broker
from fink_t2.tools import demo


class Stop(Exception):
    """Raised by a stub to end the demo at a chosen step."""


def _refuse(*args, **kwargs):
    raise AssertionError("the demo must not touch the broker")


def _stop(*args, **kwargs):
    raise Stop


def _config(bootstrap: str, checkpoints) -> Config:
    return dataclasses.replace(Config(), kafka=KafkaConf(bootstrap), checkpoint=CheckpointConf(str(checkpoints)))


@pytest.mark.parametrize("bootstrap", ["10.1.2.3:9092", "kafka.example.org:9092", "127.0.0.1:9092,10.0.0.5:9092"])
def test_remote_broker_is_refused_before_any_broker_call(bootstrap, tmp_path, monkeypatch):
    for name in ("status", "up", "delete_topics", "create_topic"):
        monkeypatch.setattr(broker, name, _refuse)
    with pytest.raises(demo.RemoteBrokerRefused, match="--allow-remote-broker"):
        demo.run_demo(_config(bootstrap, tmp_path))


def test_cli_demo_on_a_remote_broker_exits_2_and_says_why(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(broker, "status", _refuse)
    conf = tmp_path / "remote.toml"
    conf.write_text('[kafka]\nbootstrap_servers = "kafka-1.example.org:9092"\n')
    assert main(["demo", "--conf", str(conf)]) == 2
    captured = capsys.readouterr()
    assert "kafka-1.example.org:9092 is not on loopback" in captured.err and captured.out == ""


def test_allowed_remote_broker_resets_only_the_demo_state(tmp_path, monkeypatch):
    configured = tmp_path / "production-checkpoints"
    (configured / "classify").mkdir(parents=True)
    own = tmp_path / "demo-checkpoints"
    (own / "classify").mkdir(parents=True)
    monkeypatch.setattr(demo, "DEMO_CHECKPOINTS", own)
    deleted = []
    monkeypatch.setattr(broker, "status", lambda bootstrap: True)
    monkeypatch.setattr(broker, "delete_topics", lambda bootstrap, names: deleted.extend(names))
    monkeypatch.setattr(broker, "create_topic", _stop)  # the step after the reset
    with pytest.raises(Stop):
        demo.run_demo(_config("10.1.2.3:9092", configured), allow_remote_broker=True)
    assert deleted == [demo.DEMO_TOPIC, *Config().output.topics()]
    assert (configured / "classify").is_dir() and not own.exists()


def test_a_remote_broker_that_does_not_answer_is_not_replaced_by_a_local_one(tmp_path, monkeypatch):
    monkeypatch.setattr(broker, "status", lambda bootstrap: False)
    monkeypatch.setattr(broker, "up", _refuse)
    with pytest.raises(broker.BrokerError, match="no Kafka broker answers at 10.1.2.3:9092"):
        demo.run_demo(_config("10.1.2.3:9092", tmp_path), allow_remote_broker=True)
