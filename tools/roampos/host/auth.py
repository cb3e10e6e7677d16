"""Authorization of sales, refunds, voids, advices and reversals against test issuers and region rules."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .. import iso
from . import registry, risk, totals
from .db import Database, read_csv, rrn_id

__all__ = ["Ctx", "Decision", "authorize", "reverse", "issuer_for", "TEST_PIN"]

TEST_PIN = "1234"      # every test issuer card uses this PIN
_MAX_PIN_TRIES = 3


def _by_prefix(rows: List[dict]) -> List[tuple]:
    """[(prefix length, {prefix: row})], longest first: the longest prefix wins, and of rows with
    the same prefix the first in the file. A few dict probes per PAN instead of a scan."""
    out: Dict[int, dict] = {}
    for row in rows:
        out.setdefault(len(row["prefix"]), {}).setdefault(row["prefix"], row)
    return sorted(out.items(), reverse=True)


_ISSUERS = _by_prefix(read_csv("test_issuers.csv"))
# What totals.add_row() needs of a row whose status changes.
_TOTALS_COLUMNS = "card_hash, terminal_id, region, local_date, amount, proc"


@dataclass
class Ctx:
    """Everything one message's handling needs; built by the handler after MAC verification."""
    db: Database
    policy: risk.Policy
    terminal: dict
    doc: Dict[str, str]
    tlv: Dict[str, str]
    now: float
    tpk: bytes
    tdk: bytes
    card_key: bytes
    pan_ecb: Any = None   # reusable decryptor under tdk, from the handler's key cache
    # The (region, status) row of this terminal's batch (None: no such batch) when the handler read
    # it with the worker's group (batch_known); otherwise _region_and_batch reads it.
    batch_row: Any = None
    batch_known: bool = False
    # This message's reversal is already in the ledger (it overtook the message): whatever is
    # decided is stored as reversed, so a void must not touch its sale.
    reversed_first: bool = False
    # group.CardState: the worker group's reads of this card (PAN, totals, recent approvals),
    # when no earlier message of the group can have moved them; None: read per message.
    card_state: Any = None


@dataclass
class Decision:
    """The outcome to store (kind None = store nothing) and to answer."""
    rc: str
    kind: Optional[str] = None
    status: str = "declined"
    amount: int = 0
    currency: str = ""
    region: str = ""
    method: str = ""
    masked_pan: str = ""
    card_hash: str = ""
    orig_rrn: str = ""
    fee: int = 0
    flags: List[str] = field(default_factory=list)
    location: str = ""
    uploaded: int = 0
    resp48: Dict[str, str] = field(default_factory=dict)
    reason: str = ""
    # The region's local date at ctx.now, once the rules have looked the region up (else "": the
    # handler works it out to store the row).
    local_date: str = ""


def issuer_for(pan: str) -> Optional[dict]:
    for n, rows in _ISSUERS:
        row = rows.get(pan[:n])
        if row is not None:
            return row
    return None


def _base(ctx: Ctx, kind: str) -> Decision:
    """Fields every stored financial row carries; raises MessageError for contract violations."""
    tlv, doc = ctx.tlv, ctx.doc
    for tag in ("RG", "PM", "EP"):
        if tag not in tlv:
            raise iso.MessageError(f"tag {tag} missing", "48")
    if tlv["PM"] not in ("C", "Q", "P"):
        raise iso.MessageError("PM must be C, Q or P", "48")
    if "4" not in doc or "49" not in doc:
        raise iso.MessageError("amount and currency are required", "4" if "4" not in doc else "49")
    cs = ctx.card_state
    pan = cs.pan if cs is not None else iso.decrypt_pan(ctx.tdk, tlv["EP"], ctx.pan_ecb)
    if len(pan) > 19 and tlv["PM"] != "P":
        raise iso.MessageError("a card PAN is 12-19 digits (only a payment code is longer)", "48")
    masked = iso.mask_pan(pan)
    if "2" in doc and doc["2"] != masked:
        raise iso.MessageError("masked PAN does not match the encrypted PAN", "2")
    d = Decision(rc="00", kind=kind, amount=int(doc["4"]), currency=doc["49"], region=tlv["RG"],
                 method=tlv["PM"], masked_pan=masked,
                 card_hash=cs.card_hash if cs is not None else iso.card_hash(ctx.card_key, pan),
                 orig_rrn=tlv.get("OR", ""))
    d.reason = pan  # carried to the checks only; the handler never stores or logs `reason` when rc=00
    # Before any read of the card's state (totals, velocity, PIN tries, its sales for a refund or
    # void): the same card at another terminal, on another worker, waits for this commit.
    ctx.db.lock_cards((d.card_hash,))
    return d


def _location(ctx: Ctx, d: Decision) -> Optional[str]:
    """Map the location evidence to a region; flag a mismatch and decline it if the policy says so."""
    how, cell = iso.parse_location(ctx.tlv)
    if how == "cell":
        assert cell is not None
        d.location = ctx.tlv["LC"][:40]  # the evidence as the terminal reported it
        seen = registry.region_of_cell(ctx.db, cell[0], cell[1], cell[2])
        if seen is None:
            reg = registry.region(ctx.db, d.region)
            if reg is not None and str(reg["mcc"]) != str(cell[0]):
                # A network of another country: whatever its LAC, the terminal is not in this region.
                d.flags.append(f"location_mismatch:mcc{cell[0]}")
                if ctx.terminal["location_policy"] == "decline":
                    return "R3"
            else:
                d.flags.append("location_unknown")
        elif seen != d.region:
            d.flags.append(f"location_mismatch:{seen}")
            if ctx.terminal["location_policy"] == "decline":
                return "R3"
    elif how == "wifi":
        d.location = "wifi:" + ctx.tlv["WF"][:17]
        d.flags.append("location_unverified")
    else:
        d.flags.append("no_location")
    return None


def _region_and_batch(ctx: Ctx, d: Decision, reg: Optional[dict]) -> Optional[str]:
    """`reg` = registry.region(ctx.db, d.region)."""
    db, tid, batch = ctx.db, ctx.terminal["terminal_id"], ctx.tlv["BN"]
    rc = registry.grant_check(db, ctx.terminal, reg, ctx.now)
    if rc:
        d.flags.append("region_not_granted" if rc == "R1" else "region_grant_not_valid")
        return rc
    assert reg is not None
    if d.currency != reg["currency"]:
        d.flags.append("currency_mismatch")
        return "12"
    if ctx.batch_known:
        row = ctx.batch_row
    else:
        row = db.one("SELECT region, status FROM batches WHERE terminal_id=? AND batch_no=?", (tid, batch))
    if row is None:
        db.execute("INSERT INTO batches (terminal_id, batch_no, region, status) VALUES (?,?,?,'open')",
                   (tid, batch, d.region))
    elif row[0] != d.region:
        d.flags.append("batch_region_mix")  # one batch never mixes two regions' amounts
        return "12"
    elif row[1] != "open":
        d.flags.append("batch_closed")
        return "12"
    return None


def _daily(ctx: Ctx, d: Decision, reg: dict) -> Optional[str]:
    today = d.local_date
    if d.amount > reg["txn_limit"]:
        d.flags.append("txn_limit")
        return "61"
    # Running totals (one indexed read, or the group's) instead of SUM over a ledger that grows all day.
    sums = ctx.card_state.daily(ctx.terminal["terminal_id"], d.region, today) if ctx.card_state else None
    card_sum, term_sum = sums or totals.daily(ctx.db, d.card_hash, ctx.terminal["terminal_id"], d.region, today)
    if card_sum + d.amount > reg["daily_card_limit"]:
        d.flags.append("daily_card_limit")
        return "61"
    if term_sum + d.amount > reg["daily_terminal_limit"]:
        d.flags.append("daily_terminal_limit")
        return "61"
    return None


def _pin(ctx: Ctx, d: Decision, pan: str, reg: dict) -> Optional[str]:
    block = ctx.doc.get("52")
    if block is None:
        if d.method == "C" and d.amount > reg["pin_threshold"]:
            return "65"
        return None
    try:
        pin = iso.pin_from_block(ctx.tpk, bytes.fromhex(block), pan)
    except ValueError:
        pin = None  # undecipherable block counts as a wrong PIN
    row = ctx.db.one("SELECT tries FROM pin_tries WHERE card_hash=?", (d.card_hash,))
    tries = row[0] if row else 0
    if tries >= _MAX_PIN_TRIES:
        return "75"
    if pin == TEST_PIN:
        ctx.db.execute("DELETE FROM pin_tries WHERE card_hash=?", (d.card_hash,))
        return None
    ctx.db.execute("DELETE FROM pin_tries WHERE card_hash=?", (d.card_hash,))
    ctx.db.execute("INSERT INTO pin_tries VALUES (?,?)", (d.card_hash, tries + 1))
    d.flags.append("wrong_pin")
    return "75" if tries + 1 >= _MAX_PIN_TRIES else "55"


def _sale_checks(ctx: Ctx, d: Decision, pan: str, reg: dict) -> Optional[str]:
    issuer = issuer_for(pan)
    if issuer is None:
        return "14"
    if d.method == "C":
        exp = ctx.doc.get("14")
        if exp is None or len(exp) != 4 or not exp.isdigit() or not 1 <= int(exp[2:]) <= 12:
            raise iso.MessageError("expiry date YYMM required for cards", "14")
        # The card expires at the end of its month where it is used (the region's local date,
        # as the terminal reads it), not in UTC. YYMM of that "YYYY-MM-DD":
        today = d.local_date
        if exp < today[2:4] + today[5:7]:
            return "54"
    elif "52" in ctx.doc:
        # A PIN block belongs to a card: counted against a QR or payment code, wrong tries would
        # lock a card nobody entered a PIN for.
        raise iso.MessageError("a PIN block (field 52) only comes with a card payment (PM C)", "52")
    behaviour = issuer["behaviour"]
    if behaviour == "stolen":
        d.flags.append("stolen_card")
        return "43"
    if behaviour == "unavailable":
        return "91"
    if behaviour == "pintries":
        return "75"
    rc = _pin(ctx, d, pan, reg) or _daily(ctx, d, reg)
    if rc:
        return rc
    rc, flags = risk.check(ctx.db, ctx.policy, d.card_hash, d.region, d.amount, reg["report_threshold"], ctx.now,
                           ctx.card_state.recent() if ctx.card_state else None)
    d.flags.extend(flags)
    if rc:
        return rc
    if behaviour == "funds" and _spent(ctx, d.card_hash) + d.amount > int(issuer["available"]):
        return "51"
    return None


def _spent(ctx: Ctx, card_hash: str) -> int:
    """What the card's standing sales, less its standing refunds, took of a test issuer's balance
    (only for the 'funds' issuer: one indexed read of the card's rows)."""
    (net,) = ctx.db.one("SELECT COALESCE(SUM(CASE WHEN proc LIKE '20%' THEN -amount ELSE amount END), 0)"
                        " FROM txns WHERE card_hash=? AND kind='financial' AND status='approved'"
                        " AND (proc LIKE '00%' OR proc LIKE '20%')", (card_hash,))
    return int(net)


def _original(ctx: Ctx, d: Decision) -> Optional[tuple]:
    if not d.orig_rrn:
        raise iso.MessageError("tag OR (original RRN) required", "48")
    return ctx.db.one("SELECT id, amount, card_hash, status, batch_no, terminal_id, currency FROM txns"
                      " WHERE id=? AND rrn=? AND merchant_id=? AND kind='financial' AND proc LIKE '00%'",
                      (rrn_id(d.orig_rrn), d.orig_rrn, ctx.terminal["merchant_id"]))


def _refund(ctx: Ctx, d: Decision) -> Optional[str]:
    orig = _original(ctx, d)
    if orig is None or orig[3] != "approved":
        return "25"
    if orig[2] != d.card_hash or orig[6] != d.currency:
        d.flags.append("refund_card_mismatch")
        return "12"
    if _refunded(ctx, d.orig_rrn) + d.amount > orig[1]:
        d.flags.append("refund_exceeds_sale")
        return "64"
    return None


def _refunded(ctx: Ctx, rrn: str) -> int:
    """What standing refunds have already given back of the sale with this RRN."""
    (done,) = ctx.db.one("SELECT COALESCE(SUM(amount),0) FROM txns WHERE orig_rrn=? AND orig_rrn<>''"
                         " AND status='approved' AND kind='financial' AND proc LIKE '20%'", (rrn,))
    return int(done)


def _void(ctx: Ctx, d: Decision) -> Optional[str]:
    orig = _original(ctx, d)
    if orig is None or orig[5] != ctx.terminal["terminal_id"]:
        return "25"
    if orig[4] != ctx.tlv["BN"]:
        d.flags.append("void_other_batch")  # after settlement only a refund can give money back
        return "12"
    if orig[2] != d.card_hash or orig[6] != d.currency:
        # As for a refund: the void names the sale's card. It moves that card's totals, under
        # that card's lock and in the group's view of that card, and no other's.
        d.flags.append("void_card_mismatch")
        return "12"
    if orig[1] != d.amount:
        return "64"
    if orig[3] == "voided":
        d.flags.append("already_voided")
        d.status = "noop"   # a second void changes nothing
        return None
    if orig[3] != "approved":
        return "25"
    if _refunded(ctx, d.orig_rrn):
        d.flags.append("sale_refunded")  # void + refunds would give back more than the sale
        return "64"
    if ctx.reversed_first:
        return None  # stored as reversed: the sale stands
    totals.add_row(ctx.db, ctx.db.one(
        "UPDATE txns SET status='voided' WHERE id=? RETURNING " + _TOTALS_COLUMNS, (orig[0],)), -1)
    return None


# An advice that fails these cannot be counted anywhere: its region is not granted (so its batch
# was never checked), its currency is not the region's, or its batch is settled or of another region.
_UNBATCHABLE = ("region_not_granted", "region_grant_not_valid", "currency_mismatch", "batch_closed",
                "batch_region_mix")


def authorize(ctx: Ctx, advice: bool = False, upload: bool = False) -> Decision:
    """0200; 0220 advice: always accepted, every would-be decline kept as a flag `advice_rc_<rc>`;
    0320 upload of a transaction the host never saw: accepted, but one that fails a rule is held
    for review (flag `upload_rc_<rc>`, status 'held': outside the totals, the settlement and the
    clearing report), so that an offline transaction cannot bypass the rules online ones meet."""
    d = _base(ctx, "financial")
    pan, d.reason = d.reason, ""
    proc = ctx.doc["3"][:2]
    reg = None
    malformed = True   # not a transaction at all: an advice of it is held, never counted
    if proc not in ("00", "02", "20"):
        rc = "12"
        d.reason = f"processing code {ctx.doc['3']} not supported"
    elif d.amount <= 0:
        rc = "13"
        d.reason = "amount 0"
    else:
        malformed = False
        reg = registry.region(ctx.db, d.region)
        if reg is not None:
            d.local_date = registry.local_date(reg, ctx.now)
        rc = _region_and_batch(ctx, d, reg) or _location(ctx, d)
    if not rc and reg is not None:
        if proc == "00":
            rc = _sale_checks(ctx, d, pan, reg)
        elif proc == "20":
            rc = _refund(ctx, d)
        else:
            rc = _void(ctx, d)
    hold = False
    if (advice or upload) and rc:
        # Already completed offline: record, do not refuse (a terminal resends an advice until it
        # is acknowledged). An upload that is held is answered with the rule's code, so that the
        # terminal drops it from the totals of its trailer (0330 00 means: counted in this batch).
        d.flags.append(f"{'upload' if upload else 'advice'}_rc_{rc}")
        # A refund or void advice that fails its rules (no such approved sale, another card, more
        # back than the sale) gives money back the ledger cannot justify: held, like such an upload.
        hold = upload or malformed or proc in ("20", "02") or any(f in d.flags for f in _UNBATCHABLE)
        rc = rc if upload else None
    d.rc = rc or "00"
    if hold:
        d.status = "held"
    elif d.rc == "00":
        d.status = "noop" if d.status == "noop" else "approved"
        if proc == "00" and reg is not None:
            d.fee = registry.fee_for(ctx.db, d.region, d.method, d.amount)
    else:
        d.status = "declined"
    return d


def reverse(ctx: Ctx) -> Decision:
    """0400: reverse the financial row with the same terminal+batch+STAN; unknown STAN is acknowledged."""
    tlv, doc = ctx.tlv, ctx.doc
    if "RG" not in tlv or "4" not in doc:
        raise iso.MessageError("reversal needs RG and amount", "48" if "RG" not in tlv else "4")
    d = Decision(rc="00", kind="reversal", status="approved", amount=int(doc["4"]),
                 currency=doc.get("49", ""), region=tlv["RG"], method=tlv.get("PM", ""))
    orig = ctx.db.one("SELECT id, amount, status, masked_pan, card_hash, proc, orig_rrn, rrn FROM txns"
                      " WHERE terminal_id=? AND batch_no=? AND stan=? AND kind='financial'",
                      (ctx.terminal["terminal_id"], tlv["BN"], doc["11"]))
    if orig is None:
        d.flags.append("orphan_reversal")  # the original never arrived; remember so it is never approved
        return d
    settled = ctx.db.one("SELECT status FROM batches WHERE terminal_id=? AND batch_no=?",
                         (ctx.terminal["terminal_id"], tlv["BN"]))
    if settled is not None and settled[0] == "settled":
        # Cleared already: the settled totals and the clearing report stand; undoing it now is a
        # refund or a chargeback, not a reversal. Stored (answered the same if repeated), not applied.
        d.rc, d.status = "12", "declined"
        d.flags.append("batch_settled")
        return d
    d.masked_pan, d.card_hash = orig[3], orig[4]
    # A refund of this sale at another terminal reads its status under the same card lock.
    ctx.db.lock_cards((d.card_hash,))
    if orig[1] != d.amount:
        d.flags.append("amount_mismatch")
    if orig[2] == "approved" and orig[5].startswith("00") and _refunded(ctx, orig[7]):
        # Reversing a sale that was partly given back already would give back more than the sale.
        d.rc, d.status = "12", "declined"
        d.flags.append("sale_refunded")
    elif orig[2] == "approved":
        totals.add_row(ctx.db, ctx.db.one(
            "UPDATE txns SET status='reversed' WHERE id=? RETURNING " + _TOTALS_COLUMNS, (orig[0],)), -1)
        if orig[5].startswith("02"):
            _unvoid(ctx, d, orig[6])
    else:
        d.flags.append(f"original_{orig[2]}")
    return d


def _unvoid(ctx: Ctx, d: Decision, sale_rrn: str) -> None:
    """A reversed void never happened: its sale stands again (unless the sale was reversed too)."""
    sale = ctx.db.one("SELECT id, terminal_id, batch_no, stan FROM txns WHERE id=? AND rrn=? AND kind='financial'"
                      " AND proc LIKE '00%' AND status='voided' AND merchant_id=?",
                      (rrn_id(sale_rrn), sale_rrn, ctx.terminal["merchant_id"]))
    if sale is None:
        return
    gone = ctx.db.one("SELECT id FROM txns WHERE terminal_id=? AND batch_no=? AND stan=? AND kind='reversal'",
                      sale[1:])
    status = "reversed" if gone else "approved"
    row = ctx.db.one("UPDATE txns SET status=? WHERE id=? RETURNING " + _TOTALS_COLUMNS, (status, sale[0]))
    if status == "approved":
        totals.add_row(ctx.db, row, +1)
    d.flags.append(f"sale_{status}_again" if status == "approved" else "sale_stays_reversed")
