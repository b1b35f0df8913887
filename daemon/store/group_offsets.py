"""Whose offsets the store holds: the check that a changed ``kafka.group_id`` cannot
silently count every event twice, and ``kafka.adopt_offsets_from``.

Window state and the consumer offsets that produced it are committed together, keyed by
the consumer group (store.py). A group the store has no offsets for starts from
``auto_offset_reset``; if another group's offsets cover the same partitions, the windows
already hold those events and reading them again would add each one a second time (a
trial: 79,646 events became 159,376, joined pairs 39,731 → 79,611, no warning). So at
start, before the daemon joins the group, :func:`claim_offsets` refuses a group that
holds no offsets for partitions another group does (:class:`OffsetsOfAnotherGroupError`,
naming the groups, the store and the ways out), or — with ``kafka.adopt_offsets_from`` —
moves that group's offsets, watermarks, partition statuses and shadow offsets to the new
group in one transaction, so it resumes exactly where the old one stopped (Kafka's own
``kafka-consumer-groups --reset-offsets`` copies a position the same way, from outside).
Moving, not copying: the store then holds one group's positions per partition again, and
a daemon still running with the old group finds its offsets gone at its next start.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, Engine, delete, select, update
from watchkeeper.daemon.errors import WatchkeeperError
from watchkeeper.daemon.store import tables as t
from watchkeeper.daemon.store.connection import writing

# the tables whose rows are a group's position in the topics (shadow_offsets: the shadow
# evaluator's, so candidates are not scored twice on the same rows either)
_GROUP_TABLES = (
    t.consumer_offsets,
    t.partition_watermarks,
    t.partition_status,
    t.shadow_offsets,
)


class OffsetsOfAnotherGroupError(WatchkeeperError):
    """The store holds offsets for the configured topics under another consumer group and
    none under this one: starting would read every event again into windows that hold it.

    Not retriable: the same config meets the same store the same way."""

    def __init__(self, group_id: str, others: Sequence[str], store: str, adopt: str | None) -> None:
        self.group_id = group_id
        self.others = tuple(others)
        names = ", ".join(f"'{g}'" for g in self.others)
        problem = (
            f"kafka.adopt_offsets_from is '{adopt}', which holds no offsets for these topics; "
            if adopt is not None
            else ""
        )
        super().__init__(
            f"{problem}the store {store} holds offsets for these topics under consumer "
            f"group {names} and none under kafka.group_id '{group_id}': starting would read "
            "every event again and count it twice. Either keep kafka.group_id "
            f"{names}, or set kafka.adopt_offsets_from: {self.others[0]} to continue "
            f"from its offsets under '{group_id}', or point store.url at a new store to "
            "replay the topics from scratch"
        )


class AnotherGroupWritingError(WatchkeeperError):
    """Since this daemon started, another consumer group has committed offsets for its
    topics to the same store: two daemons with different group ids share it, and every
    event they both read is counted twice. Not retriable: the daemon stops loudly."""

    def __init__(self, group_id: str, others: Sequence[str]) -> None:
        names = ", ".join(f"'{g}'" for g in others)
        super().__init__(
            f"consumer group {names} is committing offsets for the topics of kafka.group_id "
            f"'{group_id}' to the same store: two daemons with different group ids share it "
            "and would count every event twice. Stopping: give them the same kafka.group_id "
            "(replicas) or stores of their own"
        )


Snapshot = dict[tuple[str, str, int], int]
"""(group, topic, partition) → next offset: the other groups' rows at start."""


def others_now(conn: Connection, group_id: str, topics: Sequence[str]) -> Snapshot:
    """The offsets other groups hold for ``topics``."""
    c = t.consumer_offsets.c
    rows = conn.execute(
        select(c.group_id, c.topic, c.partition, c.next_offset).where(
            c.topic.in_(sorted(topics)) & (c.group_id != group_id)
        )
    ).all()
    return {(str(r.group_id), str(r.topic), int(r.partition)): int(r.next_offset) for r in rows}


def check_alone(conn: Connection, group_id: str, topics: Sequence[str], at_start: Snapshot) -> None:
    """Inside a commit: raise :class:`AnotherGroupWritingError` when another group's offsets
    for ``topics`` moved (or appeared) since ``at_start``. Rows left by a group that stopped
    long ago never move, so they do not stop anyone; a daemon of another group started at
    the same moment on an empty store, or still running after its offsets were adopted, is
    caught at its first commit (one select over a table of partitions × groups)."""
    now = others_now(conn, group_id, topics)
    moved = sorted({g for (g, tp, p), o in now.items() if at_start.get((g, tp, p)) != o})
    if moved:
        raise AnotherGroupWritingError(group_id, moved)


def claim_offsets(
    engine: Engine,
    group_id: str,
    topics: Sequence[str],
    adopt_from: str | None = None,
) -> tuple[int, Snapshot]:
    """Check (and with ``adopt_from``, move) the stored offsets of ``topics`` for
    ``group_id``, in one transaction; returns how many partitions' offsets were adopted
    (0: none needed).

    Also returns the other groups' offsets as the claim leaves them (for :func:`check_alone`).

    Raises :class:`OffsetsOfAnotherGroupError` when another group holds offsets for
    partitions of ``topics`` that ``group_id`` holds none for (and ``adopt_from`` does not
    name one of those groups), :class:`StoreUnavailableError` when the store is down."""
    c = t.consumer_offsets.c
    with writing(engine, "claim offsets") as conn:
        held: dict[str, set[tuple[str, int]]] = {}
        for r in conn.execute(
            select(c.group_id, c.topic, c.partition).where(c.topic.in_(sorted(topics)))
        ).all():
            held.setdefault(str(r.group_id), set()).add((str(r.topic), int(r.partition)))
        mine = held.pop(group_id, set())
        # partitions another group has read and this one has not: re-reading doubles them
        others = sorted(g for g, parts in held.items() if parts - mine)
        if not others:
            return 0, others_now(conn, group_id, topics)
        # the URL without its password: the message is logged and printed
        store = engine.url.render_as_string(hide_password=True)
        if adopt_from is None or adopt_from not in others:
            raise OffsetsOfAnotherGroupError(group_id, others, store, adopt_from)
        adopted = sorted(held[adopt_from] - mine)
        # a third group's partitions that neither this one nor the adopted one holds
        rest = sorted(g for g in others if held[g] - mine - held[adopt_from])
        if rest:
            raise OffsetsOfAnotherGroupError(group_id, rest, store, None)
        for table in _GROUP_TABLES:
            tc = table.c
            for topic, part in adopted:
                at = (tc.topic == topic) & (tc.partition == part)
                # this group's own rows of those partitions (a status written before any
                # offset) give way to the adopted group's
                conn.execute(delete(table).where(at & (tc.group_id == group_id)))
                conn.execute(
                    update(table).where(at & (tc.group_id == adopt_from)).values(group_id=group_id)
                )
        return len(adopted), others_now(conn, group_id, topics)
