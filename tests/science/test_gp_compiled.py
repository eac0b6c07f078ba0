"""fink_t2.science.gp_compiled (per-alert numba fit + prediction) against fink_t2.science.gp (batched numpy).

Real data: the usable ZTF alerts of ../shared/data/ztf (as in the GP acceptance script).
"""
from __future__ import annotations


import numpy as np
import pytest

from fink_t2.science import gp
from fink_t2.science import gp_compiled

from tests.conftest import SHARED
ZTF_ALERTS = SHARED / "data/ztf"
WAVELENGTHS = np.array([4804.79, 6436.92])
G, R = WAVELENGTHS
GRID = np.linspace(0.0, 90.0, 25)


def _reference(t, wl, flux, err, mask, grid, max_points=gp.DEFAULT_MAX_POINTS):
    fit = gp.fit_batch(t, wl, flux, err, mask, max_points=max_points)
    mean, std = gp.predict_batch(fit, grid, list(WAVELENGTHS))
    return fit, mean, std


@pytest.fixture(scope="module")
def real_alerts():
    from fink_t2.science.model_input import time_grid
    from tests.conftest import real_alert_light_curves

    lcs = real_alert_light_curves()
    assert len(lcs) >= 100
    return lcs.t, WAVELENGTHS[lcs.band], lcs.flux, lcs.flux_err, lcs.mask, time_grid(lcs.t, lcs.mask)


@pytest.fixture(scope="module")
def real_results(real_alerts):
    *columns, grid = real_alerts
    return gp_compiled.fit_predict_full(*columns, grid, WAVELENGTHS), _reference(*columns, grid)


def _max_abs_flux(flux, mask):
    return np.max(np.where(mask, np.abs(flux), 0.0), axis=1)


@pytest.mark.shared
def test_real_alerts_same_fit_as_gp(real_alerts, real_results):
    (amp, scale, ll, _, _, n_points, iterations), (fit, _, _) = real_results
    assert np.array_equal(np.isnan(ll), np.isnan(fit.log_likelihood))
    assert np.array_equal(np.isnan(amp), np.isnan(fit.amplitude))
    ok = np.isfinite(fit.log_likelihood)
    assert ok.sum() >= 100
    close = np.abs(ll[ok] - fit.log_likelihood[ok]) <= 1e-6 * np.abs(fit.log_likelihood[ok])
    assert np.all(close | (ll[ok] >= fit.log_likelihood[ok] - 1e-6))
    np.testing.assert_array_equal(n_points[ok], fit.n_points[ok])
    # Same optimiser path: same number of Newton evaluations, same optimum.
    assert np.mean(iterations[ok] == fit.iterations[ok]) >= 0.99
    np.testing.assert_allclose(amp[ok], fit.amplitude[ok], rtol=1e-6)
    np.testing.assert_allclose(scale[ok], fit.time_scale[ok], rtol=1e-6)


def _round_off_bound(t, wl, flux, err, mask, amplitude, time_scale):
    """Per-alert bound (B,) on the relative round-off of kᵀK⁻¹k and kᵀK⁻¹y in float64.

    Solving with the Cholesky factor of the n×n noisy kernel K at the fitted (A, ℓ_t) has a
    relative forward error ≲ n·ε·κ₂(K) (Higham, Accuracy and Stability, §10.1); the two
    implementations round differently (LAPACK's blocked/SIMD kernels vs plain loops), so
    their difference is bounded by the sum of both bounds: 2·n·ε·κ₂(K), on the points the
    fit really used (after binning). Well-conditioned alerts get the 1e-6 floor.
    """
    valid = gp._valid_alerts(t, wl, flux, err, mask)
    bt, bw, _, be, bm = gp_compiled._binned_inputs(t, wl, flux, err, mask, valid, gp.DEFAULT_MAX_POINTS)
    bound = np.full(t.shape[0], 1e-6)
    for b in np.flatnonzero(valid & np.isfinite(amplitude)):
        tt, ww, ee = bt[b, bm[b]], bw[b, bm[b]], be[b, bm[b]]
        r = np.sqrt(((tt[:, None] - tt[None]) / time_scale[b]) ** 2 + ((ww[:, None] - ww[None]) / 6000.0) ** 2)
        kernel = amplitude[b] * (1 + gp.SQRT3 * r) * np.exp(-gp.SQRT3 * r) + np.diag(ee**2)
        bound[b] = max(1e-6, 2 * tt.size * np.finfo(np.float64).eps * np.linalg.cond(kernel))
    return bound


@pytest.mark.shared
def test_real_alerts_same_prediction_as_gp(real_alerts, real_results):
    t, wl, flux, err, mask, grid = real_alerts
    (amp, scale, _, mean, std, _, _), (fit, ref_mean, ref_std) = real_results
    assert mean.shape == std.shape == ref_mean.shape == (t.shape[0], grid.shape[1], 2)
    assert np.array_equal(np.isnan(mean), np.isnan(ref_mean))
    assert np.array_equal(np.isnan(std), np.isnan(ref_std))
    ok = np.isfinite(fit.log_likelihood)
    bound = _round_off_bound(t, wl, flux, err, mask, amp, scale)[ok, None, None]
    scale_flux = _max_abs_flux(flux, mask)[ok, None, None]
    assert np.all(np.abs(mean[ok] - ref_mean[ok]) <= bound * scale_flux)
    # std: 1e-6 relative, or the variance A − kᵀK⁻¹k within the round-off bound of kᵀK⁻¹k (≤ A):
    # where σ² ≪ A the subtraction cancels and only the absolute variance error is meaningful.
    var, ref_var = std[ok] ** 2, ref_std[ok] ** 2
    relative = np.abs(std[ok] - ref_std[ok]) <= 1e-6 * ref_std[ok]
    cancelled = np.abs(var - ref_var) <= bound * amp[ok, None, None]
    assert np.all(relative | cancelled)
    assert np.mean(relative) >= 0.99


@pytest.mark.shared
def test_real_alerts_std_accuracy(real_alerts, real_results):
    """Where gp_compiled's std differs from gp's by > 1e-6, gp_compiled is the accurate one (long double)."""
    if np.finfo(np.longdouble).eps > 1e-18:
        pytest.skip("no extended-precision long double on this platform")
    t, wl, flux, err, mask, grid = real_alerts
    (amp, scale, _, _, std, _, _), (_, _, ref_std) = real_results
    differ = np.flatnonzero(np.nanmax(np.abs(std - ref_std) / ref_std, axis=(1, 2)) > 1e-6)
    for b in differ:
        exact = _long_double_std(t[b, mask[b]], wl[b, mask[b]], err[b, mask[b]], amp[b], scale[b], grid[b])
        np.testing.assert_allclose(std[b], exact, rtol=1e-6)


def _long_double_std(t, wl, err, amplitude, time_scale, grid):
    """Posterior std (G,2) at fixed (A, ℓ_t) computed in long double (reference for round-off)."""
    ld = np.longdouble
    t, wl, err, grid, wls = (np.asarray(a, dtype=ld) for a in (t, wl, err, grid, WAVELENGTHS))
    a, ell, sqrt3 = ld(amplitude), ld(time_scale), np.sqrt(ld(3))

    def kernel(t1, w1, t2, w2):
        r = np.sqrt(((t1 - t2) / ell) ** 2 + ((w1 - w2) / ld(6000)) ** 2)
        return a * (1 + sqrt3 * r) * np.exp(-sqrt3 * r)

    n = t.size
    k = kernel(t[:, None], wl[:, None], t[None], wl[None]) + np.diag(err**2)
    lower = np.zeros((n, n), dtype=ld)
    for j in range(n):
        lower[j, j] = np.sqrt(k[j, j] - np.sum(lower[j, :j] ** 2))
        for i in range(j + 1, n):
            lower[i, j] = (k[i, j] - np.sum(lower[i, :j] * lower[j, :j])) / lower[j, j]
    cross = kernel(t[:, None, None], wl[:, None, None], grid[None, :, None], wls[None, None, :]).reshape(n, -1)
    z = np.zeros_like(cross)
    for i in range(n):
        z[i] = (cross[i] - np.sum(lower[i, :i, None] * z[:i], axis=0)) / lower[i, i]
    variance = np.maximum(a - np.sum(z**2, axis=0), 0)
    return np.sqrt(variance).reshape(grid.size, 2).astype(np.float64)


# ------------------------------------------------------------------------------------------------
# Edge cases and padding (synthetic, no shared data needed)
# ------------------------------------------------------------------------------------------------


def _synthetic_curve(seed=0, n=24):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, 60, n))
    wl = np.where(rng.random(n) < 0.5, G, R)
    flux = 3e3 * np.exp(-0.5 * ((t - 20) / 8) ** 2) * np.where(wl == G, 1.0, 0.7) + rng.normal(0, 60, n)
    err = rng.uniform(40, 90, n)
    return t, wl, flux, err


def _edge_case_alerts():
    rng = np.random.default_rng(1)
    long_t = np.sort(rng.uniform(0, 90, 1000))
    long_wl = np.where(rng.random(1000) < 0.5, G, R)
    long_flux = 1e4 * np.exp(-0.5 * ((long_t - 30) / 15) ** 2) + rng.normal(0, 50, 1000)
    t, wl, flux, err = _synthetic_curve()
    first = np.arange(t.size) == 0
    return {
        "two_points": (np.array([0.0, 3.0]), np.array([G, R]), np.array([1200.0, 900.0]), np.array([30.0, 40.0])),
        "one_point": (np.array([0.0]), np.array([G]), np.array([1200.0]), np.array([30.0])),
        "duplicate_times": (np.array([0.0, 0.0, 0.0, 2.0, 2.0]), np.array([G, G, R, R, R]),
                            np.array([1000.0, 1010.0, 800.0, 900.0, 905.0]), np.full(5, 20.0)),
        "plain": (t, wl, flux, err),
        "huge_errors": (t, wl, flux, err * 1e12),
        "tiny_errors": (t, wl, flux, err * 1e-6),
        "negative_flux": (t, wl, flux - 2 * flux.mean(), err),
        "thousand_points": (long_t, long_wl, long_flux, np.full(1000, 50.0)),
        "zero_error": (t, wl, flux, np.where(first, 0.0, err)),
        "nan_error": (t, wl, flux, np.where(first, np.nan, err)),
        "nan_flux": (t, wl, np.where(np.arange(t.size) == 1, np.nan, flux), err),
        "all_zero_flux": (t, wl, np.zeros(t.size), err),
        "empty": (np.array([]), np.array([]), np.array([]), np.array([])),
    }


EXPECTED_NAN = {"zero_error", "nan_error", "nan_flux", "all_zero_flux", "empty"}
#: Cases whose std has cancellation round-off in gp (σ² ≪ A): compared on the variance scale.
ILL_CONDITIONED = {"tiny_errors"}


def test_edge_cases_match_gp():
    cases = _edge_case_alerts()
    (t, wl, flux, err), mask = gp.pad_ragged([[case[j] for case in cases.values()] for j in range(4)])
    grid = np.tile(GRID, (len(cases), 1))
    amp, scale, ll, mean, std, n_points, _ = gp_compiled.fit_predict_full(t, wl, flux, err, mask, grid, WAVELENGTHS)
    fit, ref_mean, ref_std = _reference(t, wl, flux, err, mask, grid)
    for k, name in enumerate(cases):
        values = np.concatenate([[amp[k], scale[k], ll[k]], mean[k].ravel(), std[k].ravel()])
        if name in EXPECTED_NAN:
            assert np.all(np.isnan(values)), name
            continue
        assert np.all(np.isfinite(values)), name
        assert ll[k] >= fit.log_likelihood[k] - 1e-6 * max(1.0, abs(fit.log_likelihood[k])), name
        np.testing.assert_allclose(ll[k], fit.log_likelihood[k], rtol=1e-6, err_msg=name)
        np.testing.assert_allclose([amp[k], scale[k]], [fit.amplitude[k], fit.time_scale[k]], rtol=1e-5, err_msg=name)
        flux_scale = np.max(np.abs(flux[k, mask[k]]))
        np.testing.assert_allclose(mean[k], ref_mean[k], rtol=0, atol=1e-6 * flux_scale, err_msg=name)
        if name in ILL_CONDITIONED:
            np.testing.assert_allclose(std[k] ** 2, ref_std[k] ** 2, rtol=0, atol=1e-9 * amp[k], err_msg=name)
        else:
            np.testing.assert_allclose(std[k], ref_std[k], rtol=1e-6, atol=1e-9 * flux_scale, err_msg=name)
    thousand = list(cases).index("thousand_points")
    assert n_points[thousand] == fit.n_points[thousand] <= gp.DEFAULT_MAX_POINTS


def test_padding_invariance():
    """Alone == inside a batch with longer alerts, NaN junk padding and masked points mid-row."""
    short = _synthetic_curve(seed=3, n=6)
    longer = [_synthetic_curve(seed=s, n=n) for s, n in ((4, 30), (5, 40), (6, 17))]
    alone = gp_compiled.fit_predict(*(c[None] for c in short), np.full((1, 1), True).repeat(6, 1), GRID[None], WAVELENGTHS)
    (t, wl, flux, err), mask = gp.pad_ragged([[c[j] for c in (longer[0], short, longer[1], longer[2])] for j in range(4)])
    for column in (t, wl, flux, err):
        column[~mask] = np.nan
    together = gp_compiled.fit_predict(t, wl, flux, err, mask, np.tile(GRID, (4, 1)), WAVELENGTHS)
    # Interleaved: real points on even columns, junk on odd ones.
    columns = []
    for c, junk in zip(short, (1e6, G, 1e9, 1e-3)):
        row = np.full(12, junk)
        row[::2] = c
        columns.append(row[None])
    inter_mask = (np.arange(12) % 2 == 0)[None]
    interleaved = gp_compiled.fit_predict(*columns, inter_mask, GRID[None], WAVELENGTHS)
    for other, row in ((together, 1), (interleaved, 0)):
        for a, b in zip(alone, other):
            np.testing.assert_allclose(b[row], a[0], rtol=1e-12, atol=0)


def test_binning_matches_gp_with_small_max_points():
    t, wl, flux, err = _synthetic_curve(seed=7, n=90)
    args = (t[None], wl[None], flux[None], err[None], np.ones((1, 90), bool))
    amp, scale, ll, mean, std, n_points, _ = gp_compiled.fit_predict_full(*args, GRID[None], WAVELENGTHS, max_points=20)
    fit, ref_mean, ref_std = _reference(*args, GRID[None], max_points=20)
    assert n_points[0] == fit.n_points[0] <= 20
    np.testing.assert_allclose(ll, fit.log_likelihood, rtol=1e-9)
    np.testing.assert_allclose(mean, ref_mean, rtol=0, atol=1e-6 * np.abs(flux).max())
    np.testing.assert_allclose(std, ref_std, rtol=1e-6)


def test_random_small_alerts_match_gp():
    """200 random 1–12-point alerts (duplicate times likely, S/N ≤ 1000): same optimum as gp."""
    rng = np.random.default_rng(11)
    alerts = []
    for _ in range(200):
        n = int(rng.integers(1, 13))
        t = np.where(rng.random(n) < 0.3, rng.integers(0, 2, n).astype(float), rng.uniform(0, 90, n))
        wl = WAVELENGTHS[rng.integers(0, 2, n)]
        flux = rng.uniform(-1e5, 1e6, n)
        err = np.maximum(10.0 ** rng.uniform(-3, 3, n) * np.max(np.abs(flux)), 1e-2)
        alerts.append((t, wl, flux, err))
    (t, wl, flux, err), mask = gp.pad_ragged([[a[j] for a in alerts] for j in range(4)])
    grid = np.tile(GRID, (len(alerts), 1))
    amp, _, ll, mean, std = gp_compiled.fit_predict(t, wl, flux, err, mask, grid, WAVELENGTHS)
    fit, ref_mean, ref_std = _reference(t, wl, flux, err, mask, grid)
    assert np.all(np.isfinite(ll))
    tolerance = 1e-6 * np.maximum(1.0, np.abs(fit.log_likelihood))
    assert np.all(ll >= fit.log_likelihood - tolerance)
    scale = _max_abs_flux(flux, mask)[:, None, None]
    same = np.abs(ll - fit.log_likelihood) <= tolerance
    assert np.all(np.abs(mean - ref_mean)[same] <= (1e-6 * np.broadcast_to(scale, mean.shape))[same])
    cancelled = np.abs(std**2 - ref_std**2) <= 1e-9 * amp[:, None, None]
    assert np.all((np.abs(std - ref_std) <= 1e-6 * ref_std) | cancelled)


def test_invalid_grid_shape_raises():
    t, wl, flux, err = _synthetic_curve()
    with pytest.raises(ValueError):
        gp_compiled.fit_predict(t[None], wl[None], flux[None], err[None], np.ones((1, t.size), bool), GRID, WAVELENGTHS)
