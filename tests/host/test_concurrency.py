"""One card at two terminals at the same moment, on two workers: the per-card rules still hold.

Each test runs two handlers, each on its own database connection as two workers have, in two
threads. Both are held just before their ledger write (Handler._store) until the other arrives or
1.5 s pass. Without serialization per card both would decide on the state before either wrote
(on PostgreSQL the terminal row locks do not cover a card used at two terminals); with it, the
second waits for the first to commit and decides on what it wrote. SQLite serializes all writers,
so there the tests show the same guarantees hold on the default ledger.
"""
from __future__ import annotations

import threading
from typing import List

import pytest

from roampos import iso
from roampos.host import db as dbm, registry
from roampos.host.db import DatabaseError
from roampos.host.handler import Handler, Outcome
from roampos.termsim import SimTerminal
from hostkit import MID, SERIAL, TID, TMK, handle_group, totals_from_ledger, totals_table

TID2, SERIAL2 = "SHA00002", "RP-S3-000002"
CARD = "6228480000000042"
OTHER = "6228480000000043"


@pytest.fixture
def pair(db, monkeypatch):
    """Two terminals of one merchant, each signed on through its own handler and connection."""
    registry.add_terminal(db, TID2, SERIAL2, MID, "Roaming Noodles", "48021000", "6222020000000001",
                          "310000", {"440300": "Booth 8, Futian"}, TMK.hex())
    registry.grant_region(db, TID2, "440300", "2020-01-01", "2099-12-31")
    registry.grant_region(db, TID2, "330100", "2020-01-01", "2099-12-31")
    conns = [dbm.connect(db.url), dbm.connect(db.url)]
    handlers = [Handler(c) for c in conns]
    terms = [SimTerminal(TID, MID, SERIAL, TMK, cell=None), SimTerminal(TID2, MID, SERIAL2, TMK, cell=None)]
    for h, t in zip(handlers, terms):
        t.apply_signon(h.handle(t.tid, t.signon()).response)
    yield handlers, terms
    for c in conns:
        c.close()


def _race(monkeypatch, jobs) -> List:
    """Run the jobs in two threads, each held before its ledger writes until both are there."""
    barrier = threading.Barrier(len(jobs), timeout=1.5)
    store = Handler._store

    def held_store(self, ctx, d, mac_key):  # type: ignore[no-untyped-def]
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass  # the other one is waiting for this one's commit: go on alone
        return store(self, ctx, d, mac_key)

    monkeypatch.setattr(Handler, "_store", held_store)
    out: List = [None] * len(jobs)

    def run(i: int) -> None:
        try:
            out[i] = jobs[i]()
        except Exception as exc:  # reported by the assertions below, not lost in the thread
            out[i] = exc
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    monkeypatch.setattr(Handler, "_store", store)
    return out


def _rcs(outs) -> List[str]:
    assert all(isinstance(o, Outcome) for o in outs), outs
    return sorted(o.rc for o in outs)


@pytest.mark.parametrize("amount, regions, declined, flag", [
    # 330100: txn limit 2,000,000, daily card limit 3,000,000: each sale alone fits, both do not
    (1_600_000, ("330100", "330100"), "61", "daily_card_limit"),
    (1000, ("310000", "440300"), "59", "impossible_travel"),
], ids=["daily-card-limit", "two-regions"])
def test_one_card_at_two_terminals_at_once(db, pair, monkeypatch, amount, regions, declined, flag):
    (h1, h2), (t1, t2) = pair
    m1 = t1.financial(CARD, amount, method="Q", region=regions[0])
    m2 = t2.financial(CARD, amount, method="Q", region=regions[1])
    outs = _race(monkeypatch, [lambda: h1.handle(TID, m1), lambda: h2.handle(TID2, m2)])
    assert _rcs(outs) == ["00", declined]
    assert db.one("SELECT COUNT(*) FROM txns WHERE status='approved'")[0] == 1
    assert flag in db.one("SELECT flags FROM txns WHERE rc=?", (declined,))[0]
    assert totals_table(db) == totals_from_ledger(db)


def test_two_refunds_of_one_sale_at_two_terminals(db, pair, monkeypatch):
    (h1, h2), (t1, t2) = pair
    sale = iso.decode(h1.handle(TID, t1.financial(CARD, 10_000, method="Q")).response)
    assert sale["39"] == "00"
    r1 = t1.financial(CARD, 7_000, method="Q", proc="200000", orig_rrn=sale["37"])
    r2 = t2.financial(CARD, 7_000, method="Q", proc="200000", orig_rrn=sale["37"])
    outs = _race(monkeypatch, [lambda: h1.handle(TID, r1), lambda: h2.handle(TID2, r2)])
    assert _rcs(outs) == ["00", "64"]
    (refunded,) = db.one("SELECT SUM(amount) FROM txns WHERE proc LIKE '20%' AND status='approved'")
    assert refunded == 7_000


def test_two_groups_with_the_same_cards_in_opposite_order_do_not_deadlock(db, pair, monkeypatch):
    (h1, h2), (t1, t2) = pair
    g1 = [t1.financial(CARD, 100, method="Q"), t1.financial(OTHER, 100, method="Q")]
    g2 = [t2.financial(OTHER, 200, method="Q"), t2.financial(CARD, 200, method="Q")]
    outs = _race(monkeypatch, [lambda: handle_group(h1, TID, g1), lambda: handle_group(h2, TID2, g2)])
    # A lock cycle would end with PostgreSQL aborting one group (a DatabaseError for the worker).
    assert not any(isinstance(o, (DatabaseError, Exception)) for o in outs), outs
    assert [o.rc for group in outs for o in group] == ["00"] * 4
    assert db.one("SELECT COUNT(*) FROM txns")[0] == 5 - 1  # 4 sales (sign-ons store no row)
    assert totals_table(db) == totals_from_ledger(db)


@pytest.mark.parametrize("db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_a_card_lock_taken_in_a_rolled_back_savepoint_is_taken_again(db):
    # PostgreSQL frees advisory locks with the savepoint that took them: lock_cards() must not
    # believe it still holds them, or a later message of the group would run unserialized.
    # (PostgreSQL only: SQLite has one writer, and no advisory locks.)
    other = dbm.connect(db.url)

    def free_for_other() -> bool:
        key = dbm._card_lock_key("c1")
        with other.transaction():
            return bool(other.one("SELECT pg_try_advisory_xact_lock(?, ?)", (dbm._CARD_LOCK_SPACE, key))[0])

    try:
        with db.transaction():
            with pytest.raises(RuntimeError):
                with db.transaction():      # a message's savepoint
                    db.lock_cards(["c1"])
                    raise RuntimeError("the message failed half-way")
            assert free_for_other()         # what PostgreSQL does
            db.lock_cards(["c1"])           # a later message of the same card
            assert not free_for_other()
    finally:
        other.close()
