"""Training/evaluation data: PLAsTiCC and ZTF BTS light curves → model inputs, cached.

One preprocessing code path: the inference stages of :mod:`fink_t2.science.classify` (cuts, light
curves, batched GP, grid) are called here, never re-implemented.

* **Alert mode** (what the stream sees): each labelled light curve is cut into emulated alerts.
  An alert at a detection epoch ``t_a`` carries the g/r *detections* of the previous
  ``history_days`` (30 d = ZTF ``prv_candidates``) up to ``t_a``, with ``jdstarthist`` = the
  object's first detection; ``t_a`` is drawn among the detections within ``max_age_days`` (90 d)
  of that first detection, so every alert passes Fink's ``jd − jdstarthist ≤ 90 d`` cut. The
  alerts are assembled as an :class:`~fink_t2.alerts.batch.AlertBatch` (magnitudes; a negative flux
  becomes ``isdiffpos = f``) and go through :func:`~fink_t2.science.lightcurve.cut_reasons`,
  :func:`~fink_t2.science.lightcurve.build_light_curves` (``mag_to_flux``) and
  :func:`fink_t2.science.classify.run_gp` exactly as a live alert does.
* **Full mode** (the t2 paper's training set-up, for Table 1): every g/r epoch of the
  object between its first detection − 50 d and last detection + 50 d, forced photometry
  (signed fluxes) included, as astronet's ``__transient_trim``. Built directly as
  :class:`~fink_t2.science.lightcurve.LightCurves` and passed to the same ``run_gp``.

GP wavelengths are those of the survey that took the data: ZTF (``contract.ZTF_WAVELENGTH_A``)
for BTS, LSST g 4802 Å / r 6231 Å for PLAsTiCC (contract §3.4).

The cache stores the *unscaled* GP means (N, 100, 2), so one cache serves any scaling rule;
:func:`fink_t2.science.model_input.scale_input` is applied by the caller with the model's metadata.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from fink_t2.science import classify
from fink_t2.science import gp
from fink_t2.science import lightcurve
from fink_t2.science import model_input
from fink_t2.alerts.batch import AlertBatch
from fink_t2.contract import BANDS, ZERO_POINT, ZTF_WAVELENGTH_A
from fink_t2.science.lightcurve import BAND_FIDS, LightCurves, build_light_curves, cut_reasons, mag_to_flux
from fink_t2.science.model_input import band_wavelengths
from fink_t2.train.labels import PLASTICC_ID_TO_INDEX, bts_class_index
from fink_t2.train.metrics import AGE_BINS
from fink_t2.config import REPO_ROOT

log = logging.getLogger(__name__)

#: Git-ignored cache of preprocessed inputs (``/run/`` is in .gitignore).
CACHE_DIR = REPO_ROOT / "run" / "train_cache"
SHARED_LABELED = REPO_ROOT.parent / "shared" / "data" / "labeled"
PLASTICC_TRAIN_DIR = SHARED_LABELED / "plasticc_snmachine" / "train"
PLASTICC_TEST_DIR = SHARED_LABELED / "plasticc_snmachine" / "test_sniabcii"
BTS_DIR = SHARED_LABELED / "ztf_bts_antares"

#: LSST effective wavelengths (Å) of the bands used (contract §3.4).
PLASTICC_WAVELENGTH_A: dict[str, float] = {"g": 4802.0, "r": 6231.0}
#: PLAsTiCC passband id → model band index (1 = LSST g → 0, 2 = LSST r → 1).
PLASTICC_PASSBAND_TO_BAND: dict[int, int] = {1: 0, 2: 1}
#: ZTF BTS (ANTARES) passband → model band index (``R`` is ZTF r).
BTS_PASSBAND_TO_BAND: dict[str, int] = {"g": 0, "R": 1, "r": 1}
MJD_TO_JD = 2400000.5
#: BTS ``peakt`` is JD − 2458000.
BTS_PEAKT_OFFSET_JD = 2458000.0
#: BTS detections kept relative to the BTS peak (days): drops host/AGN activity years away.
BTS_PHASE_WINDOW = (-100.0, 300.0)
HISTORY_DAYS = 30.0  # ZTF prv_candidates carry 30 days of history
MAX_AGE_DAYS = lightcurve.MAX_AGE_DAYS  # Fink's jd − jdstarthist cut, days
FULL_MARGIN_DAYS = 50.0  # astronet trim: first detection − 50 d … last detection + 50 d
VAL_FRACTION = 0.25
SPLIT_SEED = 42
GP_STEP = 256  # alerts per GP call (progress granularity)
#: Bump when the data preparation here changes meaning (invalidates the cache).
PREPARE_VERSION = 3


@dataclass
class Photometry:
    """Ragged g/r photometry of labelled objects, time-sorted per object.

    Object ``i`` owns rows ``offsets[i]:offsets[i+1]``. Flux in SNANA units (zero point 27.5),
    ``band`` indexes ``contract.BANDS``; ``detected`` marks difference-image detections (all
    True for alert photometry).
    """

    survey: str  # "plasticc" (LSST wavelengths) or "ztf"
    object_id: np.ndarray  # (n,) str
    label: np.ndarray  # (n,) int64 class index, −1 = not in the t2 classes
    offsets: np.ndarray  # (n+1,) int64
    mjd: np.ndarray
    band: np.ndarray  # int8
    flux: np.ndarray
    flux_err: np.ndarray
    detected: np.ndarray  # bool
    #: (n, 2) MJD of the first and last detection in *any* band (PLAsTiCC: u…y), None = g/r only
    detection_window: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.object_id)

    @property
    def wavelengths(self) -> list[float]:
        table = PLASTICC_WAVELENGTH_A if self.survey == "plasticc" else ZTF_WAVELENGTH_A
        return band_wavelengths(BANDS, table)

    def rows(self, i: int) -> slice:
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def subset(self, keep: np.ndarray) -> "Photometry":
        """The objects selected by a boolean mask or index array (order kept)."""
        index = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep, dtype=np.int64)
        counts = np.diff(self.offsets)[index]
        points = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in index]) if len(index) else np.array([], int)
        return Photometry(
            self.survey, self.object_id[index], self.label[index], np.concatenate(([0], np.cumsum(counts))),
            self.mjd[points], self.band[points], self.flux[points], self.flux_err[points], self.detected[points],
            None if self.detection_window is None else self.detection_window[index],
        )


def _from_frame(survey: str, frame: pd.DataFrame, labels: dict) -> Photometry:
    """Photometry from a long table (object_id, mjd, band, flux, flux_err, detected)."""
    frame = frame.sort_values(["object_id", "mjd", "band"], kind="stable")
    frame = frame.drop_duplicates(["object_id", "mjd", "band"])
    ids, starts = np.unique(frame["object_id"].to_numpy(), return_index=True)
    offsets = np.append(starts, len(frame)).astype(np.int64)
    return Photometry(
        survey=survey,
        object_id=ids.astype(str).astype(object),
        label=np.array([labels.get(i, -1) for i in ids], dtype=np.int64),
        offsets=offsets,
        mjd=frame["mjd"].to_numpy(np.float64),
        band=frame["band"].to_numpy(np.int8),
        flux=frame["flux"].to_numpy(np.float64),
        flux_err=frame["flux_err"].to_numpy(np.float64),
        detected=frame["detected"].to_numpy(bool),
    )


# ----------------------------------------------------------------------------------------------
# Readers
# ----------------------------------------------------------------------------------------------


def read_plasticc(directory: str | Path, max_objects: int | None = None, seed: int = 0, split: str = "all"
                  ) -> Photometry:
    """PLAsTiCC light curves (``*lightcurves*.csv[.gz]``) and truth (``*metadata*.csv``), g/r only.

    Labels from ``true_target`` (the test file's ``target`` is blinded) else ``target``; class
    99 and unknown ids get −1. ``split`` keeps the ``train`` or ``val`` objects of
    :func:`split_of` (as for BTS); ``max_objects`` keeps a seeded random subset (tests).
    """
    directory = Path(directory)
    meta_files = sorted(directory.glob("*metadata*.csv"))
    lc_files = sorted(p for p in directory.glob("*lightcurves*.csv*"))
    if not meta_files or not lc_files:
        raise FileNotFoundError(f"{directory}: expected *metadata*.csv and *lightcurves*.csv[.gz] files")
    meta = pd.read_csv(meta_files[0], skipinitialspace=True)
    target = meta["true_target"] if "true_target" in meta else meta["target"]
    labels = {int(o): PLASTICC_ID_TO_INDEX.get(int(t), -1) for o, t in zip(meta["object_id"], target)}
    ids = meta["object_id"].to_numpy()
    if split != "all":
        ids = ids[split_of(ids) == split]
    wanted = None if split == "all" else set(ids.tolist())
    if max_objects is not None and max_objects < len(ids):
        wanted = set(np.random.default_rng(seed).choice(ids, max_objects, replace=False).tolist())
    parts, windows = [], []
    for path in lc_files:
        part = pd.read_csv(path, dtype={"object_id": np.int64, "passband": np.int8})
        if wanted is not None:
            part = part[part["object_id"].isin(wanted)]
        windows.append(part.loc[part["detected_bool"] == 1].groupby("object_id")["mjd"].agg(["min", "max"]))
        parts.append(part[part["passband"].isin(list(PLASTICC_PASSBAND_TO_BAND))])
    frame = pd.concat(parts, ignore_index=True)
    window = pd.concat(windows)
    frame = pd.DataFrame({
        "object_id": frame["object_id"], "mjd": frame["mjd"],
        "band": frame["passband"].map(PLASTICC_PASSBAND_TO_BAND).astype(np.int8),
        "flux": frame["flux"], "flux_err": frame["flux_err"], "detected": frame["detected_bool"].astype(bool),
    })
    phot = _from_frame("plasticc", frame, labels)
    phot.detection_window = window.reindex(phot.object_id.astype(np.int64)).to_numpy(np.float64)
    return phot


def read_bts(directory: str | Path, split: str = "all", seed: int = SPLIT_SEED,
             val_fraction: float = VAL_FRACTION, labelled_only: bool = True) -> Photometry:
    """ZTF BTS alert photometry in the ``ztf_bts_antares`` layout (``labels.csv`` + ``light_curves/``).

    Detections only; magnitudes → SNANA flux with :func:`fink_t2.science.lightcurve.mag_to_flux`;
    duplicates (object, MJD, band) dropped; only detections within ``BTS_PHASE_WINDOW`` of the
    BTS peak are kept. ``split``: ``all``, ``train`` or ``val`` (see :func:`split_of`).
    """
    directory = Path(directory)
    labels = pd.read_csv(directory / "labels.csv")
    labels = labels.assign(label=[bts_class_index(t) for t in labels["type"]])
    if labelled_only:
        labels = labels[labels["label"] >= 0]
    if split != "all":
        labels = labels[split_of(labels["ZTFID"].to_numpy(), seed, val_fraction) == split]
    frames = []
    peaks = labels["peakt"] if "peakt" in labels else np.full(len(labels), np.nan)  # no peak: no phase cut
    for ztfid, peakt in zip(labels["ZTFID"], peaks):
        path = directory / "light_curves" / f"{ztfid}.csv"
        if not path.is_file():
            continue
        lc = pd.read_csv(path)
        band = lc["ant_passband"].map(BTS_PASSBAND_TO_BAND)
        ok = band.notna() & np.isfinite(lc["ant_mag"]) & np.isfinite(lc["ant_magerr"]) & (lc["ant_magerr"] > 0)
        if np.isfinite(peakt):
            phase = lc["ant_mjd"] + MJD_TO_JD - (peakt + BTS_PEAKT_OFFSET_JD)
            ok &= (phase >= BTS_PHASE_WINDOW[0]) & (phase <= BTS_PHASE_WINDOW[1])
        lc, band = lc[ok], band[ok]
        flux, flux_err = mag_to_flux(lc["ant_mag"].to_numpy(np.float64), lc["ant_magerr"].to_numpy(np.float64))
        frames.append(pd.DataFrame({"object_id": ztfid, "mjd": lc["ant_mjd"].to_numpy(np.float64),
                                    "band": band.to_numpy(np.int8), "flux": flux, "flux_err": flux_err,
                                    "detected": True}))
    columns = ["object_id", "mjd", "band", "flux", "flux_err", "detected"]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return _from_frame("ztf", frame, dict(zip(labels["ZTFID"], labels["label"])))


def split_of(object_ids, seed: int = SPLIT_SEED, val_fraction: float = VAL_FRACTION) -> np.ndarray:
    """'train' or 'val' per object, from a seeded hash of its id (stable under subsetting)."""
    def unit(oid) -> float:
        return int(hashlib.sha256(f"{seed}:{oid}".encode()).hexdigest()[:12], 16) / 16**12
    return np.array(["val" if unit(o) < val_fraction else "train" for o in object_ids], dtype=object)


AUGMENT_DROP_FRACTION = 0.3  # cadence augmentation: each point dropped with this probability
AUGMENT_NOISE_SCALE = 1.0  # flux augmentation: re-drawn with this many σ_F of Gaussian noise


def augment_photometry(phot: Photometry, seed: int, drop_fraction: float = AUGMENT_DROP_FRACTION,
                       noise_scale: float = AUGMENT_NOISE_SCALE) -> Photometry:
    """Cadence and noise augmentation: drop points at random, add N(0, (noise_scale·σ_F)²) to the flux.

    The first detection of each object is always kept (it defines ``jdstarthist`` and the age).
    """
    rng = np.random.default_rng(seed)
    keep = rng.random(len(phot.mjd)) >= drop_fraction
    keep[phot.offsets[:-1][np.diff(phot.offsets) > 0]] = True
    flux = phot.flux + rng.normal(0.0, 1.0, len(phot.flux)) * phot.flux_err * noise_scale
    owner = np.repeat(np.arange(len(phot)), np.diff(phot.offsets))
    counts = np.bincount(owner[keep], minlength=len(phot))
    return Photometry(phot.survey, phot.object_id, phot.label, np.concatenate(([0], np.cumsum(counts))),
                      phot.mjd[keep], phot.band[keep], flux[keep], phot.flux_err[keep], phot.detected[keep],
                      phot.detection_window)


# ----------------------------------------------------------------------------------------------
# Alert-time emulation
# ----------------------------------------------------------------------------------------------


@dataclass
class Alerts:
    """Emulated alerts: object row in the Photometry and alert time (MJD)."""

    row: np.ndarray  # (A,) int64
    mjd: np.ndarray  # (A,) float64


def _eligible_epochs(mjd, band, history_days, max_age_days) -> np.ndarray:
    """Indices of detections that can be an alert epoch passing the t2 cuts."""
    if mjd.size == 0:
        return np.array([], dtype=int)
    first = mjd[0]
    ok = []
    for j in np.flatnonzero(mjd - first <= max_age_days):
        window = (mjd >= mjd[j] - history_days) & (mjd <= mjd[j])
        counts = np.bincount(band[window], minlength=len(BANDS))
        if np.all(counts >= lightcurve.MIN_POINTS_PER_BAND):
            ok.append(j)
    return np.asarray(ok, dtype=int)


def sample_alerts(phot: Photometry, per_object: int, seed: int, history_days: float = HISTORY_DAYS,
                  max_age_days: float = MAX_AGE_DAYS) -> Alerts:
    """Up to ``per_object`` distinct alert epochs per object, drawn uniformly among eligible ones.

    Eligible: a detection within ``max_age_days`` of the object's first detection whose
    ``history_days`` window holds ≥ 2 g and ≥ 2 r detections (the t2 cuts). Objects with none
    are skipped.
    """
    rng = np.random.default_rng(seed)
    rows, times = [], []
    for i in range(len(phot)):
        part = phot.rows(i)
        det = phot.detected[part]
        mjd, band = phot.mjd[part][det], phot.band[part][det]
        epochs = np.unique(mjd[_eligible_epochs(mjd, band, history_days, max_age_days)])
        if epochs.size == 0:
            continue
        chosen = np.sort(rng.choice(epochs, size=min(per_object, epochs.size), replace=False))
        rows.extend([i] * chosen.size)
        times.extend(chosen.tolist())
    return Alerts(np.asarray(rows, dtype=np.int64), np.asarray(times, dtype=np.float64))


def alert_batch(phot: Photometry, alerts: Alerts, history_days: float = HISTORY_DAYS) -> AlertBatch:
    """The emulated alerts as an :class:`AlertBatch` (what the decoder would have produced).

    History = detections in [t_a − history_days, t_a]; the candidate is the last point;
    ``jdstarthist`` = the object's first detection; rb 1, nbad 0, no solar-system match.
    Flux → magnitude with |F| (``isdiffpos = f`` when F < 0), the inverse of ``mag_to_flux``.
    """
    band_fid = np.asarray(BAND_FIDS, dtype=np.int64)
    offsets = [0]
    cols: dict[str, list] = {"jd": [], "fid": [], "mag": [], "magerr": [], "neg": []}
    jdstart, cand_fid = [], []
    for row, t_alert in zip(alerts.row, alerts.mjd):
        part = phot.rows(int(row))
        det = phot.detected[part]
        mjd, band = phot.mjd[part][det], phot.band[part][det]
        flux, flux_err = phot.flux[part][det], phot.flux_err[part][det]
        take = (mjd >= t_alert - history_days) & (mjd <= t_alert)
        absflux = np.abs(flux[take])
        cols["jd"].append(mjd[take] + MJD_TO_JD)
        cols["fid"].append(band_fid[band[take]])
        cols["mag"].append(ZERO_POINT - 2.5 * np.log10(absflux))
        cols["magerr"].append(flux_err[take] / (0.4 * np.log(10.0) * absflux))
        cols["neg"].append(flux[take] < 0)
        offsets.append(offsets[-1] + int(take.sum()))
        jdstart.append(mjd[0] + MJD_TO_JD)
        cand_fid.append(int(band_fid[band[take][-1]]) if take.any() else -1)
    n = len(alerts.row)
    cat = {k: (np.concatenate(v) if v else np.array([])) for k, v in cols.items()}
    return AlertBatch(
        object_id=[str(phot.object_id[r]) for r in alerts.row],
        candid=np.arange(n, dtype=np.int64), error=[None] * n,
        jdstarthist=np.asarray(jdstart, dtype=np.float64), rb=np.ones(n), nbad=np.zeros(n),
        ssdistnr=np.full(n, -999.0), candidate_fid=np.asarray(cand_fid, dtype=np.int64),
        roid=None, cdsxmatch=None, offsets=np.asarray(offsets, dtype=np.int64),
        hist_jd=cat["jd"].astype(np.float64), hist_fid=cat["fid"].astype(np.int64),
        hist_mag=cat["mag"].astype(np.float64), hist_magerr=cat["magerr"].astype(np.float64),
        hist_negative=cat["neg"].astype(bool),
    )


@dataclass
class GPMeans:
    """GP means of light curves on the grids of both input contracts (flux units).

    ``span`` (N, 100, 2) on the first → last detection grid (``span_grid_v1``); ``window``
    (N, 100, 2) on the ``INPUT_WINDOW_DAYS`` grid ending at the alert (``window_asinh_v2``),
    whose times are ``model_input.window_grid(last_t)``; ``age`` (N,) days since jdstarthist.
    """

    span: np.ndarray
    window: np.ndarray
    last_t: np.ndarray
    age: np.ndarray

    def rows(self, keep) -> "GPMeans":
        return GPMeans(self.span[keep], self.window[keep], self.last_t[keep], self.age[keep])


def batch_gp_means(batch: AlertBatch, wavelengths: list[float], progress: bool = False
                   ) -> tuple[list[str], np.ndarray, GPMeans]:
    """Status per alert, and (index, GP means) of the classifiable ones: the stages of
    :func:`fink_t2.science.classify.run_stages` before the model (cuts → light curves → batched GP)."""
    status = [f"error:{e}" if e is not None else classify.STATUS_OK for e in batch.error]
    for i, reason in enumerate(cut_reasons(batch)):
        if reason is not None:
            status[i] = f"cut:{reason}"
    selected = np.array([i for i, s in enumerate(status) if s == classify.STATUS_OK], dtype=np.int64)
    lcs = build_light_curves(batch, selected)
    means = run_gp(lcs, wavelengths, progress)
    finite = np.isfinite(means.span).all(axis=(1, 2)) & np.isfinite(means.window).all(axis=(1, 2))
    for i in lcs.index[~finite]:
        status[i] = "error:gp_fit_failed"
    return status, lcs.index[finite], means.rows(finite)


def run_gp(lcs: LightCurves, wavelengths: list[float], progress: bool = False, desc: str = "GP") -> GPMeans:
    """GP means of ``lcs`` on both contract grids via :func:`fink_t2.science.classify.run_gp`.

    One fit per light curve, predicted on the two grids side by side, in steps of ``GP_STEP``.
    """
    from tqdm import tqdm

    span_grid = model_input.model_grid(model_input.SPAN_GRID, lcs.t, lcs.mask)
    window_grid = model_input.model_grid(model_input.WINDOW, lcs.t, lcs.mask)
    both = np.concatenate([span_grid, window_grid], axis=1)
    out = np.empty((len(lcs), both.shape[1], len(wavelengths)))
    with tqdm(total=len(lcs), desc=desc, unit="lc", disable=not progress, leave=False) as bar:
        for start in range(0, len(lcs), GP_STEP):
            part = slice(start, start + GP_STEP)
            out[part] = classify.run_gp(lcs.rows(part), wavelengths, both[part])[1]
            bar.update(len(out[part]))
    g = span_grid.shape[1]
    return GPMeans(out[:, :g], out[:, g:], window_grid[:, -1].copy(), lcs.age.astype(np.float64))


def full_light_curves(phot: Photometry, margin_days: float = FULL_MARGIN_DAYS) -> LightCurves:
    """Full-mode light curves (astronet trim, forced photometry kept), time since first point.

    The window is [first − margin, last + margin] over the detections in any band
    (``detection_window``; g/r detections when it is None). Objects without a detection get no
    points (``mask`` all False) and are dropped by the caller.
    """
    n = len(phot)
    kept: list[np.ndarray] = []
    for i in range(n):
        part = phot.rows(i)
        mjd, det = phot.mjd[part], phot.detected[part]
        if phot.detection_window is not None and np.all(np.isfinite(phot.detection_window[i])):
            first, last = phot.detection_window[i]
        elif det.any():
            first, last = mjd[det].min(), mjd[det].max()
        else:
            kept.append(np.array([], dtype=int))
            continue
        lo, hi = first - margin_days, last + margin_days
        kept.append(np.flatnonzero((mjd >= lo) & (mjd <= hi)) + part.start)
    width = max(max((k.size for k in kept), default=1), 1)
    out = LightCurves(index=np.arange(n), t=np.zeros((n, width)), band=np.zeros((n, width), np.int8),
                      flux=np.zeros((n, width)), flux_err=np.ones((n, width)), mask=np.zeros((n, width), bool),
                      age=np.zeros(n))
    for i, idx in enumerate(kept):
        m = idx.size
        if m == 0:
            continue
        out.t[i, :m] = phot.mjd[idx] - phot.mjd[idx[0]]
        out.band[i, :m] = phot.band[idx]
        out.flux[i, :m] = phot.flux[idx]
        out.flux_err[i, :m] = phot.flux_err[idx]
        out.mask[i, :m] = True
        out.age[i] = out.t[i, m - 1]
    return out


# ----------------------------------------------------------------------------------------------
# Prepared (cached) datasets
# ----------------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """Model inputs before scaling, one row per light curve / emulated alert."""

    gp_mean: np.ndarray  # (N, 100, 2) float32, flux units, span grid (span_grid_v1)
    window_mean: np.ndarray  # (N, 100, 2) float32, flux units, window grid (window_asinh_v2)
    last_t: np.ndarray  # (N,) days since the first detection of the history, at the alert
    age: np.ndarray  # (N,) days since the first detection ever (jdstarthist), at the alert
    label: np.ndarray  # (N,) int64
    object_id: np.ndarray  # (N,) str
    weight: np.ndarray  # (N,) 1 / (rows of the same object): each object counts once
    n_points: np.ndarray  # (N,) photometric points fed to the GP
    span: np.ndarray  # (N,) days covered by the light curve

    def __len__(self) -> int:
        return len(self.label)

    def subset(self, keep) -> "Prepared":
        return Prepared(**{f.name: getattr(self, f.name)[keep] for f in fields(self)})

    @property
    def n_objects(self) -> int:
        return int(len(np.unique(self.object_id)))

    @property
    def window_grid(self) -> np.ndarray:
        """(N, 100) times of ``window_mean``, days since the first detection of the history."""
        return model_input.window_grid(self.last_t)

    def inputs(self, scaling: str, stats: dict | None = None) -> np.ndarray:
        """(N, 100, 2) float32 ``span_grid_v1`` input with :func:`fink_t2.science.model_input.scale_input`."""
        return model_input.scale_input(self.gp_mean, scaling, stats)

    def model_inputs(self, meta: dict) -> np.ndarray:
        """The input tensor of the model whose metadata is ``meta`` (its contract and scaling)."""
        if model_input.contract_of(meta) == model_input.WINDOW:
            return model_input.window_input(self.window_mean, self.window_grid, self.age)
        return self.inputs(meta["scaling"], meta.get("scaling_stats"))

    @staticmethod
    def concat(parts: list["Prepared"]) -> "Prepared":
        return Prepared(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Prepared)})

    @staticmethod
    def build(means: GPMeans, label, object_id, n_points, span) -> "Prepared":
        object_id = np.asarray(object_id).astype(str)
        return Prepared(means.span.astype(np.float32), means.window.astype(np.float32), means.last_t, means.age,
                        np.asarray(label), object_id, _object_weights(object_id),
                        np.asarray(n_points).astype(np.int64), np.asarray(span).astype(np.float64))


def _object_weights(object_id: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(object_id, return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse]


def age_balanced_weights(object_id: np.ndarray, age: np.ndarray) -> np.ndarray:
    """Per-row weights summing to 1 per object, split equally over the ``metrics.AGE_BINS`` bins of
    alert ``age`` (days) the object has rows in, then equally over the rows of a bin; ages past the
    last bin join it."""
    edges = np.array([lo for _, lo, _ in AGE_BINS[1:]])
    age_bin = np.searchsorted(edges, np.asarray(age, dtype=np.float64), side="right")
    objects, obj = np.unique(np.asarray(object_id), return_inverse=True)
    cell = obj * len(AGE_BINS) + age_bin
    cells, cell_index, rows_in_cell = np.unique(cell, return_inverse=True, return_counts=True)
    bins_of_object = np.bincount(cells // len(AGE_BINS), minlength=len(objects))
    return 1.0 / (rows_in_cell[cell_index] * bins_of_object[obj])


def prepare_alerts(phot: Photometry, per_object: int, seed: int, history_days: float = HISTORY_DAYS,
                   max_age_days: float = MAX_AGE_DAYS, progress: bool = False) -> Prepared:
    """Emulated alerts of labelled objects → GP means through the inference stages."""
    phot = phot.subset(phot.label >= 0)
    alerts = sample_alerts(phot, per_object, seed, history_days, max_age_days)
    batch = alert_batch(phot, alerts, history_days)
    status, index, means = batch_gp_means(batch, phot.wavelengths, progress)
    bad = [s for s in status if s != classify.STATUS_OK]
    if bad:
        log.info("%d of %d emulated alerts not classifiable: %s", len(bad), len(status),
                 pd.Series(bad).value_counts().to_dict())
    rows = alerts.row[index]
    n_points = np.diff(batch.offsets)[index]
    first_jd = np.array([batch.hist_jd[batch.offsets[i]:batch.offsets[i + 1]].min() for i in index]) if len(index) else np.array([])
    span = alerts.mjd[index] + MJD_TO_JD - first_jd
    return Prepared.build(means, phot.label[rows], phot.object_id[rows], n_points, span)


def prepare_full(phot: Photometry, margin_days: float = FULL_MARGIN_DAYS, progress: bool = False) -> Prepared:
    """Full-mode light curves of labelled objects → GP means (same ``run_gp``)."""
    phot = phot.subset(phot.label >= 0)
    lcs = full_light_curves(phot, margin_days)
    usable = lcs.mask.any(axis=1)
    lcs = lcs.rows(usable)
    means = run_gp(lcs, phot.wavelengths, progress, desc="GP (full)")
    finite = np.isfinite(means.span).all(axis=(1, 2)) & np.isfinite(means.window).all(axis=(1, 2))
    rows = lcs.index[finite]
    span = np.where(lcs.mask, lcs.t, 0.0).max(axis=1)[finite]
    return Prepared.build(means.rows(finite), phot.label[rows], phot.object_id[rows],
                          lcs.mask.sum(axis=1)[finite], span)


def _code_fingerprint() -> str:
    """Hash of the shared preprocessing code, so a change there invalidates the cache."""
    digest = hashlib.sha256()
    for module in (gp, lightcurve, model_input, classify):
        digest.update(inspect.getsource(module).encode())
    digest.update(inspect.getsource(_eligible_epochs).encode())
    digest.update(inspect.getsource(alert_batch).encode())
    digest.update(inspect.getsource(full_light_curves).encode())
    return digest.hexdigest()[:16]


def _dir_fingerprint(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(directory)}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    return digest.hexdigest()[:16]


def prepare(source: str, directory: str | Path, mode: str = "alert", split: str = "all", seed: int = 0,
            per_object: int = 1, history_days: float = HISTORY_DAYS, max_objects: int | None = None,
            cache_dir: Path | None = None, progress: bool = False, augment_seed: int | None = None) -> Prepared:
    """:class:`Prepared` data of one source (``plasticc`` | ``bts``) and mode (``alert`` | ``full``).

    ``seed`` drives the alert-epoch draw; the BTS train/val split uses ``SPLIT_SEED`` (fixed).
    ``augment_seed`` applies :func:`augment_photometry` (training only) before the emulation.
    With ``cache_dir`` the result is cached there (training passes :data:`CACHE_DIR`); the file
    name hashes every parameter, the data folder (names, sizes, mtimes) and the source of the
    shared preprocessing code. ``None`` (the default, used by evaluation) caches nothing.
    """
    if source not in ("plasticc", "bts") or mode not in ("alert", "full"):
        raise ValueError(f"unknown source/mode {source!r}/{mode!r}")
    directory = Path(directory)
    params = dict(source=source, directory=str(directory.resolve()), mode=mode, split=split, seed=seed,
                  per_object=per_object, history_days=history_days, max_objects=max_objects,
                  version=PREPARE_VERSION, data=_dir_fingerprint(directory), code=_code_fingerprint(),
                  split_seed=SPLIT_SEED, val_fraction=VAL_FRACTION, phase=BTS_PHASE_WINDOW,
                  augment_seed=augment_seed, augment=(AUGMENT_DROP_FRACTION, AUGMENT_NOISE_SCALE))
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"{source}-{mode}-{split}-{key}.npz" if cache_dir is not None else None
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return Prepared(**{f.name: z[f.name] for f in fields(Prepared)})
    if source == "plasticc":
        phot = read_plasticc(directory, max_objects=max_objects, seed=seed, split=split)
    else:
        phot = read_bts(directory, split=split)
        if max_objects is not None and max_objects < len(phot):
            phot = phot.subset(np.sort(np.random.default_rng(seed).choice(len(phot), max_objects, replace=False)))
    if augment_seed is not None:
        phot = augment_photometry(phot, augment_seed)
    if mode == "alert":
        out = prepare_alerts(phot, per_object, seed, history_days, progress=progress)
    else:
        out = prepare_full(phot, progress=progress)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a per-process temporary name: two trainings preparing the same cache at once (one per
        # core) each rename a whole file; the second rename replaces identical content
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez_compressed(tmp, **{f.name: getattr(out, f.name) for f in fields(Prepared)})
        tmp.replace(path)
        tmp_json = path.with_name(f"{path.stem}.{os.getpid()}.tmp.json")
        tmp_json.write_text(json.dumps(params, indent=1))
        tmp_json.replace(path.with_suffix(".json"))
    return out
