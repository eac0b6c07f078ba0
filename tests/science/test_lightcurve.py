"""Stage 2: cuts with named reasons, flux conversion, time direction and band order."""
from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fink_t2.alerts.decode import decode_payloads
from fink_t2.alerts.batch import records_to_batch
from fink_t2.config import CutsConf
from fink_t2.science.lightcurve import CUTS, MAX_POINTS, build_light_curves, cut_reasons, mag_to_flux


def _record(points, candid=1, **candidate_extra):
    """A minimal alert record: ``points`` = [(jd, fid, mag, magerr, isdiffpos)], last is the candidate."""
    def point(jd, fid, mag, err, pos):
        return {"jd": jd, "fid": fid, "magpsf": mag, "sigmapsf": err, "isdiffpos": pos}
    *prv, cand = points
    candidate = point(*cand) | {"candid": candid, "rb": 0.9, "nbad": 0, "jdstarthist": points[0][0],
                                "ssdistnr": -999.0} | candidate_extra
    return {"objectId": "ZTFtest", "candid": candid, "candidate": candidate,
            "prv_candidates": [point(*p) for p in prv]}


GOOD = [(2459000.0, 1, 18.0, 0.1, "t"), (2459001.0, 2, 18.2, 0.1, "t"),
        (2459003.0, 1, 17.8, 0.1, "t"), (2459004.0, 2, 18.0, 0.1, "f")]


def test_mag_to_flux_snana_units():
    flux, err = mag_to_flux(np.array([27.5, 22.5]), np.array([0.1, 0.0]))
    np.testing.assert_allclose(flux, [1.0, 100.0])
    np.testing.assert_allclose(err, [0.4 * np.log(10) * 0.1, 0.0])


def test_good_alert_passes_with_forward_time_fixed_bands_signed_flux():
    batch = records_to_batch([_record(list(reversed(GOOD)))])  # packet order must not matter
    assert cut_reasons(batch) == [None]
    lcs = build_light_curves(batch, np.array([0]))
    assert lcs.mask.sum() == 4
    np.testing.assert_allclose(lcs.t[0], [0.0, 1.0, 3.0, 4.0])  # increasing from the first detection
    np.testing.assert_array_equal(lcs.band[0], [0, 1, 0, 1])  # 0 = g (fid 1), 1 = r (fid 2)
    assert lcs.flux[0, 3] < 0 < lcs.flux[0, 0]  # isdiffpos 'f' = negative subtraction


@pytest.mark.parametrize("change, reason", [
    (lambda r: r["candidate"].update(fid=3), "candidate_band_not_gr"),
    (lambda r: r["candidate"].update(rb=0.3), "bad_quality"),
    (lambda r: r["candidate"].update(nbad=2), "bad_quality"),
    (lambda r: r["candidate"].update(ssdistnr=1.5), "solar_system"),
    (lambda r: r.update(roid=3), "solar_system"),
    (lambda r: r.update(cdsxmatch="RRLyr"), "not_extragalactic"),
    (lambda r: r["prv_candidates"][0].update(sigmapsf=float("nan")), "invalid_photometry"),
    (lambda r: r["prv_candidates"][1].update(sigmapsf=-0.1), "invalid_photometry"),
    (lambda r: r["prv_candidates"].__setitem__(0, r["prv_candidates"][0] | {"fid": 3}), "too_few_points_per_band"),
    (lambda r: r["candidate"].update(jdstarthist=2458800.0), "history_too_long"),
])
def test_each_cut_has_its_reason(change, reason):
    record = _record(GOOD)
    change(record)
    batch = records_to_batch([_record(GOOD), record, _record(GOOD)])
    assert cut_reasons(batch) == [None, reason, None]
    assert reason in CUTS


def test_extragalactic_host_passes_and_i_band_never_fills_r():
    ok = _record(GOOD) | {"cdsxmatch": "Unknown", "roid": 0}
    with_i = _record(GOOD[:2] + [(2459002.0, 3, 18.0, 0.1, "t")] + GOOD[2:])
    batch = records_to_batch([ok, with_i])
    assert cut_reasons(batch) == [None, None]
    lcs = build_light_curves(batch, np.array([0, 1]))
    assert lcs.mask[1].sum() == 4  # the i point is dropped
    assert set(lcs.band[1][lcs.mask[1]]) == {0, 1}


def test_duplicate_jd_points_are_kept_once():
    dup = GOOD[:2] + [GOOD[1], GOOD[1]] + GOOD[2:]
    batch = records_to_batch([_record(dup)])
    lcs = build_light_curves(batch, np.array([0]))
    assert lcs.mask.sum() == 4


def test_null_history_items_are_skipped():
    record = _record(GOOD)
    record["prv_candidates"].insert(1, None)  # Spark-written schemas allow null array items
    batch = records_to_batch([record])
    assert batch.error == [None] and cut_reasons(batch) == [None]
    assert batch.offsets[1] == len(GOOD)


def test_empty_history_is_cut_not_error():
    record = _record([(2459000.0, 1, None, None, None)])
    batch = records_to_batch([record])
    assert batch.error == [None] and cut_reasons(batch) == ["too_few_points_per_band"]


def test_long_history_keeps_most_recent_points():
    points = [(2459000.0 + 0.05 * i, 1 + i % 2, 18.0, 0.1, "t") for i in range(1000)]
    batch = records_to_batch([_record(points)])
    assert cut_reasons(batch) == [None]
    lcs = build_light_curves(batch, np.array([0]))
    assert lcs.mask.sum() == MAX_POINTS
    assert lcs.t[0, -1] == pytest.approx(0.05 * (MAX_POINTS - 1))


def test_real_sample_cut_counts(sample_payloads):
    """The 50 basic alerts have one detection each (cut); the 40 datasim ones have ≥ 2 in g and r
    (counted with the stellar-counterpart cut off: most of them sit on PS1 point sources)."""
    batch = decode_payloads(sample_payloads)
    reasons = cut_reasons(batch, CutsConf(stellar_counterpart=False))
    basic, datasim = reasons[:50], reasons[50:]
    assert all(r is not None for r in basic)
    assert "too_few_points_per_band" in basic
    assert set(datasim) - {None} <= set(CUTS)
    assert sum(r is None for r in datasim) >= 20


point_strategy = st.tuples(
    st.floats(2458000.0, 2458100.0), st.sampled_from([1, 2, 3]),
    st.one_of(st.none(), st.floats(10.0, 25.0), st.just(float("nan"))),
    st.one_of(st.floats(-0.1, 1.0), st.just(float("nan"))), st.sampled_from(["t", "f", "1", "0"]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(point_strategy, min_size=1, max_size=40), min_size=1, max_size=6))
def test_property_cuts_and_light_curves_never_raise(alerts):
    records = [_record(points, candid=i + 1) for i, points in enumerate(alerts)]
    batch = records_to_batch(copy.deepcopy(records))
    reasons = cut_reasons(batch)
    assert len(reasons) == len(records) and set(reasons) - {None} <= set(CUTS)
    passed = np.array([i for i, r in enumerate(reasons) if r is None], dtype=np.int64)
    lcs = build_light_curves(batch, passed)
    for row in range(len(lcs)):
        t = lcs.t[row][lcs.mask[row]]
        assert np.all(np.diff(t) >= 0) and t[0] == 0.0
        assert np.all(np.isfinite(lcs.flux[row][lcs.mask[row]])) and np.all(lcs.flux_err[row] > 0)
        for band in (0, 1):
            assert (lcs.band[row][lcs.mask[row]] == band).sum() >= 2
