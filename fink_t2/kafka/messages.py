"""Output messages: enriched alerts, compact scores and dead-letter records.

Enriched alert = the original ZTF alert plus the t2 fields, as one Avro object container
(writer schema embedded, like the ZTF packets), so ``fastavro.reader`` on the message bytes
yields the alert with ``candid`` and the t2 fields. The t2 fields are appended at the end
of the top-level record. Avro encodes a record as the concatenation of its fields, so the
enriched record bytes are the original record bytes followed by the encoded t2 fields: no
re-encoding of the 44 KB alert (cutouts included) is needed.

With ``[output] enriched_format = "schemaless"`` the message is the bare enriched record (no
container header: ~23 KB less per alert), its writer schema published once as a
``<fingerprint>.avsc`` file (``fink_t2.kafka.schema_files``), and the Kafka header
``SCHEMA_FINGERPRINT_HEADER`` names it.

Enriched schema version: ``ENRICHED_SCHEMA_VERSION`` (field ``t2_schema_version``).
"""
from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import fastavro
import fastavro.schema
import numpy as np

from fink_t2.alerts.container import ContainerError, build_single_record_container, single_record
from fink_t2.contract import ALERT_COLUMNS, EMBEDDING_FIELD

ENRICHED_SCHEMA_VERSION = "1.1"  # 1.1: t2_embedding

#: Avro fields appended to the alert record (documented in README "Output topics").
T2_FIELDS: tuple[dict, ...] = (
    {"name": "t2_schema_version", "type": "string", "doc": "fink_t2 enriched-alert schema version"},
    {"name": "t2_status", "type": "string", "doc": "ok | cut:<reason> | error:<reason>"},
    {"name": "t2_class", "type": ["null", "string"], "default": None, "doc": "argmax class (null unless ok)"},
    {"name": "t2_probs", "type": ["null", {"type": "map", "values": "double"}], "default": None,
     "doc": "class name -> probability, sums to 1 (null unless ok)"},
    {"name": "t2_snia", "type": ["null", "double"], "default": None, "doc": "P(SNIa) (null unless ok)"},
    {"name": "t2_model", "type": "string", "doc": "model id (fink_t2/data/models/<id>.json)"},
    {"name": EMBEDDING_FIELD, "type": ["null", {"type": "array", "items": "float"}], "default": None,
     "doc": "ASTROMER embedding: mean over the observations of the encoder's last layer, float32 "
            "(null unless ok and [embedding] enabled)"},
)
#: Score-record key of the embedding; present only when the result row has it ([embedding] enabled).
EMBEDDING_KEY = EMBEDDING_FIELD
_T2_RECORD = fastavro.parse_schema({"type": "record", "name": "t2_fields", "fields": list(T2_FIELDS)})

DEADLETTER_SCHEMA = fastavro.parse_schema({
    "type": "record", "name": "deadletter", "namespace": "fink_t2",
    "doc": "An input message that could not be classified, with its reason and origin",
    "fields": [
        {"name": "reason", "type": "string"},
        {"name": "topic", "type": ["null", "string"], "default": None},
        {"name": "partition", "type": ["null", "int"], "default": None},
        {"name": "offset", "type": ["null", "long"], "default": None},
        {"name": "key", "type": ["null", "bytes"], "default": None},
        {"name": "value", "type": ["null", "bytes"], "default": None},
        {"name": "t2_schema_version", "type": "string"},
        {"name": "key_size", "type": ["null", "long"], "default": None, "doc": "bytes of the source key"},
        {"name": "value_size", "type": ["null", "long"], "default": None, "doc": "bytes of the source value"},
        {"name": "truncated", "type": "boolean", "default": False,
         "doc": "key/value cut to fit the broker's message limit (their sizes above are the originals)"},
    ],
})
#: Longest reason kept in a dead letter, characters (reasons quote exceptions of hostile input).
MAX_REASON_CHARS = 1000
#: Bytes the container may grow by when key and value are refilled after measuring it without
#: them: two bytes-length varints and the block byte-count varint, at most 10 B each.
_VARINT_SLACK_BYTES = 32


#: Kafka header of every schemaless enriched message: the CRC-64-AVRO ("Rabin") fingerprint of the
#: parsing canonical form of its writer schema, as 16 ASCII hex digits of its 8 bytes in the order
#: Avro single-object encoding writes them after ``C3 01`` (little-endian; fastavro's hex digest).
SCHEMA_FINGERPRINT_HEADER = "avro.schema.crc64"
FINGERPRINT_ALGORITHM = "CRC-64-AVRO"


class EnrichError(ValueError):
    """The alert bytes cannot carry the t2 fields (e.g. the schema already has them)."""


def _t2_values(result: Mapping[str, Any]) -> dict[str, Any]:
    snia = result.get("t2_snia")
    probs = result.get("t2_probs")
    return {
        "t2_schema_version": ENRICHED_SCHEMA_VERSION,
        "t2_status": result["t2_status"],
        "t2_class": result.get("t2_class"),
        "t2_probs": dict(probs) if probs else None,
        "t2_snia": None if snia is None or (isinstance(snia, float) and math.isnan(snia)) else float(snia),
        "t2_model": result["t2_model"],
        EMBEDDING_KEY: _embedding_list(result.get(EMBEDDING_KEY)),
    }


def _embedding_list(embedding: Any) -> list[float] | None:
    """The embedding as Python floats of its float32 values (exact in Avro ``float``), or None."""
    if embedding is None or (isinstance(embedding, float) and math.isnan(embedding)):
        return None
    return np.asarray(embedding, dtype=np.float32).tolist()


def _shortest_float32(values: list[float]) -> list[float]:
    """Each float32 value as the shortest decimal that reads back as the same float32 (JSON size)."""
    return [float(str(v)) for v in np.asarray(values, dtype=np.float32)]


@lru_cache(maxsize=64)
def enriched_schema_json(writer_schema_json: bytes) -> bytes:
    """The alert's writer schema with the t2 fields appended (cached per writer schema)."""
    schema = json.loads(writer_schema_json)
    existing = {f["name"] for f in schema["fields"]}
    clash = existing & {f["name"] for f in T2_FIELDS}
    if clash:
        raise EnrichError(f"alert schema already has t2 fields: {sorted(clash)}")
    schema["fields"] = schema["fields"] + list(T2_FIELDS)
    return json.dumps(schema, separators=(",", ":")).encode()


@dataclass(frozen=True)
class EnrichedSchema:
    """An enriched writer schema: its JSON (the ``.avsc`` content) and its fingerprint (hex)."""

    json: bytes
    fingerprint: str

    @property
    def file_name(self) -> str:
        """Name of its published file, ``<fingerprint>.avsc``."""
        return f"{self.fingerprint}.avsc"

    @property
    def header(self) -> tuple[str, bytes]:
        """The Kafka header that names this schema."""
        return SCHEMA_FINGERPRINT_HEADER, self.fingerprint.encode()


def schema_fingerprint(schema_json: bytes | str) -> str:
    """CRC-64-AVRO fingerprint (16 hex digits) of the parsing canonical form of a schema's JSON."""
    canonical = fastavro.schema.to_parsing_canonical_form(json.loads(schema_json))
    return fastavro.schema.fingerprint(canonical, FINGERPRINT_ALGORITHM)


@lru_cache(maxsize=64)
def enriched_schema(writer_schema_json: bytes) -> EnrichedSchema:
    """The enriched schema of an alert writer schema, with its fingerprint (cached per writer schema)."""
    schema_json = enriched_schema_json(writer_schema_json)
    return EnrichedSchema(schema_json, schema_fingerprint(schema_json))


def encode_t2_fields(result: Mapping[str, Any]) -> bytes:
    """Avro binary encoding of the t2 fields of one result row."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, _T2_RECORD, _t2_values(result))
    return buf.getvalue()


def enrich_alert(payload: bytes, result: Mapping[str, Any]) -> bytes:
    """The enriched alert container: the original alert record + the t2 fields.

    ``result`` holds the ``classify`` output columns of this alert. The container is always
    written uncompressed; a deflate alert is inflated (at most ``MAX_BLOCK_BYTES``).
    """
    container, record = _one_alert(payload)
    schema_json = enriched_schema_json(container.schema_json)
    return build_single_record_container(schema_json, container.sync, record + encode_t2_fields(result))


def enrich_alert_schemaless(payload: bytes, result: Mapping[str, Any]) -> tuple[bytes, EnrichedSchema]:
    """The enriched alert as a bare Avro record (``fastavro.schemaless_reader`` with the schema
    reads it), and its writer schema; same record bytes as :func:`enrich_alert`'s container holds."""
    container, record = _one_alert(payload)
    return record + encode_t2_fields(result), enriched_schema(container.schema_json)


def _one_alert(payload: bytes):
    try:
        return single_record(payload)  # decompressed when the codec is deflate
    except ContainerError as exc:
        raise EnrichError(f"not a one-alert container: {exc}") from exc


#: the integer alert columns of a score record (the others but objectId are numbers, deg / JD / mag)
_INTEGER_COLUMNS = frozenset({"candid", "fid"})


def score_message(result: Mapping[str, Any]) -> bytes:
    """Compact JSON score record, UTF-8: the alert columns (``contract.ALERT_COLUMNS``; null when
    unknown) and the t2 fields. Filter topics carry these records. ``t2_embedding`` is there only
    when ``result`` has that key (embeddings enabled): a list of float32 values written as the
    shortest decimals that read back as the same float32, or null."""
    values = _t2_values(result)
    values.pop("t2_schema_version")
    if EMBEDDING_KEY not in result:
        values.pop(EMBEDDING_KEY)
    elif values[EMBEDDING_KEY] is not None:
        values[EMBEDDING_KEY] = _shortest_float32(values[EMBEDDING_KEY])
    alert = {name: _alert_value(name, result.get(name)) for name in ALERT_COLUMNS}
    return json.dumps(alert | values, separators=(",", ":"), allow_nan=False).encode()


def _alert_value(name: str, value: Any) -> Any:
    if name == "objectId":
        return value
    if name in _INTEGER_COLUMNS:
        return _int_or_none(value)
    return _finite_or_none(value)


def _finite_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):  # None, pandas NA
        return None
    return number if math.isfinite(number) else None


def deadletter_message(reason: str, value: bytes | None, key: bytes | None = None, topic: str | None = None,
                       partition: int | None = None, offset: int | None = None,
                       max_bytes: int | None = None) -> bytes:
    """Dead-letter record (Avro container): reason, origin, the raw bytes and their sizes.

    With ``max_bytes``, a record that would not fit in ``max_bytes`` keeps only the first bytes
    of the source key and value (key first), says so in ``reason`` and sets ``truncated``.
    """
    record = {
        "reason": reason[:MAX_REASON_CHARS], "topic": topic, "partition": partition, "offset": offset,
        "key": key, "value": value, "t2_schema_version": ENRICHED_SCHEMA_VERSION,
        "key_size": None if key is None else len(key), "value_size": None if value is None else len(value),
        "truncated": False,
    }
    encoded = _deadletter_container(record)
    if max_bytes is None or len(encoded) <= max_bytes:
        return encoded
    return _truncated_deadletter(record, max_bytes)


def _deadletter_container(record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.writer(out, DEADLETTER_SCHEMA, [record])
    return out.getvalue()


def _truncated_deadletter(record: dict[str, Any], max_bytes: int) -> bytes:
    """``record`` with its key and value cut so that the container is at most ``max_bytes``."""
    key, value = record["key"] or b"", record["value"] or b""
    reason = (f"{record['reason']} [dead letter truncated to {max_bytes} bytes: "
              f"key {len(key)} B, value {len(value)} B]")
    framed = record | {"reason": reason, "truncated": True, "key": b"", "value": b""}
    room = max_bytes - len(_deadletter_container(framed)) - _VARINT_SLACK_BYTES
    if room < 0:
        raise ValueError(f"a dead letter does not fit in {max_bytes} bytes even without its key and value")
    kept_key = key[:room]
    kept_value = value[:room - len(kept_key)]
    return _deadletter_container(framed | {"key": kept_key if record["key"] is not None else None,
                                           "value": kept_value if record["value"] is not None else None})


def _int_or_none(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):  # pandas NA and friends
        return None
