"""Light curves → fixed-length encoder windows (numpy only).

``batch_v0`` reproduces the windows of ASTROMER 0.1.8 (../shared/notes/astromer.md §1): the first
``max_obs`` observations by time, times and magnitudes minus their window means, zero padding.
Both builders subtract the means in float64 and then cast to float32. (The original casts the
MJD to float32 first, ulp 2^-8 d at 5e4, and sums 200 of them in float32: its window time zero is
off by up to 0.07 d on the MACHO samples, by an amount that depends on TensorFlow's summation order;
that rounding is not reproduced.) ``batch_twoband`` is ours: g and r merged by time, the most
recent ``max_obs`` kept.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fink_t2.contract import ASTROMER_BAND_INDEX, ASTROMER_TWOBAND_MAX_OBS, ASTROMER_V0_MAX_OBS


@dataclass(frozen=True)
class LightCurve:
    """One object's observations: ``mjd`` (days), ``band`` (int8 encoder band index, 0 = g, 1 = r),
    ``mag``, ``magerr`` (mag; not fed to the encoder), arrays of equal length, any order."""

    object_id: str
    mjd: np.ndarray
    band: np.ndarray
    mag: np.ndarray
    magerr: np.ndarray

    def __post_init__(self):
        n = len(self.mjd)
        if not all(len(a) == n for a in (self.band, self.mag, self.magerr)):
            raise ValueError(f"{self.object_id}: mjd, band, mag, magerr differ in length")

    def select(self, keep: np.ndarray) -> "LightCurve":
        """The observations where ``keep`` (bool or index array), in that order."""
        return LightCurve(self.object_id, self.mjd[keep], self.band[keep], self.mag[keep], self.magerr[keep])


@dataclass(frozen=True)
class EncoderBatch:
    """Encoder inputs, (n, L) each: ``times`` (days) and ``mags`` window-mean subtracted (float32),
    ``bands`` (int8), ``valid`` (bool, True = real observation; padding is zero); ``object_ids`` (n,)."""

    times: np.ndarray
    mags: np.ndarray
    bands: np.ndarray
    valid: np.ndarray
    object_ids: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.object_ids)

    @property
    def max_obs(self) -> int:
        return self.times.shape[1]

    def slice(self, start: int, stop: int) -> "EncoderBatch":
        """Rows ``start:stop``."""
        rows = slice(start, stop)
        return EncoderBatch(self.times[rows], self.mags[rows], self.bands[rows], self.valid[rows],
                            self.object_ids[rows])


def _empty_batch(n: int, max_obs: int, object_ids: tuple[str, ...]) -> EncoderBatch:
    return EncoderBatch(np.zeros((n, max_obs), np.float32), np.zeros((n, max_obs), np.float32),
                        np.zeros((n, max_obs), np.int8), np.zeros((n, max_obs), bool), object_ids)


def _time_order(lc: LightCurve) -> np.ndarray:
    return np.argsort(lc.mjd, kind="stable")


def batch_v0(light_curves: list[LightCurve], max_obs: int = ASTROMER_V0_MAX_OBS) -> EncoderBatch:
    """v0 windows: first ``max_obs`` points by time, time and magnitude minus their means; band index 0."""
    batch = _empty_batch(len(light_curves), max_obs, tuple(lc.object_id for lc in light_curves))
    for row, lc in enumerate(light_curves):
        window = lc.select(_time_order(lc)[:max_obs])
        _fill(batch, row, window, np.zeros(len(window.mjd), np.int8))
    return batch


def batch_twoband(light_curves: list[LightCurve], max_obs: int = ASTROMER_TWOBAND_MAX_OBS) -> EncoderBatch:
    """Two-band windows: g and r points merged by time, the last ``max_obs`` kept."""
    bands_used = np.array(sorted(ASTROMER_BAND_INDEX.values()), dtype=np.int8)
    batch = _empty_batch(len(light_curves), max_obs, tuple(lc.object_id for lc in light_curves))
    for row, lc in enumerate(light_curves):
        order = _time_order(lc)
        window = lc.select(order[np.isin(lc.band[order], bands_used)][-max_obs:])
        _fill(batch, row, window, window.band)
    return batch


def _fill(batch: EncoderBatch, row: int, window: LightCurve, bands: np.ndarray) -> None:
    """Row ``row`` of ``batch`` from a window, means subtracted in float64 (an empty window stays padding)."""
    n = len(window.mjd)
    if n == 0:
        return
    mjd = np.asarray(window.mjd, np.float64)
    mag = np.asarray(window.mag, np.float64)
    batch.times[row, :n] = mjd - mjd.mean()
    batch.mags[row, :n] = mag - mag.mean()
    batch.bands[row, :n] = bands
    batch.valid[row, :n] = True
