"""``make demo``: the real Kafka → Spark → Kafka job on the shipped sample alerts.

Starts the local broker (unless one already answers), resets the demo topics and its own
checkpoints (``run/demo/checkpoints``, never the configured ones), replays ``data/alerts`` into a
ZTF-like topic, runs the streaming job with the availableNow trigger, reads the output topics
back, prints a summary table and writes a PNG summary. Stops the broker it started.

Resetting deletes topics, so the demo refuses a broker that is not on loopback unless
``allow_remote_broker`` (``fink-t2 demo --allow-remote-broker``).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from fink_t2.kafka import broker
from fink_t2.spark import stream
from fink_t2.config import REPO_ROOT, Config, KafkaConf
from fink_t2.kafka.replay import replay
from fink_t2.kafka.topics import read_topic

SAMPLE_ALERTS = REPO_ROOT / "data" / "alerts"
DEMO_TOPIC = "ztf_sample_programid1"
DEFAULT_SUMMARY_PNG = REPO_ROOT / "out" / "demo_summary.png"
DEMO_CHECKPOINTS = REPO_ROOT / "run" / "demo" / "checkpoints"


class RemoteBrokerRefused(ValueError):
    """The demo would delete topics on a broker that is not on this machine's loopback."""


@dataclass
class StreamSummary:
    """What came out of one run of the job, read back from the output topics."""

    alerts_in: int
    seconds: float
    processing_alerts_per_s: float
    per_topic: dict[str, int]
    per_status: Counter = field(default_factory=Counter)
    per_class: Counter = field(default_factory=Counter)

    def table(self) -> str:
        lines = [f"alerts in: {self.alerts_in}   job wall time: {self.seconds:.1f} s "
                 f"({self.alerts_in / max(self.seconds, 1e-9):.0f} alerts/s incl. Spark and worker start-up); "
                 f"in micro-batches: {self.processing_alerts_per_s:.0f} alerts/s", "",
                 "messages per output topic:"]
        lines += [f"  {topic:<40} {count:>7}" for topic, count in self.per_topic.items()]
        lines += ["", "t2_status (scores topic):"]
        lines += [f"  {status:<40} {count:>7}" for status, count in self.per_status.most_common()]
        lines += ["", "t2_class of classified alerts:"]
        lines += [f"  {name:<40} {count:>7}" for name, count in self.per_class.most_common()]
        return "\n".join(lines)


def demo_config(config: Config, allow_remote_broker: bool = False) -> Config:
    """``config`` with the demo's own checkpoint folder; refuses a non-loopback broker unless allowed."""
    bootstrap = config.kafka.bootstrap_servers
    if not allow_remote_broker and not broker.is_loopback_bootstrap(bootstrap):
        raise RemoteBrokerRefused(f"the demo deletes and recreates its topics; {bootstrap} is not on loopback: "
                                  f"use a local broker, or pass --allow-remote-broker if that is intended")
    return dataclasses.replace(config, checkpoint=dataclasses.replace(config.checkpoint, dir=str(DEMO_CHECKPOINTS)))


def reset_demo_state(config: Config, input_topic: str) -> None:
    """Delete the demo's input/output topics and its checkpoints: each demo run starts clean."""
    broker.delete_topics(config.kafka, [input_topic, *config.output.topics()])
    shutil.rmtree(DEMO_CHECKPOINTS, ignore_errors=True)


def summarize(config: Config, alerts_in: int, seconds: float, stats: stream.RunStats) -> StreamSummary:
    """Read the output topics back and count messages, statuses and classes."""
    per_topic = {topic: len(read_topic(config.kafka, topic)) for topic in config.output.topics()}
    summary = StreamSummary(alerts_in, seconds, stats.alerts_per_second, per_topic)
    for message in read_topic(config.kafka, config.output.scores_topic):
        score = json.loads(message.value)
        summary.per_status[score["t2_status"]] += 1
        if score["t2_class"]:
            summary.per_class[score["t2_class"]] += 1
    return summary


def plot_summary(summary: StreamSummary, out: Path) -> None:
    """Two bar charts: messages per output topic, and classes of the classified alerts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    topics = list(summary.per_topic)
    left.barh(topics, [summary.per_topic[t] for t in topics], color="#4c72b0")
    _label_bars(left, [summary.per_topic[t] for t in topics])
    left.set_xlabel("messages")
    left.set_title(f"{summary.alerts_in} alerts in, {summary.seconds:.1f} s")
    left.invert_yaxis()
    classes = [name for name, _ in summary.per_class.most_common()]
    right.barh(classes, [summary.per_class[c] for c in classes], color="#dd8452")
    _label_bars(right, [summary.per_class[c] for c in classes])
    right.set_xlabel("alerts")
    right.set_title("t2 top class (status ok)")
    right.invert_yaxis()
    fig.suptitle("fink_t2 demo: Kafka → Spark → Kafka")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def _label_bars(ax, values: list[int]) -> None:
    """Write each bar's count at its end."""
    for y, value in enumerate(values):
        ax.text(value, y, f" {value}", va="center", fontsize=9)
    ax.margins(x=0.12)


def _ensure_broker(kafka: KafkaConf) -> bool:
    """Start the local broker unless one answers at ``kafka``'s bootstrap (a broker it starts
    serves ``kafka``'s security protocol and SASL user); True if this call started it."""
    if broker.status(kafka):
        return False
    bootstrap = kafka.bootstrap_servers
    if not broker.is_loopback_bootstrap(bootstrap):
        raise broker.BrokerError(f"no Kafka broker answers at {bootstrap} (a local one starts only on loopback)")
    broker.up(port=int(bootstrap.rsplit(":", 1)[1]), security=kafka)
    return True


def run_demo(config: Config, alerts: list[Path] | None = None, png: Path = DEFAULT_SUMMARY_PNG,
             allow_remote_broker: bool = False) -> StreamSummary:
    """The whole demo; returns the summary (also printed)."""
    config = demo_config(config, allow_remote_broker)
    kafka = config.kafka
    started_broker = _ensure_broker(kafka)
    try:
        reset_demo_state(config, DEMO_TOPIC)
        broker.create_topic(kafka, DEMO_TOPIC, partitions=2)
        stats = replay(alerts or [SAMPLE_ALERTS], DEMO_TOPIC, bootstrap=kafka)
        print(stats.summary(DEMO_TOPIC))
        if stats.failed or stats.incomplete_inputs:
            raise RuntimeError(f"replay lost {stats.failed} messages: {stats.errors[:3]}; "
                               f"incomplete inputs: {stats.incomplete_inputs}")
        start = time.monotonic()
        run_stats = stream.run(config, once=True)
        summary = summarize(config, stats.delivered, time.monotonic() - start, run_stats)
        print(summary.table())
        plot_summary(summary, png)
        print(f"\nsummary plot: {png}")
        return summary
    finally:
        if started_broker:
            broker.down()
