"""The unlabelled g/r light-curve corpus for ASTROMER-style pretraining, cached as one npz.

Every g/r light curve of ``../shared/data`` becomes magnitudes (AB, difference-image PSF), one
ragged set of arrays sorted by (object, time):

* **PLAsTiCC** train and test (LSST g, r): flux → magnitude ``27.5 − 2.5 log10 F`` and
  ``σ_m = 2.5/ln10 · σ_F/F``, only where ``F/σ_F ≥ MIN_SNR`` (a positive, 3σ flux; the rest has no
  magnitude). :func:`flux_to_mag` is the one converter (the downstream tasks use it too).
* **ZTF BTS** (``ztf_bts_antares``, detections, ``R`` = r) through :func:`fink_t2.train.data.read_bts`
  (its phase window), **train split objects only**.
* **ALeRCE 30 SNe** (detections, positive subtractions), **BTS forced photometry** (``ampl_corr``
  with its zero point, ``MIN_SNR``), **Fink alert packets** and the alert histories of ``ztf/avro`` +
  ``ztf/parquet`` (candidate + ``prv_candidates`` detections with positive subtraction).

ZTF objects that the BTS validation split holds (:func:`fink_t2.train.data.split_of`, the split of the
science report and of the downstream tasks), or that the BTS tables list but whose light curves were
withheld from ``light_curves/``, are **excluded from every source**. A ZTF object found in several
sources (or alerts) keeps its longest light curve. Light curves with fewer than
``MIN_POINTS`` points are dropped. The pretraining validation hold-out is a seeded object-level hash
(:func:`holdout_of`), independent of the BTS split.
"""
from __future__ import annotations

import hashlib
import inspect
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fink_t2.alerts.batch import records_to_batch
from fink_t2.alerts.sources import iter_records
from fink_t2.contract import ASTROMER_BAND_INDEX, ZERO_POINT, ZTF_FID_TO_ASTROMER_BAND
from fink_t2.train import data

log = logging.getLogger(__name__)

SHARED_DATA = data.SHARED_LABELED.parent
PLASTICC_DIRS = (data.PLASTICC_TRAIN_DIR, data.PLASTICC_TEST_DIR)
ALERCE_DIR = data.SHARED_LABELED / "ztf_alerce_30sne"
FORCED_DIR = data.SHARED_LABELED / "ztf_bts_forcedphot_ztfparsnip"
ALERT_DIRS = (data.SHARED_LABELED / "ztf_fink_alert_packets", SHARED_DATA / "ztf" / "avro",
              SHARED_DATA / "ztf" / "parquet")
CACHE_FILE = data.REPO_ROOT / "run" / "pretrain" / "corpus.npz"

#: A flux point becomes a magnitude only at S/N ≥ this (positive flux, 3σ).
MIN_SNR = 3.0
#: Light curves with fewer points (g + r) are not used.
MIN_POINTS = 5
#: Pretraining validation hold-out: seeded object hash (not the BTS split seed), fraction of objects.
HOLDOUT_SEED = 20260
HOLDOUT_FRACTION = 0.05
#: 2.5 / ln 10: σ_m = MAG_PER_RELATIVE_FLUX · σ_F / F.
MAG_PER_RELATIVE_FLUX = 2.5 / np.log(10.0)
CORPUS_VERSION = 1


@dataclass
class Corpus:
    """Ragged light curves: points of curve ``i`` are ``[offsets[i]:offsets[i+1]]``, time ascending.

    ``mjd`` days, ``band`` encoder band index (``contract.ASTROMER_BAND_INDEX``), ``mag``/``magerr`` AB magnitudes.
    """

    object_id: np.ndarray  # (n,) str
    source: np.ndarray  # (n,) str
    offsets: np.ndarray  # (n+1,) int64
    mjd: np.ndarray  # float64
    band: np.ndarray  # int8
    mag: np.ndarray  # float32
    magerr: np.ndarray  # float32

    def __len__(self) -> int:
        return len(self.object_id)

    @property
    def n_points(self) -> np.ndarray:
        return np.diff(self.offsets)

    def subset(self, keep: np.ndarray) -> "Corpus":
        """The curves at ``keep`` (bool mask or indices), in that order."""
        idx = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep, dtype=np.int64)
        points = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in idx]) if len(idx) \
            else np.zeros(0, dtype=np.int64)
        return Corpus(self.object_id[idx], self.source[idx], np.concatenate(([0], np.cumsum(self.n_points[idx]))),
                      self.mjd[points], self.band[points], self.mag[points], self.magerr[points])

    def counts(self) -> dict[str, dict[str, int]]:
        """Light curves and points per source."""
        return {str(s): {"light_curves": int((self.source == s).sum()),
                         "points": int(self.n_points[self.source == s].sum())}
                for s in np.unique(self.source)}

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, object_id=self.object_id.astype(str), source=self.source.astype(str),
                            offsets=self.offsets, mjd=self.mjd, band=self.band, mag=self.mag, magerr=self.magerr,
                            fingerprint=np.array(fingerprint()))

    @staticmethod
    def load(path: Path) -> "Corpus":
        with np.load(path) as z:
            return Corpus(z["object_id"].astype(object), z["source"].astype(object), z["offsets"], z["mjd"],
                          z["band"], z["mag"], z["magerr"])


def flux_to_mag(flux: np.ndarray, flux_err: np.ndarray, zero_point: float | np.ndarray = ZERO_POINT,
                min_snr: float = MIN_SNR) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mag, magerr, kept): ``zp − 2.5 log10 F`` and ``2.5/ln10 · σ_F/F`` of the points with ``F/σ_F ≥ min_snr``."""
    flux = np.asarray(flux, dtype=np.float64)
    flux_err = np.asarray(flux_err, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        kept = np.isfinite(flux) & np.isfinite(flux_err) & (flux_err > 0) & (flux >= min_snr * flux_err)
    zp = np.broadcast_to(np.asarray(zero_point, dtype=np.float64), flux.shape)[kept]
    mag = zp - 2.5 * np.log10(flux[kept])
    return mag, MAG_PER_RELATIVE_FLUX * flux_err[kept] / flux[kept], kept


def _table(object_id, mjd, band, mag, magerr, source: str) -> pd.DataFrame:
    return pd.DataFrame({"object_id": np.asarray(object_id).astype(str), "mjd": np.asarray(mjd, dtype=np.float64),
                         "band": np.asarray(band, dtype=np.int8), "mag": np.asarray(mag, dtype=np.float64),
                         "magerr": np.asarray(magerr, dtype=np.float64), "source": source})


def _photometry_table(phot: data.Photometry, source: str, prefix: str = "") -> pd.DataFrame:
    """Magnitudes (S/N ≥ MIN_SNR) of a :class:`fink_t2.train.data.Photometry` (SNANA fluxes, zp 27.5)."""
    ids = np.repeat(phot.object_id.astype(str), np.diff(phot.offsets))
    mag, magerr, kept = flux_to_mag(phot.flux, phot.flux_err)
    return _table(np.char.add(prefix, ids[kept]), phot.mjd[kept], phot.band[kept], mag, magerr, source)


def read_plasticc_mags(directory: Path) -> pd.DataFrame:
    """PLAsTiCC g/r magnitudes of one folder (train or test); object ids prefixed ``plasticc:``."""
    return _photometry_table(data.read_plasticc(directory), f"plasticc_{Path(directory).name}", "plasticc:")


def read_bts_train_mags(directory: Path = data.BTS_DIR) -> pd.DataFrame:
    """BTS detections of the train-split objects (labelled or not), as ``read_bts`` prepares them."""
    return _photometry_table(data.read_bts(directory, split="train", labelled_only=False), "ztf_bts")


def read_alerce_mags(directory: Path = ALERCE_DIR) -> pd.DataFrame:
    """ALeRCE 30 SNe detections with a positive subtraction (``magpsf``, ``sigmapsf``)."""
    det = pd.read_csv(directory / "30_sne_detections_corr.csv",
                      usecols=["objectId", "mjd", "fid", "magpsf", "sigmapsf", "isdiffpos"])
    ok = det["fid"].isin(list(ZTF_FID_TO_ASTROMER_BAND)) & _positive_subtraction(det["isdiffpos"])
    det = det[ok]
    return _table(det["objectId"], det["mjd"], det["fid"].map(ZTF_FID_TO_ASTROMER_BAND), det["magpsf"], det["sigmapsf"],
                  "ztf_alerce")


def _positive_subtraction(isdiffpos: pd.Series) -> pd.Series:
    return ~isdiffpos.astype(str).str.lower().isin(["f", "0", "-1", "false"])


def read_forced_mags(directory: Path = FORCED_DIR) -> pd.DataFrame:
    """fpbot forced photometry: ``magzp − 2.5 log10 ampl_corr`` where ``ampl_corr/ampl_err_corr ≥ MIN_SNR``."""
    tables = []
    for path in sorted((directory / "light_curves").glob("*.csv")):
        lc = pd.read_csv(path, comment="#", usecols=["obsmjd", "filter", "magzp", "ampl_corr", "ampl_err_corr"])
        band = lc["filter"].str.replace(" ", "_").str.removeprefix("ZTF_").map(ASTROMER_BAND_INDEX)
        lc = lc[band.notna()]
        mag, magerr, kept = flux_to_mag(lc["ampl_corr"].to_numpy(), lc["ampl_err_corr"].to_numpy(),
                                        lc["magzp"].to_numpy())
        oid = path.name.split("_")[0]
        tables.append(_table([oid] * int(kept.sum()), lc["obsmjd"].to_numpy()[kept],
                             band[band.notna()].to_numpy()[kept], mag, magerr, "ztf_forced"))
    return pd.concat(tables, ignore_index=True)


def read_alert_history_mags(directories=ALERT_DIRS) -> pd.DataFrame:
    """Candidate + ``prv_candidates`` g/r detections (positive subtraction) of every alert; per objectId
    the alert with the longest history is kept. Unreadable inputs are logged and skipped."""
    records = []
    for directory in directories:
        for item in iter_records([directory]):
            if item.record is None:
                log.warning("%s: %s (skipped)", item.source, item.error)
                continue
            records.append(item.record)
    batch = records_to_batch(records)
    tables = []
    for i, oid in enumerate(batch.object_id):
        if batch.error[i] is not None or oid is None:
            continue
        s = slice(batch.offsets[i], batch.offsets[i + 1])
        ok = np.isin(batch.hist_fid[s], list(ZTF_FID_TO_ASTROMER_BAND)) & ~batch.hist_negative[s]
        ok &= np.isfinite(batch.hist_mag[s]) & np.isfinite(batch.hist_magerr[s])
        band = np.array([ZTF_FID_TO_ASTROMER_BAND.get(int(f), 0) for f in batch.hist_fid[s][ok]], dtype=np.int8)
        tables.append(_table([oid] * int(ok.sum()), batch.hist_jd[s][ok] - data.MJD_TO_JD, band,
                             batch.hist_mag[s][ok], batch.hist_magerr[s][ok], f"ztf_alerts:{i}"))
    frame = pd.concat(tables, ignore_index=True)
    return _longest_per_object(frame).assign(source="ztf_alerts")


def _longest_per_object(frame: pd.DataFrame) -> pd.DataFrame:
    """Per object_id, the rows of the (source) group with the most points; ties: first source."""
    sizes = frame.groupby(["object_id", "source"], sort=False).size().reset_index(name="n")
    best = sizes.sort_values("n", ascending=False, kind="stable").drop_duplicates("object_id")
    return frame.merge(best[["object_id", "source"]], on=["object_id", "source"])


def bts_excluded_ids(directory: Path = data.BTS_DIR) -> set[str]:
    """ZTF ids never pretrained on: the BTS val split, and BTS-table objects whose curves were withheld."""
    listed = set()
    for table in sorted(directory.glob("ZTF_BTS_*.csv")):
        listed |= set(pd.read_csv(table, usecols=["ZTFID"])["ZTFID"].astype(str))
    present = {p.stem for p in (directory / "light_curves").glob("*.csv")}
    candidates = np.array(sorted(listed | present), dtype=object)
    val = set(candidates[data.split_of(candidates) == "val"].tolist())
    return val | (listed - present)


def holdout_of(object_ids) -> np.ndarray:
    """True for the objects of the pretraining validation hold-out (seeded hash, ``HOLDOUT_FRACTION``)."""
    return data.split_of(object_ids, seed=HOLDOUT_SEED, val_fraction=HOLDOUT_FRACTION) == "val"


def assemble(tables: list[pd.DataFrame], excluded: set[str], min_points: int = MIN_POINTS) -> Corpus:
    """One corpus from per-source tables: excluded ids dropped, one curve per object (the longest),
    duplicate (object, mjd, band) points dropped, curves shorter than ``min_points`` dropped."""
    frame = pd.concat(tables, ignore_index=True)
    frame = frame[~frame["object_id"].isin(excluded)]
    frame = frame[np.isfinite(frame["mag"]) & np.isfinite(frame["magerr"]) & np.isfinite(frame["mjd"])]
    frame = _longest_per_object(frame)
    frame = frame.sort_values(["object_id", "mjd", "band"], kind="stable").drop_duplicates(["object_id", "mjd", "band"])
    sizes = frame.groupby("object_id", sort=True).size()
    frame = frame[frame["object_id"].isin(sizes.index[sizes >= min_points])]
    ids, starts = np.unique(frame["object_id"].to_numpy(), return_index=True)
    return Corpus(ids.astype(object), frame["source"].to_numpy()[starts].astype(object),
                  np.append(starts, len(frame)).astype(np.int64), frame["mjd"].to_numpy(np.float64),
                  frame["band"].to_numpy(np.int8), frame["mag"].to_numpy(np.float32),
                  frame["magerr"].to_numpy(np.float32))


def read_all_sources() -> list[pd.DataFrame]:
    """Every source's magnitude table (see the module docstring)."""
    return [*(read_plasticc_mags(d) for d in PLASTICC_DIRS), read_bts_train_mags(), read_alerce_mags(),
            read_forced_mags(), read_alert_history_mags()]


def fingerprint() -> str:
    """Hash of this module's code and version: a cache built by other code is rebuilt."""
    import sys

    source = inspect.getsource(sys.modules[__name__])
    return hashlib.sha256(f"{CORPUS_VERSION}:{source}".encode()).hexdigest()[:16]


def load_corpus(cache: Path = CACHE_FILE, rebuild: bool = False) -> Corpus:
    """The corpus from ``cache`` when it was built by this code, else built from the data and cached."""
    if cache.is_file() and not rebuild:
        with np.load(cache) as z:
            cached = str(z["fingerprint"])
        if cached == fingerprint():
            return Corpus.load(cache)
    corpus = assemble(read_all_sources(), bts_excluded_ids())
    corpus.save(cache)
    return corpus


def describe(corpus: Corpus) -> str:
    """One line per source: light curves, points; then the hold-out size."""
    lines = [f"  {s:<24} {c['light_curves']:>7} light curves {c['points']:>9} points"
             for s, c in corpus.counts().items()]
    held = holdout_of(corpus.object_id)
    lines.append(f"  total {len(corpus)} light curves, {int(corpus.n_points.sum())} points; "
                 f"validation hold-out {int(held.sum())} objects")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Windows and masking (numpy, seeded)
# ----------------------------------------------------------------------------------------------

#: ASTROMER masking (notes §2): this fraction of a window's points is probed (enters the loss) ...
PROBE_FRACTION = 0.5
#: ... of which this fraction stays unchanged ...
SAME_FRACTION = 0.2
#: ... and this fraction of the rest gets a random magnitude of the same window; the others are masked.
RANDOM_FRACTION = 0.2


def random_windows(n_points: np.ndarray, max_obs: int, rng: np.random.Generator) -> np.ndarray:
    """Start of one random contiguous window of ``max_obs`` points per curve (0 when it is shorter)."""
    room = np.maximum(np.asarray(n_points) - max_obs, 0)
    return np.floor(rng.random(len(room)) * (room + 1)).astype(np.int64)


@dataclass
class Masks:
    """Per (n, L) position: ``probed`` enters the loss; of those, ``masked`` are hidden behind the mask
    token, ``randomised`` carry another magnitude of the same window, the rest are unchanged."""

    probed: np.ndarray  # bool
    masked: np.ndarray  # bool
    randomised: np.ndarray  # bool
    random_mags: np.ndarray  # float32, the replacement magnitude where randomised (else 0)


def mask_counts(n_valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probed, unchanged, randomised) counts per window of ``n_valid`` points: ⌊0.5 n⌋, ⌈0.2 p⌉, ⌈0.2 (p − u)⌉."""
    n_valid = np.asarray(n_valid, dtype=np.int64)
    probed = np.floor(PROBE_FRACTION * n_valid + 1e-9).astype(np.int64)
    same = np.ceil(SAME_FRACTION * probed - 1e-9).astype(np.int64)
    randomised = np.ceil(RANDOM_FRACTION * (probed - same) - 1e-9).astype(np.int64)
    return probed, same, randomised


def make_masks(mags: np.ndarray, valid: np.ndarray, rng: np.random.Generator) -> Masks:
    """The BERT-like masks of notes §2 for (n, L) windows, drawn with ``rng`` (a full window of 200:
    100 probed = 20 unchanged + 16 random + 64 masked)."""
    valid = np.asarray(valid, dtype=bool)
    n, length = valid.shape
    probed_n, same_n, random_n = mask_counts(valid.sum(axis=1))
    keys = np.where(valid, rng.random((n, length)), np.inf)
    rank = np.empty((n, length), dtype=np.int64)
    rank[np.arange(n)[:, None], np.argsort(keys, axis=1, kind="stable")] = np.arange(length)
    probed = valid & (rank < probed_n[:, None])
    randomised = probed & (rank >= same_n[:, None]) & (rank < (same_n + random_n)[:, None])
    masked = probed & (rank >= (same_n + random_n)[:, None])
    # replacement: the magnitude of a uniformly drawn valid point of the same window
    valid_order = np.argsort(~valid, axis=1, kind="stable")
    pick = np.minimum((rng.random((n, length)) * valid.sum(axis=1, keepdims=True)).astype(np.int64), length - 1)
    donor = np.take_along_axis(valid_order, pick, axis=1)
    random_mags = np.where(randomised, np.take_along_axis(np.asarray(mags, dtype=np.float32), donor, axis=1), 0)
    return Masks(probed, masked, randomised, random_mags.astype(np.float32))


def probed_rmse(predicted: np.ndarray, target: np.ndarray, probed: np.ndarray) -> float:
    """ASTROMER's loss (notes §2): sqrt(mean over windows of Σ probed (p − t)² / Σ probed), mag.

    Windows without a probed point are left out of the mean.
    """
    probed = np.asarray(probed, dtype=np.float64)
    per_window = (probed * (np.asarray(predicted, np.float64) - np.asarray(target, np.float64)) ** 2).sum(axis=1)
    counts = probed.sum(axis=1)
    has = counts > 0
    return float(np.sqrt(np.mean(per_window[has] / counts[has])))
