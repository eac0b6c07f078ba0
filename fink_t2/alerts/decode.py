"""Stage 1 — decode ZTF alerts into a columnar ``AlertBatch``.

Inputs: Avro container bytes (one or many records, any ZTF schema version, ZTF- or
Spark-written) or schemaless Avro records with a known writer schema. Containers go through
the schema-compiled decoder (``alerts.compiled``); other payloads through fastavro
(``alerts.fastavro_path``). A payload that cannot be decoded becomes an error row with its
reason; it never raises for the batch.
"""
from __future__ import annotations

from collections.abc import Iterable

from fink_t2.alerts import compiled
from fink_t2.alerts.batch import AlertBatch, records_to_batch
from fink_t2.alerts.fastavro_path import decode_one


def decode_payloads(payloads: Iterable[bytes | None], writer_schema_json: bytes | None = None) -> AlertBatch:
    """Decode Kafka message values (one alert each) into an ``AlertBatch``.

    ``writer_schema_json`` selects schemaless decoding; by default each payload is an
    Avro container with its writer schema embedded (the ZTF wire format).
    """
    # --- fast path (fink_t2.alerts.compiled): schema-compiled numba decoder for containers; it
    # sends each payload it does not handle back through decode_one, so results are equal.
    if writer_schema_json is None:
        if compiled.enabled():
            return compiled.decode_container_payloads(list(payloads))
    # --- end of fast path
    records: list[dict | None] = []
    errors: list[str | None] = []
    for payload in payloads:
        record, error = decode_one(payload, writer_schema_json)
        records.append(record)
        errors.append(error)
    return records_to_batch(records, errors)
