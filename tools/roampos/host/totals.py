"""Running daily sale totals per card and per terminal (region + local date), kept with the ledger."""
from __future__ import annotations

from typing import Iterable, Optional, Tuple

from .db import Database

__all__ = ["counts", "daily", "add", "add_row", "ledger_daily", "backfill", "STANDING_SALE"]

# The rows the per-day limits count: approved (still standing) financial sales. Every status
# change into or out of this set goes through add()/add_row() in the same transaction, so the
# table always equals SUM over the ledger (test_totals.py checks it) at one indexed read per sale.
STANDING_SALE = "status='approved' AND kind='financial' AND proc LIKE '00%'"


def counts(kind: str, proc: str, status: str) -> bool:
    """Whether a ledger row with this kind/processing code/status is in the daily totals."""
    return kind == "financial" and status == "approved" and proc.startswith("00")


def daily(db: Database, card_hash: str, terminal_id: str, region: str, day: str) -> Tuple[int, int]:
    """(card total, terminal total) of standing sales in `region` on its local date `day`."""
    card = term = 0
    for scope, amount in db.all("SELECT scope, amount FROM daily_totals WHERE region=? AND local_date=?"
                                " AND ((scope='card' AND subject=?) OR (scope='terminal' AND subject=?))",
                                (region, day, card_hash, terminal_id)):
        if scope == "card":
            card = int(amount)
        else:
            term = int(amount)
    return card, term


def add(db: Database, card_hash: str, terminal_id: str, region: str, day: str, delta: int) -> None:
    """One statement moves both running totals (a multi-row upsert)."""
    if delta:
        db.execute("INSERT INTO daily_totals (scope, subject, region, local_date, amount) VALUES"
                   " ('card',?,?,?,?), ('terminal',?,?,?,?) ON CONFLICT (scope, subject, region, local_date)"
                   " DO UPDATE SET amount = daily_totals.amount + excluded.amount",
                   (card_hash, region, day, delta, terminal_id, region, day, delta))


def add_row(db: Database, row: Optional[tuple], sign: int) -> None:
    """`row` = (card_hash, terminal_id, region, local_date, amount, proc) of a sale entering (+1) or
    leaving (-1) the standing set; rows of other processing codes do not count."""
    if row is not None and str(row[5]).startswith("00"):
        add(db, row[0], row[1], row[2], row[3], sign * int(row[4]))


def ledger_daily(db: Database) -> Iterable[tuple]:
    """The same totals recomputed from the ledger: (scope, subject, region, local_date, amount)."""
    q = ("SELECT '{0}', {1}, region, local_date, SUM(amount) FROM txns WHERE " + STANDING_SALE +
         " GROUP BY {1}, region, local_date")
    return db.all(q.format("card", "card_hash")) + db.all(q.format("terminal", "terminal_id"))


def backfill(db: Database) -> None:
    """Once per database (a ledger from before the table existed): load the totals from the ledger."""
    with db.transaction():
        cur = db.execute("INSERT INTO settings VALUES ('daily_totals', 'v1') ON CONFLICT DO NOTHING")
        if cur.rowcount != 1:
            return  # another worker did it, or it was done at creation
        db.execute("DELETE FROM daily_totals")
        for row in ledger_daily(db):
            db.execute("INSERT INTO daily_totals (scope, subject, region, local_date, amount) VALUES (?,?,?,?,?)",
                       row)
