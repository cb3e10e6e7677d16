"""`roampos report settlement --date D`: per-region clearing report, fees and net per merchant."""
from __future__ import annotations

import argparse
import csv
import datetime
import re
import sys
from typing import Dict, List, Tuple

from .db import Database, DatabaseError, default_url, open_ledger

__all__ = ["add_arguments", "run", "clearing_rows", "COLUMNS"]

COLUMNS = ("region", "region_name", "currency", "merchant_id", "merchant_name", "settlement_account",
           "sales_count", "sales_amount", "refund_count", "refund_amount", "fees", "net")


def clearing_rows(db: Database, day: str) -> List[Dict[str, object]]:
    """One row per region and merchant over the batches settled on `day` (region-local date).

    net = sales - refunds - fees; amounts are integers in minor units of the region's currency.
    """
    q = ("SELECT t.region, t.merchant_id, t.proc, COUNT(*), SUM(t.amount), SUM(t.fee) FROM txns t"
         " JOIN batches b ON b.terminal_id=t.terminal_id AND b.batch_no=t.batch_no"
         " WHERE b.status='settled' AND b.settled_date=? AND t.kind='financial' AND t.status='approved'"
         " GROUP BY t.region, t.merchant_id, t.proc")
    acc: Dict[Tuple[str, str], Dict[str, int]] = {}
    for region, merchant, proc, n, amount, fee in db.all(q, (day,)):
        a = acc.setdefault((region, merchant), {"sales_count": 0, "sales_amount": 0, "refund_count": 0,
                                                 "refund_amount": 0, "fees": 0})
        if proc.startswith("00"):
            a["sales_count"] += int(n)
            a["sales_amount"] += int(amount)
            a["fees"] += int(fee)
        elif proc.startswith("20"):
            a["refund_count"] += int(n)
            a["refund_amount"] += int(amount)
    rows = []
    for (region, merchant), a in sorted(acc.items()):
        reg = db.one("SELECT name, currency FROM regions WHERE code=?", (region,)) or ("?", "?")
        m = db.one("SELECT name, settlement_account FROM merchants WHERE merchant_id=?", (merchant,)) or ("?", "?")
        rows.append({"region": region, "region_name": reg[0], "currency": reg[1], "merchant_id": merchant,
                     "merchant_name": m[0], "settlement_account": m[1], **a,
                     "net": a["sales_amount"] - a["refund_amount"] - a["fees"]})
    return rows


def _money(minor: int) -> str:
    sign, (major, cents) = ("-" if minor < 0 else ""), divmod(abs(minor), 100)
    return f"{sign}{major:,}.{cents:02d}"


def _table(rows: List[Dict[str, object]], day: str) -> str:
    head = ("region", "merchant", "cur", "sales", "amount", "refunds", "amount", "fees", "net")
    out = [f"Clearing report for {day} (amounts in major units)", ""]
    lines = [head]
    regions: Dict[str, List[int]] = {}
    for r in rows:
        lines.append((f"{r['region']} {r['region_name']}", str(r["merchant_id"]), str(r["currency"]),
                      str(r["sales_count"]), _money(int(r["sales_amount"])), str(r["refund_count"]),
                      _money(int(r["refund_amount"])), _money(int(r["fees"])), _money(int(r["net"]))))
        t = regions.setdefault(str(r["region"]), [0, 0, 0])
        t[0] += int(r["sales_amount"]) - int(r["refund_amount"])
        t[1] += int(r["fees"])
        t[2] += int(r["net"])
    widths = [max(len(x[i]) for x in lines) for i in range(len(head))]
    for ln in lines:
        out.append("  ".join(c.rjust(w) if i >= 3 else c.ljust(w) for i, (c, w) in enumerate(zip(ln, widths))))
    out.append("")
    for code, (gross, fees, net) in sorted(regions.items()):
        out.append(f"region {code}: gross {_money(gross)}  fees {_money(fees)}  net {_money(net)}")
    if not rows:
        out.append("no settled batches on this date")
    return "\n".join(out)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=("settlement",), help="report type")
    p.add_argument("--date", required=True, help="settlement date YYYY-MM-DD (region-local)")
    p.add_argument("--db", help="database URL (default $ROAMPOS_DB or ./roampos-host.db)")
    p.add_argument("--csv", help="CSV output path (default clearing-<date>.csv)")


def _cell(value):  # type: ignore[no-untyped-def]
    """Names and accounts come from registration: text a spreadsheet would run as a formula (=, +,
    -, @, tab or CR first) is written with a leading quote, as text (CSV injection). Amounts are
    integers and stay numbers."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def run(args: argparse.Namespace) -> int:
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", args.date):
            raise ValueError
        datetime.date.fromisoformat(args.date)
    except ValueError:
        print(f"error: --date {args.date!r} is not a date YYYY-MM-DD", file=sys.stderr)
        return 2
    try:
        # A report only reads: it creates nothing, not even the schema a mistyped URL names.
        db = open_ledger(args.db or default_url())
        rows = clearing_rows(db, args.date)
    except DatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    path = args.csv or f"clearing-{args.date}.csv"
    try:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows({k: _cell(v) for k, v in r.items()} for r in rows)
    except OSError as exc:
        print(f"error: cannot write {path}: {exc.strerror}", file=sys.stderr)
        return 1
    print(_table(rows, args.date))
    print(f"\nCSV written to {path}")
    return 0
