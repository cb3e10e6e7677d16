"""A worker group's reads: what one query per table tells about all of the group's messages at once.

The handler uses them only where the database cannot have changed under them: for a terminal's
first message in the group, and for a card no earlier message of the group had (and before any
upload or trailer). SQLite holds the write lock meanwhile; PostgreSQL the terminal and card locks.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, Optional, Tuple

from .. import iso
from . import registry
from .db import Database
from .risk import Policy
from .totals import day_bounds

__all__ = ["Group", "CardState", "GROUP_MTIS", "read"]


class Group:
    """What one query per table read for a worker's group, at the start of its transaction.

    Only a terminal's first message in the group uses the terminal's part: any later one (whose
    predecessor may have signed on, settled, opened a batch or stored a row) reads the database.
    """
    __slots__ = ("terms", "stans", "batches", "tlvs", "seen", "cards", "key_cards", "totals", "card_totals",
                 "days", "recent", "touched", "stale")

    def __init__(self) -> None:
        self.terms: Dict[str, Optional[dict]] = {}           # terminal ID -> row (None: unknown)
        self.stans: Dict[tuple, bool] = {}                   # (tid, batch, STAN) -> any ledger row
        self.batches: Dict[tuple, Optional[tuple]] = {}      # (tid, batch) -> (region, status) or None
        self.tlvs: Dict[int, tuple] = {}                     # id(doc) -> (doc, decoded field 48)
        self.seen: set = set()                               # terminals already handled in the group
        # Card state, for a message whose terminal and card no earlier message of the group touched
        # (and no settlement or upload came before, which can move many cards' rows):
        self.cards: Dict[int, Tuple[str, str]] = {}         # id(doc) -> (PAN, card hash)
        self.key_cards: Dict[tuple, str] = {}               # (tid, batch, STAN) -> card of its ledger row
        self.totals: Dict[tuple, int] = {}                  # (terminal, region, day) -> amount
        self.card_totals: Dict[tuple, int] = {}             # (card, region, day) -> amount
        self.days: Dict[str, str] = {}                      # region -> the local day totals were read for
        self.recent: Dict[str, list] = {}                   # card -> [(created, proc, region)] approved
        self.touched: set = set()                           # cards an earlier message may have moved
        self.stale = False

    def card_state(self, doc: Dict[str, str]) -> "Optional[CardState]":
        """This message's card as the group read it, unless an earlier message may have moved it."""
        hit = None if self.stale else self.cards.get(id(doc))
        if hit is None or hit[1] in self.touched:
            return None
        return CardState(self, hit[0], hit[1])

    def touch(self, doc: Dict[str, str]) -> None:
        """After a message: what it may have moved is read afresh by the group's later messages."""
        key = id(doc)
        hit = self.cards.get(key)
        if hit is not None:
            self.touched.add(hit[1])
        if self.key_cards:  # else no key of the group has a ledger row (a group of new sales)
            hit_tlv = self.tlvs.get(key)
            if hit_tlv is not None and hit_tlv[0] is doc:
                card = self.key_cards.get((doc.get("41"), hit_tlv[1].get("BN", ""), doc.get("11")))
                if card:
                    self.touched.add(card)
        if doc.get("t") in ("0320", "0500"):
            self.stale = True  # an upload or a trailer can move rows of any card of the batch


class CardState:
    """The group's reads for one message's card and terminal (see Group); None where not known."""
    __slots__ = ("pan", "card_hash", "_g")

    def __init__(self, g: Group, pan: str, card_hash: str):
        self.pan, self.card_hash, self._g = pan, card_hash, g

    def daily(self, terminal_id: str, region: str, day: str) -> Optional[Tuple[int, int]]:
        """(card total, terminal total) of standing sales, as totals.daily() reads them."""
        if self._g.days.get(region) != day:
            return None  # read for another day (the group straddles midnight there)
        return (self._g.card_totals.get((self.card_hash, region, day), 0),
                self._g.totals.get((terminal_id, region, day), 0))

    def recent(self) -> list:
        """This card's approved financial rows from the risk windows back (or its local days, if further):
        (created, proc, region)."""
        return self._g.recent.get(self.card_hash, [])


GROUP_MTIS = ("0200", "0220", "0400", "0320", "0500")


def read(db: Database, policy: Policy, items: "list[Tuple[str, Any]]",
         card_of: Callable[[dict, str], Optional[Tuple[str, str]]]) -> Optional[Group]:
    """The group's reads (see Group), in its transaction: terminals (PostgreSQL: locked, in ID
    order), STAN keys, batches, then its cards (locked, sorted), their daily totals and approvals.
    `items` are (topic terminal ID, what Handler.decode() returned); card_of(terminal row, EP) gives
    (PAN, card hash) or None."""
    g = Group()
    tids = sorted({doc["41"] for _, doc in items if isinstance(doc, dict) and "41" in doc})
    if not tids:
        return None
    sql = registry.HANDLER_SELECT.replace("=?", " IN (" + ",".join("?" * len(tids)) + ")")
    if db.kind == "pg":
        sql += " ORDER BY terminal_id FOR UPDATE"
    terms, columns = g.terms, registry.HANDLER_COLUMNS
    for row in db.all(sql, tids):
        terms[row[0]] = dict(zip(columns, row))
    for tid in tids:
        terms.setdefault(tid, None)
    stans, batches, cards = set(), set(), set()
    tlvs, group_cards, day_totals, card_totals = g.tlvs, g.cards, g.totals, g.card_totals
    # Field 48's region as sent -> (region code, its local day), None if unknown: one lookup per
    # region a group, not per message.
    regions: Dict[str, Optional[Tuple[str, str]]] = {}
    now = time.time()
    for _, doc in items:
        if not isinstance(doc, dict) or doc.get("t") not in GROUP_MTIS or "11" not in doc:
            continue
        tid = doc.get("41")
        term = terms.get(tid)
        if term is None:
            continue
        try:
            tlv = iso.decode_tlv(doc.get("48", ""))
        except Exception:
            continue  # the handler raises it again, as a format error
        key = id(doc)
        tlvs[key] = (doc, tlv)
        if "EP" in tlv and doc["t"] != "0400":
            hit = card_of(term, tlv["EP"])
            if hit is not None:
                group_cards[key] = hit
                cards.add(hit[1])
                code = tlv.get("RG", "")
                if code not in regions:
                    reg = registry.region(db, code)
                    regions[code] = None if reg is None else (
                        reg["code"], g.days.setdefault(reg["code"], registry.local_date(reg, now)))
                known = regions[code]
                if known is not None:
                    region, day = known
                    card_totals[(hit[1], region, day)] = 0
                    day_totals[(tid, region, day)] = 0
        batch = tlv.get("BN", "")
        if len(batch) == 6 and batch.isdigit():
            stans.add((tid, batch, doc["11"]))
            batches.add((tid, batch))
    if stans:
        for key in stans:
            g.stans[key] = False
        for tid, batch, stan, card in _joined(
                db, stans, "t, b, s", "SELECT txns.terminal_id, txns.batch_no, txns.stan, txns.card_hash FROM k"
                " JOIN txns ON txns.terminal_id=k.t AND txns.batch_no=k.b AND txns.stan=k.s"):
            g.stans[(tid, batch, stan)] = True
            if card:
                g.key_cards[(tid, batch, stan)] = card
                cards.add(card)  # a reversal's original, a redelivered sale
        for key in batches:
            g.batches[key] = None
        for tid, batch, reg, status in _joined(
                db, batches, "t, b", "SELECT batches.terminal_id, batches.batch_no, batches.region, batches.status"
                " FROM k JOIN batches ON batches.terminal_id=k.t AND batches.batch_no=k.b"):
            g.batches[(tid, batch)] = (reg, status)
    # The group's cards, locked in one sorted sweep after its terminals: a card's later lock
    # (auth) then finds it held, and two workers' groups can never wait on each other in a cycle.
    # Their state is read under those locks (PostgreSQL) or the write lock (SQLite).
    db.lock_cards(cards)
    if g.totals:
        for subject, region, day, amount in _joined(
                db, list(g.totals), "su, r, d", "SELECT t.subject, t.region, t.local_date, t.amount FROM k JOIN"
                " daily_totals t ON t.scope='terminal' AND t.subject=k.su AND t.region=k.r AND t.local_date=k.d"):
            g.totals[(subject, region, day)] = int(amount)
    sale_cards = sorted({hit[1] for hit in g.cards.values()})
    if sale_cards:
        # Every approval inside either risk window of any message handled from now on, and every
        # one of the local days its daily limits count (a card's total is summed from its rows).
        since = min([int(now) - max(policy.velocity_window_s, policy.travel_window_s)]
                    + [day_bounds(day)[0] for day in g.days.values()])
        for card in sale_cards:
            g.recent[card] = []
        if db.kind == "pg":
            # One index probe per card (txns_card: card_hash, created), whatever the statistics
            # of a young ledger make the planner think of an IN list.
            sql = ("WITH k(c) AS (VALUES " + ",".join(["(?)"] * len(sale_cards)) + ") SELECT r.card_hash,"
                   " r.created, r.proc, r.region, r.local_date, r.amount FROM k CROSS JOIN LATERAL (SELECT"
                   " card_hash, created, proc, region, local_date, amount FROM txns WHERE card_hash=k.c"
                   " AND created>=? AND status='approved' AND kind='financial' ORDER BY card_hash, created) r")
        else:
            sql = ("SELECT card_hash, created, proc, region, local_date, amount FROM txns WHERE card_hash IN ("
                   + ",".join("?" * len(sale_cards)) + ") AND created>=? AND status='approved' AND kind='financial'")
        for card, created, proc, region, day, amount in db.all(sql, sale_cards + [since]):
            g.recent[card].append((int(created), proc, region))
            if proc.startswith("00") and (card, region, day) in card_totals:   # a standing sale
                card_totals[(card, region, day)] += int(amount)
    return g


def _joined(db: Database, keys: Any, columns: str, select: str) -> list:
    """`select` over the key tuples given as a table k(columns): one query for all of them."""
    keys = list(keys)
    row = "(" + ",".join("?" * (columns.count(",") + 1)) + ")"
    return db.all(f"WITH k({columns}) AS (VALUES " + ",".join([row] * len(keys)) + ") " + select,
                  [v for key in keys for v in key])
