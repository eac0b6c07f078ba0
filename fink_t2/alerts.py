"""Stage 1 — decode ZTF alerts into a columnar batch.

Inputs: Avro container bytes (one or many records, any ZTF schema version, ZTF- or
Spark-written), schemaless Avro records with a known writer schema, or Fink Parquet files.
Only the fields t2 needs are decoded: a reader schema projected from each writer schema
(parsed once per distinct schema) makes fastavro skip the ~40 KB of cutouts.

A payload that cannot be decoded becomes an error row with its reason; it never raises
for the batch.
"""
from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import fastavro
import numpy as np

from .avro_container import ContainerError, parse_container

#: candidate fields kept per alert (scalars of the current detection).
CANDIDATE_FIELDS: tuple[str, ...] = (
    "jd", "fid", "magpsf", "sigmapsf", "isdiffpos", "rb", "nbad", "jdstarthist", "ssdistnr",
)
#: fields kept per history point (candidate and prv_candidates).
HISTORY_FIELDS: tuple[str, ...] = ("jd", "fid", "magpsf", "sigmapsf", "isdiffpos")
#: Fink-added top-level columns used by the cuts when present.
FINK_FIELDS: tuple[str, ...] = ("roid", "cdsxmatch")
TOP_FIELDS: tuple[str, ...] = ("objectId", "candid", "candidate", "prv_candidates") + FINK_FIELDS
#: isdiffpos values that mean a negative subtraction (source fainter than the template).
NEGATIVE_SUBTRACTION = frozenset({"f", "0"})


@dataclass
class AlertBatch:
    """A batch of decoded alerts, one row per input payload (same order).

    Scalars are length-B arrays; the detection history (current candidate plus
    ``prv_candidates`` with non-null ``magpsf``, in packet order) is ragged: the points of
    alert ``i`` are ``hist_*[offsets[i]:offsets[i+1]]``. Times are JD (days), magnitudes AB.
    """

    object_id: list[str | None]
    candid: np.ndarray  # int64, -1 when unknown
    error: list[str | None]  # None when the alert decoded
    jdstarthist: np.ndarray  # float64 JD, NaN when null
    rb: np.ndarray  # float64, NaN when null
    nbad: np.ndarray  # float64, NaN when null
    ssdistnr: np.ndarray  # float64 arcsec, NaN/negative when none
    candidate_fid: np.ndarray  # int64, -1 when unknown
    roid: np.ndarray | None  # int64 (Fink column), None when absent from every alert
    cdsxmatch: list[str | None] | None  # Fink column, None when absent from every alert
    offsets: np.ndarray  # int64 (B+1,)
    hist_jd: np.ndarray  # float64 JD
    hist_fid: np.ndarray  # int64
    hist_mag: np.ndarray  # float64 magpsf
    hist_magerr: np.ndarray  # float64 sigmapsf
    hist_negative: np.ndarray  # bool, isdiffpos f/0
    extras: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.object_id)


# --------------------------------------------------------------------------- schemas


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


# --------------------------------------------------------------------------- decoding


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


def decode_payloads(payloads: Iterable[bytes | None], writer_schema_json: bytes | None = None) -> AlertBatch:
    """Decode Kafka message values (one alert each) into an ``AlertBatch``.

    ``writer_schema_json`` selects schemaless decoding; by default each payload is an
    Avro container with its writer schema embedded (the ZTF wire format).
    """
    # --- fast path (fink_t2.fast_avro): schema-compiled numba decoder for containers; it
    # sends each payload it does not handle back through decode_one, so results are equal.
    if writer_schema_json is None:
        from . import fast_avro  # lazy: fast_avro imports this module

        if fast_avro.enabled():
            return fast_avro.decode_container_payloads(list(payloads))
    # --- end of fast path
    records: list[dict | None] = []
    errors: list[str | None] = []
    for payload in payloads:
        record, error = decode_one(payload, writer_schema_json)
        records.append(record)
        errors.append(error)
    return records_to_batch(records, errors)


# --------------------------------------------------------------------------- columns


def _float(value: Any) -> float:
    return np.nan if value is None else float(value)


def _history_points(record: dict) -> list[dict]:
    """Detections (non-null magpsf) of ``prv_candidates`` followed by the candidate."""
    points = [p for p in (record.get("prv_candidates") or ()) if p is not None and p.get("magpsf") is not None]
    candidate = record["candidate"]
    if candidate.get("magpsf") is not None:
        points.append(candidate)
    return points


def _check_record(record: dict) -> str | None:
    candidate = record.get("candidate")
    if not isinstance(candidate, dict):
        return "missing_field: candidate"
    for name in ("jd", "fid"):
        if candidate.get(name) is None:
            return f"missing_field: candidate.{name}"
    if record.get("candid") is None and candidate.get("candid") is None:
        return "missing_field: candid"
    return None


def records_to_batch(records: Sequence[dict | None], errors: Sequence[str | None] | None = None) -> AlertBatch:
    """Build an ``AlertBatch`` from decoded records (None entries carry their error)."""
    n = len(records)
    errors = list(errors) if errors is not None else [None] * n
    object_id: list[str | None] = [None] * n
    candid = np.full(n, -1, dtype=np.int64)
    scalars = {name: np.full(n, np.nan) for name in ("jdstarthist", "rb", "nbad", "ssdistnr")}
    candidate_fid = np.full(n, -1, dtype=np.int64)
    has_roid = any(r is not None and "roid" in r for r in records)
    has_xmatch = any(r is not None and "cdsxmatch" in r for r in records)
    roid = np.full(n, -1, dtype=np.int64) if has_roid else None
    cdsxmatch: list[str | None] | None = [None] * n if has_xmatch else None
    counts = np.zeros(n, dtype=np.int64)
    hist: list[dict] = []
    for i, record in enumerate(records):
        if record is None:
            continue
        if errors[i] is None:
            errors[i] = _check_record(record)
        if errors[i] is not None:
            continue
        candidate = record["candidate"]
        object_id[i] = record.get("objectId")
        candid[i] = record.get("candid") if record.get("candid") is not None else candidate["candid"]
        for name, column in scalars.items():
            column[i] = _float(candidate.get(name))
        candidate_fid[i] = candidate["fid"]
        if roid is not None and record.get("roid") is not None:
            roid[i] = record["roid"]
        if cdsxmatch is not None:
            cdsxmatch[i] = record.get("cdsxmatch")
        points = _history_points(record)
        counts[i] = len(points)
        hist.extend(points)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return AlertBatch(
        object_id=object_id, candid=candid, error=errors,
        jdstarthist=scalars["jdstarthist"], rb=scalars["rb"], nbad=scalars["nbad"],
        ssdistnr=scalars["ssdistnr"], candidate_fid=candidate_fid, roid=roid, cdsxmatch=cdsxmatch,
        offsets=offsets,
        hist_jd=np.array([_float(p["jd"]) for p in hist], dtype=np.float64),
        hist_fid=np.array([p["fid"] if p["fid"] is not None else -1 for p in hist], dtype=np.int64),
        hist_mag=np.array([_float(p["magpsf"]) for p in hist], dtype=np.float64),
        hist_magerr=np.array([_float(p.get("sigmapsf")) for p in hist], dtype=np.float64),
        hist_negative=np.array([p.get("isdiffpos") in NEGATIVE_SUBTRACTION for p in hist], dtype=bool),
    )


def read_parquet_records(path: str) -> list[dict]:
    """Read the t2 fields of every alert row of a Fink Parquet file, as records."""
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    columns = [name for name in TOP_FIELDS if name in schema.names]
    table = pq.read_table(path, columns=columns)
    return table.to_pylist()
