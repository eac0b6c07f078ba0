"""Figures: training curves, confusion matrix, reliability diagram (matplotlib, Agg)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fink_t2.contract import CLASS_NAMES
from fink_t2.train import metrics


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curves(histories: dict[str, dict[str, list[float]]], out: Path, title: str = "t2 training") -> Path:
    """Loss, validation loss and learning rate per epoch, one line style per training stage."""
    plt = _pyplot()
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(11, 4))
    offset = 0
    for stage, hist in histories.items():
        epochs = offset + np.arange(1, len(hist.get("loss", [])) + 1)
        if len(epochs) == 0:
            continue
        ax_loss.plot(epochs, hist["loss"], label=f"{stage}: train")
        if "val_loss" in hist:
            ax_loss.plot(epochs, hist["val_loss"], "--", label=f"{stage}: validation")
        if "lr" in hist:
            ax_lr.semilogy(epochs, hist["lr"], label=stage)
        offset = epochs[-1]
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("class-weighted log-loss")
    ax_loss.legend(fontsize=8)
    ax_loss.grid(alpha=0.3)
    ax_lr.set_xlabel("epoch")
    ax_lr.set_ylabel("learning rate")
    ax_lr.legend(fontsize=8)
    ax_lr.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def confusion(y, p, out: Path, w=None, title: str = "confusion matrix") -> Path:
    """Row-normalised confusion matrix over the classes present (true or predicted)."""
    plt = _pyplot()
    cm = metrics.confusion_matrix(y, p, w=w)
    labels = np.flatnonzero((cm.sum(axis=0) > 0) | (cm.sum(axis=1) > 0))
    cm = cm[np.ix_(labels, labels)]
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    names = [CLASS_NAMES[i] for i in labels]
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(labels), 0.8 + 0.55 * len(labels)))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if cm[i, j] > 0:
                ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), [f"{n} ({rows[k, 0]:.0f})" for k, n in enumerate(names)], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (weight)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def reliability(y, curves: dict[str, np.ndarray], out: Path, w=None, title: str = "reliability") -> Path:
    """Reliability diagram (top-class confidence vs accuracy) for several probability sets."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], ":", color="grey")
    for name, p in curves.items():
        r = metrics.reliability(y, p, w)
        filled = r["mass"] > 0
        ax.plot(r["confidence"][filled], r["accuracy"][filled], "o-", ms=4,
                label=f"{name} (ECE {metrics.ece(y, p, w):.3f})")
    ax.set_xlabel("confidence (max probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def auc_by_age(report: dict, out: Path, title: str = "") -> Path:
    """SN Ia-vs-rest AUC per alert-age bin with 95 % CIs: the model and, if present, the baseline."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4), constrained_layout=True)
    series = [(report.get("model_id", "model"), report)] + ([("feature baseline", report["baseline"])]
                                                           if "baseline" in report else [])
    for offset, (label, r) in zip((-0.08, 0.08), series):
        names = list(r["snia_vs_rest_auc_by_age_days"])
        values = np.array([r["snia_vs_rest_auc_by_age_days"][k] for k in names])
        ci = np.array([r["ci95"]["snia_vs_rest_auc_by_age_days"][k] for k in names])
        x = np.arange(len(names)) + offset
        ax.errorbar(x, values, yerr=[values - ci[:, 0], ci[:, 1] - values], marker="o", capsize=3, label=label)
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xticks(range(len(names)), names)
    ax.set_xlabel("days since the first detection at the alert")
    ax.set_ylabel("SN Ia-vs-rest AUC (95 % CI)")
    ax.set_ylim(0.3, 1.0)
    ax.legend()
    ax.set_title(title, fontsize=9)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def snia_reliability(y, curves: dict, out: Path, w=None, title: str = "") -> Path:
    """Reliability of P(SNIa): mean P(SNIa) vs SN Ia fraction per bin, one line per curve."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5), constrained_layout=True)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    for label, p in curves.items():
        r = metrics.snia_reliability(y, p, w)
        ok = r["mass"] > 0
        ax.plot(r["mean_p"][ok], r["fraction"][ok], marker="o",
                label=f"{label} (snia_ece {metrics.snia_ece(y, p, w):.3f})")
    ax.set_xlabel("mean P(SNIa) in bin")
    ax.set_ylabel("fraction of SN Ia")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
