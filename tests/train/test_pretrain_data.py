"""The pretraining corpus (real data in), the ASTROMER masks (exact counts) and the probed RMSE."""
from __future__ import annotations

from collections import defaultdict

import fastavro
import numpy as np
import pandas as pd
import pytest

from fink_t2.train import data, pretrain_data
from fink_t2.train.pretrain_data import flux_to_mag, make_masks, mask_counts, probed_rmse
from tests.conftest import shared_path


# ---------------------------------------------------------------------------------------- masks


def test_a_full_window_of_200_is_masked_20_16_64_percent():
    probed, same, randomised = mask_counts(np.array([200]))
    assert (probed[0], same[0], randomised[0], probed[0] - same[0] - randomised[0]) == (100, 20, 16, 64)


@pytest.mark.parametrize("n_valid, expected", [(64, (32, 7, 5)), (10, (5, 1, 1)), (5, (2, 1, 1)), (1, (0, 0, 0))])
def test_mask_counts_follow_floor_then_ceil_of_the_remainder(n_valid, expected):
    # ⌊0.5·64⌋ = 32, ⌈0.2·32⌉ = 7, ⌈0.2·25⌉ = 5;  ⌊0.5·10⌋ = 5, ⌈1.0⌉ = 1, ⌈0.8⌉ = 1;  ⌊2.5⌋ = 2, ⌈0.4⌉ = 1, ⌈0.2⌉ = 1
    assert tuple(int(c[0]) for c in mask_counts(np.array([n_valid]))) == expected


def test_masks_have_the_exact_counts_on_valid_points_only():
    length = 200
    n_valid = np.array([200, 137, 64, 10, 5, 1, 0])
    valid = np.arange(length)[None, :] < n_valid[:, None]
    mags = np.where(valid, np.random.default_rng(3).normal(size=valid.shape), 0).astype(np.float32)
    masks = make_masks(mags, valid, np.random.default_rng(7))
    probed, same, randomised = mask_counts(n_valid)
    assert np.array_equal(masks.probed.sum(1), probed)
    assert np.array_equal(masks.randomised.sum(1), randomised)
    assert np.array_equal(masks.masked.sum(1), probed - same - randomised)
    assert not (masks.probed & ~valid).any()
    assert not (masks.masked & masks.randomised).any()
    assert not ((masks.masked | masks.randomised) & ~masks.probed).any()


def test_random_replacements_come_from_the_same_window():
    valid = np.arange(50)[None, :] < np.array([50, 20])[:, None]
    mags = np.where(valid, np.arange(100).reshape(2, 50) + 0.5, 0).astype(np.float32)
    masks = make_masks(mags, valid, np.random.default_rng(11))
    for row in range(2):
        donors = set(mags[row, valid[row]].tolist())
        assert set(masks.random_mags[row, masks.randomised[row]].tolist()) <= donors


def test_masks_are_reproducible_from_the_seed():
    valid = np.ones((4, 30), bool)
    mags = np.random.default_rng(0).normal(size=(4, 30)).astype(np.float32)
    a, b = (make_masks(mags, valid, np.random.default_rng(5)) for _ in range(2))
    assert np.array_equal(a.probed, b.probed) and np.array_equal(a.masked, b.masked)
    assert np.array_equal(a.random_mags, b.random_mags)


# ----------------------------------------------------------------------------------------- loss


def test_probed_rmse_is_the_root_of_the_mean_of_per_window_means():
    predicted = np.array([[1.0, 2.0, 9.0], [3.0, 0.0, 0.0], [5.0, 5.0, 5.0]])
    target = np.zeros((3, 3))
    probed = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0]], bool)
    # window 1: (1² + 2²)/2 = 2.5; window 2: 3² / 1 = 9; window 3 has no probed point: left out
    assert probed_rmse(predicted, target, probed) == pytest.approx(np.sqrt((2.5 + 9.0) / 2), rel=1e-12)


def test_window_starts_stay_inside_each_curve():
    n_points = np.array([10, 64, 65, 500, 3])
    starts = pretrain_data.random_windows(n_points, 64, np.random.default_rng(0))
    assert np.array_equal(starts[[0, 1, 4]], [0, 0, 0])
    assert (starts >= 0).all() and (starts + np.minimum(n_points, 64) <= n_points).all()


# ----------------------------------------------------------------------------------- conversion


def test_flux_to_mag_inverts_the_snana_flux_and_drops_low_snr():
    mag = np.array([20.0, 22.0, 21.0, 19.0])
    flux = 10 ** (-0.4 * (mag - 27.5))
    flux_err = flux * np.array([0.1, 0.5, 1.0, 0.01])  # S/N 10, 2, 1, 100
    flux[2] = -flux[2]
    out, err, kept = flux_to_mag(flux, flux_err)
    assert kept.tolist() == [True, False, False, True]
    assert out == pytest.approx([20.0, 19.0], abs=1e-12)
    assert err == pytest.approx(2.5 / np.log(10) * np.array([0.1, 0.01]), rel=1e-12)


# ------------------------------------------------------------------------------ real-data corpus


def _expected_longest_histories(folder) -> tuple[dict[str, set[tuple[float, int]]], list[str]]:
    """Per objectId, the (jd, fid) of the positive g/r detections of its alert with the most of them
    (read with fastavro), and the objects with several alerts."""
    best: dict[str, set] = defaultdict(set)
    seen: dict[str, int] = defaultdict(int)
    for path in sorted(folder.rglob("*.avro")):
        with path.open("rb") as fh:
            for record in fastavro.reader(fh):
                points = [record["candidate"], *(record.get("prv_candidates") or [])]
                det = {(p["jd"], p["fid"]) for p in points if p and p.get("magpsf") is not None
                       and p["fid"] in (1, 2) and p.get("isdiffpos") not in ("f", "0")}
                seen[record["objectId"]] += 1
                if len(det) > len(best[record["objectId"]]):
                    best[record["objectId"]] = det
    return {k: v for k, v in best.items() if v}, [k for k, n in seen.items() if n > 1 and best[k]]


def test_alert_histories_keep_the_longest_history_of_each_object():
    folder = shared_path("data", "ztf", "avro")
    table = pretrain_data.read_alert_history_mags([folder])
    expected, repeated = _expected_longest_histories(folder)
    assert repeated  # some objects have several alerts: the longest one must win
    got = {oid: {(round(m + data.MJD_TO_JD, 6), {0: 1, 1: 2}[b]) for m, b in zip(g["mjd"], g["band"])}
           for oid, g in table.groupby("object_id")}
    assert set(got) == set(expected)
    for oid, points in expected.items():
        assert got[oid] == {(round(jd, 6), fid) for jd, fid in points}, oid


@pytest.fixture(scope="module")
def corpus():
    shared_path("data", "labeled", "ztf_bts_antares")
    return pretrain_data.assemble(pretrain_data.read_all_sources(), pretrain_data.bts_excluded_ids())


def test_bts_validation_and_withheld_objects_are_never_in_the_corpus(corpus):
    bts = shared_path("data", "labeled", "ztf_bts_antares")
    labels = pd.read_csv(bts / "ZTF_BTS_02_02__02_04_2021.csv", usecols=["ZTFID"])["ZTFID"].astype(str)
    present = {p.stem for p in (bts / "light_curves").glob("*.csv")}
    val = {z for z in present if data.split_of([z])[0] == "val"}
    withheld = set(labels) - present
    ids = set(corpus.object_id.tolist())
    assert len(val) > 400 and len(withheld) > 600  # 25 % of 2,032 and the 678 (+ the 2021-09-only) withheld
    assert not ids & val and not ids & withheld
    train_ids = {z for z in present if data.split_of([z])[0] == "train"}
    assert len(ids & train_ids) > 1000  # the BTS train split is in


def test_every_source_contributes_and_curves_are_time_ordered_and_long_enough(corpus):
    counts = corpus.counts()
    assert set(counts) == {"plasticc_train", "plasticc_test_sniabcii", "ztf_bts", "ztf_alerce", "ztf_forced",
                           "ztf_alerts"}
    assert (corpus.n_points >= pretrain_data.MIN_POINTS).all()
    assert len(set(corpus.object_id.tolist())) == len(corpus)
    same_curve = np.repeat(np.arange(len(corpus)), corpus.n_points)
    step = np.diff(corpus.mjd)[same_curve[1:] == same_curve[:-1]]
    assert (step >= 0).all()
    assert set(np.unique(corpus.band).tolist()) == {0, 1}
    assert 10 < np.median(corpus.mag) < 25 and (corpus.magerr > 0).all()


def test_the_holdout_is_a_fixed_small_object_split(corpus):
    held = pretrain_data.holdout_of(corpus.object_id)
    assert 0.03 < held.mean() < 0.07
    assert np.array_equal(held, pretrain_data.holdout_of(corpus.object_id[::-1])[::-1])  # per object, not per row


def test_the_corpus_cache_round_trips(corpus, tmp_path):
    path = tmp_path / "corpus.npz"
    corpus.save(path)
    back = pretrain_data.Corpus.load(path)
    assert np.array_equal(back.offsets, corpus.offsets) and np.array_equal(back.mag, corpus.mag)
    assert back.object_id.tolist() == corpus.object_id.tolist()
