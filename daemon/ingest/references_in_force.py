"""The references in force at ingest: which reference bins each model's windows count.

A window scored against a reference gets exact, repeatable PSI / KL / JS / χ² when its
sketches counted that reference's own bins from the window's first event
(:meth:`~watchkeeper.detectors.sketches.NumericSketch.count_bins_on`). So the daemon tells
the ingestor, whenever the policies (re)load, the reference each model's policies score
against, and every window sketch created from then on counts those edges exactly.

What stays approximate (KLL, within its rank error, reported as ``error_bound``): a
window begun before its reference was in force (a reference adopted later, or changed
mid-window, or one reference among several for one column: the first policy in key order
decides), and KS, Wasserstein and quantiles, which always read KLL.

The label-free estimates read the same seam: :meth:`ReferencesInForce.estimation` gives
the estimation (calibrator or loss model) of the reference in force for a model, and
every window's prediction batches update its estimate state from then on (a window
begun before counts only the rows after: its estimate's ``n`` says how many). The first
policy in key order whose reference has an estimation decides for the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from watchkeeper.detectors.estimation_reference import Estimation
from watchkeeper.detectors.profile import NumericProfile, ReferenceProfile
from watchkeeper.detectors.reserved_names import PREDICTION

Edges = tuple[float, ...]


def edges_of(reference: ReferenceProfile) -> dict[str, Edges]:
    """The numeric columns' bin edges of ``reference``, by column name."""
    columns = dict(reference.features)
    if reference.prediction is not None:
        columns[PREDICTION] = reference.prediction
    return {
        name: profile.edges
        for name, profile in columns.items()
        if isinstance(profile, NumericProfile) and profile.edges
    }


def _identity(references: list[ReferenceProfile]) -> tuple[tuple[str, str, str, int], ...]:
    """What tells a rebuilt reference from the one in force (a build stamps ``created_at``)."""
    return tuple((r.model, r.source, r.created_at, r.rows) for r in references)


class ReferencesInForce:
    """Bin edges per model and column; replaced whole (one assignment, so the ingestion
    thread reads either the old set or the new, never a mix).

    >>> r = ReferencesInForce()
    >>> r.replace({"fraud": {"amount": (1.0, 5.0)}})
    >>> r.edges("fraud", "amount"), r.edges("fraud", "age"), r.edges("spam", "amount")
    ((1.0, 5.0), None, None)
    """

    def __init__(self) -> None:
        self._edges: dict[str, dict[str, Edges]] = {}
        self._estimations: dict[str, Estimation] = {}
        self._adopted: tuple[tuple[str, str, str, int], ...] | None = None

    def replace(
        self,
        edges: Mapping[str, Mapping[str, Edges]],
        estimations: Mapping[str, Estimation] | None = None,
    ) -> None:
        self._edges = {model: dict(columns) for model, columns in edges.items()}
        self._estimations = dict(estimations or {})

    def adopt_if_changed(self, references: Iterable[ReferenceProfile]) -> bool:
        """Put ``references`` in force unless the same ones are already: a reference rebuilt
        in the store or over its file (new ``created_at``) reaches ingest without a policy
        reload. Whether it adopted.

        >>> from watchkeeper.detectors.profile import ReferenceProfile
        >>> r = ReferencesInForce()
        >>> old = ReferenceProfile("fraud", {}, rows=10, created_at="2026-12-01T00:00:00Z")
        >>> r.adopt_if_changed([old]), r.adopt_if_changed([old])
        (True, False)
        >>> new = ReferenceProfile("fraud", {}, rows=10, created_at="2026-12-02T00:00:00Z")
        >>> r.adopt_if_changed([new])
        True
        """
        refs = list(references)
        if _identity(refs) == self._adopted:
            return False
        self.adopt(refs)
        return True

    def adopt(self, references: Iterable[ReferenceProfile]) -> None:
        """Put ``references`` in force; the first one of a model wins each column."""
        references = list(references)
        self._adopted = _identity(references)
        edges: dict[str, dict[str, Edges]] = {}
        estimations: dict[str, Estimation] = {}
        for reference in references:
            columns = edges.setdefault(reference.model, {})
            for name, cut in edges_of(reference).items():
                columns.setdefault(name, cut)
            if reference.estimation is not None:
                estimations.setdefault(reference.model, reference.estimation)
        self.replace(edges, estimations)

    def edges(self, model: str, column: str) -> Edges | None:
        """The edges a new window sketch of ``model``'s ``column`` counts exactly, if any."""
        columns = self._edges.get(model)
        return None if columns is None else columns.get(column)

    def estimation(self, model: str) -> Estimation | None:
        """The estimation whose state ``model``'s windows update at ingest, if any."""
        return self._estimations.get(model)

    def models(self) -> dict[str, dict[str, Edges]]:
        """What is in force now (for status pages and tests)."""
        return {model: dict(columns) for model, columns in self._edges.items()}
