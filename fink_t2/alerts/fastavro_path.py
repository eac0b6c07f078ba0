"""The fastavro decoding path: alerts when numba is missing (or ``FINK_T2_FAST_AVRO=0``),
multi-record Avro files, and Fink Parquet files.

Avro goes through the same checks as the compiled decoder: the writer schema passes
``alerts.schema`` (bounded, not recursive: fastavro recurses and loops without limit on
such schemas) and the framing ``alerts.container`` (codec null or deflate, blocks of at most
``MAX_BLOCK_BYTES``). Records are decoded with their full writer schema, every string decoded
and every logical type converted, so whatever this path accepts ``fastavro.reader`` can read
too. A payload that cannot be decoded becomes its reason; it never raises for the batch.
"""
from __future__ import annotations

import io

import fastavro

from fink_t2.alerts.batch import TOP_FIELDS
from fink_t2.alerts.container import (
    MAX_BLOCK_BYTES, ContainerError, block_bytes, parse_container, payload_problem, single_record,
)
from fink_t2.alerts.schema import SchemaError, checked_schema

#: what fastavro raises on record bytes that do not decode (end of data, bad UTF-8, union or
#: enum index out of range, a date out of Python's range).
FASTAVRO_ERRORS = (EOFError, ValueError, IndexError, OverflowError)


def _read_records(data: bytes, parsed_schema: dict, count: int) -> list[dict]:
    """``count`` records decoded from ``data``, which they must fill exactly."""
    if count > max(len(data), 1):  # a record takes >= 1 byte unless it can hold no alert
        raise ContainerError(f"block of {len(data)} bytes cannot hold {count} records")
    stream = io.BytesIO(data)
    records = [fastavro.schemaless_reader(stream, parsed_schema, None) for _ in range(count)]
    if stream.tell() != len(data):
        raise ContainerError("block has trailing bytes (count/size mismatch)")
    return records


def decode_container_records(payload: bytes) -> list[dict]:
    """Every record of one Avro container (e.g. a file), all fields decoded.

    Raises ``ContainerError``, ``SchemaError`` or one of ``FASTAVRO_ERRORS``.
    """
    container = parse_container(payload)
    parsed = checked_schema(container.schema_json).parsed
    return [record for block in container.blocks
            for record in _read_records(block_bytes(container.codec, block.data), parsed, block.count)]


def _decode_error(exc: Exception) -> str:
    if isinstance(exc, ContainerError):
        return f"avro_decode: {exc}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"avro_decode: {type(exc).__name__}: {text}"[:300] if text else f"avro_decode: {type(exc).__name__}"


def decode_one(payload: bytes | None, writer_schema_json: bytes | None = None) -> tuple[dict | None, str | None]:
    """Decode one Kafka message (one alert): (record, None) or (None, reason).

    ``payload`` is a one-record Avro container, or with ``writer_schema_json`` a schemaless record.
    """
    problem = payload_problem(payload)
    if problem is not None:
        return None, problem
    try:
        if writer_schema_json is None:
            container, data = single_record(payload)
            writer_schema_json = container.schema_json
        elif len(payload) > MAX_BLOCK_BYTES:
            raise ContainerError(f"record larger than {MAX_BLOCK_BYTES} bytes")
        else:
            data = payload
        return _read_records(data, checked_schema(writer_schema_json).parsed, 1)[0], None
    except SchemaError as exc:
        return None, str(exc)
    except FASTAVRO_ERRORS as exc:  # ContainerError is a ValueError
        return None, _decode_error(exc)


def read_parquet_records(path: str) -> list[dict]:
    """Read the t2 fields of every alert row of a Fink Parquet file, as records."""
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    columns = [name for name in TOP_FIELDS if name in schema.names]
    table = pq.read_table(path, columns=columns)
    return table.to_pylist()
