"""Writer-schema rules shared by both decoders (``alerts.schema``), on real and hostile schemas."""
from __future__ import annotations

import io
import json

import fastavro
import pytest

from fink_t2.alerts.container import parse_container
from fink_t2.alerts.schema import (
    LOGICAL_RANGES, MAX_DEPTH, MAX_VALUES_PER_BYTE, SchemaError, branches, checked_schema, resolve_schema,
)
from fink_t2.tools.fuzz_cases import CORPUS_ROOTS

from tests.conftest import SAMPLE_ALERTS


def _real_schemas() -> dict[bytes, str]:
    found: dict[bytes, str] = {}
    for root in CORPUS_ROOTS:
        for path in sorted(root.rglob("*.avro")) if root.exists() else ():
            found.setdefault(parse_container(path.read_bytes()).schema_json, path.name)
    return found


def _collections(node, out):
    if node.kind in ("array", "map"):
        out.append(node)
    for child in node.children:
        _collections(child, out)
    return out


def test_every_real_schema_passes_with_room_to_spare():
    schemas = _real_schemas()
    assert len(schemas) >= 7  # ZTF 2.0-4.02, Spark-written, Fink multi-alert (12 with ../shared)
    for schema_json, name in schemas.items():
        top = resolve_schema(schema_json)
        assert top.depth <= 7 < MAX_DEPTH, name
        assert 300 < top.nodes < 1000, name  # MAX_NODES is 20,000
        # the densest real items (arrays of nullable doubles, 2 values per byte) allow 2 values per byte:
        # excess = values - MAX_VALUES_PER_BYTE * bytes <= -(MAX_VALUES_PER_BYTE - 2)
        worst = max(c.children[0].excess for c in _collections(top, []))
        assert worst <= -(MAX_VALUES_PER_BYTE - 2), name
        checked_schema(schema_json)  # fastavro parses it too


def _alert_schema(*extra: dict) -> bytes:
    return json.dumps({"type": "record", "name": "alert", "fields": [{"name": "candid", "type": "long"}, *extra]}).encode()


@pytest.mark.parametrize("field_type, reason", [
    ("alert", "schema: recursive type alert"),  # fastavro: SIGSEGV of the worker (issue 10, item 2)
    (["null", "alert"], "schema: recursive type alert"),  # a linked list: fastavro recursion without bound
    ({"type": "array", "items": "null"}, "schema: array of null items can decode more than 4 values per byte"),
    ({"type": "array", "items": {"type": "fixed", "name": "f", "size": 0}}, "schema: array of f items"),
    ({"type": "array", "items": {"type": "record", "name": "wide", "fields": [
        {"name": f"n{k}", "type": "null"} for k in range(4)] + [{"name": "b", "type": "boolean"}]}},
     "schema: array of wide items"),  # 6 values for 1 byte
    ({"type": "bytes", "logicalType": "decimal", "precision": 4}, "schema: logical type decimal on bytes is not supported"),
    ({"type": "string", "logicalType": "uuid"}, "schema: logical type uuid on string is not supported"),
    ("nowhere", "schema: unknown type name 'nowhere'"),
])
def test_hostile_schemas_are_refused_with_their_reason(field_type, reason):
    with pytest.raises(SchemaError) as refused:
        resolve_schema(_alert_schema({"name": "x", "type": field_type}))
    assert str(refused.value).startswith(reason)


def test_items_of_four_values_per_byte_pass_five_do_not():
    """The rule is exact: a [null] union item (2 values, a 1-byte index) passes too."""
    resolve_schema(_alert_schema({"name": "u", "type": {"type": "array", "items": ["null"]}}))
    def items(n_nulls: int) -> dict:  # n nulls + 1 boolean = n + 2 values (record included) in 1 byte
        fields = [{"name": f"n{k}", "type": "null"} for k in range(n_nulls)] + [{"name": "b", "type": "boolean"}]
        return {"type": "array", "items": {"type": "record", "name": f"r{n_nulls}", "fields": fields}}
    resolve_schema(_alert_schema({"name": "x", "type": items(MAX_VALUES_PER_BYTE - 2)}))
    with pytest.raises(SchemaError, match="values per byte"):
        resolve_schema(_alert_schema({"name": "x", "type": items(MAX_VALUES_PER_BYTE - 1)}))


def test_depth_and_exponential_expansion_are_bounded():
    deep: object = "long"
    for _ in range(MAX_DEPTH):
        deep = {"type": "array", "items": deep}
    with pytest.raises(SchemaError, match="nested deeper than 32"):
        resolve_schema(_alert_schema({"name": "x", "type": deep}))
    fields, previous = [], "long"
    for level in range(20):  # 2**20 leaves once expanded, in 2 KB of JSON
        fields.append({"name": f"l{level}", "type": {"type": "record", "name": f"r{level}", "fields": [
            {"name": "a", "type": previous}, {"name": "b", "type": previous}]}})
        previous = f"r{level}"
    with pytest.raises(SchemaError, match="more than 20000 types"):
        resolve_schema(_alert_schema(*fields))


def test_duplicate_field_names_are_refused():
    with pytest.raises(SchemaError, match=r"record alert has duplicate field names \['candid'\]"):
        resolve_schema(_alert_schema({"name": "candid", "type": "long"}))


@pytest.mark.parametrize("field, t, reason", [
    ("candid", "string", "type_mismatch: candid is string (expected int, long or null)"),
    ("roid", ["null", "string"], "type_mismatch: roid is string (expected int, long or null)"),
    ("objectId", "bytes", "type_mismatch: objectId is bytes (expected string or null)"),
    ("candid", {"type": "long", "logicalType": "timestamp-millis"},
     "type_mismatch: candid is long (timestamp-millis) (expected int, long or null)"),
    ("candidate", "long", "type_mismatch: candidate is long (expected a record)"),
    ("prv_candidates", {"type": "map", "values": "long"}, "type_mismatch: prv_candidates is map (expected an array)"),
])
def test_t2_fields_of_the_wrong_type_are_type_mismatches(field, t, reason):
    fields = [{"name": "candid", "type": "long"}] if field != "candid" else []
    with pytest.raises(SchemaError) as refused:
        resolve_schema(json.dumps({"type": "record", "name": "alert", "fields": fields + [{"name": field, "type": t}]}).encode())
    assert str(refused.value) == reason


def test_logical_ranges_are_what_fastavro_converts():
    """Each bound reads with fastavro, one past it raises: the compiled decoder checks the same."""
    for key, (low, high) in LOGICAL_RANGES.items():
        kind, logical = key.split("-", 1)
        schema = fastavro.parse_schema({"type": "record", "name": "r", "fields": [
            {"name": "v", "type": {"type": kind, "logicalType": logical}}]})
        for value, readable in ((low - 1, False), (low, True), (high, True), (high + 1, False)):
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, fastavro.parse_schema({"type": "record", "name": "r", "fields": [
                {"name": "v", "type": "long"}]}), {"v": value})
            try:
                fastavro.schemaless_reader(io.BytesIO(buf.getvalue()), schema, None)
                ok = True
            except (OverflowError, ValueError):
                ok = False
            assert ok == readable, (key, value)


def test_branches_flatten_nested_unions():
    top = resolve_schema(_alert_schema({"name": "x", "type": [["null", "long"], "string"]}))
    assert [leaf.kind for leaf in branches(top.children[1])] == ["null", "long", "string"]


def test_the_spark_schema_keeps_its_t2_fields_readable():
    payload = (SAMPLE_ALERTS / "fink-client_datatest" / "part-3-305711.avro").read_bytes()
    top = resolve_schema(parse_container(payload).schema_json)
    assert {"candid", "objectId", "candidate", "prv_candidates", "roid", "cdsxmatch"} <= set(top.field_names)
