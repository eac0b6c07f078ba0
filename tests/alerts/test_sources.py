"""Input files: a truncated or corrupt ``.tar.gz`` (an interrupted download) yields every member it
still holds, then says it is incomplete; the walkers go on with the next file."""
from __future__ import annotations

import shutil

import pytest

from fink_t2.alerts.sources import (ARCHIVE_INCOMPLETE, IncompleteArchiveError, iter_alert_messages,
                                    iter_archive_members, iter_records)
from tests.conftest import ARCHIVE_MEMBERS, truncated_archive


@pytest.mark.parametrize("keep", [0.999, 0.8, 0.5, 0.13])
def test_truncated_archive_yields_what_it_holds_then_raises(tmp_path, keep):
    archive, readable = truncated_archive(tmp_path, keep)
    names = []
    with pytest.raises(IncompleteArchiveError, match=f"truncated or corrupt after {len(readable)} .avro member"):
        for name, data in iter_archive_members(archive):
            names.append(name)
            assert data == (ARCHIVE_MEMBERS[len(names) - 1]).read_bytes()  # members are whole
    assert [n.rsplit("/", 1)[1] for n in names] == [f.name for f in readable]


def test_cut_in_the_gzip_trailer_is_detected_though_every_member_is_whole(tmp_path):
    """Only the 8-byte CRC + length are missing: tar alone would say nothing."""
    archive, readable = truncated_archive(tmp_path, keep=1.0)
    archive.write_bytes(archive.read_bytes()[:-4])
    assert readable == ARCHIVE_MEMBERS
    members = []
    with pytest.raises(IncompleteArchiveError, match=f"after {len(ARCHIVE_MEMBERS)} .avro member"):
        members.extend(iter_archive_members(archive))
    assert len(members) == len(ARCHIVE_MEMBERS)


def test_corrupt_archive_is_reported_too(tmp_path):
    archive, _ = truncated_archive(tmp_path, keep=1.0)
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(IncompleteArchiveError, match=r"\((zlib\.)?error|BadGzipFile|ReadError"):
        list(iter_archive_members(archive))


def test_walkers_report_the_archive_and_go_on_with_the_next_file(tmp_path):
    archive, readable = truncated_archive(tmp_path, 0.5)
    (tmp_path / "later").mkdir()
    after = tmp_path / "later" / ARCHIVE_MEMBERS[-1].name
    shutil.copy(ARCHIVE_MEMBERS[-1], after)
    records = list(iter_records([archive, after]))
    assert [r.record["candid"] for r in records if r.record] == [int(f.stem) for f in [*readable, after]]
    (failed,) = [r for r in records if r.record is None]
    assert failed.source == str(archive) and failed.error.startswith(f"{ARCHIVE_INCOMPLETE}: {archive}")
    problems: list[str] = []
    messages = list(iter_alert_messages([archive, after], problems))
    assert [m.key for m in messages] == [f.stem.encode() for f in [*readable, after]]
    assert len(problems) == 1 and "truncated or corrupt" in problems[0]
    with pytest.raises(IncompleteArchiveError):  # without a problems list the walk stops there
        list(iter_alert_messages([archive, after]))
