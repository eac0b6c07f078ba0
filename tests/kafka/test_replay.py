"""Replay of real ZTF alert files: splitting (no broker) and a round trip through a real broker."""
from __future__ import annotations

import argparse
import io
import math
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

import fastavro
import pytest

from fink_t2.alerts.sources import InputError, split_avro_container
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from fink_t2.kafka.replay import (add_replay_parser, iter_alert_messages, iter_avro_messages, replay,
                                  run_replay)
from fink_t2.cli import main
from fink_t2.kafka.broker import BrokerError
from tests.conftest import ARCHIVE_MEMBERS, REPO, SHARED, truncated_archive
from tests.conftest_kafka import free_loopback_port

DATATEST = SHARED / "data" / "ztf" / "avro" / "fink-client_datatest"
#: Records per file of the fink-client datatest folder (7 files, 49 alerts).
DATATEST_RECORDS = {
    "ZTF19acihgng.avro": 1, "ZTF19acxxwrs.avro": 1, "ZTF19acyfkzd.avro": 1, "ZTF19acyjzeo.avro": 1,
    "avro_multi_alerts.avro": 11, "avro_multi_alerts_other.avro": 3, "part-3-305711.avro": 31,
}


@pytest.fixture(scope="module")
def datatest() -> Path:
    if not DATATEST.is_dir():
        pytest.skip(f"needs the shared alert data ({DATATEST} not found): run beside ../shared")
    return DATATEST


def _records(data: bytes) -> list[dict[str, Any]]:
    return list(fastavro.reader(io.BytesIO(data)))


def _same(left: Any, right: Any) -> bool:
    """Deep equality where NaN equals NaN (ZTF records hold many NaN floats)."""
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_same(left[key], right[key]) for key in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(_same(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, float) and isinstance(right, float) and math.isnan(left):
        return math.isnan(right)
    return left == right


def _single_record_files(folder: Path) -> dict[bytes, bytes]:
    """candid key -> file bytes of the single-record containers of ``folder``."""
    payloads = {}
    for path in sorted(folder.glob("*.avro")):
        data = path.read_bytes()
        records = _records(data)
        if len(records) == 1:
            payloads[str(records[0]["candid"]).encode()] = data
    return payloads


def _consume(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list[tuple[bytes, bytes]]:
    """Read ``expected`` (key, value) pairs from the start of every partition of ``topic``.

    Partitions are assigned directly (no group join), which saves ~3 s per test.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING) for partition in partitions])
    messages: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            messages.append((message.key(), message.value()))
        extra = consumer.poll(1.0)  # nothing beyond the expected count
        assert extra is None, f"unexpected extra message with key {extra.key()!r}"
    finally:
        consumer.close()
    return messages


# ------------------------------------------------------------------------- no broker needed
@pytest.mark.shared
def test_iter_splits_multi_record_containers(datatest: Path) -> None:
    messages = list(iter_alert_messages([datatest]))
    assert len(messages) == sum(DATATEST_RECORDS.values()) == 49
    per_file: dict[str, int] = {}
    for message in messages:
        name = Path(message.source.split("#")[0]).name
        per_file[name] = per_file.get(name, 0) + 1
    assert per_file == DATATEST_RECORDS


@pytest.mark.shared
def test_split_messages_hold_the_original_records(datatest: Path) -> None:
    originals = [record for path in sorted(datatest.glob("*.avro")) for record in _records(path.read_bytes())]
    messages = list(iter_alert_messages([datatest]))
    for original, message in zip(originals, messages, strict=True):
        (record,) = _records(message.value)
        assert _same(record, original)
        assert message.key == str(original["candid"]).encode()


@pytest.mark.shared
def test_split_is_deterministic_and_idempotent(datatest: Path) -> None:
    data = (datatest / "avro_multi_alerts_other.avro").read_bytes()
    first = [message.value for message in split_avro_container(data)]
    second = [message.value for message in split_avro_container(data)]
    assert first == second and len(first) == 3
    assert [message.value for message in split_avro_container(first[0])] == [first[0]]


@pytest.mark.shared
def test_iter_avro_messages_yields_source_and_bytes(datatest: Path) -> None:
    source, value = next(iter_avro_messages([datatest / "ZTF19acihgng.avro"]))
    assert source.endswith("ZTF19acihgng.avro")
    assert value == (datatest / "ZTF19acihgng.avro").read_bytes()


@pytest.mark.shared
def test_tar_gz_archive_streams_the_same_messages(datatest: Path, tmp_path: Path) -> None:
    names = ["ZTF19acihgng.avro", "ZTF19acxxwrs.avro", "avro_multi_alerts_other.avro"]
    archive = tmp_path / "ztf_public_20191216.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in names:
            tar.add(datatest / name, arcname=name)
    from_files = [value for _, value in iter_avro_messages([datatest / name for name in names])]
    from_archive = [value for _, value in iter_avro_messages([archive])]
    assert from_archive == from_files and len(from_files) == 5


def test_unsupported_and_missing_paths_raise(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an alert")
    with pytest.raises(InputError, match="not an alert file"):
        list(iter_alert_messages([tmp_path / "notes.txt"]))
    with pytest.raises(InputError, match="no such file or directory"):
        list(iter_alert_messages([tmp_path / "missing.avro"]))


# ------------------------------------------------------------------------------ real broker
@pytest.mark.shared
@pytest.mark.integration
def test_replay_round_trip(datatest: Path, kafka_broker: str, kafka_topic: str) -> None:
    stats = replay([datatest], kafka_topic, bootstrap=kafka_broker, progress=False)
    assert (stats.produced, stats.delivered, stats.failed) == (49, 49, 0)

    consumed = _consume(kafka_broker, kafka_topic, expected=49)
    assert len(consumed) == 49
    for key, value in consumed:
        (record,) = _records(value)
        assert key == str(record["candid"]).encode()
    keys = {key for key, _ in consumed}
    assert len(keys) == 49
    single_files = _single_record_files(datatest)
    assert len(single_files) == 4
    values_by_key = dict(consumed)
    for key, file_bytes in single_files.items():
        assert values_by_key[key] == file_bytes  # byte-identical raw ZTF packet


@pytest.mark.shared
@pytest.mark.integration
def test_replay_tar_gz_round_trip(datatest: Path, tmp_path: Path, kafka_broker: str, kafka_topic: str) -> None:
    names = ["ZTF19acyfkzd.avro", "ZTF19acyjzeo.avro", "avro_multi_alerts.avro"]
    archive = tmp_path / "night.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in names:
            tar.add(datatest / name, arcname=f"night/{name}")
    stats = replay([archive], kafka_topic, bootstrap=kafka_broker, progress=False)
    assert (stats.delivered, stats.failed) == (13, 0)
    consumed = sorted(_consume(kafka_broker, kafka_topic, expected=13))
    expected = sorted((m.key, m.value) for m in iter_alert_messages([datatest / name for name in names]))
    assert consumed == expected


@pytest.mark.shared
@pytest.mark.integration
def test_replay_rate_limit(datatest: Path, kafka_broker: str, kafka_topic: str) -> None:
    stats = replay([datatest / "avro_multi_alerts.avro"], kafka_topic, bootstrap=kafka_broker,
                   rate=20.0, progress=False)
    assert stats.delivered == 11
    assert stats.seconds >= 10 / 20.0  # the 11th message may leave 0.5 s after the first


def test_replay_to_a_dead_broker_fails_fast_with_one_clear_line(tmp_path: Path) -> None:
    """Was: 120 s of flush and hundreds of librdkafka log lines, then a 0/N summary."""
    bootstrap = f"127.0.0.1:{free_loopback_port()}"
    done = subprocess.run([sys.executable, "-m", "fink_t2.cli", "replay", str(ARCHIVE_MEMBERS[0]), "--topic", "t",
                           "--bootstrap", bootstrap, "--connect-timeout", "2"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"fink-t2: error: no Kafka broker answers at {bootstrap} (PLAINTEXT) within 2 s: "
                                        "Failed to get metadata: Local: Broker transport failure"]
    assert done.stdout == ""


def test_replay_counts_messages_left_queued_when_the_broker_goes_away(datatest: Path, monkeypatch) -> None:
    """A broker that answered the check and then went away: the 11 queued alerts count as failed,
    with one summary line (the count is the delivery reports', not len(Producer), which holds log events too)."""
    monkeypatch.setattr("fink_t2.kafka.replay.check_broker", lambda bootstrap, timeout: None)
    stats = replay([datatest / "avro_multi_alerts.avro"], "t", bootstrap=f"127.0.0.1:{free_loopback_port()}",
                   progress=False, flush_timeout=2.0)
    assert (stats.produced, stats.delivered, stats.failed) == (11, 0, 11)
    assert stats.errors == ["11 messages still queued after 2 s flush"]


def test_replay_library_raises_broker_error_before_producing() -> None:
    with pytest.raises(BrokerError, match="no Kafka broker answers"):
        replay(ARCHIVE_MEMBERS[:1], "t", bootstrap=f"127.0.0.1:{free_loopback_port()}", progress=False,
               connect_timeout=1)


@pytest.mark.shared
def test_parquet_is_refused_before_any_broker_contact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parquet = next((SHARED / "data" / "ztf" / "parquet").rglob("*.parquet"), None)
    if parquet is None:
        pytest.skip("no Parquet file under ../shared/data/ztf/parquet")
    with pytest.raises(InputError, match="Parquet holds decoded alerts"):
        replay([parquet], "t", bootstrap="127.0.0.1:1", progress=False)  # nothing listens: never contacted
    assert main(["replay", str(parquet), "--topic", "t", "--bootstrap", "127.0.0.1:1"]) == 2
    assert "Parquet holds decoded alerts" in capsys.readouterr().err
    only_parquet = tmp_path / "night"
    only_parquet.mkdir()
    (only_parquet / "part-0.parquet").write_bytes(parquet.read_bytes())
    with pytest.raises(InputError, match="no Avro alert in"):
        replay([only_parquet], "t", bootstrap="127.0.0.1:1", progress=False)


@pytest.mark.integration
def test_truncated_archive_replays_its_readable_members_and_reports(tmp_path: Path, kafka_broker: str,
                                                                     kafka_topic: str,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    archive, readable = truncated_archive(tmp_path)
    args = _replay_args(str(archive), "--topic", kafka_topic, "--bootstrap", kafka_broker)
    assert run_replay(args) == 1
    captured = capsys.readouterr()
    assert f"replayed {len(readable)}/{len(readable)} messages" in captured.out
    assert f"incomplete input (replayed up to the damage): {archive}: truncated or corrupt after " \
           f"{len(readable)} .avro member(s)" in captured.err
    keys = sorted(key for key, _ in _consume(kafka_broker, kafka_topic, len(readable)))
    assert keys == sorted(f.stem.encode() for f in readable)


def _replay_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_replay_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["replay", *argv])


@pytest.mark.shared
@pytest.mark.integration
def test_cli_replay_prints_summary(datatest: Path, kafka_broker: str, kafka_topic: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    args = _replay_args(str(datatest / "avro_multi_alerts_other.avro"), "--topic", kafka_topic,
                        "--bootstrap", kafka_broker)
    assert run_replay(args) == 0
    assert "replayed 3/3 messages" in capsys.readouterr().out


def test_cli_replay_missing_path_exits_2(tmp_path: Path) -> None:
    assert run_replay(_replay_args(str(tmp_path / "missing"), "--topic", "t")) == 2
