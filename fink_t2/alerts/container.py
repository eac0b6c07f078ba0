"""Minimal Avro Object Container File framing: header, blocks and sync marker.

ZTF sends every alert as a whole container file (magic ``Obj\\x01``, ~22 KB of schema
JSON in the header, one block holding one record). fastavro's ``reader`` re-parses that
schema for every message; splitting the framing here lets the decoder parse each distinct
writer schema once and decode the record bytes with ``schemaless_reader``.

Spec: Apache Avro 1.11 specification, "Object Container Files".
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

MAGIC = b"Obj\x01"
SYNC_SIZE = 16
#: the codecs every Avro implementation must support; others are refused (not decompressed).
CODECS = ("null", "deflate")
#: largest (decompressed) data block, bytes: bounds the memory and time per message.
#: A ZTF alert record is ~44-65 KB.
MAX_BLOCK_BYTES = 1 << 20


class ContainerError(ValueError):
    """The bytes are not a well-formed Avro object container."""


@dataclass(frozen=True)
class ContainerBlock:
    """One data block of a container: record count and the (possibly compressed) bytes."""

    count: int
    data: bytes


@dataclass(frozen=True)
class Container:
    """A parsed container: header metadata and its data blocks."""

    schema_json: bytes
    codec: str
    sync: bytes
    header_size: int
    blocks: tuple[ContainerBlock, ...]


def read_long(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode one zig-zag varint ``long`` at ``pos``; return (value, next position)."""
    shift = 0
    accum = 0
    while True:
        if pos >= len(buf):
            raise ContainerError("truncated varint")
        byte = buf[pos]
        pos += 1
        accum |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift > 63:
            raise ContainerError("varint longer than 64 bits")
    return (accum >> 1) ^ -(accum & 1), pos


def encode_long(value: int) -> bytes:
    """Encode one ``long`` as a zig-zag varint."""
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while zigzag & ~0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


def _read_bytes(buf: bytes, pos: int) -> tuple[bytes, int]:
    size, pos = read_long(buf, pos)
    end = pos + size
    if size < 0 or end > len(buf):
        raise ContainerError("truncated header value")
    return buf[pos:end], end


def _read_metadata(buf: bytes, pos: int) -> tuple[dict[str, bytes], int]:
    meta: dict[str, bytes] = {}
    while True:
        count, pos = read_long(buf, pos)
        if count == 0:
            return meta, pos
        if count < 0:  # a negative count is followed by the block size in bytes
            count = -count
            _, pos = read_long(buf, pos)
        for _ in range(count):
            key, pos = _read_bytes(buf, pos)
            value, pos = _read_bytes(buf, pos)
            try:
                meta[key.decode("utf-8")] = value
            except UnicodeDecodeError as exc:  # an Avro map key is a string: fastavro fails on it too
                raise ContainerError(f"header metadata key is not UTF-8 ({key[:40]!r})") from exc


def parse_container(buf: bytes) -> Container:
    """Split container bytes into header and blocks, checking every sync marker.

    Raises ``ContainerError`` with a reason for non-Avro, truncated or corrupt framing.
    """
    if len(buf) < len(MAGIC) or buf[: len(MAGIC)] != MAGIC:
        raise ContainerError("not an Avro container (bad magic)")
    meta, pos = _read_metadata(buf, len(MAGIC))
    if "avro.schema" not in meta:
        raise ContainerError("container header has no avro.schema")
    sync = buf[pos : pos + SYNC_SIZE]
    if len(sync) != SYNC_SIZE:
        raise ContainerError("truncated header (sync marker)")
    header_size = pos + SYNC_SIZE
    return Container(
        schema_json=meta["avro.schema"],
        codec=meta.get("avro.codec", b"null").decode("utf-8", "replace"),  # absent means null; "" is no codec
        sync=sync,
        header_size=header_size,
        blocks=tuple(_iter_blocks(buf, header_size, sync)),
    )


def _iter_blocks(buf: bytes, pos: int, sync: bytes):
    while pos < len(buf):
        count, pos = read_long(buf, pos)
        size, pos = read_long(buf, pos)
        end = pos + size
        if count < 0 or size < 0 or end + SYNC_SIZE > len(buf):
            raise ContainerError("truncated data block")
        if buf[end : end + SYNC_SIZE] != sync:
            raise ContainerError("sync marker mismatch (corrupt block)")
        yield ContainerBlock(count=count, data=buf[pos:end])
        pos = end + SYNC_SIZE


def build_single_record_container(schema_json: bytes, sync: bytes, record: bytes) -> bytes:
    """Frame one already-encoded record as a complete, uncompressed container file."""
    header = bytearray(MAGIC)
    header += encode_long(2)
    for key, value in ((b"avro.schema", schema_json), (b"avro.codec", b"null")):
        header += encode_long(len(key)) + key + encode_long(len(value)) + value
    header += encode_long(0) + sync
    block = encode_long(1) + encode_long(len(record)) + record + sync
    return bytes(header) + block


def block_bytes(codec: str, data: bytes, max_bytes: int = MAX_BLOCK_BYTES) -> bytes:
    """The records' bytes of one block: ``data`` decompressed, at most ``max_bytes``.

    Raises ``ContainerError`` for other codecs than ``CODECS``, corrupt or truncated deflate
    data, and blocks larger than ``max_bytes`` (the inflater stops there: a small hostile
    block cannot expand to gigabytes).
    """
    if codec not in CODECS:
        raise ContainerError(f"unsupported codec {codec[:40]!r} (supported: {', '.join(CODECS)})")
    if codec == "null":
        if len(data) > max_bytes:
            raise ContainerError(f"data block larger than {max_bytes} bytes")
        return data
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate (RFC 1951), as the spec says
    try:
        out = inflater.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise ContainerError(f"corrupt deflate block ({exc})") from exc
    if len(out) > max_bytes:
        raise ContainerError(f"deflate block inflates to more than {max_bytes} bytes")
    if not inflater.eof:
        raise ContainerError("truncated deflate block")
    return out


def single_record(payload: bytes) -> tuple[Container, bytes]:
    """The container and the (decompressed) bytes of its one record: a one-alert message.

    Raises ``ContainerError`` for bad framing, a codec not in ``CODECS``, an oversized
    block, or any other count of records or blocks than one.
    """
    container = parse_container(payload)
    blocks = container.blocks
    if len(blocks) != 1 or blocks[0].count != 1:
        records = sum(block.count for block in blocks)
        raise ContainerError(f"expected 1 record per message, found {records} in {len(blocks)} blocks")
    return container, block_bytes(container.codec, blocks[0].data)


def payload_problem(payload: object) -> str | None:
    """The reason a Kafka message value is no alert before any decoding (null, empty, not
    bytes), or None."""
    if payload is None or (isinstance(payload, (bytes, bytearray)) and len(payload) == 0):
        return "empty_message"
    if not isinstance(payload, (bytes, bytearray)):
        return f"avro_decode: message value is {type(payload).__name__}, not bytes"
    return None
