"""The reference profiles the policies score against, read once and kept.

A policy's reference is a file (re-read when its modification time changes) or a profile
stored under a name (``reference: store:NAME``, read from the store each time: a rebuild
there is seen at once). The checker, the console, ``watchkeeper policy`` and the
references in force at ingest read them through :class:`ReferenceCache`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from watchkeeper.daemon.store.store import Store
from watchkeeper.detectors.profile import ReferenceProfile
from watchkeeper.policies.loader import LoadedPolicy

log = logging.getLogger(__name__)


class ReferenceCache:
    """Reference profiles by policy: files re-read when they change, stored ones by name."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._files: dict[str, tuple[float, ReferenceProfile]] = {}

    def get(self, loaded: LoadedPolicy) -> ReferenceProfile | None:
        stored = loaded.policy.stored_reference()
        if stored is not None:
            return self.store.reference(loaded.policy.model, stored)
        ref = loaded.policy.reference
        assert ref is not None  # a file: stored_reference() answered None
        path = Path(ref) if Path(ref).is_absolute() else loaded.directory / ref
        mtime = path.stat().st_mtime
        cached = self._files.get(str(path))
        if cached is None or cached[0] != mtime:
            cached = (mtime, ReferenceProfile.load(path))
            self._files[str(path)] = cached
        return cached[1]

    def of_model(self, policies: Mapping[str, LoadedPolicy], model: str) -> ReferenceProfile | None:
        """The reference of ``model``'s first policy (key order) that has one readable."""
        return next(
            (
                r
                for r in self.in_force(
                    {k: p for k, p in policies.items() if p.policy.model == model}
                )
            ),
            None,
        )

    def in_force(self, policies: Mapping[str, LoadedPolicy]) -> list[ReferenceProfile]:
        """The references ``policies`` score against, in policy key order (unreadable or
        missing ones left out, logged): what the windows count exact bins for."""
        out: list[ReferenceProfile] = []
        for key in sorted(policies):
            try:
                reference = self.get(policies[key])
            except (OSError, ValueError) as exc:
                log.warning("policy %s: its reference is not in force at ingest: %s", key, exc)
                continue
            if reference is not None:
                out.append(reference)
        return out
