"""Stage 1 fast path — a schema-compiled Avro decoder for ZTF alert containers (numba).

Each distinct writer schema is compiled once into a flat integer *program*: one
instruction per Avro value of the top-level record in wire order (records inlined,
named types resolved, unions as jump tables, arrays and maps as block loops). The fields
t2 needs carry a *slot*: the interpreter stores their value into per-alert or
per-history-point arrays and merely skips over everything else, so a 44 KB alert costs a
few microseconds. ``_run_program`` (``numba.njit``) executes the program over a batch of
record bodies copied into one reusable buffer.

Exactness: the result equals ``alerts.decode_payloads`` with fastavro. The interpreter is
never more lenient than fastavro: anything unusual (bad framing, multi-record or
compressed containers, schemas it does not model, truncated or corrupt bytes, invalid
UTF-8, ...) sends that payload to the fastavro path, which gives the same error reason
as before. Only the ``missing_field:`` checks of ``records_to_batch`` are done here.

Switch it off with the environment variable ``FINK_T2_FAST_AVRO=0``.
"""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from fink_t2.alerts.batch import CANDIDATE_FIELDS, HISTORY_FIELDS, AlertBatch, records_to_batch
from fink_t2.alerts.fastavro_path import _parsed_schemas, decode_one
from fink_t2.alerts.container import SYNC_SIZE, ContainerError, parse_container, read_long

try:
    import numba
except ImportError:  # the fastavro path stays available without numba
    numba = None

# --------------------------------------------------------------------------- slots

# Per-alert slots. The first five are also the per-point slots (same order), so the
# candidate becomes a history point by copying slots 0..4.
S_JD, S_FID, S_MAG, S_MAGERR, S_NEG = 0, 1, 2, 3, 4
S_RB, S_NBAD, S_JDSTARTHIST, S_SSDISTNR = 5, 6, 7, 8
S_CANDID, S_OBJECTID, S_ROID, S_XMATCH, S_CANDIDATE = 9, 10, 11, 12, 13
N_ALERT_SLOTS = 14
N_POINT_SLOTS = 5
POINT_BASE = 32  # slot >= POINT_BASE: per-point slot (slot - POINT_BASE) of the current point

_KIND_FLOAT, _KIND_INT, _KIND_STRING, _KIND_ISDIFFPOS = "float", "int", "string", "isdiffpos"
_POINT_SLOTS = {"jd": S_JD, "fid": S_FID, "magpsf": S_MAG, "sigmapsf": S_MAGERR, "isdiffpos": S_NEG}
_POINT_KINDS = {"jd": _KIND_FLOAT, "fid": _KIND_INT, "magpsf": _KIND_FLOAT, "sigmapsf": _KIND_FLOAT,
                "isdiffpos": _KIND_ISDIFFPOS}
_CANDIDATE_DESTS = {name: (_POINT_SLOTS[name], _POINT_KINDS[name]) for name in _POINT_SLOTS} | {
    "rb": (S_RB, _KIND_FLOAT), "nbad": (S_NBAD, _KIND_FLOAT),
    "jdstarthist": (S_JDSTARTHIST, _KIND_FLOAT), "ssdistnr": (S_SSDISTNR, _KIND_FLOAT),
}
_POINT_DESTS = {name: (POINT_BASE + slot, _POINT_KINDS[name]) for name, slot in _POINT_SLOTS.items()}
_TOP_DESTS = {"candid": (S_CANDID, _KIND_INT), "objectId": (S_OBJECTID, _KIND_STRING),
              "roid": (S_ROID, _KIND_INT), "cdsxmatch": (S_XMATCH, _KIND_STRING)}
assert set(_CANDIDATE_DESTS) == set(CANDIDATE_FIELDS) and set(_POINT_DESTS) == set(HISTORY_FIELDS)

# --------------------------------------------------------------------------- opcodes

OP_END = 0  # record done: check it consumed the whole body, then finish the alert
OP_STOP = 1  # every needed field read: finish the alert without reading the rest
# primitives: two words (opcode, slot); slot -1 = skip the value
OP_BOOL = 2  # 1 byte (never stored)
OP_LONG = 3  # zig-zag varint (Avro int and long)
OP_FLOAT = 4  # 4-byte little-endian IEEE float
OP_DOUBLE = 5  # 8-byte little-endian IEEE double
OP_BYTES = 6  # length-prefixed bytes (never stored)
OP_STRING = 7  # length-prefixed UTF-8 (store start offset and length)
OP_ISDIFFPOS = 8  # string; store 1 when it is "f" or "0" (negative subtraction)
OP_FIXED = 9  # size: skip size bytes
OP_ENUM = 10  # n_symbols: varint index in [0, n)
OP_UNION = 11  # n, addr_0 .. addr_{n-1}: varint branch index, jump to its code
OP_JUMP = 12  # addr
OP_BLOCKS_BEGIN = 13  # end_addr: first block count of an array/map (0: jump to end_addr)
OP_BLOCKS_NEXT = 14  # body_addr: next item, or next block count
OP_POINT_BEGIN = 15  # start a history point (a prv_candidates item)
OP_POINT_END = 16  # keep the point when its magpsf is not null
OP_NULL_POINT = 17  # a null prv_candidates item: left to the fastavro path
OP_MARK_CANDIDATE = 18  # the candidate record is present (not null)
OP_OPTIONAL = 19  # null_index, primitive opcode, slot: a ["null", primitive] union in one step

# --------------------------------------------------------------------------- statuses

OK = 0
MISSING_CANDIDATE, MISSING_JD, MISSING_FID, MISSING_CANDID = 1, 2, 3, 4
MISSING_FIELD_ERRORS = {
    MISSING_CANDIDATE: "missing_field: candidate",
    MISSING_JD: "missing_field: candidate.jd",
    MISSING_FID: "missing_field: candidate.fid",
    MISSING_CANDID: "missing_field: candid",
}
#: statuses >= FALLBACK: the payload is decoded again by the fastavro path.
FALLBACK = 16
ERR_TRUNCATED, ERR_LONG_VARINT, ERR_BAD_UNION, ERR_NEGATIVE_LENGTH = 16, 17, 18, 19
ERR_BAD_ENUM, ERR_NULL_POINT, ERR_TRAILING_BYTES, ERR_NON_ASCII = 20, 21, 22, 23
ERR_TOO_DEEP, ERR_BAD_COUNT, ERR_BAD_OPCODE, ERR_BAD_UTF8 = 24, 25, 26, 27
NEED_CAPACITY = 99  # internal: grow the point arrays and resume at this alert
FALLBACK_REASONS = {
    ERR_TRUNCATED: "read past the end of the record", ERR_LONG_VARINT: "varint longer than 10 bytes",
    ERR_BAD_UNION: "union branch index out of range", ERR_NEGATIVE_LENGTH: "negative length",
    ERR_BAD_ENUM: "enum index out of range", ERR_NULL_POINT: "null prv_candidates item",
    ERR_TRAILING_BYTES: "record shorter than its block", ERR_NON_ASCII: "non-ASCII isdiffpos",
    ERR_TOO_DEEP: "arrays/maps nested too deep", ERR_BAD_COUNT: "block count larger than the data",
    ERR_BAD_OPCODE: "corrupt program", ERR_BAD_UTF8: "objectId/cdsxmatch not UTF-8",
}
MAX_DEPTH = 32  # nesting of arrays/maps

# --------------------------------------------------------------------------- compiler

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_PRIMITIVE_OPS = {"boolean": OP_BOOL, "int": OP_LONG, "long": OP_LONG, "float": OP_FLOAT,
                  "double": OP_DOUBLE, "bytes": OP_BYTES, "string": OP_STRING}
_NAMED = frozenset({"record", "error", "enum", "fixed"})
# Roles of the fields that hold what t2 reads.
_ROLE_CANDIDATE, _ROLE_POINTS, _ROLE_POINT = "candidate", "points", "point"
_TOP_ROLES = {"candidate": _ROLE_CANDIDATE, "prv_candidates": _ROLE_POINTS}


class UnsupportedSchema(ValueError):
    """The writer schema has a shape the compiled decoder does not model (fastavro path)."""


@dataclass(frozen=True)
class CompiledSchema:
    """The program of one writer schema and which Fink columns it has."""

    program: np.ndarray  # int64 instructions
    has_roid: bool
    has_cdsxmatch: bool


def _split_name(name: str, namespace: str | None) -> tuple[str, str | None]:
    """(full name, namespace for what it encloses) per the Avro naming rules."""
    if "." in name:
        return name, name.rsplit(".", 1)[0]
    return (f"{namespace}.{name}" if namespace else name), namespace


def _plain_primitive(t: Any, read: bool) -> str | None:
    """The primitive name of ``t`` ("long", {"type": "long"}), None for other types."""
    if isinstance(t, dict):
        if read and "logicalType" in t:
            return None
        t = t.get("type")
    return t if isinstance(t, str) and t in PRIMITIVES else None


class _Compiler:
    """Walks a writer schema in wire order and emits the flat program.

    ``dest`` is the (slot, kind) a primitive value is stored into; ``role`` marks the
    complex fields t2 reads: the candidate record, the prv_candidates array, its items.
    """

    def __init__(self, schema: Any, stop_early: bool):
        self.code: list[int] = []
        self.named: dict[str, tuple[dict, str | None]] = {}  # full name -> (schema, its namespace)
        self.expanding: set[str] = set()  # records being inlined (recursion guard)
        self.stop_early = stop_early
        self._collect_names(schema, None)

    # -- named types
    def _collect_names(self, t: Any, namespace: str | None) -> None:
        """Register every named type defined anywhere in ``t`` under its full name."""
        if isinstance(t, list):
            for branch in t:
                self._collect_names(branch, namespace)
        elif isinstance(t, dict):
            kind = t.get("type")
            if kind in _NAMED:
                fullname, inner_ns = _split_name(t["name"], t.get("namespace", namespace))
                self.named[fullname] = (t, inner_ns)
                for f in t.get("fields", ()) if kind in ("record", "error") else ():
                    self._collect_names(f["type"], inner_ns)
            elif kind == "array":
                self._collect_names(t["items"], namespace)
            elif kind == "map":
                self._collect_names(t["values"], namespace)
            elif isinstance(kind, (dict, list)):
                self._collect_names(kind, namespace)

    def _resolve(self, ref: str, namespace: str | None) -> tuple[str, dict, str | None]:
        """(full name, schema, namespace) of a named-type reference."""
        for fullname in ((f"{namespace}.{ref}",) if namespace and "." not in ref else ()) + (ref,):
            if fullname in self.named:
                return (fullname, *self.named[fullname])
        raise UnsupportedSchema(f"unknown type name {ref!r}")

    # -- emission
    def emit(self, *words: int) -> int:
        """Append instruction words; return the address of the first."""
        self.code.extend(words)
        return len(self.code) - len(words)

    def compile_type(self, t: Any, ns: str | None, dest: tuple[int, str] | None, role: str | None) -> None:
        """Emit the code reading one value of type ``t`` (namespace ``ns``)."""
        if isinstance(t, list):
            self._compile_union(t, ns, dest, role)
        elif isinstance(t, str) and t in PRIMITIVES:
            self._compile_primitive(t, dest, role)
        elif isinstance(t, str):
            self._compile_named(*self._resolve(t, ns), dest, role)
        elif isinstance(t, dict):
            self._compile_complex(t, ns, dest, role)
        else:
            raise UnsupportedSchema(f"bad type {t!r}")

    def _compile_complex(self, t: dict, ns: str | None, dest: tuple[int, str] | None, role: str | None) -> None:
        kind = t.get("type")
        if kind in PRIMITIVES:
            if dest is not None and "logicalType" in t:
                raise UnsupportedSchema(f"logical type on a read field: {t!r}")
            self._compile_primitive(kind, dest, role)
        elif kind in _NAMED:
            fullname, inner_ns = _split_name(t["name"], t.get("namespace", ns))
            self._compile_named(fullname, t, inner_ns, dest, role)
        elif kind == "array":
            if dest is not None or role not in (None, _ROLE_POINTS):
                raise UnsupportedSchema("array in a read field")
            item_role = _ROLE_POINT if role == _ROLE_POINTS else None
            self._compile_blocks(lambda: self.compile_type(t["items"], ns, None, item_role))
        elif kind == "map":
            if dest is not None or role is not None:
                raise UnsupportedSchema("map in a read field")
            self._compile_blocks(lambda: (self.emit(OP_STRING, -1), self.compile_type(t["values"], ns, None, None)))
        else:  # {"type": <a union, a type or a type name>}
            self.compile_type(kind, ns, dest, role)

    @staticmethod
    def _primitive_op(kind: str, dest: tuple[int, str] | None) -> int:
        """Opcode reading a non-null primitive, checked against what its slot expects."""
        want = dest[1] if dest is not None else None
        allowed = {"int": (_KIND_FLOAT, _KIND_INT), "long": (_KIND_FLOAT, _KIND_INT),
                   "float": (_KIND_FLOAT,), "double": (_KIND_FLOAT,),
                   "string": (_KIND_STRING, _KIND_ISDIFFPOS)}.get(kind, ())
        if want is not None and want not in allowed:
            raise UnsupportedSchema(f"read field of type {kind} (expected {want})")
        return OP_ISDIFFPOS if want == _KIND_ISDIFFPOS else _PRIMITIVE_OPS[kind]

    def _compile_primitive(self, kind: str, dest: tuple[int, str] | None, role: str | None) -> None:
        if kind == "null":
            if role == _ROLE_POINT:
                self.emit(OP_NULL_POINT)
            return  # nothing on the wire; the slot stays "null"
        if role is not None:
            raise UnsupportedSchema(f"{kind} where a record or array is expected")
        self.emit(self._primitive_op(kind, dest), dest[0] if dest is not None else -1)

    def _compile_union(self, branches: list, ns: str | None, dest: tuple[int, str] | None, role: str | None) -> None:
        kinds = [_plain_primitive(b, dest is not None) for b in branches]
        if role is None and len(kinds) == 2 and kinds.count("null") == 1 and None not in kinds:
            null_index = kinds.index("null")  # ["null", primitive], most ZTF fields: one instruction
            op = self._primitive_op(kinds[1 - null_index], dest)
            self.emit(OP_OPTIONAL, null_index, op, dest[0] if dest is not None else -1)
            return
        table = self.emit(OP_UNION, len(branches), *([0] * len(branches)))
        jumps = []
        for k, branch in enumerate(branches):
            self.code[table + 2 + k] = len(self.code)
            self.compile_type(branch, ns, dest, role)
            jumps.append(self.emit(OP_JUMP, 0))
        for at in jumps:
            self.code[at + 1] = len(self.code)

    def _compile_blocks(self, compile_item) -> None:
        """An array or map: block-count loop around the item code."""
        begin = self.emit(OP_BLOCKS_BEGIN, 0)
        body = len(self.code)
        compile_item()
        self.emit(OP_BLOCKS_NEXT, body)
        self.code[begin + 1] = len(self.code)

    def _compile_named(self, fullname: str, schema: dict, inner_ns: str | None,
                       dest: tuple[int, str] | None, role: str | None) -> None:
        kind = schema["type"]
        if kind in ("enum", "fixed") and (dest is not None or role is not None):
            raise UnsupportedSchema(f"{kind} in a read field")
        if kind == "enum":
            self.emit(OP_ENUM, len(schema["symbols"]))
        elif kind == "fixed":
            if not isinstance(schema["size"], int) or schema["size"] < 0:
                raise UnsupportedSchema(f"bad fixed size {schema['size']!r}")
            self.emit(OP_FIXED, schema["size"])
        elif dest is not None or role == _ROLE_POINTS:
            raise UnsupportedSchema("record where a value or array is expected")
        elif fullname in self.expanding:
            raise UnsupportedSchema(f"recursive record {fullname}")
        else:
            self.expanding.add(fullname)
            self._compile_record_fields(schema, inner_ns, role)
            self.expanding.discard(fullname)

    def _compile_record_fields(self, schema: dict, ns: str | None, role: str | None) -> None:
        dests = {_ROLE_CANDIDATE: _CANDIDATE_DESTS, _ROLE_POINT: _POINT_DESTS}.get(role, {})
        if role == _ROLE_CANDIDATE:
            self.emit(OP_MARK_CANDIDATE)
        elif role == _ROLE_POINT:
            self.emit(OP_POINT_BEGIN)
        for f in schema["fields"]:
            self.compile_type(f["type"], ns, dests.get(f["name"]), None)
        if role == _ROLE_POINT:
            self.emit(OP_POINT_END)

    def compile_top(self, schema: Any) -> CompiledSchema:
        """The program of the top-level alert record."""
        if not isinstance(schema, dict) or schema.get("type") not in ("record", "error"):
            raise UnsupportedSchema("top-level type is not a record")
        fullname, ns = _split_name(schema["name"], schema.get("namespace"))
        fields = schema["fields"]
        needed = [i for i, f in enumerate(fields) if f["name"] in _TOP_DESTS or f["name"] in _TOP_ROLES]
        self.expanding.add(fullname)
        for i, f in enumerate(fields):
            name = f["name"]
            self.compile_type(f["type"], ns, _TOP_DESTS.get(name), _TOP_ROLES.get(name))
            if self.stop_early and needed and i == needed[-1]:
                self.emit(OP_STOP)
                break
        else:
            self.emit(OP_END)
        names = {f["name"] for f in fields}
        return CompiledSchema(np.asarray(self.code, dtype=np.int64), "roid" in names, "cdsxmatch" in names)


@lru_cache(maxsize=64)
def compile_schema(schema_json: bytes, stop_early: bool = False) -> CompiledSchema:
    """Compile a writer schema (JSON bytes) into its decoding program; cached per schema.

    ``stop_early`` ends the program after the last field t2 reads: the rest of the
    record (the ~40 KB of cutouts) is not walked, so corruption there goes unnoticed.
    Raises ``UnsupportedSchema`` for schemas outside what the program models.
    """
    try:
        schema = json.loads(schema_json)
    except ValueError as exc:
        raise UnsupportedSchema(f"schema is not JSON: {exc}") from exc
    try:
        return _Compiler(schema, stop_early).compile_top(schema)
    except UnsupportedSchema:
        raise
    except (KeyError, TypeError, AttributeError, ValueError, RecursionError) as exc:
        raise UnsupportedSchema(f"malformed schema: {type(exc).__name__}: {exc}") from exc


# --------------------------------------------------------------------------- interpreter
# Helpers take a raw pointer to the record bytes and scalars only, and are inlined: array
# arguments cost reference-count updates (atomic), which dominated a first version. Every
# read is bounds-checked against ``end`` by the helpers themselves.


def _njit(inline: bool = False):
    """numba.njit (cached on disk, GIL released); the plain function when numba is absent."""
    def wrap(func):
        if numba is None:
            return func
        return numba.njit(cache=True, nogil=True, inline="always" if inline else "never")(func)
    return wrap


if numba is not None:
    from llvmlite import ir as _llvm_ir
    from numba.core import types as _nb_types
    from numba.core.extending import intrinsic as _intrinsic

    @_intrinsic
    def _float32_from_bits(typingctx, bits):
        """The IEEE float32 whose bit pattern is the low 32 bits of the int64 ``bits``."""
        def codegen(context, builder, signature, args):
            low = builder.trunc(args[0], _llvm_ir.IntType(32))
            return builder.fpext(builder.bitcast(low, _llvm_ir.FloatType()), _llvm_ir.DoubleType())
        return _nb_types.float64(_nb_types.int64), codegen

    @_intrinsic
    def _data_pointer(typingctx, array):
        """Pointer to the first element of a contiguous array (no reference counting)."""
        def codegen(context, builder, signature, args):
            return context.make_array(signature.args[0])(context, builder, args[0]).data
        return _nb_types.CPointer(array.dtype)(array), codegen

    @_intrinsic
    def _float64_from_bits(typingctx, bits):
        """The IEEE float64 whose bit pattern is the int64 ``bits``."""
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], _llvm_ir.DoubleType())
        return _nb_types.float64(_nb_types.int64), codegen


@_njit(inline=True)
def _read_varint(buf, pos, end):
    """Zig-zag varint at ``pos``: (value, next position, status); like fastavro, 64-bit wrap."""
    acc = np.int64(0)
    shift = np.int64(0)
    for _ in range(10):
        if pos >= end:
            return np.int64(0), pos, ERR_TRUNCATED
        byte = np.int64(buf[pos])
        pos += 1
        acc |= (byte & 0x7F) << shift
        if byte < 0x80:
            value = ((acc >> 1) & np.int64(0x7FFFFFFFFFFFFFFF)) ^ -(acc & 1)
            return value, pos, OK
        shift += 7
    return np.int64(0), pos, ERR_LONG_VARINT


@_njit(inline=True)
def _skip_varint(buf, pos, end):
    """Position after the varint at ``pos``, and a status."""
    for _ in range(10):
        if pos >= end:
            return pos, ERR_TRUNCATED
        byte = buf[pos]
        pos += 1
        if byte < 0x80:
            return pos, OK
    return pos, ERR_LONG_VARINT


@_njit(inline=True)
def _read_length(buf, pos, end):
    """Length prefix of bytes/string checked against the record end: (length, start, status)."""
    size, pos, status = _read_varint(buf, pos, end)
    if status != OK:
        return size, pos, status
    if size < 0:
        return size, pos, ERR_NEGATIVE_LENGTH
    if size > end - pos:
        return size, pos, ERR_TRUNCATED
    return size, pos, OK


@_njit(inline=True)
def _read_block_count(buf, pos, end):
    """Item count of the next array/map block (a negative count is followed by a byte size)."""
    count, pos, status = _read_varint(buf, pos, end)
    if status == OK and count < 0:
        if count == np.int64(-9223372036854775807 - 1):
            return count, pos, ERR_BAD_COUNT
        count = -count
        _, pos, status = _read_varint(buf, pos, end)
    if status == OK and count > end - pos:
        return count, pos, ERR_BAD_COUNT  # only zero-size items could fit: left to fastavro
    return count, pos, status


@_njit(inline=True)
def _little_endian(buf, pos, size):
    """Unsigned little-endian integer of ``size`` bytes (wraps into int64 for 8 bytes)."""
    value = np.int64(0)
    for k in range(size):
        value |= np.int64(buf[pos + k]) << np.int64(8 * k)
    return value


@_njit(inline=True)
def _is_negative_subtraction(buf, start, size):
    """(isdiffpos is "f" or "0", all bytes ASCII so fastavro's UTF-8 decoding cannot fail)."""
    for k in range(size):
        if buf[start + k] >= 0x80:
            return False, False
    return size == 1 and (buf[start] == 102 or buf[start] == 48), True


@_njit(inline=True)
def _skip_primitive(op, buf, pos, end):
    """Skip one primitive value: (next position, status)."""
    if op == OP_LONG:
        return _skip_varint(buf, pos, end)
    if op == OP_DOUBLE or op == OP_FLOAT:
        size = 8 if op == OP_DOUBLE else 4
        if size > end - pos:
            return pos, ERR_TRUNCATED
        return pos + size, OK
    if op == OP_STRING or op == OP_BYTES:
        size, pos, status = _read_length(buf, pos, end)
        return pos + size, status
    if op == OP_BOOL:
        if pos >= end:
            return pos, ERR_TRUNCATED
        return pos + 1, OK
    return pos, ERR_BAD_OPCODE


@_njit(inline=True)
def _read_primitive(op, buf, pos, end):
    """Read one primitive value: (next position, status, int value, float value, length).

    long: (value, float(value)); float/double: the float value; string: (start, length);
    isdiffpos: (1 when "f" or "0" else 0).
    """
    if op == OP_LONG:
        value, pos, status = _read_varint(buf, pos, end)
        return pos, status, value, np.float64(value), np.int64(0)
    if op == OP_FLOAT:
        if 4 > end - pos:
            return pos, ERR_TRUNCATED, np.int64(0), 0.0, np.int64(0)
        return pos + 4, OK, np.int64(0), _float32_from_bits(_little_endian(buf, pos, 4)), np.int64(0)
    if op == OP_DOUBLE:
        if 8 > end - pos:
            return pos, ERR_TRUNCATED, np.int64(0), 0.0, np.int64(0)
        return pos + 8, OK, np.int64(0), _float64_from_bits(_little_endian(buf, pos, 8)), np.int64(0)
    if op == OP_STRING or op == OP_ISDIFFPOS:
        size, pos, status = _read_length(buf, pos, end)
        if status != OK:
            return pos, status, np.int64(0), 0.0, np.int64(0)
        if op == OP_STRING:
            return pos + size, OK, pos, 0.0, size
        negative, ascii_only = _is_negative_subtraction(buf, pos, size)
        if not ascii_only:
            return pos, ERR_NON_ASCII, np.int64(0), 0.0, np.int64(0)
        return pos + size, OK, np.int64(negative), 0.0, size
    return pos, ERR_BAD_OPCODE, np.int64(0), 0.0, np.int64(0)


@_njit()
def _interpret(buf, pos, end, prog, row, a_state, a_f, a_i, a_len, p_state, p_f, p_i, npt, stack):
    """Run the program over one record body: (status, number of points written so far)."""
    pc = 0
    depth = 0
    point = -1
    cap = p_state.shape[0]
    buf = _data_pointer(buf)
    while True:
        op = prog[pc]
        # -- primitives (alone, or the value branch of a ["null", primitive] union)
        if op == OP_OPTIONAL:
            index, pos, status = _read_varint(buf, pos, end)
            if status != OK:
                return status, npt
            if index == prog[pc + 1]:
                pc += 4
                continue
            if index != 1 - prog[pc + 1]:
                return ERR_BAD_UNION, npt
            value_op, slot = prog[pc + 2], prog[pc + 3]
            pc += 4
        elif op >= OP_BOOL and op <= OP_ISDIFFPOS:
            value_op, slot = op, prog[pc + 1]
            pc += 2
        # -- control flow; each branch ends with `continue`
        elif op == OP_UNION:
            index, pos, status = _read_varint(buf, pos, end)
            if status != OK:
                return status, npt
            if index < 0 or index >= prog[pc + 1]:
                return ERR_BAD_UNION, npt
            pc = prog[pc + 2 + index]
            continue
        elif op == OP_JUMP:
            pc = prog[pc + 1]
            continue
        elif op == OP_BLOCKS_NEXT:
            stack[depth - 1] -= 1
            if stack[depth - 1] > 0:
                pc = prog[pc + 1]
                continue
            count, pos, status = _read_block_count(buf, pos, end)
            if status != OK:
                return status, npt
            if count == 0:
                depth -= 1
                pc += 2
            else:
                stack[depth - 1] = count
                pc = prog[pc + 1]
            continue
        elif op == OP_BLOCKS_BEGIN:
            count, pos, status = _read_block_count(buf, pos, end)
            if status != OK:
                return status, npt
            if count == 0:
                pc = prog[pc + 1]
                continue
            if depth >= stack.shape[0]:
                return ERR_TOO_DEEP, npt
            stack[depth] = count
            depth += 1
            pc += 2
            continue
        elif op == OP_POINT_BEGIN:
            if npt >= cap:
                return NEED_CAPACITY, npt
            point = npt
            npt += 1
            for k in range(N_POINT_SLOTS):
                p_state[point, k] = 0
            pc += 1
            continue
        elif op == OP_POINT_END:
            if p_state[point, S_MAG] == 0:
                npt -= 1  # not a detection (null magpsf): drop it
            point = -1
            pc += 1
            continue
        elif op == OP_FIXED:
            if prog[pc + 1] > end - pos:
                return ERR_TRUNCATED, npt
            pos += prog[pc + 1]
            pc += 2
            continue
        elif op == OP_ENUM:
            index, pos, status = _read_varint(buf, pos, end)
            if status != OK:
                return status, npt
            if index < 0 or index >= prog[pc + 1]:
                return ERR_BAD_ENUM, npt
            pc += 2
            continue
        elif op == OP_MARK_CANDIDATE:
            a_state[row, S_CANDIDATE] = 1
            pc += 1
            continue
        elif op == OP_NULL_POINT:
            return ERR_NULL_POINT, npt
        elif op == OP_END:
            return (OK if pos == end else ERR_TRAILING_BYTES), npt
        elif op == OP_STOP:
            return OK, npt
        else:
            return ERR_BAD_OPCODE, npt
        # -- one primitive value: skip it, or store it into its slot
        if slot < 0:
            pos, status = _skip_primitive(value_op, buf, pos, end)
            if status != OK:
                return status, npt
            continue
        pos, status, ivalue, fvalue, size = _read_primitive(value_op, buf, pos, end)
        if status != OK:
            return status, npt
        if slot >= POINT_BASE:
            p_state[point, slot - POINT_BASE] = 1
            p_f[point, slot - POINT_BASE] = fvalue
            p_i[point, slot - POINT_BASE] = ivalue
        else:
            a_state[row, slot] = 1
            a_f[row, slot] = fvalue
            a_i[row, slot] = ivalue
            a_len[row, slot] = size


@_njit(inline=True)
def _missing_field(row, a_state):
    """The ``missing_field:`` status of a decoded record (same order as records_to_batch)."""
    if a_state[row, S_CANDIDATE] == 0:
        return MISSING_CANDIDATE
    if a_state[row, S_JD] == 0:
        return MISSING_JD
    if a_state[row, S_FID] == 0:
        return MISSING_FID
    if a_state[row, S_CANDID] == 0:
        return MISSING_CANDID
    return OK


@_njit()
def _run_program(buf, starts, ends, first, stop, prog, a_state, a_f, a_i, a_len,
                 p_state, p_f, p_i, pt_offsets, status):
    """Decode alerts ``first..stop-1`` (record bodies ``buf[starts[r]:ends[r]]``).

    Fills the slot arrays, ``status`` and ``pt_offsets[r + 1]`` (points of alert r are
    ``pt_offsets[r]:pt_offsets[r + 1]``; ``pt_offsets[first]`` must be set). Returns
    ``stop``, or the alert to resume at once the point arrays have grown.
    """
    stack = np.empty(MAX_DEPTH, np.int64)
    cap = p_state.shape[0]
    for row in range(first, stop):
        start_pt = pt_offsets[row]
        a_state[row, :] = 0
        code, npt = _interpret(buf, starts[row], ends[row], prog, row, a_state, a_f, a_i, a_len,
                               p_state, p_f, p_i, start_pt, stack)
        if code == NEED_CAPACITY:
            return row
        if code == OK:
            code = _missing_field(row, a_state)
        if code == OK and a_state[row, S_MAG] != 0:
            if npt >= cap:
                return row
            for k in range(N_POINT_SLOTS):  # the candidate is the last history point
                p_state[npt, k] = a_state[row, k]
                p_f[npt, k] = a_f[row, k]
                p_i[npt, k] = a_i[row, k]
            npt += 1
        if code != OK:
            npt = start_pt
        status[row] = code
        pt_offsets[row + 1] = npt
    return stop


# --------------------------------------------------------------------------- framing


@dataclass(frozen=True)
class _Header:
    """A container header seen before: its bytes up to the sync marker and its program."""

    prefix: bytes
    compiled: CompiledSchema | None  # None: not decodable here (codec, schema)


class _HeaderCache:
    """Recently seen container headers; a payload matches one by a plain prefix compare."""

    def __init__(self, stop_early: bool, size: int = 16):
        self._stop_early = stop_early
        self._size = size
        self._entries: tuple[_Header, ...] = ()
        self._lock = threading.Lock()

    def find(self, payload: bytes) -> _Header | None:
        """The header ``payload`` starts with; None when its framing is not parseable."""
        for entry in self._entries:
            if payload.startswith(entry.prefix):
                return entry
        return self._learn(payload)

    def _learn(self, payload: bytes) -> _Header | None:
        """Parse a new header (and compile its schema) the way the fastavro path would."""
        try:
            container = parse_container(payload)
            if container.codec == "null":
                _parsed_schemas(container.schema_json)  # a schema fastavro rejects stays on its path
        except Exception:  # untrusted bytes: the fastavro path reports this payload's reason
            return None
        compiled = None
        if container.codec == "null":
            try:
                compiled = compile_schema(container.schema_json, self._stop_early)
            except UnsupportedSchema:
                compiled = None  # decoded by fastavro, like any schema this compiler does not model
        entry = _Header(payload[: container.header_size - SYNC_SIZE], compiled)
        with self._lock:
            self._entries = ((entry,) + self._entries)[: self._size]
        return entry


_HEADERS = {False: _HeaderCache(False), True: _HeaderCache(True)}


def _single_record_body(payload: bytes, header: _Header) -> tuple[int, int] | None:
    """(start, end) of the record of a one-block, one-record container; None otherwise."""
    pos = len(header.prefix)
    sync = payload[pos : pos + SYNC_SIZE]
    try:
        count, pos = read_long(payload, pos + SYNC_SIZE)
        size, pos = read_long(payload, pos)
    except ContainerError:
        return None
    end = pos + size
    if count != 1 or size < 0 or end + SYNC_SIZE != len(payload) or payload[end:] != sync:
        return None
    return pos, end


@dataclass
class _Framed:
    """Payloads grouped by compiled schema, and the rows left to the fastavro path."""

    groups: dict[int, tuple[CompiledSchema, list[tuple[int, bytes, int, int]]]]
    fallback: list[int]


def _frame_all(payloads: Sequence[bytes | None], stop_early: bool) -> _Framed:
    """Locate each payload's record body and compiled schema (or send it to fastavro)."""
    framed = _Framed({}, [])
    cache = _HEADERS[stop_early]
    for row, payload in enumerate(payloads):
        if not isinstance(payload, (bytes, bytearray)) or not payload:
            framed.fallback.append(row)
            continue
        header = cache.find(payload)
        body = _single_record_body(payload, header) if header is not None and header.compiled is not None else None
        if body is None:
            framed.fallback.append(row)
            continue
        group = framed.groups.setdefault(id(header.compiled), (header.compiled, []))
        group[1].append((row, payload, body[0], body[1]))
    return framed


# --------------------------------------------------------------------------- batch decoding

#: record bytes copied per kernel call (a reused per-thread buffer: no page faults).
CHUNK_BYTES = 16 << 20
_scratch = threading.local()


def _scratch_buffer(nbytes: int) -> np.ndarray:
    """This thread's reusable byte buffer of at least ``nbytes``."""
    buf = getattr(_scratch, "buf", None)
    if buf is None or buf.shape[0] < nbytes:
        buf = np.empty(max(nbytes, CHUNK_BYTES), dtype=np.uint8)
        _scratch.buf = buf
    return buf


def _chunks(items: list[tuple[int, bytes, int, int]]) -> list[tuple[int, int]]:
    """Consecutive item ranges whose record bytes fit in about CHUNK_BYTES."""
    ranges, first, total = [], 0, 0
    for k, (_, _, start, end) in enumerate(items):
        if total and total + end - start > CHUNK_BYTES:
            ranges.append((first, k))
            first, total = k, 0
        total += end - start
    ranges.append((first, len(items)))
    return ranges


class _GroupDecoder:
    """Slot and point arrays of one schema group, filled chunk by chunk."""

    def __init__(self, compiled: CompiledSchema, n: int):
        self.compiled = compiled
        self.a_state = np.zeros((n, N_ALERT_SLOTS), dtype=np.uint8)
        self.a_f = np.zeros((n, N_ALERT_SLOTS), dtype=np.float64)
        self.a_i = np.zeros((n, N_ALERT_SLOTS), dtype=np.int64)
        self.a_len = np.zeros((n, N_ALERT_SLOTS), dtype=np.int64)
        self.status = np.zeros(n, dtype=np.int64)
        self.pt_offsets = np.zeros(n + 1, dtype=np.int64)
        self.starts = np.zeros(n, dtype=np.int64)
        self.ends = np.zeros(n, dtype=np.int64)
        self._allocate_points(16 * n + 64)
        self.object_id: list[str | None] = [None] * n
        self.cdsxmatch: list[str | None] = [None] * n

    def _allocate_points(self, cap: int) -> None:
        """(Re)allocate the per-point arrays for ``cap`` points, keeping those written."""
        used = int(self.pt_offsets.max())
        arrays = []
        for name, dtype in (("p_state", np.uint8), ("p_f", np.float64), ("p_i", np.int64)):
            array = np.zeros((cap, N_POINT_SLOTS), dtype=dtype)
            old = getattr(self, name, None)
            if old is not None:
                array[:used] = old[:used]
            arrays.append(array)
        self.p_state, self.p_f, self.p_i = arrays

    def run_chunk(self, items: list[tuple[int, bytes, int, int]], first: int, stop: int) -> None:
        """Copy the record bodies of items[first:stop] into the scratch buffer and decode them."""
        nbytes = sum(end - start for _, _, start, end in items[first:stop])
        buf = _scratch_buffer(nbytes)
        view = memoryview(buf)
        offset = 0
        for k in range(first, stop):
            _, payload, start, end = items[k]
            view[offset : offset + end - start] = memoryview(payload)[start:end]
            self.starts[k], self.ends[k] = offset, offset + end - start
            offset += end - start
        row = first
        while row < stop:
            row = _run_program(buf, self.starts, self.ends, row, stop, self.compiled.program, self.a_state,
                               self.a_f, self.a_i, self.a_len, self.p_state, self.p_f, self.p_i,
                               self.pt_offsets, self.status)
            if row < stop:
                self._allocate_points(2 * self.p_state.shape[0])
        self._decode_strings(view, first, stop)

    def _decode_strings(self, view: memoryview, first: int, stop: int) -> None:
        """objectId/cdsxmatch to str while the chunk is in the buffer; bad UTF-8: fastavro path."""
        for k in range(first, stop):
            if self.status[k] >= FALLBACK:
                continue
            try:
                self.object_id[k] = self._string(view, k, S_OBJECTID)
                self.cdsxmatch[k] = self._string(view, k, S_XMATCH)
            except UnicodeDecodeError:
                self.status[k] = ERR_BAD_UTF8
                self.object_id[k] = self.cdsxmatch[k] = None

    def _string(self, view: memoryview, k: int, slot: int) -> str | None:
        if not self.a_state[k, slot]:
            return None
        start = self.a_i[k, slot]
        return str(view[start : start + self.a_len[k, slot]], "utf-8")

    def batch(self, keep: np.ndarray) -> AlertBatch:
        """The AlertBatch of the alerts with ``keep`` (decoded here, maybe with a missing field)."""
        ok = keep & (self.status == OK)
        counts = np.diff(self.pt_offsets)
        points = np.repeat(keep, counts)  # kept alerts' points (others wrote none, or are dropped)
        offsets = np.zeros(int(keep.sum()) + 1, dtype=np.int64)
        np.cumsum(counts[keep], out=offsets[1:])

        def scalar(slot: int) -> np.ndarray:
            return np.where(ok & (self.a_state[:, slot] != 0), self.a_f[:, slot], np.nan)[keep]

        def point_column(slot: int, values: np.ndarray, missing: float | int) -> np.ndarray:
            return np.where(self.p_state[: len(points), slot] != 0, values[: len(points), slot], missing)[points]

        rows = np.flatnonzero(keep)
        roid = None
        if self.compiled.has_roid and len(rows):
            roid = np.where(ok & (self.a_state[:, S_ROID] != 0), self.a_i[:, S_ROID], -1)[keep]
        errors = [MISSING_FIELD_ERRORS.get(int(code)) for code in self.status[rows]]
        return AlertBatch(
            object_id=[self.object_id[r] if ok[r] else None for r in rows],
            candid=np.where(ok, self.a_i[:, S_CANDID], -1)[keep],
            error=errors,
            jdstarthist=scalar(S_JDSTARTHIST), rb=scalar(S_RB), nbad=scalar(S_NBAD), ssdistnr=scalar(S_SSDISTNR),
            candidate_fid=np.where(ok, self.a_i[:, S_FID], -1)[keep],
            roid=roid,
            cdsxmatch=[self.cdsxmatch[r] if ok[r] else None for r in rows]
            if self.compiled.has_cdsxmatch and len(rows) else None,
            offsets=offsets,
            hist_jd=point_column(S_JD, self.p_f, np.nan),
            hist_fid=point_column(S_FID, self.p_i, -1),
            hist_mag=self.p_f[: len(points), S_MAG][points].copy(),
            hist_magerr=point_column(S_MAGERR, self.p_f, np.nan),
            hist_negative=((self.p_state[: len(points), S_NEG] != 0) & (self.p_i[: len(points), S_NEG] == 1))[points],
        )


def _decode_group(compiled: CompiledSchema, items: list[tuple[int, bytes, int, int]]) -> tuple[np.ndarray, AlertBatch, list[int]]:
    """(rows decoded here, their AlertBatch, rows for the fastavro path) of one schema group."""
    decoder = _GroupDecoder(compiled, len(items))
    for first, stop in _chunks(items):
        decoder.run_chunk(items, first, stop)
    keep = decoder.status < FALLBACK
    rows = np.array([row for row, _, _, _ in items], dtype=np.int64)
    return rows[keep], decoder.batch(keep), rows[~keep].tolist()


def _merge(n: int, parts: list[tuple[np.ndarray, AlertBatch]]) -> AlertBatch:
    """One AlertBatch of ``n`` rows from parts covering disjoint rows (part rows ascending)."""
    parts = [(rows, batch) for rows, batch in parts if len(rows)]
    if len(parts) == 1 and len(parts[0][0]) == n:
        return parts[0][1]
    if not parts:
        return records_to_batch([], [])
    object_id: list[str | None] = [None] * n
    error: list[str | None] = [None] * n
    has_roid = any(b.roid is not None for _, b in parts)
    has_xmatch = any(b.cdsxmatch is not None for _, b in parts)
    cdsxmatch: list[str | None] | None = [None] * n if has_xmatch else None
    columns = {"candid": np.full(n, -1, dtype=np.int64), "candidate_fid": np.full(n, -1, dtype=np.int64)}
    columns |= {name: np.full(n, np.nan) for name in ("jdstarthist", "rb", "nbad", "ssdistnr")}
    roid = np.full(n, -1, dtype=np.int64) if has_roid else None
    counts = np.zeros(n, dtype=np.int64)
    for rows, batch in parts:
        for name, column in columns.items():
            column[rows] = getattr(batch, name)
        if roid is not None and batch.roid is not None:
            roid[rows] = batch.roid
        for j, row in enumerate(rows.tolist()):
            object_id[row], error[row] = batch.object_id[j], batch.error[j]
            if cdsxmatch is not None and batch.cdsxmatch is not None:
                cdsxmatch[row] = batch.cdsxmatch[j]
        counts[rows] = np.diff(batch.offsets)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    hist = {name: np.empty(offsets[-1], dtype=dtype) for name, dtype in (
        ("hist_jd", np.float64), ("hist_fid", np.int64), ("hist_mag", np.float64),
        ("hist_magerr", np.float64), ("hist_negative", bool))}
    for rows, batch in parts:
        part_counts = np.diff(batch.offsets)
        within = np.arange(batch.offsets[-1]) - np.repeat(batch.offsets[:-1], part_counts)
        target = np.repeat(offsets[rows], part_counts) + within
        for name, column in hist.items():
            column[target] = getattr(batch, name)
    return AlertBatch(object_id=object_id, error=error, roid=roid, cdsxmatch=cdsxmatch, offsets=offsets,
                      **columns, **hist)


def enabled() -> bool:
    """True when the compiled decoder can run (numba importable, not switched off)."""
    return numba is not None and os.environ.get("FINK_T2_FAST_AVRO", "1") != "0"


def decode_container_payloads(payloads: Sequence[bytes | None], *, stop_early: bool = False,
                              stats: dict[str, int] | None = None) -> AlertBatch:
    """Decode Kafka message values (one Avro container alert each) into an ``AlertBatch``.

    Equal to the fastavro path of ``alerts.decode_payloads``; payloads this decoder does
    not handle go through ``alerts.decode_one`` one by one. ``stop_early`` skips walking
    the record after the last field read (faster, but corrupt cutouts are not detected).
    ``stats``, when given, receives the counts of payloads decoded here ("compiled") and
    sent to fastavro ("fallback").
    """
    if numba is None:
        raise RuntimeError("fink_t2.alerts.compiled needs numba (pip install numba)")
    framed = _frame_all(payloads, stop_early)
    parts: list[tuple[np.ndarray, AlertBatch]] = []
    fallback = framed.fallback
    for compiled, items in framed.groups.values():
        rows, batch, failed = _decode_group(compiled, items)
        parts.append((rows, batch))
        fallback.extend(failed)
    if fallback:
        fallback.sort()
        decoded = [decode_one(payloads[row]) for row in fallback]
        batch = records_to_batch([record for record, _ in decoded], [error for _, error in decoded])
        parts.append((np.asarray(fallback, dtype=np.int64), batch))
    if stats is not None:
        stats["compiled"] = stats.get("compiled", 0) + len(payloads) - len(fallback)
        stats["fallback"] = stats.get("fallback", 0) + len(fallback)
    return _merge(len(payloads), parts)
