"""Output messages: enriched Avro alerts readable by plain fastavro, scores, dead-letter."""
from __future__ import annotations

import io
import json

import fastavro
import numpy as np
import pytest

from fink_t2.alerts.container import build_single_record_container, parse_container
from fink_t2.alerts.decode import decode_payloads
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
        assert record["t2_embedding"] is None  # embeddings off: the optional field is null


def test_enrich_deflate_container_reframes_the_inflated_record():
    payload = (SAMPLE_ALERTS / "fink-client_datatest" / "ZTF19acihgng.avro").read_bytes()
    record = next(fastavro.reader(io.BytesIO(payload)))
    out = io.BytesIO()
    fastavro.writer(out, fastavro.reader(io.BytesIO(payload)).writer_schema, [record], codec="deflate")
    row = {"t2_status": "cut:bad_quality", "t2_model": "m", "candid": record["candid"]}
    (enriched,) = list(fastavro.reader(io.BytesIO(enrich_alert(out.getvalue(), row))))
    assert enriched["candid"] == record["candid"] and enriched["t2_status"] == "cut:bad_quality"
    with pytest.raises(EnrichError):
        enrich_alert(enrich_alert(payload, row), row)  # already enriched


def _plain(t):
    """The type ``t`` with its logical types dropped (the same bytes on the wire)."""
    if isinstance(t, list):
        return [_plain(b) for b in t]
    return t["type"] if isinstance(t, dict) and "logicalType" in t else t


def _fink_alert_with_timestamp(micros: int) -> bytes:
    """A Fink alert (its ``timestamp`` is a timestamp-micros long, a field t2 skips) as one message."""
    payload = (SAMPLE_ALERTS / "fink-client_datatest" / "avro_multi_alerts.avro").read_bytes()
    container = parse_container(payload)
    schema = json.loads(container.schema_json)
    record = next(fastavro.reader(io.BytesIO(payload)))
    schema["fields"] = [f | {"type": _plain(f["type"])} if f["name"] == "timestamp" else f for f in schema["fields"]]
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(schema), record | {"timestamp": micros})
    return build_single_record_container(container.schema_json, container.sync, body.getvalue())


def test_logical_type_values_out_of_range_are_not_enriched():
    """Issue 10 item 5: every enriched message must be readable by fastavro, which converts
    timestamps to datetime (years 1-9999): one out of that range is a decode error instead."""
    readable = _fink_alert_with_timestamp(1_600_000_000_000_000)
    beyond = _fink_alert_with_timestamp(253402300800000000)  # 10000-01-01
    batch = decode_payloads([readable, beyond])
    assert batch.error == [None, "avro_decode: value out of the range of its logical type"]
    with pytest.raises(OverflowError):
        list(fastavro.reader(io.BytesIO(beyond)))
    row = {"t2_status": "cut:bad_quality", "t2_model": "m", "candid": int(batch.candid[0])}
    (enriched,) = list(fastavro.reader(io.BytesIO(enrich_alert(readable, row))))
    assert enriched["timestamp"].year == 2020 and enriched["t2_status"] == "cut:bad_quality"


def test_enrich_refuses_what_decoding_refuses():
    payload = (SAMPLE_ALERTS / "fink-client_datatest" / "ZTF19acihgng.avro").read_bytes()
    reader = fastavro.reader(io.BytesIO(payload))
    out = io.BytesIO()
    fastavro.writer(out, reader.writer_schema, list(reader), codec="bzip2")
    with pytest.raises(EnrichError, match="unsupported codec 'bzip2'"):
        enrich_alert(out.getvalue(), {"t2_status": "ok", "t2_model": "m"})


def test_score_and_deadletter_messages():
    score = json.loads(score_message({"objectId": "ZTF1", "candid": 5, "t2_status": "ok", "t2_class": "SNIa",
                                      "t2_probs": {"SNIa": 1.0}, "t2_snia": 1.0, "t2_model": "m"}))
    assert score == {"objectId": "ZTF1", "candid": 5, "ra": None, "dec": None, "jd": None, "magpsf": None,
                     "fid": None, "t2_status": "ok", "t2_class": "SNIa", "t2_probs": {"SNIa": 1.0}, "t2_snia": 1.0,
                     "t2_model": "m"}
    (dead,) = list(fastavro.reader(io.BytesIO(deadletter_message("avro_decode: bad magic", b"xx", b"k", "ztf_1", 0, 7))))
    assert dead["reason"] == "avro_decode: bad magic" and dead["value"] == b"xx" and dead["offset"] == 7


#: float32 values a JSON writer could round wrongly: tiny, huge, negative zero, 1/3, ulp steps.
AWKWARD_FLOAT32 = np.array([1 / 3, -0.0, 1e-38, 3.4e38, 0.1, -2.5, np.nextafter(np.float32(1), np.float32(2)),
                            1.1754944e-38, 123456.789], dtype=np.float32)


def test_an_embedding_reads_back_as_the_same_float32_from_both_outputs(classified):
    payloads, results = classified
    i = int(results.index[results.t2_status == "ok"][0])
    row = results.iloc[i].to_dict() | {"t2_embedding": AWKWARD_FLOAT32}
    (record,) = list(fastavro.reader(io.BytesIO(enrich_alert(payloads[i], row))))
    assert np.array_equal(np.array(record["t2_embedding"], dtype=np.float32), AWKWARD_FLOAT32)
    assert record["candid"] == row["candid"] and record["t2_class"] == row["t2_class"]
    score = json.loads(score_message(row))
    assert np.array_equal(np.array(score["t2_embedding"], dtype=np.float32), AWKWARD_FLOAT32)
    assert np.signbit(np.float32(score["t2_embedding"][1]))  # -0.0 stays negative
    assert '"t2_embedding":[0.33333334,-0.0,1e-38,' in score_message(row).decode()  # shortest float32 decimals


def test_score_has_the_embedding_key_only_when_embeddings_are_on():
    row = {"objectId": "ZTF1", "candid": 5, "t2_status": "cut:bad_quality", "t2_model": "m"}
    assert "t2_embedding" not in json.loads(score_message(row))
    assert json.loads(score_message(row | {"t2_embedding": None}))["t2_embedding"] is None


def test_a_score_carries_what_follow_up_needs_without_a_join(classified):
    """objectId, candid, the candidate's ra, dec, jd, magpsf, fid (as the packet has them) and the
    t2 fields, for ok and cut alerts; an error row keeps nulls, still valid JSON."""
    payloads, results = classified
    statuses = set()
    for payload, row in zip(payloads, results.to_dict("records")):
        record = next(fastavro.reader(io.BytesIO(payload)))
        candidate = record["candidate"]
        score = json.loads(score_message(row))
        assert list(score) == ["objectId", "candid", "ra", "dec", "jd", "magpsf", "fid", "t2_status", "t2_class",
                               "t2_probs", "t2_snia", "t2_model"]
        assert (score["objectId"], score["candid"]) == (record["objectId"], record["candid"])
        assert (score["ra"], score["dec"], score["jd"]) == (candidate["ra"], candidate["dec"], candidate["jd"])
        assert score["magpsf"] == candidate["magpsf"] and score["fid"] == candidate["fid"]
        statuses.add(score["t2_status"].split(":")[0])
    assert statuses == {"ok", "cut"}
    error_row = classify([b"not avro"]).iloc[0].to_dict()
    assert json.loads(score_message(error_row))["ra"] is None
