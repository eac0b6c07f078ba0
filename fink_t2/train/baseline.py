"""The reference baseline of ``fink-t2 evaluate``: a feature-based classifier on the same alerts.

Features come from the same GP as the models (its mean on the ``window_asinh_v2`` grid: the
30 days ending at the alert, zero weight before the first detection), so the baseline sees
what any model input could show — and what the published input hides (colour, brightness,
time scale). Magnitudes are AB from the SNANA flux (fluxes floored at 1, i.e. mag 27.5).

A scikit-learn logistic regression (standardised features, multinomial over the classes
present in training, each object weighted once) is deliberately simple: a model that does not
beat it uses less of the light curve than a straight line does.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fink_t2.contract import BANDS, CLASS_NAMES, ZERO_POINT
from fink_t2.train.data import Prepared

#: feature names, in column order (days, mag, mag/day)
FEATURE_NAMES: tuple[str, ...] = (
    "peak_mag_g", "peak_mag_r", "colour_first", "colour_peak", "colour_last",
    "rise_g", "rise_r", "decline_g", "decline_r", "days_since_peak", "age", "span", "log_n_points",
)
MIN_FLUX = 1.0  # flux units: mag 27.5, keeps log10 finite
MIN_INTERVAL_DAYS = 0.5  # rise/decline rates over at least half a day


def _mag(flux: np.ndarray) -> np.ndarray:
    return ZERO_POINT - 2.5 * np.log10(np.maximum(flux, MIN_FLUX))


def features(prepared: Prepared) -> np.ndarray:
    """(N, len(FEATURE_NAMES)) float64 features of each alert (see module docstring)."""
    grid = prepared.window_grid
    seen = grid >= -1e-9
    flux = np.where(seen[..., None], prepared.window_mean.astype(np.float64), -np.inf)
    n = len(prepared)
    rows = np.arange(n)
    first = np.argmax(seen, axis=1)  # first grid step at or after the first detection
    last = np.full(n, grid.shape[1] - 1)
    peak = np.argmax(flux.sum(axis=2), axis=1)  # brightest total flux
    mags = _mag(np.where(np.isfinite(flux), flux, 0.0))  # (N, G, 2)
    g, r = BANDS.index("g"), BANDS.index("r")
    peak_mag = mags.min(axis=1, where=seen[..., None], initial=ZERO_POINT)  # (N, 2)
    t_first, t_peak, t_last = grid[rows, first], grid[rows, peak], grid[rows, last]
    rise = (mags[rows, first] - peak_mag) / np.maximum(t_peak - t_first, MIN_INTERVAL_DAYS)[:, None]
    decline = (mags[rows, last] - peak_mag) / np.maximum(t_last - t_peak, MIN_INTERVAL_DAYS)[:, None]
    colour = mags[..., g] - mags[..., r]
    columns = [peak_mag[:, g], peak_mag[:, r], colour[rows, first], colour[rows, peak], colour[rows, last],
               rise[:, g], rise[:, r], decline[:, g], decline[:, r], t_last - t_peak, prepared.age,
               prepared.span, np.log1p(prepared.n_points)]
    return np.column_stack(columns).astype(np.float64)


@dataclass
class FeatureBaseline:
    """Standardised features → multinomial logistic regression (scikit-learn)."""

    pipeline: object
    classes: np.ndarray  # class indices the regression knows, in its column order

    @staticmethod
    def fit(train: Prepared, c: float = 1.0, seed: int = 0) -> "FeatureBaseline":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000, random_state=seed))
        pipeline.fit(features(train), train.label, logisticregression__sample_weight=train.weight)
        return FeatureBaseline(pipeline, pipeline.classes_)

    def predict(self, prepared: Prepared) -> np.ndarray:
        """(N, 14) probabilities (zero for classes absent from the training alerts)."""
        out = np.zeros((len(prepared), len(CLASS_NAMES)))
        out[:, self.classes] = self.pipeline.predict_proba(features(prepared))
        return out
