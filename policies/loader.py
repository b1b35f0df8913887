"""Finding, loading and cross-checking policy files.

``load_all`` never raises for a bad file: it returns the good policies and, per bad file,
every error with its location, so the daemon can keep the last good version of that file
while the others load, and ``watchkeeper policy check`` can print everything at once.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from watchkeeper.policies.errors import (
    InvalidDocumentError,
    SourceError,
    WatchkeeperDocumentError,
)
from watchkeeper.policies.raw_checks import (
    missing_reference,
    off_grid,
    raw_problems,
    undefined_channel,
)
from watchkeeper.policies.schema import SEVERITIES, Policy
from watchkeeper.policies.yamlsource import (
    SourceDocument,
    parse_yaml,
    read_text,
    validate_document,
)

log = logging.getLogger(__name__)

TEST_SUFFIXES = (".test.yaml", ".test.yml")
SNIPPET_SUFFIXES = (".snippet.yaml", ".snippet.yml")
"""Policy fragments (``watchkeeper compress`` writes one) that are not policies."""


@dataclass(frozen=True)
class LoadedPolicy:
    policy: Policy
    path: str
    digest: str
    """sha256 of the file's text: the policy's version."""

    @property
    def directory(self) -> Path:
        return Path(self.path).parent


@dataclass
class LoadResult:
    policies: list[LoadedPolicy] = field(default_factory=list)
    errors: dict[str, list[SourceError]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def policy_files(paths: Iterable[str | Path]) -> list[Path]:
    """YAML files named by ``paths`` (directories are searched, test files skipped)."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for candidate in sorted(path.rglob("*")):
                if (
                    candidate.suffix in (".yaml", ".yml")
                    and not candidate.name.endswith(TEST_SUFFIXES + SNIPPET_SUFFIXES)
                    and candidate.is_file()
                ):
                    out.append(candidate)
        else:
            out.append(path)
    return out


def _located(doc: SourceDocument, path: tuple[str | int, ...], message: str) -> SourceError:
    pos = doc.position(path)
    dotted = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path)
    return SourceError(
        doc.file,
        pos.line if pos else None,
        pos.column if pos else None,
        dotted.replace(".[", "["),
        message,
    )


def _cross_check(
    doc: SourceDocument, policy: Policy, channels: set[str] | None, window_size_s: float | None
) -> list[SourceError]:
    errors: list[SourceError] = []

    def err(path: tuple[str | int, ...], message: str) -> None:
        errors.append(_located(doc, path, message))

    if window_size_s and policy.window % window_size_s:
        err(("window",), off_grid(window_size_s))
    if channels is not None:
        for i, rule in enumerate(policy.rules):
            for severity in SEVERITIES:
                for j, name in enumerate(getattr(rule.actions, severity)):
                    if name not in channels:
                        err(("rules", i, "actions", severity, j), undefined_channel(name, channels))
    shadow = policy.shadow
    if shadow is not None:
        base = Path(doc.file).parent
        files: list[tuple[tuple[str | int, ...], str]] = [
            (("shadow", "candidates", i, "onnx"), c.onnx) for i, c in enumerate(shadow.candidates)
        ]
        if shadow.baseline:
            files.append((("shadow", "baseline"), shadow.baseline))
        for where, file in files:
            path = Path(file) if Path(file).is_absolute() else base / file
            if not path.is_file():
                err(where, f"no ONNX model file at {path}")
        if shadow.promotion is not None and channels is not None:
            for field_name in ("on_promote", "on_reject"):
                for j, name in enumerate(getattr(shadow.promotion, field_name)):
                    if name not in channels:
                        err(
                            ("shadow", "promotion", field_name, j),
                            undefined_channel(name, channels),
                        )
    ab = policy.compare.promotion if policy.compare is not None else None
    if ab is not None and channels is not None:
        for field_name in ("on_promote", "on_reject"):
            for j, name in enumerate(getattr(ab, field_name)):
                if name not in channels:
                    err(("compare", "promotion", field_name, j), undefined_channel(name, channels))
    ref = policy.reference
    if ref and policy.stored_reference() is None:
        path = Path(ref) if Path(ref).is_absolute() else Path(doc.file).parent / ref
        if not path.is_file():
            err(("reference",), missing_reference(path))
        else:
            for where, _name, why in _reference_problems(policy, path):
                err(where, why)
    return errors


def _reference_problems(policy: Policy, path: Path) -> list[tuple[tuple[str | int, ...], str, str]]:
    """Rule features and segments the profile file does not have (a typo selects nothing)."""
    if not policy.segments and all(
        isinstance(r.features, str) and r.features in ("all", "prediction") for r in policy.rules
    ):
        return []  # nothing named: the file need not be read
    from watchkeeper.detectors.profile import ReferenceProfile
    from watchkeeper.policies.feature_names import unknown_names

    try:
        profile = ReferenceProfile.load(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        detail = f"{type(exc).__name__}: {exc}"[:200]
        return [(("reference",), "", f"the reference profile {path} cannot be read ({detail})")]
    return unknown_names(policy, profile.features, f"the reference {path.name}", profile.segments)


def load_policy(
    path: str | Path,
    channels: set[str] | None = None,
    window_size_s: float | None = None,
    *,
    cross_check: bool = True,
) -> LoadedPolicy:
    """One policy file, validated; raises :class:`InvalidDocumentError` with every error.

    ``cross_check=False`` checks the schema only, not that files and channels it names
    exist (``watchkeeper compress`` reads a policy before its candidates exist)."""
    name = str(path)
    text = read_text(path)
    doc = parse_yaml(text, name)
    try:
        policy = validate_document(Policy, doc)
    except InvalidDocumentError as exc:
        if not cross_check:
            raise
        # the cross-checks too, from the raw document: every error in one run
        refused = {e.field for e in exc.errors}
        more = [
            e
            for where, message in raw_problems(doc.data, Path(name).parent, channels, window_size_s)
            if (e := _located(doc, where, message)).field not in refused
        ]
        if not more:
            raise
        raise InvalidDocumentError(name, [*exc.errors, *more]) from None
    errors = _cross_check(doc, policy, channels, window_size_s) if cross_check else []
    if errors:
        raise InvalidDocumentError(name, errors)
    return LoadedPolicy(policy, name, hashlib.sha256(text.encode()).hexdigest()[:16])


def load_all(
    paths: Iterable[str | Path],
    channels: set[str] | None = None,
    window_size_s: float | None = None,
) -> LoadResult:
    """Every policy under ``paths``; bad files are reported, never raised."""
    result = LoadResult()
    seen: dict[str, str] = {}
    for path in policy_files(paths):
        try:
            loaded = load_policy(path, channels, window_size_s)
        except InvalidDocumentError as exc:
            result.errors[str(path)] = exc.errors
            continue
        except WatchkeeperDocumentError as exc:
            result.errors[str(path)] = [SourceError(str(path), None, None, "", str(exc))]
            continue
        except Exception as exc:  # a bug of ours on one file must not block the others
            log.exception("loading policy file %s failed", path)
            detail = f"{type(exc).__name__}: {exc}"[:200]
            result.errors[str(path)] = [
                SourceError(str(path), None, None, "", f"could not be loaded ({detail})")
            ]
            continue
        key = loaded.policy.key
        if key in seen:
            result.errors[str(path)] = [
                SourceError(
                    str(path),
                    1,
                    1,
                    "name",
                    f"policy '{key}' is also defined in {seen[key]}: give one a distinct name",
                )
            ]
            continue
        seen[key] = str(path)
        result.policies.append(loaded)
    return result
