"""Evaluation metrics and temperature scaling (numpy/scipy only; no TensorFlow).

Every metric takes integer labels ``y`` (N,), probabilities ``p`` (N, C) and optional sample
weights ``w`` (N,) (e.g. 1/alerts-per-object so each object counts once).

* ``log_loss``: weighted mean of −ln p[y] (p clipped to [1e-15, 1 − 1e-15]).
* ``weighted_log_loss``: the t2 / PLAsTiCC class-balanced log-loss, mean over the classes
  *present* in ``y`` of each class's mean −ln p[y] (with all 14 classes present it equals the t2
  training loss on one batch holding the whole set).
* ``accuracy``; ``macro_f1`` over the classes present in ``y`` or predicted (sklearn's default).
* ``snia_vs_rest_auc``: ROC AUC of p[SNIa] for SN Ia vs every other class (ties count ½).
* ``ece``: expected calibration error of the top-class confidence, 15 equal-width bins.
* SN Ia detection (``snia_metrics``): ``snia_ece`` (calibration of P(SNIa) itself: |mean
  P(SNIa) − SN Ia fraction| over 10 bins of P(SNIa)), purity and completeness of the alerts with
  P(SNIa) ≥ 0.5, and the SN Ia-vs-rest AUC by alert age (days since the first detection).
* ``bootstrap_ci``: 95 % intervals by resampling *objects* with replacement.
"""
from __future__ import annotations

import numpy as np

from fink_t2.contract import CLASS_NAMES

EPS = 1e-15
ECE_BINS = 15
SNIA = CLASS_NAMES.index("SNIa")


def _weights(y: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=np.float64)
    return w / w.sum()


def log_loss(y, p, w=None) -> float:
    y, p = np.asarray(y), np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return float(-np.sum(_weights(y, w) * np.log(p[np.arange(len(y)), y])))


def per_class_log_loss(y, p, w=None) -> dict[int, float]:
    """Mean −ln p[y] of each class present in ``y``."""
    y, p = np.asarray(y), np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=np.float64)
    nll = -np.log(p[np.arange(len(y)), y])
    return {int(c): float(np.sum(w[y == c] * nll[y == c]) / np.sum(w[y == c])) for c in np.unique(y)}


def weighted_log_loss(y, p, w=None) -> float:
    return float(np.mean(list(per_class_log_loss(y, p, w).values())))


def accuracy(y, p, w=None) -> float:
    y = np.asarray(y)
    return float(np.sum(_weights(y, w) * (np.argmax(p, axis=1) == y)))


def confusion_matrix(y, p, n_classes: int = len(CLASS_NAMES), w=None) -> np.ndarray:
    """(true, predicted) summed weights (counts when unweighted)."""
    y = np.asarray(y)
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=np.float64)
    out = np.zeros((n_classes, n_classes))
    np.add.at(out, (y, np.argmax(p, axis=1)), w)
    return out


def macro_f1(y, p, w=None) -> float:
    cm = confusion_matrix(y, p, w=w)
    labels = np.flatnonzero((cm.sum(axis=0) > 0) | (cm.sum(axis=1) > 0))
    tp = np.diag(cm)[labels]
    denom = cm.sum(axis=0)[labels] + cm.sum(axis=1)[labels]
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(np.mean(f1))


def roc_auc(positive, score, w=None) -> float:
    """Weighted ROC AUC = P(score_pos > score_neg) + ½ P(tie); NaN without both classes."""
    positive = np.asarray(positive, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    w = np.ones(len(score)) if w is None else np.asarray(w, dtype=np.float64)
    if positive.all() or not positive.any():
        return float("nan")
    _, group = np.unique(score, return_inverse=True)  # tied scores share a group, groups ascending
    pos_w = np.bincount(group, w * positive)
    neg_w = np.bincount(group, w * ~positive)
    below_neg = np.cumsum(neg_w) - neg_w  # weight of negatives with a strictly lower score
    total = np.sum(pos_w * (below_neg + 0.5 * neg_w))
    denominator = pos_w.sum() * neg_w.sum()
    return float(total / denominator) if denominator > 0 else float("nan")


def snia_vs_rest_auc(y, p, w=None) -> float:
    return roc_auc(np.asarray(y) == SNIA, np.asarray(p)[:, SNIA], w)


def reliability(y, p, w=None, bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Per confidence bin: weight fraction, mean confidence, accuracy (NaN where empty)."""
    y = np.asarray(y)
    w = _weights(y, w)
    confidence = np.max(p, axis=1)
    correct = (np.argmax(p, axis=1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    mass = np.bincount(which, w, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(which, w * confidence, minlength=bins) / mass
        acc = np.bincount(which, w * correct, minlength=bins) / mass
    return {"edges": edges, "mass": mass, "confidence": conf, "accuracy": acc}


def ece(y, p, w=None, bins: int = ECE_BINS) -> float:
    r = reliability(y, p, w, bins)
    filled = r["mass"] > 0
    return float(np.sum(r["mass"][filled] * np.abs(r["accuracy"][filled] - r["confidence"][filled])))


def apply_temperature(p, temperature: float) -> np.ndarray:
    """p ∝ p^(1/T), rows renormalised (same rule as ``fink_t2.science.model._calibrate``)."""
    logp = np.log(np.clip(np.asarray(p, dtype=np.float64), 1e-30, None)) / temperature
    out = np.exp(logp - logp.max(axis=1, keepdims=True))
    return out / out.sum(axis=1, keepdims=True)


def fit_temperature(y, p, w=None, bounds=(0.05, 20.0)) -> float:
    """Temperature minimising the (weighted) log-loss of ``apply_temperature(p, T)``."""
    def objective(log_t: float) -> float:
        return log_loss(y, apply_temperature(p, float(np.exp(log_t))), w)

    from scipy.optimize import minimize_scalar  # here: scipy is optional, and the core CLI imports this module
    res = minimize_scalar(objective, bounds=tuple(np.log(bounds)), method="bounded", options={"xatol": 1e-5})
    return float(np.exp(res.x))


def summary(y, p, w=None) -> dict[str, float]:
    """All headline metrics (the evaluate JSON keys)."""
    return {
        "log_loss": log_loss(y, p, w),
        "weighted_log_loss": weighted_log_loss(y, p, w),
        "accuracy": accuracy(y, p, w),
        "macro_f1": macro_f1(y, p, w),
        "snia_vs_rest_auc": snia_vs_rest_auc(y, p, w),
        "ece": ece(y, p, w),
    }


#: Alert-age bins of ``snia_vs_rest_auc_by_age_days``: days since the first detection at the alert.
AGE_BINS: tuple[tuple[str, float, float], ...] = (
    ("0-3", 0.0, 3.0), ("3-7", 3.0, 7.0), ("7-14", 7.0, 14.0), ("14-30", 14.0, 30.0),
    ("30-60", 30.0, 60.0), ("60-90", 60.0, 90.0 + 1e-9),
)
SNIA_THRESHOLD = 0.5
SNIA_ECE_BINS = 10


def snia_ece(y, p, w=None, bins: int = SNIA_ECE_BINS) -> float:
    """Calibration error of P(SNIa): Σ_bins mass·|mean P(SNIa) − SN Ia fraction|."""
    y = np.asarray(y)
    w = _weights(y, w)
    score = np.asarray(p)[:, SNIA]
    which = np.clip((score * bins).astype(int), 0, bins - 1)
    mass = np.bincount(which, w, minlength=bins)
    filled = mass > 0
    mean_p = np.bincount(which, w * score, minlength=bins)[filled] / mass[filled]
    fraction = np.bincount(which, w * (y == SNIA), minlength=bins)[filled] / mass[filled]
    return float(np.sum(mass[filled] * np.abs(mean_p - fraction)))


def snia_reliability(y, p, w=None, bins: int = SNIA_ECE_BINS) -> dict[str, np.ndarray]:
    """Per P(SNIa) bin: weight fraction, mean P(SNIa), SN Ia fraction (NaN where empty)."""
    y = np.asarray(y)
    w = _weights(y, w)
    score = np.asarray(p)[:, SNIA]
    which = np.clip((score * bins).astype(int), 0, bins - 1)
    mass = np.bincount(which, w, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(which, w * score, minlength=bins) / mass
        fraction = np.bincount(which, w * (y == SNIA), minlength=bins) / mass
    return {"edges": np.linspace(0, 1, bins + 1), "mass": mass, "mean_p": mean_p, "fraction": fraction}


def snia_purity_completeness(y, p, w=None, threshold: float = SNIA_THRESHOLD) -> tuple[float, float]:
    """(purity, completeness) of the alerts with P(SNIa) ≥ threshold (NaN when undefined)."""
    y = np.asarray(y)
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=np.float64)
    chosen = np.asarray(p)[:, SNIA] >= threshold
    is_ia = y == SNIA
    selected, positives = w[chosen].sum(), w[is_ia].sum()
    purity = w[chosen & is_ia].sum() / selected if selected > 0 else float("nan")
    completeness = w[chosen & is_ia].sum() / positives if positives > 0 else float("nan")
    return float(purity), float(completeness)


def auc_by_age(y, p, age, w=None) -> dict[str, float]:
    """SN Ia-vs-rest AUC in each ``AGE_BINS`` bin of alert age (days); NaN where one class is absent."""
    y, p, age = np.asarray(y), np.asarray(p), np.asarray(age)
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=np.float64)
    out = {}
    for name, lo, hi in AGE_BINS:
        rows = (age >= lo) & (age < hi)
        out[name] = roc_auc(y[rows] == SNIA, p[rows, SNIA], w[rows]) if rows.any() else float("nan")
    return out


def snia_metrics(y, p, age, w=None) -> dict:
    """The SN Ia keys of ``evaluate`` (all floats, by-age AUC a dict keyed by age bin)."""
    purity, completeness = snia_purity_completeness(y, p, w)
    return {"snia_vs_rest_auc": snia_vs_rest_auc(y, p, w), "snia_vs_rest_auc_by_age_days": auc_by_age(y, p, age, w),
            f"snia_purity_at_{SNIA_THRESHOLD}": purity, f"snia_completeness_at_{SNIA_THRESHOLD}": completeness,
            "snia_ece": snia_ece(y, p, w), "accuracy": accuracy(y, p, w)}


def _flatten(d: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = float(v)
    return out


def _unflatten(flat: dict[str, object]) -> dict:
    out: dict = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def bootstrap_ci(statistic, object_id, n_resamples: int = 200, seed: int = 0, level: float = 0.95) -> dict:
    """Percentile CIs of every number ``statistic(row_weights)`` returns, resampling objects.

    ``statistic`` maps per-row weight multipliers (N,) — how many times each row's object was
    drawn — to a (nested) dict of floats. Returns the same nesting with ``[low, high]`` pairs.
    """
    _, inverse = np.unique(np.asarray(object_id), return_inverse=True)
    n_objects = inverse.max() + 1 if len(inverse) else 0
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_resamples):
        times = np.bincount(rng.integers(0, n_objects, n_objects), minlength=n_objects)
        draws.append(_flatten(statistic(times[inverse].astype(np.float64))))
    tail = (1 - level) / 2 * 100
    out = {}
    for key in draws[0]:
        values = np.array([d[key] for d in draws])
        values = values[np.isfinite(values)]
        out[key] = [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))] if values.size \
            else [float("nan"), float("nan")]
    return _unflatten(out)
