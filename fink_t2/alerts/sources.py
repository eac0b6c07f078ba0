"""Input files: find alert files and read their records (Avro, Fink Parquet, .tar.gz).

Used by the CLI and the replay tool. Nightly ZTF archives are ``.tar.gz`` files of
``.avro`` packets; they are streamed member by member, never extracted to disk. A truncated
or corrupt archive (an interrupted download) gives its readable members, then an
:class:`IncompleteArchiveError`; the walkers below turn it into an error item (classify) or a
listed problem (replay) and go on with the next file.
"""
from __future__ import annotations

import gzip
import io
import itertools
import logging
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro

from fink_t2.alerts.fastavro_path import decode_container_records, read_parquet_records
from fink_t2.alerts.decode import decode_payloads
from fink_t2.alerts.container import ContainerError, parse_container

log = logging.getLogger(__name__)
_SYNC_MARKER_BYTES = 16

AVRO_SUFFIXES = (".avro",)
PARQUET_SUFFIXES = (".parquet",)
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
#: Error reason of an archive that ended early or is corrupt (``error:archive_incomplete: ...``).
ARCHIVE_INCOMPLETE = "archive_incomplete"
_DRAIN_CHUNK_BYTES = 1 << 20


class InputError(OSError):
    """An input path does not exist or holds no alert file."""


class IncompleteArchiveError(InputError):
    """A ``.tar.gz`` archive is truncated or corrupt; the members before the damage were read."""


@dataclass(frozen=True)
class SourceRecord:
    """One alert read from a file: its record, or the reason it could not be read."""

    source: str
    record: dict | None
    error: str | None


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    for kind, suffixes in (("avro", AVRO_SUFFIXES), ("parquet", PARQUET_SUFFIXES), ("archive", ARCHIVE_SUFFIXES)):
        if name.endswith(suffixes):
            return kind
    return None


def iter_input_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Alert files under ``paths`` (files, or directories searched recursively), sorted.

    Raises ``InputError`` for a missing path or a directory without alert files.
    """
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            if _kind(path) is None:
                raise InputError(f"not an alert file (.avro, .parquet, .tar.gz): {path}")
            yield path
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _kind(p) is not None)
            if not found:
                raise InputError(f"no .avro, .parquet or .tar.gz files under {path}")
            yield from found
        else:
            raise InputError(f"no such file or directory: {path}")


def iter_archive_members(path: Path) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of each ``.avro`` member of a tar.gz archive, streamed.

    The gzip stream is read to its end, so that its length and CRC are checked even when the tar
    end marker comes first. Damage raises :class:`IncompleteArchiveError` after the good members.
    """
    count = 0
    try:
        # reads of one tar block: a truncation costs only the incomplete block (GzipFile drops the
        # data of a read that reaches the end of a truncated stream)
        with gzip.open(path, "rb") as stream, \
                tarfile.open(fileobj=stream, mode="r|", bufsize=tarfile.BLOCKSIZE) as archive:
            for member in archive:
                if member.isfile() and member.name.lower().endswith(AVRO_SUFFIXES):
                    handle = archive.extractfile(member)
                    if handle is not None:
                        data = handle.read()
                        count += 1
                        yield f"{path}!{member.name}", data
            while stream.read(_DRAIN_CHUNK_BYTES):  # tar padding up to the gzip trailer
                pass
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise IncompleteArchiveError(f"{path}: truncated or corrupt after {count} .avro member(s) "
                                     f"({type(exc).__name__}: {exc})") from exc


def iter_avro_payloads(paths: Iterable[str | Path], problems: list[str] | None = None
                       ) -> Iterator[tuple[str, bytes]]:
    """(source, bytes) of every ``.avro`` file and ``.avro`` archive member under ``paths``.

    Parquet files hold decoded alerts, not Avro packets: one named in ``paths`` raises
    :class:`InputError` (before anything is yielded); those found in folders are skipped with a
    warning. An incomplete archive raises :class:`IncompleteArchiveError` after its readable
    members, or, when a ``problems`` list is given, is appended to it and the walk goes on.
    """
    paths = list(paths)
    named_parquet = [str(p) for p in paths if Path(p).is_file() and _kind(Path(p)) == "parquet"]
    if named_parquet:
        raise InputError(f"Parquet holds decoded alerts, not the Avro packets sent to Kafka: "
                         f"{', '.join(named_parquet)} (give .avro files or .tar.gz archives)")
    for path in iter_input_files(paths):
        try:
            yield from _avro_payloads_of(path)
        except IncompleteArchiveError as exc:
            if problems is None:
                raise
            problems.append(str(exc))


def _avro_payloads_of(path: Path) -> Iterator[tuple[str, bytes]]:
    kind = _kind(path)
    if kind == "avro":
        yield str(path), path.read_bytes()
    elif kind == "archive":
        yield from iter_archive_members(path)
    else:
        log.warning("%s: Parquet holds no Avro packets, skipped", path)


def _avro_records(source: str, payload: bytes) -> Iterator[SourceRecord]:
    try:
        records = decode_container_records(payload)
    except Exception as exc:  # untrusted bytes: any decoder failure becomes this file's reason
        yield SourceRecord(source, None, f"avro_decode: {type(exc).__name__}: {exc}"[:300])
        return
    for record in records:
        yield SourceRecord(source, record, None)


@dataclass(frozen=True)
class AlertInput:
    """One alert to classify: a single-alert Avro message, a record read from Parquet, or the
    ``error`` of an input that could not be read (e.g. the rest of an incomplete archive)."""

    source: str
    payload: bytes | None
    record: dict | None
    error: str | None = None


def _walk(paths: Iterable[str | Path]) -> Iterator[AlertInput]:
    """Parquet records, Avro file/member bytes and one error item per incomplete archive, in order."""
    for path in iter_input_files(paths):
        if _kind(path) == "parquet":
            for record in read_parquet_records(str(path)):
                yield AlertInput(str(path), None, record)
            continue
        try:
            for source, payload in _avro_payloads_of(path):
                yield AlertInput(source, payload, None)
        except IncompleteArchiveError as exc:
            yield AlertInput(str(path), None, None, f"{ARCHIVE_INCOMPLETE}: {exc}")


def iter_records(paths: Iterable[str | Path]) -> Iterator[SourceRecord]:
    """Every alert record under ``paths``; an unreadable file or archive yields one error record."""
    for item in _walk(paths):
        if item.payload is None:
            yield SourceRecord(item.source, item.record, item.error)
        else:
            yield from _avro_records(item.source, item.payload)


@dataclass(frozen=True)
class AlertMessage:
    """One Kafka message: where it came from, its key (candid, ASCII) and its Avro bytes."""

    source: str
    key: bytes | None
    value: bytes


def _alert_key(record: dict[str, Any]) -> bytes | None:
    """``candid`` of an alert record as decimal ASCII bytes (top level, else ``candidate.candid``)."""
    candid = record.get("candid")
    if candid is None and isinstance(record.get("candidate"), dict):
        candid = record["candidate"].get("candid")
    return None if candid is None else str(candid).encode("ascii")


def _single_record_key(data: bytes) -> bytes | None:
    """candid key of a one-record uncompressed container; None for any other shape or on error."""
    try:
        container = parse_container(data)
    except ContainerError:
        return None
    if container.codec != "null" or len(container.blocks) != 1 or container.blocks[0].count != 1:
        return None
    batch = decode_payloads([data])
    return str(int(batch.candid[0])).encode("ascii") if batch.error[0] is None else None


def _encode_single_record(schema: Any, record: dict[str, Any], sync_marker: bytes,
                          metadata: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    fastavro.writer(buffer, schema, [record], codec="null", sync_marker=sync_marker, metadata=metadata)
    return buffer.getvalue()


def split_avro_container(data: bytes, source: str = "<bytes>") -> Iterator[AlertMessage]:
    """Messages of one Avro container: ``data`` itself if it holds one record, else one per record.

    Split containers reuse the writer schema, the non-``avro.*`` metadata and the sync marker of
    ``data`` (so the output is deterministic); codec is null.
    """
    key = _single_record_key(data)
    if key is not None:  # the usual ZTF packet: no re-encoding, candid read by the fast decoder
        yield AlertMessage(source, key, data)
        return
    reader = fastavro.reader(io.BytesIO(data))
    first = next(reader, None)
    if first is None:
        log.warning("%s: Avro container without records, skipped", source)
        return
    second = next(reader, None)
    if second is None:
        yield AlertMessage(source, _alert_key(first), data)
        return
    schema = fastavro.parse_schema(reader.writer_schema)
    metadata = {key: value for key, value in reader.metadata.items() if not key.startswith("avro.")}
    sync_marker = data[-_SYNC_MARKER_BYTES:]  # every container block ends with the file's sync marker
    for index, record in enumerate(itertools.chain((first, second), reader)):
        yield AlertMessage(f"{source}#{index}", _alert_key(record),
                           _encode_single_record(schema, record, sync_marker, metadata))


def iter_alert_messages(paths: Iterable[Path | str], problems: list[str] | None = None) -> Iterator[AlertMessage]:
    """Keyed messages (one alert each) of ``.avro`` files, folders and ``.tar.gz`` archives, in order.

    Raises :class:`InputError` for a missing path or a file of another kind; incomplete archives
    as :func:`iter_avro_payloads` (into ``problems`` when given).
    """
    for source, data in iter_avro_payloads(paths, problems):
        yield from split_avro_container(data, source)


def iter_alert_inputs(paths: Iterable[str | Path]) -> Iterator[AlertInput]:
    """Every alert under ``paths``: Avro as single-alert messages (the stream's input form), Parquet
    as records, incomplete archives as error items. An Avro file that cannot even be split is passed
    on whole, so that ``classify`` reports it as one error row with its reason.
    """
    for item in _walk(paths):
        if item.payload is None:
            yield item
            continue
        try:
            messages = list(split_avro_container(item.payload, item.source))
        except Exception:  # untrusted bytes: classify decodes them again and names the error
            messages = [AlertMessage(item.source, None, item.payload)]
        for message in messages:
            yield AlertInput(message.source, message.value, None)
