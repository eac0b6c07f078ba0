"""Schemaless enriched alerts and their published ``<fingerprint>.avsc`` schema files."""
from __future__ import annotations

import io
import json

import fastavro
import fastavro.schema
import pytest

from fink_t2.alerts.container import single_record
from fink_t2.kafka.messages import (SCHEMA_FINGERPRINT_HEADER, enrich_alert, enrich_alert_schemaless,
                                    enriched_schema, schema_fingerprint)
from fink_t2.kafka.schema_files import (SchemaFileError, fingerprint_of, publish_schema, published_schema,
                                        read_schemaless)
from fink_t2.science.classify import classify


@pytest.fixture(scope="module")
def classified(sample_payloads):
    return sample_payloads, classify(sample_payloads).to_dict("records")


def test_schemaless_record_read_with_the_published_schema_equals_the_container_record(classified, tmp_path):
    """Every sample alert (schemas 3.1 and 3.3, ok and cut): the bare record read with the .avsc
    the job publishes is the record fastavro reads from today's container message."""
    payloads, rows = classified
    for payload, row in zip(payloads, rows):
        container_record = next(fastavro.reader(io.BytesIO(enrich_alert(payload, row))))
        value, schema = enrich_alert_schemaless(payload, row)
        publish_schema(schema, tmp_path)
        assert read_schemaless(value, published_schema(tmp_path, schema.fingerprint)) == container_record
    assert {row["t2_status"] == "ok" for row in rows} == {True, False}
    assert len(list(tmp_path.glob("*.avsc"))) == 2  # one file per writer schema, not per alert


def test_the_fingerprint_is_crc64_avro_of_the_canonical_form_of_the_container_schema(classified):
    payload, row = classified[0][0], classified[1][0]
    value, schema = enrich_alert_schemaless(payload, row)
    container_schema = single_record(enrich_alert(payload, row))[0].schema_json
    assert schema.json == container_schema  # the .avsc is the schema the container embeds
    canonical = fastavro.schema.to_parsing_canonical_form(json.loads(container_schema))
    assert schema.fingerprint == fastavro.schema.fingerprint(canonical, "CRC-64-AVRO")
    assert len(bytes.fromhex(schema.fingerprint)) == 8  # single-object encoding's 8 bytes
    assert schema.header == (SCHEMA_FINGERPRINT_HEADER, schema.fingerprint.encode())
    assert fingerprint_of([("other", b"x"), schema.header]) == schema.fingerprint
    # the canonical form ignores docs and JSON layout: a re-indented schema keeps its fingerprint
    assert schema_fingerprint(json.dumps(json.loads(container_schema), indent=4)) == schema.fingerprint


def test_the_schemaless_message_is_the_container_minus_its_header(classified):
    payload, row = classified[0][0], classified[1][0]
    container = enrich_alert(payload, row)
    value, schema = enrich_alert_schemaless(payload, row)
    assert value in container  # the same record bytes
    # container = magic 4 + metadata map (schema JSON, codec) + sync 16 + block count/size + record + sync 16
    assert len(container) - len(value) > len(schema.json) + 2 * 16


def test_a_published_file_is_written_once_and_checked_against_its_name(classified, tmp_path):
    payload, row = classified[0][0], classified[1][0]
    _, schema = enrich_alert_schemaless(payload, row)
    path = publish_schema(schema, tmp_path / "schemas")
    assert path.read_bytes() == schema.json and path.name == f"{schema.fingerprint}.avsc"
    assert publish_schema(schema, tmp_path / "schemas") == path and len(list(path.parent.iterdir())) == 1
    other = tmp_path / "other"
    other.mkdir()
    (other / path.name).write_text('{"type": "record", "name": "x", "fields": []}')
    with pytest.raises(SchemaFileError, match="has fingerprint .* the message names"):
        published_schema(other, schema.fingerprint)
    with pytest.raises(SchemaFileError, match="no published schema"):
        published_schema(tmp_path, "00" * 8)
    with pytest.raises(SchemaFileError, match="not a 16-hex-digit"):
        published_schema(tmp_path, "../../etc/passwd")


def test_a_value_that_is_not_one_record_of_its_schema_is_an_error(classified, tmp_path):
    payload, row = classified[0][0], classified[1][0]
    value, schema = enrich_alert_schemaless(payload, row)
    parsed = published_schema(tmp_path, publish_schema(schema, tmp_path).stem)
    with pytest.raises(SchemaFileError, match="bytes after the record"):
        read_schemaless(value + b"\x00", parsed)
    with pytest.raises(SchemaFileError, match="not a record of its schema"):
        read_schemaless(value[: len(value) // 2], parsed)


def test_the_enriched_schema_is_cached_per_writer_schema(classified):
    payloads, rows = classified
    schemas = {enrich_alert_schemaless(p, r)[1] for p, r in zip(payloads, rows)}
    assert len(schemas) == 2 and enriched_schema.cache_info().currsize >= 2
