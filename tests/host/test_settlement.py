"""Settlement in and out of balance, batch upload, and the clearing report checked by hand."""
import csv
import subprocess
import time

from roampos import iso
from roampos.host import registry
from hostkit import MID, TID, roampos_bin
from test_authorization import card, sale


def settle(env, totals, proc="920000"):
    return env.send(env.term.settlement(totals, proc=proc))


def today(env, region="310000"):
    return registry.local_date(registry.region(env.db, region), time.time())


def test_settlement_in_balance_and_clearing_report(env, tmp_path):
    # Shanghai batch 000001: card fee 55 bps cap 20.00, QR 38 bps
    a = sale(env, card(1), 10000)                       # fee 10000*55/10000 = 55
    assert a["39"] == "00"
    assert sale(env, card(2), 25000)["39"] == "00"      # 137.5 -> 138
    assert sale(env, card(3), 8000, method="Q")["39"] == "00"   # 30.4 -> 30
    assert sale(env, card(1), 5000, proc="200000", orig_rrn=a["37"])["39"] == "00"   # refund, no fee
    v = sale(env, card(4), 3000)
    assert sale(env, card(4), 3000, proc="020000", orig_rrn=v["37"])["39"] == "00"   # voided: not counted
    r = sale(env, card(5), 4000)
    assert env.send(env.term.reversal(r["11"], card(5), 4000))["39"] == "00"         # reversed: not counted
    assert sale(env, card(6), 999, expiry="2001")["39"] == "54"                        # declined: not counted
    resp = settle(env, (3, 43000, 1, 5000))
    assert resp["39"] == "00"
    assert iso.decode_tlv(resp["48"]) == {"BS": "1", "SC": "3", "SA": "43000", "RC": "1", "RA": "5000"}
    again = settle(env, (3, 43000, 1, 5000))             # repeated settlement: same answer
    assert again["39"] == "00"
    # Shenzhen batch 000002: card 60 bps cap 15.00, payment code 35 bps
    env.term.batch, env.term.region = "000002", "440300"
    env.term.cell = "460-01-10000-7"
    assert sale(env, card(11), 300000, region="440300", pin="1234")["39"] == "00"   # 1800 -> cap 1500
    assert sale(env, card(12, "13"), 12345, region="440300", method="P")["39"] == "00"  # 43.2 -> 43
    assert settle(env, (2, 312345, 0, 0))["39"] == "00"
    # a sale after settlement in the closed batch is refused
    env.term.batch, env.term.region = "000001", "310000"
    assert sale(env, card(13), 100)["39"] == "12"

    csv_path = tmp_path / "clearing.csv"
    out = subprocess.run([roampos_bin(), "report", "settlement", "--date", today(env), "--db", env.db_url,
                          "--csv", str(csv_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = {r["region"]: r for r in csv.DictReader(open(csv_path, encoding="utf-8"))}
    sh, sz = rows["310000"], rows["440300"]
    assert (sh["merchant_id"], sh["currency"], sh["settlement_account"]) == (MID, "156", "6222020000000001")
    assert [int(sh[k]) for k in ("sales_count", "sales_amount", "refund_count", "refund_amount", "fees", "net")] \
        == [3, 43000, 1, 5000, 55 + 138 + 30, 43000 - 5000 - 223]
    assert [int(sz[k]) for k in ("sales_count", "sales_amount", "refund_count", "refund_amount", "fees", "net")] \
        == [2, 312345, 0, 0, 1500 + 43, 312345 - 1543]
    assert "region 310000: gross 380.00  fees 2.23  net 377.77" in out.stdout
    assert "region 440300: gross 3,123.45  fees 15.43  net 3,108.02" in out.stdout
    empty = subprocess.run([roampos_bin(), "report", "settlement", "--date", "2001-01-01", "--db", env.db_url,
                            "--csv", str(tmp_path / "e.csv")], capture_output=True, text=True, timeout=60)
    assert "no settled batches" in empty.stdout


def test_settlement_out_of_balance_then_batch_upload(env):
    a = sale(env, card(21), 1000)
    b = sale(env, card(22), 2000)       # the terminal timed out on this one and never counted it
    assert a["39"] == b["39"] == "00"
    # the terminal's batch: A plus an offline approval C the host never saw
    resp = settle(env, (2, 4000, 0, 0))
    assert resp["39"] == "95"
    assert iso.decode_tlv(resp["48"])["BS"] == "2" and iso.decode_tlv(resp["48"])["SA"] == "3000"
    up_a = env.term.financial(card(21), 1000, mti="0320", stan=a["11"])
    assert env.send(up_a)["39"] == "00"
    up_c = env.term.financial(card(23), 3000, mti="0320", stan="000900")
    assert env.send(up_c)["t"] == "0330"
    assert env.send(up_c)["39"] == "00"                 # upload is idempotent
    assert "batch_upload" in env.row("000900")["flags"]
    done = settle(env, (2, 4000, 0, 0), proc="960000")
    assert done["39"] == "00"
    assert env.row(b["11"])["status"] == "excluded" and "not_in_upload" in env.row(b["11"])["flags"]
    assert settle(env, (2, 4000, 0, 0), proc="960000")["39"] == "00"
    assert env.db.one("SELECT COUNT(*) FROM txns WHERE stan='000900'")[0] == 1
    assert env.db.one("SELECT status FROM batches WHERE terminal_id=? AND batch_no='000001'", (TID,))[0] == "settled"


def test_still_out_of_balance_after_upload(env):
    assert sale(env, card(31), 1000)["39"] == "00"
    assert settle(env, (1, 1500, 0, 0))["39"] == "95"
    r = settle(env, (1, 1500, 0, 0), proc="960000")     # nothing uploaded, figures still differ
    assert r["39"] == "95"
    assert env.db.one("SELECT status FROM batches WHERE terminal_id=? AND batch_no='000001'", (TID,))[0] == "open"


def test_an_uploaded_transaction_meets_the_online_rules_or_is_held(env):
    a = sale(env, card(41), 1000)
    assert a["39"] == "00"
    assert sale(env, card(41), 50000, proc="200000", orig_rrn=a["37"])["39"] == "64"   # refused online
    assert settle(env, (1, 1000, 1, 50000))["39"] == "95"
    assert env.send(env.term.financial(card(41), 1000, mti="0320", stan=a["11"]))["39"] == "00"
    # the same refund again, now claimed as an offline one the host never saw
    raw = env.term.financial(card(41), 50000, mti="0320", proc="200000", orig_rrn=a["37"], stan="000901")
    assert env.send(raw)["39"] == "64"                   # stored, but not counted in the batch ...
    row = env.row("000901")
    assert row["status"] == "held" and "upload_rc_64" in row["flags"]
    assert env.send(raw)["39"] == "64"                   # ... the same answer again, one row
    assert env.db.one("SELECT COUNT(*) FROM txns WHERE stan='000901'")[0] == 1
    other = env.send(env.term.financial(card(42), 7777, mti="0320", region="810000", stan="000902"))
    assert other["39"] == "R1" and env.row("000902")["status"] == "held"   # a region it has no grant for
    # a terminal leaves what the host does not count out of its trailer: in balance, batch closed
    done = settle(env, (1, 1000, 0, 0), proc="960000")
    assert done["39"] == "00"


def test_a_trailer_exclusion_is_undone_by_a_later_upload(env):
    s = sale(env, card(43), 4200)
    assert settle(env, (1, 4200, 0, 0), proc="960000")["39"] == "95"   # trailer before the upload
    assert env.row(s["11"])["status"] == "excluded"
    assert env.send(env.term.financial(card(43), 4200, mti="0320", stan=s["11"]))["39"] == "00"
    assert env.row(s["11"])["status"] == "approved" and "upload_restored" in env.row(s["11"])["flags"]
    assert settle(env, (1, 4200, 0, 0), proc="960000")["39"] == "00"


def test_a_replayed_trailer_is_answered_from_the_ledger(env):
    assert sale(env, card(44), 1000)["39"] == "00"
    trailer = env.term.settlement((2, 9999, 0, 0), proc="960000")
    first = env.send(trailer, raw_out=True)
    assert iso.decode(first)["39"] == "95"     # nothing uploaded: the sale excluded, the batch stays open
    s = sale(env, card(45), 2000)              # business goes on in the open batch
    second = env.send(trailer, raw_out=True)   # someone replays the recorded trailer
    assert second == first                     # the stored answer; its exclusions are not run again
    assert env.row(s["11"])["status"] == "approved"
    assert env.db.one("SELECT COUNT(*) FROM txns WHERE kind='settlement'")[0] == 1


def test_a_settled_batch_does_not_change_afterwards(env, tmp_path):
    s = sale(env, card(47), 20000)
    assert settle(env, (1, 20000, 0, 0))["39"] == "00"
    r = env.send(env.term.reversal(s["11"], card(47), 20000))   # too late: it is cleared
    assert r["39"] == "12" and "batch_settled" in env.row(s["11"], "reversal")["flags"]
    assert env.row(s["11"])["status"] == "approved"
    adv = sale(env, card(48), 10000, mti="0220")                 # an advice into the settled batch
    assert adv["39"] == "00" and env.row(adv["11"])["status"] == "held"
    out = subprocess.run([roampos_bin(), "report", "settlement", "--date", today(env), "--db", env.db_url,
                          "--csv", str(tmp_path / "c.csv")], capture_output=True, text=True, timeout=60)
    rows = list(csv.DictReader(open(tmp_path / "c.csv", encoding="utf-8")))
    assert [(r["sales_count"], r["sales_amount"]) for r in rows] == [("1", "20000")], out.stdout


def test_report_refuses_bad_dates_missing_ledgers_and_unwritable_paths(env, tmp_path):
    def report(*args):
        return subprocess.run([roampos_bin(), "report", "settlement", *args], capture_output=True, text=True,
                              timeout=60)
    for bad in ("2026-02-30", "2026-13-45", "0000-00-00", "yesterday"):
        r = report("--date", bad, "--db", env.db_url, "--csv", str(tmp_path / "x.csv"))
        assert r.returncode == 2 and "is not a date" in r.stderr, r.stderr
    r = report("--date", "2026-01-01", "--db", f"sqlite:///{tmp_path / 'typo.db'}", "--csv", str(tmp_path / "x.csv"))
    assert r.returncode == 1 and "no ledger at" in r.stderr and not (tmp_path / "typo.db").exists()
    r = report("--date", "2026-01-01", "--db", env.db_url, "--csv", str(tmp_path / "missing" / "x.csv"))
    assert r.returncode == 1 and "cannot write" in r.stderr and "Traceback" not in r.stderr
    # A database that is not a ledger, or (PostgreSQL) a mistyped schema: an error, and nothing created.
    import sqlite3
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE notes (x)").connection.commit()
    r = report("--date", "2026-01-01", "--db", f"sqlite:///{tmp_path / 'other.db'}", "--csv", str(tmp_path / "x.csv"))
    assert r.returncode == 1 and "no ledger in" in r.stderr
    if env.db.kind == "pg":
        typo = env.db_url.rsplit("schema=", 1)[0] + "schema=" + env.db_url.rsplit("schema=", 1)[1] + "_typo"
        r = report("--date", "2026-01-01", "--db", typo, "--csv", str(tmp_path / "x.csv"))
        assert r.returncode == 1 and "no ledger in" in r.stderr, r.stderr
        assert env.db.one("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name=?",
                          (typo.rsplit("schema=", 1)[1],))[0] == 0


def test_an_excluded_sale_reversed_since_is_not_restored_by_an_upload(env):
    s = sale(env, card(49), 4200)
    assert settle(env, (1, 4200, 0, 0), proc="960000")["39"] == "95"   # not uploaded: excluded
    assert env.send(env.term.reversal(s["11"], card(49), 4200))["39"] == "00"
    assert "original_excluded" in env.row(s["11"], "reversal")["flags"]
    up = env.send(env.term.financial(card(49), 4200, mti="0320", stan=s["11"]))
    assert up["39"] == "12" and env.row(s["11"])["status"] == "excluded"   # not counted again


def test_an_upload_of_a_sale_reversed_before_it_arrived_is_not_counted(env):
    # The sale's answer was lost, the terminal reversed it (the host never saw the sale), and its
    # batch upload then carries it: never approved, never paid to the merchant.
    stan = f"{env.term.stan + 1:06d}"
    assert env.send(env.term.reversal(stan, card(50), 4200))["39"] == "00"     # an orphan reversal
    up = env.send(env.term.financial(card(50), 4200, mti="0320", stan=stan))
    assert up["39"] == "12" and "38" not in up
    row = env.row(stan)
    assert row["status"] == "reversed" and "reversed_before_arrival" in row["flags"]
    assert settle(env, (0, 0, 0, 0), proc="960000")["39"] == "00"              # in balance without it


def test_settlement_totals_too_long_for_the_ledger_are_a_format_error(env):
    assert sale(env, card(51), 1000)["39"] == "00"
    for totals in ((1, "9" * 19, 0, 0), (1, 1000, 0, "9" * 19), ("9" * 10, 1000, 0, 0)):
        r = env.send(env.term.settlement(totals))
        assert r["39"] == "30", (totals, r)
    assert env.db.one("SELECT COUNT(*) FROM txns WHERE kind='settlement'")[0] == 0
    assert settle(env, (1, 1000, 0, 0))["39"] == "00"                          # the real one closes it


def test_settlement_for_an_unknown_region_opens_no_batch(env):
    r = env.send(env.term.settlement((0, 0, 0, 0), region="999999"))
    assert r["39"] == "12"
    assert env.db.one("SELECT COUNT(*) FROM batches")[0] == 0


def _batch_status(env, bn="000001"):
    row = env.db.one("SELECT status FROM batches WHERE terminal_id=? AND batch_no=?", (TID, bn))
    return row and row[0]


def test_a_0500_that_is_no_settlement_or_in_another_currency_changes_nothing(env):
    assert sale(env, card(41), 1000)["39"] == "00"
    before = env.db.one("SELECT COUNT(*) FROM txns")[0]
    # A sale's processing code in a 0500 is neither a request nor a trailer: it must not close the batch.
    assert settle(env, (1, 1000, 0, 0), proc="000000")["39"] == "12"
    # Shanghai settles in CNY (156): totals claimed in HKD cannot be in balance with its ledger.
    env.term.currency = "344"
    r = settle(env, (1, 1000, 0, 0))
    assert r["39"] == "12" and "48" not in r
    assert _batch_status(env) == "open" and env.db.one("SELECT COUNT(*) FROM txns")[0] == before
    env.term.currency = "156"
    assert settle(env, (1, 1000, 0, 0))["39"] == "00" and _batch_status(env) == "settled"


def test_an_upload_that_differs_from_the_hosts_transaction_is_not_counted(env):
    a = sale(env, card(42), 1000)
    assert a["39"] == "00"
    assert settle(env, (1, 5000, 0, 0))["39"] == "95"
    # Same STAN, but another amount, another card, or sent as a refund: not the host's transaction.
    for raw in (env.term.financial(card(42), 5000, mti="0320", stan=a["11"]),
                env.term.financial(card(43), 1000, mti="0320", stan=a["11"]),
                env.term.financial(card(42), 1000, mti="0320", stan=a["11"], proc="200000", orig_rrn=a["37"])):
        assert env.send(raw)["39"] == "12"
    row = env.db.one("SELECT status, uploaded, amount FROM txns WHERE terminal_id=? AND stan=?", (TID, a["11"]))
    assert tuple(row) == ("approved", 0, 1000)
    # The true upload still counts, and the trailer then balances on what the host has.
    assert env.send(env.term.financial(card(42), 1000, mti="0320", stan=a["11"]))["39"] == "00"
    assert settle(env, (1, 1000, 0, 0), proc="960000")["39"] == "00"


def test_a_refund_advice_the_sale_cannot_cover_is_held(env):
    s = sale(env, card(44), 1000)
    assert s["39"] == "00"
    over = sale(env, card(44), 5000, mti="0220", proc="200000", orig_rrn=s["37"])
    unknown = sale(env, card(45), 700, mti="0220", proc="200000", orig_rrn="999999999999")
    for adv, flag in ((over, "advice_rc_64"), (unknown, "advice_rc_25")):
        assert adv["39"] == "00"                                 # an advice is always acknowledged
        row = env.row(adv["11"])
        assert row["status"] == "held" and flag in row["flags"]
    within = sale(env, card(44), 400, mti="0220", proc="200000", orig_rrn=s["37"])
    assert env.row(within["11"])["status"] == "approved"         # one the sale covers still counts
    r = settle(env, (1, 1000, 1, 400))
    assert r["39"] == "00", iso.decode_tlv(r.get("48", ""))


def test_an_uploaded_refund_is_restored_only_within_its_sale(handler):
    # Refund 1 of a 100.00 sale is excluded by a trailer (its upload lost) and no longer counts
    # against the sale, so refund 2 of 100.00 is approved. Uploaded later, refund 1 must not come
    # back: the sale's refunds would be 200.00, all of it cleared.
    from hostkit import AtTime, utc
    from roampos.host import report
    at = AtTime(handler, utc(2026, 11, 27, 2, 0))
    s = at.sale(card(961), 10000)
    assert s["39"] == "00" and at.settle((1, 10000, 0, 0))["39"] == "00"
    at.term.batch = "000002"
    r1 = at.term.financial(card(961), 10000, proc="200000", orig_rrn=s["37"], cell=at.CELL["310000"])
    assert at.send(r1)["39"] == "00"
    assert at.settle((0, 0, 0, 0))["39"] == "95"
    assert at.settle((0, 0, 1, 10000), proc="960000")["39"] == "95"      # refund 1 excluded
    at.term.batch = "000003"
    assert at.refund(card(961), 10000, s["37"])["39"] == "00"             # refund 2
    at.term.batch = "000002"
    doc = iso.decode(r1)
    doc["t"] = "0320"
    up = at.send(iso.encode(doc, at.term.tak))
    assert up["39"] == "64", up                                            # not restored
    assert at.row(iso.decode(r1)["11"])["status"] == "excluded"
    (refunds,) = handler.db.one("SELECT SUM(amount) FROM txns WHERE orig_rrn=? AND status='approved'", (s["37"],))
    assert refunds == 10000
    at.term.batch = "000003"
    assert at.settle((0, 0, 1, 10000))["39"] == "00"
    rows = report.clearing_rows(handler.db, "2026-11-27")
    assert sum(r["refund_amount"] for r in rows) == 10000


def test_a_trailer_keeps_a_sale_whose_refund_stands(handler):
    # A sale in batch 1 fully refunded in batch 2 (settled, cleared). Batch 1's terminal lost the
    # sale: a trailer of zeros would exclude it and clear the refund against nothing. The sale stays
    # counted (as its reversal would be refused), and batch 1 stays out of balance for review.
    from hostkit import AtTime, utc
    at = AtTime(handler, utc(2026, 11, 27, 2, 0))
    s = at.sale(card(962), 10000)
    assert s["39"] == "00"
    at.term.batch = "000002"
    assert at.refund(card(962), 10000, s["37"])["39"] == "00"
    assert at.settle((0, 0, 1, 10000))["39"] == "00"
    at.term.batch = "000001"
    assert at.settle((0, 0, 0, 0))["39"] == "95"
    assert at.settle((0, 0, 0, 0), proc="960000")["39"] == "95"
    assert at.row(s["11"])["status"] == "approved"
