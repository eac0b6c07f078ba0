"""Config keys of the stream's start-up and broker outages: defaults, types, ranges."""
from __future__ import annotations

import pytest

from fink_t2.config import DEFAULT_CONF, ConfigError, load_config


def write(tmp_path, output: str):
    conf = tmp_path / "job.toml"
    conf.write_text(f"[output]\n{output}\n")
    return conf


def test_defaults_are_wait_and_120_s_and_the_shipped_conf_says_the_same(tmp_path):
    out = load_config(write(tmp_path, "")).output
    assert (out.on_broker_outage, out.delivery_timeout_seconds, out.topic_partitions) == ("wait", 120.0, 2)
    shipped = load_config(DEFAULT_CONF).output
    assert (shipped.on_broker_outage, shipped.delivery_timeout_seconds, shipped.topic_partitions) == ("wait", 120.0, 2)


@pytest.mark.parametrize("line, message", [
    ('on_broker_outage = "retry"', "on_broker_outage must be 'wait' or 'fail'"),
    ("delivery_timeout_seconds = 0.5", "delivery_timeout_seconds must be a number >= 1"),
    ('delivery_timeout_seconds = "5"', "delivery_timeout_seconds must be a number >= 1"),
    ("topic_partitions = 0", "topic_partitions must be an integer >= 1"),
])
def test_bad_values_are_clear_errors(tmp_path, line, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, line))


def test_fail_with_a_short_timeout_loads(tmp_path):
    out = load_config(write(tmp_path, 'on_broker_outage = "fail"\ndelivery_timeout_seconds = 5')).output
    assert (out.on_broker_outage, out.delivery_timeout_seconds) == ("fail", 5)
