"""The fastavro decoding path: any Avro the compiled decoder does not model, and Parquet.

A reader schema projected from each writer schema (parsed once per distinct schema) makes
fastavro skip the ~40 KB of cutouts. A payload that cannot be decoded becomes its reason;
it never raises for the batch.
"""
from __future__ import annotations

import io
import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import fastavro

from fink_t2.alerts.batch import CANDIDATE_FIELDS, HISTORY_FIELDS, TOP_FIELDS
from fink_t2.alerts.container import ContainerError, parse_container


def _project_record(schema: dict, keep: Sequence[str]) -> dict:
    fields = [f for f in schema["fields"] if f["name"] in keep]
    return {k: v for k, v in schema.items() if k != "fields"} | {"fields": fields}


def _inner_record(field_type: Any) -> dict | None:
    """The record schema inside a field type (union, array of records), if any."""
    if isinstance(field_type, dict):
        if field_type.get("type") == "record":
            return field_type
        if field_type.get("type") == "array":
            return _inner_record(field_type["items"])
    if isinstance(field_type, list):
        for branch in field_type:
            found = _inner_record(branch)
            if found is not None:
                return found
    return None


def _replace_record(field_type: Any, projected: dict) -> Any:
    if isinstance(field_type, dict) and field_type.get("type") == "record":
        return projected
    if isinstance(field_type, dict) and field_type.get("type") == "array":
        return field_type | {"items": _replace_record(field_type["items"], projected)}
    if isinstance(field_type, list):
        return [_replace_record(b, projected) for b in field_type]
    return field_type


def project_alert_schema(writer: dict) -> dict:
    """Reader schema with only the fields t2 reads; names are kept so it resolves."""
    wanted = {"candidate": CANDIDATE_FIELDS, "prv_candidates": HISTORY_FIELDS}
    fields = []
    for f in writer["fields"]:
        if f["name"] not in TOP_FIELDS:
            continue
        inner = _inner_record(f["type"]) if f["name"] in wanted else None
        if inner is not None:
            f = f | {"type": _replace_record(f["type"], _project_record(inner, wanted[f["name"]]))}
        fields.append(f)
    return {k: v for k, v in writer.items() if k != "fields"} | {"fields": fields}


@lru_cache(maxsize=64)
def _parsed_schemas(schema_json: bytes) -> tuple[Any, Any]:
    """(writer, projected reader) parsed schemas for one writer schema JSON, cached."""
    writer = json.loads(schema_json)
    parsed_writer = fastavro.parse_schema(writer)
    parsed_reader = fastavro.parse_schema(project_alert_schema(writer))
    return parsed_writer, parsed_reader




def decode_container_records(payload: bytes) -> list[dict]:
    """Decode every record of one Avro container to dicts with only the t2 fields."""
    container = parse_container(payload)
    writer, reader = _parsed_schemas(container.schema_json)
    if container.codec == "null":
        records = []
        for block in container.blocks:
            stream = io.BytesIO(block.data)
            records.extend(fastavro.schemaless_reader(stream, writer, reader) for _ in range(block.count))
            if stream.tell() != len(block.data):
                raise ContainerError("block has trailing bytes (count/size mismatch)")
        return records
    # compressed blocks: let fastavro handle the codec
    return list(fastavro.reader(io.BytesIO(payload), reader_schema=reader))


def decode_schemaless(payload: bytes, writer_schema_json: bytes) -> dict:
    """Decode one schemaless (header-less) record written with ``writer_schema_json``."""
    writer, reader = _parsed_schemas(writer_schema_json)
    return fastavro.schemaless_reader(io.BytesIO(payload), writer, reader)


def _decode_error(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


def decode_one(payload: bytes | None, writer_schema_json: bytes | None = None) -> tuple[dict | None, str | None]:
    """Decode one Kafka message (one alert): (record, None) or (None, reason)."""
    if payload is None or len(payload) == 0:
        return None, "empty_message"
    try:
        if writer_schema_json is not None:
            return decode_schemaless(payload, writer_schema_json), None
        records = decode_container_records(payload)
    except Exception as exc:  # untrusted bytes: any decoder failure becomes this alert's reason
        return None, f"avro_decode: {_decode_error(exc)}"
    if len(records) != 1:
        return None, f"expected 1 record per message, found {len(records)}"
    return records[0], None


def read_parquet_records(path: str) -> list[dict]:
    """Read the t2 fields of every alert row of a Fink Parquet file, as records."""
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    columns = [name for name in TOP_FIELDS if name in schema.names]
    table = pq.read_table(path, columns=columns)
    return table.to_pylist()
