"""Stage 4: grid and scaling."""
from __future__ import annotations

import numpy as np

from fink_t2.science.model_input import MIN_RELATIVE_IQR, robust_scale, scale_input, time_grid


def test_grid_spans_first_to_last_detection():
    t = np.array([[0.0, 2.0, 9.0, 0.0]])
    mask = np.array([[True, True, True, False]])
    grid = time_grid(t, mask, 100)
    assert grid.shape == (1, 100) and grid[0, 0] == 0.0 and grid[0, -1] == 9.0
    np.testing.assert_allclose(np.diff(grid[0]), 9.0 / 99)


def test_robust_scale_per_alert_per_band():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 100, 2)) * np.array([10.0, 1000.0]) + 5.0
    out = scale_input(x, "robust_per_alert_per_band")
    assert out.dtype == np.float32
    med = np.median(out, axis=1)
    q25, q75 = np.percentile(out, [25, 75], axis=1)
    np.testing.assert_allclose(med, 0.0, atol=1e-5)
    np.testing.assert_allclose(q75 - q25, 1.0, rtol=1e-4)


def test_flat_band_is_not_blown_up():
    x = np.ones((1, 100, 2)) * 1e4
    x[0, 50:, 0] += 1e-9  # IQR ~ 0 but not exactly 0
    x[0, :, 1] = 0.0  # all-zero band
    out = robust_scale(x)
    assert np.abs(out).max() <= 1.0 / MIN_RELATIVE_IQR and np.all(np.isfinite(out))
