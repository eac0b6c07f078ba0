"""Per-alert numba version of :mod:`fink_t2.science.gp` (fit + prediction in one call).

Same model, start, coarse scan, projected Newton iterations, bounds, convergence rules,
binning rule and failure rule as :func:`fink_t2.science.gp.fit_batch` followed by
:func:`fink_t2.science.gp.predict_batch`; see the docstring of :mod:`fink_t2.science.gp` for the algorithm.
The difference is the execution: one compiled loop over alerts, each alert with its own
dense matrices of its real size n (no buckets, no padding), small hand-written Cholesky
factorisations. numpy's batched linear algebra has a large per-call overhead for the P ≈ 4–32
matrices of real alerts; here the cost is the O(n³) arithmetic only.

Numerical differences with :mod:`fink_t2.science.gp` are round-off only (different summation orders,
K̃⁻¹ from the Cholesky factor instead of LU, posterior variance as ‖L⁻¹k̃‖² instead of
k̃ᵀK̃⁻¹k̃). They can only change the result where a round-off-sized difference flips one of
the optimiser's discrete decisions (scan tie, step acceptance, convergence test).

Alerts with more than ``max_points`` real points are binned in Python with
:func:`fink_t2.science.gp.bin_light_curve` before the compiled part (rare on real alerts).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from numba import njit

from fink_t2.science import gp
from fink_t2.contract import (
    GP_LOG_AMPLITUDE_HALF_WIDTH,
    GP_TIME_SCALE_BOUNDS_DAYS,
    GP_TIME_SCALE_START_DAYS,
    GP_WAVELENGTH_SCALE_A,
)

SQRT3 = float(np.sqrt(3.0))
LOG_2PI = float(np.log(2.0 * np.pi))
LOG_QUARTER = float(np.log(0.25))
LOG_TIME_SCALE_START = float(np.log(GP_TIME_SCALE_START_DAYS))
LOG_TIME_SCALE_LOW = float(np.log(GP_TIME_SCALE_BOUNDS_DAYS[0]))
LOG_TIME_SCALE_HIGH = float(np.log(GP_TIME_SCALE_BOUNDS_DAYS[1]))
HALF_WIDTH = float(GP_LOG_AMPLITUDE_HALF_WIDTH)
WAVELENGTH_SCALE = float(GP_WAVELENGTH_SCALE_A)
MAX_ITERATIONS = gp.MAX_ITERATIONS
MAX_STEP = float(gp.MAX_STEP)
PREDICTED_DECREASE_TOL = float(gp.PREDICTED_DECREASE_TOL)
MAX_HALVINGS = gp.MAX_HALVINGS
SCAN_LOG_TIME_SCALES = np.array(gp.SCAN_LOG_TIME_SCALES, dtype=np.float64)
SCAN_LOG_AMPLITUDE_OFFSETS = np.array(gp.SCAN_LOG_AMPLITUDE_OFFSETS, dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# Small dense linear algebra (only the leading n×n block of the work buffers is used)
# ----------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def _cholesky(a, n):
    """In-place lower Cholesky factor of the leading n×n block of `a` (lower triangle read).

    Returns False (like LAPACK dpotrf) when a pivot is ≤ 0 or NaN.
    """
    for j in range(n):
        s = a[j, j]
        for k in range(j):
            s -= a[j, k] * a[j, k]
        if not s > 0.0:
            return False
        d = np.sqrt(s)
        a[j, j] = d
        for i in range(j + 1, n):
            s = a[i, j]
            for k in range(j):
                s -= a[i, k] * a[j, k]
            a[i, j] = s / d
    return True


@njit(cache=True, error_model="numpy")
def _lower_inverse(lower, out, n):
    """out = L⁻¹ (lower triangular; the strict upper triangle of `out` is set to 0)."""
    for i in range(n):
        for j in range(n):
            out[i, j] = 0.0
    for i in range(n):
        d = lower[i, i]
        out[i, i] = 1.0 / d
        for j in range(i):
            s = 0.0
            for k in range(j, i):
                s -= lower[i, k] * out[k, j]
            out[i, j] = s / d


@njit(cache=True, error_model="numpy")
def _inverse_from_lower_inverse(linv, inv, n):
    """inv = L⁻ᵀL⁻¹ = K⁻¹ (full symmetric matrix) from L⁻¹."""
    for i in range(n):
        for j in range(n):
            inv[i, j] = 0.0
    for k in range(n):
        for i in range(k + 1):
            lki = linv[k, i]
            if lki != 0.0:
                for j in range(k + 1):
                    inv[i, j] += lki * linv[k, j]


@njit(cache=True, error_model="numpy")
def _matvec(m, v, out, n):
    for i in range(n):
        s = 0.0
        for j in range(n):
            s += m[i, j] * v[j]
        out[i] = s


@njit(cache=True, error_model="numpy")
def _dot(a, b, n):
    s = 0.0
    for i in range(n):
        s += a[i] * b[i]
    return s


# ----------------------------------------------------------------------------------------------
# Likelihood pieces
# ----------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def _scan_nll(n, dt_sq, dwl_sq, wout, y, y_sq, log_scale, log_amp, offsets, low_amp, high_amp,
              shape, chol, z, nll_out):
    """gp._scan_nll for one alert: NLL up to a constant at ℓ_t = e^log_scale and each ln A.

    ln A values are clip(log_amp + offsets[k], low_amp, high_amp). +inf where the bordered
    Cholesky factorisation fails.
    """
    factor = np.exp(-2.0 * log_scale)
    corner = y_sq * (1.0 + 1e-8) + 1.0
    for i in range(n):
        for j in range(i + 1):
            r = np.sqrt(dt_sq[i, j] * factor + dwl_sq[i, j])
            shape[i, j] = wout[i, j] * (1.0 + SQRT3 * r) * np.exp(-SQRT3 * r)
    for kk in range(offsets.size):
        la = log_amp + offsets[kk]
        if la < low_amp:
            la = low_amp
        elif la > high_amp:
            la = high_amp
        amp = np.exp(la)
        for i in range(n):
            for j in range(i + 1):
                chol[i, j] = amp * shape[i, j]
            chol[i, i] += 1.0
        if not _cholesky(chol, n):
            nll_out[kk] = np.inf
            continue
        log_det = 0.0
        zz = 0.0
        for i in range(n):
            log_det += np.log(chol[i, i])
            s = y[i]
            for k in range(i):
                s -= chol[i, k] * z[k]
            z[i] = s / chol[i, i]
            zz += z[i] * z[i]
        log_det *= 2.0
        pivot_sq = corner - zz
        if not pivot_sq > 0.0:
            nll_out[kk] = np.inf
            continue
        pivot = np.sqrt(pivot_sq)
        value = 0.5 * ((corner - pivot * pivot) + log_det)
        nll_out[kk] = value if np.isfinite(value) else np.inf


@njit(cache=True, error_model="numpy")
def _evaluate(n, dt_sq, dwl_sq, wout, y, log_det_noise, th0, th1,
              chol, linv, inv, sig, dsc, d2, ms, alpha, pa, pl, sa, sl, tmp, out):
    """gp._evaluate for one alert at θ = (th0, th1).

    Fills linv (L⁻¹ of K̃) and alpha (K̃⁻¹ỹ) and out = (nll, g_A, g_ℓ, c_AA, c_Aℓ, c_ℓℓ)
    with c the exact Hessian where positive definite, else the Fisher matrix. nll = +inf
    when K̃ cannot be factorised (other outputs then unused).
    """
    amplitude = np.exp(th0)
    factor = np.exp(-2.0 * th1)
    for i in range(n):
        for j in range(i + 1):
            s = dt_sq[i, j] * factor
            r = np.sqrt(s + dwl_sq[i, j])
            decay = np.exp(-SQRT3 * r) * wout[i, j] * amplitude
            signal = decay * (1.0 + SQRT3 * r)
            d_scale = decay * s * 3.0
            if r > 0.0:
                second = d_scale * (s / r * SQRT3 - 2.0)
            else:
                second = d_scale * -2.0
            sig[i, j] = signal
            sig[j, i] = signal
            dsc[i, j] = d_scale
            dsc[j, i] = d_scale
            d2[i, j] = second
            d2[j, i] = second
            chol[i, j] = signal
        chol[i, i] += 1.0
    if not _cholesky(chol, n):
        out[0] = np.inf
        return np.inf
    log_det = 0.0
    for i in range(n):
        log_det += np.log(chol[i, i])
    log_det *= 2.0
    _lower_inverse(chol, linv, n)
    _inverse_from_lower_inverse(linv, inv, n)
    _matvec(inv, y, alpha, n)
    nll = 0.5 * (_dot(y, alpha, n) + log_det + log_det_noise + n * LOG_2PI)

    # m_scale = K̃⁻¹ ∂_ℓK̃
    for i in range(n):
        for j in range(n):
            ms[i, j] = 0.0
        for k in range(n):
            a = inv[i, k]
            for j in range(n):
                ms[i, j] += a * dsc[k, j]
    trace_inverse = 0.0
    trace_m_scale = 0.0
    inverse_sq_sum = 0.0
    inv_ms = 0.0
    ms_ms = 0.0
    inv_d2 = 0.0
    for i in range(n):
        trace_inverse += inv[i, i]
        trace_m_scale += ms[i, i]
        for j in range(n):
            inverse_sq_sum += inv[i, j] * inv[i, j]
            inv_ms += inv[i, j] * ms[j, i]
            ms_ms += ms[i, j] * ms[j, i]
            inv_d2 += inv[i, j] * d2[i, j]
    trace_m_amp = n - trace_inverse
    _matvec(sig, alpha, pa, n)
    _matvec(dsc, alpha, pl, n)
    quad_a = _dot(alpha, pa, n)
    quad_l = _dot(alpha, pl, n)
    g0 = 0.5 * (trace_m_amp - quad_a)
    g1 = 0.5 * (trace_m_scale - quad_l)

    f_aa = 0.5 * (n - 2.0 * trace_inverse + inverse_sq_sum)
    f_al = 0.5 * (trace_m_scale - inv_ms)
    f_ll = 0.5 * ms_ms

    _matvec(inv, pa, sa, n)
    _matvec(inv, pl, sl, n)
    _matvec(d2, alpha, tmp, n)
    h_aa = 0.5 * trace_m_amp + _dot(pa, sa, n) - 0.5 * quad_a - f_aa
    h_al = 0.5 * trace_m_scale + _dot(pa, sl, n) - 0.5 * quad_l - f_al
    h_ll = 0.5 * inv_d2 + _dot(pl, sl, n) - 0.5 * _dot(alpha, tmp, n) - f_ll
    if h_aa > 0.0 and h_aa * h_ll > h_al * h_al:
        c00, c01, c11 = h_aa, h_al, h_ll
    else:
        c00, c01, c11 = f_aa, f_al, f_ll
    if not np.isfinite(nll):
        nll = np.inf
    out[0] = nll
    out[1] = g0
    out[2] = g1
    out[3] = c00
    out[4] = c01
    out[5] = c11
    return nll


# ----------------------------------------------------------------------------------------------
# Optimiser pieces (scalar versions of gp._projected_newton_step and gp._needs_step)
# ----------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def _clip(x, low, high):
    if x < low:
        return low
    if x > high:
        return high
    return x


@njit(cache=True, error_model="numpy")
def _projected_newton_step(g0, g1, c00, c01, c11, th0, th1, lo0, lo1, hi0, hi1, step):
    frozen0 = (th0 <= lo0 + 1e-12 and g0 > 0.0) or (th0 >= hi0 - 1e-12 and g0 < 0.0)
    frozen1 = (th1 <= lo1 + 1e-12 and g1 > 0.0) or (th1 >= hi1 - 1e-12 and g1 < 0.0)
    gg0 = 0.0 if frozen0 else g0
    gg1 = 0.0 if frozen1 else g1
    h_aa = c00 * (1.0 + 1e-9) + 1e-12
    h_ll = c11 * (1.0 + 1e-9) + 1e-12
    h_al = 0.0 if (frozen0 or frozen1) else c01
    det = h_aa * h_ll - h_al * h_al
    s0 = -(h_ll * gg0 - h_al * gg1) / det
    s1 = -(h_aa * gg1 - h_al * gg0) / det
    if frozen0:
        s0 = 0.0
    if frozen1:
        s1 = 0.0
    a0, a1 = abs(s0), abs(s1)
    if np.isnan(a0) or np.isnan(a1):
        scale = np.nan  # np.max / np.maximum / np.minimum propagate NaN
    else:
        largest = a0 if a0 >= a1 else a1
        scale = min(1.0, MAX_STEP / max(largest, 1e-300))
    s0 *= scale
    s1 *= scale
    step[0] = _clip(th0 + s0, lo0, hi0) - th0
    step[1] = _clip(th1 + s1, lo1, hi1) - th1


@njit(cache=True, error_model="numpy")
def _needs_step(step, g0, g1):
    predicted = -(step[0] * g0 + step[1] * g1)
    a0, a1 = abs(step[0]), abs(step[1])
    if np.isnan(a0) or np.isnan(a1):
        return False
    return predicted > PREDICTED_DECREASE_TOL and max(a0, a1) > 1e-6


# ----------------------------------------------------------------------------------------------
# Compiled driver: one alert at a time
# ----------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def _fit_predict_all(t, wavelength, flux, flux_err, mask, valid, t_grid, wavelengths,
                     scan_scales, scan_offsets,
                     amplitude, time_scale, log_likelihood, n_points, iterations, mean, std):
    n_alerts, width = t.shape
    n_grid = t_grid.shape[1]
    n_wl = wavelengths.size
    n_out = n_grid * n_wl
    m = 1
    for b in range(n_alerts):
        c = 0
        for j in range(width):
            if mask[b, j]:
                c += 1
        if c > m:
            m = c
    # Work buffers, leading n×n blocks used per alert.
    pt = np.empty(m)
    pwl = np.empty(m)
    pf = np.empty(m)
    pe = np.empty(m)
    weight = np.empty(m)
    y = np.empty(m)
    dt_sq = np.empty((m, m))
    dwl_sq = np.empty((m, m))
    wout = np.empty((m, m))
    chol = np.empty((m, m))
    linv = np.empty((2, m, m))
    inv = np.empty((m, m))
    sig = np.empty((m, m))
    dsc = np.empty((m, m))
    d2 = np.empty((m, m))
    ms = np.empty((m, m))
    alpha = np.empty((2, m))
    pa = np.empty(m)
    pl = np.empty(m)
    sa = np.empty(m)
    sl = np.empty(m)
    tmp = np.empty(m)
    z = np.empty(m)
    out = np.empty(6)
    scan = np.empty(scan_offsets.size)
    one_offset = np.zeros(1)
    step = np.empty(2)
    cross = np.empty((m, n_out))
    zrow = np.empty(n_out)
    explained = np.empty(n_out)
    grid_t = np.empty(n_out)
    grid_wl = np.empty(n_out)

    for b in range(n_alerts):
        n = 0
        for j in range(width):
            if mask[b, j]:
                pt[n] = t[b, j]
                pwl[n] = wavelength[b, j]
                pf[n] = flux[b, j]
                pe[n] = flux_err[b, j]
                n += 1
        n_points[b] = n if valid[b] else 0
        amplitude[b] = np.nan
        time_scale[b] = np.nan
        log_likelihood[b] = np.nan
        for g in range(n_grid):
            for w in range(n_wl):
                mean[b, g, w] = np.nan
                std[b, g, w] = np.nan
        if not valid[b]:
            continue

        # Start and bounds (gp._start_and_bounds).
        max_flux = -np.inf
        for i in range(n):
            if pf[i] > max_flux:
                max_flux = pf[i]
        floor_sq = (0.01 * max_flux) ** 2
        best_i = 0
        best_snr = abs(pf[0]) / np.sqrt(pe[0] ** 2 + floor_sq)
        if not np.isnan(best_snr):
            for i in range(1, n):
                snr = abs(pf[i]) / np.sqrt(pe[i] ** 2 + floor_sq)
                if np.isnan(snr):
                    best_i = i
                    break
                if snr > best_snr:
                    best_snr = snr
                    best_i = i
        scale = abs(pf[best_i])
        if scale == 0.0:
            continue  # no ln A start: NaN (gp: placeholder start, reported NaN)
        log_amp = LOG_QUARTER + 2.0 * np.log(scale)
        lo0 = log_amp - HALF_WIDTH
        hi0 = log_amp + HALF_WIDTH
        lo1 = LOG_TIME_SCALE_LOW
        hi1 = LOG_TIME_SCALE_HIGH

        # Whitened problem (gp._make_problem).
        log_det_noise = 0.0
        y_sq = 0.0
        for i in range(n):
            weight[i] = 1.0 / pe[i]
            y[i] = pf[i] * weight[i]
            log_det_noise += 2.0 * np.log(pe[i])
            y_sq += y[i] ** 2
        for i in range(n):
            for j in range(n):
                dt_sq[i, j] = (pt[i] - pt[j]) ** 2
                dwl_sq[i, j] = ((pwl[i] - pwl[j]) / WAVELENGTH_SCALE) ** 2
                wout[i, j] = weight[i] * weight[j]

        # Coarse scan (gp._scan_start): reference start first, ties keep the earlier point.
        th0 = log_amp
        th1 = LOG_TIME_SCALE_START
        _scan_nll(n, dt_sq, dwl_sq, wout, y, y_sq, th1, log_amp, one_offset, -np.inf, np.inf,
                  sig, chol, z, scan)
        best_nll = scan[0]
        for s in range(scan_scales.size):
            log_scale = _clip(scan_scales[s], lo1, hi1)
            _scan_nll(n, dt_sq, dwl_sq, wout, y, y_sq, log_scale, log_amp, scan_offsets, lo0, hi0,
                      sig, chol, z, scan)
            for k in range(scan_offsets.size):
                if scan[k] < best_nll:
                    best_nll = scan[k]
                    th0 = _clip(log_amp + scan_offsets[k], lo0, hi0)
                    th1 = log_scale

        # Projected Newton (gp._optimise).
        cur = 0
        nll = _evaluate(n, dt_sq, dwl_sq, wout, y, log_det_noise, th0, th1, chol, linv[cur], inv,
                        sig, dsc, d2, ms, alpha[cur], pa, pl, sa, sl, tmp, out)
        evaluations = 1
        g0, g1, c00, c01, c11 = out[1], out[2], out[3], out[4], out[5]
        if not np.isfinite(nll):
            iterations[b] = evaluations
            continue
        _projected_newton_step(g0, g1, c00, c01, c11, th0, th1, lo0, lo1, hi0, hi1, step)
        halvings = 0
        active = _needs_step(step, g0, g1)
        for _ in range(MAX_ITERATIONS):
            if not active:
                break
            cand0 = th0 + step[0]
            cand1 = th1 + step[1]
            trial = 1 - cur
            trial_nll = _evaluate(n, dt_sq, dwl_sq, wout, y, log_det_noise, cand0, cand1, chol,
                                  linv[trial], inv, sig, dsc, d2, ms, alpha[trial], pa, pl, sa, sl,
                                  tmp, out)
            evaluations += 1
            if trial_nll <= nll + 1e-10 * abs(nll):
                cur = trial
                th0, th1, nll = cand0, cand1, trial_nll
                g0, g1, c00, c01, c11 = out[1], out[2], out[3], out[4], out[5]
                halvings = 0
                _projected_newton_step(g0, g1, c00, c01, c11, th0, th1, lo0, lo1, hi0, hi1, step)
                active = _needs_step(step, g0, g1)
            else:
                step[0] *= 0.5
                step[1] *= 0.5
                halvings += 1
                active = halvings < MAX_HALVINGS
        iterations[b] = evaluations
        amp = np.exp(th0)
        ell = np.exp(th1)
        amplitude[b] = amp
        time_scale[b] = ell
        log_likelihood[b] = -nll

        # Prediction (gp.predict_batch): mean = Σ α_p k_p, var = A − ‖L⁻¹ k̃‖².
        for g in range(n_grid):
            for w in range(n_wl):
                grid_t[g * n_wl + w] = t_grid[b, g]
                grid_wl[g * n_wl + w] = wavelengths[w]
        lv = linv[cur]
        av = alpha[cur]
        for q in range(n_out):
            zrow[q] = 0.0
            explained[q] = 0.0
        for p in range(n):
            coefficient = av[p] * weight[p]
            for q in range(n_out):
                dt = (pt[p] - grid_t[q]) / ell
                dwl = (pwl[p] - grid_wl[q]) / WAVELENGTH_SCALE
                r = np.sqrt(dt * dt + dwl * dwl)
                k = amp * (1.0 + SQRT3 * r) * np.exp(-SQRT3 * r)
                zrow[q] += coefficient * k  # posterior mean accumulates in zrow
                cross[p, q] = k * weight[p]
        for q in range(n_out):
            mean[b, q // n_wl, q % n_wl] = zrow[q]
        for k in range(n):
            for q in range(n_out):
                zrow[q] = 0.0
            for j in range(k + 1):
                a = lv[k, j]
                for q in range(n_out):
                    zrow[q] += a * cross[j, q]
            for q in range(n_out):
                explained[q] += zrow[q] * zrow[q]
        for q in range(n_out):
            variance = amp - explained[q]
            if variance < 0.0:
                variance = 0.0
            std[b, q // n_wl, q % n_wl] = np.sqrt(variance)


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


def _binned_inputs(t, wavelength, flux, flux_err, mask, valid, max_points):
    """Replace the real points of valid alerts longer than max_points by their binned points."""
    counts = mask.sum(axis=1)
    long_rows = np.flatnonzero(valid & (counts > max_points))
    if long_rows.size == 0:
        return t, wavelength, flux, flux_err, mask
    t, wavelength, flux, flux_err, mask = (a.copy() for a in (t, wavelength, flux, flux_err, mask))
    for row in long_rows:
        real = mask[row]
        columns = gp.bin_light_curve(t[row, real], wavelength[row, real], flux[row, real],
                                     flux_err[row, real], max_points=max_points)
        size = columns[0].size
        for array, column in zip((t, wavelength, flux, flux_err), columns):
            array[row, :size] = column
        mask[row] = False
        mask[row, :size] = True
    return t, wavelength, flux, flux_err, mask


def fit_predict_full(
    t: np.ndarray, wavelength: np.ndarray, flux: np.ndarray, flux_err: np.ndarray, mask: np.ndarray,
    t_grid: np.ndarray, wavelengths: Sequence[float], max_points: int = gp.DEFAULT_MAX_POINTS,
) -> tuple[np.ndarray, ...]:
    """:func:`fit_predict` plus n_points (B,) (after binning) and iterations (B,) (Newton evaluations)."""
    t, wavelength, flux, flux_err = (np.asarray(a, dtype=np.float64) for a in (t, wavelength, flux, flux_err))
    mask = np.asarray(mask, dtype=bool)
    t_grid = np.ascontiguousarray(t_grid, dtype=np.float64)
    wavelengths = np.ascontiguousarray(wavelengths, dtype=np.float64).reshape(-1)
    n_alerts = t.shape[0]
    if t_grid.ndim != 2 or t_grid.shape[0] != n_alerts:
        raise ValueError(f"t_grid must be (B, G) with B = {n_alerts}, got {t_grid.shape}")
    valid = gp._valid_alerts(t, wavelength, flux, flux_err, mask)
    t, wavelength, flux, flux_err, mask = _binned_inputs(t, wavelength, flux, flux_err, mask, valid, max_points)
    amplitude = np.empty(n_alerts)
    time_scale = np.empty(n_alerts)
    log_likelihood = np.empty(n_alerts)
    n_points = np.zeros(n_alerts, dtype=np.int64)
    iterations = np.zeros(n_alerts, dtype=np.int64)
    mean = np.empty((n_alerts, t_grid.shape[1], wavelengths.size))
    std = np.empty_like(mean)
    if n_alerts:
        _fit_predict_all(
            np.ascontiguousarray(t), np.ascontiguousarray(wavelength), np.ascontiguousarray(flux),
            np.ascontiguousarray(flux_err), np.ascontiguousarray(mask), valid, t_grid, wavelengths,
            SCAN_LOG_TIME_SCALES, SCAN_LOG_AMPLITUDE_OFFSETS,
            amplitude, time_scale, log_likelihood, n_points, iterations, mean, std)
    return amplitude, time_scale, log_likelihood, mean, std, n_points, iterations


def fit_predict(
    t: np.ndarray, wavelength: np.ndarray, flux: np.ndarray, flux_err: np.ndarray, mask: np.ndarray,
    t_grid: np.ndarray, wavelengths: Sequence[float], max_points: int = gp.DEFAULT_MAX_POINTS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fit the GP of B alerts and predict it on a grid: ``gp.fit_batch`` + ``gp.predict_batch``.

    Inputs are padded (B,P) arrays (t in days, wavelength in Å, flux and flux_err in flux
    units, mask True for real points; padded values are ignored, NaN included), t_grid (B,G)
    in days and W wavelengths in Å. Returns amplitude A (B,) flux², time scale ℓ_t (B,) days,
    log likelihood (B,) nats of the (binned) points used, posterior mean and std (B,G,W) in
    flux units. Invalid or numerically failed alerts get NaN everywhere (same rule as gp).
    """
    return fit_predict_full(t, wavelength, flux, flux_err, mask, t_grid, wavelengths, max_points)[:5]
