"""The ASTROMER stage of ``classify``: embeddings and the encoder classifier, from the light curves t2 uses.

Same cuts, same light curves (:func:`fink_t2.science.lightcurve.build_light_curves`: the deduplicated
g and r detections up to the alert, at most ``MAX_POINTS``), of which the encoder sees the positive
subtractions (as its pretraining corpus and ``fink-t2 embed``: a negative one's ``magpsf`` is the
magnitude of a flux decrease, not of the source); its window rule then keeps what it takes
(``batch_twoband``: the most recent ``max_obs``). With ``[classifier] kind = "t2"`` the
t2 path runs as before and the ok alerts get their embedding; with ``"astromer"`` no GP runs: the
dense head classifies the pooled embeddings of every alert that passes the cuts.

``t2_embedding`` (column ``EMBEDDING_FIELD``) is the pooled embedding, float32 (d,), of an ok alert,
None otherwise (and for an ok alert of t2 without a positive subtraction; the head classifier cuts
such an alert: ``cut:only_negative_subtractions``); an embedding that is not finite makes the alert
``error:embedding_not_finite`` (a dead letter in the stream, with its bytes: nothing is lost).
"""
from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fink_t2.alerts.batch import AlertBatch
from fink_t2.alerts.decode import decode_payloads
from fink_t2.astromer.encoder import Encoder
from fink_t2.astromer.head import DenseHead, HeadError, load_head
from fink_t2.astromer.inputs import LightCurve
from fink_t2.config import Config, CutsConf
from fink_t2.contract import BANDS, EMBEDDING_FIELD, ZERO_POINT
from fink_t2.science.classify import STATUS_OK, Classified, run_stages, to_records
from fink_t2.science.lightcurve import LightCurves, build_light_curves, cut_reasons
from fink_t2.science.model import ModelError, T2Model

NOT_FINITE = "error:embedding_not_finite"
#: Status of an alert the head cannot classify: no positive-subtraction detection to encode.
ONLY_NEGATIVE = "cut:only_negative_subtractions"


@dataclass(frozen=True)
class AstromerStage:
    """What the workers run with the encoder: the encoder, the head (None: t2 classifies) and
    whether the embeddings go to the output."""

    encoder: Encoder
    head: DenseHead | None
    output_embedding: bool


def load_stage(config: Config) -> AstromerStage | None:
    """The stage the config asks for (None when neither embeddings nor the astromer classifier are on).

    The encoder is loaded once per process (``Encoder.load`` caches it). A head trained on another
    encoder or taking another embedding width is refused (``HeadError``); its classes are its own
    (``t2_snia`` is its class named ``SNIa``, null without one).
    """
    if not config.needs_encoder:
        return None
    encoder = Encoder.load(config.encoder_path())
    head = load_head(config.classifier.head) if config.classifier.kind == "astromer" else None
    if head is not None:
        check_head_fits(head, encoder)
    return AstromerStage(encoder, head, config.embedding.enabled)


@functools.lru_cache(maxsize=4)
def cached_stage(config: Config) -> AstromerStage | None:
    """:func:`load_stage`, once per process and config (a Spark worker reuses it across batches)."""
    return load_stage(config)


#: A short g + r light curve (days, mag) the start-up check embeds: 3 points per band over 6 days.
CHECK_CURVE = LightCurve(object_id="start-up check", mjd=np.arange(6.0), band=np.array([0, 1] * 3, dtype=np.int8),
                         mag=np.linspace(18.0, 18.5, 6), magerr=np.full(6, 0.05))


def check_stage(config: Config) -> None:
    """Load the configured encoder (and head) and run them on ``CHECK_CURVE``: ``ModelError`` when
    an output is not finite or not of the encoder's width (at start-up, not at the first batch)."""
    stage = load_stage(config)
    pooled = stage.encoder.pooled(stage.encoder.windows([CHECK_CURVE]))
    if pooled.shape != (1, stage.encoder.width) or not np.isfinite(pooled).all():
        raise ModelError(f"encoder {stage.encoder.path} gives {pooled.shape} / non-finite embeddings on a "
                         f"6-point light curve")
    if stage.head is not None and not np.isfinite(stage.head.predict(pooled)).all():
        raise HeadError(f"head {stage.head.path} gives non-finite probabilities")


def check_head_fits(head: DenseHead, encoder: Encoder) -> None:
    """``HeadError`` unless ``head`` was trained on ``encoder``'s embeddings (same sha256, same width)."""
    if head.meta["encoder_sha256"] != encoder.meta["sha256"]:
        raise HeadError(f"head {head.head_id} was trained on encoder sha256 {head.meta['encoder_sha256']}, "
                        f"not on {encoder.path} ({encoder.meta['sha256']})")
    if head.input_width != encoder.width:
        raise HeadError(f"head {head.head_id} takes {head.input_width}-wide embeddings, "
                        f"{encoder.path} gives {encoder.width}")


def encoder_light_curves(lcs: LightCurves, object_ids: list[str | None]) -> list[LightCurve]:
    """One encoder ``LightCurve`` per row of ``lcs``, its positive-subtraction points: time in days since
    the first kept detection (the encoder subtracts the window mean), band index as in
    ``contract.BANDS``, magnitude and error from the flux (the inverse of ``mag_to_flux``: the
    alert's own ``magpsf``/``sigmapsf``)."""
    curves = []
    for row, alert in enumerate(lcs.index):
        valid = lcs.mask[row] & (lcs.flux[row] > 0)
        flux = lcs.flux[row][valid]
        curves.append(LightCurve(
            object_id=object_ids[alert], mjd=lcs.t[row][valid], band=lcs.band[row][valid].astype(np.int8),
            mag=ZERO_POINT - 2.5 * np.log10(flux), magerr=lcs.flux_err[row][valid] / (0.4 * np.log(10.0) * flux)))
    return curves


def has_positive_detection(lcs: LightCurves) -> np.ndarray:
    """(N,) rows with at least one positive-subtraction detection (else the encoder has no input)."""
    return (lcs.mask & (lcs.flux > 0)).any(axis=1)


def pooled_embeddings(encoder: Encoder, lcs: LightCurves, object_ids: list[str | None]) -> np.ndarray:
    """(N, d) float32 pooled embeddings of the rows of ``lcs`` (N = 0 gives (0, d)); NaN rows for
    light curves without a positive-subtraction detection."""
    if len(lcs) == 0:
        return np.zeros((0, encoder.width), dtype=np.float32)
    return encoder.pooled(encoder.windows(encoder_light_curves(lcs, object_ids)))


def _selected(batch: AlertBatch, cuts: CutsConf | None) -> tuple[list[str], np.ndarray]:
    """Statuses after decoding and cuts, and the positions of the alerts that pass."""
    status = [f"error:{e}" if e is not None else STATUS_OK for e in batch.error]
    for i, reason in enumerate(cut_reasons(batch, cuts)):
        if reason is not None:
            status[i] = f"cut:{reason}"
    return status, np.array([i for i, s in enumerate(status) if s == STATUS_OK], dtype=np.int64)


def run_head(batch: AlertBatch, stage: AstromerStage, cuts: CutsConf | None) -> tuple[Classified, np.ndarray]:
    """Cuts, light curves, embeddings and the head: the per-alert result (``probs`` columns in the
    head's class order) and the (N, d) embeddings of ``result.light_curves``' rows."""
    status, selected = _selected(batch, cuts)
    lcs = build_light_curves(batch, selected)
    pooled = pooled_embeddings(stage.encoder, lcs, batch.object_id)
    finite = np.isfinite(pooled).all(axis=1)
    probs = np.full((len(lcs), len(stage.head.class_names)), np.nan)
    if finite.any():
        probs[finite] = stage.head.predict(pooled[finite])
    positive = has_positive_detection(lcs)
    for i in lcs.index[~positive]:
        status[i] = ONLY_NEGATIVE
    for i in lcs.index[positive & ~finite]:
        status[i] = NOT_FINITE
    empty = np.zeros((len(lcs), 0, len(BANDS)))
    return Classified(status, probs, lcs, np.zeros((len(lcs), 0)), empty, empty), pooled


def run_t2_with_embeddings(batch: AlertBatch, model: T2Model, stage: AstromerStage, cuts: CutsConf | None
                           ) -> tuple[Classified, np.ndarray]:
    """The t2 stages, then the embeddings of the alerts t2 classified (NaN rows for the others)."""
    result = run_stages(batch, model, cuts)
    lcs = result.light_curves
    ok = np.array([result.status[i] == STATUS_OK for i in lcs.index], dtype=bool)
    pooled = np.full((len(lcs), stage.encoder.width), np.nan, dtype=np.float32)
    pooled[ok] = pooled_embeddings(stage.encoder, lcs.rows(ok), batch.object_id)
    for i in lcs.index[ok & has_positive_detection(lcs) & ~np.isfinite(pooled).all(axis=1)]:
        result.status[i] = NOT_FINITE
    return result, pooled


def classify_batch(batch: AlertBatch, stage: AstromerStage, model: T2Model | None = None,
                   cuts: CutsConf | None = None) -> pd.DataFrame:
    """The ``classify`` table of a decoded batch with the ASTROMER stage: t2 (``model``) or the head
    classifies; with ``stage.output_embedding`` a ``t2_embedding`` column (float32 array or None)."""
    if stage.head is None:
        result, pooled = run_t2_with_embeddings(batch, model, stage, cuts)
        records = to_records(batch, result, model.model_id)
    else:
        result, pooled = run_head(batch, stage, cuts)
        records = to_records(batch, result, stage.head.head_id, stage.head.class_names)
    if stage.output_embedding:
        records[EMBEDDING_FIELD] = embedding_column(len(batch), result, pooled)
    return records


def embedding_column(n: int, result: Classified, pooled: np.ndarray) -> list[np.ndarray | None]:
    """Per alert of the batch: its embedding when its status is ok and it has one, else None."""
    column: list[np.ndarray | None] = [None] * n
    for row, i in enumerate(result.light_curves.index):
        if result.status[i] == STATUS_OK and np.isfinite(pooled[row]).all():
            column[i] = pooled[row]
    return column


def classify(payloads: Iterable[bytes | None], stage: AstromerStage, model: T2Model | None = None,
             cuts: CutsConf | None = None) -> pd.DataFrame:
    """:func:`classify_batch` of raw alert messages (Avro containers, one alert each)."""
    return classify_batch(decode_payloads(payloads), stage, model, cuts)
