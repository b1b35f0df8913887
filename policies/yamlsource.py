"""YAML documents that remember where every value came from, and strict validation of them.

The daemon config and the policy files are both validated with pydantic models whose
``extra="forbid"`` makes unknown keys errors. pydantic reports an error by its path in the
data (``("kafka", "topics", "predictions", "nmae")``); this module maps that path back to
the line and column of the YAML source and words the message so that it says what is
allowed, in the manner of kafka-python's "Unrecognized configs" and apscheduler's
self-describing exceptions.

YAML is always loaded with the safe loader: documents are data, never code.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml
from watchkeeper.policies.errors import InvalidDocumentError, SourceError, UnreadableDocumentError
from watchkeeper.policies.secrets import looks_like_secret
from watchkeeper.policies.yamlbounds import MAX_BYTES, BoundError, load_bounded

PathKey = tuple[str | int, ...]
ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)


@dataclass(frozen=True)
class Position:
    """A 1-based line and column in a source file."""

    line: int
    column: int


@dataclass
class SourceDocument:
    """Parsed YAML plus the position of each value (``values``) and each key (``keys``)."""

    file: str
    data: Any
    values: dict[PathKey, Position] = field(default_factory=dict)
    keys: dict[PathKey, Position] = field(default_factory=dict)

    def position(self, path: PathKey, *, prefer_key: bool = False) -> Position | None:
        """The position of ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            if prefer_key and prefix in self.keys:
                return self.keys[prefix]
            if prefix in self.values:
                return self.values[prefix]
        return None


def _mark(node: yaml.Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


def _walk(node: yaml.Node, path: PathKey, doc: SourceDocument, errors: list[SourceError]) -> None:
    doc.values[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*path, key)
            if key in seen:
                pos = _mark(key_node)
                errors.append(
                    SourceError(
                        doc.file,
                        pos.line,
                        pos.column,
                        _dotted(child),
                        f"duplicate key '{key}' (YAML would silently keep only the last one)",
                    )
                )
            seen.add(key)
            doc.keys[child] = _mark(key_node)
            _walk(value_node, child, doc, errors)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), doc, errors)


def parse_yaml(text: str, file: str) -> SourceDocument:
    """Parse one YAML document, recording positions; raise ``InvalidDocumentError`` on bad
    syntax or a broken bound (size, depth, alias expansion, integer digits: see
    :mod:`~watchkeeper.policies.yamlbounds`).

    An empty document parses to an empty mapping.
    """
    try:
        node, data = load_bounded(text)
    except BoundError as exc:
        raise InvalidDocumentError(
            file, [SourceError(file, exc.line, exc.column, "", f"YAML: {exc.message}")]
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        column = mark.column + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise InvalidDocumentError(
            file, [SourceError(file, line, column, "", f"YAML: {problem}")]
        ) from None
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        # ValueError: a scalar PyYAML's constructor cannot convert (a date like 2026-13-45)
        raise InvalidDocumentError(
            file, [SourceError(file, None, None, "", f"YAML: {str(exc)[:200]}")]
        ) from None
    doc = SourceDocument(file, data if node is not None else {})
    errors: list[SourceError] = []
    if node is not None:
        _walk(node, (), doc, errors)
    if errors:
        raise InvalidDocumentError(file, errors)
    return doc


def read_text(path: str | Path) -> str:
    """A YAML file's text, refusing files beyond the size bound before reading them."""
    name = str(path)
    try:
        size = Path(path).stat().st_size
        if size > MAX_BYTES:
            raise InvalidDocumentError(
                name,
                [
                    SourceError(
                        name,
                        1,
                        1,
                        "",
                        f"YAML: {size} bytes: larger than the limit of {MAX_BYTES} bytes",
                    )
                ],
            )
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UnreadableDocumentError(name, str(exc)) from exc


def read_yaml(path: str | Path) -> SourceDocument:
    """Read and parse a YAML file; see :func:`parse_yaml`."""
    return parse_yaml(read_text(path), str(path))


def _dotted(path: PathKey) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete classes an annotation may hold (unions and Annotated opened up)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(annotation):
            out.extend(_unwrap(arg))
        return out
    return [annotation]


def _tag_values(model: type[pydantic.BaseModel]) -> set[str]:
    """The Literal values a model's fields take: how a tagged union's member is named."""
    values: set[str] = set()
    for info in model.model_fields.values():
        if typing.get_origin(info.annotation) is typing.Literal:
            values.update(str(v) for v in typing.get_args(info.annotation))
    return values


def _allowed_keys(model: type[pydantic.BaseModel], raw_loc: PathKey) -> list[str] | None:
    """Field names allowed in the mapping at ``raw_loc`` (pydantic's loc), if it is a model."""
    candidates: list[Any] = [model]
    for part in raw_loc:
        models = [
            c for c in candidates if isinstance(c, type) and issubclass(c, pydantic.BaseModel)
        ]
        if len(models) > 1 and isinstance(part, str):
            tagged = [m for m in models if part in _tag_values(m)]
            if tagged:  # pydantic names the union member it tried: ``...oncall.slack.x``
                candidates = tagged
                continue
        nxt: list[Any] = []
        for cand in candidates:
            origin = typing.get_origin(cand)
            if isinstance(cand, type) and issubclass(cand, pydantic.BaseModel):
                for name, info in cand.model_fields.items():
                    if part in (name, info.alias):
                        nxt.extend(_unwrap(info.annotation))
            elif origin in (dict, Mapping) and isinstance(part, str):
                nxt.extend(_unwrap(typing.get_args(cand)[1]))
            elif origin in (list, tuple) and isinstance(part, int):
                nxt.extend(_unwrap(typing.get_args(cand)[0]))
        candidates = nxt
    names: list[str] = []
    for cand in candidates:
        if isinstance(cand, type) and issubclass(cand, pydantic.BaseModel):
            for name, info in cand.model_fields.items():
                names.append(info.alias or name)
    return sorted(set(names)) or None


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _message(model: type[pydantic.BaseModel], err: Any) -> str:
    kind = err["type"]
    raw_loc: PathKey = tuple(err["loc"])
    if kind == "extra_forbidden":
        key = str(raw_loc[-1])
        allowed = _allowed_keys(model, raw_loc[:-1])
        if allowed:
            return f"unknown key '{key}'{_suggest(key, allowed)} (allowed: {', '.join(allowed)})"
        return f"unknown key '{key}'"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        tag = ctx.get("tag")
        expected = str(ctx.get("expected_tags", "")).replace("'", "")
        return (
            f"'{tag}' is not known{_suggest(str(tag), expected.split(', '))} (allowed: {expected})"
        )
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind not in ("value_error", "assertion_error") and "input" in err:
        if looks_like_secret(err["input"]):
            return f"{msg} (the value looks like a secret and is not shown)"
        shown = repr(err["input"])
        if len(shown) > 60:
            shown = shown[:57] + "..."
        msg = f"{msg} (got {shown})"
    return msg


def _clean_loc(loc: PathKey, data: Any) -> PathKey:
    """Drop the union-member names pydantic inserts into ``loc`` so it is a data path again.

    A part that is absent from the data is kept only when it is the last one (the missing
    or unknown key itself); an absent part in the middle is a union member's label.
    """
    out: list[str | int] = []
    node = data
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(node, Mapping) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        elif last:
            out.append(part)
    return tuple(out)


def validation_errors(
    model: type[pydantic.BaseModel], doc: SourceDocument, exc: pydantic.ValidationError
) -> list[SourceError]:
    """Translate a pydantic error into located, user-facing :class:`SourceError` objects."""
    out: list[SourceError] = []
    for err in exc.errors():
        loc = _clean_loc(tuple(err["loc"]), doc.data)
        prefer_key = err["type"] == "extra_forbidden"
        pos = doc.position(loc, prefer_key=prefer_key)
        if err["type"] == "missing":
            pos = doc.position(loc[:-1])
        out.append(
            SourceError(
                doc.file,
                pos.line if pos else None,
                pos.column if pos else None,
                _dotted(loc),
                _message(model, err),
            )
        )
    out.sort(key=lambda e: (e.line or 0, e.column or 0))
    return out


def validate_document(
    model: type[ModelT], doc: SourceDocument, context: dict[str, Any] | None = None
) -> ModelT:
    """Validate ``doc`` against ``model``; raise :class:`InvalidDocumentError` with every error."""
    data = doc.data
    if not isinstance(data, Mapping):
        pos = doc.position(())
        raise InvalidDocumentError(
            doc.file,
            [
                SourceError(
                    doc.file,
                    pos.line if pos else None,
                    pos.column if pos else None,
                    "",
                    f"the document must be a mapping of keys to values, not {type(data).__name__}",
                )
            ],
        )
    try:
        return model.model_validate(data, context=context)
    except pydantic.ValidationError as exc:
        raise InvalidDocumentError(doc.file, validation_errors(model, doc, exc)) from None
