"""Stage 6 — ``classify``: alerts in, one t2 record per alert out.

The single code path used by the CLI, the Spark UDFs and the benchmark:
decode → cuts + light curves → batched GP → model input → model.

Output columns (``OUTPUT_COLUMNS``): the alert (``contract.ALERT_COLUMNS``: ``objectId``, ``candid``, and
the candidate's ``ra``, ``dec`` (deg), ``jd``, ``magpsf`` (AB mag), ``fid`` (1 g, 2 r, 3 i)), then
``t2_status`` (``ok``, ``cut:<reason>`` or ``error:<reason>``), ``t2_class`` (argmax class name),
``t2_probs`` (class name → probability, summing to 1), ``t2_snia`` (P(SNIa)), ``t2_model``.
Non-ok rows have null class, probabilities and P(SNIa); error rows null alert values but the id.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fink_t2.science import gp

try:
    from fink_t2.science import gp_compiled
except ImportError:  # numba missing: the numpy GP computes the same fits
    gp_compiled = None
from fink_t2.alerts.batch import AlertBatch
from fink_t2.alerts.decode import decode_payloads
from fink_t2.config import CutsConf
from fink_t2.contract import ALERT_COLUMNS, BANDS, CLASS_NAMES, ZTF_WAVELENGTH_A
from fink_t2.science.lightcurve import LightCurves, build_light_curves, cut_reasons
from fink_t2.science.model import T2Model, load_model
from fink_t2.science.model_input import band_wavelengths, build_input, contract_of, model_grid, time_grid

T2_COLUMNS: tuple[str, ...] = ("t2_status", "t2_class", "t2_probs", "t2_snia", "t2_model")
OUTPUT_COLUMNS: tuple[str, ...] = ALERT_COLUMNS + T2_COLUMNS
STATUS_OK = "ok"
GP_CHUNK = 1024  # alerts per GP call (bounds the (B, P, P) work arrays)


@dataclass
class Classified:
    """Per-alert results plus the intermediate arrays of the classified alerts.

    ``light_curves`` rows, ``grid`` (N, G) days, ``gp_mean``/``gp_std`` (N, G, bands)
    flux units and ``probs`` (N, 14) all follow ``light_curves.index``.
    """

    status: list[str]
    probs: np.ndarray
    light_curves: LightCurves
    grid: np.ndarray
    gp_mean: np.ndarray
    gp_std: np.ndarray


def run_gp(lcs: LightCurves, wavelengths: list[float], grid: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GP of padded light curves: grid (N, G) days, mean and std (N, G, bands) flux units.

    ``grid`` defaults to the span grid of the published contract (first → last detection).
    The compiled per-alert loop (``gp_compiled``, the algorithm of ``gp.fit_batch`` step by step,
    ~3× faster) when numba is importable, else the batched numpy ``gp``.
    """
    grid = time_grid(lcs.t, lcs.mask) if grid is None else grid
    means, stds = [], []
    point_wavelength = np.asarray(wavelengths)[lcs.band]
    for start in range(0, len(lcs), GP_CHUNK):
        part = slice(start, start + GP_CHUNK)
        args = (lcs.t[part], point_wavelength[part], lcs.flux[part], lcs.flux_err[part], lcs.mask[part])
        if gp_compiled is not None:
            mean, std = gp_compiled.fit_predict(*args, grid[part], wavelengths)[3:]
        else:
            mean, std = gp.predict_batch(gp.fit_batch(*args), grid[part], wavelengths)
        means.append(mean)
        stds.append(std)
    shape = (0, grid.shape[1], len(wavelengths))
    return grid, (np.concatenate(means) if means else np.empty(shape)), (np.concatenate(stds) if stds else np.empty(shape))


def run_stages(batch: AlertBatch, model: T2Model, cuts: CutsConf | None = None) -> Classified:
    """Cuts (``cuts``: the configurable ones' settings), light curves, GP, model input and inference."""
    status = [f"error:{e}" if e is not None else STATUS_OK for e in batch.error]
    for i, reason in enumerate(cut_reasons(batch, cuts)):
        if reason is not None:
            status[i] = f"cut:{reason}"
    selected = np.array([i for i, s in enumerate(status) if s == STATUS_OK], dtype=np.int64)
    lcs = build_light_curves(batch, selected)
    grid = model_grid(contract_of(model.meta), lcs.t, lcs.mask)
    grid, gp_mean, gp_std = run_gp(lcs, band_wavelengths(BANDS, ZTF_WAVELENGTH_A), grid)
    finite = np.isfinite(gp_mean).all(axis=(1, 2))
    for i in lcs.index[~finite]:
        status[i] = "error:gp_fit_failed"
    probs = np.full((len(lcs), len(CLASS_NAMES)), np.nan)
    if finite.any():
        probs[finite] = model.predict(build_input(model.meta, gp_mean[finite], grid[finite], lcs.age[finite]))
    return Classified(status, probs, lcs, grid, gp_mean, gp_std)


def to_records(batch: AlertBatch, result: Classified, model_id: str,
               class_names: tuple[str, ...] = CLASS_NAMES) -> pd.DataFrame:
    """The output table (``OUTPUT_COLUMNS``), one row per alert of the batch; ``class_names`` name
    the columns of ``result.probs`` (a classifier may have a subset of t2's; no SNIa: null P(SNIa))."""
    n = len(batch)
    snia = class_names.index("SNIa") if "SNIa" in class_names else None
    t2_class: list[str | None] = [None] * n
    t2_probs: list[dict[str, float] | None] = [None] * n
    t2_snia = np.full(n, np.nan)
    for row, i in enumerate(result.light_curves.index):
        if result.status[i] != STATUS_OK:
            continue
        p = result.probs[row]
        t2_class[i] = class_names[int(np.argmax(p))]
        t2_probs[i] = dict(zip(class_names, p.tolist()))
        t2_snia[i] = p[snia] if snia is not None else np.nan
    return pd.DataFrame({
        "objectId": batch.object_id,
        "candid": pd.array([c if c >= 0 else None for c in batch.candid.tolist()], dtype="Int64"),
        **{name: _nullable_floats(getattr(batch, name), n) for name in ("ra", "dec", "jd", "magpsf")},
        "fid": pd.array([f if f >= 0 else None for f in batch.candidate_fid.tolist()], dtype="Int64"),
        "t2_status": result.status,
        "t2_class": t2_class,
        "t2_probs": t2_probs,
        "t2_snia": _nullable_floats(t2_snia, n),
        "t2_model": model_id,
    }, columns=list(OUTPUT_COLUMNS))


def _nullable_floats(values: np.ndarray | None, n: int) -> pd.arrays.FloatingArray:
    """A batch column as nullable Float64 (NaN, or a column the batch lacks, → <NA>)."""
    if values is None:
        return pd.array([None] * n, dtype="Float64")
    return pd.array([None if np.isnan(v) else v for v in values.tolist()], dtype="Float64")


def classify_batch(batch: AlertBatch, model: T2Model | None = None, cuts: CutsConf | None = None) -> pd.DataFrame:
    """Classify a decoded ``AlertBatch``: one output row per alert, same order."""
    model = model or load_model()
    return to_records(batch, run_stages(batch, model, cuts), model.model_id)


def classify(payloads: Iterable[bytes | None], model: T2Model | None = None,
             cuts: CutsConf | None = None) -> pd.DataFrame:
    """Classify raw alert messages (Avro containers, one alert each): one row per payload."""
    return classify_batch(decode_payloads(payloads), model, cuts)
