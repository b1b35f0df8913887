"""Errors of the policy language and of the YAML documents it shares with the daemon config.

Each exception builds its own message and says whether retrying could help: a file with
an error stays wrong until somebody edits it, so none of these is retriable.
"""

from __future__ import annotations

from dataclasses import dataclass

from watchkeeper.errors import WatchkeeperError


@dataclass(frozen=True)
class SourceError:
    """One problem in a YAML document, located as precisely as the document allows.

    ``field`` is the dotted path of the offending key (``kafka.topics.predictions.name``);
    ``line`` and ``column`` are 1-based, or ``None`` when the problem has no position
    (a required key that is missing is reported at its parent mapping).
    """

    file: str
    line: int | None
    column: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class WatchkeeperDocumentError(WatchkeeperError):
    """Base of errors about a user's YAML document (config or policy file)."""

    retriable = False


class InvalidDocumentError(WatchkeeperDocumentError):
    """A document failed to parse or validate; carries every error found, not only the first."""

    def __init__(self, file: str, errors: list[SourceError]) -> None:
        self.file = file
        self.errors = list(errors)
        count = len(self.errors)
        lines = "\n".join(f"  {e}" for e in self.errors)
        noun = "error" if count == 1 else "errors"
        super().__init__(f"{file}: {count} {noun}:\n{lines}")


class UnreadableDocumentError(WatchkeeperDocumentError):
    """The file could not be read at all (missing, a directory, not UTF-8)."""

    def __init__(self, file: str, reason: str) -> None:
        self.file = file
        self.reason = reason
        super().__init__(f"{file}: cannot read: {reason}")
