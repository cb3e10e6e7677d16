"""The worker's group reads (Handler.begin_group) give the same decisions as reading per message."""
import time

from roampos import iso
from roampos.termsim import SimTerminal
from hostkit import MID, SERIAL, TID, TMK, handle_group, totals_from_ledger, totals_table


def card(n: int) -> str:
    return "622848" + f"{n:010d}"


def test_group_reads_keep_duplicates_reversals_and_totals(db, handler):
    term = SimTerminal(TID, MID, SERIAL, TMK)
    term.apply_signon(handler.handle(TID, term.signon()).response)
    committed = term.financial(card(1), 500, cell="460-00-6200-1")
    first = handle_group(handler, TID, [committed])[0]
    assert first.rc == "00" and first.stored
    # The same terminal several times in one group: a redelivery of a committed request, a new sale,
    # its exact duplicate, another sale and its reversal.
    sale = term.financial(card(2), 700, cell="460-00-6200-1")
    other = term.financial(card(3), 900, cell="460-00-6200-1")
    stan = iso.decode(other)["11"]
    rev = term.reversal(stan, card(3), 900)
    out = handle_group(handler, TID, [committed, sale, sale, other, rev])
    assert out[0].response == first.response and not out[0].stored
    assert out[1].rc == "00" and out[1].stored
    assert out[2].response == out[1].response and not out[2].stored
    assert out[3].rc == "00" and out[4].rc == "00"
    assert db.one("SELECT status FROM txns WHERE stan=? AND kind='financial'", (stan,))[0] == "reversed"
    assert db.one("SELECT COUNT(*) FROM txns")[0] == 4
    assert totals_table(db) == totals_from_ledger(db)


def test_group_reads_see_a_blocked_terminal_and_unknown_ones(db, handler):
    term = SimTerminal(TID, MID, SERIAL, TMK)
    term.apply_signon(handler.handle(TID, term.signon()).response)
    db.execute("UPDATE terminals SET blocked=1 WHERE terminal_id=?", (TID,))
    out = handle_group(handler, TID, [term.financial(card(4), 100, cell="460-00-6200-1")])
    assert out[0].rc == "58"
    with db.transaction():
        handler.begin_group([("ZZZ00001", {"t": "0200", "41": "ZZZ00001", "11": "000001"})])
        assert handler._group.terms == {"ZZZ00001": None}
        handler.end_group()


class _Client:
    """What process_batch needs of the MQTT client: it records what would be sent."""
    conn = 1

    def __init__(self):
        self.published, self.acked = [], []

    def publish(self, topic, payload, qos=1):
        self.published.append((topic, payload))

    def ack(self, msg):
        self.acked.append(msg.mid)

    def flush(self):
        return True


def test_a_message_failing_half_way_is_undone_alone(db, monkeypatch):
    """The worker handles a group without per-message savepoints; one that fails after it wrote
    (here: an internal error after its batch row was inserted) makes the worker roll the group back
    and handle it again with savepoints, so only that message is undone, and all are answered."""
    from roampos.host import auth
    from roampos.host.service import Worker
    from roampos.host.wire import Inbound
    w = Worker("mqtt://127.0.0.1:1", db.url)
    w.client = _Client()
    term = SimTerminal(TID, MID, SERIAL, TMK)
    term.apply_signon(w.handler.handle(TID, term.signon()).response)
    good1 = term.financial(card(11), 100, cell="460-00-6200-1")
    term.batch = "000007"
    bad = term.financial(card(12), 200, cell="460-00-6200-1")
    term.batch = "000001"
    good2 = term.financial(card(13), 300, cell="460-00-6200-1")
    location = auth._location

    def failing(ctx, d):
        if ctx.tlv["BN"] == "000007":
            raise RuntimeError("a bug after the batch row was written")
        return location(ctx, d)
    monkeypatch.setattr(auth, "_location", failing)
    msgs = [Inbound(f"roampos/v1/{TID}/req", raw, 1, i + 1, 1) for i, raw in enumerate((good1, bad, good2))]
    statements = db.statement_errors
    w.process_batch(msgs)
    rcs = [iso.decode(p)["39"] for _, p in w.client.published]
    assert rcs == ["00", "96", "00"] and w.client.acked == [1, 2, 3]
    assert db.one("SELECT COUNT(*) FROM txns")[0] == 2
    assert db.one("SELECT COUNT(*) FROM batches WHERE batch_no='000007'")[0] == 0   # undone
    assert db.statement_errors == statements
    assert totals_table(db) == totals_from_ledger(db)


def _terminals(db, handler, n):
    from roampos.host import registry
    out = []
    for i in range(n):
        tid, serial = f"GRP{i:05d}", f"RP-GRP-{i:05d}"
        registry.add_terminal(db, tid, serial, MID, "Roaming Noodles", "48021000", "6222020000000001", "310000",
                              {}, TMK.hex())
        registry.grant_region(db, tid, "440300", "2020-01-01", "2099-12-31")
        t = SimTerminal(tid, MID, serial, TMK, cell=None)
        t.apply_signon(handler.handle(tid, t.signon()).response)
        out.append(t)
    return out


def _mixed_group(handler, items):
    """(terminal, raw) pairs handled as one worker group."""
    with handler.db.transaction():
        decoded = [(t.tid, handler.decode(t.tid, raw)) for t, raw in items]
        handler.begin_group(decoded)
        try:
            return [handler.handle(t.tid, raw, decoded=d) for (t, raw), (_, d) in zip(items, decoded)]
        finally:
            handler.end_group()


def test_one_card_several_times_in_one_group_sees_its_own_earlier_approvals(db, handler):
    """The group reads a card's totals and recent approvals once; a second message with that card
    must not decide on them, but on what the first one just wrote."""
    ts = _terminals(db, handler, 7)
    same = card(500)
    # daily card limit (310000: 10,000,000; per transaction 5,000,000): the third sale crosses it
    out = _mixed_group(handler, [(t, t.financial(same, 4_000_000, method="Q")) for t in ts[:3]])
    assert [o.rc for o in out] == ["00", "00", "61"]
    # velocity (5 approvals a minute): of six sales of one card in one group, the sixth is refused
    other = card(501)
    out = _mixed_group(handler, [(t, t.financial(other, 100, method="Q")) for t in ts[:6]])
    assert [o.rc for o in out] == ["00"] * 5 + ["59"]
    # impossible travel inside one group: Shanghai, then Shenzhen
    third = card(502)
    out = _mixed_group(handler, [(ts[0], ts[0].financial(third, 100, method="Q")),
                                 (ts[6], ts[6].financial(third, 100, method="Q", region="440300"))])
    assert [o.rc for o in out] == ["00", "59"]
    assert totals_table(db) == totals_from_ledger(db)


def test_group_card_reads_match_reading_per_message(db, handler):
    """The same messages, one group or one at a time: the same decisions."""
    ts = _terminals(db, handler, 5)
    pans = [card(600 + i) for i in range(5)]
    for t, pan in zip(ts, pans):   # history: each card approved once already, in Shanghai
        assert iso.decode(handler.handle(t.tid, t.financial(pan, 2_000_000, method="Q")).response)["39"] == "00"
    # and the fifth twice more: 6,000,000 of its 10,000,000 a day used, counted from its ledger rows
    for _ in range(2):
        assert iso.decode(handler.handle(ts[4].tid, ts[4].financial(pans[4], 2_000_000, method="Q")).response)[
            "39"] == "00"
    ts[2].batch = "000002"   # a Shenzhen batch of its own
    batch = [(ts[0], ts[0].financial(pans[0], 4_000_000, method="Q")),                  # fits
             (ts[1], ts[1].financial(pans[1], 9_000_000, method="Q")),                  # per-txn limit
             (ts[2], ts[2].financial(pans[2], 100, method="Q", region="440300")),       # travel
             (ts[3], ts[3].financial(pans[3], 4_500_000, method="Q")),                  # fits
             (ts[4], ts[4].financial(pans[4], 4_500_000, method="Q"))]                  # daily card limit
    grouped = [o.rc for o in _mixed_group(handler, batch)]
    assert grouped == ["00", "61", "59", "00", "61"], grouped


def test_a_funds_issuers_balance_holds_inside_a_group(db, handler):
    """The 'funds' test issuer (6228481, 50.00 available) in a group: each card's standing sales less
    its refunds, and a later message with the same card sees the earlier one's sale."""
    ts = _terminals(db, handler, 4)
    spent, refunded, fresh = "6228481000000701", "6228481000000702", "6228481000000703"

    def one(t, raw):
        return iso.decode(handler.handle(t.tid, raw).response)

    assert one(ts[0], ts[0].financial(spent, 3000, method="Q"))["39"] == "00"
    sale = one(ts[1], ts[1].financial(refunded, 3000, method="Q"))
    assert sale["39"] == "00"
    assert one(ts[1], ts[1].financial(refunded, 1000, method="Q", proc="200000", orig_rrn=sale["37"]))["39"] == "00"
    out = _mixed_group(handler, [(ts[0], ts[0].financial(spent, 2500, method="Q")),      # 3000 + 2500 > 5000
                                 (ts[1], ts[1].financial(refunded, 2500, method="Q")),   # 2000 + 2500
                                 (ts[2], ts[2].financial(fresh, 4000, method="Q")),
                                 (ts[3], ts[3].financial(fresh, 1500, method="Q"))])     # after the 4000
    assert [o.rc for o in out] == ["51", "00", "00", "51"]


def test_a_sale_after_a_sign_on_in_the_same_group_counts_for_its_card(db, handler, monkeypatch):
    """A sign-on and the terminal's next sale in one group: the group read decrypted that sale's card
    with the old data key (so it did not know the card); another terminal's sale of the same card
    later in the group must still see the first one (impossible travel), as one at a time does."""
    import itertools
    import types
    from roampos.host import handler as handler_mod
    t, u = _terminals(db, handler, 2)
    # The sign-on's new keys, known in advance so that the sale can be built before it is handled
    # (the handler's own `os` only: the terminal still draws its random IVs).
    draws = itertools.count(7)
    monkeypatch.setattr(handler_mod, "os", types.SimpleNamespace(urandom=lambda n: bytes([next(draws)]) * n))
    signon = t.signon()
    t.tpk, t.tak, t.tdk = (bytes([k]) * 16 for k in (7, 8, 9))   # P, M, D: the handler's order
    pan = card(700)
    out = _mixed_group(handler, [(t, signon), (t, t.financial(pan, 100, method="Q")),
                                 (u, u.financial(pan, 100, method="Q", region="440300"))])
    assert [o.rc for o in out] == ["00", "00", "59"], [o.rc for o in out]
    assert t.check(out[1].response)["39"] == "00"   # the sale was MACed under the new keys


def test_a_statement_bug_costs_one_message_not_the_worker(db, monkeypatch):
    """A mistake in a statement (here: a column that does not exist) is not a database outage:
    the message gets a 96 and the worker goes on, instead of retrying the group forever."""
    from roampos.host import risk
    from roampos.host.service import Worker
    from roampos.host.wire import Inbound
    w = Worker("mqtt://127.0.0.1:1", db.url)
    w.client = _Client()
    term = SimTerminal(TID, MID, SERIAL, TMK)
    term.apply_signon(w.handler.handle(TID, term.signon()).response)
    original = risk.check

    def buggy(db_, policy, card_hash, region, amount, threshold, now, recent=None):
        db_.one("SELECT no_such_column FROM txns")
        return original(db_, policy, card_hash, region, amount, threshold, now, recent)
    monkeypatch.setattr(risk, "check", buggy)
    w.process_batch([Inbound(f"roampos/v1/{TID}/req", term.financial(card(21), 100, cell="460-00-6200-1"), 1, 1, 1)])
    assert [iso.decode(p)["39"] for _, p in w.client.published] == ["96"] and w.client.acked == [1]
    assert db.one("SELECT COUNT(*) FROM txns")[0] == 0


def _sqlite_worker(db, monkeypatch, fdatasync):
    """An in-process worker on the SQLite `db` whose WAL syncs go through `fdatasync`."""
    from roampos.host import walsync
    from roampos.host.service import Worker
    monkeypatch.setattr(walsync.os, "fdatasync", fdatasync)
    w = Worker("mqtt://127.0.0.1:1", db.url)
    w.client = _Client()
    assert w.db.wal is not None and w.db.one("PRAGMA synchronous")[0] == 1   # NORMAL: SQLite's own fsync off
    term = SimTerminal(TID, MID, SERIAL, TMK)
    term.apply_signon(w.handler.handle(TID, term.signon()).response)
    return w, term


def test_a_group_is_answered_only_once_its_wal_sync_returned(db, monkeypatch):
    """SQLite: the worker commits without SQLite's fsync and a thread fdatasyncs the WAL after the
    write lock is released (FULL's durability, off the lock). Until that sync has returned, the
    committed group is neither answered nor acknowledged, while the worker can go on."""
    import os
    import threading
    from roampos.host.wire import Inbound
    if db.kind != "sqlite":
        return  # PostgreSQL syncs inside its COMMIT: nothing is deferred (checked below)
    real, release, synced = os.fdatasync, threading.Event(), []

    def held(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        assert release.wait(10)
        real(fd)
    w, term = _sqlite_worker(db, monkeypatch, held)
    msgs = [Inbound(f"roampos/v1/{TID}/req", term.financial(card(30 + i), 100 + i, cell="460-00-6200-1"), 1, i + 1, 1)
            for i in range(3)]
    w.process_batch(msgs[:2], wait_sync=False)
    assert db.one("SELECT COUNT(*) FROM txns")[0] == 2           # committed: another connection sees it
    w.answer_synced(wait=0.3)
    assert w.client.published == [] and w.client.acked == []     # not durable yet: nothing answered
    w.process_batch(msgs[2:], wait_sync=False)                   # the next group meanwhile
    assert db.one("SELECT COUNT(*) FROM txns")[0] == 3 and w.client.acked == []
    release.set()
    w.answer_synced(wait=10, every=True)
    assert w.client.acked == [1, 2, 3]
    assert [iso.decode(p)["39"] for _, p in w.client.published] == ["00", "00", "00"]
    assert synced and set(synced) == {os.path.realpath(db.url[len("sqlite:///"):]) + "-wal"}


def test_a_failed_wal_sync_acknowledges_nothing(db, monkeypatch):
    """After a failed fsync the WAL's content is unknown (Linux may drop the dirty pages): the
    worker raises instead of answering, so its messages stay with the broker for redelivery."""
    import errno
    import pytest
    from roampos.host.walsync import SyncError
    from roampos.host.wire import Inbound
    if db.kind != "sqlite":
        w = __import__("roampos.host.service", fromlist=["Worker"]).Worker("mqtt://127.0.0.1:1", db.url)
        assert w.db.wal is None   # PostgreSQL: its COMMIT is durable, answered at once
        return

    def broken(fd):
        raise OSError(errno.EIO, "Input/output error")
    w, term = _sqlite_worker(db, monkeypatch, broken)
    msg = Inbound(f"roampos/v1/{TID}/req", term.financial(card(40), 100, cell="460-00-6200-1"), 1, 9, 1)
    with pytest.raises(SyncError, match="Input/output error"):
        w.process_batch([msg])
    assert w.client.published == [] and w.client.acked == []


def test_a_ledger_reached_through_a_symlink_syncs_the_wal_sqlite_writes(tmp_path, monkeypatch):
    """SQLite resolves a symlinked database path and keeps its WAL beside the real file: the sync
    must fdatasync that WAL, not open '<link>-wal' (which does not exist: every group then failed
    its sync and the worker exited, restarted and failed again, answering nothing)."""
    import os
    from roampos.host import db as dbm, registry, walsync
    from roampos.host.service import Worker
    from roampos.host.wire import Inbound
    (tmp_path / "data").mkdir()
    (tmp_path / "etc").mkdir()
    real, link = tmp_path / "data" / "ledger.db", tmp_path / "etc" / "ledger.db"
    d = dbm.connect(f"sqlite:///{real}")
    registry.add_terminal(d, TID, SERIAL, MID, "Roaming Noodles", "48021000", "6222020000000001", "310000", {},
                          TMK.hex())
    os.symlink(real, link)
    monkeypatch.setenv("ROAMPOS_HOST_KEY_FILE", str(real) + ".key")   # the key sits beside the real file
    real_sync, synced = os.fdatasync, []

    def watched(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_sync(fd)
    monkeypatch.setattr(walsync.os, "fdatasync", watched)
    w = Worker("mqtt://127.0.0.1:1", f"sqlite:///{link}")
    w.client = _Client()
    try:
        term = SimTerminal(TID, MID, SERIAL, TMK)
        term.apply_signon(w.handler.handle(TID, term.signon()).response)
        w.process_batch([Inbound(f"roampos/v1/{TID}/req", term.financial(card(50), 100, cell="460-00-6200-1"),
                                 1, 7, 1)])
        assert w.client.acked == [7] and [iso.decode(p)["39"] for _, p in w.client.published] == ["00"]
        assert synced and set(synced) == {os.path.realpath(real) + "-wal"}
    finally:
        w.db.close()
        d.close()


def test_a_synced_group_is_answered_while_the_worker_queues_for_the_write_lock(db, monkeypatch):
    """Another writer (a second worker's group, `roampos terminal`) holds the ledger's write lock
    when the worker starts its next group: the previous group, durable meanwhile, is answered
    before the worker queues for the lock, not held back until the other writer commits."""
    import os
    import threading
    from roampos.host import db as dbm
    from roampos.host.wire import Inbound
    if db.kind != "sqlite":
        return  # PostgreSQL answers at its COMMIT
    real, release = os.fdatasync, threading.Event()

    def held(fd):
        assert release.wait(10)
        real(fd)
    w, term = _sqlite_worker(db, monkeypatch, held)
    msgs = [Inbound(f"roampos/v1/{TID}/req", term.financial(card(60 + i), 100 + i, cell="460-00-6200-1"), 1, i + 1, 1)
            for i in range(2)]
    w.process_batch(msgs[:1], wait_sync=False)           # committed; its sync is under way
    other = dbm.Database(db.url)                           # the other writer takes the write lock
    other._lock()
    t = threading.Thread(target=w.process_batch, args=(msgs[1:],), kwargs={"wait_sync": False}, daemon=True)
    try:
        t.start()
        time.sleep(0.2)
        assert w.client.acked == []                        # still not durable
        release.set()                                      # now it is: answered while waiting for the lock
        end = time.monotonic() + 5
        while not w.client.acked and time.monotonic() < end:
            time.sleep(0.01)
        assert w.client.acked == [1] and [iso.decode(p)["39"] for _, p in w.client.published] == ["00"]
        assert t.is_alive()                                # and the next group still waits its turn
    finally:
        other._unlock()
        t.join(10)
        other.close()
    w.answer_synced(wait=10, every=True)
    assert w.client.acked == [1, 2]


def test_a_failed_wal_sync_still_lets_the_durable_groups_before_it_go(db, monkeypatch):
    """Groups whose sync returned are answered even when a later group's sync then fails and the
    worker stops: their responses and PUBACKs leave before the SyncError, so the broker does not
    redeliver durable requests (to a terminal that meanwhile timed out and reversed)."""
    import errno
    import os
    import threading
    import pytest
    from roampos.host.walsync import SyncError
    from roampos.host.wire import Inbound
    if db.kind != "sqlite":
        return  # PostgreSQL answers at its COMMIT
    real, release, calls = os.fdatasync, threading.Event(), []

    def first_then_broken(fd):
        calls.append(fd)
        if len(calls) > 2:
            raise OSError(errno.EIO, "Input/output error")
        if len(calls) == 2:
            assert release.wait(10)   # the first group's
        real(fd)
    w, term = _sqlite_worker(db, monkeypatch, first_then_broken)
    assert w.db.wal.wait(w.db.commit_seq, 10)     # the sign-on's sync is over
    sent = []   # what reached the socket: queued packets leave only with flush()
    w.client.flush = lambda: sent.extend(w.client.acked[len(sent):]) or True
    msgs = [Inbound(f"roampos/v1/{TID}/req", term.financial(card(70 + i), 100 + i, cell="460-00-6200-1"), 1, i + 1, 1)
            for i in range(2)]
    w.process_batch(msgs[:1], wait_sync=False)    # its sync returns
    end = time.monotonic() + 10
    while len(calls) < 2 and time.monotonic() < end:
        time.sleep(0.001)                          # that sync has begun: it covers this group only
    w.process_batch(msgs[1:], wait_sync=False)    # committed while that sync runs: the next one fails
    release.set()
    with pytest.raises(SyncError):
        w.answer_synced(wait=10, every=True)
    assert w.client.acked == [1] and sent == [1]
