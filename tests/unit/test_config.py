"""The config file: strict, located errors; secrets only from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from watchkeeper.daemon.config import load_config, secret_values
from watchkeeper.daemon.ingest.sources import option_checks
from watchkeeper.daemon.logs import RedactingFilter
from watchkeeper.policies.errors import InvalidDocumentError, UnreadableDocumentError
from watchkeeper.policies.yamlsource import parse_yaml, validate_document

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "watchkeeper.yaml"

MINIMAL = """\
kafka:
  bootstrap_servers: 127.0.0.1:9092
  topics:
    predictions: {name: preds}
"""


def load_text(tmp_path: Path, text: str, env: dict[str, str] | None = None):
    path = tmp_path / "watchkeeper.yaml"
    path.write_text(text)
    return load_config(path, env=env or {}, clients=option_checks())


def errors_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(InvalidDocumentError) as info:
        load_text(tmp_path, text, env)
    return [str(e) for e in info.value.errors]


def test_shipped_example_loads() -> None:
    config = load_config(EXAMPLE, env={}, clients=option_checks())
    assert config.kafka.topics.predictions is not None
    assert config.kafka.topics.predictions.name == "model-predictions"
    assert config.windows.size == 300.0
    assert config.ingest.feature_kinds["fraud"]["country"] == "categorical"
    # relative SQLite paths are relative to the config file, not the working directory
    assert config.store_url() == f"sqlite:///{EXAMPLE.parent / 'watchkeeper.db'}"


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    config = load_text(tmp_path, MINIMAL)
    assert config.kafka.bootstrap_servers == ["127.0.0.1:9092"]
    assert config.kafka.group_id == "watchkeeper"
    assert config.http.listen == "127.0.0.1:8450"  # loopback by default
    assert config.store_url().endswith("watchkeeper.db")
    with pytest.raises(Exception, match="frozen"):
        config.kafka.group_id = "other"  # type: ignore[misc]


def test_unknown_key_names_file_line_and_allowed_keys(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, MINIMAL + "windows:\n  sise: 5m\n")
    assert len(errors) == 1
    assert errors[0].startswith(f"{tmp_path / 'watchkeeper.yaml'}:6:3: windows.sise:")
    assert "unknown key 'sise'; did you mean 'size'?" in errors[0]
    assert "allowed: allowed_lateness, max_categories, reservoir_size, size, sketch_k" in errors[0]


def test_every_error_is_reported_not_only_the_first(tmp_path: Path) -> None:
    text = (
        "kafka:\n  bootstrap_servers: x:1\n  topics:\n    predictions: {name: p}\n"
        "  auto_offset_reset: sometimes\n"
        "windows: {size: soon}\n"
        "http: {listen: nowhere}\n"
    )
    errors = errors_of(tmp_path, text)
    assert len(errors) == 3
    assert ":5:22: kafka.auto_offset_reset: Input should be 'earliest' or 'latest'" in errors[0]
    assert "windows.size: 'soon' is not a duration" in errors[1]
    assert "http.listen: write host:port" in errors[2]


def test_missing_section_is_located_at_its_parent(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, "store: {url: 'sqlite:///x.db'}\n")
    assert errors == [f"{tmp_path / 'watchkeeper.yaml'}:1:1: kafka: required key is missing"]


def test_channel_type_is_checked_with_suggestion(tmp_path: Path) -> None:
    text = MINIMAL + "alerts:\n  channels:\n    oncall: {type: slak, channel: '#x'}\n"
    (error,) = errors_of(tmp_path, text)
    assert "alerts.channels.oncall" in error
    assert "'slak' is not known; did you mean 'slack'?" in error


def test_unknown_key_inside_a_tagged_union_lists_that_members_keys(tmp_path: Path) -> None:
    text = (
        MINIMAL + "alerts:\n  channels:\n    hook: {type: webhook, url: 'http://x', secrt_env: S}\n"
    )
    (error,) = errors_of(tmp_path, text)
    assert "unknown key 'secrt_env'; did you mean 'secret_env'?" in error
    assert "(allowed: secret_env, type, url)" in error


def test_secrets_come_from_the_environment(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + "alerts:\n  channels:\n    slack: {type: slack, token_env: WK_TOKEN, channel: '#ml'}\n"
    )
    (error,) = errors_of(tmp_path, text, env={})
    assert "environment variable WK_TOKEN is not set" in error
    config = load_text(tmp_path, text, env={"WK_TOKEN": "xoxb-secret-value"})
    assert "xoxb-secret-value" not in config.model_dump_json()
    assert secret_values(config, {"WK_TOKEN": "xoxb-secret-value"}) == ["xoxb-secret-value"]


def test_passwords_in_the_store_url_are_refused(tmp_path: Path) -> None:
    (error,) = errors_of(tmp_path, MINIMAL + "store: {url: 'postgresql://u:hunter2@db/wk'}\n")
    assert "holds a password" in error and "url_env" in error
    assert "hunter2" not in error


def test_kafka_options_checked_against_kafka_python(tmp_path: Path) -> None:
    text = MINIMAL + "  options: {max_poll_interval_ms: 60000, fetch_min_byte: 1}\n"
    (error,) = errors_of(tmp_path, text)
    assert "unrecognized kafka-python consumer option 'fetch_min_byte'" in error
    text = MINIMAL + "  options: {sasl_plain_password: pw}\n"
    (error,) = errors_of(tmp_path, text)
    assert "secret" in error and "pw" not in error.split(":")[-1]


def test_topics_need_the_paths_their_role_requires(tmp_path: Path) -> None:
    text = (
        "kafka:\n  bootstrap_servers: x:1\n  topics:\n"
        "    labels: {name: l, fields: {label: null}}\n"
    )
    (error,) = errors_of(tmp_path, text)
    assert "topic 'labels' needs a path for 'label'" in error


def test_yaml_syntax_error_is_located(tmp_path: Path) -> None:
    (error,) = errors_of(tmp_path, "kafka:\n  topics: [unclosed\n")
    assert ":3:1:" in error or ":2:" in error
    assert "YAML:" in error


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    (error,) = errors_of(tmp_path, MINIMAL + "http: {listen: '127.0.0.1:1'}\nhttp: {}\n")
    assert "duplicate key 'http'" in error


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(UnreadableDocumentError, match="cannot read"):
        load_config(tmp_path / "absent.yaml", clients=option_checks())


def test_redacting_filter_hides_secrets_in_messages_and_tracebacks() -> None:
    import logging

    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "token=%s", ("xoxb-123456",), None)
    assert RedactingFilter(["xoxb-123456"]).filter(record)
    assert record.getMessage() == "token=[REDACTED]"


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.text(max_size=300))
def test_any_text_either_loads_or_fails_with_located_reasons(text: str) -> None:
    from watchkeeper.daemon.config import Config, validation_context

    errors = []
    try:
        doc = parse_yaml(text, "fuzz.yaml")
        validate_document(Config, doc, context=validation_context(option_checks(), {}))
    except InvalidDocumentError as exc:
        errors = exc.errors
        assert errors, "a rejection must carry at least one reason"
    assert all(e.file == "fuzz.yaml" and e.message for e in errors)
