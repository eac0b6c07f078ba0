"""Writer-schema checks shared by both decoders: bounded, not recursive, t2 fields well typed.

Every writer schema is resolved here before a byte of its records is read, by the compiled
decoder and by fastavro alike. ``resolve_schema`` expands named types into a tree of
``Node`` (shared subtrees, no names left) and rejects, with a ``SchemaError`` whose text is
the alert's error reason:

- recursive types (fastavro recurses without limit on them: a crash of the worker), duplicate
  field names (the decoders would disagree on which value wins), types nested deeper than
  ``MAX_DEPTH`` or expanding to more than ``MAX_NODES`` nodes;
- arrays and maps whose items can decode more than ``MAX_VALUES_PER_BYTE`` values per byte
  of record (an array of nulls: a 2^62 block count in 10 bytes is an endless loop). With this
  rule decoding a record of B bytes builds at most ``MAX_NODES + MAX_VALUES_PER_BYTE * B``
  values, whatever the bytes;
- logical types fastavro converts but that are not bounded here (decimal, uuid); the others
  carry the integer range fastavro's conversion accepts (``LOGICAL_RANGES``);
- t2 fields of the wrong type (``type_mismatch:``): ``candidate`` not a record,
  ``prv_candidates`` not an array of records, a read field of a type not in
  ``batch.KIND_AVRO_TYPES`` or with a logical type fastavro converts.

Spec: Apache Avro 1.11 specification, "Schema Declaration" and "Names".
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

import fastavro
import fastavro.read
import fastavro.schema

from fink_t2.alerts.batch import CANDIDATE_KINDS, HISTORY_KINDS, KIND_AVRO_TYPES, TOP_KINDS

MAX_SCHEMA_BYTES = 1 << 20  # schema JSON; ZTF schemas are ~22 KB
MAX_DEPTH = 32  # nested records/unions/arrays/maps; ZTF alerts have 6
MAX_NODES = 20_000  # types after named types are expanded; ZTF alerts have ~700
#: values decoded per byte of an array or map item, at most (ZTF items need about 1).
MAX_VALUES_PER_BYTE = 4

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "error", "enum", "fixed"})

_EPOCH = datetime(1970, 1, 1)
_MICROS = ((datetime.min - _EPOCH) // timedelta(microseconds=1), (datetime.max - _EPOCH) // timedelta(microseconds=1))
_HOUR_MS = 3_600_000
#: integer range each logical type fastavro converts accepts (Python dates are years 1-9999;
#: fastavro truncates times towards zero, so up to one hour below 0 still reads as 00:xx).
#: Logical types fastavro converts and that are not here (decimal, uuid) are refused: a
#: decimal conversion takes minutes on a 1 MB value.
LOGICAL_RANGES: dict[str, tuple[int, int]] = {
    "long-timestamp-micros": _MICROS,
    "long-local-timestamp-micros": _MICROS,
    "long-timestamp-millis": (-(-_MICROS[0] // 1000), _MICROS[1] // 1000),
    "long-local-timestamp-millis": (-(-_MICROS[0] // 1000), _MICROS[1] // 1000),
    "int-date": (date.min.toordinal() - _EPOCH.toordinal(), date.max.toordinal() - _EPOCH.toordinal()),
    "int-time-millis": (1 - _HOUR_MS, 24 * _HOUR_MS - 1),
    "long-time-micros": (1 - 1000 * _HOUR_MS, 24 * 1000 * _HOUR_MS - 1),
}

#: smallest encoding of each primitive, in bytes (a varint or a length prefix is >= 1 byte).
_PRIMITIVE_BYTES = {"null": 0, "boolean": 1, "int": 1, "long": 1, "float": 4, "double": 8, "bytes": 1, "string": 1}

#: ``dataclass(slots=True)`` where Python has it (3.10+; the package also runs on 3.9, for the Fink UDFs)
SLOTS: dict[str, bool] = {"slots": True} if sys.version_info >= (3, 10) else {}


class SchemaError(ValueError):
    """A writer schema no alert can be decoded with; the message is the alert's error reason."""


@dataclass(eq=False, **SLOTS)
class Node:
    """One type of a resolved schema.

    ``kind``: a primitive name, "record", "enum", "fixed", "array", "map" or "union";
    ``children``: record fields, union branches, or the array items / map values;
    ``size``: bytes of a fixed, symbols of an enum; ``logical``: the logical type fastavro
    converts, if any, and ``value_range`` the integers it accepts. ``nodes`` and ``depth``
    measure the expanded tree; ``excess`` is the largest (values decoded -
    MAX_VALUES_PER_BYTE * bytes read) over all encodings.
    """

    kind: str
    children: tuple[Node, ...] = ()
    field_names: tuple[str, ...] = ()
    name: str | None = None
    size: int = 0
    logical: str | None = None
    nodes: int = 1
    depth: int = 1
    excess: int = 1
    value_range: tuple[int, int] | None = None

    def describe(self) -> str:
        """Short type description for error reasons."""
        text = self.name or self.kind
        return f"{text} ({self.logical})" if self.logical else text


def _excess(kind: str, children: tuple[Node, ...], size: int) -> int:
    """Largest (values - MAX_VALUES_PER_BYTE * bytes) of one value of this type."""
    if kind in _PRIMITIVE_BYTES:
        return 1 - MAX_VALUES_PER_BYTE * _PRIMITIVE_BYTES[kind]
    if kind == "fixed":
        return 1 - MAX_VALUES_PER_BYTE * size
    if kind == "record":
        return 1 + sum(child.excess for child in children)
    if kind == "union":  # the branch index is at least one byte
        return 1 - MAX_VALUES_PER_BYTE + max((child.excess for child in children), default=0)
    return 1 - MAX_VALUES_PER_BYTE  # enum; array and map (items checked on their own)


_TOO_DEEP = f"schema: types nested deeper than {MAX_DEPTH}"


def _make(kind: str, children: tuple[Node, ...] = (), **attrs: Any) -> Node:
    node = Node(kind, children, nodes=1 + sum(c.nodes for c in children),
                depth=1 + max((c.depth for c in children), default=0),
                excess=_excess(kind, children, attrs.get("size", 0)), **attrs)
    if node.depth > MAX_DEPTH:
        raise SchemaError(_TOO_DEEP)
    if node.nodes > MAX_NODES:
        raise SchemaError(f"schema: more than {MAX_NODES} types once named types are expanded")
    return node


#: one shared node per primitive without a logical type (most nodes of an alert schema).
_PLAIN = {kind: _make(kind) for kind in PRIMITIVES}


def _full_name(name: Any, namespace: str | None) -> tuple[str, str | None]:
    """(full name, namespace of what the named type encloses), Avro naming rules."""
    if not isinstance(name, str) or not name:
        raise SchemaError(f"schema: bad type name {name!r}")
    if "." in name:
        return name, name.rsplit(".", 1)[0]
    return (f"{namespace}.{name}" if namespace else name), namespace


def _logical(kind: str, logical: Any) -> dict[str, Any]:
    """``logical`` and ``value_range`` of a type fastavro converts ({} when it ignores the logical type)."""
    key = f"{kind}-{logical}"
    if key not in fastavro.read.LOGICAL_READERS:
        return {}
    if key not in LOGICAL_RANGES:
        raise SchemaError(f"schema: logical type {logical} on {kind} is not supported")
    return {"logical": logical, "value_range": LOGICAL_RANGES[key]}


class _Resolver:
    """Builds the ``Node`` tree of one schema, expanding references to named types."""

    def __init__(self) -> None:
        self.named: dict[str, Node] = {}
        self.defining: set[str] = set()

    def node(self, t: Any, ns: str | None, depth: int = 1) -> Node:
        """The node of type ``t`` found at nesting ``depth`` (checked before going deeper)."""
        if depth > MAX_DEPTH:
            raise SchemaError(_TOO_DEEP)
        if isinstance(t, list):
            return _make("union", tuple(self.node(branch, ns, depth + 1) for branch in t))
        if isinstance(t, str):
            return _PLAIN[t] if t in PRIMITIVES else self.reference(t, ns)
        if not isinstance(t, dict):
            raise SchemaError(f"schema: bad type {str(t)[:60]!r}")
        kind = t.get("type")
        if isinstance(kind, str) and kind in PRIMITIVES:
            logical = _logical(kind, t.get("logicalType"))
            return _make(kind, **logical) if logical else _PLAIN[kind]
        if kind in _NAMED:
            return self.named_type(t, kind, ns, depth)
        if kind == "array":
            return self.collection("array", t.get("items"), ns, depth)
        if kind == "map":
            return self.collection("map", t.get("values"), ns, depth)
        return self.node(kind, ns, depth + 1)  # {"type": <a type name, a union or a type>}

    def reference(self, ref: str, ns: str | None) -> Node:
        candidates = ((f"{ns}.{ref}",) if ns and "." not in ref else ()) + (ref,)
        for fullname in candidates:
            if fullname in self.defining:
                raise SchemaError(f"schema: recursive type {fullname}")
            if fullname in self.named:
                return self.named[fullname]
        raise SchemaError(f"schema: unknown type name {ref!r}")

    def collection(self, kind: str, items: Any, ns: str | None, depth: int) -> Node:
        node = _make(kind, (self.node(items, ns, depth + 1),))
        per_item = node.children[0].excess + (1 - MAX_VALUES_PER_BYTE if kind == "map" else 0)  # + the key
        if per_item > 0:
            raise SchemaError(f"schema: {kind} of {node.children[0].describe()} items can decode more than "
                              f"{MAX_VALUES_PER_BYTE} values per byte (unbounded work)")
        return node

    def named_type(self, t: dict, kind: str, ns: str | None, depth: int) -> Node:
        fullname, inner_ns = _full_name(t.get("name"), t.get("namespace", ns))
        if fullname in self.named or fullname in self.defining:
            raise SchemaError(f"schema: type {fullname} defined twice")
        if kind == "enum":
            symbols = t.get("symbols")
            if not isinstance(symbols, list):
                raise SchemaError(f"schema: enum {fullname} without symbols")
            node = _make("enum", name=fullname, size=len(symbols))
        elif kind == "fixed":
            size = t.get("size")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise SchemaError(f"schema: fixed {fullname} with bad size {size!r}")
            node = _make("fixed", name=fullname, size=size, **_logical("fixed", t.get("logicalType")))
        else:
            self.defining.add(fullname)
            node = self.record(t, fullname, inner_ns, depth)
            self.defining.discard(fullname)
        self.named[fullname] = node
        return node

    def record(self, t: dict, fullname: str, ns: str | None, depth: int) -> Node:
        fields = t.get("fields")
        if not isinstance(fields, list) or not all(isinstance(f, dict) for f in fields):
            raise SchemaError(f"schema: record {fullname} without a list of fields")
        names = tuple(f.get("name") for f in fields)
        if not all(isinstance(name, str) for name in names):
            raise SchemaError(f"schema: record {fullname} has a field without a name")
        if len(set(names)) != len(names):
            twice = sorted({name for name in names if names.count(name) > 1})
            raise SchemaError(f"schema: record {fullname} has duplicate field names {twice}")
        children = tuple(self.node(f.get("type"), ns, depth + 1) for f in fields)
        return _make("record", children, field_names=names, name=fullname)


def branches(node: Node) -> list[Node]:
    """The non-union types a value of ``node`` can have (nested unions flattened)."""
    if node.kind != "union":
        return [node]
    return [leaf for child in node.children for leaf in branches(child)]


def _check_value(path: str, node: Node, kind: str) -> None:
    allowed = KIND_AVRO_TYPES[kind]
    for leaf in branches(node):
        if leaf.kind != "null" and (leaf.kind not in allowed or leaf.logical):
            raise SchemaError(f"type_mismatch: {path} is {leaf.describe()} (expected {', '.join(allowed)} or null)")


def _records(path: str, node: Node) -> list[Node]:
    """The record branches of ``node``; any branch other than null or a record is a mismatch."""
    leaves = [leaf for leaf in branches(node) if leaf.kind != "null"]
    for leaf in leaves:
        if leaf.kind != "record":
            raise SchemaError(f"type_mismatch: {path} is {leaf.describe()} (expected a record)")
    return leaves


def _check_fields(path: str, record: Node, kinds: dict[str, str]) -> None:
    for name, child in zip(record.field_names, record.children):
        if name in kinds:
            _check_value(f"{path}{name}", child, kinds[name])


def check_t2_fields(top: Node) -> None:
    """Raise ``SchemaError`` (``type_mismatch:``) when a field t2 reads has an unusable type."""
    for name, child in zip(top.field_names, top.children):
        if name in TOP_KINDS:
            _check_value(name, child, TOP_KINDS[name])
        elif name == "candidate":
            for record in _records(name, child):
                _check_fields("candidate.", record, CANDIDATE_KINDS)
        elif name == "prv_candidates":
            for array in branches(child):
                if array.kind not in ("null", "array"):
                    raise SchemaError(f"type_mismatch: prv_candidates is {array.describe()} (expected an array)")
                for record in _records("prv_candidates item", array.children[0]) if array.kind == "array" else ():
                    _check_fields("prv_candidates.", record, HISTORY_KINDS)


@dataclass(frozen=True)
class CheckedSchema:
    """A writer schema both decoders may use: its ``Node`` tree and fastavro's parsed form."""

    top: Node
    parsed: Any


def checked_schema(schema_json: bytes) -> CheckedSchema:
    """``resolve_schema``, then fastavro must parse it too (consumers read the enriched alerts
    with fastavro). Raises ``SchemaError`` with the reason; both outcomes are cached per schema."""
    checked = _checked(schema_json)
    if isinstance(checked, SchemaError):
        raise checked
    return checked


@lru_cache(maxsize=64)
def _checked(schema_json: bytes) -> CheckedSchema | SchemaError:
    try:
        top = resolve_schema(schema_json)
        parsed = fastavro.parse_schema(json.loads(schema_json))
    except SchemaError as exc:
        return exc
    except (fastavro.schema.SchemaParseException, ValueError, TypeError, KeyError, AttributeError) as exc:
        return SchemaError(f"schema: fastavro rejects it ({type(exc).__name__}: {str(exc)[:120]})")
    return CheckedSchema(top, parsed)


def resolve_schema(schema_json: bytes) -> Node:
    """The checked ``Node`` tree of a writer schema (JSON bytes) whose top level is a record.

    Raises ``SchemaError`` with the reason (``schema:`` or ``type_mismatch:``).
    """
    if len(schema_json) > MAX_SCHEMA_BYTES:
        raise SchemaError(f"schema: larger than {MAX_SCHEMA_BYTES} bytes")
    try:
        schema = json.loads(schema_json)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise SchemaError(f"schema: not JSON ({type(exc).__name__})") from exc
    if not isinstance(schema, dict) or schema.get("type") not in ("record", "error"):
        raise SchemaError("schema: top-level type is not a record")
    top = _Resolver().node(schema, None)
    check_t2_fields(top)
    return top
