"""``evaluate --astromer-head``: the head and t2 are scored on the same emulated BTS alerts, each by
the stream's own code, with the metrics of ``evaluate``."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from fink_t2.astromer.classify import AstromerStage, run_head
from fink_t2.astromer.head import load_head
from fink_t2.contract import CLASS_NAMES
from fink_t2.science.classify import run_stages
from fink_t2.science.model import DEFAULT_MODEL, load_model
from fink_t2.train import astromer_compare, data, metrics

from tests.astromer.encoders import random_head, stream_encoder
from tests.conftest import shared_path


def test_head_probabilities_go_to_their_t2_columns():
    out = astromer_compare.in_t2_order(np.array([[0.7, 0.3]]), ("SNII", "SNIa"))
    assert out.shape == (1, len(CLASS_NAMES)) and out.sum() == 1.0
    assert out[0, CLASS_NAMES.index("SNII")] == 0.7 and out[0, CLASS_NAMES.index("SNIa")] == 0.3


def test_both_classifiers_are_scored_on_the_same_alerts(tmp_path):
    phot = data.read_bts(shared_path("data", "labeled", "ztf_bts_antares"), split="val")
    phot = phot.subset(np.arange(12))
    alerts = data.sample_alerts(phot, per_object=2, seed=3)
    batch = data.alert_batch(phot, alerts)
    label, object_id = phot.label[alerts.row], phot.object_id[alerts.row].astype(str)
    encoder_path, encoder = stream_encoder(tmp_path)
    head_path = random_head(tmp_path, encoder, ["SNIa", "SNII", "SNIbc", "SLSN-I", "TDE"])
    report = astromer_compare.compare(DEFAULT_MODEL, head_path, encoder_path, batch, label, object_id)

    t2 = run_stages(batch, load_model())
    head, _ = run_head(batch, AstromerStage(encoder, load_head(head_path), False), None)
    both = [i for i in range(len(batch)) if t2.status[i] == "ok" and head.status[i] == "ok"]
    assert report["alerts"] == len(both) > 10 and report["objects"] == len(set(object_id[both]))
    rows = [list(t2.light_curves.index).index(i) for i in both]
    _, inverse, counts = np.unique(object_id[both], return_inverse=True, return_counts=True)
    expected = metrics.summary(label[both], t2.probs[rows], 1.0 / counts[inverse])
    assert {k: report["t2"][k] for k in expected} == pytest.approx(expected, rel=1e-12)
    assert report["astromer_minus_t2_macro_f1"] == report["astromer"]["macro_f1"] - report["t2"]["macro_f1"]
    assert 0 <= report["astromer"]["accuracy"] <= 1 and report["head_classes"][0] == "SNIa"


def test_a_head_over_other_classes_cannot_be_scored_on_t2_labels(tmp_path):
    from fink_t2.astromer.head import HeadError

    encoder_path, encoder = stream_encoder(tmp_path)
    head_path = random_head(tmp_path, encoder, ["SN Ia", "other"])
    with pytest.raises(HeadError, match=r"class\(es\) \['SN Ia', 'other'\] are not t2 classes"):
        astromer_compare.compare(DEFAULT_MODEL, head_path, encoder_path, None, np.array([]), np.array([]))


def test_the_comparison_needs_emulated_alerts():
    from fink_t2.train.cli import _astromer_comparison

    with pytest.raises(ValueError, match="use --mode alert"):
        _astromer_comparison(argparse.Namespace(per_object=1, model="m", astromer_head="h", encoder=None),
                             {"mode": "full", "source": "plasticc", "directory": "d", "split": "all"})
