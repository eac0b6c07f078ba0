"""fink-t2 bench --quick --no-stream: the JSON is complete and sane (no timing thresholds)."""
from __future__ import annotations

import json
import math

from fink_t2.cli import main
from fink_t2.tools.bench import README_BEGIN, README_END

from tests.astromer.encoders import stream_encoder

REQUIRED = ("classified_per_s_core", "reference_classified_per_s_core", "speedup_vs_reference",
            "decoded_per_s_core", "gp_classified_per_s_core", "inference_classified_per_s_core",
            "output_encoding_per_s_core", "classify_all_per_s_core")
EMBEDDING_KEYS = ("embedding_classified_per_s_core", "embedding_ms_per_classified_alert",
                  "classify_all_with_embeddings_per_s_core", "classified_with_embeddings_per_s_core")


def test_quick_bench_json_is_complete_and_consistent(tmp_path, capsys):
    out, png, readme = tmp_path / "bench.json", tmp_path / "bench.png", tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n{README_BEGIN}\nold figures\n{README_END}\nafter\n")
    encoder_path, encoder = stream_encoder(tmp_path)
    assert main(["bench", "--quick", "--no-stream", "--n", "400", "--out", str(out), "--plot", str(png),
                 "--readme", str(readme), "--encoder", str(encoder_path)]) == 0
    figures = json.loads(out.read_text())
    for key in REQUIRED:
        assert figures[key] > 0 and math.isfinite(figures[key]), key
    assert figures["n_alerts"] == 400 and 0 < figures["classified_fraction"] < 1
    assert math.isclose(figures["speedup_vs_reference"],
                        figures["classified_per_s_core"] / figures["reference_classified_per_s_core"], rel_tol=1e-9)
    assert math.isclose(figures["classified_per_s_core"],
                        figures["classify_all_per_s_core"] * figures["classified_fraction"], rel_tol=0.02)
    for key in EMBEDDING_KEYS:
        assert figures[key] > 0 and math.isfinite(figures[key]), key
    assert figures["embedding_dim"] == encoder.width and figures["encoder"] == str(encoder_path)
    assert math.isclose(figures["embedding_ms_per_classified_alert"], 1000 / figures["embedding_classified_per_s_core"])
    assert math.isclose(figures["classified_with_embeddings_per_s_core"],
                        figures["classify_all_with_embeddings_per_s_core"] * figures["classified_fraction"],
                        rel_tol=0.02)
    # the whole path cannot be faster than its slowest stage
    assert figures["classify_all_per_s_core"] <= figures["decoded_per_s_core"] * 1.05
    env = figures["environment"]
    assert env["pyspark"] and env["cpu_count"] >= 1 and env["git_commit"]
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "speedup_vs_reference" in capsys.readouterr().out
    # the README block is this run's figures, with its provenance; the text around it is kept
    text = readme.read_text()
    assert text.startswith("# title\n\nbefore\n") and text.endswith("after\n") and "old figures" not in text
    assert f"commit {env['git_commit']}" in text and env["date"] in text
    assert f"| {figures['classified_per_s_core']:,.0f} |" in text
    assert f"| {figures['speedup_vs_reference']:.1f}× |" in text
    assert f"| {figures['classified_with_embeddings_per_s_core']:,.0f} | ≥ 1,000" in text
    assert f"encoder {encoder_path.name} (d = {encoder.width})" in text
