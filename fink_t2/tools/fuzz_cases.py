"""Fuzz cases for the alert decoder (``tools.fuzz``): real alerts mutated, and hostile schemas.

A case is one Kafka message value. ``make_case(name, rng, corpus)`` builds one case of the
class ``name`` (``CLASSES``) from the seeds of ``corpus`` (real alerts of ``data/alerts`` and
``../shared``), deterministically for a given ``rng`` state. Mutations that keep the framing
consistent (the block size rewritten after the record changed) reach the record decoder;
the others test the framing.
"""
from __future__ import annotations

import bz2
import copy
import io
import json
import lzma
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro
import fastavro.schema
import numpy as np

from fink_t2.alerts.container import MAGIC, MAX_BLOCK_BYTES, SYNC_SIZE, encode_long, parse_container, read_long
from fink_t2.alerts.schema import Node, resolve_schema

REPO = Path(__file__).resolve().parents[2]
CORPUS_ROOTS = (REPO / "data" / "alerts", REPO.parent / "shared" / "data" / "ztf" / "avro")
MAX_SHARED_SEEDS = 120  # seeds taken from ../shared (evenly spread), besides the 139 shipped alerts
SLIM_HISTORY = 4  # prv_candidates kept in a slim seed
SLIM_STAMP_BYTES = 48  # cutout bytes kept in a slim seed

Mark = tuple[int, str]  # (offset in the record, "value" | "varint" | "length" | "count" | "union")


@dataclass(frozen=True)
class Seed:
    """One real alert: its container parts, its record bytes and where each value starts."""

    schema_json: bytes
    sync: bytes
    record: bytes
    marks: tuple[Mark, ...]
    schema: dict  # the writer schema (JSON object)
    value: dict  # the record, decoded by fastavro


@dataclass(frozen=True)
class Corpus:
    """Full-size seeds (~66 KB, cutouts included) and slim ones (short history, tiny cutouts)."""

    full: tuple[Seed, ...]
    slim: tuple[Seed, ...]

    def pick(self, rng: np.random.Generator) -> Seed:
        """A seed: slim 4 times out of 5 (cheaper for the oracle), else full size."""
        pool = self.full if rng.random() < 0.2 else self.slim
        return pool[int(rng.integers(len(pool)))]


# --------------------------------------------------------------------------- containers


def container_bytes(schema_json: bytes, blocks: list[tuple[int, bytes]], codec: bytes = b"null",
                    sync: bytes = b"\x00" * SYNC_SIZE) -> bytes:
    """An Avro object container with these (record count, block data) blocks, data as given."""
    out = bytearray(MAGIC)
    out += encode_long(2)
    for key, value in ((b"avro.schema", schema_json), (b"avro.codec", codec)):
        out += encode_long(len(key)) + key + encode_long(len(value)) + value
    out += encode_long(0) + sync
    for count, data in blocks:
        out += encode_long(count) + encode_long(len(data)) + data + sync
    return bytes(out)


def frame(seed: Seed, record: bytes) -> bytes:
    """``record`` as the one record of a container with the seed's header (consistent framing)."""
    return container_bytes(seed.schema_json, [(1, record)], sync=seed.sync)


def encode_record(schema: dict, value: dict) -> bytes:
    """Avro binary encoding of one record (fastavro writer: the value is checked against the schema)."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(copy.deepcopy(schema)), value)
    return buf.getvalue()


# --------------------------------------------------------------------------- tracing


def _trace(node: Node, buf: bytes, pos: int, marks: list[Mark]) -> int:
    """Walk one (valid) value of ``node`` at ``pos``, appending where each part starts; its end."""
    marks.append((pos, "value"))
    kind = node.kind
    if kind == "union":
        marks.append((pos, "union"))
        index, pos = read_long(buf, pos)
        return _trace(node.children[index], buf, pos, marks)
    if kind == "record":
        for child in node.children:
            pos = _trace(child, buf, pos, marks)
        return pos
    if kind in ("array", "map"):
        while True:
            marks.append((pos, "count"))
            count, pos = read_long(buf, pos)
            if count == 0:
                return pos
            if count < 0:
                count = -count
                _, pos = read_long(buf, pos)
            for _ in range(count):
                if kind == "map":
                    marks.append((pos, "length"))
                    size, pos = read_long(buf, pos)
                    pos += size
                pos = _trace(node.children[0], buf, pos, marks)
    if kind in ("int", "long", "enum"):
        marks.append((pos, "varint"))
        return read_long(buf, pos)[1]
    if kind in ("string", "bytes"):
        marks.append((pos, "length"))
        size, pos = read_long(buf, pos)
        return pos + size
    return pos + {"null": 0, "boolean": 1, "float": 4, "double": 8}.get(kind, node.size)


def trace_record(schema_json: bytes, record: bytes) -> tuple[Mark, ...]:
    """Offsets of every value, varint, length, block count and union index of a valid record."""
    marks: list[Mark] = []
    end = _trace(resolve_schema(schema_json), record, 0, marks)
    assert end == len(record), "seed record does not fill its block"
    marks.append((end, "value"))
    return tuple(marks)


# --------------------------------------------------------------------------- corpus


def _records_of(payload: bytes) -> Iterator[tuple[bytes, bytes, bytes, dict]]:
    """(schema JSON, sync, record bytes, record) of every record of one uncompressed container."""
    container = parse_container(payload)
    parsed = fastavro.parse_schema(json.loads(container.schema_json))
    for block in container.blocks:
        stream = io.BytesIO(block.data)
        for _ in range(block.count):
            start = stream.tell()
            value = fastavro.schemaless_reader(stream, parsed, None)
            yield container.schema_json, container.sync, block.data[start : stream.tell()], value


def _slimmed(value: dict) -> dict:
    """The record with at most SLIM_HISTORY prv_candidates and SLIM_STAMP_BYTES of each cutout."""
    slim = dict(value)
    if isinstance(slim.get("prv_candidates"), list):
        slim["prv_candidates"] = slim["prv_candidates"][-SLIM_HISTORY:]
    for name, cutout in value.items():
        if name.startswith("cutout") and isinstance(cutout, dict) and isinstance(cutout.get("stampData"), bytes):
            slim[name] = cutout | {"stampData": cutout["stampData"][:SLIM_STAMP_BYTES]}
    return slim


def _seed(schema_json: bytes, sync: bytes, record: bytes, value: dict) -> Seed:
    return Seed(schema_json, sync, record, trace_record(schema_json, record), json.loads(schema_json), value)


def load_corpus(roots: tuple[Path, ...] = CORPUS_ROOTS) -> Corpus:
    """Seeds from every ``.avro`` file of the shipped sample and up to MAX_SHARED_SEEDS from ../shared."""
    found = []
    for k, root in enumerate(roots):
        files = sorted(root.rglob("*.avro")) if root.exists() else []
        records = [r for path in files for r in _records_of(path.read_bytes())]
        if k and len(records) > MAX_SHARED_SEEDS:
            records = records[:: len(records) // MAX_SHARED_SEEDS][:MAX_SHARED_SEEDS]
        found += records
    if not found:
        raise FileNotFoundError(f"no .avro alerts under {[str(r) for r in roots]}")
    full = tuple(_seed(*r) for r in found)
    slim = tuple(_seed(s.schema_json, s.sync, encode_record(s.schema, _slimmed(s.value)), _slimmed(s.value))
                 for s in full)
    return Corpus(full, slim)


# --------------------------------------------------------------------------- mutations of real alerts


def _varint_at(record: bytes, pos: int) -> int:
    """Length in bytes of the varint at ``pos`` (up to the end of the record)."""
    end = pos
    while end < len(record) and record[end] & 0x80:
        end += 1
    return min(end + 1, len(record)) - pos


def bit_flips(rng: np.random.Generator, corpus: Corpus) -> bytes:
    """1-8 flipped bits, in the record (header kept) or anywhere in the message."""
    seed = corpus.pick(rng)
    payload = bytearray(frame(seed, seed.record))
    start = len(payload) - len(seed.record) - SYNC_SIZE if rng.random() < 0.7 else 0
    for _ in range(int(rng.integers(1, 9))):
        payload[int(rng.integers(start, len(payload)))] ^= 1 << int(rng.integers(8))
    return bytes(payload)


def byte_edits(rng: np.random.Generator, corpus: Corpus) -> bytes:
    """1-4 overwritten, inserted or deleted bytes in the record, re-framed (or not, 1 in 4)."""
    seed = corpus.pick(rng)
    record = bytearray(seed.record)
    for _ in range(int(rng.integers(1, 5))):
        at = int(rng.integers(len(record) + 1))
        edit = rng.integers(3)
        if edit == 0 and at < len(record):
            record[at] = int(rng.integers(256))
        elif edit == 1:
            record[at:at] = rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8).tobytes()
        else:
            del record[at : at + int(rng.integers(1, 17))]
    if rng.random() < 0.75:
        return frame(seed, bytes(record))
    payload = frame(seed, seed.record)  # the old block size now frames the edited bytes
    return payload[: len(payload) - len(seed.record) - SYNC_SIZE] + bytes(record) + seed.sync


def _framing_boundaries(payload: bytes) -> list[int]:
    """Offsets where each part of the container framing starts or ends."""
    marks = [0, len(MAGIC)]
    pos = len(MAGIC)
    count, pos = read_long(payload, pos)
    marks.append(pos)
    for _ in range(count * 2):
        size, pos = read_long(payload, pos)
        marks += [pos, pos + size]
        pos += size
    header = parse_container(payload).header_size
    marks += [header - SYNC_SIZE - 1, header - SYNC_SIZE, header, header + 1, header + 2, len(payload) - SYNC_SIZE,
              len(payload) - 1]
    return marks


def truncation(rng: np.random.Generator, corpus: Corpus) -> bytes:
    """The record cut at a value boundary (±1 byte) and re-framed, or the message cut at a framing boundary."""
    seed = corpus.pick(rng)
    if rng.random() < 0.6:
        cut = seed.marks[int(rng.integers(len(seed.marks)))][0] + int(rng.integers(-1, 2))
        return frame(seed, seed.record[: max(cut, 0)])
    payload = frame(seed, seed.record)
    boundaries = _framing_boundaries(payload)
    cut = boundaries[int(rng.integers(len(boundaries)))] if rng.random() < 0.7 else int(rng.integers(len(payload)))
    return payload[:cut]


#: varints written over the record's varints: huge, negative, extreme and over-long encodings.
CRAFTED_VARINTS: tuple[bytes, ...] = tuple(encode_long(v) for v in (
    0, 1, -1, 2, -2, 127, 1 << 31, -(1 << 31), 1 << 40, 1 << 62, -(1 << 62), (1 << 63) - 1, -(1 << 63),
)) + (b"\xff" * 9 + b"\x01", b"\xff" * 9 + b"\x7f", b"\x80" * 10 + b"\x01", b"\xff" * 10, b"\x80")


def varints(rng: np.random.Generator, corpus: Corpus) -> bytes:
    """One varint of the record (a long, a length, a block count or a union index) replaced by a crafted one."""
    seed = corpus.pick(rng)
    candidates = [pos for pos, what in seed.marks if what != "value"]
    pos = candidates[int(rng.integers(len(candidates)))]
    crafted = CRAFTED_VARINTS[int(rng.integers(len(CRAFTED_VARINTS)))]
    record = seed.record[:pos] + crafted + seed.record[pos + _varint_at(seed.record, pos):]
    return frame(seed, record)


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@lru_cache(maxsize=1)
def _bombs() -> tuple[bytes, bytes]:
    """(deflate, bzip2) blocks of a few KB that inflate to twice MAX_BLOCK_BYTES."""
    zeros = bytes(2 * MAX_BLOCK_BYTES)
    return _deflate(zeros), bz2.compress(zeros)


def codecs(rng: np.random.Generator, corpus: Corpus) -> bytes:
    """Codec claims: real and corrupt deflate, decompression bombs, codecs that are not supported,
    and containers with other counts of records or blocks than one."""
    seed = corpus.pick(rng)
    record = seed.record
    choices: list[Callable[[], tuple[bytes, list[tuple[int, bytes]]]]] = [
        lambda: (b"deflate", [(1, _deflate(record))]),
        lambda: (b"deflate", [(1, record)]),
        lambda: (b"deflate", [(1, _bombs()[0])]),
        lambda: (b"deflate", [(1, _deflate(record)[: -int(rng.integers(1, 50))])]),
        lambda: (b"deflate", [(1, _deflate(record) + b"trailing")]),
        lambda: (b"bzip2", [(1, bz2.compress(record))]),
        lambda: (b"bzip2", [(1, _bombs()[1])]),
        lambda: (b"xz", [(1, lzma.compress(record))]),
        lambda: (b"snappy", [(1, record)]),
        lambda: (b"zstandard", [(1, record)]),
        lambda: (b"", [(1, record)]),
        lambda: (b"\xff\xfe", [(1, record)]),
        lambda: (b"null", [(2, record + record)]),
        lambda: (b"null", [(1, record), (1, record)]),
        lambda: (b"null", [(0, b""), (1, record)]),
        lambda: (b"null", [(0, record)]),
        lambda: (b"null", []),
    ]
    codec, blocks = choices[int(rng.integers(len(choices)))]()
    return container_bytes(seed.schema_json, blocks, codec, seed.sync)


def random_bodies(rng: np.random.Generator, corpus: Corpus) -> bytes:
    """Random bytes as the record (after a prefix of the real record, half of the time)."""
    seed = corpus.pick(rng)
    prefix = seed.record[: int(rng.integers(len(seed.record)))] if rng.random() < 0.5 else b""
    return frame(seed, prefix + rng.integers(0, 256, int(rng.integers(0, 4000)), dtype=np.uint8).tobytes())


# --------------------------------------------------------------------------- schema edits (valid JSON)


def _records_in(t: Any) -> Iterator[dict]:
    """Every record definition inside a schema JSON object."""
    if isinstance(t, list):
        for branch in t:
            yield from _records_in(branch)
    elif isinstance(t, dict):
        if t.get("type") in ("record", "error"):
            yield t
            for f in t.get("fields", ()):
                yield from _records_in(f.get("type"))
        else:
            for key in ("type", "items", "values"):
                if isinstance(t.get(key), (dict, list)):
                    yield from _records_in(t[key])


_TYPE_SWAPS = ("int", "long", "float", "double", "string", "bytes", "boolean", "null")


def schema_edits(rng: np.random.Generator, corpus: Corpus) -> bytes:
    """The real record under an edited writer schema: a field dropped, duplicated, swapped with the
    next, retyped, or its union reversed. fastavro reads misaligned values or fails."""
    seed = corpus.pick(rng)
    schema = copy.deepcopy(seed.schema)
    records = list(_records_in(schema))
    fields = records[int(rng.integers(len(records)))]["fields"]
    if not fields:
        return frame(seed, seed.record)
    at = int(rng.integers(len(fields)))
    edit = int(rng.integers(5))
    if edit == 0:
        del fields[at]
    elif edit == 1:
        fields.insert(at, copy.deepcopy(fields[at]) | {"name": fields[at]["name"] + "_copy"})
    elif edit == 2 and at + 1 < len(fields):
        fields[at], fields[at + 1] = fields[at + 1], fields[at]
    elif edit == 3:
        fields[at].pop("default", None)
        fields[at]["type"] = _TYPE_SWAPS[int(rng.integers(len(_TYPE_SWAPS)))]
    elif isinstance(fields[at]["type"], list):
        fields[at]["type"] = fields[at]["type"][::-1]
    return container_bytes(json.dumps(schema).encode(), [(1, seed.record)], sync=seed.sync)


# --------------------------------------------------------------------------- type confusion (valid Avro)

#: (replacement type, a value of it) for a t2 field.
_CONFUSED: tuple[tuple[Any, Any], ...] = (
    ("string", "123"), ("bytes", b"\x01\x02"), ("boolean", True), ("double", 1.5), ("float", 2.5), ("long", 7),
    ({"type": "array", "items": "long"}, [1, 2]), ({"type": "map", "values": "long"}, {"a": 1}),
    ({"type": "enum", "name": "confused_enum", "symbols": ["f", "t"]}, "f"),
    ({"type": "fixed", "name": "confused_fixed", "size": 2}, b"ab"),
    ({"type": "long", "logicalType": "timestamp-micros"}, 1_600_000_000_000_000),
    ({"type": "record", "name": "confused_record", "fields": [{"name": "x", "type": "long"}]}, {"x": 1}),
    (["null", "string", "long"], "text"), (["null", "string", "long"], 5),
)
_T2_PATHS = ("candid", "objectId", "roid", "cdsxmatch", "candidate", "prv_candidates",
             "candidate.jd", "candidate.fid", "candidate.magpsf", "candidate.isdiffpos", "candidate.rb",
             "candidate.candid", "prv_candidates.jd", "prv_candidates.fid", "prv_candidates.magpsf")


def _field(record: dict, name: str) -> dict | None:
    return next((f for f in record.get("fields", ()) if f.get("name") == name), None)


def _history_record(schema: dict) -> dict | None:
    """The prv_candidates item record definition (None when it is a reference or absent)."""
    history = _field(schema, "prv_candidates")
    return next((r for r in _records_in(history["type"])), None) if history else None


def _confuse(schema: dict, value: dict, path: str, new_type: Any, new_value: Any) -> None:
    """Give the field ``path`` the type ``new_type`` in the schema and ``new_value`` in the record."""
    if "." not in path:
        _field(schema, path).pop("default", None)
        _field(schema, path)["type"] = new_type
        value[path] = new_value
        return
    parent, name = path.split(".")
    if parent == "candidate":
        record = next(_records_in(_field(schema, "candidate")["type"]))
        items = [value["candidate"]]
    else:
        record, items = _history_record(schema), [p for p in value.get("prv_candidates") or () if p]
    _field(record, name).pop("default", None)
    _field(record, name)["type"] = new_type
    for item in items:
        item[name] = new_value


def _semantic_edit(rng: np.random.Generator, schema: dict, value: dict) -> None:
    """Valid types, odd contents: negative or missing top-level candid, a history point without jd."""
    edit = int(rng.integers(4))
    if edit == 0:
        value["candid"] = -int(rng.integers(1, 1 << 62))
    elif edit == 1:
        _field(schema, "candid")["type"] = ["null", "long"]
        value["candid"] = None  # the id is then candidate.candid
    elif edit == 2:
        schema["fields"] = [f for f in schema["fields"] if f["name"] != "candid"]
        value.pop("candid", None)
    elif (history := _history_record(schema)) is not None:
        history["fields"] = [f for f in history["fields"] if f["name"] != "jd"]
        for point in value.get("prv_candidates") or ():
            if point:
                point.pop("jd", None)


def type_confusion(rng: np.random.Generator, corpus: Corpus) -> bytes:
    """A valid Avro alert whose t2 fields have other types (or odd ids), written by fastavro."""
    for _ in range(20):  # some seeds lack the field, or share its record type with another field
        seed = corpus.slim[int(rng.integers(len(corpus.slim)))]
        schema, value = copy.deepcopy(seed.schema), copy.deepcopy(seed.value)
        try:
            if rng.random() < 0.3:
                _semantic_edit(rng, schema, value)
            else:
                path = _T2_PATHS[int(rng.integers(len(_T2_PATHS)))]
                _confuse(schema, value, path, *copy.deepcopy(_CONFUSED[int(rng.integers(len(_CONFUSED)))]))
            return container_bytes(json.dumps(schema).encode(), [(1, encode_record(schema, value))], sync=seed.sync)
        except (fastavro.schema.SchemaParseException, TypeError, KeyError, AttributeError, ValueError, StopIteration):
            continue  # fastavro refused to write it: another try
    return frame(seed, seed.record)


# --------------------------------------------------------------------------- hostile schemas


def _alert_schema(extra: list[dict], name: str = "alert") -> dict:
    return {"type": "record", "name": name, "fields": [{"name": "candid", "type": "long"}] + extra}


def _hostile(rng: np.random.Generator) -> tuple[bytes, bytes]:
    """(schema JSON, record bytes) of one hostile schema."""
    candid = encode_long(int(rng.integers(1, 1 << 60)))
    huge = encode_long(1 << int(rng.integers(20, 63)))
    depth = int(rng.integers(2, 5000))
    zero_size = ("null", {"type": "record", "name": "empty", "fields": []}, {"type": "fixed", "name": "f0", "size": 0},
                 ["null"])
    kind = int(rng.integers(13))
    if kind == 0:  # a record that contains itself, no way out
        return json.dumps(_alert_schema([{"name": "self", "type": "alert"}])).encode(), candid * 64
    if kind == 1:  # a linked list, `depth` deep
        schema = _alert_schema([{"name": "next", "type": ["null", "alert"]}])
        return json.dumps(schema).encode(), (candid + b"\x02") * depth + candid + b"\x00"
    if kind == 2:  # an array of zero-size items with a huge block count
        items = zero_size[int(rng.integers(len(zero_size)))]
        return json.dumps(_alert_schema([{"name": "bomb", "type": {"type": "array", "items": items}}])).encode(), \
            candid + huge
    if kind == 3:  # arrays/maps of small items with a huge count
        items = ("boolean", "float", "double", "int", "string")[int(rng.integers(5))]
        collection = {"type": "array", "items": items} if rng.random() < 0.5 else {"type": "map", "values": items}
        return json.dumps(_alert_schema([{"name": "big", "type": collection}])).encode(), candid + huge + b"\x00" * 64
    if kind == 4:  # duplicate field names: which value wins?
        fields = [{"name": "candid", "type": "long"}, {"name": "candid", "type": "long"}]
        return json.dumps({"type": "record", "name": "alert", "fields": fields}).encode(), candid + encode_long(5)
    if kind == 5:  # nested deeper than any alert
        t: Any = "long"
        for _ in range(depth % 200 + 20):
            t = {"type": "array", "items": t} if rng.random() < 0.5 else ["null", t]
        return json.dumps(_alert_schema([{"name": "deep", "type": t}])).encode(), candid + b"\x00"
    if kind == 6:  # exponential expansion of named types
        fields, previous = [], "long"
        for level in range(int(rng.integers(10, 40))):
            fields.append({"name": f"l{level}", "type": {"type": "record", "name": f"r{level}", "fields": [
                {"name": "a", "type": previous}, {"name": "b", "type": previous}]}})
            previous = f"r{level}"
        return json.dumps(_alert_schema(fields[-1:] if rng.random() < 0.5 else fields)).encode(), candid * 8
    if kind == 7:  # a decimal that takes minutes to convert
        size = int(rng.integers(1, 300_000))
        field = {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2}}
        return json.dumps(_alert_schema([field])).encode(), candid + encode_long(size) + b"\x7f" * size
    if kind == 8:  # logical types with values out of their range
        logical = [("long", "timestamp-millis"), ("long", "timestamp-micros"), ("int", "date"),
                   ("int", "time-millis"), ("long", "time-micros"), ("string", "uuid")][int(rng.integers(6))]
        value = b"\x04zz" if logical[0] == "string" else CRAFTED_VARINTS[int(rng.integers(len(CRAFTED_VARINTS)))]
        field = {"name": "when", "type": {"type": logical[0], "logicalType": logical[1]}}
        return json.dumps(_alert_schema([field])).encode(), candid + value
    if kind == 9:  # an enum index out of range, negative included
        field = {"name": "e", "type": {"type": "enum", "name": "e", "symbols": ["a", "b"]}}
        return json.dumps(_alert_schema([field])).encode(), candid + encode_long(int(rng.integers(-4, 5)))
    if kind == 10:  # not a schema
        junk = [b"", b"{", b"[1, 2]", b'"long"', b'{"type": "record"}', b"\xff\xfe{}", b'{"type": "nope"}',
                b'{"type": "record", "name": "a", "fields": [{"name": "x", "type": "unknown_name"}]}',
                b"[" * 5000 + b"]" * 5000]
        return junk[int(rng.integers(len(junk)))], candid
    if kind == 11:  # a union without a way to a value (empty) or of unions
        union = [[], [["null", "long"]], ["null", "null"], ["long", "long"]][int(rng.integers(4))]
        return json.dumps(_alert_schema([{"name": "u", "type": union}])).encode(), candid + b"\x00\x02"
    name = "x" * int(rng.integers(1, 200))  # a schema larger than the limit
    fields = [{"name": f"{name}{k}", "type": "null"} for k in range(int(rng.integers(100, 8_000)))]
    return json.dumps(_alert_schema(fields)).encode(), candid


def hostile_schemas(rng: np.random.Generator, corpus: Corpus) -> bytes:
    """Schemas that crash, hang or exhaust a naive decoder: recursive, zero-size arrays with huge
    counts, duplicate names, deep or exponential nesting, slow logical types, non-schemas."""
    schema_json, record = _hostile(rng)
    return container_bytes(schema_json, [(1, record)])


#: case class name -> generator (rng, corpus) -> message value.
CLASSES: dict[str, Callable[[np.random.Generator, Corpus], bytes]] = {
    "bit_flips": bit_flips, "byte_edits": byte_edits, "truncation": truncation, "varints": varints,
    "codecs": codecs, "random_bodies": random_bodies, "schema_edits": schema_edits,
    "type_confusion": type_confusion, "hostile_schemas": hostile_schemas,
}


def make_case(name: str, rng: np.random.Generator, corpus: Corpus) -> bytes:
    """One message value of the class ``name``."""
    return CLASSES[name](rng, corpus)
