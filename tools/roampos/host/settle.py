"""Settlement: reconcile a terminal's per-region batch totals with the ledger, batch upload, close."""
from __future__ import annotations

from typing import Tuple

from .. import iso
from . import registry, totals
from .auth import _TOTALS_COLUMNS, Ctx, Decision, _refunded, authorize
from .db import rrn_id

__all__ = ["ledger_totals", "settle", "upload"]


def ledger_totals(ctx: Ctx, batch: str) -> Tuple[int, int, int, int]:
    """(sales count, sales amount, refund count, refund amount) of standing approvals in a batch."""
    tid = ctx.terminal["terminal_id"]
    q = ("SELECT COUNT(*), COALESCE(SUM(amount),0) FROM txns WHERE terminal_id=? AND batch_no=?"
         " AND kind='financial' AND status='approved' AND proc LIKE ?")
    sc, sa = ctx.db.one(q, (tid, batch, "00%"))
    rc, ra = ctx.db.one(q, (tid, batch, "20%"))
    return int(sc), int(sa), int(rc), int(ra)


# Counts up to 9 digits (the batches' INTEGER columns), amounts up to 15 (a BIGINT holds the net):
# anything longer is a format error, not a database overflow answered 96.
_TOTAL_DIGITS = {"SC": 9, "SA": 15, "RC": 9, "RA": 15}


def _totals_from(tlv: dict) -> Tuple[int, int, int, int]:
    out = []
    for tag in ("SC", "SA", "RC", "RA"):
        v = tlv.get(tag)
        if v is None or not v.isdigit() or len(v.lstrip("0")) > _TOTAL_DIGITS[tag]:
            raise iso.MessageError(f"settlement total {tag} missing, not numeric or over"
                                   f" {_TOTAL_DIGITS[tag]} digits", "48")
        out.append(int(v))
    return out[0], out[1], out[2], out[3]


def settle(ctx: Ctx) -> Decision:
    """0500: 920000 = settlement request, 960000 = settlement trailer after batch upload.

    In balance -> 00 and the batch closes with today's local date as settlement date.
    Out of balance on 920000 -> 95 and the terminal uploads its batch (0320) then sends 960000;
    the trailer drops (status 'excluded') approvals the terminal did not upload, then compares again.
    """
    tlv, batch = ctx.tlv, ctx.tlv["BN"]
    if "RG" not in tlv:
        raise iso.MessageError("tag RG missing", "48")
    theirs = _totals_from(tlv)
    proc = ctx.doc["3"]
    if proc not in (iso.PROC["settle"], iso.PROC["settle_after_upload"]):
        # Only a request or a trailer may close a batch; anything else changes nothing.
        return Decision(rc="12", reason=f"0500 processing code {proc} is not 920000 or 960000")
    reg = registry.region(ctx.db, tlv["RG"])
    if reg is None:  # else it would open and settle a batch of nowhere
        return Decision(rc="12", reason=f"settlement for unknown region {tlv['RG']}")
    if ctx.doc.get("49") != reg["currency"]:
        # Totals in another currency cannot be compared with the region's ledger: never in balance.
        return Decision(rc="12", reason=f"settlement currency {ctx.doc.get('49')} is not region"
                                        f" {tlv['RG']}'s {reg['currency']}", flags=["currency_mismatch"])
    # Stored as a 'settlement' row (amount: the terminal's net), so that a replayed 0500 is answered
    # from the ledger instead of running its trailer's exclusions again.
    d = Decision(rc="00", kind="settlement", region=tlv["RG"], currency=ctx.doc.get("49", ""),
                 amount=theirs[1] - theirs[3])
    row = ctx.db.one("SELECT region, status, sales_count, sales_amount, refund_count, refund_amount"
                     " FROM batches WHERE terminal_id=? AND batch_no=?", (ctx.terminal["terminal_id"], batch))
    if row is not None and row[0] != tlv["RG"]:
        d.rc, d.reason, d.kind = "12", f"batch {batch} belongs to region {row[0]}, not {tlv['RG']}", None
        return d
    if row is not None and row[1] == "settled":
        # A repeated 0500 for a closed batch: same answer, nothing changes.
        d.rc = "00" if tuple(row[2:]) == theirs else "95"
        d.resp48 = _resp(tuple(row[2:]), d.rc)
        d.status = "repeat"
        return d
    if proc == iso.PROC["settle_after_upload"]:
        for row in ctx.db.all("UPDATE txns SET status='excluded', flags=flags || ',not_in_upload'"
                              " WHERE terminal_id=? AND batch_no=? AND kind='financial' AND status='approved'"
                              " AND uploaded=0 AND NOT (proc LIKE '00%' AND EXISTS (SELECT 1 FROM txns r"
                              " WHERE r.orig_rrn=txns.rrn AND r.orig_rrn<>'' AND r.kind='financial'"
                              " AND r.status='approved' AND r.proc LIKE '20%'))"
                              # a sale with standing refunds stays counted: the refunds are money
                              # given back against it (as a reversal of it is refused)
                              " RETURNING card_hash, terminal_id, region, local_date, amount, proc",
                              (ctx.terminal["terminal_id"], batch)):
            totals.add_row(ctx.db, row, -1)  # excluded sales no longer count towards the day's limits
    ours = ledger_totals(ctx, batch)
    d.rc = "00" if ours == theirs else "95"
    d.status = "in_balance" if d.rc == "00" else "out_of_balance"
    d.resp48 = _resp(ours, d.rc)
    if d.rc == "00":
        day = registry.local_date(reg, ctx.now)
        if row is None:
            ctx.db.execute("INSERT INTO batches (terminal_id, batch_no, region, status) VALUES (?,?,?,'open')",
                           (ctx.terminal["terminal_id"], batch, tlv["RG"]))
        ctx.db.execute("UPDATE batches SET status='settled', settled_date=?, sales_count=?, sales_amount=?,"
                       " refund_count=?, refund_amount=? WHERE terminal_id=? AND batch_no=?",
                       (day, *ours, ctx.terminal["terminal_id"], batch))
    else:
        d.reason = f"batch {batch} out of balance: terminal {theirs} ledger {ours}"
    return d


def _resp(totals: Tuple[int, int, int, int], rc: str) -> dict:
    return {"BS": "1" if rc == "00" else "2", "SC": str(totals[0]), "SA": str(totals[1]),
            "RC": str(totals[2]), "RA": str(totals[3])}


def upload(ctx: Ctx) -> Decision:
    """0320: one transaction of the terminal's batch; 0330 `00` means the host counts it in the batch,
    any other code that it does not (the terminal leaves it out of its trailer's totals).

    Known -> marked uploaded; one an earlier trailer excluded is put back while the batch is open
    (unless it was reversed since). Unknown -> checked like an online one and stored: approved, or
    held for review with the failed rule's code."""
    tid, batch, stan = ctx.terminal["terminal_id"], ctx.tlv["BN"], ctx.doc["11"]
    row = ctx.db.one("SELECT id, status, rc, amount, currency, proc, card_hash, orig_rrn FROM txns WHERE terminal_id=?"
                     " AND batch_no=? AND stan=? AND kind='financial'", (tid, batch, stan))
    b = ctx.db.one("SELECT status FROM batches WHERE terminal_id=? AND batch_no=?", (tid, batch))
    is_open = b is None or b[0] != "settled"
    if row is not None:
        rid, status, rc = row[:3]
        differs = _differs(ctx, row[3:7])
        if differs:
            # Not the transaction the host has under this STAN: counting it would put the host's
            # figures in the terminal's totals for something else (and never in balance).
            return Decision(rc="12", reason=f"terminal {tid} STAN {stan}: upload differs from the host's"
                                            f" transaction ({differs}), not counted", flags=["upload_mismatch"])
        if status == "excluded" and is_open and not ctx.db.one(
                "SELECT id FROM txns WHERE terminal_id=? AND batch_no=? AND stan=? AND kind='reversal'",
                (tid, batch, stan)):
            # The terminal still has it: it was only missing from an earlier upload.
            if str(row[5]).startswith("20"):
                # While it was excluded its sale could be refunded again, voided or reversed.
                ctx.db.lock_cards((row[6],))
                sale = ctx.db.one("SELECT amount, status FROM txns WHERE id=? AND rrn=? AND merchant_id=? AND"
                                  " kind='financial' AND proc LIKE '00%'",
                                  (rrn_id(row[7]), row[7], ctx.terminal["merchant_id"]))
                if sale is None or sale[1] != "approved" or _refunded(ctx, row[7]) + int(row[3]) > int(sale[0]):
                    return Decision(rc="64", flags=["refund_exceeds_sale"],
                                    reason=f"terminal {tid} STAN {stan}: excluded refund not restored")
            totals.add_row(ctx.db, ctx.db.one(
                "UPDATE txns SET status='approved', uploaded=1, flags=flags || ',upload_restored' WHERE id=?"
                " RETURNING " + _TOTALS_COLUMNS, (rid,)), +1)
            return Decision(rc="00")
        if status == "approved":
            ctx.db.execute("UPDATE txns SET uploaded=1 WHERE id=?", (rid,))
            return Decision(rc="00")
        flag = ",upload_of_" + status
        ctx.db.execute("UPDATE txns SET uploaded=1, flags=CASE WHEN flags LIKE ? THEN flags ELSE flags || ? END"
                       " WHERE id=?", ("%" + flag + "%", flag, rid))
        return Decision(rc=rc if rc != "00" else "12", reason=f"terminal {tid} STAN {stan}: upload of a {status}"
                                                              " transaction, not counted")
    if not is_open:
        return Decision(rc="12", reason=f"batch {batch} already settled")
    if ctx.terminal["blocked"]:
        return Decision(rc="58", reason=f"terminal {tid} is blocked: upload of a transaction the host never saw")
    d = authorize(ctx, upload=True)
    if d.kind is not None:
        d.uploaded = 1
        d.flags.append("batch_upload")  # the host had not seen it online (offline approval or lost advice)
    return d


def _differs(ctx: Ctx, stored: tuple) -> str:
    """Which of amount, currency, processing code and card of an upload differ from the stored row."""
    amount, currency, proc, card = stored
    doc, tlv = ctx.doc, ctx.tlv
    if "4" not in doc or "49" not in doc or "EP" not in tlv:
        raise iso.MessageError("an upload carries the original's amount, currency and EP", "48")
    out = []
    if int(doc["4"]) != int(amount):
        out.append("amount")
    if doc["49"] != currency:
        out.append("currency")
    if doc["3"] != proc:
        out.append("processing code")
    pan = iso.decrypt_pan(ctx.tdk, tlv["EP"], ctx.pan_ecb)
    if card and iso.card_hash(ctx.card_key, pan) != card:
        out.append("card")
    return ", ".join(out)
