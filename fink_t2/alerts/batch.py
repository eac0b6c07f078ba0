"""Decoded alerts as columns: the ``AlertBatch`` every later stage reads.

Only the fields t2 needs are kept (``CANDIDATE_FIELDS``, ``HISTORY_FIELDS``, the Fink
columns used by the cuts). Times are JD (days), magnitudes AB.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: what a t2 field holds: a number, an integer or a string (each may also be null).
FLOAT, INT, STRING = "float", "int", "string"
#: Avro types allowed for each kind (a known logical type on them is a mismatch too).
KIND_AVRO_TYPES: dict[str, tuple[str, ...]] = {
    FLOAT: ("int", "long", "float", "double"), INT: ("int", "long"), STRING: ("string",),
}
#: Python types allowed for each kind (bool is not a number here, although it is an int).
KIND_PYTHON_TYPES: dict[str, tuple[type, ...]] = {FLOAT: (int, float), INT: (int,), STRING: (str,)}

#: candidate fields kept per alert (scalars of the current detection); ``candid`` is the
#: alert id when the top-level ``candid`` is absent or null.
CANDIDATE_KINDS: dict[str, str] = {
    "jd": FLOAT, "fid": INT, "magpsf": FLOAT, "sigmapsf": FLOAT, "isdiffpos": STRING, "rb": FLOAT,
    "nbad": FLOAT, "jdstarthist": FLOAT, "ssdistnr": FLOAT, "candid": INT,
    "sgscore1": FLOAT, "distpsnr1": FLOAT, "ra": FLOAT, "dec": FLOAT,
}
#: candidate scalars kept as float64 columns of the batch (NaN when null or absent), each an
#: ``AlertBatch`` field of the same name
CANDIDATE_SCALARS: tuple[str, ...] = ("jdstarthist", "rb", "nbad", "ssdistnr", "sgscore1", "distpsnr1",
                                      "ra", "dec", "jd", "magpsf")
#: fields kept per history point (candidate and prv_candidates).
HISTORY_KINDS: dict[str, str] = {"jd": FLOAT, "fid": INT, "magpsf": FLOAT, "sigmapsf": FLOAT, "isdiffpos": STRING}
#: top-level scalar fields; ``roid`` and ``cdsxmatch`` are Fink-added columns used by the cuts when present.
TOP_KINDS: dict[str, str] = {"objectId": STRING, "candid": INT, "roid": INT, "cdsxmatch": STRING}
CANDIDATE_FIELDS: tuple[str, ...] = tuple(CANDIDATE_KINDS)
HISTORY_FIELDS: tuple[str, ...] = tuple(HISTORY_KINDS)
FINK_FIELDS: tuple[str, ...] = ("roid", "cdsxmatch")
TOP_FIELDS: tuple[str, ...] = ("objectId", "candid", "candidate", "prv_candidates") + FINK_FIELDS
#: isdiffpos values that mean a negative subtraction (source fainter than the template).
NEGATIVE_SUBTRACTION = frozenset({"f", "0"})
_INT64_RANGE = range(-(1 << 63), 1 << 63)


@dataclass
class AlertBatch:
    """A batch of decoded alerts, one row per input payload (same order).

    Scalars are length-B arrays; the detection history (current candidate plus
    ``prv_candidates`` with non-null ``magpsf``, in packet order) is ragged: the points of
    alert ``i`` are ``hist_*[offsets[i]:offsets[i+1]]``. Times are JD (days), magnitudes AB.
    """

    object_id: list[str | None]
    candid: np.ndarray  # int64 >= 0, -1 when unknown (error rows)
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
    sgscore1: np.ndarray | None = None  # float64 PS1 star/galaxy score of the closest source (1 = star), NaN when none
    distpsnr1: np.ndarray | None = None  # float64 arcsec to the closest PS1 source, NaN/negative when none
    ra: np.ndarray | None = None  # float64 deg (J2000) of the candidate
    dec: np.ndarray | None = None  # float64 deg (J2000) of the candidate
    jd: np.ndarray | None = None  # float64 JD of the candidate (start of exposure)
    magpsf: np.ndarray | None = None  # float64 AB mag of the candidate (NaN when null)

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


def record_candid(record: dict) -> Any:
    """The alert id: top-level ``candid``, else ``candidate.candid`` (None when neither is set)."""
    candid = record.get("candid")
    if candid is None and isinstance(record.get("candidate"), dict):
        candid = record["candidate"].get("candid")
    return candid


def invalid_candid(candid: int) -> str | None:
    """The reason a candid cannot key an alert (ZTF ids are non-negative), or None."""
    return f"invalid_field: candid {candid} < 0" if candid < 0 else None


def _value_mismatch(path: str, value: Any, kind: str) -> str | None:
    """``type_mismatch:`` reason when ``value`` is not null and not of ``kind``, else None."""
    if value is None:
        return None
    if isinstance(value, KIND_PYTHON_TYPES[kind]) and not isinstance(value, bool):
        if not isinstance(value, int) or value in _INT64_RANGE:
            return None
    return f"type_mismatch: {path} is {type(value).__name__} {str(value)[:40]!r} (expected {kind})"


def _typed_values(record: dict) -> list[tuple[str, Any, str]]:
    """(path, value, kind) of every t2 field present in ``record`` (candidate already a dict)."""
    values = [(name, record.get(name), kind) for name, kind in TOP_KINDS.items()]
    values += [(f"candidate.{name}", record["candidate"].get(name), kind) for name, kind in CANDIDATE_KINDS.items()]
    for point in record.get("prv_candidates") or ():
        if isinstance(point, dict):
            values += [(f"prv_candidates.{name}", point.get(name), kind) for name, kind in HISTORY_KINDS.items()]
    return values


def _structure_mismatch(record: dict) -> str | None:
    """``type_mismatch:`` when candidate is not a record or prv_candidates not a list of records."""
    candidate = record.get("candidate")
    if candidate is not None and not isinstance(candidate, dict):
        return f"type_mismatch: candidate is {type(candidate).__name__} (expected a record)"
    history = record.get("prv_candidates")
    if history is not None and not isinstance(history, list):
        return f"type_mismatch: prv_candidates is {type(history).__name__} (expected an array)"
    if any(p is not None and not isinstance(p, dict) for p in history or ()):
        return "type_mismatch: prv_candidates item is not a record"
    return None


def record_problem(record: dict) -> str | None:
    """Why a decoded record cannot be classified (``type_mismatch:``, ``missing_field:``,
    ``invalid_field:``), or None. Checks values, so it covers Parquet rows too."""
    problem = _structure_mismatch(record)
    if problem is None and record.get("candidate") is not None:
        problem = next(filter(None, (_value_mismatch(*v) for v in _typed_values(record))), None)
    if problem is not None:
        return problem
    candidate = record.get("candidate")
    if candidate is None:
        return "missing_field: candidate"
    for name in ("jd", "fid"):
        if candidate.get(name) is None:
            return f"missing_field: candidate.{name}"
    candid = record_candid(record)
    return "missing_field: candid" if candid is None else invalid_candid(candid)


def records_to_batch(records: Sequence[dict | None], errors: Sequence[str | None] | None = None) -> AlertBatch:
    """Build an ``AlertBatch`` from decoded records (None entries carry their error)."""
    n = len(records)
    errors = list(errors) if errors is not None else [None] * n
    object_id: list[str | None] = [None] * n
    candid = np.full(n, -1, dtype=np.int64)
    scalars = {name: np.full(n, np.nan) for name in CANDIDATE_SCALARS}
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
            errors[i] = record_problem(record)
        if errors[i] is not None:
            continue
        candidate = record["candidate"]
        object_id[i] = record.get("objectId")
        candid[i] = record_candid(record)
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
        candidate_fid=candidate_fid, roid=roid, cdsxmatch=cdsxmatch, **scalars,
        offsets=offsets,
        hist_jd=np.array([_float(p.get("jd")) for p in hist], dtype=np.float64),
        hist_fid=np.array([p.get("fid") if p.get("fid") is not None else -1 for p in hist], dtype=np.int64),
        hist_mag=np.array([_float(p["magpsf"]) for p in hist], dtype=np.float64),
        hist_magerr=np.array([_float(p.get("sigmapsf")) for p in hist], dtype=np.float64),
        hist_negative=np.array([p.get("isdiffpos") in NEGATIVE_SUBTRACTION for p in hist], dtype=bool),
    )
