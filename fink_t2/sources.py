"""Input files: find alert files and read their records (Avro, Fink Parquet, .tar.gz).

Used by the CLI and the replay tool. Nightly ZTF archives are ``.tar.gz`` files of
``.avro`` packets; they are streamed member by member, never extracted to disk.
"""
from __future__ import annotations

import logging
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .alerts import decode_container_records, read_parquet_records

log = logging.getLogger(__name__)

AVRO_SUFFIXES = (".avro",)
PARQUET_SUFFIXES = (".parquet",)
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")


class InputError(OSError):
    """An input path does not exist or holds no alert file."""


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
    """(member name, bytes) of each ``.avro`` member of a tar.gz archive, streamed."""
    with tarfile.open(path, mode="r|gz") as archive:
        for member in archive:
            if member.isfile() and member.name.lower().endswith(AVRO_SUFFIXES):
                handle = archive.extractfile(member)
                if handle is not None:
                    yield f"{path}!{member.name}", handle.read()


def iter_avro_payloads(paths: Iterable[str | Path]) -> Iterator[tuple[str, bytes]]:
    """(source, bytes) of every ``.avro`` file and ``.avro`` archive member under ``paths``.

    Parquet files hold no Avro packets: they are skipped with a warning.
    """
    for path in iter_input_files(paths):
        yield from _avro_payloads_of(path)


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


def iter_records(paths: Iterable[str | Path]) -> Iterator[SourceRecord]:
    """Every alert record under ``paths``; an unreadable file yields one error record."""
    for path in iter_input_files(paths):
        if _kind(path) == "parquet":
            for record in read_parquet_records(str(path)):
                yield SourceRecord(str(path), record, None)
            continue
        for source, payload in _avro_payloads_of(path):
            yield from _avro_records(source, payload)
