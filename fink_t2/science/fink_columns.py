"""Fink's science-module columns in, Fink's deployed t2 output out (no Spark here).

Fink's ``raw2science`` hands each science module ``concat_col`` arrays: ``c<name>`` holds
``prv_candidates.<name>`` (oldest first, upper limits with a null ``magpsf``) followed by
``candidate.<name>``, so the last element is the alert itself. The deployed t2 module took
``candid, cjd, cfid, cmagpsf, csigmapsf, roid, cdsxmatch, jdstarthist`` and returned a map
class → probability (every class −1.0 when the alert was cut), then ``maxclass`` ("" when not
classified). Here the same columns go through the one classification path
(``science.classify.run_stages``: our cuts, GP and model); rows that are not one usable alert
(arrays of unequal length, a fid that is not an integer, too many points) get the sentinels too,
and their reason is in ``FinkScores.status``.

Fink applies its quality cuts (``rb``, ``nbad``) before the science modules. The deployed columns
carry no ``isdiffpos``, so every flux is positive, as in the deployed module; with the optional
``cisdiffpos`` array (``ISDIFFPOS_COLUMN``, also built by ``concat_col``) negative subtractions keep
a negative flux, as in the stream and in our model's training data.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fink_t2.alerts.batch import AlertBatch, records_to_batch
from fink_t2.config import CutsConf
from fink_t2.contract import CLASS_NAMES
from fink_t2.science.classify import STATUS_OK, run_stages
from fink_t2.science.model import T2Model, load_model

#: the arguments of Fink's t2 module, in order (``c*`` = ``concat_col`` arrays)
FINK_COLUMNS: tuple[str, ...] = ("candid", "cjd", "cfid", "cmagpsf", "csigmapsf", "roid", "cdsxmatch", "jdstarthist")
#: the per-point arrays among them and the history field each one holds
ARRAY_FIELDS: dict[str, str] = {"cjd": "jd", "cfid": "fid", "cmagpsf": "magpsf", "csigmapsf": "sigmapsf"}
#: the optional ninth column: ``isdiffpos`` of each point ("t"/"1" positive, "f"/"0" negative subtraction)
ISDIFFPOS_COLUMN = "cisdiffpos"
#: Fink's probability of every class for an alert that was not classified
NOT_CLASSIFIED = -1.0
#: Fink's ``maxclass`` of an alert that was not classified
NO_CLASS = ""
#: most points one row may carry (ZTF: 30 days of history, a few hundred at most); bounds the work per row
MAX_POINTS_PER_ROW = 10_000

SENTINEL_PROBABILITIES: dict[str, float] = dict.fromkeys(CLASS_NAMES, NOT_CLASSIFIED)


@dataclass
class FinkScores:
    """Per row: ``probabilities`` (class → probability, or every class ``NOT_CLASSIFIED``) and
    ``status`` (``ok``, ``cut:<reason>`` or ``error:<reason>``, as ``science.classify``)."""

    probabilities: list[dict[str, float]]
    status: list[str]


def _native(value: Any) -> Any:
    """A numpy scalar as the Python value (NaN and None → None)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _points(row: Mapping[str, Any]) -> tuple[list[dict] | None, str | None]:
    """The row's points as history dicts (oldest first), or the reason they cannot be."""
    fields = dict(ARRAY_FIELDS, **({ISDIFFPOS_COLUMN: "isdiffpos"} if ISDIFFPOS_COLUMN in row else {}))
    arrays = {}
    for column, name in fields.items():
        values = row[column]
        if values is None or isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
            return None, f"type_mismatch: {column} is {type(values).__name__} (expected an array)"
        arrays[name] = values
    lengths = {column: len(arrays[name]) for column, name in fields.items()}
    if len(set(lengths.values())) != 1:
        return None, "invalid_field: arrays of unequal length " + ", ".join(f"{c} {n}" for c, n in lengths.items())
    n = lengths["cjd"]
    if n == 0:
        return None, "missing_field: candidate (empty arrays)"
    if n > MAX_POINTS_PER_ROW:
        return None, f"invalid_field: {n} points > {MAX_POINTS_PER_ROW}"
    return [{name: _native(values[i]) for name, values in arrays.items()} for i in range(n)], None


def row_record(row: Mapping[str, Any]) -> tuple[dict | None, str | None]:
    """One row of Fink columns as an alert record (the last point is the candidate), or the reason."""
    points, problem = _points(row)
    if points is None:
        return None, problem
    candid = _native(row["candid"])
    candidate = dict(points[-1], candid=candid, jdstarthist=_native(row["jdstarthist"]))
    record = {"candid": candid, "candidate": candidate, "prv_candidates": points[:-1],
              "roid": _native(row["roid"]), "cdsxmatch": _native(row["cdsxmatch"])}
    return record, None


def columns_to_batch(columns: Mapping[str, Sequence[Any]]) -> AlertBatch:
    """An ``AlertBatch`` from Fink columns (``FINK_COLUMNS``, optionally ``ISDIFFPOS_COLUMN`` →
    equal-length sequences or Series)."""
    missing = [name for name in FINK_COLUMNS if name not in columns]
    if missing:
        raise KeyError(f"Fink t2 columns missing: {missing} (expected {list(FINK_COLUMNS)})")
    names = FINK_COLUMNS + ((ISDIFFPOS_COLUMN,) if ISDIFFPOS_COLUMN in columns else ())
    values = {name: list(columns[name]) for name in names}
    rows = (dict(zip(names, row)) for row in zip(*(values[name] for name in names)))
    records, errors = zip(*map(row_record, rows)) if values["candid"] else ((), ())
    return records_to_batch(list(records), list(errors))


def fink_scores(columns: Mapping[str, Sequence[Any]], model: T2Model | None = None,
                cuts: CutsConf | None = None) -> FinkScores:
    """t2 probabilities of Fink rows in Fink's deployed format, with each row's status."""
    batch = columns_to_batch(columns)
    result = run_stages(batch, model or load_model(), cuts)
    probabilities = [dict(SENTINEL_PROBABILITIES) for _ in range(len(batch))]
    for row, i in enumerate(result.light_curves.index):
        if result.status[i] == STATUS_OK:
            probabilities[i] = dict(zip(CLASS_NAMES, result.probs[row].tolist()))
    return FinkScores(probabilities, result.status)


def max_class(probabilities: Mapping[str, float] | None) -> str:
    """The most probable class, or ``NO_CLASS`` when not classified (null or every value −1)."""
    if not probabilities or all(p == NOT_CLASSIFIED for p in probabilities.values()):
        return NO_CLASS
    return max(probabilities.items(), key=lambda item: item[1])[0]


def passes_filter(probabilities: Mapping[str, float] | None, classes: Iterable[str],
                  min_probability: float) -> bool:
    """True when P(c) ≥ ``min_probability`` for some c in ``classes`` (never for a not-classified alert)."""
    if max_class(probabilities) == NO_CLASS:
        return False
    return any(probabilities.get(name, NOT_CLASSIFIED) >= min_probability for name in classes)


def as_mappings(values: Iterable[Any]) -> list[Mapping[str, float] | None]:
    """A Spark ``MapType`` column as pandas gives it to a UDF (dicts, or lists of (key, value)) → mappings."""
    out: list[Mapping[str, float] | None] = []
    for value in values:
        if value is None or isinstance(value, Mapping):
            out.append(value)
        else:
            out.append(dict(value))
    return out


def max_classes(values: Iterable[Any]) -> pd.Series:
    """``max_class`` of each map of a column."""
    return pd.Series([max_class(p) for p in as_mappings(values)], dtype=object)
