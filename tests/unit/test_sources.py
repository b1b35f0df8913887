"""Every registered Kafka client declares the whole :class:`Source` protocol.

The behaviour against the real broker is ``tests/integration/test_sources.py``; this is the
shape: each method of the protocol, with the protocol's parameters, on each client class.
"""

from __future__ import annotations

import inspect

import pytest
from watchkeeper.daemon.ingest import sources
from watchkeeper.daemon.ingest.source import Source

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
                "close",
            ]
        )
        == PROTOCOL_METHODS
    )


@pytest.mark.parametrize("client", sorted(sources.SOURCES))
def test_each_client_implements_every_method_with_the_protocols_parameters(client: str) -> None:
    factory = sources.SOURCES[client]
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
