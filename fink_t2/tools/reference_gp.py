"""Per-alert reference Gaussian-process fit: the deployed t2 recipe, one scipy fit per alert.

This is the slow, obviously-correct path that :mod:`fink_t2.science.gp` (batched) is tested and
benchmarked against. Model (t2-model-contract.md §3.4):

* inputs ``x = (t, λ)`` with ``t`` in days and ``λ`` in Å, targets the fluxes ``F`` (flux units,
  SNANA zero point 27.5) with per-point noise ``σ_F``; zero mean, no extra white noise;
* kernel ``A·(1 + √3 r)·exp(−√3 r)`` with ``r² = Δt²/ℓ_t² + Δλ²/ℓ_λ²`` and ``ℓ_λ`` fixed;
* free parameters ``(ln A, ln ℓ_t²)``, started at ``(ln(0.25 s²), ln 20²)`` where ``s`` is ``|F|``
  of the highest-S/N point, bounded by ``ln A ± 10`` around the start and ``ℓ_t ∈ [1, 1000]`` d;
* objective: negative log marginal likelihood with analytic gradient, scipy L-BFGS-B, tol 1e-6;
  a failed fit falls back to the start parameters (as astronet does).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.linalg
import scipy.optimize

from fink_t2.config import REPO_ROOT
from fink_t2.science.gp import LOG_2PI, SQRT3
from fink_t2.contract import (
    GP_LOG_AMPLITUDE_HALF_WIDTH,
    GP_TIME_SCALE_BOUNDS_DAYS,
    GP_TIME_SCALE_START_DAYS,
    GP_WAVELENGTH_SCALE_A,
)

#: Objective value used when the likelihood is not finite (astronet uses the same sentinel).
NON_FINITE_OBJECTIVE = 1e25


@dataclass(frozen=True)
class GPParams:
    """Hyper-parameters of one alert's GP and the log marginal likelihood they reach."""

    amplitude: float  # A, flux²
    time_scale: float  # ℓ_t, days
    log_likelihood: float  # ln p(F | A, ℓ_t), nats
    success: bool  # False when L-BFGS-B failed and the start parameters were kept


def reference_scale(flux: np.ndarray, flux_err: np.ndarray) -> float:
    """``s``: |flux| of the highest-S/N point, S/N = |F| / sqrt(σ_F² + (0.01·max F)²) (flux units)."""
    flux = np.asarray(flux, dtype=float)
    flux_err = np.asarray(flux_err, dtype=float)
    signal_to_noise = np.abs(flux) / np.sqrt(flux_err**2 + (0.01 * np.max(flux)) ** 2)
    return float(np.abs(flux[np.argmax(signal_to_noise)]))


def log_amplitude_bounds(flux: np.ndarray, flux_err: np.ndarray) -> tuple[float, float, float]:
    """Start, lower and upper bound of ln A (A in flux²)."""
    start = float(np.log(0.25) + 2.0 * np.log(reference_scale(flux, flux_err)))  # s² may underflow
    return start, start - GP_LOG_AMPLITUDE_HALF_WIDTH, start + GP_LOG_AMPLITUDE_HALF_WIDTH


def matern32_matrix(
    t1: np.ndarray, wl1: np.ndarray, t2: np.ndarray, wl2: np.ndarray,
    amplitude: float, time_scale: float,
) -> np.ndarray:
    """Kernel matrix ``A·Matérn-3/2`` between points (t1, wl1) and (t2, wl2); days, Å → flux²."""
    dt = np.subtract.outer(np.asarray(t1, float), np.asarray(t2, float)) / time_scale
    dwl = np.subtract.outer(np.asarray(wl1, float), np.asarray(wl2, float)) / GP_WAVELENGTH_SCALE_A
    r = np.sqrt(dt**2 + dwl**2)
    return amplitude * (1.0 + SQRT3 * r) * np.exp(-SQRT3 * r)


def _negative_log_likelihood_and_gradient(
    params: np.ndarray, t: np.ndarray, wl: np.ndarray, flux: np.ndarray, variance: np.ndarray,
) -> tuple[float, np.ndarray]:
    """NLL and its gradient w.r.t. (ln A, ln ℓ_t²) for one alert."""
    log_amplitude, log_time_scale_sq = params
    amplitude = np.exp(log_amplitude)
    dt_sq = np.subtract.outer(t, t) ** 2
    dwl_sq = (np.subtract.outer(wl, wl) / GP_WAVELENGTH_SCALE_A) ** 2
    inv_time_scale_sq = np.exp(-log_time_scale_sq)
    r = np.sqrt(dt_sq * inv_time_scale_sq + dwl_sq)
    decay = np.exp(-SQRT3 * r)
    kernel = amplitude * (1.0 + SQRT3 * r) * decay
    try:
        factor = scipy.linalg.cho_factor(kernel + np.diag(variance), lower=True)
    except (np.linalg.LinAlgError, ValueError):
        return NON_FINITE_OBJECTIVE, np.zeros(2)
    alpha = scipy.linalg.cho_solve(factor, flux)
    log_det = 2.0 * np.sum(np.log(np.diag(factor[0])))
    nll = 0.5 * (flux @ alpha + log_det + flux.size * LOG_2PI)
    if not np.isfinite(nll):
        return NON_FINITE_OBJECTIVE, np.zeros(2)
    # dK/dlnA = kernel; dK/dln ℓ² = 1.5·A·exp(−√3 r)·Δt²/ℓ².
    d_kernel_d_log_time_scale_sq = 1.5 * amplitude * decay * dt_sq * inv_time_scale_sq
    weight = scipy.linalg.cho_solve(factor, np.eye(flux.size)) - np.outer(alpha, alpha)
    gradient = 0.5 * np.array(
        [np.sum(weight * kernel), np.sum(weight * d_kernel_d_log_time_scale_sq)]
    )
    return float(nll), gradient


def log_marginal_likelihood(
    t: np.ndarray, wavelength: np.ndarray, flux: np.ndarray, flux_err: np.ndarray,
    amplitude: float, time_scale: float,
) -> float:
    """ln p(F | A, ℓ_t) of one alert (nats); t in days, wavelength in Å, A in flux², ℓ_t in days."""
    kernel = matern32_matrix(t, wavelength, t, wavelength, amplitude, time_scale)
    covariance = kernel + np.diag(np.asarray(flux_err, float) ** 2)
    factor = scipy.linalg.cho_factor(covariance, lower=True)
    flux = np.asarray(flux, float)
    alpha = scipy.linalg.cho_solve(factor, flux)
    log_det = 2.0 * np.sum(np.log(np.diag(factor[0])))
    return float(-0.5 * (flux @ alpha + log_det + flux.size * LOG_2PI))


def fit_reference(
    t: np.ndarray, wavelength: np.ndarray, flux: np.ndarray, flux_err: np.ndarray,
    fallback_to_start: bool = True,
) -> GPParams:
    """Fit (A, ℓ_t) of one alert with scipy L-BFGS-B, as the deployed astronet ``fit_2d_gp``.

    t in days, wavelength in Å, flux and flux_err in flux units. With ``fallback_to_start``
    a fit that scipy reports as failed keeps the start parameters (deployed behaviour);
    otherwise the last iterate is kept.
    """
    t, wavelength, flux, flux_err = (np.asarray(a, dtype=float) for a in (t, wavelength, flux, flux_err))
    log_amp_start, log_amp_low, log_amp_high = log_amplitude_bounds(flux, flux_err)
    low_days, high_days = GP_TIME_SCALE_BOUNDS_DAYS
    start = np.array([log_amp_start, 2.0 * np.log(GP_TIME_SCALE_START_DAYS)])
    bounds = [(log_amp_low, log_amp_high), (2.0 * np.log(low_days), 2.0 * np.log(high_days))]
    result = scipy.optimize.minimize(
        _negative_log_likelihood_and_gradient, start, args=(t, wavelength, flux, flux_err**2),
        jac=True, method="L-BFGS-B", bounds=bounds, tol=1e-6,
    )
    params = result.x if (result.success or not fallback_to_start) else start
    amplitude, time_scale = float(np.exp(params[0])), float(np.exp(0.5 * params[1]))
    log_likelihood = log_marginal_likelihood(t, wavelength, flux, flux_err, amplitude, time_scale)
    return GPParams(amplitude, time_scale, log_likelihood, bool(result.success))


def predict_reference(
    t: np.ndarray, wavelength: np.ndarray, flux: np.ndarray, flux_err: np.ndarray,
    params: GPParams, t_grid: np.ndarray, wavelengths: Sequence[float],
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and std (flux units), each (len(t_grid), len(wavelengths)), at days × Å."""
    t, wavelength, flux, flux_err = (np.asarray(a, dtype=float) for a in (t, wavelength, flux, flux_err))
    t_grid = np.asarray(t_grid, dtype=float)
    covariance = matern32_matrix(t, wavelength, t, wavelength, params.amplitude, params.time_scale)
    factor = scipy.linalg.cho_factor(covariance + np.diag(flux_err**2), lower=True)
    alpha = scipy.linalg.cho_solve(factor, flux)
    means, stds = [], []
    for wl in wavelengths:
        cross = matern32_matrix(
            t, wavelength, t_grid, np.full(t_grid.shape, float(wl)), params.amplitude, params.time_scale
        )
        solved = scipy.linalg.solve_triangular(factor[0], cross, lower=True)
        means.append(cross.T @ alpha)
        stds.append(np.sqrt(np.clip(params.amplitude - np.sum(solved**2, axis=0), 0.0, None)))
    return np.stack(means, axis=-1), np.stack(stds, axis=-1)


@dataclass(frozen=True)
class LightCurve:
    """One alert's g+r photometry: t (days since first detection), λ (Å), flux and σ_F (flux units)."""

    name: str
    t: np.ndarray
    wavelength: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray


def load_bts_light_curves(
    directory: Path, limit: int, max_days: float = 90.0, min_points_per_band: int = 2,
) -> list[LightCurve]:
    """Read ANTARES ZTF-BTS light-curve CSVs (ant_mjd, ant_passband, ant_mag, ant_magerr).

    Keeps g and r (``R`` in these files), converts magnitudes to SNANA fluxes
    (F = 10^(−0.4(m − 27.5)), σ_F = 0.4·ln10·F·σ_m), truncates to ``max_days`` after the first
    detection and keeps the first ``limit`` files (sorted by name) with at least
    ``min_points_per_band`` points in each band.
    """
    import csv

    from fink_t2.contract import ZERO_POINT, ZTF_WAVELENGTH_A

    curves: list[LightCurve] = []
    for path in sorted(Path(directory).glob("*.csv")):
        with path.open(newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if row["ant_passband"].lower() in ("g", "r")]
        if not rows:
            continue
        mjd = np.array([float(row["ant_mjd"]) for row in rows])
        band = np.array([row["ant_passband"].lower() for row in rows])
        mag = np.array([float(row["ant_mag"]) for row in rows])
        mag_err = np.array([float(row["ant_magerr"]) for row in rows])
        order = np.argsort(mjd, kind="stable")
        mjd, band, mag, mag_err = mjd[order], band[order], mag[order], mag_err[order]
        keep = (mjd - mjd[0] <= max_days) & np.isfinite(mag) & np.isfinite(mag_err)
        mjd, band, mag, mag_err = mjd[keep], band[keep], mag[keep], mag_err[keep]
        if min(np.sum(band == "g"), np.sum(band == "r")) < min_points_per_band:
            continue
        flux = 10.0 ** (-0.4 * (mag - ZERO_POINT))
        wavelength = np.array([ZTF_WAVELENGTH_A[b] for b in band])
        curves.append(LightCurve(path.stem, mjd - mjd[0], wavelength, flux, 0.4 * np.log(10.0) * flux * mag_err))
        if len(curves) >= limit:
            break
    return curves


def _fit_predict_george(curve: LightCurve, t_grid: np.ndarray, wavelengths: Sequence[float]) -> np.ndarray:
    """The deployed astronet recipe with george (timing comparison only; george is optional)."""
    import george  # noqa: PLC0415 - optional dependency

    log_amp_start, log_amp_low, log_amp_high = log_amplitude_bounds(curve.flux, curve.flux_err)
    kernel = np.exp(log_amp_start) * george.kernels.Matern32Kernel(
        [GP_TIME_SCALE_START_DAYS**2, GP_WAVELENGTH_SCALE_A**2], ndim=2)
    kernel.freeze_parameter("k2:metric:log_M_1_1")
    gp = george.GP(kernel)
    x = np.column_stack([curve.t, curve.wavelength])
    gp.compute(x, curve.flux_err)

    def objective(p: np.ndarray) -> float:
        gp.set_parameter_vector(p)
        value = -gp.log_likelihood(curve.flux)
        return value if np.isfinite(value) else NON_FINITE_OBJECTIVE

    def gradient(p: np.ndarray) -> np.ndarray:
        gp.set_parameter_vector(p)
        return -gp.grad_log_likelihood(curve.flux)

    start = gp.get_parameter_vector()
    bounds = [(log_amp_low, log_amp_high), (0.0, np.log(GP_TIME_SCALE_BOUNDS_DAYS[1] ** 2))]
    result = scipy.optimize.minimize(objective, start, jac=gradient, method="L-BFGS-B", bounds=bounds, tol=1e-6)
    gp.set_parameter_vector(result.x if result.success else start)
    grid = np.column_stack([np.tile(t_grid, len(wavelengths)), np.repeat(wavelengths, t_grid.size)])
    return gp.predict(curve.flux, grid, return_cov=False, return_var=False)


def benchmark_gp(n: int = 500, directory: Path | None = None, include_george: bool = True) -> dict[str, float]:
    """Per-alert wall time (ms, one BLAS thread) of fit + predict on n real ZTF-BTS light curves.

    Compares the per-alert scipy reference, the batched :mod:`fink_t2.science.gp` path and, when george
    is installed, the deployed george recipe. Also reports the batched fit's log-likelihood
    deficit against the reference (nats). Predictions are a 100-step grid × (g, r).
    """
    from threadpoolctl import threadpool_limits

    from fink_t2.science import gp as batched
    from fink_t2.contract import GRID_LENGTH, ZTF_WAVELENGTH_A

    directory = directory or REPO_ROOT.parent / "shared/data/labeled/ztf_bts_antares/light_curves"
    curves = load_bts_light_curves(directory, n)
    wavelengths = [ZTF_WAVELENGTH_A["g"], ZTF_WAVELENGTH_A["r"]]
    grids = [np.linspace(c.t.min(), c.t.max(), GRID_LENGTH) for c in curves]
    timings: dict[str, float] = {"n_alerts": float(len(curves))}
    with threadpool_limits(limits=1):
        start = time.perf_counter()
        reference = [fit_reference(c.t, c.wavelength, c.flux, c.flux_err) for c in curves]
        for c, p, grid in zip(curves, reference, grids):
            predict_reference(c.t, c.wavelength, c.flux, c.flux_err, p, grid, wavelengths)
        timings["reference_ms"] = (time.perf_counter() - start) / len(curves) * 1e3

        start = time.perf_counter()
        fit = batched.fit_ragged([c.t for c in curves], [c.wavelength for c in curves],
                                 [c.flux for c in curves], [c.flux_err for c in curves])
        batched.predict_batch(fit, np.stack(grids), wavelengths)
        timings["batched_ms"] = (time.perf_counter() - start) / len(curves) * 1e3

        if include_george:
            try:
                import george  # noqa: F401, PLC0415
            except ImportError:
                george = None
            if george is not None:
                start = time.perf_counter()
                for c, grid in zip(curves, grids):
                    _fit_predict_george(c, grid, wavelengths)
                timings["george_ms"] = (time.perf_counter() - start) / len(curves) * 1e3
    batched_ll = np.array([
        log_marginal_likelihood(c.t, c.wavelength, c.flux, c.flux_err, a, s)
        for c, a, s in zip(curves, fit.amplitude, fit.time_scale)
    ])
    deficit = np.array([p.log_likelihood for p in reference]) - batched_ll
    timings["speedup_vs_reference"] = timings["reference_ms"] / timings["batched_ms"]
    timings["ll_deficit_max_nats"] = float(np.nanmax(deficit))
    timings["ll_deficit_p99_nats"] = float(np.nanpercentile(deficit, 99))
    timings["frac_batched_ge_reference_minus_0.01"] = float(np.mean(deficit <= 0.01))
    return timings
