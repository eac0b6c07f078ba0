"""The stellar-counterpart cut (ZTF PS1 fields) on real alerts, against an independent read."""
from __future__ import annotations

import io
from pathlib import Path

import fastavro
import numpy as np
import pytest

from fink_t2.alerts.batch import records_to_batch
from fink_t2.alerts.decode import decode_payloads
from fink_t2.alerts.sources import iter_records
from fink_t2.config import CutsConf, parse_config
from fink_t2.science.lightcurve import cut_reasons, stellar_counterpart
from tests.conftest import SAMPLE_ALERTS, shared_path


def _sample():
    """The single-alert .avro files of the sample (multi-record containers are not messages)."""
    payloads = [p.read_bytes() for p in sorted(Path(SAMPLE_ALERTS).rglob("*.avro"))]
    payloads = [b for b in payloads if sum(1 for _ in fastavro.reader(io.BytesIO(b))) == 1]
    candidates = [next(fastavro.reader(io.BytesIO(b)))["candidate"] for b in payloads]
    batch = decode_payloads(payloads)
    assert all(e is None for e in batch.error)
    return batch, candidates


def _expected(candidates, min_score=0.9, max_dist=1.0):
    def star(c):
        score, dist = c.get("sgscore1"), c.get("distpsnr1")
        return score is not None and dist is not None and score >= min_score and 0 <= dist <= max_dist
    return np.array([star(c) for c in candidates])


def test_cut_equals_the_ps1_fields_read_by_fastavro():
    batch, candidates = _sample()
    expected = _expected(candidates)
    assert 10 <= expected.sum() < len(expected)  # the sample has stars and non-stars
    np.testing.assert_array_equal(stellar_counterpart(batch, CutsConf()), expected)
    reasons = cut_reasons(batch)
    assert sum(r == "stellar_counterpart" for r in reasons) > 0
    assert all(expected[i] for i, r in enumerate(reasons) if r == "stellar_counterpart")


def test_thresholds_and_switch_come_from_the_config():
    batch, candidates = _sample()
    strict = parse_config({"cuts": {"stellar_min_sgscore1": 0.99, "stellar_max_distpsnr1_arcsec": 0.3}}).cuts
    np.testing.assert_array_equal(stellar_counterpart(batch, strict), _expected(candidates, 0.99, 0.3))
    off = parse_config({"cuts": {"stellar_counterpart": False}}).cuts
    assert "stellar_counterpart" not in cut_reasons(batch, off)


def test_a_fink_xmatch_decides_instead():
    batch, candidates = _sample()
    batch.cdsxmatch = ["Unknown"] * len(batch)
    assert not stellar_counterpart(batch, CutsConf()).any()


@pytest.mark.shared
def test_labelled_supernova_packets_are_not_cut_as_stars():
    folder = shared_path("data", "labeled", "ztf_fink_alert_packets")
    records = [item.record for item in iter_records([folder]) if item.record is not None]
    assert records
    batch = records_to_batch(records)
    batch.cdsxmatch = None  # as a raw ZTF alert: no Fink cross-match
    labels = dict(line.split(",")[:2] for line in (folder / "labels.csv").read_text().splitlines()[1:])
    labelled = np.array([oid in labels for oid in batch.object_id])
    assert labelled.sum() >= 5
    assert not stellar_counterpart(batch, CutsConf())[labelled].any()
