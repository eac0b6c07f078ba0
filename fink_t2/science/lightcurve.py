"""Stage 2 — light curves and selection cuts.

From an ``AlertBatch``: keep the g and r detections, convert magnitudes to signed SNANA
fluxes, put time in days since the first detection (increasing), and apply the t2
selection cuts. Each failing alert gets a named reason (the first cut it fails, in the order
of ``CUTS``). Deployed-Fink bugs avoided: time runs forward (not jd_0 − jd), band order is
fixed (g, r) instead of coming from a set, i-band points never fill the r slot, and
negative subtractions keep a negative flux.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fink_t2.alerts.batch import AlertBatch
from fink_t2.config import CutsConf
from fink_t2.contract import BANDS, ZERO_POINT, ZTF_FID_TO_BAND

#: fid of each model band, in model band order (g -> 1, r -> 2).
BAND_FIDS: tuple[int, ...] = tuple(
    next(fid for fid, name in ZTF_FID_TO_BAND.items() if name == band) for band in BANDS
)
MIN_POINTS_PER_BAND = 2  # detections needed in each of g and r
MAX_AGE_DAYS = 90.0  # last detection − first detection in the history (jdstarthist), days
MIN_REAL_BOGUS = 0.55  # Fink's quality cut on candidate.rb
SOLAR_SYSTEM_ROID = 3  # Fink roid value of a confirmed solar-system object
SOLAR_SYSTEM_DIST_ARCSEC = 5.0  # ZTF ssdistnr below this (and ≥ 0) = known asteroid, arcsec
MAX_POINTS = 256  # most recent detections kept per alert (bounds GP cost, days of history)

#: SIMBAD types of the fink-utils extragalactic host list (30 used while t2 ran, + 4 later).
EXTRAGALACTIC_XMATCH = frozenset({
    "Unknown", "Candidate_SN*", "SN", "Transient", "Fail", "Fail 504", "SN*_Candidate",
    "galaxy", "Galaxy", "EmG", "Seyfert", "Seyfert_1", "Seyfert_2", "BlueCompG", "StarburstG",
    "LSB_G", "HII_G", "High_z_G", "GinPair", "GinGroup", "BClG", "GinCl", "PartofG",
    "Compact_Gr_G", "IG", "PairG", "GroupG", "ClG", "SuperClG", "Void",
    "LINER", "Possible_ClG", "Possible_SClG", "GravLens_Candidate",
})

#: Cut names in the order they are checked; the status is ``cut:<name>``.
CUTS: tuple[str, ...] = (
    "candidate_band_not_gr", "bad_quality", "solar_system", "not_extragalactic", "stellar_counterpart",
    "invalid_photometry", "too_few_points_per_band", "history_too_long",
)


def stellar_counterpart(batch: AlertBatch, cuts: CutsConf) -> np.ndarray:
    """(B,) alerts on a PS1 point source: ``distpsnr1`` within the limit (arcsec) and ``sgscore1``
    at least the star threshold. Only for alerts without a Fink ``cdsxmatch`` (which decides
    the extragalactic cut instead); False where the fields are null or absent."""
    n = len(batch)
    if not cuts.stellar_counterpart or batch.sgscore1 is None or batch.distpsnr1 is None:
        return np.zeros(n, dtype=bool)
    star = (batch.sgscore1 >= cuts.stellar_min_sgscore1) & (batch.distpsnr1 >= 0) & (
        batch.distpsnr1 <= cuts.stellar_max_distpsnr1_arcsec)
    if batch.cdsxmatch is not None:
        star &= np.array([x is None for x in batch.cdsxmatch], dtype=bool)
    return star


@dataclass
class LightCurves:
    """Padded g+r light curves of the alerts that passed the cuts.

    ``index`` maps rows back to positions in the ``AlertBatch``. Arrays are (N, P), padded
    points have ``mask`` False. Time in days since the first kept detection, flux in SNANA
    units (zero point 27.5), band as an index into ``contract.BANDS``. ``age`` is the alert's
    age: days from its first detection (``jdstarthist`` when set, it may predate the history)
    to its last point.
    """

    index: np.ndarray  # (N,) int64 positions in the batch
    t: np.ndarray  # (N, P) days
    band: np.ndarray  # (N, P) int8
    flux: np.ndarray  # (N, P) flux units
    flux_err: np.ndarray  # (N, P) flux units
    mask: np.ndarray  # (N, P) bool
    age: np.ndarray  # (N,) days

    def __len__(self) -> int:
        return len(self.index)

    def rows(self, keep: np.ndarray | slice) -> "LightCurves":
        """The light curves of the rows ``keep`` (index array, boolean mask or slice)."""
        return LightCurves(self.index[keep], self.t[keep], self.band[keep], self.flux[keep],
                           self.flux_err[keep], self.mask[keep], self.age[keep])

    @property
    def last_t(self) -> np.ndarray:
        """(N,) time of the last real point (the alert), days since the first kept detection."""
        return np.where(self.mask, self.t, -np.inf).max(axis=1, initial=0.0) if self.t.size else np.zeros(len(self))


def mag_to_flux(mag: np.ndarray, magerr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AB magnitude and error -> SNANA flux F = 10^(−0.4(m − 27.5)) and σ_F = 0.4 ln10 F σ_m."""
    flux = np.power(10.0, -0.4 * (mag - ZERO_POINT))
    return flux, 0.4 * np.log(10.0) * flux * magerr


def _per_alert_any(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """True for each alert with at least one True point."""
    return np.bincount(_point_alert(offsets)[values], minlength=len(offsets) - 1) > 0


def _point_alert(offsets: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))


def _dedup_and_order(batch: AlertBatch, keep: np.ndarray) -> np.ndarray:
    """Indices of kept points sorted by (alert, jd), duplicates of (alert, jd, fid) dropped."""
    alert = _point_alert(batch.offsets)
    idx = np.flatnonzero(keep)
    order = np.lexsort((batch.hist_fid[idx], batch.hist_jd[idx], alert[idx]))
    idx = idx[order]
    if len(idx) > 1:
        same = (alert[idx][1:] == alert[idx][:-1]) & (batch.hist_jd[idx][1:] == batch.hist_jd[idx][:-1]) & (
            batch.hist_fid[idx][1:] == batch.hist_fid[idx][:-1])
        idx = idx[np.concatenate(([True], ~same))]
    return idx


def cut_reasons(batch: AlertBatch, cuts: CutsConf | None = None) -> list[str | None]:
    """The first failed cut of each decoded alert (None = passes; errors left as None).

    ``cuts``: the settings of the configurable cuts (``[cuts]`` of the config; defaults when None).
    """
    cuts = cuts or CutsConf()
    n = len(batch)
    failed = {name: np.zeros(n, dtype=bool) for name in CUTS}
    failed["candidate_band_not_gr"] = ~np.isin(batch.candidate_fid, BAND_FIDS)
    failed["bad_quality"] = (batch.rb < MIN_REAL_BOGUS) | (np.nan_to_num(batch.nbad, nan=0.0) != 0)
    if batch.roid is not None:
        failed["solar_system"] = batch.roid == SOLAR_SYSTEM_ROID
    else:
        failed["solar_system"] = (batch.ssdistnr >= 0) & (batch.ssdistnr < SOLAR_SYSTEM_DIST_ARCSEC)
    if batch.cdsxmatch is not None:
        failed["not_extragalactic"] = np.array(
            [x is not None and x not in EXTRAGALACTIC_XMATCH for x in batch.cdsxmatch], dtype=bool)
    failed["stellar_counterpart"] = stellar_counterpart(batch, cuts)

    in_gr = np.isin(batch.hist_fid, BAND_FIDS)
    bad_phot = in_gr & ~(np.isfinite(batch.hist_mag) & np.isfinite(batch.hist_magerr) & (batch.hist_magerr > 0)
                         & np.isfinite(batch.hist_jd))
    failed["invalid_photometry"] = _per_alert_any(bad_phot, batch.offsets)
    kept = _dedup_and_order(batch, in_gr & ~bad_phot)
    kept_alert = _point_alert(batch.offsets)[kept]
    for fid in BAND_FIDS:
        per_band = np.bincount(kept_alert[batch.hist_fid[kept] == fid], minlength=n)
        failed["too_few_points_per_band"] |= per_band < MIN_POINTS_PER_BAND
    failed["history_too_long"] = _history_age(batch, kept, kept_alert) > MAX_AGE_DAYS

    reasons: list[str | None] = [None] * n
    for name in reversed(CUTS):  # earliest cut in CUTS wins
        for i in np.flatnonzero(failed[name]):
            reasons[i] = name
    return [None if batch.error[i] is not None else r for i, r in enumerate(reasons)]


def _history_age(batch: AlertBatch, kept: np.ndarray, kept_alert: np.ndarray) -> np.ndarray:
    """Last minus first detection of each alert, days; jdstarthist counts as first when set."""
    n = len(batch)
    first = np.full(n, np.inf)
    last = np.full(n, -np.inf)
    np.minimum.at(first, kept_alert, batch.hist_jd[kept])
    np.maximum.at(last, kept_alert, batch.hist_jd[kept])
    start = np.fmin(first, batch.jdstarthist)
    age = last - start
    return np.where(np.isfinite(age), age, 0.0)


def build_light_curves(batch: AlertBatch, selected: np.ndarray) -> LightCurves:
    """Padded g/r light curves (time ascending, last ``MAX_POINTS`` kept) of ``selected`` alerts."""
    selected = np.asarray(selected, dtype=np.int64)
    in_gr = np.isin(batch.hist_fid, BAND_FIDS)
    kept = _dedup_and_order(batch, in_gr)
    point_alert = _point_alert(batch.offsets)[kept]
    take = np.isin(point_alert, selected)
    kept, point_alert = kept[take], point_alert[take]
    row_of_alert = np.full(len(batch), -1, dtype=np.int64)
    row_of_alert[selected] = np.arange(len(selected))
    rows = row_of_alert[point_alert]
    starts = np.searchsorted(rows, np.arange(len(selected)))
    counts = np.bincount(rows, minlength=len(selected))
    position = np.arange(len(rows)) - starts[rows]
    # keep the most recent MAX_POINTS detections
    drop = counts[rows] - MAX_POINTS
    keep_recent = position >= drop
    rows, kept, position = rows[keep_recent], kept[keep_recent], (position - np.maximum(drop, 0))[keep_recent]
    width = max(int(np.minimum(counts, MAX_POINTS).max(initial=0)), 1)
    shape = (len(selected), width)
    flux, flux_err = mag_to_flux(batch.hist_mag[kept], batch.hist_magerr[kept])
    flux = np.where(batch.hist_negative[kept], -flux, flux)
    jd = np.zeros(shape)
    out = LightCurves(
        index=selected, t=np.zeros(shape), band=np.zeros(shape, dtype=np.int8),
        flux=np.zeros(shape), flux_err=np.ones(shape), mask=np.zeros(shape, dtype=bool),
        age=np.zeros(len(selected)),
    )
    jd[rows, position] = batch.hist_jd[kept]
    out.band[rows, position] = np.searchsorted(BAND_FIDS, batch.hist_fid[kept])
    out.flux[rows, position] = flux
    out.flux_err[rows, position] = flux_err
    out.mask[rows, position] = True
    out.t[:] = np.where(out.mask, jd - jd[:, :1], 0.0)
    last_jd = np.where(out.mask, jd, -np.inf).max(axis=1, initial=-np.inf)
    start = np.fmin(jd[:, 0], batch.jdstarthist[selected]) if len(selected) else np.zeros(0)
    out.age[:] = np.where(np.isfinite(last_jd - start), last_jd - start, 0.0)
    return out
