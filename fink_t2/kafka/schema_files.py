"""Published enriched schemas: ``<fingerprint>.avsc`` files, written once by the job, read by consumers.

A schemaless enriched message names its writer schema by the header
``messages.SCHEMA_FINGERPRINT_HEADER``; its consumer reads ``<folder>/<fingerprint>.avsc``.
A file is written whole (temporary file + rename), so a reader never sees half a schema, and
never rewritten: the fingerprint names its content.
"""
from __future__ import annotations

import io
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro

from fink_t2.kafka.messages import SCHEMA_FINGERPRINT_HEADER, EnrichedSchema, schema_fingerprint


class SchemaFileError(ValueError):
    """A schemaless message whose schema file is missing, unreadable or not the one it names."""


def publish_schema(schema: EnrichedSchema, folder: Path) -> Path:
    """Write ``folder/<fingerprint>.avsc`` unless it exists; its path."""
    path = Path(folder) / schema.file_name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{schema.file_name}.{os.getpid()}.partial")
        partial.write_bytes(schema.json)
        os.replace(partial, path)
    return path


def fingerprint_of(headers: list[tuple[str, bytes]] | None) -> str | None:
    """The schema fingerprint a message's headers carry (None without the header)."""
    for name, value in headers or ():
        if name == SCHEMA_FINGERPRINT_HEADER and value is not None:
            return value.decode("ascii", errors="replace")
    return None


@lru_cache(maxsize=64)
def load_schema_file(path: Path, fingerprint: str | None = None) -> Any:
    """The parsed schema of an ``.avsc`` file; with ``fingerprint``, the file must have it."""
    try:
        text = Path(path).read_bytes()
        found = schema_fingerprint(text)
        parsed = fastavro.parse_schema(json.loads(text))
    except (OSError, ValueError) as exc:
        raise SchemaFileError(f"schema file {path}: {exc}") from exc
    if fingerprint is not None and found != fingerprint:
        raise SchemaFileError(f"schema file {path} has fingerprint {found}, the message names {fingerprint}")
    return parsed


def published_schema(folder: Path, fingerprint: str) -> Any:
    """The parsed schema ``folder/<fingerprint>.avsc`` (checked against its name)."""
    if not all(c in "0123456789abcdef" for c in fingerprint) or len(fingerprint) != 16:
        raise SchemaFileError(f"header {SCHEMA_FINGERPRINT_HEADER} = {fingerprint!r} is not a 16-hex-digit fingerprint")
    path = Path(folder) / f"{fingerprint}.avsc"
    if not path.is_file():
        raise SchemaFileError(f"no published schema {path} for fingerprint {fingerprint}")
    return load_schema_file(path, fingerprint)


def read_schemaless(value: bytes, schema: Any) -> dict:
    """The record of a schemaless message; the whole value must be that one record."""
    stream = io.BytesIO(value)
    try:
        record = fastavro.schemaless_reader(stream, schema)
    except (EOFError, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise SchemaFileError(f"not a record of its schema: {type(exc).__name__}: {exc}") from exc
    if stream.tell() != len(value):
        raise SchemaFileError(f"{len(value) - stream.tell()} bytes after the record")
    return record
