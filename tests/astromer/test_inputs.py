"""Encoder windows: which observations, in which order, centred how, padded how."""
from __future__ import annotations

import numpy as np

from fink_t2.astromer.inputs import LightCurve, batch_twoband, batch_v0
from tests.astromer.macho import macho_light_curves, require_reference


def _shuffled(lc: LightCurve, seed: int = 1) -> LightCurve:
    return lc.select(np.random.default_rng(seed).permutation(len(lc.mjd)))


def test_v0_takes_the_first_200_by_time_whatever_the_row_order():
    require_reference()
    lc = macho_light_curves()[0]  # 722 points
    batch = batch_v0([_shuffled(lc)])
    first = np.sort(lc.mjd)[:200]
    np.testing.assert_allclose(batch.times[0], (first - first.mean()).astype(np.float32), rtol=0, atol=0)
    assert batch.valid[0].all() and abs(float(batch.mags[0].astype(np.float64).mean())) < 1e-6


def test_v0_pads_a_short_curve_with_zeros():
    require_reference()
    lc = next(c for c in macho_light_curves() if len(c.mjd) == 45)
    batch = batch_v0([lc])
    assert batch.valid[0].sum() == 45 and not batch.valid[0, 45:].any()
    assert not batch.times[0, 45:].any() and not batch.mags[0, 45:].any() and not batch.bands.any()


def test_twoband_keeps_the_most_recent_g_and_r_points():
    mjd = np.arange(10.0) + 59000.0
    band = np.array([0, 1, 2, 0, 1, 2, 0, 1, 0, 1], np.int8)  # 2 = a band the encoder does not take (i)
    mag = 18.0 + np.arange(10.0) / 10
    lc = _shuffled(LightCurve("ZTFx", mjd, band, mag, np.full(10, 0.1)))
    batch = batch_twoband([lc], max_obs=5)
    kept = np.array([4, 6, 7, 8, 9])  # the last five g/r points, time order
    np.testing.assert_array_equal(batch.bands[0], band[kept])
    np.testing.assert_allclose(batch.times[0], mjd[kept] - mjd[kept].mean())
    np.testing.assert_allclose(batch.mags[0], (mag[kept] - mag[kept].mean()).astype(np.float32))


def test_an_empty_curve_is_all_padding():
    empty = LightCurve("none", np.array([]), np.array([], np.int8), np.array([]), np.array([]))
    for batch in (batch_v0([empty]), batch_twoband([empty])):
        assert not batch.valid.any() and not batch.times.any() and batch.object_ids == ("none",)
