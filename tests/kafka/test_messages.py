"""Output messages: enriched Avro alerts readable by plain fastavro, scores, dead-letter."""
from __future__ import annotations

import io
import json

import fastavro
import pytest

from fink_t2.science.classify import classify
from fink_t2.kafka.messages import ENRICHED_SCHEMA_VERSION, EnrichError, deadletter_message, enrich_alert, score_message

from tests.conftest import SAMPLE_ALERTS


@pytest.fixture(scope="module")
def classified(sample_payloads):
    results = classify(sample_payloads)
    return sample_payloads, results


def test_enriched_message_is_the_alert_plus_t2_fields(classified):
    payloads, results = classified
    for i in (0, len(payloads) - 1, int(results.index[results.t2_status == "ok"][0])):
        row = results.iloc[i].to_dict()
        enriched = enrich_alert(payloads[i], row)
        original = next(fastavro.reader(io.BytesIO(payloads[i])))
        reader = fastavro.reader(io.BytesIO(enriched))
        (record,) = list(reader)
        assert record["candid"] == row["candid"] == original["candid"]
        assert record["cutoutScience"] == original["cutoutScience"]  # the whole alert is kept
        assert record["prv_candidates"] == original["prv_candidates"]
        assert record["t2_status"] == row["t2_status"] and record["t2_model"] == row["t2_model"]
        assert record["t2_schema_version"] == ENRICHED_SCHEMA_VERSION
        if row["t2_status"] == "ok":
            assert record["t2_class"] == row["t2_class"]
            assert record["t2_probs"] == pytest.approx(row["t2_probs"])
            assert record["t2_snia"] == pytest.approx(row["t2_probs"]["SNIa"])
            assert sum(record["t2_probs"].values()) == pytest.approx(1.0, abs=1e-5)
        else:
            assert record["t2_class"] is None and record["t2_probs"] is None and record["t2_snia"] is None


def test_enrich_multi_block_container_falls_back_to_reencoding():
    payload = (SAMPLE_ALERTS / "fink-client_datatest" / "ZTF19acihgng.avro").read_bytes()
    record = next(fastavro.reader(io.BytesIO(payload)))
    out = io.BytesIO()
    fastavro.writer(out, fastavro.reader(io.BytesIO(payload)).writer_schema, [record], codec="deflate")
    row = {"t2_status": "cut:bad_quality", "t2_model": "m", "candid": record["candid"]}
    (enriched,) = list(fastavro.reader(io.BytesIO(enrich_alert(out.getvalue(), row))))
    assert enriched["candid"] == record["candid"] and enriched["t2_status"] == "cut:bad_quality"
    with pytest.raises(EnrichError):
        enrich_alert(enrich_alert(payload, row), row)  # already enriched


def test_score_and_deadletter_messages():
    score = json.loads(score_message({"objectId": "ZTF1", "candid": 5, "t2_status": "ok", "t2_class": "SNIa",
                                      "t2_probs": {"SNIa": 1.0}, "t2_snia": 1.0, "t2_model": "m"}))
    assert score == {"objectId": "ZTF1", "candid": 5, "t2_status": "ok", "t2_class": "SNIa",
                     "t2_probs": {"SNIa": 1.0}, "t2_snia": 1.0, "t2_model": "m"}
    (dead,) = list(fastavro.reader(io.BytesIO(deadletter_message("avro_decode: bad magic", b"xx", b"k", "ztf_1", 0, 7))))
    assert dead["reason"] == "avro_decode: bad magic" and dead["value"] == b"xx" and dead["offset"] == 7
