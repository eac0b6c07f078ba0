"""The reference path: what the deployed Fink t2 does per alert, for tests and the benchmark.

One scipy L-BFGS-B GP fit per alert (``reference_gp``, the deployed recipe), prediction on the
same 100-step grid, the same scaling, and one interpreter invoke per alert. It shares the
cuts and light curves with ``classify`` so that only the GP and the invocation differ.
"""
from __future__ import annotations

import numpy as np

from fink_t2.contract import BANDS, CLASS_NAMES, ZTF_WAVELENGTH_A
from fink_t2.tools.reference_gp import fit_reference, predict_reference
from fink_t2.science.lightcurve import LightCurves
from fink_t2.science.model import T2Model
from fink_t2.science.model_input import SPAN_GRID, band_wavelengths, build_input, contract_of, model_grid


def reference_gp_means(lcs: LightCurves, grid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-alert GP means (N, G, bands) on ``grid`` (default: the span grid), flux units, and
    log-likelihoods (N,), nats."""
    wavelengths = band_wavelengths(BANDS, ZTF_WAVELENGTH_A)
    grid = model_grid(SPAN_GRID, lcs.t, lcs.mask) if grid is None else grid
    means = np.full((len(lcs), grid.shape[1], len(wavelengths)), np.nan)
    log_likelihood = np.full(len(lcs), np.nan)
    point_wavelength = np.asarray(wavelengths)[lcs.band]
    for row in range(len(lcs)):
        m = lcs.mask[row]
        args = (lcs.t[row][m], point_wavelength[row][m], lcs.flux[row][m], lcs.flux_err[row][m])
        params = fit_reference(*args)
        means[row] = predict_reference(*args, params, grid[row], wavelengths)[0]
        log_likelihood[row] = params.log_likelihood
    return means, log_likelihood


def reference_probabilities(lcs: LightCurves, model: T2Model) -> np.ndarray:
    """(N, 14) probabilities with per-alert GP fits and one invoke per alert."""
    grid = model_grid(contract_of(model.meta), lcs.t, lcs.mask)
    means, _ = reference_gp_means(lcs, grid)
    x = build_input(model.meta, means, grid, lcs.age)
    probs = np.empty((len(lcs), len(CLASS_NAMES)))
    for row in range(len(lcs)):
        probs[row] = model.invoke(x[row:row + 1])[0]
    return probs / probs.sum(axis=1, keepdims=True)
