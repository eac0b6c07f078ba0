"""Decoded alerts as columns: the ``AlertBatch`` every later stage reads.

Only the fields t2 needs are kept (``CANDIDATE_FIELDS``, ``HISTORY_FIELDS``, the Fink
columns used by the cuts). Times are JD (days), magnitudes AB.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: candidate fields kept per alert (scalars of the current detection).
CANDIDATE_FIELDS: tuple[str, ...] = (
    "jd", "fid", "magpsf", "sigmapsf", "isdiffpos", "rb", "nbad", "jdstarthist", "ssdistnr",
)
#: fields kept per history point (candidate and prv_candidates).
HISTORY_FIELDS: tuple[str, ...] = ("jd", "fid", "magpsf", "sigmapsf", "isdiffpos")
#: Fink-added top-level columns used by the cuts when present.
FINK_FIELDS: tuple[str, ...] = ("roid", "cdsxmatch")
TOP_FIELDS: tuple[str, ...] = ("objectId", "candid", "candidate", "prv_candidates") + FINK_FIELDS
#: isdiffpos values that mean a negative subtraction (source fainter than the template).
NEGATIVE_SUBTRACTION = frozenset({"f", "0"})


@dataclass
class AlertBatch:
    """A batch of decoded alerts, one row per input payload (same order).

    Scalars are length-B arrays; the detection history (current candidate plus
    ``prv_candidates`` with non-null ``magpsf``, in packet order) is ragged: the points of
    alert ``i`` are ``hist_*[offsets[i]:offsets[i+1]]``. Times are JD (days), magnitudes AB.
    """

    object_id: list[str | None]
    candid: np.ndarray  # int64, -1 when unknown
    error: list[str | None]  # None when the alert decoded
    jdstarthist: np.ndarray  # float64 JD, NaN when null
    rb: np.ndarray  # float64, NaN when null
    nbad: np.ndarray  # float64, NaN when null
    ssdistnr: np.ndarray  # float64 arcsec, NaN/negative when none
    candidate_fid: np.ndarray  # int64, -1 when unknown
    roid: np.ndarray | None  # int64 (Fink column), None when absent from every alert
    cdsxmatch: list[str | None] | None  # Fink column, None when absent from every alert
    offsets: np.ndarray  # int64 (B+1,)
    hist_jd: np.ndarray  # float64 JD
    hist_fid: np.ndarray  # int64
    hist_mag: np.ndarray  # float64 magpsf
    hist_magerr: np.ndarray  # float64 sigmapsf
    hist_negative: np.ndarray  # bool, isdiffpos f/0
    extras: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.object_id)


def _float(value: Any) -> float:
    return np.nan if value is None else float(value)


def _history_points(record: dict) -> list[dict]:
    """Detections (non-null magpsf) of ``prv_candidates`` followed by the candidate."""
    points = [p for p in (record.get("prv_candidates") or ()) if p is not None and p.get("magpsf") is not None]
    candidate = record["candidate"]
    if candidate.get("magpsf") is not None:
        points.append(candidate)
    return points


def _check_record(record: dict) -> str | None:
    candidate = record.get("candidate")
    if not isinstance(candidate, dict):
        return "missing_field: candidate"
    for name in ("jd", "fid"):
        if candidate.get(name) is None:
            return f"missing_field: candidate.{name}"
    if record.get("candid") is None and candidate.get("candid") is None:
        return "missing_field: candid"
    return None


def records_to_batch(records: Sequence[dict | None], errors: Sequence[str | None] | None = None) -> AlertBatch:
    """Build an ``AlertBatch`` from decoded records (None entries carry their error)."""
    n = len(records)
    errors = list(errors) if errors is not None else [None] * n
    object_id: list[str | None] = [None] * n
    candid = np.full(n, -1, dtype=np.int64)
    scalars = {name: np.full(n, np.nan) for name in ("jdstarthist", "rb", "nbad", "ssdistnr")}
    candidate_fid = np.full(n, -1, dtype=np.int64)
    has_roid = any(r is not None and "roid" in r for r in records)
    has_xmatch = any(r is not None and "cdsxmatch" in r for r in records)
    roid = np.full(n, -1, dtype=np.int64) if has_roid else None
    cdsxmatch: list[str | None] | None = [None] * n if has_xmatch else None
    counts = np.zeros(n, dtype=np.int64)
    hist: list[dict] = []
    for i, record in enumerate(records):
        if record is None:
            continue
        if errors[i] is None:
            errors[i] = _check_record(record)
        if errors[i] is not None:
            continue
        candidate = record["candidate"]
        object_id[i] = record.get("objectId")
        candid[i] = record.get("candid") if record.get("candid") is not None else candidate["candid"]
        for name, column in scalars.items():
            column[i] = _float(candidate.get(name))
        candidate_fid[i] = candidate["fid"]
        if roid is not None and record.get("roid") is not None:
            roid[i] = record["roid"]
        if cdsxmatch is not None:
            cdsxmatch[i] = record.get("cdsxmatch")
        points = _history_points(record)
        counts[i] = len(points)
        hist.extend(points)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return AlertBatch(
        object_id=object_id, candid=candid, error=errors,
        jdstarthist=scalars["jdstarthist"], rb=scalars["rb"], nbad=scalars["nbad"],
        ssdistnr=scalars["ssdistnr"], candidate_fid=candidate_fid, roid=roid, cdsxmatch=cdsxmatch,
        offsets=offsets,
        hist_jd=np.array([_float(p["jd"]) for p in hist], dtype=np.float64),
        hist_fid=np.array([p["fid"] if p["fid"] is not None else -1 for p in hist], dtype=np.int64),
        hist_mag=np.array([_float(p["magpsf"]) for p in hist], dtype=np.float64),
        hist_magerr=np.array([_float(p.get("sigmapsf")) for p in hist], dtype=np.float64),
        hist_negative=np.array([p.get("isdiffpos") in NEGATIVE_SUBTRACTION for p in hist], dtype=bool),
    )
