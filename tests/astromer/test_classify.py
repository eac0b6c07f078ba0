"""The ASTROMER stage of classify on the real sample alerts: embeddings only for classified alerts,
from t2's own light curves; t2's fields untouched; the head as the classifier; bad heads refused."""
from __future__ import annotations

import io

import fastavro
import numpy as np
import pytest

from fink_t2.astromer.classify import (AstromerStage, NOT_FINITE, check_head_fits, classify, encoder_light_curves,
                                       has_positive_detection, pooled_embeddings)
from fink_t2.astromer.head import HeadError, load_head
from fink_t2.alerts.batch import NEGATIVE_SUBTRACTION
from fink_t2.alerts.decode import decode_payloads
from fink_t2.config import CutsConf
from fink_t2.contract import EMBEDDING_FIELD
from fink_t2.science import classify as t2
from fink_t2.science.lightcurve import build_light_curves, cut_reasons
from fink_t2.science.model import ModelError, load_model

from tests.astromer.encoders import random_head, stream_encoder

CUTS = CutsConf(stellar_counterpart=False)  # most datasim sample alerts sit on PS1 point sources


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return stream_encoder(tmp_path_factory.mktemp("encoder"))[1]


def test_light_curves_for_the_encoder_are_the_alerts_own_detections(sample_payloads):
    batch = decode_payloads(sample_payloads)
    selected = np.array([i for i, r in enumerate(cut_reasons(batch, CUTS)) if r is None and batch.error[i] is None])
    lcs = build_light_curves(batch, selected)
    curves = encoder_light_curves(lcs, batch.object_id)
    assert len(curves) == len(selected) > 10
    for curve, alert in zip(curves, selected):
        record = next(fastavro.reader(io.BytesIO(sample_payloads[alert])))
        detections = {(p["jd"], p["fid"]): p for p in [record["candidate"], *(record["prv_candidates"] or [])]
                      if p["fid"] in (1, 2) and p["magpsf"] is not None}
        points = {k: p for k, p in detections.items() if p["isdiffpos"] not in NEGATIVE_SUBTRACTION}
        first_jd = min(jd for jd, _ in detections)  # time zero: the first g/r detection, even a negative one
        if not points:  # only negative subtractions: nothing for the encoder
            assert len(curve.mjd) == 0
            continue
        jd = np.array(sorted(points))[:, 0]
        assert curve.object_id == record["objectId"]
        assert np.array_equal(curve.mjd, jd - first_jd)  # days since the first g/r detection, time-ordered
        ordered = [points[k] for k in sorted(points)]
        # magpsf through flux and back: relative round-off ~1e-16 of a ~20 mag value
        assert curve.mag == pytest.approx([p["magpsf"] for p in ordered], abs=1e-12)
        assert curve.magerr == pytest.approx([p["sigmapsf"] for p in ordered], rel=1e-12)
        assert list(curve.band) == [p["fid"] - 1 for p in ordered]


def test_embeddings_are_for_the_classified_alerts_and_t2_is_unchanged(sample_payloads, encoder):
    model = load_model()
    plain = t2.classify(sample_payloads, model, CUTS)
    with_embeddings = classify(sample_payloads, AstromerStage(encoder, None, True), model, CUTS)
    assert with_embeddings.drop(columns=[EMBEDDING_FIELD]).equals(plain)
    ok = (plain.t2_status == "ok").to_numpy()
    assert ok.sum() > 10 and (~ok).sum() > 10
    embeddings = with_embeddings[EMBEDDING_FIELD]
    batch = decode_payloads(sample_payloads)
    lcs = build_light_curves(batch, np.flatnonzero(ok))
    positive = has_positive_detection(lcs)
    assert all(e is None for e in embeddings[~ok]) and all(e is None for e in embeddings[lcs.index[~positive]])
    expected = pooled_embeddings(encoder, lcs.rows(positive), batch.object_id)
    got = np.stack(embeddings[lcs.index[positive]].to_list())
    assert got.dtype == np.float32 and got.shape == (positive.sum(), encoder.width) and positive.sum() > 10
    assert np.array_equal(got, expected)


def test_without_output_the_table_has_no_embedding_column(sample_payloads, encoder):
    table = classify(sample_payloads[:20], AstromerStage(encoder, None, False), load_model(), CUTS)
    assert EMBEDDING_FIELD not in table.columns


def test_the_head_classifies_every_alert_that_passes_the_cuts(sample_payloads, encoder, tmp_path):
    head = load_head(random_head(tmp_path, encoder, ["SNIa", "SNII", "SNIbc"]))
    table = classify(sample_payloads, AstromerStage(encoder, head, True), None, CUTS)
    batch = decode_payloads(sample_payloads)
    reasons = cut_reasons(batch, CUTS)
    passes = np.array([r is None and e is None for r, e in zip(reasons, batch.error)])
    assert list(table.t2_status[~passes]) == [f"error:{e}" if e else f"cut:{r}"
                                              for r, e in zip(np.array(reasons, dtype=object)[~passes],
                                                              np.array(batch.error, dtype=object)[~passes])]
    lcs = build_light_curves(batch, np.flatnonzero(passes))
    negative_only = lcs.index[~has_positive_detection(lcs)]
    assert (table.t2_status[negative_only] == "cut:only_negative_subtractions").all()
    passes[negative_only] = False
    ok = table[passes]
    assert (ok.t2_status == "ok").all() and (ok.t2_model == head.head_id).all()
    probs = head.predict(np.stack(ok[EMBEDDING_FIELD].to_list()))
    assert [list(p) for p in ok.t2_probs] == [list(head.class_names)] * len(ok)
    assert np.array_equal(np.array([list(p.values()) for p in ok.t2_probs]), probs)
    assert np.array_equal(ok.t2_snia.to_numpy(dtype=float), probs[:, 0])
    assert list(ok.t2_class) == [head.class_names[i] for i in probs.argmax(axis=1)]


def test_a_head_of_another_encoder_is_refused(encoder, tmp_path):
    other = load_head(random_head(tmp_path, encoder, ["SNIa", "SNII"]))
    check_head_fits(other, encoder)
    other.meta["encoder_sha256"] = "f" * 64
    with pytest.raises(HeadError, match="was trained on encoder sha256 f{64}"):
        check_head_fits(other, encoder)


def test_a_head_of_another_width_is_refused(encoder, tmp_path):
    head = load_head(random_head(tmp_path, encoder, ["SNIa", "SNII"]))
    narrow = dict(head.arrays, **{"0.kernel": head.arrays["0.kernel"][:-1]})  # same encoder sha256, d - 1 inputs
    with pytest.raises(HeadError, match=f"takes {encoder.width - 1}-wide embeddings, .* gives {encoder.width}"):
        check_head_fits(type(head)(head.path, head.meta, narrow), encoder)


def test_a_non_finite_embedding_is_an_error_status_not_an_output(sample_payloads, encoder, monkeypatch):
    stage = AstromerStage(encoder, None, True)
    real = pooled_embeddings

    def poisoned(enc, lcs, object_ids):
        out = real(enc, lcs, object_ids)
        out[0, 0] = np.nan
        return out

    monkeypatch.setattr("fink_t2.astromer.classify.pooled_embeddings", poisoned)
    table = classify(sample_payloads, stage, load_model(), CUTS)
    bad = table[table.t2_status == NOT_FINITE]
    assert len(bad) == 1 and bad[EMBEDDING_FIELD].iloc[0] is None and bad.t2_class.iloc[0] is None


def test_the_stream_refuses_a_head_of_another_encoder_before_spark_starts(encoder, tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    head = random_head(tmp_path, encoder, ["SNIa", "SNII"])
    meta = head.with_suffix(".json")
    meta.write_text(meta.read_text().replace(encoder.meta["sha256"], "e" * 64))
    conf = tmp_path / "job.toml"
    conf.write_text(f'[embedding]\nencoder = "{encoder.path}"\n[classifier]\nkind = "astromer"\nhead = "{head}"\n')
    done = subprocess.run([sys.executable, "-m", "fink_t2.cli", "stream", "--conf", str(conf), "--once"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"was trained on encoder sha256 {'e' * 64}" in done.stderr and "SparkSession" not in done.stderr


def test_the_start_up_check_embeds_a_short_light_curve(encoder, tmp_path):
    from fink_t2.astromer.classify import check_stage
    from fink_t2.config import parse_config

    head = random_head(tmp_path, encoder, ["SNIa", "SNII"])
    check_stage(parse_config({"embedding": {"enabled": True, "encoder": str(encoder.path)},
                              "classifier": {"kind": "astromer", "head": str(head)}}))
    with pytest.raises(ModelError, match="encoder file not found"):
        check_stage(parse_config({"embedding": {"enabled": True, "encoder": str(tmp_path / "none.tflite")}}))


def _all_negative(payload: bytes) -> bytes:
    """The alert with every subtraction marked negative (isdiffpos "f"): the same points, no source flux."""
    reader = fastavro.reader(io.BytesIO(payload))
    schema, record = reader.writer_schema, next(reader)
    record["candidate"]["isdiffpos"] = "f"
    record["prv_candidates"] = [p | {"isdiffpos": "f"} for p in record["prv_candidates"] or []]
    out = io.BytesIO()
    fastavro.writer(out, schema, [record])
    return out.getvalue()


def test_an_alert_without_a_positive_subtraction_has_no_embedding(sample_payloads, encoder, tmp_path):
    """t2 still classifies it (ok, null embedding); the head cannot, and says why."""
    model = load_model()
    statuses = t2.classify(sample_payloads, model, CUTS).t2_status
    alert = sample_payloads[int(statuses.index[statuses == "ok"][0])]
    negative = _all_negative(alert)
    with_t2 = classify([alert, negative], AstromerStage(encoder, None, True), model, CUTS)
    assert list(with_t2.t2_status) == ["ok", "ok"] and with_t2.t2_class.notna().all()
    assert with_t2[EMBEDDING_FIELD][0] is not None and with_t2[EMBEDDING_FIELD][1] is None
    head = load_head(random_head(tmp_path, encoder, ["SNIa", "SNII"]))
    with_head = classify([alert, negative], AstromerStage(encoder, head, True), None, CUTS)
    assert list(with_head.t2_status) == ["ok", "cut:only_negative_subtractions"]
    assert with_head.t2_class[1] is None and with_head[EMBEDDING_FIELD][1] is None
