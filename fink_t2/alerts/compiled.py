"""Stage 1 — a schema-compiled Avro decoder for ZTF alert messages (numba).

Each distinct writer schema, once checked by ``alerts.schema`` (bounded, not recursive,
t2 fields well typed), is compiled into a flat integer *program*: one instruction per Avro
value of the top-level record in wire order (records inlined, unions as jump tables, arrays
and maps as block loops). The fields t2 needs carry a *slot*: the interpreter stores their
value into per-alert or per-history-point arrays and skips over everything else, so a 44 KB
alert costs a few microseconds. ``_run_program`` (``numba.njit``) executes the program over
a batch of record bodies copied into one reusable buffer.

The interpreter validates the whole record, as strictly as fastavro reading it with its
writer schema, or more (varints longer than 10 bytes, negative enum indexes): every length
and block count fits in the bytes left, every string is UTF-8, every union/enum index and
logical-type value is in range, and the record fills its block exactly. So whatever it
accepts, ``fastavro.reader`` can read (the enriched alerts re-frame these bytes). A payload
it rejects becomes an error row with the interpreter's reason; there is no second decoder
behind it. Work per payload is bounded by the schema rules (``alerts.schema``) and the
block size (``container.MAX_BLOCK_BYTES``).

Switch it off with the environment variable ``FINK_T2_FAST_AVRO=0`` (the fastavro path).
"""
from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from fink_t2.alerts.batch import (
    CANDIDATE_SCALARS,
    CANDIDATE_KINDS, FLOAT, HISTORY_KINDS, INT, STRING, TOP_KINDS, AlertBatch, invalid_candid, records_to_batch,
)
from fink_t2.alerts.container import (
    MAX_BLOCK_BYTES, SYNC_SIZE, ContainerError, parse_container, payload_problem, read_long, single_record,
)
from fink_t2.alerts.schema import MAX_DEPTH, PRIMITIVES, Node, SchemaError, checked_schema

try:
    import numba
except ImportError:  # the fastavro path stays available without numba
    numba = None

# --------------------------------------------------------------------------- slots

# Per-alert slots. The first five are also the per-point slots (same order), so the
# candidate becomes a history point by copying slots 0..4.
S_JD, S_FID, S_MAG, S_MAGERR, S_NEG = 0, 1, 2, 3, 4
S_RB, S_NBAD, S_JDSTARTHIST, S_SSDISTNR, S_CANDIDATE_CANDID = 5, 6, 7, 8, 9
S_CANDID, S_OBJECTID, S_ROID, S_XMATCH, S_CANDIDATE = 10, 11, 12, 13, 14
S_SGSCORE1, S_DISTPSNR1, S_RA, S_DEC = 15, 16, 17, 18
N_ALERT_SLOTS = 19
N_POINT_SLOTS = 5
POINT_BASE = 32  # slot >= POINT_BASE: per-point slot (slot - POINT_BASE) of the current point

_ISDIFFPOS = "isdiffpos"  # a string slot that stores 1 for a negative subtraction
_POINT_SLOTS = {"jd": S_JD, "fid": S_FID, "magpsf": S_MAG, "sigmapsf": S_MAGERR, "isdiffpos": S_NEG}
_CANDIDATE_SLOTS = _POINT_SLOTS | {"rb": S_RB, "nbad": S_NBAD, "jdstarthist": S_JDSTARTHIST,
                                   "ssdistnr": S_SSDISTNR, "candid": S_CANDIDATE_CANDID,
                                   "sgscore1": S_SGSCORE1, "distpsnr1": S_DISTPSNR1, "ra": S_RA, "dec": S_DEC}
#: slot of each ``CANDIDATE_SCALARS`` column (the candidate's jd and magpsf are its point slots)
_SCALAR_SLOTS = {name: _CANDIDATE_SLOTS[name] for name in CANDIDATE_SCALARS}
_TOP_SLOTS = {"candid": S_CANDID, "objectId": S_OBJECTID, "roid": S_ROID, "cdsxmatch": S_XMATCH}


def _dests(slots: dict[str, int], kinds: dict[str, str], base: int = 0) -> dict[str, tuple[int, str]]:
    """field name -> (slot, kind) of the fields of one record t2 reads."""
    assert set(slots) == set(kinds), (sorted(slots), sorted(kinds))
    return {name: (base + slot, _ISDIFFPOS if name == "isdiffpos" else kinds[name]) for name, slot in slots.items()}


_CANDIDATE_DESTS = _dests(_CANDIDATE_SLOTS, CANDIDATE_KINDS)
_POINT_DESTS = _dests(_POINT_SLOTS, HISTORY_KINDS, POINT_BASE)
_TOP_DESTS = _dests(_TOP_SLOTS, TOP_KINDS)

# --------------------------------------------------------------------------- opcodes

OP_END = 0  # record done: check it consumed the whole body, then finish the alert
# primitives: two words (opcode, slot); slot -1 = skip the value
OP_BOOL = 2  # 1 byte (never stored)
OP_LONG = 3  # zig-zag varint (Avro int and long)
OP_FLOAT = 4  # 4-byte little-endian IEEE float
OP_DOUBLE = 5  # 8-byte little-endian IEEE double
OP_BYTES = 6  # length-prefixed bytes (never stored)
OP_STRING = 7  # length-prefixed UTF-8, validated (store start offset and length)
OP_ISDIFFPOS = 8  # string; store 1 when it is "f" or "0" (negative subtraction)
OP_FIXED = 9  # size: skip size bytes
OP_ENUM = 10  # n_symbols: varint index in [0, n)
OP_UNION = 11  # n, addr_0 .. addr_{n-1}: varint branch index, jump to its code
OP_JUMP = 12  # addr
OP_BLOCKS_BEGIN = 13  # end_addr: first block count of an array/map (0: jump to end_addr)
OP_BLOCKS_NEXT = 14  # body_addr: next item, or next block count
OP_POINT_BEGIN = 15  # start a history point (a prv_candidates item)
OP_POINT_END = 16  # keep the point when its magpsf is not null
OP_RANGE = 17  # low, high: a varint of a logical type, in [low, high] (never stored)
OP_MARK_CANDIDATE = 18  # the candidate record is present (not null)
OP_OPTIONAL = 19  # null_index, primitive opcode, slot: a ["null", primitive] union in one step

# --------------------------------------------------------------------------- statuses

OK = 0
MISSING_CANDIDATE, MISSING_JD, MISSING_FID, MISSING_CANDID, INVALID_CANDID = 1, 2, 3, 4, 5
MISSING_FIELD_ERRORS = {
    MISSING_CANDIDATE: "missing_field: candidate",
    MISSING_JD: "missing_field: candidate.jd",
    MISSING_FID: "missing_field: candidate.fid",
    MISSING_CANDID: "missing_field: candid",
}
#: statuses >= FIRST_DECODE_ERROR: the bytes are not a record of the schema.
FIRST_DECODE_ERROR = 16
ERR_TRUNCATED, ERR_LONG_VARINT, ERR_BAD_UNION, ERR_NEGATIVE_LENGTH = 16, 17, 18, 19
ERR_BAD_ENUM, ERR_TRAILING_BYTES, ERR_TOO_DEEP, ERR_BAD_COUNT = 20, 21, 22, 23
ERR_BAD_OPCODE, ERR_BAD_UTF8, ERR_OUT_OF_RANGE, ERR_NEGATIVE_INDEX, ERR_MIN_COUNT = 24, 25, 26, 27, 28
NEED_CAPACITY = 99  # internal: grow the point arrays and resume at this alert
#: the interpreter's error reasons (after ``avro_decode: ``).
DECODE_ERRORS = {
    ERR_TRUNCATED: "read past the end of the record", ERR_LONG_VARINT: "varint longer than 10 bytes",
    ERR_BAD_UNION: "union branch index out of range", ERR_NEGATIVE_LENGTH: "negative length",
    ERR_BAD_ENUM: "enum index out of range", ERR_TRAILING_BYTES: "record shorter than its block",
    ERR_TOO_DEEP: "arrays/maps nested too deep", ERR_BAD_COUNT: "block count larger than the bytes left",
    ERR_BAD_OPCODE: "corrupt program", ERR_BAD_UTF8: "string not valid UTF-8",
    ERR_OUT_OF_RANGE: "value out of the range of its logical type",
    ERR_NEGATIVE_INDEX: "negative union or enum index",  # fastavro counts it from the end
    ERR_MIN_COUNT: "block count -2^63 (its item count -(-2^63) is no long)",  # fastavro reads it as empty
}

# --------------------------------------------------------------------------- compiler

_PRIMITIVE_OPS = {"boolean": OP_BOOL, "int": OP_LONG, "long": OP_LONG, "float": OP_FLOAT,
                  "double": OP_DOUBLE, "bytes": OP_BYTES, "string": OP_STRING}
#: the opcode reading each Avro type into a slot of each kind (alerts.schema checked the types).
_STORE_OPS = {FLOAT: {"int": OP_LONG, "long": OP_LONG, "float": OP_FLOAT, "double": OP_DOUBLE},
              INT: {"int": OP_LONG, "long": OP_LONG}, STRING: {"string": OP_STRING},
              _ISDIFFPOS: {"string": OP_ISDIFFPOS}}
# Roles of the fields that hold what t2 reads.
_ROLE_CANDIDATE, _ROLE_POINTS, _ROLE_POINT = "candidate", "points", "point"
_TOP_ROLES = {"candidate": _ROLE_CANDIDATE, "prv_candidates": _ROLE_POINTS}


@dataclass(frozen=True)
class CompiledSchema:
    """The program of one writer schema and which Fink columns it has."""

    program: np.ndarray  # int64 instructions
    has_roid: bool
    has_cdsxmatch: bool


def _plain_primitive(node: Node) -> bool:
    """A primitive read in one step (no logical-type range to check)."""
    return node.kind in PRIMITIVES and node.value_range is None


class _Compiler:
    """Walks a resolved writer schema (``alerts.schema.Node``) in wire order, emitting the program.

    ``dest`` is the (slot, kind) a primitive value is stored into; ``role`` marks the
    complex fields t2 reads: the candidate record, the prv_candidates array, its items.
    """

    def __init__(self) -> None:
        self.code: list[int] = []

    def emit(self, *words: int) -> int:
        """Append instruction words; return the address of the first."""
        self.code.extend(words)
        return len(self.code) - len(words)

    def compile_type(self, node: Node, dest: tuple[int, str] | None, role: str | None) -> None:
        """Emit the code reading one value of type ``node``."""
        kind = node.kind
        if kind == "union":
            self._compile_union(node, dest, role)
        elif kind == "record":
            self._compile_record_fields(node, role)
        elif kind == "array":
            item_role = _ROLE_POINT if role == _ROLE_POINTS else None
            self._compile_blocks(lambda: self.compile_type(node.children[0], None, item_role))
        elif kind == "map":
            self._compile_blocks(lambda: (self.emit(OP_STRING, -1), self.compile_type(node.children[0], None, None)))
        elif kind == "enum":
            self.emit(OP_ENUM, node.size)
        elif kind == "fixed":
            if node.size:
                self.emit(OP_FIXED, node.size)
        elif node.value_range is not None:
            self.emit(OP_RANGE, *node.value_range)
        elif kind != "null":  # null: nothing on the wire, the slot stays "null"
            self.emit(self._primitive_op(kind, dest), dest[0] if dest is not None else -1)

    @staticmethod
    def _primitive_op(kind: str, dest: tuple[int, str] | None) -> int:
        return _STORE_OPS[dest[1]][kind] if dest is not None else _PRIMITIVE_OPS[kind]

    def _compile_union(self, node: Node, dest: tuple[int, str] | None, role: str | None) -> None:
        kinds = [child.kind for child in node.children]
        if len(kinds) == 2 and kinds.count("null") == 1 and all(map(_plain_primitive, node.children)):
            null_index = kinds.index("null")  # ["null", primitive], most ZTF fields: one instruction
            op = self._primitive_op(kinds[1 - null_index], dest)
            self.emit(OP_OPTIONAL, null_index, op, dest[0] if dest is not None else -1)
            return
        table = self.emit(OP_UNION, len(kinds), *([0] * len(kinds)))
        jumps = []
        for k, branch in enumerate(node.children):
            self.code[table + 2 + k] = len(self.code)
            self.compile_type(branch, dest, role)
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

    def _compile_record_fields(self, node: Node, role: str | None) -> None:
        dests = {_ROLE_CANDIDATE: _CANDIDATE_DESTS, _ROLE_POINT: _POINT_DESTS}.get(role, {})
        if role == _ROLE_CANDIDATE:
            self.emit(OP_MARK_CANDIDATE)
        elif role == _ROLE_POINT:
            self.emit(OP_POINT_BEGIN)
        for name, child in zip(node.field_names, node.children):
            self.compile_type(child, dests.get(name), None)
        if role == _ROLE_POINT:
            self.emit(OP_POINT_END)

    def compile_top(self, top: Node) -> CompiledSchema:
        """The program of the top-level alert record."""
        for name, child in zip(top.field_names, top.children):
            self.compile_type(child, _TOP_DESTS.get(name), _TOP_ROLES.get(name))
        self.emit(OP_END)
        return CompiledSchema(np.asarray(self.code, dtype=np.int64), "roid" in top.field_names,
                              "cdsxmatch" in top.field_names)


def compile_schema(schema_json: bytes) -> CompiledSchema:
    """Check (``alerts.schema.checked_schema``) and compile a writer schema.

    Raises ``SchemaError`` with the reason every alert of this schema gets.
    """
    return _Compiler().compile_top(checked_schema(schema_json).top)


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
            return count, pos, ERR_MIN_COUNT
        count = -count
        _, pos, status = _read_varint(buf, pos, end)
    if status == OK and count > end - pos:
        return count, pos, ERR_BAD_COUNT  # every item takes >= 1 byte (alerts.schema)
    return count, pos, status


@_njit(inline=True)
def _little_endian(buf, pos, size):
    """Unsigned little-endian integer of ``size`` bytes (wraps into int64 for 8 bytes)."""
    value = np.int64(0)
    for k in range(size):
        value |= np.int64(buf[pos + k]) << np.int64(8 * k)
    return value


@_njit(inline=True)
def _valid_utf8(buf, start, size):
    """True when ``size`` bytes at ``start`` are UTF-8 as strict as Python's decoder (no
    overlong forms, no surrogates, nothing above U+10FFFF: Unicode 15, table 3-7)."""
    pos = start
    end = start + size
    while pos < end:
        lead = np.int64(buf[pos])
        if lead < 0x80:
            pos += 1
            continue
        if lead < 0xC2 or lead > 0xF4:
            return False
        more = 1 if lead < 0xE0 else (2 if lead < 0xF0 else 3)
        if more > end - pos - 1:
            return False
        low, high = 0x80, 0xBF  # range of the second byte
        if lead == 0xE0:
            low = 0xA0
        elif lead == 0xED:
            high = 0x9F
        elif lead == 0xF0:
            low = 0x90
        elif lead == 0xF4:
            high = 0x8F
        second = np.int64(buf[pos + 1])
        if second < low or second > high:
            return False
        for k in range(2, more + 1):
            if np.int64(buf[pos + k]) & 0xC0 != 0x80:
                return False
        pos += more + 1
    return True


@_njit(inline=True)
def _read_string(buf, pos, end):
    """A length-prefixed UTF-8 string: (length, start, status)."""
    size, pos, status = _read_length(buf, pos, end)
    if status == OK and not _valid_utf8(buf, pos, size):
        status = ERR_BAD_UTF8
    return size, pos, status


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
    if op == OP_STRING:
        size, pos, status = _read_string(buf, pos, end)
        return pos + size, status
    if op == OP_BYTES:
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
        size, pos, status = _read_string(buf, pos, end)
        if status != OK:
            return pos, status, np.int64(0), 0.0, np.int64(0)
        if op == OP_STRING:
            return pos + size, OK, pos, 0.0, size
        negative = size == 1 and (buf[pos] == 102 or buf[pos] == 48)  # "f" or "0"
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
                return (ERR_NEGATIVE_INDEX if index < 0 else ERR_BAD_UNION), npt
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
            if index < 0:
                return ERR_NEGATIVE_INDEX, npt
            if index >= prog[pc + 1]:
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
            if index < 0:
                return ERR_NEGATIVE_INDEX, npt
            if index >= prog[pc + 1]:
                return ERR_BAD_ENUM, npt
            pc += 2
            continue
        elif op == OP_MARK_CANDIDATE:
            a_state[row, S_CANDIDATE] = 1
            pc += 1
            continue
        elif op == OP_RANGE:
            value, pos, status = _read_varint(buf, pos, end)
            if status != OK:
                return status, npt
            if value < prog[pc + 1] or value > prog[pc + 2]:
                return ERR_OUT_OF_RANGE, npt
            pc += 3
            continue
        elif op == OP_END:
            return (OK if pos == end else ERR_TRAILING_BYTES), npt
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
def _check_fields(row, a_state, a_i):
    """The ``missing_field:``/``invalid_field:`` status of a decoded record (the order of
    batch.record_problem); the alert id is the top-level candid, else candidate.candid."""
    if a_state[row, S_CANDIDATE] == 0:
        return MISSING_CANDIDATE
    if a_state[row, S_JD] == 0:
        return MISSING_JD
    if a_state[row, S_FID] == 0:
        return MISSING_FID
    if a_state[row, S_CANDID] == 0 and a_state[row, S_CANDIDATE_CANDID] != 0:
        a_state[row, S_CANDID] = 1
        a_i[row, S_CANDID] = a_i[row, S_CANDIDATE_CANDID]
    if a_state[row, S_CANDID] == 0:
        return MISSING_CANDID
    if a_i[row, S_CANDID] < 0:
        return INVALID_CANDID
    return OK


@_njit()
def _run_program(buf, starts, ends, first, stop, prog, a_state, a_f, a_i, a_len,
                 p_state, p_f, p_i, pt_offsets, status):
    """Decode alerts ``first..stop-1`` (record bodies ``buf[starts[r]:ends[r]]``).

    Fills the slot arrays, ``status`` and ``pt_offsets[r + 1]`` (points of alert r are
    ``pt_offsets[r]:pt_offsets[r + 1]``; ``pt_offsets[first]`` must be set). Returns
    ``stop``, or the alert to resume at once the point arrays have grown.
    """
    stack = np.empty(MAX_DEPTH, np.int64)  # open arrays/maps: fewer than the schema's nesting
    cap = p_state.shape[0]
    for row in range(first, stop):
        start_pt = pt_offsets[row]
        a_state[row, :] = 0
        code, npt = _interpret(buf, starts[row], ends[row], prog, row, a_state, a_f, a_i, a_len,
                               p_state, p_f, p_i, start_pt, stack)
        if code == NEED_CAPACITY:
            return row
        if code == OK:
            code = _check_fields(row, a_state, a_i)
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


@lru_cache(maxsize=64)
def _plan(schema_json: bytes) -> CompiledSchema | str:
    """The program of a writer schema, or the reason none of its alerts can be decoded (cached)."""
    try:
        return compile_schema(schema_json)
    except SchemaError as exc:
        return str(exc)


@dataclass(frozen=True)
class _Header:
    """An uncompressed container header seen before: its bytes up to the sync marker and its plan."""

    prefix: bytes
    plan: CompiledSchema | str


class _HeaderCache:
    """Recently seen headers of null-codec containers; a payload matches one by a prefix compare
    (a ZTF header is ~22 KB of schema JSON: parsing it per message would cost more than decoding)."""

    def __init__(self, size: int = 16):
        self._size = size
        self._entries: tuple[_Header, ...] = ()
        self._lock = threading.Lock()

    def find(self, payload: bytes) -> _Header | None:
        """The header ``payload`` starts with; None when it is not a null-codec container."""
        for entry in self._entries:
            if payload.startswith(entry.prefix):
                return entry
        return self._learn(payload)

    def _learn(self, payload: bytes) -> _Header | None:
        try:
            container = parse_container(payload)
        except ContainerError:
            return None  # single_record gives this payload's reason
        if container.codec != "null":
            return None
        entry = _Header(payload[: container.header_size - SYNC_SIZE], _plan(container.schema_json))
        with self._lock:
            self._entries = ((entry,) + self._entries)[: self._size]
        return entry


_HEADERS = _HeaderCache()


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
    if count != 1 or not 0 <= size <= MAX_BLOCK_BYTES or end + SYNC_SIZE != len(payload) or payload[end:] != sync:
        return None
    return pos, end


def _locate(payload: bytes) -> tuple[CompiledSchema | str, bytes, int, int]:
    """(plan, buffer, start, end) of the record of a one-alert container: the usual ZTF packet by
    a header-prefix match, any other shape (deflate, unknown header) by parsing it."""
    header = _HEADERS.find(payload)
    body = _single_record_body(payload, header) if header is not None else None
    if body is not None:
        return header.plan, payload, body[0], body[1]
    container, record = single_record(payload)  # raises ContainerError with the reason
    return _plan(container.schema_json), record, 0, len(record)


@dataclass
class _Framed:
    """Payloads grouped by compiled schema, and the reasons of those that cannot be decoded."""

    groups: dict[int, tuple[CompiledSchema, list[tuple[int, bytes, int, int]]]]
    errors: dict[int, str]


def _frame_all(payloads: Sequence[bytes | None], writer_schema_json: bytes | None) -> _Framed:
    """Locate each payload's record body and compiled schema, or its error reason."""
    framed = _Framed({}, {})
    for row, payload in enumerate(payloads):
        problem = payload_problem(payload)
        if problem is not None:
            framed.errors[row] = problem
            continue
        try:
            if writer_schema_json is None:
                plan, buffer, start, end = _locate(payload)
            else:
                plan, buffer, start, end = _plan(writer_schema_json), payload, 0, len(payload)
                if end > MAX_BLOCK_BYTES:
                    raise ContainerError(f"record larger than {MAX_BLOCK_BYTES} bytes")
        except ContainerError as exc:
            framed.errors[row] = f"avro_decode: {exc}"
            continue
        if isinstance(plan, str):
            framed.errors[row] = plan
            continue
        framed.groups.setdefault(id(plan), (plan, []))[1].append((row, buffer, start, end))
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
        """objectId/cdsxmatch to str while the chunk is in the buffer (the kernel checked the UTF-8)."""
        for k in range(first, stop):
            if self.status[k] == OK:
                self.object_id[k] = self._string(view, k, S_OBJECTID)
                self.cdsxmatch[k] = self._string(view, k, S_XMATCH)

    def _string(self, view: memoryview, k: int, slot: int) -> str | None:
        if not self.a_state[k, slot]:
            return None
        start = self.a_i[k, slot]
        return str(view[start : start + self.a_len[k, slot]], "utf-8")

    def _reason(self, k: int) -> str | None:
        """The error reason of alert ``k`` (None when it decoded)."""
        code = int(self.status[k])
        if code == OK:
            return None
        if code == INVALID_CANDID:
            return invalid_candid(int(self.a_i[k, S_CANDID]))
        if code in MISSING_FIELD_ERRORS:
            return MISSING_FIELD_ERRORS[code]
        return f"avro_decode: {DECODE_ERRORS[code]}"

    def batch(self) -> AlertBatch:
        """The AlertBatch of the group (error rows carry their reason and no values)."""
        ok = self.status == OK
        n_points = int(self.pt_offsets[-1])

        def scalar(slot: int) -> np.ndarray:
            return np.where(ok & (self.a_state[:, slot] != 0), self.a_f[:, slot], np.nan)

        def point_column(slot: int, values: np.ndarray, missing: float | int) -> np.ndarray:
            return np.where(self.p_state[:n_points, slot] != 0, values[:n_points, slot], missing)

        n = len(self.status)
        records = bool((self.status < FIRST_DECODE_ERROR).any())  # Fink columns exist when some record does
        roid = None
        if self.compiled.has_roid and records:
            roid = np.where(ok & (self.a_state[:, S_ROID] != 0), self.a_i[:, S_ROID], -1)
        return AlertBatch(
            object_id=[self.object_id[r] if ok[r] else None for r in range(n)],
            candid=np.where(ok, self.a_i[:, S_CANDID], -1),
            error=[self._reason(k) for k in range(n)],
            **{name: scalar(slot) for name, slot in _SCALAR_SLOTS.items()},
            candidate_fid=np.where(ok, self.a_i[:, S_FID], -1),
            roid=roid,
            cdsxmatch=[self.cdsxmatch[r] if ok[r] else None for r in range(n)]
            if self.compiled.has_cdsxmatch and records else None,
            offsets=self.pt_offsets.copy(),
            hist_jd=point_column(S_JD, self.p_f, np.nan),
            hist_fid=point_column(S_FID, self.p_i, -1),
            hist_mag=self.p_f[:n_points, S_MAG].copy(),
            hist_magerr=point_column(S_MAGERR, self.p_f, np.nan),
            hist_negative=(self.p_state[:n_points, S_NEG] != 0) & (self.p_i[:n_points, S_NEG] == 1),
        )


def _decode_group(compiled: CompiledSchema, items: list[tuple[int, bytes, int, int]]) -> tuple[np.ndarray, AlertBatch]:
    """(rows, their AlertBatch) of one schema group."""
    decoder = _GroupDecoder(compiled, len(items))
    for first, stop in _chunks(items):
        decoder.run_chunk(items, first, stop)
    return np.array([row for row, _, _, _ in items], dtype=np.int64), decoder.batch()


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
    columns |= {name: np.full(n, np.nan) for name in CANDIDATE_SCALARS}
    roid = np.full(n, -1, dtype=np.int64) if has_roid else None
    counts = np.zeros(n, dtype=np.int64)
    for rows, batch in parts:
        for name, column in columns.items():
            values = getattr(batch, name)
            if values is not None:  # a batch built without the optional candidate columns keeps NaN
                column[rows] = values
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


def decode_container_payloads(payloads: Sequence[bytes | None], writer_schema_json: bytes | None = None, *,
                              stats: dict[str, int] | None = None) -> AlertBatch:
    """Decode Kafka message values (one alert each) into an ``AlertBatch``; never raises.

    Each payload is an Avro container with one record (codec null or deflate), or with
    ``writer_schema_json`` a schemaless record. A payload that cannot be decoded is an error
    row with its reason. ``stats``, when given, receives the counts of payloads run through
    a program ("compiled") and refused before (framing or schema: "rejected").
    """
    if numba is None:
        raise RuntimeError("fink_t2.alerts.compiled needs numba (pip install numba)")
    framed = _frame_all(payloads, writer_schema_json)
    parts = [_decode_group(compiled, items) for compiled, items in framed.groups.values()]
    if framed.errors:
        rows = sorted(framed.errors)
        parts.append((np.asarray(rows, dtype=np.int64), records_to_batch([None] * len(rows),
                                                                            [framed.errors[r] for r in rows])))
    if stats is not None:
        stats["compiled"] = stats.get("compiled", 0) + len(payloads) - len(framed.errors)
        stats["rejected"] = stats.get("rejected", 0) + len(framed.errors)
    return _merge(len(payloads), parts)
