"""The packaged ZTF writer schemas are those real packets of each version embed."""
from __future__ import annotations

import json

import fastavro.schema
import pytest

from fink_t2.alerts.container import single_record
from fink_t2.alerts.ztf_schemas import LATEST_ZTF_VERSION, ztf_schema_versions, ztf_writer_schema

from tests.conftest import SAMPLE_ALERTS, shared_path

#: schema version -> the packet it was taken from (fink_t2/data/schemas/ztf/README.md)
PACKETS = {
    "2.0": ("data", "ztf", "avro", "ztf-avro-alert", "472263571115090000.avro"),
    "3.0": ("data", "ztf", "avro", "ztf-avro-alert", "schema_evolution", "472263571115115000_v3.0.avro"),
    "3.1": ("data", "ztf", "avro", "ztf-avro-alert", "schema_evolution", "472263571115115000_v3.1.avro"),
    "3.2": ("data", "ztf", "avro", "ztf-avro-alert", "2019_01_10_739260766315010006.avro"),
    "3.5": ("data", "ztf", "avro", "ztf-avro-alert", "1661382530015060001.avro"),
}
ZTF_402_FILES = ("candidate", "prv_candidate", "fp_hist", "cutout", "alert")


def canonical(schema_json: bytes | str | dict) -> str:
    schema = json.loads(schema_json) if isinstance(schema_json, (bytes, str)) else schema_json
    return fastavro.schema.to_parsing_canonical_form(schema)


def test_versions_are_listed_in_order_and_an_unknown_one_is_refused():
    assert ztf_schema_versions() == ("2.0", "3.0", "3.1", "3.2", "3.3", "3.5", "4.02")
    assert LATEST_ZTF_VERSION == ztf_schema_versions()[-1]
    with pytest.raises(ValueError, match="no ZTF alert schema '9.9': known versions 2.0, 3.0"):
        ztf_writer_schema("9.9")


def test_each_schema_says_its_version():
    for version in ztf_schema_versions():
        declared = json.loads(ztf_writer_schema(version)).get("version")
        assert declared == version or version == "2.0" and declared is None, version


def test_3_3_is_byte_for_byte_the_header_of_the_shipped_sample_alerts():
    for path in sorted((SAMPLE_ALERTS / "fink-broker_basic_alerts_local_20200101").glob("*.avro"))[:5]:
        assert single_record(path.read_bytes())[0].schema_json == ztf_writer_schema("3.3")


@pytest.mark.parametrize("version", sorted(PACKETS))
def test_older_versions_are_byte_for_byte_their_packet_header(version):
    packet = shared_path(*PACKETS[version]).read_bytes()
    assert single_record(packet)[0].schema_json == ztf_writer_schema(version)


def test_4_02_is_the_ztf_avsc_files_parsed_in_order():
    folder = shared_path("data", "ztf", "schema")
    parsed = fastavro.schema.load_schema_ordered([folder / f"{name}.avsc" for name in ZTF_402_FILES],
                                                 _write_hint=False)
    assert canonical(ztf_writer_schema("4.02")) == canonical(parsed)
    v33 = fastavro.schema.load_schema_ordered([folder / "v3.3" / f"{n}.avsc" for n in ZTF_402_FILES if n != "fp_hist"],
                                              _write_hint=False)
    assert canonical(ztf_writer_schema("3.3")) == canonical(v33)
