"""Stage 4 — the model input tensor: GP means on a 100-step grid, g then r, scaled.

Grid: ``GRID_LENGTH`` times from the first to the last detection of each alert (days since
the first detection), as in training; the step is span/99 and varies per alert.

Scaling: the published t2 weights expect robust-scaled fluxes ((x − median) / IQR). The
training-time statistics were never published and astronet's own history contradicts
itself on whether they were applied (contract notes §4 bug 3, OPEN), while every ZTF
alert Fink ever scored was scaled per alert and per band. A per-alert statistic is also
the only choice that is invariant to the survey's flux scale (PLAsTiCC LSST vs ZTF
fluxes differ by the distance distribution and the zero points). So the published model
uses ``robust_per_alert_per_band``; a model trained here may declare ``robust_global``
with its own median/IQR in its metadata. The rule lives in the model metadata.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fink_t2.contract import GRID_LENGTH

SCALINGS = ("robust_per_alert_per_band", "robust_global", "none")


def time_grid(t: np.ndarray, mask: np.ndarray, length: int = GRID_LENGTH) -> np.ndarray:
    """(N, length) evenly spaced times from the first to the last real point, days."""
    t_max = np.where(mask, t, -np.inf).max(axis=1)
    t_max = np.where(np.isfinite(t_max), t_max, 0.0)
    return np.linspace(0.0, 1.0, length)[None, :] * t_max[:, None]


#: Smallest per-alert IQR, relative to the band's largest |flux|: a nearly flat GP mean
#: (IQR ~ 0) would otherwise be blown up to ~1e27 (2.5 % of full PLAsTiCC test curves).
MIN_RELATIVE_IQR = 1e-3


def robust_scale(x: np.ndarray, center: np.ndarray | None = None, iqr: np.ndarray | None = None) -> np.ndarray:
    """(x − median) / IQR along the time axis (axis 1) of (N, G, bands).

    Per-alert IQRs are floored at ``MIN_RELATIVE_IQR`` × max|x| of the band (1 when the band
    is all zeros). With ``center`` and ``iqr`` given (per band), apply those instead.
    """
    if center is None or iqr is None:
        q25, center, q75 = np.percentile(x, [25.0, 50.0, 75.0], axis=1, keepdims=True)
        floor = MIN_RELATIVE_IQR * np.abs(x).max(axis=1, keepdims=True)
        iqr = np.maximum(q75 - q25, floor)
    iqr = np.where(np.asarray(iqr) > 0, iqr, 1.0)
    return (x - center) / iqr


def scale_input(gp_mean: np.ndarray, scaling: str, stats: dict | None = None) -> np.ndarray:
    """Apply the metadata's scaling rule to (N, G, bands) GP means; returns float32."""
    if scaling == "robust_per_alert_per_band":
        out = robust_scale(gp_mean)
    elif scaling == "robust_global":
        if not stats:
            raise ValueError("robust_global scaling needs 'median' and 'iqr' in the model metadata")
        out = robust_scale(gp_mean, np.asarray(stats["median"]), np.asarray(stats["iqr"]))
    elif scaling == "none":
        out = gp_mean
    else:
        raise ValueError(f"unknown scaling {scaling!r}; expected one of {SCALINGS}")
    return np.ascontiguousarray(out, dtype=np.float32)


def band_wavelengths(bands: Sequence[str], wavelengths: dict[str, float]) -> list[float]:
    """Wavelengths (Å) of ``bands`` in tensor order."""
    return [wavelengths[b] for b in bands]
