"""`fink-t2 embed` end to end: real alerts and MACHO light curves in, Parquet embeddings out.

Encoders: a tiny randomly initialised two-band encoder exported here, and the published v0 MACHO
checkpoint directory (converted through TF by the command, cached in a temp FINK_T2_CACHE).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

if importlib.util.find_spec("tf_keras") is None:  # not importorskip: tf_setup must import TF first
    pytest.skip("the training stack (make train-venv) is not installed", allow_module_level=True)

from fink_t2.astromer.embed import _alert_chunks, items_from_alerts  # noqa: E402
from fink_t2.astromer.encoder import DEFAULT_ENCODER, Encoder  # noqa: E402
from fink_t2.astromer.inputs import batch_v0  # noqa: E402
from fink_t2.cli import main  # noqa: E402
from fink_t2.train import tf_setup  # noqa: E402
from fink_t2.train.astromer_export import export_encoder  # noqa: E402
from fink_t2.train.astromer_network import EncoderConfig, build_encoder  # noqa: E402
from tests.astromer.macho import SAMPLES_DIR, macho_light_curves, require_reference  # noqa: E402

ALERTS = Path(__file__).resolve().parents[2] / "data" / "alerts"
TINY = EncoderConfig(variant="twoband", d_model=32, layers=1, heads=2, dff=64, max_obs=32)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tf_setup.keras().utils.set_random_seed(5)
    return export_encoder(build_encoder(TINY), TINY, tmp_path_factory.mktemp("enc"), "tiny-gr", True,
                          {"source": "random init (test)"})


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FINK_T2_CACHE", str(tmp_path / "cache"))


def test_alerts_embed_deterministically(tiny, tmp_path):
    outs = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    for out in outs:
        assert main(["embed", str(ALERTS), "--out", str(out), "--encoder", str(tiny)]) == 0
    assert outs[0].read_bytes() == outs[1].read_bytes()
    table = pq.read_table(outs[0]).to_pandas()
    assert len(table) == 139 and set(table["encoder"]) == {"tiny-gr"}
    ok = table[table["status"] == "ok"]
    assert len(ok) >= 70 and all(len(e) == TINY.d_model for e in ok["embedding"])
    assert table.loc[table["status"] != "ok", "embedding"].isna().all()
    # the same numbers as the library path: items → windows → pooled
    encoder = Encoder.load(tiny)
    items = [i for i in items_from_alerts(next(_alert_chunks([ALERTS]))) if i.light_curve is not None]
    expected = encoder.pooled(encoder.windows([i.light_curve for i in items]))
    np.testing.assert_array_equal(np.stack(ok["embedding"].to_numpy()), expected)
    np.testing.assert_array_equal(ok["n_obs"], encoder.windows([i.light_curve for i in items]).valid.sum(axis=1))


def _macho_csv(path: Path) -> Path:
    """Both MACHO bands of every sample as one table (band names 'B' and 'R')."""
    frames = []
    for file in sorted(SAMPLES_DIR.glob("lc_*.mjd")):
        mjd, mag, err = np.loadtxt(file, comments="#", unpack=True, ndmin=2)
        frames.append(pd.DataFrame({"object_id": file.name[3:].rsplit(".", 2)[0],
                                    "mjd": mjd, "band": file.name.rsplit(".", 2)[1], "mag": mag, "magerr": err}))
    pd.concat(frames).to_csv(path, index=False)
    return path


def test_v0_checkpoint_embeds_one_band_of_a_csv(cache, tmp_path):
    reference = require_reference()
    out = tmp_path / "v0.parquet"
    assert main(["embed", str(_macho_csv(tmp_path / "macho.csv")), "--out", str(out), "--encoder", str(reference),
                 "--band", "R"]) == 0
    table = pq.read_table(out).to_pandas().set_index("object_id")
    curves = macho_light_curves()
    assert (table["status"] == "ok").all() and len(table) == len(curves)
    converted = next((tmp_path / "cache" / "astromer").glob("*/astromer-v0-*.tflite"))
    expected = Encoder.load(converted).pooled(batch_v0(curves))
    got = np.stack([table.loc[lc.object_id.removeprefix("lc_"), "embedding"] for lc in curves])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)  # CSV round trip of the MJDs: 1e-6 d


def test_csv_without_a_column_is_one_clear_error(tiny, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"object_id": ["a"], "mjd": [1.0], "mag": [18.0], "magerr": [0.1]}).to_csv(bad, index=False)
    assert main(["embed", str(bad), "--out", str(tmp_path / "x.parquet"), "--encoder", str(tiny)]) == 2
    assert "lacks columns ['band']" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()


def test_bad_objects_get_reasons_and_the_rest_goes_on(tiny, tmp_path):
    """An object named "nan" is an object (pandas read it as a missing id before), its inf a reason."""
    table = pd.DataFrame({"object_id": ["good", "good", "nan", "ionly"], "mjd": [1.0, 2.0, 3.0, 4.0],
                          "band": ["g", "r", "g", "i"], "mag": [18.0, 18.2, np.inf, 17.0], "magerr": [0.1] * 4})
    table.to_csv(tmp_path / "t.csv", index=False)
    assert main(["embed", str(tmp_path / "t.csv"), "--out", str(tmp_path / "t.parquet"), "--encoder", str(tiny)]) == 0
    out = pq.read_table(tmp_path / "t.parquet").to_pandas()
    assert out["status"].tolist() == ["ok", "error:non_finite:mag", "error:no_observations"]
    assert out["n_obs"].tolist() == [2, 0, 0]


@pytest.mark.skipif(DEFAULT_ENCODER.is_file(), reason="the shipped encoder exists")
def test_missing_shipped_encoder_is_a_clear_error(tmp_path, capsys):
    assert main(["embed", str(ALERTS), "--out", str(tmp_path / "x.parquet")]) == 2
    assert "pass --encoder" in capsys.readouterr().err


def test_truncated_archive_embeds_what_it_holds_and_exits_1(tiny, tmp_path, capsys):
    from tests.conftest import truncated_archive

    archive, readable = truncated_archive(tmp_path, keep=0.6)
    out = tmp_path / "cut.parquet"
    assert main(["embed", str(archive), "--out", str(out), "--encoder", str(tiny)]) == 1
    table = pq.read_table(out).to_pandas()
    assert table["candid"].tolist()[:-1] == [int(f.stem) for f in readable]
    assert table["status"].iloc[-1].startswith(f"error:archive_incomplete: {archive}")
    assert "incomplete input" in capsys.readouterr().err


def test_a_band_the_two_band_encoder_does_not_know_is_refused(tiny, tmp_path, capsys):
    """Was: rows of band 'R' silently given the g index."""
    assert main(["embed", str(ALERTS), "--out", str(tmp_path / "x.parquet"), "--encoder", str(tiny), "--band", "R"]) == 2
    assert "knows bands ['g', 'r']" in capsys.readouterr().err
