"""`fink-t2 bench --lsst-night`: the offered schedule, the replayed copies of real alerts, and the
figures computed from append times, progress lines and samples."""
from __future__ import annotations

import io
import json

import fastavro
import numpy as np
import pytest

from fink_t2.science.classify import classify
from fink_t2.science.model import load_model
from fink_t2.tools.bench import load_messages
from fink_t2.tools.lsst_night import (CANDID_BASE, DRAIN_TIMEOUT_S, INPUT_TOPIC, README_BEGIN, README_END,
                                      WARMUP_ALERTS, MessageFactory, NightPlan, capacity,
                                      latency_figures, processed_offsets, read_progress, run_lsst_night,
                                      second_half_rss_trend, trend_per_minute, verdicts, write_outputs)

from tests.conftest import SAMPLE_ALERTS


def test_the_default_plan_is_an_lsst_night_rate_plus_five_bursts_in_30_minutes():
    plan = NightPlan()
    assert plan.rate * 36_000 == 10_080_000  # ~10 M alerts in a 10-hour night
    assert plan.total == 280 * 1800 + 10_000 * 5  # bursts at 300, 600, … 1500 s; none at the very end
    assert plan.offered_by(299.99) == int(299.99 * 280)
    assert plan.offered_by(300.0) == 84_000 + 10_000
    assert plan.offered_by(-5) == 0 and plan.offered_by(10**6) == plan.total


@pytest.mark.parametrize("bad", [{"rate": 0}, {"minutes": -1}, {"burst_size": -1}, {"burst_period_s": 0}])
def test_a_plan_without_load_or_time_is_refused(bad):
    with pytest.raises(ValueError, match="LSST-night plan"):
        NightPlan(**bad)


@pytest.fixture(scope="module")
def sample_messages() -> list[bytes]:
    return load_messages([SAMPLE_ALERTS])


def test_a_copy_is_the_real_alert_with_its_own_candid(sample_messages):
    factory = MessageFactory(sample_messages)
    n = len(sample_messages)
    for k in (0, 7, n + 7, 10 * n + 3):
        key, value = factory.message(k)
        copy = next(fastavro.reader(io.BytesIO(value)))
        original = next(fastavro.reader(io.BytesIO(sample_messages[k % n])))
        assert key == str(CANDID_BASE + k).encode()
        assert copy["candid"] == copy["candidate"]["candid"] == CANDID_BASE + k
        assert {**copy, "candid": None, "candidate": {**copy["candidate"], "candid": None}} == \
               {**original, "candid": None, "candidate": {**original["candidate"], "candid": None}}


def test_copies_classify_like_their_originals(sample_messages):
    factory = MessageFactory(sample_messages)
    model = load_model(None)
    copies = classify([factory.message(k)[1] for k in range(len(sample_messages))], model)
    originals = classify(sample_messages, model)
    assert list(copies["t2_status"]) == list(originals["t2_status"])
    ok = (originals["t2_status"] == "ok").to_numpy()
    assert ok.sum() > 0
    np.testing.assert_array_equal(copies.loc[ok, "t2_snia"].to_numpy(), originals.loc[ok, "t2_snia"].to_numpy())


def test_latency_percentiles_and_missing_outputs():
    sent = {str(k).encode(): 1_000_000 + 10 * k for k in range(101)}
    arrived = {key: t + 1000 * (int(key) + 1) for key, t in sent.items() if int(key) != 100}  # 1 … 100 s
    figures = latency_figures(sent, arrived)
    assert (figures["sent"], figures["matched"], figures["missing"]) == (101, 100, 1)
    assert figures["p50_s"] == pytest.approx(50.5)  # linear interpolation between 50 and 51 s
    assert figures["p99_s"] == pytest.approx(99.01) and figures["max_s"] == 100.0
    assert "p50_s" not in latency_figures(sent, {})


def test_progress_lines_give_processed_offsets_and_capacity(tmp_path):
    path = tmp_path / "progress.jsonl"
    lines = [{"event": "started", "query": "classify"},
             {"event": "progress", "query": "classify", "alerts_in": 0, "batch_duration_s": 0.5,
              "end_offsets": {"in": {"0": 0, "1": 0}}},
             {"event": "progress", "query": "classify", "alerts_in": 300, "batch_duration_s": 2.0,
              "end_offsets": {"in": {"0": 150, "1": 150}}},
             {"event": "progress", "query": "filter-x", "alerts_in": 9, "batch_duration_s": 1.0, "end_offsets": {}},
             {"event": "progress", "query": "classify", "alerts_in": 100, "batch_duration_s": 0.5,
              "end_offsets": {"in": {"0": 210, "1": 190}}}]
    path.write_text("\n".join(json.dumps(line) for line in lines) + '\n{"event": "progr')  # a line being written
    classify_lines = read_progress(path, "classify")
    assert len(classify_lines) == 3
    assert processed_offsets(classify_lines, "in") == 400 and processed_offsets(classify_lines, "other") == 0
    assert capacity(classify_lines) == pytest.approx(400 / 2.5)  # idle batches do not count


def test_trend_is_the_fitted_slope_per_minute_after_the_first_minute():
    t = np.arange(0, 600, 1.0)
    rss = np.where(t < 60, 100.0, 500.0 + 2.0 * t / 60.0)  # start-up, then +2 MiB/min
    assert trend_per_minute(t, rss) == pytest.approx(2.0)
    assert trend_per_minute(t[:2], rss[:2]) == 0.0


@pytest.mark.integration
def test_a_short_night_gives_every_alert_an_output_in_both_phases(kafka_jars, tmp_path):
    """12 s at 20 alerts/s plus a burst of 100: the floor copies and the job scores every alert once,
    latencies are positive (both ends are the one broker's append clock), the JSON lines count them."""
    plan = NightPlan(rate=20, burst_size=100, burst_period_s=6, minutes=0.2)
    run_dir = tmp_path / "night"
    figures = run_lsst_night(plan, [str(SAMPLE_ALERTS)], None, run_dir=run_dir)
    assert plan.total == 340 and figures["offered_alerts"] == 340
    for phase in ("floor", "job"):
        f = figures[phase]
        assert (f["latency_sent"], f["latency_matched"], f["latency_missing"]) == (340, 340, 0), phase
        assert 0 < f["latency_p50_s"] <= f["latency_p99_s"] <= f["latency_max_s"] < DRAIN_TIMEOUT_S
        assert f["drained"] and f["send_failures"] == 0
        assert len(f["series"]["latency_s"]) == 340 and len(f["series"]["t"]) >= 10  # sampled every second
    job = figures["job"]
    assert job["job_exit_code"] == figures["floor"]["floor_exit_code"] == figures["floor"]["drain_exit_code"] == 0
    assert job["worker_rss_max_mib"] > 0
    assert figures["floor"]["drain_alerts_per_s"] > 0 and figures["ratio"]["capacity"] > 0
    lines = read_progress(run_dir / "job-progress.jsonl", "classify")
    assert sum(line["alerts_in"] for line in lines) == WARMUP_ALERTS + 340
    assert sum(sum(line["statuses"].values()) for line in lines) == WARMUP_ALERTS + 340
    assert processed_offsets(lines, INPUT_TOPIC) == WARMUP_ALERTS + 340
    out, png, readme = tmp_path / "night.json", tmp_path / "night.png", tmp_path / "README.md"
    readme.write_text(f"before\n{README_BEGIN}\nold\n{README_END}\nafter\n")
    write_outputs(figures, str(out), str(png), str(readme), "make lsst-night MINUTES=0.2")
    text = readme.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "\nold\n" not in text
    assert f"commit {figures['environment']['git_commit']}" in text and "`make lsst-night MINUTES=0.2`" in text
    assert f"| latency p99, s | {job['latency_p99_s']:.2f} | {figures['floor']['latency_p99_s']:.2f} |" in text
    assert json.loads(out.read_text())["job"]["latency_matched"] == 340 and png.read_bytes()[:4] == b"\x89PNG"


def _rss_figures(rss: np.ndarray, minutes: float = 30.0) -> dict:
    t = np.arange(len(rss), dtype=float)
    job = {"latency_p99_s": 1.0, "backlog_at_replay_end": 0, "latency_missing": 0,
           "worker_rss_max_mib": float(rss.max()), "series": {"t": t.tolist(), "worker_rss_mib": rss.tolist()}}
    return {"job": job, "plan": {"minutes": minutes, "rate": 280.0}}


def test_rss_steps_to_a_high_water_mark_are_flat_a_leak_is_not():
    """The shape of the 30-minute run of 2026-12-02: steps at the first two bursts (300 s, 600 s), then
    a plateau; the whole-run slope (+2.8 MiB/min there) counts the steps, the second half does not."""
    t = np.arange(0, 1800, 1.0)
    steps = 417.0 + np.where(t >= 300, 83.0, 0.0) + np.where(t >= 600, 35.0, 0.0)
    figures = _rss_figures(steps)
    assert trend_per_minute(t, steps) > 2.0
    assert second_half_rss_trend(figures) == pytest.approx(0.0, abs=1e-9)
    assert verdicts(figures)["rss"]
    slow = 417.0 + 1.0 * t / 60.0  # +1 MiB/min: 30 MiB over the run, 7 % of the 447 MiB largest worker
    assert second_half_rss_trend(_rss_figures(slow)) == pytest.approx(1.0)
    assert verdicts(_rss_figures(slow))["rss"]
    leak = 417.0 + 2.0 * t / 60.0  # +2 MiB/min: 60 MiB, 13 % of the 477 MiB largest worker
    assert not verdicts(_rss_figures(leak))["rss"]


def _phase(**extra) -> dict:
    return {"latency_sent": 10, "latency_matched": 10, "latency_missing": 0, "latency_p50_s": 1.0,
            "latency_p95_s": 2.0, "latency_p99_s": 3.0, "latency_max_s": 4.0, "throughput_alerts_per_s": 280.0,
            "capacity_alerts_per_s": 600.0, "burst_capacity_alerts_per_s": 1500.0, "backlog_max": 100,
            "backlog_at_replay_end": 5, "worker_rss_first_mib": 400.0, "worker_rss_last_mib": 450.0,
            "worker_rss_max_mib": 460.0, "worker_rss_trend_mib_per_min": 1.5, **extra}


def test_a_block_is_written_again_from_the_json_of_a_run(tmp_path):
    from fink_t2.cli import main

    t = np.arange(0, 1800, 1.0)
    rss = 400.0 + np.where(t >= 300, 50.0, 0.0)
    figures = {"plan": {"rate": 280.0, "burst_size": 10000, "burst_period_s": 300.0, "minutes": 30.0},
               "offered_alerts": 10, "trigger_seconds": 2.0, "max_offsets_per_trigger": 10000,
               "environment": {"date": "2026-12-02 17:25 UTC", "git_commit": "abc1234", "cpu_model": "CPU",
                               "cpu_count": 2, "python": "3.11", "pyspark": "4.0.0"},
               "job": _phase(series={"t": t.tolist(), "worker_rss_mib": rss.tolist()}),
               "floor": _phase(drain_alerts_per_s=2000.0),
               "ratio": {"capacity": 0.75, "latency_p50": 1.0, "latency_p95": 1.0, "latency_p99": 1.0,
                         "latency_max": 1.0}}
    out = tmp_path / "night.json"
    out.write_text(json.dumps({**figures, "command": "make lsst-night MINUTES=30"}))
    readme = tmp_path / "README.md"
    readme.write_text(f"a\n{README_BEGIN}\nold\n{README_END}\nb\n")
    assert main(["bench", "--lsst-night", "--from-json", str(out), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "commit abc1234" in text and "`make lsst-night MINUTES=30`" in text
    assert f"--from-json {out}` at commit" in text and "\nold\n" not in text
    row = next(line for line in text.splitlines() if "RSS trend over the second half" in line)
    assert abs(float(row.split("|")[2])) < 0.005 and row.endswith("| flat ✔ |")  # a step, then a plateau
