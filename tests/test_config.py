"""Config: every key is type- and value-checked, with a message naming the key; the packaged
templates load; a bad file fails before any Spark or Kafka work, listing all its problems."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from fink_t2.cli import main
from fink_t2.config import (CONF_TEMPLATES, DEFAULT_CONF, Config, ConfigError, KafkaConf, OutputConf, SparkConf,
                            load_config, parse_config)
from tests.conftest import REPO

SNIA_FILTER = {"name": "snia", "topic": "snia_out", "classes": ["SNIa"], "min_probability": 0.5}


def _problems(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    return caught.value.problems


def test_packaged_templates_load_and_local_documents_the_defaults():
    local = load_config(DEFAULT_CONF)
    defaults = Config()
    for section in ("kafka", "input", "checkpoint", "spark", "model", "embedding", "classifier", "monitoring"):
        assert getattr(local, section) == getattr(defaults, section), section
    assert dataclasses.replace(local.output, filters=()) == defaults.output
    cluster = load_config(CONF_TEMPLATES["cluster"])
    assert [f.classes for f in cluster.output.filters] == [("SNIa",), ("SLSN-I", "TDE")]


@pytest.mark.parametrize(("raw", "expected"), [
    # the cases of the issue
    ({"input": {"max_offsets_per_trigger": "ten"}}, "[input] max_offsets_per_trigger: must be an integer, not 'ten'"),
    ({"output": {"filters": [SNIA_FILTER | {"min_probability": 5}]}},
     "[output.filters 'snia'] min_probability = 5.0: must be between 0.0 and 1.0"),
    ({"output": {"filters": [SNIA_FILTER | {"classes": ["SNIA"]}]}},
     "[output.filters 'snia'] classes = ('SNIA',): unknown class(es) 'SNIA' (t2 classes: mu-Lens-Single"),
    # types
    ({"input": {"fail_on_data_loss": "no"}}, "[input] fail_on_data_loss: must be true or false, not 'no'"),
    ({"spark": {"shuffle_partitions": True}}, "[spark] shuffle_partitions: must be an integer, not True"),
    ({"spark": {"trigger_seconds": "2"}}, "[spark] trigger_seconds: must be a number, not '2'"),
    ({"output": {"filters": [SNIA_FILTER | {"classes": "SNIa"}]}}, "classes: must be a list, not 'SNIa'"),
    ({"kafka": {"bootstrap_servers": 9092}}, "[kafka] bootstrap_servers: must be a string, not 9092"),
    # values
    ({"kafka": {"bootstrap_servers": "localhost"}}, "must be HOST:PORT[,HOST:PORT...], not 'localhost'"),
    ({"kafka": {"bootstrap_servers": "a:9092,b:99999"}}, "not 'b:99999'"),
    ({"input": {"subscribe_pattern": "ztf_(["}}, "[input] subscribe_pattern = 'ztf_([': is not a regular expression"),
    ({"input": {"starting_offsets": "first"}}, "must be 'earliest', 'latest' or a JSON object of offsets"),
    ({"input": {"max_offsets_per_trigger": 0}}, "[input] max_offsets_per_trigger = 0: must be >= 1"),
    ({"output": {"scores_topic": "scores topic"}}, "[output] scores_topic = 'scores topic': must be a Kafka topic"),
    ({"output": {"large_messages": "java"}}, "must be one of 'python', 'spark'"),
    ({"output": {"filters": [SNIA_FILTER | {"classes": []}]}}, "classes = (): must name at least one class"),
    ({"output": {"filters": [SNIA_FILTER | {"name": "a/b"}]}}, "(it names a checkpoint)"),
    ({"output": {"filters": [{"name": "x", "classes": ["SNIa"]}]}}, "[output.filters #1] missing key(s): topic"),
    ({"output": {"filters": [SNIA_FILTER, SNIA_FILTER | {"topic": "other"}]}}, "filter name 'snia' is used more"),
    ({"output": {"filters": [SNIA_FILTER | {"topic": "fink_t2_scores_ztf"}]}}, "output topic 'fink_t2_scores_ztf'"),
    ({"checkpoint": {"dir": ""}}, "[checkpoint] dir = '': must not be empty"),
    ({"spark": {"master": "local[two]"}}, "[spark] master = 'local[two]': must be ''"),
    ({"spark": {"driver_memory": "lots"}}, "must be a JVM memory size"),
    ({"spark": {"trigger_seconds": 0}}, "[spark] trigger_seconds = 0.0: must be > 0"),
    ({"model": {"num_threads": 0}}, "[model] num_threads = 0: must be >= 1"),
    # the stream's start-up and broker-outage keys
    ({"output": {"on_broker_outage": "retry"}}, "[output] on_broker_outage = 'retry': must be one of 'wait', 'fail'"),
    ({"output": {"delivery_timeout_seconds": 0.5}}, "[output] delivery_timeout_seconds = 0.5: must be >= 1"),
    ({"output": {"delivery_timeout_seconds": "5"}}, "[output] delivery_timeout_seconds: must be a number, not '5'"),
    ({"output": {"topic_partitions": 0}}, "[output] topic_partitions = 0: must be >= 1"),
    ({"spark": {"arrow_max_bytes_per_batch": 0}}, "[spark] arrow_max_bytes_per_batch = 0: must be >= 1"),
    # embeddings and the classifier choice
    ({"embedding": {"enabled": "yes"}}, "[embedding] enabled: must be true or false, not 'yes'"),
    ({"classifier": {"kind": "lstm"}}, "[classifier] kind = 'lstm': must be one of 't2', 'astromer'"),
    ({"classifier": {"kind": "astromer"}}, "[classifier] head is required with kind = 'astromer'"),
    # per-micro-batch monitoring
    ({"monitoring": {"prometheus_port": 0}}, "[monitoring] prometheus_port = 0: must be between 1 and 65535"),
    ({"monitoring": {"prometheus": "yes"}}, "[monitoring] prometheus: must be true or false, not 'yes'"),
    ({"monitoring": {"prometheus_host": ""}}, "[monitoring] prometheus_host = '': must not be empty"),
    ({"monitoring": {"progress_log": "-"}}, "[monitoring] unknown key(s): progress_log"),
    # structure
    ({"sparks": {}}, "unknown section(s): sparks"),
    ({"spark": {"triger_seconds": 1.0}}, "[spark] unknown key(s): triger_seconds"),
    ({"spark": 4}, "[spark] must be a table"),
])
def test_each_bad_value_is_named_with_its_key(raw, expected):
    problems = _problems(raw)
    assert len(problems) == 1 and expected in problems[0], problems


def test_every_problem_of_a_file_is_reported_at_once(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[input]\nmax_offsets_per_trigger = "ten"\n[spark]\ntrigger_seconds = -1\n'
                   '[[output.filters]]\nname = "snia"\ntopic = "t"\nclasses = ["SNIA"]\nmin_probability = 5\n')
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    text = str(caught.value)
    assert text.startswith(f"{bad}: 4 problem(s):")
    for key in ("max_offsets_per_trigger", "trigger_seconds", "classes", "min_probability"):
        assert key in text


def test_numbers_and_lists_are_normalised():
    config = parse_config({"spark": {"trigger_seconds": 3}, "output": {"filters": [SNIA_FILTER]}})
    assert config.spark.trigger_seconds == 3.0 and isinstance(config.spark.trigger_seconds, float)
    assert config.output.filters[0].classes == ("SNIa",)


def test_a_pattern_that_reads_the_jobs_own_output_is_refused():
    with pytest.raises(ConfigError, match="subscribe_pattern 'fink_t2_.*' matches output topic"):
        parse_config({"input": {"subscribe_pattern": "fink_t2_.*"}})


def test_sections_built_in_code_are_checked_too():
    with pytest.raises(ConfigError, match=r"\[spark\] trigger_seconds = -1.0: must be > 0"):
        dataclasses.replace(SparkConf(), trigger_seconds=-1)
    with pytest.raises(ConfigError, match="bootstrap_servers"):
        Config().with_bootstrap("no-port")
    assert Config().with_bootstrap("127.0.0.1:19092").kafka == KafkaConf("127.0.0.1:19092")
    assert OutputConf().topics()[0] == "fink_t2_enriched_ztf"


def test_stream_with_a_bad_config_exits_2_before_starting_spark(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nnum_threads = 0\n")
    done = subprocess.run([sys.executable, "-m", "fink_t2.cli", "stream", "--conf", str(bad)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "[model] num_threads = 0: must be >= 1" in done.stderr
    assert "pyspark" not in done.stderr and "SparkSession" not in done.stderr


def test_config_commands_print_a_template_and_check_a_file(tmp_path, capsys):
    assert main(["config", "template", "cluster"]) == 0
    assert capsys.readouterr().out == CONF_TEMPLATES["cluster"].read_text()
    assert main(["config", "check", str(CONF_TEMPLATES["cluster"])]) == 0
    assert "valid" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("[kafka]\nbootstrap_servers = 'nowhere'\n")
    assert main(["config", "check", str(bad)]) == 2
    assert "[kafka] bootstrap_servers = 'nowhere'" in capsys.readouterr().err


def test_outage_defaults_are_wait_and_120_s_and_the_shipped_conf_says_the_same():
    for out in (Config().output, load_config(DEFAULT_CONF).output):
        assert (out.on_broker_outage, out.delivery_timeout_seconds, out.topic_partitions) == ("wait", 120.0, 2)


def test_fail_with_a_short_timeout_loads():
    out = parse_config({"output": {"on_broker_outage": "fail", "delivery_timeout_seconds": 5}}).output
    assert (out.on_broker_outage, out.delivery_timeout_seconds) == ("fail", 5.0)


def test_embeddings_are_off_and_t2_classifies_by_default():
    config = load_config(DEFAULT_CONF)
    assert (config.embedding.enabled, config.encoder_path(), config.classifier.kind) == (False, None, "t2")
    assert not config.needs_encoder
    on = parse_config({"embedding": {"enabled": True, "encoder": "/x/enc.tflite"}})
    assert on.needs_encoder and on.encoder_path() == "/x/enc.tflite"
    head_only = parse_config({"classifier": {"kind": "astromer", "head": "/x/head.npz"}})
    assert head_only.needs_encoder and not head_only.embedding.enabled


def test_enriched_format_and_where_its_schemas_are_published(tmp_path):
    assert Config().output.enriched_format == "container"
    assert Config().schema_dir(tmp_path) == tmp_path / "run" / "checkpoints" / "schemas"
    given = parse_config({"output": {"enriched_format": "schemaless", "schema_dir": str(tmp_path / "s")}})
    assert given.schema_dir() == tmp_path / "s"
    assert _problems({"output": {"enriched_format": "avro"}}) == [
        "[output] enriched_format = 'avro': must be one of 'container', 'schemaless'"]
    remote = {"checkpoint": {"dir": "hdfs:///t2/checkpoints"}, "output": {"enriched_format": "schemaless"}}
    assert _problems(remote) == ['[output] enriched_format = "schemaless" publishes its .avsc files in a local '
                                 "folder: set [output] schema_dir (the checkpoint dir 'hdfs:///t2/checkpoints' "
                                 "is not local)"]
    assert parse_config(remote | {"output": {"enriched_format": "container"}}).output.enriched_format == "container"


def test_run_file_overrides_replace_only_the_checkpoint_and_progress_file():
    config = load_config(DEFAULT_CONF)
    moved = config.with_run_files(checkpoint_dir="/tmp/cp", progress_jsonl="/tmp/p.jsonl")
    assert moved.checkpoint.dir == "/tmp/cp" and moved.monitoring.progress_jsonl == "/tmp/p.jsonl"
    assert dataclasses.replace(moved, checkpoint=config.checkpoint, monitoring=config.monitoring) == config
    assert config.with_run_files() == config
    assert config.monitoring.prometheus_host == "127.0.0.1" and not config.monitoring.prometheus  # loopback, off


def test_git_commit_names_the_checkout_marks_changes_and_ignores_tags(tmp_path, monkeypatch):
    from fink_t2 import config as config_module

    repo = tmp_path / "repo"
    repo.mkdir()
    git = lambda *args: subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                                       check=True, capture_output=True, text=True).stdout.strip()
    git("init", "-q")
    (repo / "a.txt").write_text("1\n")
    git("add", "a.txt")
    git("commit", "-qm", "one")
    git("tag", "v1")
    monkeypatch.setattr(config_module, "REPO_ROOT", repo)
    head = git("rev-parse", "--short=7", "HEAD")
    assert config_module.git_commit() == head
    (repo / "a.txt").write_text("2\n")
    assert config_module.git_commit() == f"{head}-dirty"
    plain = tmp_path / "plain"
    plain.mkdir()
    monkeypatch.setattr(config_module, "REPO_ROOT", plain)
    assert config_module.git_commit() is None
    installed = repo / "venv" / "site-packages"  # an install inside some other repository: not that repository
    installed.mkdir(parents=True)
    monkeypatch.setattr(config_module, "REPO_ROOT", installed)
    assert config_module.git_commit() is None
