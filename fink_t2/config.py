"""Typed configuration of the streaming job, read from TOML (stdlib ``tomllib``; ``tomli``, the same
parser, before Python 3.11).

Each key is declared once, in the dataclasses below: its type (the annotation), its default and
its value rules (``key(default, *rules)``). Every section checks itself when it is built, from
TOML or in code, and the loader reports every problem of a file at once. Unknown sections or keys
are errors, so a typo cannot be silently ignored. The packaged template ``fink_t2/conf/local.toml``
documents the keys.

To add a key: one annotated field with ``key(default, rule, ...)`` in its section, one commented
line in ``fink_t2/conf/local.toml``.
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import json
import os
import re
import subprocess
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from fink_t2.contract import CLASS_NAMES

if sys.version_info >= (3, 11):
    import tomllib
else:  # the science core and the Fink UDFs also run on Python 3.9 and 3.10 (setup.py: tomli there)
    import tomli as tomllib

REPO_ROOT = Path(__file__).resolve().parents[1]


def git_commit() -> str | None:
    """Short commit of the checkout this code runs from, ``-dirty`` when files differ from it; None outside git.

    Only a checkout whose top level holds the package counts: an install in a virtualenv that happens to
    sit inside another repository (``site-packages/`` has no ``.git``) is not described as that repository.
    """
    if not (REPO_ROOT / ".git").exists():  # a directory, or a file in a git worktree
        return None
    try:
        described = subprocess.run(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty", "--exclude=*",
                                    "--abbrev=7"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return described.stdout.strip() if described.returncode == 0 else None


def package_file(*parts: str) -> Path:
    """A file shipped inside the ``fink_t2`` package (models, config templates), as a path.

    Resolved with ``importlib.resources``, so it works from a checkout, an editable install and
    a wheel alike, from any working directory (packages installed as plain files, not zipped).
    """
    return Path(str(importlib.resources.files("fink_t2").joinpath(*parts)))


#: Config templates shipped in the package (``fink-t2 config template NAME`` prints one).
CONF_DIR = package_file("conf")
CONF_TEMPLATES: dict[str, Path] = {"local": CONF_DIR / "local.toml", "cluster": CONF_DIR / "cluster.example.toml"}
DEFAULT_CONF = CONF_TEMPLATES["local"]


class ConfigError(ValueError):
    """The configuration is missing, malformed, or has unknown keys or invalid values."""

    def __init__(self, problems: str | list[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n  ".join(self.problems))


# ----------------------------------------------------------------------------------- rules
#: A value rule: the problem with a (well-typed) value, or None when it is fine.
Rule = Callable[[Any], "str | None"]


#: ``key(REQUIRED, ...)``: a key without default
REQUIRED: Any = dataclasses.MISSING


def key(default: Any, *rules: Rule) -> Any:
    """A config key: its default (or ``REQUIRED``) and its value rules (its type is the annotation)."""
    return field(default=default, metadata={"rules": rules})


def at_least(low: float) -> Rule:
    return lambda value: None if value >= low else f"must be >= {low}"


def greater_than(low: float) -> Rule:
    return lambda value: None if value > low else f"must be > {low}"


def between(low: float, high: float) -> Rule:
    return lambda value: None if low <= value <= high else f"must be between {low} and {high}"


def one_of(*choices: str) -> Rule:
    return lambda value: None if value in choices else f"must be one of {', '.join(map(repr, choices))}"


def matching(pattern: str, meaning: str) -> Rule:
    """The value (or each comma-separated part of it) must fully match ``pattern``."""
    compiled = re.compile(pattern)
    return lambda value: None if compiled.fullmatch(value) else f"must be {meaning}"


def not_empty(value: Any) -> str | None:
    return None if value else "must not be empty"


def python_regex(value: str) -> str | None:
    try:
        re.compile(value)
    except re.error as exc:
        return f"is not a regular expression: {exc}"
    return None


def kafka_offsets(value: str) -> str | None:
    """Spark's ``startingOffsets``: earliest, latest or a JSON object of per-partition offsets."""
    if value in ("earliest", "latest"):
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = None
    return None if isinstance(parsed, dict) else "must be 'earliest', 'latest' or a JSON object of offsets"


def bootstrap_list(value: str) -> str | None:
    """Comma-separated ``HOST:PORT`` entries, ports 1-65535."""
    for entry in value.split(","):
        found = _BOOTSTRAP_ENTRY.fullmatch(entry.strip())
        if not found or not 1 <= int(found["port"]) <= 65535:
            return f"must be HOST:PORT[,HOST:PORT...], not {entry.strip()!r}"
    return None


def t2_classes(value: tuple[str, ...]) -> str | None:
    unknown = [name for name in value if name not in CLASS_NAMES]
    if not value:
        return "must name at least one class"
    return f"unknown class(es) {', '.join(map(repr, unknown))} (t2 classes: {', '.join(CLASS_NAMES)})" \
        if unknown else None


_BOOTSTRAP_ENTRY = re.compile(r"(?:[A-Za-z_]+://)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(?P<port>\d{1,5})")
TOPIC_NAME = matching(r"(?!\.{1,2}$)[A-Za-z0-9._-]{1,249}", "a Kafka topic name (letters, digits, '.', '_', '-')")
JVM_MEMORY = matching(r"(?i)\d+([kmgtp]b?|b)?", "a JVM memory size such as '4g' or '512m'")
SPARK_MASTER = matching(r"|local(\[(\d+|\*)(,\d+)?\])?|(spark|k8s|mesos)://\S+|yarn",
                        "'' (from spark-submit), local[N], spark://HOST:PORT, yarn or k8s://URL")


# --------------------------------------------------------------------------------- checking
def _type_problem(value: Any, hint: Any) -> str | None:
    """Why ``value`` (as read from TOML) does not have type ``hint``; None when it does."""
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, (list, tuple)):
            return f"must be a list, not {_describe(value)}"
        return next((f"item {i}: {p}" for i, v in enumerate(value) if (p := _type_problem(v, item))), None)
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, hint)
    return None if ok else f"must be {_TYPE_NAMES.get(hint, getattr(hint, '__name__', str(hint)))}, " \
                           f"not {_describe(value)}"


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _normalised(value: Any, hint: Any) -> Any:
    """TOML integers for float keys become floats, lists for tuple keys become tuples."""
    if hint is float:
        return float(value)
    return tuple(value) if typing.get_origin(hint) is tuple else value


class Section:
    """Base of the config sections: at construction each key is type-checked against its
    annotation and value-checked against its rules; all problems are raised at once."""

    SECTION: ClassVar[str]

    def __post_init__(self) -> None:
        problems = []
        hints = typing.get_type_hints(type(self))
        for spec in dataclasses.fields(self):
            value, hint = getattr(self, spec.name), hints[spec.name]
            problem = _type_problem(value, hint)
            if problem is not None and spec.metadata.get("secret"):  # never print a password
                problem = f"must be {_TYPE_NAMES.get(hint, hint)} (value not shown)"
            if problem is not None:
                problems.append(f"[{self.where()}] {spec.name}: {problem}")
                continue
            value = _normalised(value, hint)
            object.__setattr__(self, spec.name, value)
            problem = next((p for rule in spec.metadata.get("rules", ()) if (p := rule(value))), None)
            if problem is not None:
                problems.append(f"[{self.where()}] {spec.name} = {value!r}: {problem}")
        problems += self.cross_checks()
        if problems:
            raise ConfigError(problems)

    def where(self) -> str:
        """The section name in messages."""
        return self.SECTION

    def cross_checks(self) -> list[str]:
        """Problems involving several keys (none by default)."""
        return []


# --------------------------------------------------------------------------------- sections
#: ``[kafka] security_protocol`` values (Kafka's names, the same for librdkafka and Java clients).
SECURITY_PROTOCOLS: tuple[str, ...] = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL")
#: ``[kafka] sasl_mechanism`` values (username/password mechanisms).
SASL_MECHANISMS: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaConf(Section):
    """Brokers and client security of every Kafka client of the job (Spark source/sink, producers).

    ``sasl_password`` or, better, ``sasl_password_env`` (the name of an environment variable
    read when the config is built) gives the SASL password; it never appears in ``repr`` or in a
    message. ``ssl_ca_location`` is a PEM file of CA certificates (SSL protocols only).
    """

    SECTION: ClassVar[str] = "kafka"
    bootstrap_servers: str = key("127.0.0.1:9092", bootstrap_list)
    security_protocol: str = key("PLAINTEXT", one_of(*SECURITY_PROTOCOLS))
    sasl_mechanism: str = key("", one_of("", *SASL_MECHANISMS))
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False, metadata={"secret": True})
    sasl_password_env: str = key("", matching(r"|[A-Za-z_][A-Za-z0-9_]*", "an environment variable name"))
    ssl_ca_location: str = ""
    #: The password actually used (from ``sasl_password`` or the environment); not a config key.
    resolved_password: str = field(init=False, repr=False, compare=False, default="")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol.endswith("SSL")

    def cross_checks(self) -> list[str]:
        if self.security_protocol not in SECURITY_PROTOCOLS:
            return []  # reported by its rule
        problems = self._sasl_problems() if self.uses_sasl else self._stray_sasl_keys()
        if self.ssl_ca_location and not self.uses_ssl:
            problems.append(f"[kafka] ssl_ca_location needs security_protocol SSL or SASL_SSL, "
                            f"not {self.security_protocol}")
        return problems

    def _stray_sasl_keys(self) -> list[str]:
        given = [name for name in ("sasl_mechanism", "sasl_username", "sasl_password", "sasl_password_env")
                 if getattr(self, name)]
        return [f"[kafka] {', '.join(given)} need security_protocol SASL_PLAINTEXT or SASL_SSL, "
                f"not {self.security_protocol}"] if given else []

    def _sasl_problems(self) -> list[str]:
        problems = []
        if not self.sasl_mechanism:
            problems.append(f"[kafka] sasl_mechanism is required with {self.security_protocol} "
                            f"(one of {', '.join(SASL_MECHANISMS)})")
        if not self.sasl_username:
            problems.append(f"[kafka] sasl_username is required with {self.security_protocol}")
        if bool(self.sasl_password) == bool(self.sasl_password_env):
            problems.append("[kafka] give exactly one of sasl_password and sasl_password_env")
        elif not (password := self.sasl_password or os.environ.get(self.sasl_password_env, "")):
            problems.append(f"[kafka] sasl_password_env: environment variable {self.sasl_password_env} "
                            f"is not set (or empty)")
        else:
            object.__setattr__(self, "resolved_password", password)
        return problems


@dataclass(frozen=True)
class InputConf(Section):
    SECTION: ClassVar[str] = "input"
    subscribe_pattern: str = key("ztf_.*", not_empty, python_regex)
    starting_offsets: str = key("earliest", kafka_offsets)
    max_offsets_per_trigger: int = key(10000, at_least(1))
    fail_on_data_loss: bool = False


@dataclass(frozen=True)
class FilterConf(Section):
    """An output selection: alerts with P(c) ≥ ``min_probability`` for at least one c in ``classes``."""

    SECTION: ClassVar[str] = "output.filters"
    name: str = key(REQUIRED, matching(r"[A-Za-z0-9_-]+", "letters, digits, '_' or '-' (it names a checkpoint)"))
    topic: str = key(REQUIRED, TOPIC_NAME)
    classes: tuple[str, ...] = key(REQUIRED, t2_classes)
    min_probability: float = key(0.0, between(0.0, 1.0))

    def where(self) -> str:
        return f"output.filters {self.name!r}" if isinstance(self.name, str) else "output.filters"


#: ``[output] enriched_format`` values: one Avro object container per message (schema embedded),
#: or schemaless Avro with the schema published once as an ``.avsc`` file (README "Output topics").
ENRICHED_FORMATS: tuple[str, ...] = ("container", "schemaless")


@dataclass(frozen=True)
class OutputConf(Section):
    SECTION: ClassVar[str] = "output"
    enriched_topic: str = key("fink_t2_enriched_ztf", TOPIC_NAME)
    enriched_format: str = key("container", one_of(*ENRICHED_FORMATS))
    # local (on a cluster: shared) folder of the published <fingerprint>.avsc files; "": <checkpoint dir>/schemas
    schema_dir: str = ""
    scores_topic: str = key("fink_t2_scores_ztf", TOPIC_NAME)
    deadletter_topic: str = key("fink_t2_deadletter_ztf", TOPIC_NAME)
    # "python": workers produce enriched/dead letters; "spark": Spark's sink
    large_messages: str = key("python", one_of("python", "spark"))
    filters: tuple[FilterConf, ...] = ()
    # partitions of each output topic the job creates at start-up (if absent)
    topic_partitions: int = key(2, at_least(1))
    # "wait": keep retrying until the broker is back; "fail": fail the job
    on_broker_outage: str = key("wait", one_of("wait", "fail"))
    # unacknowledged this long = an outage (then wait on, or fail), seconds
    delivery_timeout_seconds: float = key(120.0, at_least(1))

    def topics(self) -> list[str]:
        """Every topic the job writes, enriched first."""
        return [self.enriched_topic, self.scores_topic, self.deadletter_topic, *(f.topic for f in self.filters)]

    def cross_checks(self) -> list[str]:
        problems = _duplicates("output topic", self.topics())
        return problems + _duplicates("filter name", [f.name for f in self.filters])


@dataclass(frozen=True)
class CheckpointConf(Section):
    SECTION: ClassVar[str] = "checkpoint"
    dir: str = key("run/checkpoints", not_empty)


@dataclass(frozen=True)
class SparkConf(Section):
    SECTION: ClassVar[str] = "spark"
    master: str = key("local[2]", SPARK_MASTER)
    driver_memory: str = key("4g", JVM_MEMORY)
    arrow_max_records_per_batch: int = key(500, at_least(1))
    # bytes; bounds a worker's input batch of hostile 10 MiB messages
    arrow_max_bytes_per_batch: int = key(64 * 1024 * 1024, at_least(1))
    shuffle_partitions: int = key(2, at_least(1))
    trigger_seconds: float = key(2.0, greater_than(0))


@dataclass(frozen=True)
class ModelConf(Section):
    SECTION: ClassVar[str] = "model"
    path: str = ""  # empty: the packaged default model
    num_threads: int = key(1, at_least(1))


@dataclass(frozen=True)
class CutsConf(Section):
    """Selection cuts with settings (``fink_t2.science.lightcurve``). The stellar-counterpart cut
    applies when an alert has no Fink ``cdsxmatch``: a PS1 source within
    ``stellar_max_distpsnr1_arcsec`` (ZTF ``distpsnr1``, arcsec) whose star/galaxy score
    ``sgscore1`` is at least ``stellar_min_sgscore1`` (1 = star) makes the alert a variable star."""

    SECTION: ClassVar[str] = "cuts"
    stellar_counterpart: bool = key(True)
    stellar_min_sgscore1: float = key(0.9, between(0.0, 1.0))
    stellar_max_distpsnr1_arcsec: float = key(1.0, at_least(0.0))


@dataclass(frozen=True)
class EmbeddingConf(Section):
    """ASTROMER embeddings in the output: with ``enabled``, the enriched alert and the score of each
    classified alert carry ``t2_embedding`` (the pooled encoder output, float32), null otherwise.
    ``encoder``: a TFLite encoder (its metadata JSON beside it); empty = the shipped one."""

    SECTION: ClassVar[str] = "embedding"
    enabled: bool = False
    encoder: str = ""


#: ``[classifier] kind`` values: the t2 transformer on the GP grid, or a head on pooled ASTROMER embeddings.
CLASSIFIER_KINDS: tuple[str, ...] = ("t2", "astromer")


@dataclass(frozen=True)
class ClassifierConf(Section):
    """Which classifier fills ``t2_class``/``t2_probs``/``t2_snia``: ``"t2"`` (``[model]``) or
    ``"astromer"``: the dense head ``head`` (an ``.npz`` with its metadata JSON beside it) on the
    embeddings of the ``[embedding] encoder`` (computed whether or not they are output)."""

    SECTION: ClassVar[str] = "classifier"
    kind: str = key("t2", one_of(*CLASSIFIER_KINDS))
    head: str = ""

    def cross_checks(self) -> list[str]:
        if self.kind == "astromer" and not self.head:
            return ["[classifier] head is required with kind = 'astromer' (the .npz written by fink-t2 finetune)"]
        return []


#: ``[monitoring] progress_jsonl`` value that sends the JSON lines to standard error.
PROGRESS_TO_STDERR = "-"


@dataclass(frozen=True)
class MonitoringConf(Section):
    """Per-micro-batch metrics (``fink_t2.spark.monitoring``): one JSON line per progress event to
    ``progress_jsonl`` (a file, appended; ``"-"`` standard error; ``""`` off), and optionally the
    same counters on a Prometheus endpoint (``http://prometheus_host:prometheus_port/metrics``,
    the ``monitoring`` extra)."""

    SECTION: ClassVar[str] = "monitoring"
    progress_jsonl: str = key(PROGRESS_TO_STDERR)
    prometheus: bool = key(False)
    prometheus_host: str = key("127.0.0.1", not_empty)
    prometheus_port: int = key(9464, between(1, 65535))


def _duplicates(what: str, values: list[str]) -> list[str]:
    repeated = sorted({v for v in values if values.count(v) > 1})
    return [f"[output] {what} {v!r} is used more than once" for v in repeated]


@dataclass(frozen=True)
class Config:
    kafka: KafkaConf = field(default_factory=KafkaConf)
    input: InputConf = field(default_factory=InputConf)
    output: OutputConf = field(default_factory=OutputConf)
    checkpoint: CheckpointConf = field(default_factory=CheckpointConf)
    spark: SparkConf = field(default_factory=SparkConf)
    model: ModelConf = field(default_factory=ModelConf)
    cuts: CutsConf = field(default_factory=CutsConf)
    embedding: EmbeddingConf = field(default_factory=EmbeddingConf)
    classifier: ClassifierConf = field(default_factory=ClassifierConf)
    monitoring: MonitoringConf = field(default_factory=MonitoringConf)

    def __post_init__(self) -> None:
        pattern = re.compile(self.input.subscribe_pattern)
        looped = [topic for topic in self.output.topics() if pattern.fullmatch(topic)]
        if looped:  # the job would read its own output back as alerts
            raise ConfigError(f"[input] subscribe_pattern {self.input.subscribe_pattern!r} matches output "
                              f"topic(s) {', '.join(looped)}")
        if self.output.enriched_format == "schemaless" and not self.output.schema_dir and "://" in self.checkpoint.dir:
            raise ConfigError(f"[output] enriched_format = \"schemaless\" publishes its .avsc files in a local folder: "
                              f"set [output] schema_dir (the checkpoint dir {self.checkpoint.dir!r} is not local)")

    def with_bootstrap(self, bootstrap: str | None) -> "Config":
        """A copy with another Kafka bootstrap (CLI override), or self when None."""
        if not bootstrap:
            return self
        return dataclasses.replace(self, kafka=dataclasses.replace(self.kafka, bootstrap_servers=bootstrap))

    def with_run_files(self, checkpoint_dir: str | None = None, progress_jsonl: str | None = None) -> "Config":
        """A copy with another ``[checkpoint] dir`` and/or ``[monitoring] progress_jsonl`` (CLI
        overrides, so that a run can keep the packaged config); None keeps the configured one."""
        config = self
        if checkpoint_dir is not None:
            config = dataclasses.replace(config, checkpoint=CheckpointConf(dir=checkpoint_dir))
        if progress_jsonl is not None:
            config = dataclasses.replace(config, monitoring=dataclasses.replace(
                config.monitoring, progress_jsonl=progress_jsonl))
        return config

    def model_path(self) -> str | None:
        """The configured model file, or None for the default model."""
        return self.model.path or None

    def encoder_path(self) -> str | None:
        """The configured ASTROMER encoder file, or None for the shipped encoder."""
        return self.embedding.encoder or None

    @property
    def needs_encoder(self) -> bool:
        """Whether the workers run the ASTROMER encoder (embeddings output, or the astromer classifier)."""
        return self.embedding.enabled or self.classifier.kind == "astromer"

    def schema_dir(self, base: Path = REPO_ROOT) -> Path:
        """Folder of the published enriched schemas (``[output] schema_dir``, else
        ``<checkpoint dir>/schemas``); a relative path is taken from the repo root."""
        path = Path(self.output.schema_dir or Path(self.checkpoint_dir(base)) / "schemas")
        return path if path.is_absolute() else base / path

    def checkpoint_dir(self, base: Path = REPO_ROOT) -> str:
        """Checkpoint root; a relative local path is taken from the repo root."""
        path = self.checkpoint.dir
        return path if "://" in path or Path(path).is_absolute() else str(base / path)


# ---------------------------------------------------------------------------------- loading
_SECTIONS: dict[str, type[Section]] = {"kafka": KafkaConf, "input": InputConf, "output": OutputConf,
                                       "checkpoint": CheckpointConf, "spark": SparkConf, "model": ModelConf,
                                       "cuts": CutsConf, "embedding": EmbeddingConf, "classifier": ClassifierConf,
                                       "monitoring": MonitoringConf}


def _build(cls: type[Section], values: Any, problems: list[str], where: str) -> Any:
    """``cls(**values)``, or None with the problems appended (unknown keys, types, values)."""
    if not isinstance(values, dict):
        problems.append(f"[{where}] must be a table, not {_describe(values)}")
        return None
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - known)
    if unknown:
        problems.append(f"[{where}] unknown key(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return None
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in values
               and f.default is REQUIRED and f.default_factory is dataclasses.MISSING]
    if missing:
        problems.append(f"[{where}] missing key(s): {', '.join(missing)}")
        return None
    try:
        return cls(**values)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None


def _build_output(values: Any, problems: list[str]) -> OutputConf | None:
    if not isinstance(values, dict):
        return _build(OutputConf, values, problems, "output")
    raw_filters = values.get("filters", [])
    if not isinstance(raw_filters, list):
        problems.append("[output] filters must be [[output.filters]] tables")
        return None
    filters = [_build(FilterConf, f, problems, f"output.filters #{i + 1}") for i, f in enumerate(raw_filters)]
    output = _build(OutputConf, values | {"filters": tuple(f for f in filters if f is not None)}, problems, "output")
    return output if None not in filters else None


def parse_config(raw: dict[str, Any]) -> Config:
    """A ``Config`` from parsed TOML; every problem found is in the one ``ConfigError`` raised."""
    problems: list[str] = []
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        problems.append(f"unknown section(s): {', '.join(unknown)} (known: {', '.join(_SECTIONS)})")
    sections = {name: (_build_output(raw.get(name, {}), problems) if name == "output" else
                       _build(cls, raw.get(name, {}), problems, name)) for name, cls in _SECTIONS.items()}
    if problems:
        raise ConfigError(problems)
    return Config(**sections)


def load_config(path: str | Path | None = None) -> Config:
    """Read a TOML config; missing keys take the defaults declared above."""
    path = Path(path) if path else DEFAULT_CONF
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    try:
        return parse_config(raw)
    except ConfigError as exc:
        raise ConfigError([f"{path}: {len(exc.problems)} problem(s):", *exc.problems]) from None
