"""Daily totals: a terminal's running rows always equal SUM over the ledger they replace; a card's
are summed from its own rows, on each region's local day."""
import calendar

from roampos.host import totals
from roampos.termsim import SimTerminal
from hostkit import MID, SERIAL, TID, TMK, totals_from_ledger as ledger, totals_table as table

CELL = {"310000": "460-00-6200-1", "440300": "460-01-10000-7"}
BATCH = {"310000": "000001", "440300": "000002"}


class Term:
    """A simulated terminal talking to the handler in-process (no broker needed for ledger rules)."""

    def __init__(self, handler):
        self.h = handler
        self.sim = SimTerminal(TID, MID, SERIAL, TMK)
        self.sim.apply_signon(self.h.handle(TID, self.sim.signon()).response)

    def send(self, raw: bytes, now=None) -> dict:
        return self.sim.check(self.h.handle(TID, raw, now=now).response)

    def sale(self, pan: str, amount: int, region: str = "310000", **kw) -> dict:
        self.sim.batch = BATCH[region]  # one batch = one region
        return self.send(self.sim.financial(pan, amount, region=region, cell=CELL[region], **kw))

    def reverse(self, stan: str, pan: str, amount: int, region: str = "310000") -> dict:
        self.sim.batch = BATCH[region]
        return self.send(self.sim.financial(pan, amount, mti="0400", stan=stan, region=region,
                                            cell=CELL[region]))


def test_totals_follow_sales_voids_reversals_refunds_advices_and_exclusions(handler, db):
    t = Term(handler)
    a, b = "6228480000000101", "6228480000000102"
    s1 = t.sale(a, 1000)
    s2 = t.sale(a, 2000)
    s3 = t.sale(b, 3000, region="440300")
    assert {s1["39"], s2["39"], s3["39"]} == {"00"}
    assert table(db) == ledger(db) and len(table(db)) == 2   # one terminal, two regions
    assert totals.daily(db, db.one("SELECT card_hash FROM txns WHERE stan=?", (s1["11"],))[0], TID,
                        "310000", db.one("SELECT local_date FROM txns WHERE stan=?", (s1["11"],))[0]) == (3000, 3000)
    # void of s2, and a second void that changes nothing
    void = t.sale(a, 2000, proc="020000", orig_rrn=s2["37"])
    assert void["39"] == "00"
    assert t.sale(a, 2000, proc="020000", orig_rrn=s2["37"])["39"] == "00"
    assert table(db) == ledger(db)
    # partial refund of s1: refunds do not count towards the sale limits
    assert t.sale(a, 400, proc="200000", orig_rrn=s1["37"])["39"] == "00"
    assert table(db) == ledger(db)
    # reversal of s3 (twice: the second changes nothing), and of a STAN never seen
    assert t.reverse(s3["11"], b, 3000, "440300")["39"] == "00"
    assert t.reverse(s3["11"], b, 3000, "440300")["39"] == "00"
    assert t.reverse("000777", b, 500)["39"] == "00"
    assert table(db) == ledger(db)
    # the late original of that orphan reversal is stored as reversed and does not count
    late = t.sale(b, 500, stan="000777")
    assert late["39"] == "12"
    assert db.one("SELECT status FROM txns WHERE stan='000777' AND kind='financial'")[0] == "reversed"
    # an advice counts; its reversal undoes it
    adv = t.sale(a, 700, mti="0220")
    assert adv["39"] == "00" and table(db) == ledger(db)
    assert t.reverse(adv["11"], a, 700)["39"] == "00"
    assert table(db) == ledger(db)
    # settlement after upload: a sale the terminal did not upload is excluded and leaves the totals
    s4 = t.sale(a, 900)
    s5 = t.sale(a, 800)
    assert s4["39"] == s5["39"] == "00"
    t.sim.batch = BATCH["310000"]
    assert t.send(t.sim.settlement((9, 9, 0, 0)))["39"] == "95"
    assert t.send(t.sim.financial(a, 1000, mti="0320", stan=s1["11"], cell=CELL["310000"]))["39"] == "00"
    assert t.send(t.sim.financial(a, 900, mti="0320", stan=s4["11"], cell=CELL["310000"]))["39"] == "00"
    # an upload the host had never seen enters the ledger and the totals
    assert t.send(t.sim.financial(a, 250, mti="0320", stan="000900", cell=CELL["310000"]))["39"] == "00"
    trailer = t.send(t.sim.settlement((3, 2150, 0, 0), proc="960000"))  # the refund was not uploaded either
    assert trailer["39"] == "00", trailer
    assert db.one("SELECT status FROM txns WHERE stan=? AND kind='financial'", (s5["11"],))[0] == "excluded"
    assert table(db) == ledger(db)


def test_daily_card_limit_counts_only_standing_sales(handler, db):
    t = Term(handler)
    (txn_limit, card_limit) = db.one("SELECT txn_limit, daily_card_limit FROM regions WHERE code='310000'")
    pan = "6228480000000201"
    sales = [t.sale(pan, txn_limit, method="Q") for _ in range(card_limit // txn_limit)]
    assert [r["39"] for r in sales] == ["00"] * len(sales)
    assert t.sale(pan, 1, method="Q")["39"] == "61"
    assert t.reverse(sales[0]["11"], pan, txn_limit)["39"] == "00"
    assert t.sale(pan, 1, method="Q")["39"] == "00"  # the reversed sale no longer uses the day's allowance
    assert table(db) == ledger(db)


def test_backfill_rebuilds_totals_of_an_older_ledger(handler, db):
    t = Term(handler)
    for n in range(3):
        assert t.sale(f"622848000000030{n}", 100 * (n + 1))["39"] == "00"
    expected = table(db)
    with db.transaction():
        db.execute("DELETE FROM daily_totals")
        db.execute("DELETE FROM settings WHERE name='daily_totals'")
    totals.backfill(db)
    assert table(db) == expected == ledger(db)
    totals.backfill(db)  # runs once per database
    assert table(db) == expected
    # A ledger from before v2 also kept a row per card: dropped once, the terminals' rows kept.
    with db.transaction():
        db.execute("INSERT INTO daily_totals VALUES ('card', 'c0ffee', '310000', '2026-11-27', 500)")
        db.execute("UPDATE settings SET value='v1' WHERE name='daily_totals'")
    totals.backfill(db)
    assert table(db) == expected
    assert db.one("SELECT value FROM settings WHERE name='daily_totals'")[0] == "v2"


def test_a_cards_daily_limit_starts_again_at_local_midnight(handler, db):
    # Shanghai (UTC+8): 23:58 and 00:01 local are 15:58 and 16:01 UTC of the same UTC date.
    t = Term(handler)
    (txn_limit, card_limit) = db.one("SELECT txn_limit, daily_card_limit FROM regions WHERE code='310000'")
    pan = "6228480000000401"
    evening = calendar.timegm((2026, 11, 27, 15, 58, 0))
    for k in range(card_limit // txn_limit):
        t.sim.clock = lambda: evening + k
        assert t.send(t.sim.financial(pan, txn_limit, method="Q", cell=CELL["310000"]), now=evening + k)["39"] == "00"
    t.sim.clock = lambda: evening + 60
    assert t.send(t.sim.financial(pan, 1, method="Q", cell=CELL["310000"]), now=evening + 60)["39"] == "61"
    t.sim.clock = lambda: evening + 180
    assert t.send(t.sim.financial(pan, txn_limit, method="Q", cell=CELL["310000"]), now=evening + 180)["39"] == "00"
    card_hash = db.one("SELECT card_hash FROM txns WHERE kind='financial' ORDER BY id DESC")[0]
    assert totals.daily(db, card_hash, TID, "310000", "2026-11-27") == (card_limit, card_limit)
    assert totals.daily(db, card_hash, TID, "310000", "2026-11-28") == (txn_limit, txn_limit)
    assert table(db) == ledger(db)
