"""ZTF alert writer schemas by schema version (package data ``fink_t2/data/schemas/ztf/<version>.avsc``).

Each file is the writer schema a real ZTF packet of that version embeds (provenance in the folder's
README), so the enriched schema ``fink-t2 schema --ztf-version V`` prints is the one the job publishes
for a ZTF alert of version V.
"""
from __future__ import annotations

from fink_t2.config import package_file

ZTF_SCHEMA_DIR = package_file("data", "schemas", "ztf")
#: The ZTF schema version of today's alert stream (the default of ``fink-t2 schema``).
LATEST_ZTF_VERSION = "4.02"


def ztf_schema_versions() -> tuple[str, ...]:
    """The ZTF schema versions shipped, oldest first."""
    names = (path.stem for path in ZTF_SCHEMA_DIR.glob("*.avsc"))
    return tuple(sorted(names, key=lambda v: tuple(int(part) for part in v.split("."))))


def ztf_writer_schema(version: str) -> bytes:
    """The writer schema JSON (bytes, as ZTF embeds it) of ZTF alert schema ``version``.

    Raises ``ValueError`` naming the known versions when ``version`` is not shipped.
    """
    known = ztf_schema_versions()
    if version not in known:
        raise ValueError(f"no ZTF alert schema {version!r}: known versions {', '.join(known)}")
    return (ZTF_SCHEMA_DIR / f"{version}.avsc").read_bytes()
