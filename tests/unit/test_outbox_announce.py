"""A shadow decision is recorded and announced the way every notification is: by the
outbox, in one transaction with the decision — both or neither."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from sqlalchemy import Connection
from watchkeeper.alerts.notification import Notification
from watchkeeper.daemon.notify.outbox import Outbox
from watchkeeper.daemon.shadow.store import ShadowStore
from watchkeeper.daemon.store.store import Store


def _note(kind: str = "promote") -> Notification:
    return Notification(
        kind=kind,
        fingerprint="fraud:candidate:small",
        severity="info",
        summary="promote small",
        model="fraud",
        policy="fraud",
        rule="promotion",
        metric="shadow_agreement",
        feature="small",
        members={},
        at_ms=1_000,
        opened_ms=1_000,
    )


def test_a_decision_and_its_notifications_are_one_transaction(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        outbox, shadow = Outbox(store.engine), ShadowStore(store.engine)
        write = functools.partial(
            shadow.write_decision,
            policy="fraud",
            candidate="small",
            decision="promote",
            reasons=(),
            table={"values": {}},
            at_ms=1_000,
        )

        def failing(conn: Connection) -> None:
            write(conn)
            raise RuntimeError("the write failed after the decision")

        with pytest.raises(RuntimeError):
            outbox.announce([("deploy", _note())], 1_000, failing)
        assert outbox.rows() == []
        assert shadow.decisions("fraud") == {}

        outbox.announce(
            [("deploy", _note()), ("audit", _note())],
            1_000,
            write,
            silenced=lambda n: False,
        )
        rows = outbox.rows()
        assert sorted(r["channel"] for r in rows) == ["audit", "deploy"]
        assert {r["state"] for r in rows} == {"pending"}
        assert shadow.decisions("fraud")[("fraud", "small")]["decision"] == "promote"
        outbox.announce([("audit", _note("reject"))], 2_000, write, silenced=lambda n: True)
        assert [r["state"] for r in outbox.rows() if r["kind"] == "reject"] == ["silenced"]
