"""The per-micro-batch counts of the progress lines, attributed by offsets (no Spark run).

The listener bus runs behind the workers: when the progress event of batch N is handled, tasks
of batch N+1 may already have merged their counts into the accumulator. Each line must still hold
exactly the alerts of its own batch (a fresh-clone CI run under load once saw it otherwise).
"""
from __future__ import annotations

import json
from collections import Counter
from types import SimpleNamespace

import pandas as pd

from fink_t2.config import MonitoringConf
from fink_t2.spark.monitoring import ProgressMonitor
from fink_t2.spark.stream import Tally

TOPIC = "ztf"


def worker_tally(partition: int, offsets: range, status: str) -> Tally:
    """What a worker adds for one frame of Kafka rows at ``offsets`` of ``partition``."""
    frame = pd.DataFrame({"topic": TOPIC, "partition": partition, "offset": list(offsets)})
    counts = Tally(alerts=len(frame), statuses=Counter({status: len(frame)}),
                   topics=Counter({"scores": len(frame)}))
    counts.keep_frame(frame)
    return counts


def progress(batch_id: int, start: dict[int, int], end: dict[int, int], rows: int):
    """A ``StreamingQueryProgress`` as the listener reads it (Kafka offsets as Spark's JSON strings)."""
    source = SimpleNamespace(startOffset=json.dumps({TOPIC: {str(p): o for p, o in start.items()}}),
                             endOffset=json.dumps({TOPIC: {str(p): o for p, o in end.items()}}))
    return SimpleNamespace(progress=SimpleNamespace(
        name="classify", batchId=batch_id, timestamp="2026-12-02T00:00:00Z", numInputRows=rows,
        inputRowsPerSecond=1.0, processedRowsPerSecond=1.0, batchDuration=1000, durationMs={},
        sources=[source]))


def test_next_batch_counts_merged_early_stay_for_its_own_line(tmp_path):
    jsonl = tmp_path / "progress.jsonl"
    accumulator = SimpleNamespace(value=Tally())
    monitor = ProgressMonitor(MonitoringConf(progress_jsonl=str(jsonl)), accumulator)
    # batch 0: partition 0 offsets 0-29 (ok), partition 1 offsets 0-9 (cut)
    accumulator.value.add(worker_tally(0, range(0, 20), "ok")).add(worker_tally(0, range(20, 30), "ok"))
    accumulator.value.add(worker_tally(1, range(0, 10), "cut:x"))
    # batch 1's first task finished before batch 0's event reached the listener
    accumulator.value.add(worker_tally(0, range(30, 70), "error:avro_decode"))
    monitor.onQueryProgress(progress(0, {0: 0, 1: 0}, {0: 30, 1: 10}, rows=40))
    accumulator.value.add(worker_tally(1, range(10, 15), "cut:x"))
    monitor.onQueryProgress(progress(1, {0: 30, 1: 10}, {0: 70, 1: 15}, rows=45))
    monitor.close()

    first, second = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert first["statuses"] == {"ok": 30, "cut:x": 10} and first["topics"] == {"scores": 40}
    assert second["statuses"] == {"error:avro_decode": 40, "cut:x": 5} and second["topics"] == {"scores": 45}
    assert accumulator.value.frames == {}  # taken: the tally does not grow over a night
    assert accumulator.value.alerts == 85  # the run's totals are untouched


def test_retried_task_is_counted_once(tmp_path):
    accumulator = SimpleNamespace(value=Tally())
    monitor = ProgressMonitor(MonitoringConf(progress_jsonl=str(tmp_path / "p.jsonl")), accumulator)
    accumulator.value.add(worker_tally(0, range(0, 8), "ok")).add(worker_tally(0, range(0, 8), "ok"))
    monitor.onQueryProgress(progress(0, {0: 0}, {0: 8}, rows=8))
    monitor.close()
    line = json.loads((tmp_path / "p.jsonl").read_text())
    assert line["statuses"] == {"ok": 8}
