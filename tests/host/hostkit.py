"""Shared helpers for host tests (constants, HostEnv); conftest.py wires them into fixtures."""
from __future__ import annotations

import shutil
import sys
import threading
import uuid
from pathlib import Path

from roampos.netutil import free_port, wait_port  # noqa: F401  (re-exported for the tests)
from roampos.termsim import MqttLink, SimTerminal

TMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
TID, MID, SERIAL = "SHA00001", "310000000000001", "RP-S3-000001"


def worker_thread(url: str, db_url: str, index: int):
    """A host worker serving in a daemon thread of the test process: (worker, thread)."""
    from roampos.host.service import Worker
    w = Worker(url, db_url, index=index)
    t = threading.Thread(target=w.serve_forever, daemon=True)
    t.start()
    return w, t


def handle_group(handler, tid: str, msgs: list) -> list:
    """Handle `msgs` as a worker does: one transaction, group reads first."""
    with handler.db.transaction():
        decoded = [handler.decode(tid, m) for m in msgs]
        handler.begin_group([(tid, d) for d in decoded])
        try:
            return [handler.handle(tid, m, decoded=d) for m, d in zip(msgs, decoded)]
        finally:
            handler.end_group()


def totals_table(db) -> list:
    """The running daily totals (terminals; a card's are summed from the ledger), as sorted tuples
    (zero rows left out)."""
    return sorted(tuple(r) for r in db.all(
        "SELECT scope, subject, region, local_date, amount FROM daily_totals WHERE amount <> 0"))


def totals_from_ledger(db) -> list:
    """The same totals recomputed from the ledger: must equal totals_table() at every commit."""
    from roampos.host import totals
    return sorted((r[0], r[1], r[2], r[3], int(r[4])) for r in totals.ledger_daily(db))


def signed_on(link: MqttLink) -> SimTerminal:
    """The test terminal, subscribed on `link` and signed on (working keys applied)."""
    link.subscribe([TID])
    term = SimTerminal(TID, MID, SERIAL, TMK)
    term.apply_signon(link.request(TID, term.signon()))
    return term


def utc(*ymdhm: int) -> float:
    """Epoch seconds of a UTC date and time (year, month, day[, hour, minute])."""
    import calendar
    return float(calendar.timegm(tuple(ymdhm) + (0,) * (9 - len(ymdhm))))  # type: ignore[arg-type]


class AtTime:
    """A handler driven at a chosen host time (`now`, changed at will), with a signed-on terminal
    whose clock agrees: for rules that depend on the date, the time of day or a message's age."""

    CELL = {"310000": "460-00-6200-1", "440300": "460-01-10000-7", "330100": "460-11-8800-3",
            "810000": "454-00-100-1"}

    def __init__(self, handler, when: float):
        self.h, self.now = handler, when
        self.term = SimTerminal(TID, MID, SERIAL, TMK)
        self.term.clock = lambda: self.now
        self.term.apply_signon(handler.handle(TID, self.term.signon(), now=when).response)

    def send(self, raw: bytes) -> dict:
        with self.h.db.transaction():
            return self.term.check(self.h.handle(TID, raw, now=self.now).response)

    def sale(self, pan: str, amount: int, region: str = "310000", **kw) -> dict:
        kw.setdefault("cell", self.CELL.get(region))
        return self.send(self.term.financial(pan, amount, region=region, **kw))

    def refund(self, pan: str, amount: int, rrn: str, **kw) -> dict:
        return self.sale(pan, amount, proc="200000", orig_rrn=rrn, **kw)

    def settle(self, totals: tuple, proc: str = "920000") -> dict:
        return self.send(self.term.settlement(totals, proc=proc))

    def row(self, stan: str, kind: str = "financial") -> dict:
        cols = ("rc", "status", "flags", "amount", "rrn")
        r = self.h.db.one(f"SELECT {','.join(cols)} FROM txns WHERE terminal_id=? AND stan=? AND kind=?",
                          (TID, stan, kind))
        assert r is not None, f"no {kind} row for STAN {stan}"
        return dict(zip(cols, r))


def roampos_bin() -> str:
    exe = Path(sys.executable).parent / "roampos"
    return str(exe) if exe.exists() else (shutil.which("roampos") or "roampos")


class HostEnv:
    """A worker thread (same code as `roampos host`) on a real broker plus one simulated terminal."""

    def __init__(self, broker_url: str, db_url: str, db):
        from roampos.host.service import Worker
        self.broker_url, self.db_url, self.db = broker_url, db_url, db
        self.worker = Worker(broker_url, db_url, index=int(uuid.uuid4().int % 10000))
        self.thread = threading.Thread(target=self.worker.serve_forever, daemon=True)
        self.thread.start()
        self.link = MqttLink(broker_url)
        self.link.subscribe([TID])
        self.term = SimTerminal(TID, MID, SERIAL, TMK)
        assert self.worker.ready.wait(10), "worker did not subscribe"
        self.term.apply_signon(self.send(self.term.signon(), raw_out=True))

    def send(self, msg: bytes, tid: str = TID, raw_out: bool = False, timeout: float = 10.0):
        """Request/response through the broker; returns the decoded, MAC-checked response."""
        resp = self.link.request(tid, msg, timeout)
        assert resp is not None, f"no response to {msg.hex()}"
        return resp if raw_out else self.term.check(resp)

    def rows(self) -> int:
        return self.db.one("SELECT COUNT(*) FROM txns")[0]

    def row(self, stan: str, kind: str = "financial") -> dict:
        cols = ("rc", "status", "flags", "fee", "amount", "region", "masked_pan", "rrn", "location")
        r = self.db.one(f"SELECT {','.join(cols)} FROM txns WHERE terminal_id=? AND stan=? AND kind=?",
                        (TID, stan, kind))
        assert r is not None, f"no {kind} row for STAN {stan}"
        return dict(zip(cols, r))

    def close(self) -> None:
        self.link.close()
        self.worker.stop()
        self.thread.join(10)
        self.worker.db.close()
