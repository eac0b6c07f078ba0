"""Stage 1 — decode ZTF alerts into a columnar ``AlertBatch``.

Inputs: Avro container bytes (one record each, any ZTF schema version, ZTF- or
Spark-written) or schemaless Avro records with a known writer schema. Every payload goes
through the schema-compiled decoder (``alerts.compiled``), or through fastavro
(``alerts.fastavro_path``) when numba is missing or ``FINK_T2_FAST_AVRO=0``. Both check the
writer schema (``alerts.schema``) and the framing (``alerts.container``) the same way. A
payload that cannot be decoded becomes an error row with its reason; nothing raises.
"""
from __future__ import annotations

from collections.abc import Iterable

from fink_t2.alerts import compiled
from fink_t2.alerts.batch import AlertBatch, records_to_batch
from fink_t2.alerts.fastavro_path import decode_one


def decode_payloads(payloads: Iterable[bytes | None], writer_schema_json: bytes | None = None) -> AlertBatch:
    """Decode Kafka message values (one alert each) into an ``AlertBatch``, one row per payload.

    ``writer_schema_json`` selects schemaless decoding; by default each payload is an
    Avro container with its writer schema embedded (the ZTF wire format).
    """
    if compiled.enabled():
        return compiled.decode_container_payloads(list(payloads), writer_schema_json)
    decoded = [decode_one(payload, writer_schema_json) for payload in payloads]
    return records_to_batch([record for record, _ in decoded], [error for _, error in decoded])
