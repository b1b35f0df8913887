"""Config fields that guard secrets, for every config model (the daemon's file and each
alert channel's section of it): :data:`EnvName` names the environment variable holding a
secret — and is how redaction finds every secret, from the models themselves —, and
:data:`PlainUrl` is a URL that may be written in a file because it holds no credential.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, get_args

import pydantic
from watchkeeper.policies.secrets import has_url_credentials, looks_like_secret

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _no_url_credentials(value: str | None) -> str | None:
    """URLs in the file must not carry credentials: they belong in the environment."""
    if value is not None and (has_url_credentials(value) or looks_like_secret(value)):
        raise ValueError(
            "the URL holds a password, token or other credential (the value is not "
            "shown): keep credentials in environment variables (*_env keys)"
        )
    return value


PlainUrl = Annotated[str, pydantic.AfterValidator(_no_url_credentials)]
"""A URL that may be written in the file: one without credentials."""


def _check_env_name(value: str, info: pydantic.ValidationInfo) -> str:
    if not _ENV_NAME.match(value):
        # never echo the value: it is often the secret itself, pasted in the wrong place
        raise ValueError(
            "not an environment variable name (letters, digits and _; the value is not "
            "shown): name the variable that holds the secret, never the secret itself"
        )
    env = (info.context or {}).get("env")
    if env is not None and not env.get(value):
        raise ValueError(f"environment variable {value} is not set (or is empty)")
    return value


class _Secret:
    """Marks a config field whose value names an environment variable holding a secret."""

    def __repr__(self) -> str:
        return "secret"


SECRET = _Secret()

EnvName = Annotated[str, pydantic.AfterValidator(_check_env_name), SECRET]
"""The name of an environment variable holding a secret; checked to be set at load.

Every field of this type is found by :func:`secret_values` through the config models
themselves: a new channel (or section) cannot leak its secret by being left off a list.
"""


def _marks_secret(annotation: Any) -> bool:
    if any(m is SECRET for m in getattr(annotation, "__metadata__", ())):
        return True
    return any(_marks_secret(arg) for arg in get_args(annotation))


def is_secret_field(info: pydantic.fields.FieldInfo) -> bool:
    """Whether a field is (an optional) :data:`EnvName`; pydantic keeps the marker in the
    field's metadata, or inside the annotation when the type is ``EnvName | None``."""
    return any(m is SECRET for m in info.metadata) or _marks_secret(info.annotation)


def secret_env_names(model: pydantic.BaseModel) -> list[str]:
    """The environment variables named by the secret fields of ``model`` and everything
    inside it (nested models, their lists and mappings), in field order."""
    names: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, pydantic.BaseModel):
            for field_name, info in type(value).model_fields.items():
                item = getattr(value, field_name)
                if is_secret_field(info) and isinstance(item, str) and item:
                    names.append(item)
                else:
                    walk(item)
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(model)
    return names
