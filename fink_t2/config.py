"""Typed configuration of the streaming job, read from TOML (stdlib ``tomllib``).

The dataclass defaults below are the single source of the default values; the packaged
template ``fink_t2/conf/local.toml`` documents them. Unknown sections or keys are errors, so a
typo cannot be silently ignored.
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


def package_file(*parts: str) -> Path:
    """A file shipped inside the ``fink_t2`` package (models, config templates), as a path.

    Resolved with ``importlib.resources``, so it works from a checkout, an editable install and
    a wheel alike, from any working directory (packages installed as plain files, not zipped).
    """
    return Path(str(importlib.resources.files("fink_t2").joinpath(*parts)))


#: Config templates shipped in the package (``fink-t2 config template NAME`` prints one).
CONF_DIR = package_file("conf")
DEFAULT_CONF = CONF_DIR / "local.toml"


class ConfigError(ValueError):
    """The configuration file is missing, malformed or has unknown keys."""


@dataclass(frozen=True)
class KafkaConf:
    bootstrap_servers: str = "127.0.0.1:9092"


@dataclass(frozen=True)
class InputConf:
    subscribe_pattern: str = "ztf_.*"
    starting_offsets: str = "earliest"
    max_offsets_per_trigger: int = 10000
    fail_on_data_loss: bool = False


@dataclass(frozen=True)
class FilterConf:
    """An output selection: alerts with P(c) ≥ ``min_probability`` for at least one c in ``classes``."""

    name: str
    topic: str
    classes: tuple[str, ...]
    min_probability: float = 0.0


@dataclass(frozen=True)
class OutputConf:
    enriched_topic: str = "fink_t2_enriched_ztf"
    scores_topic: str = "fink_t2_scores_ztf"
    deadletter_topic: str = "fink_t2_deadletter_ztf"
    large_messages: str = "python"  # "python": workers produce enriched/dead letters; "spark": Spark's sink
    filters: tuple[FilterConf, ...] = ()
    topic_partitions: int = 2  # partitions of each output topic the job creates at start-up (if absent)
    on_broker_outage: str = "wait"  # "wait": keep retrying until the broker is back; "fail": fail the job
    delivery_timeout_seconds: float = 120.0  # unacknowledged this long = an outage (then wait on, or fail)

    def __post_init__(self) -> None:
        if self.large_messages not in ("python", "spark"):
            raise ConfigError(f"[output] large_messages must be 'python' or 'spark', not {self.large_messages!r}")
        _check_delivery(self)


def _check_delivery(out: "OutputConf") -> None:
    """The output keys of start-up and broker outages: types and ranges."""
    if out.on_broker_outage not in ("wait", "fail"):
        raise ConfigError(f"[output] on_broker_outage must be 'wait' or 'fail', not {out.on_broker_outage!r}")
    if not isinstance(out.delivery_timeout_seconds, (int, float)) or out.delivery_timeout_seconds < 1:
        raise ConfigError(f"[output] delivery_timeout_seconds must be a number >= 1, "
                          f"not {out.delivery_timeout_seconds!r}")
    if not isinstance(out.topic_partitions, int) or out.topic_partitions < 1:
        raise ConfigError(f"[output] topic_partitions must be an integer >= 1, not {out.topic_partitions!r}")


@dataclass(frozen=True)
class CheckpointConf:
    dir: str = "run/checkpoints"


@dataclass(frozen=True)
class SparkConf:
    master: str = "local[2]"
    driver_memory: str = "4g"
    arrow_max_records_per_batch: int = 500
    arrow_max_bytes_per_batch: int = 64 * 1024 * 1024  # bounds a worker's input batch of hostile 10 MiB messages
    shuffle_partitions: int = 2
    trigger_seconds: float = 2.0


@dataclass(frozen=True)
class ModelConf:
    path: str = ""
    num_threads: int = 1


@dataclass(frozen=True)
class Config:
    kafka: KafkaConf = field(default_factory=KafkaConf)
    input: InputConf = field(default_factory=InputConf)
    output: OutputConf = field(default_factory=OutputConf)
    checkpoint: CheckpointConf = field(default_factory=CheckpointConf)
    spark: SparkConf = field(default_factory=SparkConf)
    model: ModelConf = field(default_factory=ModelConf)

    def with_bootstrap(self, bootstrap: str | None) -> "Config":
        """A copy with another Kafka bootstrap (CLI override), or self when None."""
        return self if not bootstrap else dataclasses.replace(self, kafka=KafkaConf(bootstrap))

    def model_path(self) -> str | None:
        """The configured model file, or None for the default model."""
        return self.model.path or None

    def checkpoint_dir(self, base: Path = REPO_ROOT) -> str:
        """Checkpoint root; a relative local path is taken from the repo root."""
        path = self.checkpoint.dir
        return path if "://" in path or Path(path).is_absolute() else str(base / path)


def _build(cls: type, values: dict[str, Any], where: str):
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown key(s) in [{where}]: {', '.join(unknown)}")
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"[{where}]: {exc}") from exc


def load_config(path: str | Path | None = None) -> Config:
    """Read a TOML config; missing keys take the defaults of the dataclasses above."""
    path = Path(path) if path else DEFAULT_CONF
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    sections = {f.name: f for f in dataclasses.fields(Config)}
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s): {', '.join(unknown)}")
    output = dict(raw.get("output", {}))
    filters = tuple(
        _build(FilterConf, f | {"classes": tuple(f.get("classes", ()))}, "output.filters")
        for f in output.pop("filters", [])
    )
    return Config(
        kafka=_build(KafkaConf, raw.get("kafka", {}), "kafka"),
        input=_build(InputConf, raw.get("input", {}), "input"),
        output=_build(OutputConf, output | {"filters": filters}, "output"),
        checkpoint=_build(CheckpointConf, raw.get("checkpoint", {}), "checkpoint"),
        spark=_build(SparkConf, raw.get("spark", {}), "spark"),
        model=_build(ModelConf, raw.get("model", {}), "model"),
    )
