"""[kafka] client security: config validation, the librdkafka and Java (Spark) mappings, secrets
kept out of repr, the broker's SASL listener properties, and refusals found in Spark errors."""
from __future__ import annotations

import argparse
import base64
import hashlib
import pickle
import re
from pathlib import Path

import pytest

from fink_t2.config import ConfigError, KafkaConf, load_config
from fink_t2.kafka import broker
from fink_t2.kafka.security import (KafkaAuthenticationError, add_endpoint_arguments, endpoint_from_args,
                                    jaas_config, jaas_quote, librdkafka_security, refusal_in,
                                    spark_kafka_options)

#: quotes, backslash, space and the characters of the StorageTool and JAAS syntaxes
NASTY_PASSWORD = 'pa"ss\\ w0rd,]=;'


def sasl(mechanism: str = "PLAIN", **keys) -> KafkaConf:
    """A SASL_PLAINTEXT config of user fink, password s3cret; ``keys`` override any of them."""
    defaults = {"bootstrap_servers": "127.0.0.1:19092", "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": mechanism, "sasl_username": "fink", "sasl_password": "s3cret"}
    return KafkaConf(**(defaults | keys))


def write_toml(tmp_path: Path, kafka_table: str) -> Path:
    path = tmp_path / "job.toml"
    path.write_text(f"[kafka]\nbootstrap_servers = \"127.0.0.1:19092\"\n{kafka_table}\n")
    return path


def test_plaintext_default_maps_to_the_protocol_only() -> None:
    assert librdkafka_security(KafkaConf()) == {"security.protocol": "PLAINTEXT"}
    assert spark_kafka_options(KafkaConf()) == {"kafka.bootstrap.servers": "127.0.0.1:9092",
                                               "kafka.security.protocol": "PLAINTEXT"}


def test_sasl_plain_maps_to_librdkafka_and_java_properties() -> None:
    kafka = sasl()
    assert librdkafka_security(kafka) == {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
                                          "sasl.username": "fink", "sasl.password": "s3cret"}
    assert spark_kafka_options(kafka) == {
        "kafka.bootstrap.servers": "127.0.0.1:19092", "kafka.security.protocol": "SASL_PLAINTEXT",
        "kafka.sasl.mechanism": "PLAIN",
        "kafka.sasl.jaas.config":
            'org.apache.kafka.common.security.plain.PlainLoginModule required username="fink" password="s3cret";',
    }


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_uses_the_scram_login_module(mechanism: str) -> None:
    options = spark_kafka_options(sasl(mechanism))
    assert options["kafka.sasl.mechanism"] == mechanism
    assert options["kafka.sasl.jaas.config"].startswith(
        "org.apache.kafka.common.security.scram.ScramLoginModule required ")


def test_sasl_ssl_with_a_ca_file_maps_to_ca_location_and_a_pem_truststore() -> None:
    kafka = sasl("SCRAM-SHA-512", security_protocol="SASL_SSL", ssl_ca_location="/etc/kafka/ca.pem")
    assert librdkafka_security(kafka)["ssl.ca.location"] == "/etc/kafka/ca.pem"
    options = spark_kafka_options(kafka)
    assert options["kafka.security.protocol"] == "SASL_SSL"
    assert (options["kafka.ssl.truststore.type"], options["kafka.ssl.truststore.location"]) == \
        ("PEM", "/etc/kafka/ca.pem")


def test_jaas_values_escape_quotes_and_backslashes() -> None:
    assert jaas_quote(NASTY_PASSWORD) == r'"pa\"ss\\ w0rd,]=;"'
    assert jaas_config("PLAIN", "u", 'a"b') == \
        r'org.apache.kafka.common.security.plain.PlainLoginModule required username="u" password="a\"b";'


def test_password_from_the_environment_never_in_repr(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FINK_T2_TEST_KAFKA_PASSWORD", NASTY_PASSWORD)
    conf = write_toml(tmp_path, 'security_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "SCRAM-SHA-512"\n'
                                'sasl_username = "fink"\nsasl_password_env = "FINK_T2_TEST_KAFKA_PASSWORD"')
    config = load_config(conf)
    assert config.kafka.resolved_password == NASTY_PASSWORD
    assert librdkafka_security(config.kafka)["sasl.password"] == NASTY_PASSWORD
    assert "w0rd" not in repr(config) and "w0rd" not in str(config.kafka)
    assert pickle.loads(pickle.dumps(config)).kafka.resolved_password == NASTY_PASSWORD  # shipped to workers


def test_password_given_inline_never_in_repr() -> None:
    assert "s3cret" not in repr(sasl())


def test_with_bootstrap_keeps_the_security_settings(tmp_path: Path) -> None:
    config = load_config(write_toml(tmp_path, 'security_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "PLAIN"\n'
                                              'sasl_username = "fink"\nsasl_password = "s3cret"'))
    moved = config.with_bootstrap("127.0.0.1:29092").kafka
    assert (moved.bootstrap_servers, moved.security_protocol, moved.resolved_password) == \
        ("127.0.0.1:29092", "SASL_PLAINTEXT", "s3cret")


@pytest.mark.parametrize("table, message", [
    ('security_protocol = "SASL"', "[kafka] security_protocol = 'SASL': must be one of 'PLAINTEXT'"),
    ('security_protocol = "SASL_PLAINTEXT"\nsasl_username = "u"\nsasl_password = "p"',
     "[kafka] sasl_mechanism is required with SASL_PLAINTEXT"),
    ('security_protocol = "SASL_SSL"\nsasl_mechanism = "GSSAPI"\nsasl_username = "u"\nsasl_password = "p"',
     "[kafka] sasl_mechanism = 'GSSAPI': must be one of '', 'PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512'"),
    ('security_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "PLAIN"\nsasl_password = "p"',
     "sasl_username is required"),
    ('security_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "PLAIN"\nsasl_username = "u"',
     "exactly one of sasl_password and sasl_password_env"),
    ('security_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "PLAIN"\nsasl_username = "u"\nsasl_password = "p"\n'
     'sasl_password_env = "X"', "exactly one of"),
    ('security_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "PLAIN"\nsasl_username = "u"\n'
     'sasl_password_env = "FINK_T2_TEST_UNSET_VARIABLE"', "FINK_T2_TEST_UNSET_VARIABLE is not set"),
    ('sasl_username = "u"', "need security_protocol SASL_PLAINTEXT or SASL_SSL"),
    ('ssl_ca_location = "/ca.pem"', "ssl_ca_location needs security_protocol SSL or SASL_SSL"),
    ('resolved_password = "p"', "[kafka] unknown key(s): resolved_password"),
    ('sasl_password = 987654', "[kafka] sasl_password: must be a string (value not shown)"),
])
def test_bad_security_settings_are_config_errors(tmp_path: Path, monkeypatch, table: str, message: str) -> None:
    monkeypatch.delenv("FINK_T2_TEST_UNSET_VARIABLE", raising=False)
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        load_config(write_toml(tmp_path, table))
    assert "987654" not in str(raised.value) and "s3cret" not in str(raised.value)  # no password shown


def test_cli_endpoint_takes_conf_security_and_bootstrap_override(tmp_path: Path) -> None:
    conf = write_toml(tmp_path, 'security_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "PLAIN"\n'
                                'sasl_username = "fink"\nsasl_password = "s3cret"')
    parser = argparse.ArgumentParser()
    add_endpoint_arguments(parser)
    endpoint = endpoint_from_args(parser.parse_args(["--conf", str(conf), "--bootstrap", "127.0.0.1:29999"]))
    assert (endpoint.bootstrap_servers, endpoint.sasl_username, endpoint.resolved_password) == \
        ("127.0.0.1:29999", "fink", "s3cret")
    assert endpoint_from_args(parser.parse_args([])) == KafkaConf()


# ------------------------------------------------------------------------ local broker listener
def read_java_properties(text: str) -> dict[str, str]:
    """What java.util.Properties reads for our one-line ``key=value`` entries (escapes undone)."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, value = line.split("=", 1)
        out[key] = value.encode().decode("unicode_escape") if "\\" in value else value
    return out


def test_broker_sasl_plain_listener_accepts_the_configured_user(tmp_path: Path) -> None:
    text = broker.server_properties(tmp_path, 19092, 19093, sasl(sasl_password=NASTY_PASSWORD))
    settings = read_java_properties(text)
    assert settings["listeners"] == "SASL_PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert settings["listener.security.protocol.map"] == "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT"
    assert settings["inter.broker.listener.name"] == "SASL_PLAINTEXT"
    assert settings["sasl.enabled.mechanisms"] == settings["sasl.mechanism.inter.broker.protocol"] == "PLAIN"
    quoted = jaas_quote(NASTY_PASSWORD)
    assert settings["listener.name.sasl_plaintext.plain.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f"username=\"fink\" password={quoted} user_fink={quoted};")


def test_broker_scram_credential_is_salted_pbkdf2() -> None:
    salt = bytes(range(16))
    credential = broker.scram_credential(sasl("SCRAM-SHA-512", sasl_password=NASTY_PASSWORD), salt=salt)
    expected = hashlib.pbkdf2_hmac("sha512", NASTY_PASSWORD.encode(), salt, broker.SCRAM_ITERATIONS)
    assert credential == (f'SCRAM-SHA-512=[name=fink,iterations={broker.SCRAM_ITERATIONS},'
                          f'salt="{base64.b64encode(salt).decode()}",'
                          f'saltedpassword="{base64.b64encode(expected).decode()}"]')
    assert "w0rd" not in credential


@pytest.mark.parametrize("kafka, message", [
    (sasl(security_protocol="SASL_SSL"), "a local SASL_SSL listener needs the broker's certificate and key"),
    (sasl(sasl_username="fink user"), "user name must be letters, digits"),
])
def test_broker_refuses_what_it_cannot_serve(tmp_path: Path, kafka: KafkaConf, message: str) -> None:
    with pytest.raises(broker.BrokerError, match=message):
        broker.up(tmp_path, port=19092, security=kafka, repo_root=tmp_path)


# ------------------------------------------------------------------------ refusals in Spark errors
#: The exception text of a classify query whose Kafka source was refused (Spark 4.0, wrong password).
SPARK_SOURCE_REFUSAL = (
    "[STREAM_FAILED] Query [id = fa526901-e69e-499e-b86f-6f79a6d2bbd2, runId = 3e12a958-b593-4447-a228-"
    "141cb5e5782c] terminated with exception: org.apache.kafka.common.errors.SaslAuthenticationException: "
    "Authentication failed: Invalid username or password SQLSTATE: XXKST\n=== Streaming Query ===\n"
    "Identifier: classify [id = fa526901-e69e-499e-b86f-6f79a6d2bbd2]\nCurrent State: INITIALIZING\n")


def test_refusal_in_a_spark_source_error_is_one_line() -> None:
    error = refusal_in(sasl(), RuntimeError(SPARK_SOURCE_REFUSAL))
    assert isinstance(error, KafkaAuthenticationError)
    assert str(error) == ("Kafka authentication failed at 127.0.0.1:19092 (SASL_PLAINTEXT PLAIN as user 'fink'): "
                          "Authentication failed: Invalid username or password")


def test_refusal_raised_in_a_python_worker_is_passed_on() -> None:
    ours = "Kafka authentication failed at 127.0.0.1:19092 (SASL_PLAINTEXT PLAIN as user 'fink'): refused"
    text = f"[STREAM_FAILED] ... PythonException: ...\nfink_t2.kafka.security.KafkaAuthenticationError: {ours}\n"
    assert str(refusal_in(sasl(), RuntimeError(text))) == ours


def test_other_spark_errors_are_not_refusals() -> None:
    assert refusal_in(sasl(), RuntimeError("[STREAM_FAILED] org.apache.kafka.common.errors.TimeoutException: x")) \
        is None


def test_shipped_configs_load_and_the_cluster_sasl_ssl_block_maps(tmp_path: Path, monkeypatch) -> None:
    from fink_t2.config import CONF_TEMPLATES

    assert load_config(CONF_TEMPLATES["local"]).kafka == KafkaConf()
    assert load_config(CONF_TEMPLATES["cluster"]).kafka.security_protocol == "PLAINTEXT"  # loads as shipped
    secured = re.sub(r"^# (security_protocol|sasl_\w+|ssl_ca_location) = ", r"\1 = ",
                     CONF_TEMPLATES["cluster"].read_text(), flags=re.MULTILINE)  # its commented block
    (tmp_path / "cluster.toml").write_text(secured)
    monkeypatch.setenv("FINK_T2_KAFKA_PASSWORD", "s3cret")
    kafka = load_config(tmp_path / "cluster.toml").kafka
    assert librdkafka_security(kafka) == {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                                          "sasl.username": "fink_t2", "sasl.password": "s3cret",
                                          "ssl.ca.location": "/etc/kafka/ca.pem"}


def test_broker_sasl_ssl_listener_presents_its_certificate_and_trusts_the_ca(tmp_path: Path) -> None:
    chain, key = tmp_path / "broker.pem", tmp_path / "broker.key"
    chain.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    key.write_text("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n")
    kafka = sasl("SCRAM-SHA-512", security_protocol="SASL_SSL", ssl_ca_location="/ca.pem")
    text = broker.server_properties(tmp_path, 19092, 19093, kafka, broker.TlsIdentity(chain, key))
    settings = read_java_properties(text)
    assert settings["listeners"].startswith("SASL_SSL://127.0.0.1:19092,")
    assert settings["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
    assert "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config" in settings
    assert (settings["ssl.keystore.type"], settings["ssl.truststore.type"]) == ("PEM", "PEM")
    assert settings["ssl.keystore.certificate.chain"] == chain.read_text()  # newlines survive the escaping
    assert settings["ssl.keystore.key"] == key.read_text()
    assert settings["ssl.truststore.location"] == "/ca.pem"
