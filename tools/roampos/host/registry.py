"""Merchant/terminal registry, region grants, region profiles, fee schedules, cell->region map."""
from __future__ import annotations

import datetime
import json
import os
import re
import time
from typing import Dict, List, Optional, Tuple

from .. import iso
from .db import Database

__all__ = ["RegistryError", "add_terminal", "grant_region", "revoke_region", "set_blocked",
           "get_terminal", "list_terminals", "region", "region_of_cell", "grant_check",
           "fee_for", "local_date", "params_package", "record_heartbeat", "TERMINAL_COLUMNS",
           "HANDLER_COLUMNS", "HANDLER_SELECT"]

TERMINAL_COLUMNS = ("terminal_id", "serial", "merchant_id", "home_region", "addresses", "tmk",
                    "tpk", "tak", "tdk", "keys_at", "blocked", "location_policy", "last_seen",
                    "firmware", "signal", "seen_region", "online", "params_version")
_REGION_COLUMNS = ("code", "name", "currency", "utc_offset_min", "mcc", "pin_threshold",
                   "txn_limit", "daily_card_limit", "daily_terminal_limit", "report_threshold")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class RegistryError(ValueError):
    """A registry change that is refused; the message names the terminal or field."""


# What handling a message reads of its terminal (the rest, heartbeat and management columns, is
# the CLI's): a worker group reads it for up to 64 terminals at once.
HANDLER_COLUMNS = ("terminal_id", "serial", "merchant_id", "home_region", "tmk", "tpk", "tak", "tdk",
                   "blocked", "location_policy")
_TERMINAL_SELECT = f"SELECT {','.join(TERMINAL_COLUMNS)} FROM terminals WHERE terminal_id=?"
HANDLER_SELECT = f"SELECT {','.join(HANDLER_COLUMNS)} FROM terminals WHERE terminal_id=?"


def get_terminal(db: Database, terminal_id: str, for_update: bool = False,
                 handler: bool = False) -> Optional[dict]:
    """The terminal row (`handler`: its HANDLER_COLUMNS only); `for_update` also locks it until
    commit (PostgreSQL, inside a transaction)."""
    sql = HANDLER_SELECT if handler else _TERMINAL_SELECT
    if for_update and db.kind == "pg":
        sql += " FOR UPDATE"
    row = db.one(sql, (terminal_id,))
    return dict(zip(HANDLER_COLUMNS if handler else TERMINAL_COLUMNS, row)) if row else None


# Reference data (regions, fees, cells) changes only when the data files are reloaded, so each
# process keeps it for a short while; terminals, grants and blocks are always read fresh.
_REF_TTL = float(os.environ.get("ROAMPOS_REF_TTL", "30"))
_ref: Dict[tuple, tuple] = {}


def _cached(db: Database, key: tuple, load):  # type: ignore[no-untyped-def]
    k = (db.url,) + key
    hit = _ref.get(k)
    now = time.monotonic()
    if hit and hit[0] > now:
        return hit[1]
    value = load()
    if len(_ref) > 10000:
        _ref.clear()
    _ref[k] = (now + _REF_TTL, value)
    return value


def region(db: Database, code: str) -> Optional[dict]:
    def load() -> Optional[dict]:
        row = db.one(f"SELECT {','.join(_REGION_COLUMNS)} FROM regions WHERE code=?", (code,))
        return dict(zip(_REGION_COLUMNS, row)) if row else None
    return _cached(db, ("region", code), load)


_DATES: Dict[int, str] = {}   # days since the epoch -> "YYYY-MM-DD" (every sale asks, a few times)


def local_date(reg: dict, now: float) -> str:
    day = int((now + 60 * int(reg["utc_offset_min"])) // 86400)
    text = _DATES.get(day)
    if text is None:
        if len(_DATES) >= 4096:
            _DATES.clear()
        text = _DATES[day] = time.strftime("%Y-%m-%d", time.gmtime(day * 86400))
    return text


def add_terminal(db: Database, terminal_id: str, serial: str, merchant_id: str, merchant_name: str,
                 acquirer_code: str, settlement_account: str, home_region: str,
                 addresses: Dict[str, str], tmk_hex: str, location_policy: str = "decline") -> None:
    """Register one terminal bound to exactly one merchant (PBOC 银发〔2021〕259号)."""
    _check_id(terminal_id)
    # [0-9], not \d: \d also takes Arabic-Indic or fullwidth digits, which no field 42 carries.
    if not re.fullmatch(r"[0-9]{15}", merchant_id):
        raise RegistryError(f"merchant ID {merchant_id!r} must be 15 digits (field 42)")
    # The same rules as the terminal's parameter schema (firmware/params_schema.py, merchant).
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", serial):
        raise RegistryError(f"serial {serial!r} must be 1..32 of A-Z a-z 0-9 - _")
    if not re.fullmatch(r"[0-9]{1,11}", acquirer_code):
        raise RegistryError(f"acquirer code {acquirer_code!r} must be 1..11 digits")
    merchant_name = merchant_name.strip()
    if not 1 <= len(merchant_name) <= 40 or not merchant_name.isprintable():
        raise RegistryError("merchant name must be 1..40 printable characters")
    if not re.fullmatch(r"[A-Za-z0-9 -]{1,34}", settlement_account) or not settlement_account.strip():
        raise RegistryError("settlement account must be 1..34 letters, digits, spaces or dashes")
    if not re.fullmatch(r"[0-9A-Fa-f]{32}", tmk_hex):
        raise RegistryError("TMK must be 32 hex digits (AES-128)")
    if location_policy not in ("decline", "flag"):
        raise RegistryError("location policy must be 'decline' or 'flag'")
    _check_region_code(home_region)
    if region(db, home_region) is None:
        raise RegistryError(f"unknown home region {home_region}")
    for code in addresses:
        _check_region_code(code)
        if region(db, code) is None:
            raise RegistryError(f"deployment address for unknown region {code}")
    sealed_tmk = db.vault().seal(bytes.fromhex(tmk_hex))  # never stored in clear
    with db.transaction():
        if get_terminal(db, terminal_id):
            raise RegistryError(f"terminal {terminal_id} already registered; one merchant binding per terminal")
        if db.one("SELECT terminal_id FROM terminals WHERE serial=?", (serial,)):
            raise RegistryError(f"serial {serial} is already bound to another terminal")
        # ON CONFLICT: two adds of one new merchant at once (PostgreSQL, read committed) both see
        # no row; the second then compares with what the first stored instead of failing.
        db.execute("INSERT INTO merchants VALUES (?,?,?,?) ON CONFLICT (merchant_id) DO NOTHING",
                   (merchant_id, merchant_name, acquirer_code, settlement_account))
        m = db.one("SELECT name, acquirer_code, settlement_account FROM merchants WHERE merchant_id=?",
                   (merchant_id,))
        if tuple(m) != (merchant_name, acquirer_code, settlement_account):
            raise RegistryError(f"merchant {merchant_id} is registered as {m[0]!r} with acquirer code {m[1]}"
                                " and its own account: give the same name, code and account")
        try:
            db.execute("INSERT INTO terminals (terminal_id, serial, merchant_id, home_region, addresses, tmk,"
                       " location_policy) VALUES (?,?,?,?,?,?,?)",
                       (terminal_id, serial, merchant_id, home_region,
                        json.dumps(addresses, ensure_ascii=False), sealed_tmk, location_policy))
        except Exception as exc:
            if not _is_unique_violation(exc):
                raise
            # Another add of this ID or serial committed since the checks above (a parallel run).
            raise RegistryError(f"terminal {terminal_id} or serial {serial} was just registered by"
                                " another command; one merchant binding per terminal") from None


def _check_id(terminal_id: str) -> None:
    if not re.fullmatch(r"[0-9A-Za-z]{8}", terminal_id):
        raise RegistryError(f"terminal ID {terminal_id!r} must be 8 alphanumerics (field 41)")


def _check_region_code(code: str) -> None:
    if not re.fullmatch(r"[0-9]{6}", code):
        raise RegistryError(f"region {code!r} must be a GB/T 2260 code of 6 digits")


def _is_unique_violation(exc: Exception) -> bool:
    import sqlite3
    if isinstance(exc, sqlite3.IntegrityError):
        return True
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(exc, psycopg.errors.UniqueViolation)


def _require(db: Database, terminal_id: str) -> dict:
    _check_id(terminal_id)
    t = get_terminal(db, terminal_id)
    if t is None:
        raise RegistryError(f"unknown terminal {terminal_id}")
    return t


def grant_region(db: Database, terminal_id: str, code: str, valid_from: str,
                 valid_to: str) -> Optional[Tuple[str, str]]:
    """Grant `code` for the validity (inclusive local dates); returns the grant it replaced, if any."""
    t = _require(db, terminal_id)
    _check_region_code(code)
    if region(db, code) is None:
        raise RegistryError(f"unknown region {code}")
    if code == t["home_region"]:
        raise RegistryError(f"region {code} is the terminal's home region: always authorized, never granted")
    if not (_real_date(valid_from) and _real_date(valid_to)) or valid_to < valid_from:
        raise RegistryError("validity must be real dates YYYY-MM-DD with --from <= --to")
    with db.transaction():
        old = db.one("SELECT valid_from, valid_to FROM grants WHERE terminal_id=? AND region=?", (terminal_id, code))
        db.execute("DELETE FROM grants WHERE terminal_id=? AND region=?", (terminal_id, code))
        db.execute("INSERT INTO grants VALUES (?,?,?,?)", (terminal_id, code, valid_from, valid_to))
    return (str(old[0]), str(old[1])) if old else None


def _real_date(text: str) -> bool:
    if not _DATE.fullmatch(text):
        return False
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def revoke_region(db: Database, terminal_id: str, code: str) -> bool:
    _require(db, terminal_id)
    _check_region_code(code)
    with db.transaction():
        cur = db.execute("DELETE FROM grants WHERE terminal_id=? AND region=?", (terminal_id, code))
    return cur.rowcount > 0


def set_blocked(db: Database, terminal_id: str, blocked: bool) -> None:
    _require(db, terminal_id)
    with db.transaction():
        db.execute("UPDATE terminals SET blocked=? WHERE terminal_id=?", (1 if blocked else 0, terminal_id))


def list_terminals(db: Database) -> List[dict]:
    out = []
    for (tid,) in db.all("SELECT terminal_id FROM terminals ORDER BY terminal_id"):
        t = get_terminal(db, tid)
        assert t is not None
        for k in ("tmk", "tpk", "tak", "tdk"):
            t.pop(k)  # secrets never leave the registry through listings
        t["addresses"] = json.loads(t["addresses"])
        t["grants"] = [dict(zip(("region", "valid_from", "valid_to"), g)) for g in db.all(
            "SELECT region, valid_from, valid_to FROM grants WHERE terminal_id=? ORDER BY region", (tid,))]
        out.append(t)
    return out


def grant_check(db: Database, terminal: dict, reg: Optional[dict], now: float) -> Optional[str]:
    """None if the terminal may transact now in region `reg` (region(db, code), None if unknown),
    else 'R1' or 'R2'.

    The home region is always authorized; other regions need a grant whose validity
    (inclusive dates, in the region's local time) covers now.
    """
    if reg is None:
        return "R1"
    code = reg["code"]
    if code == terminal["home_region"]:
        return None
    g = db.one("SELECT valid_from, valid_to FROM grants WHERE terminal_id=? AND region=?",
               (terminal["terminal_id"], code))
    if g is None:
        return "R1"
    today = local_date(reg, now)
    return None if g[0] <= today <= g[1] else "R2"


def region_of_cell(db: Database, mcc: int, mnc: int, lac: int) -> Optional[str]:
    rows = _cached(db, ("cells", mcc), lambda: db.all(
        "SELECT region, mnc, lac_from, lac_to FROM cells WHERE mcc=? ORDER BY lac_from", (mcc,)))
    for reg, cmnc, lo, hi in rows:
        if lo <= lac <= hi and (cmnc == "*" or int(cmnc) == mnc):
            return reg
    return None


def fee_for(db: Database, code: str, method: str, amount: int) -> int:
    """Fee = min(cap, round_half_up(amount * bps / 10000)); cap 0 means uncapped. Integers only."""
    row = _cached(db, ("fee", code, method), lambda: db.one(
        "SELECT bps, cap FROM fees WHERE region=? AND method=?", (code, method)) or db.one(
        "SELECT bps, cap FROM fees WHERE region='*' AND method=?", (method,)))
    if row is None:
        return 0
    bps, cap = int(row[0]), int(row[1])
    fee = (amount * bps + 5000) // 10000
    return min(fee, cap) if cap else fee


def params_package(db: Database, terminal_id: str, now: float) -> bytes:
    """Signed parameter package for .../params: binding, authorized regions and their profiles."""
    t = _require(db, terminal_id)
    with db.transaction():
        # Always above the last package's: a push from a machine whose clock is behind must not
        # carry a `v` the terminal ignores (it keeps only a greater one).
        db.lock_terminal(terminal_id)
        (last,) = db.one("SELECT params_version FROM terminals WHERE terminal_id=?", (terminal_id,))
        version = max(int(now * 1000), int(last or 0) + 1)
        db.execute("UPDATE terminals SET params_version=? WHERE terminal_id=?", (version, terminal_id))
    codes = [(t["home_region"], "0000-01-01", "9999-12-31")] + [tuple(g) for g in db.all(
        "SELECT region, valid_from, valid_to FROM grants WHERE terminal_id=? ORDER BY region", (terminal_id,))]
    regions = []
    for code, vf, vt in codes:
        reg = region(db, code)
        assert reg is not None
        # Per method, as fee_for() charges: the region's own row, else the '*' default.
        fees = {m: {"bps": b, "cap": c} for m, b, c in db.all(
            "SELECT method, bps, cap FROM fees WHERE region='*' ORDER BY method")}
        fees.update({m: {"bps": b, "cap": c} for m, b, c in db.all(
            "SELECT method, bps, cap FROM fees WHERE region=? ORDER BY method", (code,))})
        regions.append({"code": code, "valid_from": vf, "valid_to": vt, "currency": reg["currency"],
                        "utc_offset_min": reg["utc_offset_min"], "pin_threshold": reg["pin_threshold"],
                        "txn_limit": reg["txn_limit"], "fees": fees})
    body = {"v": version, "terminal": terminal_id, "merchant": t["merchant_id"], "serial": t["serial"],
            "home_region": t["home_region"], "blocked": bool(t["blocked"]), "regions": regions}
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    return iso.sign_params(db.vault().open(t["tmk"]) or b"", raw)


# A heartbeat is a few dozen bytes of flat JSON; it carries no MAC (any client allowed on the
# topic can publish one), so nothing in it may reach the database unchecked.
MAX_HEARTBEAT = 512
_RSSI_RANGE = (-150, 100)   # dBm as the modem or WLAN reports it; CSQ 0..99 also fits


def record_heartbeat(db: Database, terminal_id: str, payload: bytes, now: float) -> Optional[str]:
    """Store .../status JSON (fw, rssi, region, online); returns a reason if ignored."""
    if len(payload) > MAX_HEARTBEAT:
        return f"status of {terminal_id} ignored: {len(payload)} bytes (at most {MAX_HEARTBEAT})"
    try:
        data = json.loads(payload.decode("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not an object")
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return f"status of {terminal_id} is not a JSON object: {str(exc)[:60]}"
    if get_terminal(db, terminal_id) is None:
        return f"status from unknown terminal {terminal_id}"
    online = 0 if data.get("online") is False else 1
    sig = data.get("rssi")
    if type(sig) is not int or not _RSSI_RANGE[0] <= sig <= _RSSI_RANGE[1]:
        sig = None  # bool, float, string or out of range: keep the last good value
    with db.transaction():
        # The broker's last will ({"online": false}) says when the link was lost, not that the
        # terminal was seen: last_seen stays at its last real heartbeat.
        db.execute("UPDATE terminals SET last_seen=CASE WHEN ?=1 THEN ? ELSE last_seen END, online=?,"
                   " firmware=COALESCE(?, firmware), signal=COALESCE(?, signal),"
                   " seen_region=COALESCE(?, seen_region) WHERE terminal_id=?",
                   (online, int(now), online, _s(data.get("fw")), sig, _s(data.get("region")), terminal_id))
    return None


def _s(v: object) -> Optional[str]:
    """A short printable string (a NUL would even be refused by PostgreSQL), or None."""
    if not isinstance(v, (str, int)) or isinstance(v, bool):
        return None
    text = "".join(c for c in str(v)[:MAX_HEARTBEAT] if c.isprintable())[:32]
    return text or None
