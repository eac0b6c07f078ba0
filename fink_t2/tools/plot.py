"""``fink-t2 plot``: one alert's light curve, its GP interpolation and its t2 probabilities;
``fink-t2 consume --plot``: what a topic delivered (classes, P(SNIa))."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fink_t2.alerts.batch import records_to_batch
from fink_t2.science.classify import STATUS_OK, run_gp, run_stages
from fink_t2.contract import BANDS, CLASS_NAMES, ZTF_WAVELENGTH_A
from fink_t2.science.lightcurve import build_light_curves
from fink_t2.science.model import load_model
from fink_t2.science.model_input import band_wavelengths
from fink_t2.alerts.sources import InputError, iter_records

BAND_COLOURS = {"g": "#2ca02c", "r": "#d62728"}


def find_record(path: str, candid: int) -> dict:
    """The alert record with ``candid`` under ``path``; ``InputError`` if absent."""
    for item in iter_records([path]):
        if item.record is not None and item.record.get("candid") == candid:
            return item.record
    raise InputError(f"no alert with candid {candid} under {path}")


def plot_alert(path: str, candid: int, out: Path, model_path: str | None = None) -> None:
    """Write a PNG: detections and GP mean ± 1σ per band (left), class probabilities (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    record = find_record(path, candid)
    batch = records_to_batch([record])
    model = load_model(model_path)
    result = run_stages(batch, model)
    status = result.status[0]
    lcs = result.light_curves if len(result.light_curves) else build_light_curves(batch, np.array([0]))
    if len(result.light_curves):
        grid, mean, std = result.grid[0], result.gp_mean[0], result.gp_std[0]
    else:  # cut alerts are drawn too, with the same GP, but not classified
        grid, mean, std = (a[0] for a in run_gp(lcs, band_wavelengths(BANDS, ZTF_WAVELENGTH_A))) \
            if lcs.mask.sum() >= 2 else (None, None, None)

    fig, (ax_lc, ax_p) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1.6, 1]},
                                      constrained_layout=True)
    _draw_light_curve(ax_lc, lcs, grid, mean, std)
    _draw_probabilities(ax_p, result.probs[0] if status == STATUS_OK else None, status)
    jd0 = batch.hist_jd[batch.offsets[0]:batch.offsets[1]].min(initial=np.inf)
    fig.suptitle(f"{record.get('objectId')}   candid {candid}   t₀ = JD {jd0:.3f}   model {model.model_id}",
                 fontsize=11)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)


def _draw_light_curve(ax, lcs, grid, mean, std) -> None:
    for b, band in enumerate(BANDS):
        colour = BAND_COLOURS[band]
        sel = lcs.mask[0] & (lcs.band[0] == b)
        ax.errorbar(lcs.t[0][sel], lcs.flux[0][sel], yerr=lcs.flux_err[0][sel], fmt="o", color=colour, ms=5,
                    capsize=2, label=f"ZTF {band} detections ({ZTF_WAVELENGTH_A[band]:.0f} Å)")
        if mean is not None:
            ax.plot(grid, mean[:, b], color=colour, lw=1.6, label=f"GP mean ± 1σ, {band}")
            ax.fill_between(grid, mean[:, b] - std[:, b], mean[:, b] + std[:, b], color=colour, alpha=0.12, lw=0)
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.set_xlabel("days since first detection")
    ax.set_ylabel("difference flux (SNANA units, zp 27.5)")
    ax.set_title("light curve and 2-D GP (time × wavelength) on the model's 100-step grid", fontsize=10)
    ax.legend(fontsize=8, ncol=2, loc="best", framealpha=0.85)
    ax.grid(alpha=0.25)


def _draw_probabilities(ax, probs, status: str) -> None:
    if probs is None:
        ax.text(0.5, 0.5, f"not classified\n{status}", ha="center", va="center", fontsize=12,
                transform=ax.transAxes)
        ax.set_axis_off()
        return
    order = np.argsort(probs)
    colours = ["#4c72b0"] * len(order)
    colours[-1] = "#c44e52"
    ax.barh([CLASS_NAMES[i] for i in order], probs[order], color=colours)
    for y, i in enumerate(order):
        ax.text(probs[i] + 0.01, y, f"{probs[i]:.2f}", va="center", fontsize=8)
    ax.set_xlim(0, 1.08)
    ax.set_xlabel("t2 probability")
    ax.set_title(f"top class: {CLASS_NAMES[order[-1]]}  (P = {probs[order[-1]]:.2f})", fontsize=10)


def plot_consumed(fields: list[dict], out: Path, title: str) -> None:
    """Write a PNG of consumed alerts (``consume.Consumed.fields``): the number of ok alerts per
    t2 class (left) and the histogram of P(SNIa) over them (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [f for f in fields if f.get("t2_status") == "ok"]
    counts = [sum(f.get("t2_class") == name for f in ok) for name in CLASS_NAMES]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    left.barh(CLASS_NAMES, counts, color="#4c72b0")
    left.set_xlabel("ok alerts (argmax class)")
    right.hist([f["t2_snia"] for f in ok if f.get("t2_snia") is not None], bins=20, range=(0, 1), color="#dd8452")
    right.set_xlabel("P(SNIa)")
    right.set_ylabel("ok alerts")
    fig.suptitle(f"{title}: {len(fields)} alerts, {len(ok)} classified")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
