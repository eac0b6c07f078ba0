"""The README's bytes-saved figure: schemaless saves the embedded schema and the container framing."""
from __future__ import annotations

from fink_t2.alerts.ztf_schemas import ztf_writer_schema
from fink_t2.kafka.messages import SCHEMA_FINGERPRINT_HEADER, enriched_schema
from fink_t2.tools.format_sizes import format_sizes

from tests.conftest import SAMPLE_ALERTS


def test_schemaless_saves_the_schema_and_the_framing_less_the_header():
    """On the 50 ZTF 3.3 sample alerts every message saves the same bytes: the enriched schema JSON,
    two 16 B sync markers, the magic (4 B) and the metadata map keys, varints and codec entry (< 60 B),
    minus the header (name 17 B + 16 hex digits + 2 varints)."""
    sizes = format_sizes([str(SAMPLE_ALERTS / "fink-broker_basic_alerts_local_20200101")])
    schema_bytes = len(enriched_schema(ztf_writer_schema("3.3")).json)
    header = len(SCHEMA_FINGERPRINT_HEADER) + 16 + 2
    assert sizes["alerts"] == 50 and sizes["saved_min_bytes"] == sizes["saved_max_bytes"]
    assert schema_bytes + 2 * 16 + 4 - header < sizes["saved_mean_bytes"] < schema_bytes + 2 * 16 + 4 + 60 - header
    assert sizes["container_mean_bytes"] - sizes["schemaless_mean_bytes"] == sizes["saved_mean_bytes"]
