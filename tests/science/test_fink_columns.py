"""Fink's science-module columns → t2 in Fink's format, without Spark (``science.fink_columns``).

The oracle is the alert path of the stream and ``classify`` (``records_to_batch`` of the same
alerts): Fink's ``concat_col`` arrays carry the same points, so the same alerts get the same
statuses and, where no point is a negative subtraction (the arrays have no ``isdiffpos``), the
same probabilities to the bit.
"""
from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from fink_t2.alerts.batch import NEGATIVE_SUBTRACTION, records_to_batch
from fink_t2.alerts.fastavro_path import decode_container_records
from fink_t2.contract import CLASS_NAMES
from fink_t2.science.classify import classify_batch
from fink_t2.science.lightcurve import MIN_REAL_BOGUS
from fink_t2.science.fink_columns import (
    FINK_COLUMNS, ISDIFFPOS_COLUMN, MAX_POINTS_PER_ROW, NO_CLASS, NOT_CLASSIFIED, columns_to_batch, fink_scores, max_class,
    max_classes, passes_filter,
)
from tests.conftest import DATATEST_SNIA_P, shared_path

HISTORY = ("jd", "fid", "magpsf", "sigmapsf")


def fink_columns(records: list[dict], signed: bool = False) -> dict[str, list]:
    """Fink's columns of decoded alerts, built here: history then candidate, upper limits NaN;
    with ``signed`` also ``cisdiffpos``."""
    columns: dict[str, list] = {name: [] for name in FINK_COLUMNS + ((ISDIFFPOS_COLUMN,) if signed else ())}
    for record in records:
        points = (record["prv_candidates"] or []) + [record["candidate"]]
        for name in HISTORY:
            columns[f"c{name}"].append(np.array([math.nan if p[name] is None else p[name] for p in points]))
        if signed:
            columns[ISDIFFPOS_COLUMN].append([p["isdiffpos"] for p in points])
        columns["candid"].append(record["candid"])
        columns["roid"].append(record["roid"])
        columns["cdsxmatch"].append(record["cdsxmatch"])
        columns["jdstarthist"].append(record["candidate"]["jdstarthist"])
    return columns


def all_positive(record: dict) -> dict:
    """The alert with every subtraction positive (Fink's arrays carry no ``isdiffpos``)."""
    history = [dict(p, isdiffpos="t") for p in record["prv_candidates"] or []]
    return dict(record, candidate=dict(record["candidate"], isdiffpos="t"), prv_candidates=history)


def sample_records(sample_payloads: list[bytes]) -> list[dict]:
    """The repo's sample alerts as Fink hands them to its modules: past its quality cuts, with
    ``roid`` 0 and ``cdsxmatch`` "Unknown"."""
    records = [r for payload in sample_payloads for r in decode_container_records(payload)]
    passed = [r for r in records if (r["candidate"]["rb"] or 0) >= MIN_REAL_BOGUS and not r["candidate"]["nbad"]]
    return [dict(r, roid=0, cdsxmatch="Unknown") for r in passed]


def assert_same_as_the_alert_path(records: list[dict], signed: bool = False) -> int:
    """Same statuses and probabilities as the alert path for every alert; returns the ok count.
    Without ``signed`` (no ``cisdiffpos``) the alert path has every subtraction positive."""
    expected = classify_batch(records_to_batch(records if signed else [all_positive(r) for r in records]))
    scores = fink_scores(fink_columns(records, signed))
    assert scores.status == expected["t2_status"].tolist()
    for status, probs, want in zip(scores.status, scores.probabilities, expected["t2_probs"]):
        assert probs == (want if status == "ok" else dict.fromkeys(CLASS_NAMES, NOT_CLASSIFIED))
    return scores.status.count("ok")


@pytest.mark.parametrize("signed", [False, True])
def test_sample_alerts_score_as_on_the_alert_path(sample_payloads, signed):
    records = sample_records(sample_payloads)
    assert len(records) == 45  # of the 90 of the two single-alert folders of data/alerts
    assert assert_same_as_the_alert_path(records, signed) == 34


def test_cisdiffpos_keeps_negative_subtractions_negative(sample_payloads):
    """30 of the 34 classified sample alerts have a negative subtraction: their scores change with the sign."""
    records = sample_records(sample_payloads)
    plain, signed = fink_scores(fink_columns(records)), fink_scores(fink_columns(records, signed=True))
    negative = [any(p["isdiffpos"] in NEGATIVE_SUBTRACTION and p["magpsf"] is not None
                    for p in (r["prv_candidates"] or []) + [r["candidate"]]) for r in records]
    ok = [i for i, s in enumerate(signed.status) if s == "ok"]
    assert sum(negative[i] for i in ok) == 30
    for i in ok:
        assert (plain.probabilities[i] != signed.probabilities[i]) == negative[i]


def test_fink_datatest_alerts_score_as_on_the_alert_path():
    """Fink's own science Parquet (its roid and cdsxmatch): 124 alerts, 3 classified, 58+48 stars cut."""
    folder = shared_path("data", "ztf", "parquet", "fink-science", "datatest")
    records = [r for f in sorted(folder.glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    assert assert_same_as_the_alert_path(records) == 3
    scores = fink_scores(fink_columns(records))
    assert scores.status.count("cut:not_extragalactic") == 106
    best = scores.probabilities[[r["candid"] for r in records].index(1786383461515015008)]
    assert max_class(best) == "SNIa" and abs(best["SNIa"] - DATATEST_SNIA_P) < 5e-5  # float64 here, printed to 4 places


@pytest.fixture(scope="module")
def real_columns(sample_payloads) -> dict[str, list]:
    """The sample alerts that t2 classifies (roid 0, cdsxmatch Unknown)."""
    records = sample_records(sample_payloads)
    scores = fink_scores(fink_columns(records))
    return fink_columns([r for r, s in zip(records, scores.status) if s == "ok"][:4])


def _with_row(columns: dict[str, list], **changes) -> dict[str, list]:
    """``columns`` plus a copy of its first row with ``changes`` (a new column is null on the others)."""
    out = {name: list(values) for name, values in columns.items()}
    for name in set(out) | set(changes):
        out.setdefault(name, [None] * len(columns["candid"])).append(changes.get(name, (columns.get(name) or [None])[0]))
    return out


@pytest.mark.parametrize("changes, reason", [
    ({"cfid": np.array([1, 2])}, "error:invalid_field: arrays of unequal length cjd "),
    ({"cmagpsf": None}, "error:type_mismatch: cmagpsf is NoneType (expected an array)"),
    ({"cjd": np.array([]), "cfid": np.array([]), "cmagpsf": np.array([]), "csigmapsf": np.array([])},
     "error:missing_field: candidate (empty arrays)"),
    ({"candid": None}, "error:missing_field: candid"),
    ({"candid": -5}, "error:invalid_field: candid -5 < 0"),
    ({"cdsxmatch": 3}, "error:type_mismatch: cdsxmatch is int"),
    ({"roid": 3}, "cut:solar_system"),
    ({"cdsxmatch": "RRLyr"}, "cut:not_extragalactic"),
])
def test_a_bad_row_gets_the_sentinels_and_the_others_keep_their_scores(real_columns, changes, reason):
    alone = fink_scores(real_columns)
    scores = fink_scores(_with_row(real_columns, **changes))
    assert scores.status[-1].startswith(reason), scores.status[-1]
    assert scores.probabilities[-1] == dict.fromkeys(CLASS_NAMES, NOT_CLASSIFIED)
    assert max_class(scores.probabilities[-1]) == NO_CLASS
    assert scores.probabilities[:-1] == alone.probabilities and set(alone.status) == {"ok"}


@pytest.mark.parametrize("signs, reason", [
    (lambda n: [1] * n, "error:type_mismatch: candidate.isdiffpos is int"),
    (lambda n: ["t"] * (n - 1), "error:invalid_field: arrays of unequal length cjd "),
    (lambda n: None, "error:type_mismatch: cisdiffpos is NoneType (expected an array)"),
])
def test_a_bad_cisdiffpos_is_an_error_of_its_row(real_columns, signs, reason):
    signed = dict(real_columns, **{ISDIFFPOS_COLUMN: [["t"] * len(jd) for jd in real_columns["cjd"]]})
    scores = fink_scores(_with_row(signed, cisdiffpos=signs(len(real_columns["cjd"][0]))))
    assert scores.status[:-1] == ["ok"] * len(real_columns["cjd"])
    assert scores.status[-1].startswith(reason), scores.status[-1]


def test_fid_that_is_not_an_integer_is_a_type_mismatch(real_columns):
    fids = np.asarray(real_columns["cfid"][0], dtype=float) + 0.5
    scores = fink_scores(_with_row(real_columns, cfid=fids))
    assert scores.status[-1].startswith("error:type_mismatch: candidate.fid is float"), scores.status[-1]


def test_too_many_points_are_refused_before_any_work(real_columns):
    n = MAX_POINTS_PER_ROW + 1
    row = {name: np.ones(n) for name in ("cjd", "cmagpsf", "csigmapsf")}
    scores = fink_scores(_with_row(real_columns, cfid=np.ones(n, dtype=np.int32), **row))
    assert scores.status[-1] == f"error:invalid_field: {n} points > {MAX_POINTS_PER_ROW}"


def test_upper_limits_as_nan_or_null_are_not_points(real_columns):
    """NaN or None magnitudes (Fink's upper limits) give the scores of the arrays without them."""
    row = {name: np.asarray(real_columns[name][0]) for name in ("cjd", "cfid", "cmagpsf", "csigmapsf")}
    limits = 3
    padded = {name: np.concatenate([values[:1].repeat(limits), values]) for name, values in row.items()}
    padded["cmagpsf"][:limits] = np.nan
    as_null = dict(padded, cmagpsf=[None] * limits + row["cmagpsf"].tolist())
    one = {name: values[:1] for name, values in real_columns.items()}
    plain = fink_scores(one).probabilities[0]
    assert plain != dict.fromkeys(CLASS_NAMES, NOT_CLASSIFIED)
    for arrays in (padded, as_null):
        assert fink_scores(_with_row(one, **arrays)).probabilities[-1] == plain


def test_missing_column_is_named():
    with pytest.raises(KeyError, match="cdsxmatch"):
        columns_to_batch({name: [] for name in FINK_COLUMNS if name != "cdsxmatch"})
    assert fink_scores({name: [] for name in FINK_COLUMNS}).status == []


def test_max_class_and_filter_on_maps_as_spark_hands_them_over():
    snia = dict.fromkeys(CLASS_NAMES, 0.01) | {"SNIa": 0.6, "SNII": 0.27}
    sentinel = dict.fromkeys(CLASS_NAMES, NOT_CLASSIFIED)
    assert max_classes([snia, list(snia.items()), sentinel, None]).tolist() == ["SNIa", "SNIa", "", ""]
    assert passes_filter(snia, ("SNIa",), 0.6) and not passes_filter(snia, ("SNIa",), 0.61)
    assert passes_filter(snia, ("SNII", "SNIa"), 0.5) and not passes_filter(snia, ("SNII",), 0.5)
    assert not passes_filter(sentinel, ("SNIa",), 0.0) and not passes_filter(None, ("SNIa",), 0.0)
