"""Running daily sale totals per terminal (region + local date), kept with the ledger; a card's day
is summed from its own ledger rows."""
from __future__ import annotations

import calendar
import time
from typing import Dict, Iterable, Optional, Tuple

from .db import Database

__all__ = ["counts", "daily", "card_daily", "day_bounds", "add", "add_row", "ledger_daily", "backfill",
           "STANDING_SALE"]

# The rows the per-day limits count: approved (still standing) financial sales. Every status
# change into or out of this set goes through add()/add_row() in the same transaction, so the
# terminal table always equals SUM over the ledger (test_totals.py checks it).
STANDING_SALE = "status='approved' AND kind='financial' AND proc LIKE '00%'"

# Why no card rows: a card's total was a row of its own, on a page of its own (cards are random),
# one more b-tree write and WAL page per sale, ~7 us of a worker's ~120 (docs/host.md, eighth
# session). A card has a few sales a day, found in the card index (card_hash, created) the risk
# rules read anyway; a terminal has hundreds, so its total stays a running row.

_STARTS: Dict[str, int] = {}   # "YYYY-MM-DD" -> epoch of its 00:00 UTC


def day_bounds(day: str) -> Tuple[int, int]:
    """`created` bounds that hold every row of local date `day` in any region: a local date lies
    within a day of the UTC date of the same name (offsets are under 24 h)."""
    start = _STARTS.get(day)
    if start is None:
        if len(_STARTS) >= 4096:
            _STARTS.clear()
        start = _STARTS[day] = calendar.timegm(time.strptime(day, "%Y-%m-%d"))
    return start - 86400, start + 2 * 86400


def counts(kind: str, proc: str, status: str) -> bool:
    """Whether a ledger row with this kind/processing code/status is in the daily totals."""
    return kind == "financial" and status == "approved" and proc.startswith("00")


def card_daily(db: Database, card_hash: str, region: str, day: str) -> int:
    """The card's standing sales in `region` on its local date `day` (one index range of the card)."""
    lo, hi = day_bounds(day)
    (total,) = db.one("SELECT COALESCE(SUM(amount), 0) FROM txns WHERE card_hash=? AND created>=? AND created<?"
                      " AND region=? AND local_date=? AND " + STANDING_SALE, (card_hash, lo, hi, region, day))
    return int(total)


def daily(db: Database, card_hash: str, terminal_id: str, region: str, day: str) -> Tuple[int, int]:
    """(card total, terminal total) of standing sales in `region` on its local date `day`."""
    row = db.one("SELECT amount FROM daily_totals WHERE scope='terminal' AND subject=? AND region=?"
                 " AND local_date=?", (terminal_id, region, day))
    return card_daily(db, card_hash, region, day), int(row[0]) if row else 0


def add(db: Database, terminal_id: str, region: str, day: str, delta: int) -> None:
    """Move the terminal's running total of `region` on `day` by `delta`."""
    if delta:
        db.execute("INSERT INTO daily_totals (scope, subject, region, local_date, amount) VALUES"
                   " ('terminal',?,?,?,?) ON CONFLICT (scope, subject, region, local_date)"
                   " DO UPDATE SET amount = daily_totals.amount + excluded.amount",
                   (terminal_id, region, day, delta))


def add_row(db: Database, row: Optional[tuple], sign: int) -> None:
    """`row` = (card_hash, terminal_id, region, local_date, amount, proc) of a sale entering (+1) or
    leaving (-1) the standing set; rows of other processing codes do not count."""
    if row is not None and str(row[5]).startswith("00"):
        add(db, row[1], row[2], row[3], sign * int(row[4]))


def ledger_daily(db: Database) -> Iterable[tuple]:
    """The same totals recomputed from the ledger: (scope, subject, region, local_date, amount)."""
    return db.all("SELECT 'terminal', terminal_id, region, local_date, SUM(amount) FROM txns WHERE "
                  + STANDING_SALE + " GROUP BY terminal_id, region, local_date")


def backfill(db: Database) -> None:
    """Once per database: load the totals of a ledger from before the table existed, or drop the
    card rows a ledger from before v2 kept."""
    with db.transaction():
        cur = db.execute("INSERT INTO settings VALUES ('daily_totals', 'v2') ON CONFLICT DO NOTHING")
        if cur.rowcount != 1:
            if db.execute("UPDATE settings SET value='v2' WHERE name='daily_totals' AND value='v1'").rowcount:
                db.execute("DELETE FROM daily_totals WHERE scope='card'")
            return  # done at creation, by another worker, or just now
        db.execute("DELETE FROM daily_totals")
        for row in ledger_daily(db):
            db.execute("INSERT INTO daily_totals (scope, subject, region, local_date, amount) VALUES (?,?,?,?,?)",
                       row)
