"""What `fink-t2 embed` takes from its inputs: the light curves of a CSV table and of real alerts,
and the per-object reasons when there is nothing to embed (no encoder needed here)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fink_t2.alerts.sources import iter_records
from fink_t2.astromer.embed import EmbedInputError, JD_MINUS_MJD, items_from_alerts, items_from_table, _alert_chunks
from fink_t2.alerts.batch import NEGATIVE_SUBTRACTION

ALERTS = Path(__file__).resolve().parents[2] / "data" / "alerts"


def _table(**overrides) -> pd.DataFrame:
    table = pd.DataFrame({"object_id": ["a", "a", "a", "b", "c", "c"], "mjd": [3.0, 1.0, 2.0, 5.0, 1.0, 2.0],
                          "band": ["g", "r", "i", "i", "g", "r"], "mag": [18.0, 18.5, 19.0, 17.0, 20.0, 20.1],
                          "magerr": [0.1] * 6})
    return table.assign(**overrides)


def test_table_objects_in_first_appearance_order_with_g_and_r_only():
    items = items_from_table(_table())
    assert [i.object_id for i in items] == ["a", "b", "c"]
    a = items[0].light_curve
    np.testing.assert_array_equal(a.mjd, [3.0, 1.0])  # the i row dropped; windows sort by time later
    np.testing.assert_array_equal(a.band, [0, 1])
    assert items[1].light_curve is None and items[1].error == "error:no_observations"  # only i band


def test_band_option_picks_the_rows_of_one_band():
    items = items_from_table(_table(), band="i")
    assert [len(i.light_curve.mjd) if i.light_curve else 0 for i in items] == [1, 1, 0]


def test_non_finite_values_are_a_per_object_reason():
    items = items_from_table(_table(mag=[18.0, np.nan, 19.0, 17.0, 20.0, 20.1],
                                    mjd=["3", "1", "2", "5", "x", "2"]))
    assert [i.error for i in items] == ["error:non_finite:mag", "error:no_observations", "error:non_finite:mjd"]


def test_missing_columns_are_one_clear_error():
    with pytest.raises(EmbedInputError, match=r"lacks columns \['magerr'\]"):
        items_from_table(_table().drop(columns="magerr"))


def test_missing_object_id_is_a_reason():
    items = items_from_table(_table(object_id=["a", None, "a", "b", "c", "c"]))
    assert [i.error for i in items if i.object_id == ""] == ["error:missing_object_id"]


def test_alert_light_curves_are_the_positive_g_r_detections():
    """Against the alert records (iter_records): the same points, JD → MJD, a repeated (jd, fid) once."""
    batch = next(_alert_chunks([ALERTS]))
    items = items_from_alerts(batch)
    records = {int(r.record["candidate"]["candid"]): r.record for r in iter_records([ALERTS])}
    checked = 0
    for item in items:
        record = records[item.candid]
        points = [p for p in [*(record.get("prv_candidates") or ()), record["candidate"]]
                  if p and p.get("magpsf") is not None and p["fid"] in (1, 2)]
        positive = {}
        for p in points:  # a repeated (jd, fid) keeps its first value in packet order, as the t2 light curves do
            if p["isdiffpos"] not in NEGATIVE_SUBTRACTION:
                positive.setdefault((p["jd"], p["fid"]), p["magpsf"])
        if item.light_curve is None:
            assert not positive and item.error == "error:only_negative_subtractions"
            continue
        lc = item.light_curve
        order = np.lexsort((lc.band, lc.mjd))
        expected = sorted(positive.items())
        np.testing.assert_allclose(lc.mjd[order], [jd - JD_MINUS_MJD for (jd, _), _ in expected], rtol=0, atol=0)
        np.testing.assert_array_equal(lc.band[order] + 1, [fid for (_, fid), _ in expected])
        np.testing.assert_array_equal(lc.mag[order], [mag for _, mag in expected])
        checked += 1
    assert checked >= 70 and len(items) == 139
