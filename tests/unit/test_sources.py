"""Every registered Kafka client declares the whole :class:`Source` protocol and checks
its own ``kafka.options`` when the config loads.

The behaviour against the real broker is ``tests/integration/test_sources.py``; this is the
shape: each method of the protocol, with the protocol's parameters, on each client class.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from watchkeeper.daemon.config import Config, load_config
from watchkeeper.daemon.config_kafka import KafkaConfig
from watchkeeper.daemon.ingest import sources
from watchkeeper.daemon.ingest.source import Source
from watchkeeper.policies.errors import InvalidDocumentError, SourceError

PROTOCOL_METHODS = sorted(
    name for name, value in vars(Source).items() if inspect.isfunction(value) and name[0] != "_"
)


def test_the_protocol_is_what_the_loop_needs() -> None:
    assert (
        sorted(
            [
                "subscribe",
                "poll",
                "assignment",
                "pause",
                "resume",
                "paused",
                "seek",
                "commit",
                "end_offset",
                "position",
                "connections",
                "close",
            ]
        )
        == PROTOCOL_METHODS
    )


@pytest.mark.parametrize("client", sorted(sources.CLIENTS))
def test_each_client_implements_every_method_with_the_protocols_parameters(client: str) -> None:
    factory = sources.CLIENTS[client].source
    assert inspect.isclass(factory), "a client is a class implementing Source"
    for name in PROTOCOL_METHODS:
        method = getattr(factory, name, None)
        assert callable(method), f"{client} lacks {name}"
        wanted = list(inspect.signature(getattr(Source, name)).parameters)
        got = list(inspect.signature(method).parameters)
        assert got == wanted, f"{client}.{name}{got} is not Source.{name}{wanted}"


def test_an_unknown_client_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match="kafka-python"):
        sources.open_source(None, "no-such-client")  # type: ignore[arg-type]


# The options contract: each registered client checks ``kafka.options`` when the file
# loads, and refuses there what it builds itself from the ``kafka`` section.
CONTRACT = """\
kafka:
  client: {client}
  bootstrap_servers: contract-host:9093
  group_id: contract-group
  client_id: contract-client
  security_protocol: SASL_SSL
  sasl_mechanism: PLAIN
  sasl_username: contract-user
  sasl_password_env: WK_CONTRACT_PASSWORD
  topics:
    predictions: {{name: p}}
"""
CONTRACT_ENV = {"WK_CONTRACT_PASSWORD": "contract-pw-7Kq"}


def _load(tmp_path: Path, client: str, options: str = "") -> Config:
    path = tmp_path / "watchkeeper.yaml"
    text = CONTRACT.format(client=client) + (f"  options: {options}\n" if options else "")
    path.write_text(text)
    return load_config(path, env=CONTRACT_ENV, clients=sources.option_checks())


def _error(tmp_path: Path, client: str, options: str) -> SourceError:
    with pytest.raises(InvalidDocumentError) as info:
        _load(tmp_path, client, options)
    (error,) = info.value.errors
    return error


def test_the_config_default_client_is_the_registrys_default() -> None:
    assert KafkaConfig.model_fields["client"].default == sources.DEFAULT
    assert sources.DEFAULT in sources.CLIENTS


@pytest.mark.parametrize("client", sorted(sources.CLIENTS))
def test_each_client_refuses_an_unknown_option_naming_file_line_and_field(
    client: str, tmp_path: Path
) -> None:
    _load(tmp_path, client)  # no options: the file loads
    error = _error(tmp_path, client, "{watchkeeper_no_such_option: 1}")
    assert error.file == str(tmp_path / "watchkeeper.yaml")
    assert error.line == 12  # the options line
    assert error.field == "kafka.options"
    assert "watchkeeper_no_such_option" in error.message
    assert "for the list" in error.message  # where the allowed options are listed


@pytest.mark.parametrize("client", sorted(sources.CLIENTS))
def test_each_client_refuses_the_options_it_sets_from_the_kafka_section(
    client: str, tmp_path: Path
) -> None:
    """What the client builds from the section's group, client id and servers is
    watchkeeper's, and the option carrying the password is a secret: ``kafka.options``
    may hold neither (read from the client's own option mapping, so a new client is
    checked on its own names)."""
    built = sources.CLIENTS[client].options(_load(tmp_path, client), CONTRACT_ENV)
    owned = [
        key
        for key, value in built.items()
        if value in ("contract-group", "contract-client") or "contract-host:9093" in str(value)
    ]
    secret = [key for key, value in built.items() if value == "contract-pw-7Kq"]
    assert len(owned) >= 3 and len(secret) == 1, built
    for key in owned:
        error = _error(tmp_path, client, f"{{{key}: x}}")
        assert error.field == "kafka.options"
        assert "set by watchkeeper itself" in error.message, key
    (key,) = secret
    error = _error(tmp_path, client, f"{{{key}: leaked-Zr4}}")
    assert "secret" in error.message and "sasl_password_env" in error.message
    assert "leaked-Zr4" not in str(error)


def test_an_unregistered_client_is_refused_naming_the_registered_ones(tmp_path: Path) -> None:
    error = _error(tmp_path, "no-such-client", "")
    assert error.field == "kafka.client"
    assert all(f"'{name}'" in error.message for name in sources.CLIENTS)


def test_a_config_validated_without_the_clients_is_a_programming_error() -> None:
    data = {"kafka": {"bootstrap_servers": "h:1", "topics": {"predictions": {"name": "p"}}}}
    with pytest.raises(TypeError, match="option checks were not handed"):
        Config.model_validate(data)
