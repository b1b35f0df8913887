"""The ``kafka`` section as each client's own options: the mapping of the security
settings, and ``kafka.options`` checked by the chosen client when the file loads."""

from __future__ import annotations

from pathlib import Path

import pytest
from watchkeeper.daemon.config import load_config
from watchkeeper.daemon.ingest import confluent, kafka_python
from watchkeeper.daemon.ingest.sources import option_checks
from watchkeeper.policies.yamlsource import InvalidDocumentError

SECURE = """\
kafka:
  client: {client}
  bootstrap_servers: a:9093, b:9093
  group_id: wk
  security_protocol: SASL_SSL
  sasl_mechanism: SCRAM-SHA-512
  sasl_username: watcher
  sasl_password_env: WK_KAFKA_PASSWORD
  ssl_cafile: /etc/ssl/ca.pem
  session_timeout: 12s
  topics:
    predictions: {{name: preds}}
"""
ENV = {"WK_KAFKA_PASSWORD": "pw-Zq81"}


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "watchkeeper.yaml"
    path.write_text(text)
    return load_config(path, env=ENV, clients=option_checks())


def errors_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(InvalidDocumentError) as info:
        load(tmp_path, text)
    return [str(e) for e in info.value.errors]


def test_kafka_python_is_the_default_client(tmp_path: Path) -> None:
    config = load(tmp_path, SECURE.replace("  client: {client}\n", "").format())
    assert config.kafka.client == "kafka-python"


def test_neither_client_creates_the_topics_it_reads(tmp_path: Path) -> None:
    """A consumer's metadata request may create a missing topic with the broker's default
    partitions; after a broker restart that beat the topic's owner to it."""
    config = load(tmp_path, SECURE.format(client="kafka-python"))
    assert kafka_python.consumer_options(config, ENV)["allow_auto_create_topics"] is False
    assert confluent.consumer_options(config, ENV)["allow.auto.create.topics"] is False


def test_the_security_settings_map_onto_librdkafka_properties(tmp_path: Path) -> None:
    config = load(tmp_path, SECURE.format(client="confluent"))
    options = confluent.consumer_options(config, ENV)
    assert {k: options[k] for k in options if k.startswith(("sasl", "ssl", "security"))} == {
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "watcher",
        "sasl.password": "pw-Zq81",
        "ssl.ca.location": "/etc/ssl/ca.pem",
    }
    assert options["bootstrap.servers"] == "a:9093,b:9093"
    assert options["group.id"] == "wk"
    assert options["session.timeout.ms"] == 12_000
    # offsets are watchkeeper's: librdkafka must neither commit nor store them itself
    assert options["enable.auto.commit"] is False
    assert options["enable.auto.offset.store"] is False
    assert options["receive.message.max.bytes"] >= options["fetch.max.bytes"] + 512


def test_both_clients_get_the_same_security_settings(tmp_path: Path) -> None:
    config = load(tmp_path, SECURE.format(client="kafka-python"))
    options = kafka_python.consumer_options(config, ENV)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "watcher"
    assert options["sasl_plain_password"] == "pw-Zq81"
    assert options["ssl_cafile"] == "/etc/ssl/ca.pem"


def test_librdkafka_checks_the_confluent_options_when_the_file_loads(tmp_path: Path) -> None:
    base = SECURE.format(client="confluent")
    good = load(tmp_path, base + "  options: {fetch.wait.max.ms: 50, queued.min.messages: 5000}\n")
    assert good.kafka.options == {"fetch.wait.max.ms": 50, "queued.min.messages": 5000}
    (error,) = errors_of(tmp_path, base + "  options: {fetch.wait.max.sm: 50}\n")
    assert 'No such configuration property: "fetch.wait.max.sm"' in error
    assert "kafka" in error and "options" in error
    (error,) = errors_of(tmp_path, base + "  options: {fetch.wait.max.ms: soon}\n")
    assert 'Invalid value for configuration property "fetch.wait.max.ms"' in error


def test_confluent_options_may_hold_no_secret_and_nothing_watchkeeper_owns(
    tmp_path: Path,
) -> None:
    base = SECURE.format(client="confluent")
    (error,) = errors_of(tmp_path, base + "  options: {sasl.password: hunter2-Qx}\n")
    assert "secret" in error and "sasl_password_env" in error and "hunter2" not in error
    (error,) = errors_of(tmp_path, base + "  options: {enable.auto.commit: true}\n")
    assert "set by watchkeeper itself" in error


def test_kafka_python_options_are_not_librdkafka_properties(tmp_path: Path) -> None:
    base = SECURE.format(client="kafka-python")
    (error,) = errors_of(tmp_path, base + "  options: {fetch.wait.max.ms: 50}\n")
    assert "unrecognized kafka-python consumer option" in error


def test_librdkafka_prefetches_a_small_queue_refilled_soon_unless_the_options_say(
    tmp_path: Path,
) -> None:
    """8 MB of prefetch refilled after 10 ms, not 64 MB after 1 s: the memory without the
    rate loss a small queue had with librdkafka's backoff (README, Performance)."""
    config = load(tmp_path, SECURE.format(client="confluent"))
    options = confluent.consumer_options(config, ENV)
    assert options["queued.max.messages.kbytes"] == confluent.PREFETCH_QUEUE_KBYTES == 8192
    assert options["fetch.queue.backoff.ms"] == confluent.FETCH_QUEUE_BACKOFF_MS == 10
    confluent.check_options(
        {k: options[k] for k in ("queued.max.messages.kbytes", "fetch.queue.backoff.ms")}
    )
    mine = config.model_copy(
        update={
            "kafka": config.kafka.model_copy(
                update={"options": {"queued.max.messages.kbytes": 65536}}
            )
        }
    )
    assert confluent.consumer_options(mine, ENV)["queued.max.messages.kbytes"] == 65536
