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
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

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
    order = np.argsort(score, kind="mergesort")
    score, positive, w = score[order], positive[order], w[order]
    _, starts = np.unique(score, return_index=True)
    groups = np.split(np.arange(len(score)), starts[1:])
    below_neg = 0.0  # weight of negatives with a strictly lower score
    total = 0.0
    for g in groups:
        pos_w = w[g][positive[g]].sum()
        neg_w = w[g][~positive[g]].sum()
        total += pos_w * (below_neg + 0.5 * neg_w)
        below_neg += neg_w
    return float(total / (w[positive].sum() * w[~positive].sum()))


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
