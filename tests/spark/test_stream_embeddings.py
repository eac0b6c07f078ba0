"""Integration: ASTROMER embeddings and the encoder classifier in the streaming job (real Kafka + Spark).

The oracle is offline and independent of the job's light-curve code: each replayed alert is read
with fastavro, its g and r detections (candidate + prv_candidates with a magnitude, one per
(jd, fid), time-ordered, the last ``MAX_POINTS``, the positive subtractions of them) become one
encoder ``LightCurve``, embedded by
``Encoder.pooled`` in this process. The stream's embeddings, read back from the enriched (Avro
float) and score (JSON) topics, must equal it exactly: same interpreter file, same float32 inputs.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import fastavro
import numpy as np
import pytest

from fink_t2.alerts.batch import NEGATIVE_SUBTRACTION
from fink_t2.astromer.head import load_head
from fink_t2.astromer.inputs import LightCurve
from fink_t2.contract import EMBEDDING_FIELD, ZTF_FID_TO_BAND, BANDS
from fink_t2.kafka import broker
from fink_t2.kafka.replay import replay
from fink_t2.kafka.topics import read_topic
from fink_t2.science.lightcurve import MAX_POINTS

from tests.astromer.encoders import random_head, stream_encoder
from tests.conftest import SAMPLE_ALERTS
from tests.spark.test_stream import SAMPLE_COUNT, poison_messages, produce, run_stream, write_conf

pytestmark = pytest.mark.integration


def offline_light_curve(record: dict) -> LightCurve | None:
    """The alert's g/r positive-subtraction detections as an encoder light curve, from the fastavro
    record alone."""
    points = [record["candidate"], *(record.get("prv_candidates") or [])]
    seen = {}
    for p in points:
        band = ZTF_FID_TO_BAND.get(p["fid"])
        if band in BANDS and p.get("magpsf") is not None:
            seen[(p["jd"], p["fid"])] = (p["jd"], BANDS.index(band), p["magpsf"], p["sigmapsf"],
                                         p["isdiffpos"] not in NEGATIVE_SUBTRACTION)
    rows = sorted(seen.values())[-MAX_POINTS:]
    positive = [r for r in rows if r[4]]
    if not positive:
        return None
    jd, band, mag, err, _ = (np.array(col) for col in zip(*positive))
    # time zero: the first g/r detection, positive or not (the encoder subtracts the window mean)
    return LightCurve(object_id=record["objectId"], mjd=jd - rows[0][0], band=band.astype(np.int8),
                      mag=mag.astype(np.float64), magerr=err.astype(np.float64))


def offline_embeddings(encoder, payloads: list[bytes]) -> dict[int, np.ndarray]:
    """candid → pooled embedding (float32) of every alert with g/r detections, one alert per batch."""
    out = {}
    for payload in payloads:
        record = next(fastavro.reader(io.BytesIO(payload)))
        curve = offline_light_curve(record)
        if curve is not None:
            out[record["candid"]] = encoder.pooled(encoder.windows([curve]))[0]
    return out


def sample_payloads_replayed() -> list[bytes]:
    from fink_t2.kafka.replay import iter_alert_messages

    return [m.value for m in iter_alert_messages([SAMPLE_ALERTS])]


def with_astromer(conf: Path, encoder: Path, enabled: bool, head: Path | None = None) -> None:
    """Append the [embedding] (and [classifier]) tables to a test config."""
    text = f'\n[embedding]\nenabled = {str(enabled).lower()}\nencoder = "{encoder}"\n'
    if head is not None:
        text += f'[classifier]\nkind = "astromer"\nhead = "{head}"\n'
    conf.write_text(conf.read_text() + text)


def run_job(kafka_broker: str, tmp_path: Path, encoder: Path, enabled: bool, head: Path | None = None) -> dict:
    """Replay the sample alerts + poison, run the job once; the enriched records, scores and dead letters."""
    conf, names = write_conf(tmp_path, kafka_broker)
    with_astromer(conf, encoder, enabled, head)
    broker.create_topic(kafka_broker, names["input"], partitions=2)
    assert replay([SAMPLE_ALERTS], names["input"], bootstrap=kafka_broker).delivered == SAMPLE_COUNT
    valid = next((SAMPLE_ALERTS / "fink-broker_basic_alerts_local_20200101").glob("*.avro")).read_bytes()
    produce(kafka_broker, names["input"], poison_messages(valid))
    run_stream(conf, env=dict(os.environ))
    enriched = {r["candid"]: r for r in (next(fastavro.reader(io.BytesIO(m.value)))
                                         for m in read_topic(kafka_broker, names["enriched"]))}
    scores = {s["candid"]: s for s in (json.loads(m.value) for m in read_topic(kafka_broker, names["scores"]))}
    dead = [next(fastavro.reader(io.BytesIO(m.value))) for m in read_topic(kafka_broker, names["dead"])]
    return {"enriched": enriched, "scores": scores, "dead": dead, "snia": read_topic(kafka_broker, names["snia"])}


def test_embeddings_in_both_topics_equal_the_offline_encoder(kafka_broker, tmp_path):
    encoder_path, encoder = stream_encoder(tmp_path)
    out = run_job(kafka_broker, tmp_path, encoder_path, enabled=True)
    enriched, scores = out["enriched"], out["scores"]
    assert len(enriched) == SAMPLE_COUNT and scores.keys() == enriched.keys()
    assert len(out["dead"]) == len(poison_messages(b"x"))  # the poison, and no alert lost
    expected = offline_embeddings(encoder, sample_payloads_replayed())
    embedded = [c for c, r in enriched.items() if r["t2_status"] == "ok" and c in expected]
    assert len(embedded) >= 10, "too few embedded alerts for the test to mean something"
    for candid, record in enriched.items():
        score = scores[candid]
        if record["t2_status"] != "ok" or candid not in expected:  # cut, or no positive subtraction
            assert record[EMBEDDING_FIELD] is None and score[EMBEDDING_FIELD] is None, record["t2_status"]
            continue
        from_avro = np.array(record[EMBEDDING_FIELD], dtype=np.float32)
        from_json = np.array(score[EMBEDDING_FIELD], dtype=np.float32)
        assert from_avro.shape == (encoder.width,)
        assert np.array_equal(from_avro, expected[candid]) and np.array_equal(from_json, expected[candid]), candid
        assert record["t2_class"] == score["t2_class"] is not None  # t2 still classifies


def test_the_astromer_classifier_fills_the_t2_fields(kafka_broker, tmp_path):
    encoder_path, encoder = stream_encoder(tmp_path)
    head_path = random_head(tmp_path, encoder, ["SNIa", "SNII", "SNIbc"])
    out = run_job(kafka_broker, tmp_path, encoder_path, enabled=False, head=head_path)
    head = load_head(head_path)
    expected = offline_embeddings(encoder, sample_payloads_replayed())
    ok = {c: r for c, r in out["enriched"].items() if r["t2_status"] == "ok"}
    assert len(ok) >= 10 and len(out["dead"]) == len(poison_messages(b"x"))
    for candid, record in ok.items():
        # the same float32 embedding through the float64 head; only BLAS's summation order differs
        # between a batch of one and the worker's batch: ≲ d · 2^-53 relative, far below 1e-12
        probs = head.predict(expected[candid][None])[0]
        assert record["t2_model"] == head.head_id and record[EMBEDDING_FIELD] is None
        assert list(record["t2_probs"]) == list(head.class_names)
        assert list(record["t2_probs"].values()) == pytest.approx(probs, rel=1e-12)
        assert record["t2_class"] == head.class_names[int(np.argmax(probs))]
        assert record["t2_snia"] == pytest.approx(probs[0], rel=1e-12)
        assert EMBEDDING_FIELD not in out["scores"][candid]  # embeddings off: no key in the score
    snia = {json.loads(m.value)["candid"] for m in out["snia"]}
    assert snia == {c for c, r in ok.items() if r["t2_snia"] >= 0.3}  # the filter reads the head's P(SNIa)
