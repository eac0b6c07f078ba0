"""``fink-t2 consume``: read an output topic as a follow-up consumer would, one line per alert.

Every output format of the job is recognised from the message itself: an Avro object container
(enriched alerts in ``container`` format, dead letters), a schemaless enriched record (its header
``messages.SCHEMA_FINGERPRINT_HEADER`` names ``<schema dir>/<fingerprint>.avsc``), or a JSON score
(scores and filter topics). A message that is none of these, or whose fields are not of the types
the job writes, is reported as such, never a crash: containers go through the job's own bounded
decoder (``alerts.fastavro_path``: framing, block size and writer schema checked first).
The consumer joins a group of its own (nothing is committed) and starts at the earliest offset.
"""
from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
import fastavro.schema
import fastavro.validation
from confluent_kafka import Consumer, KafkaException

from fink_t2.alerts.batch import CANDIDATE_KINDS, KIND_PYTHON_TYPES, TOP_KINDS
from fink_t2.alerts.container import MAGIC
from fink_t2.alerts.fastavro_path import decode_one
from fink_t2.contract import ALERT_COLUMNS
from fink_t2.kafka.broker import MAX_MESSAGE_BYTES, is_loopback_bootstrap
from fink_t2.kafka.messages import T2_FIELDS
from fink_t2.kafka.schema_files import SchemaFileError, fingerprint_of, published_schema, read_schemaless
from fink_t2.kafka.security import KafkaEndpoint, as_kafka_conf, client_config
from fink_t2.science.classify import T2_COLUMNS

#: What decoding a message that is not what it claims can raise (fastavro's errors on bad bytes or
#: a bad embedded schema, json's, and ours): reported as an ``undecodable`` line.
_DECODE_ERRORS = (ValueError, EOFError, StopIteration, IndexError, KeyError, TypeError, RecursionError,
                  fastavro.schema.SchemaParseException, fastavro.validation.ValidationError, SchemaFileError)
#: kind (``alerts.batch``) of each alert column a line shows, as in the ZTF alert
_ALERT_COLUMN_KINDS = {name: (TOP_KINDS | CANDIDATE_KINDS)[name] for name in ALERT_COLUMNS}
#: the t2 fields a line shows, with the Avro types the job writes them with (``messages.T2_FIELDS``)
_T2_SHOWN = fastavro.parse_schema({"type": "record", "name": "t2_shown",
                                   "fields": [field for field in T2_FIELDS if field["name"] in T2_COLUMNS]})
#: longest reason kept for an undecodable message or a dead letter, characters (one line each)
MAX_REASON_CHARS = 300

#: Seconds without a new message after which ``consume`` stops (the end of the topic, for a finished job).
DEFAULT_IDLE_SECONDS = 10.0
#: Longest wait for the group to be given the topic's partitions, seconds: the idle clock starts only
#: then, so a slow group join on a loaded broker is not taken for an empty topic.
ASSIGNMENT_TIMEOUT_SECONDS = 60.0


class RemoteBrokerRefused(ValueError):
    """``consume`` is loopback-only unless told otherwise."""


@dataclass(frozen=True)
class Consumed:
    """One decoded message: its kind (``enriched``, ``score``, ``deadletter``, ``undecodable``) and
    the alert columns + t2 fields it carries (``reason`` for dead letters and undecodable ones)."""

    kind: str
    key: bytes | None
    fields: dict[str, Any]

    def line(self) -> str:
        """One line: kind, key, objectId, candid, ra, dec, jd, magpsf, fid, status, class, P(class), P(SNIa)."""
        f = self.fields
        if self.kind in ("deadletter", "undecodable"):
            return f"{self.kind:<11} key={_text(self.key)} reason={f.get('reason')}"
        probs = f.get("t2_probs") or {}
        best = probs.get(f.get("t2_class")) if f.get("t2_class") else None
        return (f"{self.kind:<11} {f.get('objectId')} {f.get('candid')} ra={_num(f.get('ra'), 6)} "
                f"dec={_num(f.get('dec'), 6)} jd={_num(f.get('jd'), 5)} mag={_num(f.get('magpsf'), 3)} "
                f"fid={f.get('fid')} {f.get('t2_status')} {f.get('t2_class') or '-'} "
                f"P={_num(best, 3)} P(SNIa)={_num(f.get('t2_snia'), 3)}")


def decode_message(value: bytes | None, headers: list[tuple[str, bytes]] | None = None,
                   key: bytes | None = None, schema_dir: Path | None = None) -> Consumed:
    """What one output message holds, whatever its format (see the module docstring)."""
    try:
        if value and value.startswith(MAGIC):
            record, reason = decode_one(value)
            if record is None:
                raise ValueError(reason)
            return _from_record(record, key)
        fingerprint = fingerprint_of(headers)
        if fingerprint is not None:
            if schema_dir is None:
                raise SchemaFileError(f"schemaless message (schema {fingerprint}): give --schema-dir")
            return _from_record(read_schemaless(value or b"", published_schema(schema_dir, fingerprint)), key)
        if value and value.lstrip().startswith(b"{"):
            return Consumed("score", key, _checked_fields(json.loads(value)))  # a JSON object: it starts with {
        raise ValueError("neither an Avro container, a schemaless record with its header, nor a JSON score")
    except _DECODE_ERRORS as exc:
        return Consumed("undecodable", key, {"reason": _one_line(f"{type(exc).__name__}: {exc}")})


def _from_record(record: dict, key: bytes | None) -> Consumed:
    if "reason" in record and "t2_status" not in record:
        return Consumed("deadletter", key, {"reason": _one_line(str(record["reason"]))})
    candidate = record.get("candidate") or {}  # a record (or null): alerts.schema checked it
    # top level first, else the candidate's (a null top-level candid is the candidate's: batch.record_candid)
    fields = {name: candidate.get(name) if record.get(name) is None else record[name] for name in ALERT_COLUMNS}
    fields |= {name: record.get(name) for name in T2_COLUMNS}
    return Consumed("enriched", key, _checked_fields(fields))


def _one_line(text: str) -> str:
    """``text`` with its whitespace runs (newlines too) as single spaces, at most ``MAX_REASON_CHARS``."""
    return " ".join(text[:4 * MAX_REASON_CHARS].split())[:MAX_REASON_CHARS].rstrip()


def _checked_fields(fields: dict) -> dict:
    """``fields`` when the alert columns (null or of their ZTF kind) and the t2 fields (their Avro
    types) are what the job writes; ``ValueError`` or ``ValidationError`` naming the field otherwise."""
    for name, kind in _ALERT_COLUMN_KINDS.items():
        value = fields.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, KIND_PYTHON_TYPES[kind])):
            raise ValueError(f"{name} is a {type(value).__name__} (expected {kind} or null)")
    fastavro.validation.validate({name: fields.get(name) for name in T2_COLUMNS}, _T2_SHOWN, raise_errors=True)
    return fields


def consumer_for(endpoint: KafkaEndpoint, topic: str, on_assign=None) -> Consumer:
    """A consumer of ``topic`` in a group of its own, from the earliest offset, committing nothing.

    ``on_assign(consumer, partitions)`` is called when the group hands it the partitions."""
    consumer = Consumer(client_config(endpoint, **{
        "group.id": f"fink-t2-consume-{uuid.uuid4().hex}", "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "fetch.max.bytes": 4 * MAX_MESSAGE_BYTES,
        "max.partition.fetch.bytes": MAX_MESSAGE_BYTES, "log_level": 3,
    }))
    consumer.subscribe([topic], **({"on_assign": on_assign} if on_assign else {}))
    return consumer


def consume(endpoint: KafkaEndpoint, topic: str, max_messages: int | None = None,
            idle_seconds: float = DEFAULT_IDLE_SECONDS, schema_dir: Path | None = None,
            allow_remote_broker: bool = False) -> Iterator[Consumed]:
    """The decoded messages of ``topic``, until ``max_messages`` or ``idle_seconds`` without one.

    Refuses a broker off loopback unless ``allow_remote_broker``."""
    bootstrap = as_kafka_conf(endpoint).bootstrap_servers
    if not allow_remote_broker and not is_loopback_bootstrap(bootstrap):
        raise RemoteBrokerRefused(f"{bootstrap} is not on loopback: pass --allow-remote-broker to read from it")
    assigned_at: list[float] = []
    consumer = consumer_for(endpoint, topic, on_assign=lambda _c, _p: assigned_at.append(time.monotonic()))
    try:
        count, started = 0, time.monotonic()
        last = started
        while max_messages is None or count < max_messages:
            msg = consumer.poll(min(1.0, idle_seconds))
            if msg is None:
                if _idle_over(assigned_at, last, started, idle_seconds):
                    return
                continue
            if msg.error():
                raise KafkaException(msg.error())
            count, last = count + 1, time.monotonic()
            yield decode_message(msg.value(), msg.headers(), msg.key(), schema_dir)
    finally:
        consumer.close()


def _idle_over(assigned_at: list[float], last: float, started: float, idle_seconds: float) -> bool:
    """True once ``idle_seconds`` passed without a message since the last one or the assignment
    (or ``ASSIGNMENT_TIMEOUT_SECONDS`` passed without an assignment)."""
    now = time.monotonic()
    if not assigned_at:
        return now - started >= max(idle_seconds, ASSIGNMENT_TIMEOUT_SECONDS)
    return now - max(last, assigned_at[-1]) >= idle_seconds


def _num(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def _text(key: bytes | None) -> str:
    return "-" if key is None else key.decode("utf-8", errors="replace")
