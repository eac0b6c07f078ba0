"""Shared test fixtures: paths to the repo's sample alerts and to ../shared."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLE_ALERTS = REPO / "data" / "alerts"
#: P(SNIa) of ZTF21acoshvy (Fink datatest candid 1786383461515015008) under the default model, printed to 4
#: places (the fink_udf doctest's value; it moves with the shipped model)
DATATEST_SNIA_P = 0.9412
#: its distance to the nearest one-decimal rounding boundary (0.95): the doctest's ``round(p, 1)`` margin
DATATEST_SNIA_MARGIN = 0.0088


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test with a clear reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs ../shared ({path} not found): run beside the project's shared/ folder")
    return path


@pytest.fixture(scope="session")
def sample_payloads() -> list[bytes]:
    """Raw bytes of the shipped single-alert .avro sample files."""
    files = sorted(SAMPLE_ALERTS.glob("fink-broker_basic_alerts_local_20200101/*.avro"))
    files += sorted(SAMPLE_ALERTS.glob("fink-alert-simulator_datasim_20181129/*.avro"))
    assert files, f"no sample alerts under {SAMPLE_ALERTS}"
    return [f.read_bytes() for f in files]

pytest_plugins = ["tests.conftest_kafka"]

#: ten real single-alert files, the members of the test archives
ARCHIVE_MEMBERS = sorted((SAMPLE_ALERTS / "fink-alert-simulator_datasim_20181129").glob("*.avro"))[:10]


def truncated_archive(folder: Path, keep: float = 0.5, files: list[Path] = ARCHIVE_MEMBERS) -> tuple[Path, list[Path]]:
    """A ``.tar.gz`` of ``files`` cut to the first ``keep`` fraction of its bytes (an interrupted
    download), and the files whose member lies wholly in what the cut archive still decompresses to
    (found with zlib on the raw bytes, independently of the code under test)."""
    import gzip
    import io
    import tarfile
    import zlib

    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        for f in files:
            tar.add(f, arcname=f"ztf_public_night/{f.name}")
    compressed = gzip.compress(tar_bytes.getvalue())
    cut = compressed[: int(len(compressed) * keep)]
    readable_bytes = len(zlib.decompressobj(wbits=31).decompress(cut))
    with tarfile.open(fileobj=io.BytesIO(tar_bytes.getvalue())) as tar:
        ends = {Path(m.name).name: m.offset_data + m.size for m in tar.getmembers()}
    path = folder / f"night-cut-{keep}.tar.gz"
    path.write_bytes(cut)
    return path, [f for f in files if ends[f.name] <= readable_bytes]


def real_alert_light_curves(min_points_per_band: int = 0):
    """Light curves of the ../shared ZTF alerts that have usable g+r photometry, whatever the
    quality/extragalactic cuts say (skips the test when ../shared is absent).

    With ``min_points_per_band`` only the alerts with at least that many points in g and in r.
    """
    import numpy as np

    from fink_t2.alerts.batch import records_to_batch
    from fink_t2.science.lightcurve import build_light_curves, cut_reasons
    from fink_t2.alerts.sources import iter_records

    root = shared_path("data", "ztf")
    batch = records_to_batch([r.record for r in iter_records([root]) if r.record is not None])
    skipped = ("too_few_points_per_band", "invalid_photometry", "candidate_band_not_gr")
    usable = [i for i, r in enumerate(cut_reasons(batch)) if batch.error[i] is None and r not in skipped]
    lcs = build_light_curves(batch, np.array(usable))
    per_band = np.stack([(lcs.mask & (lcs.band == b)).sum(axis=1) for b in (0, 1)])
    return build_light_curves(batch, lcs.index[(per_band >= min_points_per_band).all(axis=0)])


def rewritten_alert(payload: bytes, candid: int | None = None, size: int | None = None) -> bytes:
    """A real single-alert container re-encoded with its own writer schema, with ``candid`` replaced
    and/or the science cutout padded so that the whole message is exactly ``size`` bytes."""
    import io

    import fastavro

    reader = fastavro.reader(io.BytesIO(payload))
    schema, record = reader.writer_schema, next(reader)
    if candid is not None:
        record["candid"] = record["candidate"]["candid"] = candid

    def encode(stamp_bytes: int) -> bytes:
        if size is not None:
            record["cutoutScience"] = dict(record["cutoutScience"], stampData=b"\x00" * stamp_bytes)
        out = io.BytesIO()
        fastavro.writer(out, schema, [record], sync_marker=b"\x01" * 16)
        return out.getvalue()

    encoded = encode(0)
    if size is None:
        return encoded
    padded = encode(size - len(encoded) - 8)  # 8 B: the length varints grow with the stamp
    padded = encode(size - len(encoded) - 8 + size - len(padded))
    assert len(padded) == size, "the varint growth is not what was assumed"
    return padded
