"""One request in, one response out: decode, identify, verify MAC, reject replays, dispatch, store once."""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, NamedTuple, Optional, Tuple

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .. import iso
from . import auth, group, registry, settle, totals
from .auth import Ctx, Decision
from .db import Database, DatabaseError
from .risk import Policy

__all__ = ["Outcome", "Handler", "TerminalKeys"]

log = logging.getLogger("roampos.host")
_ECHOED = ("3", "4", "7", "11", "41", "42", "49")
_KIND = {"0400": "reversal", "0500": "settlement"}   # the ledger row's kind by MTI, else financial


@dataclass
class Outcome:
    """What the transport does next: publish `response` (if any) to the terminal, then acknowledge."""
    response: Optional[bytes]
    reason: str = ""          # why it was rejected, for the log; never holds secrets
    stored: bool = False      # a ledger row was written by this message
    rc: str = ""


class TerminalKeys(NamedTuple):
    """A terminal's keys as bytes; `tak` is None before its first sign-on."""
    tmk: bytes
    nm_mac: bytes   # derive(TMK, RPOS-NMAC), MACs 0800/0810
    tak: Optional[bytes]
    tpk: Optional[bytes]
    tdk: Optional[bytes]
    pan_ecb: Any    # a reusable AES-ECB decryptor under the TDK (iso.decrypt_pan), or None


class Handler:
    """Stateless between messages: everything lives in the database, so workers can be many."""

    def __init__(self, db: Database, policy: Optional[Policy] = None):
        self.db = db
        self.policy = policy or Policy.from_env()
        self.card_key = db.card_key()
        # Decoded and derived keys per terminal, keyed by the stored hex values: a sign-on or a new
        # TMK (from any worker) changes them, so a stale entry can never be used. Not shared state:
        # it is only a cache of what the terminal row says on every message.
        self._keys: Dict[str, Tuple[tuple, TerminalKeys]] = {}
        self._group: Optional[group.Group] = None
        self._verified: Optional[bytes] = None

    # ------------------------------------------------------------ group reads
    def begin_group(self, items: "list[Tuple[str, Any]]") -> None:
        """Inside the worker's group transaction, before handling: read the group's terminals, their
        batches and whether their (batch, STAN) keys already have ledger rows, one query per table
        (PostgreSQL: the terminal rows are locked here, in ID order, until commit). `items` are
        (topic terminal ID, what decode() returned). Decisions are unchanged: the database cannot
        change under these reads (SQLite holds the write lock, PostgreSQL the terminal row locks)
        except by this group's own messages, and a terminal's later messages read it afresh."""
        self._group = None
        try:
            with self.db.transaction():  # a savepoint: a failed read must not abort the group
                self._group = group.read(self.db, self.policy, items, self._card_of)
        except DatabaseError:
            raise
        except Exception:  # a bug here costs the group its shortcut, not its answers
            log.exception("group read failed; reading per message")
            self._group = None

    def _card_of(self, term: dict, ep: str) -> Optional[Tuple[str, str]]:
        """(PAN, card hash) of an encrypted PAN under the terminal's data key, or None."""
        keys = self.keys(term)
        try:
            pan = iso.decrypt_pan(keys.tdk or b"", ep, keys.pan_ecb)
            return pan, iso.card_hash(self.card_key, pan)
        except Exception:
            return None  # the handler rejects it on its own, as a format error

    def end_group(self) -> None:
        self._group = None

    def keys(self, term: dict) -> TerminalKeys:
        version = (term["tmk"], term["tak"], term["tpk"], term["tdk"])
        hit = self._keys.get(term["terminal_id"])
        if hit is not None and hit[0] == version:
            return hit[1]
        vault = self.db.vault()
        tmk = vault.open(term["tmk"]) or b""
        tdk = vault.open(term["tdk"])
        # One ECB context per data key, reused for every PAN (a context is per Handler, so per thread).
        ecb = Cipher(algorithms.AES(tdk), modes.ECB()).decryptor() if tdk and len(tdk) == 16 else None
        k = TerminalKeys(tmk, iso.derive_key(tmk, iso.LABEL_NM_MAC), vault.open(term["tak"]),
                         vault.open(term["tpk"]), tdk, ecb)
        if len(self._keys) > 100000:
            self._keys.clear()
        self._keys[term["terminal_id"]] = (version, k)
        return k

    # ------------------------------------------------------------ entry point
    def decode(self, topic_tid: str, raw: bytes) -> "Dict[str, str] | Outcome":
        """The decoded request, or the Outcome (no response) of one that cannot be handled.

        Needs no database: the worker calls it before taking the write lock, once per message
        even when a database outage makes it handle the group again.
        """
        try:
            doc = iso.decode(raw)
        except iso.MessageError as exc:
            return Outcome(None, f"malformed message on {topic_tid}: {exc}")
        except Exception as exc:  # pyiso8583 raising something unexpected must not stop the worker
            return Outcome(None, f"undecodable message on {topic_tid}: {type(exc).__name__}")
        if doc["t"] not in iso.MTI_RESPONSE:
            return Outcome(None, f"{topic_tid}: MTI {doc['t']} is not a request")
        return doc

    def handle(self, topic_tid: str, raw: bytes, now: Optional[float] = None,
               decoded: "Dict[str, str] | Outcome | None" = None) -> Outcome:
        """Never raises for bad input; DatabaseError propagates so the transport can hold the ack.

        `decoded` is what decode(topic_tid, raw) returned, when the caller already has it.
        """
        now = time.time() if now is None else now
        doc = self.decode(topic_tid, raw) if decoded is None else decoded
        if isinstance(doc, Outcome):
            return doc
        # The key this request's MAC verified under, once it has: a format error or a failure
        # found after that is answered MACed too, so that the terminal can trust the refusal.
        self._verified = None
        try:
            return self._handle(topic_tid, raw, doc, now)
        except iso.MessageError as exc:
            return self._reply(doc, "30", self._verified, f"{topic_tid}: format error: {exc}")
        except DatabaseError:
            raise
        except Exception as exc:  # a bug must cost one message a 96, not the whole worker
            log.exception("internal error on %s", topic_tid)
            return self._reply(doc, "96", self._verified, f"{topic_tid}: internal error {type(exc).__name__}")
        finally:
            if self._group is not None:
                self._group.touch(doc)

    # ------------------------------------------------------------ steps
    def _handle(self, topic_tid: str, raw: bytes, doc: Dict[str, str], now: float) -> Outcome:
        mti = doc["t"]
        for f in ("3", "7", "11", "41", "42"):
            if f not in doc:
                raise iso.MessageError("required field missing", f)
        tid = doc["41"]
        if tid != topic_tid:
            return self._reply(doc, "03", None, f"field 41 {tid!r} does not match topic terminal {topic_tid}")
        # Inside the worker's group transaction the read also takes the PostgreSQL row lock that
        # serializes this terminal across workers, saving the separate SELECT ... FOR UPDATE.
        locked = self.db.kind == "pg" and self.db.in_transaction()
        g = self._group
        if g is not None and tid not in g.seen and tid in g.terms:
            g.seen.add(tid)
            term = g.terms[tid]
        else:
            if g is not None:
                g.seen.add(tid)
                g = None  # not this terminal's first message of the group: read afresh
            term = registry.get_terminal(self.db, tid, for_update=locked, handler=True)
        if term is None:
            return self._reply(doc, "03", None, f"unknown terminal {tid}")
        keys = self.keys(term)
        tmk = keys.tmk
        if mti == "0800":
            mac_key: Optional[bytes] = keys.nm_mac
        else:
            mac_key = keys.tak
            if mac_key is None:
                return self._reply(doc, "A0", None, f"terminal {tid} has no session keys; sign on first")
        if "64" not in doc or not iso.verify_mac(mac_key, raw):
            return self._reply(doc, "A0", mac_key, f"bad MAC from terminal {tid}")
        self._verified = mac_key
        if doc["42"] != term["merchant_id"]:
            return self._reply(doc, "03", mac_key, f"terminal {tid} is bound to merchant {term['merchant_id']},"
                                                  f" not {doc['42']}")
        if term["blocked"] and mti not in ("0400", "0500", "0320"):
            # Reversals still pass: they only ever undo money the host already approved; so do
            # settlement and batch upload, which close it (an upload the host never saw is 58 in
            # settle.upload), else a blocked terminal's approved sales would never be cleared.
            return self._reply(doc, "58", mac_key, f"terminal {tid} is blocked")
        sent = iso.parse_transmission_time(doc["7"], now)
        # A reversal only undoes, once (UNIQUE key): a late one is still applied, like a blocked
        # terminal's. A stale copy of a stored message gets its stored answer below.
        stale = abs(sent - now) > self.policy.max_skew_s and mti != "0400"
        if stale and mti == "0800":
            return self._reply(doc, "94", mac_key, self._too_old(doc))
        hit = g.tlvs.get(id(doc)) if g is not None else None
        tlv = hit[1] if hit is not None and hit[0] is doc else iso.decode_tlv(doc.get("48", ""))
        if "SN" in tlv and tlv["SN"] != term["serial"]:
            return self._reply(doc, "03", mac_key, f"terminal {tid}: serial {tlv['SN']} is not the bound device")
        if mti == "0800":
            return self._network(doc, term, tmk, mac_key, now, sent)
        batch = tlv.get("BN", "")
        if len(batch) != 6 or not batch.isdigit() or batch == "000000":
            raise iso.MessageError("tag BN (6-digit batch number, 000001..999999) required", "48")
        ctx = Ctx(self.db, self.policy, term, doc, tlv, now, keys.tpk or b"", keys.tdk or b"", self.card_key,
                  keys.pan_ecb)
        if g is not None:
            ctx.card_state = g.card_state(doc)
        key = (tid, batch, doc["11"])
        if g is not None and key in g.stans:
            ctx.batch_row, ctx.batch_known = g.batches[key[:2]], True
        with self.db.transaction():
            if not locked:
                self.db.lock_terminal(tid)
            kind = _KIND.get(mti, "financial")
            # One read finds both an earlier copy of this message and a reversal that overtook it.
            if g is not None and g.stans.get(key) is False:
                same: dict = {}  # the group read found no row with this key
            else:
                same = {r[0]: r for r in self.db.all("SELECT kind, tx_time, response, rc FROM txns WHERE"
                                                     " terminal_id=? AND batch_no=? AND stan=?", key)}
            prior = same.get(kind)
            if prior is not None and mti != "0320":
                if prior[1] == doc["7"] or mti == "0400":
                    # Same message again (QoS 1 redelivery, terminal retry, repeated reversal): same answer.
                    return Outcome(bytes(prior[2]), f"terminal {tid} STAN {doc['11']}: duplicate, resent", rc=prior[3])
                return self._reply(doc, "94", mac_key, f"terminal {tid} STAN {doc['11']} batch {batch}"
                                                      " already used with another transmission time")
            if stale:
                return self._reply(doc, "94", mac_key, self._too_old(doc))
            ctx.reversed_first = "reversal" in same and mti in ("0200", "0220", "0320")
            if mti == "0500":
                d = settle.settle(ctx)
            elif mti == "0200":
                d = auth.authorize(ctx)
            elif mti == "0220":
                d = auth.authorize(ctx, advice=True)
            elif mti == "0400":
                d = auth.reverse(ctx)
            else:
                d = settle.upload(ctx)
            if self._group is not None and d.card_hash:
                # The card this message used, as the handler decrypted it: the group's read may not
                # have known it (a sign-on earlier in the group changed the data key), and a later
                # message with this card must read its state afresh.
                self._group.touched.add(d.card_hash)
            if d.kind == "financial" and d.status == "approved" and ctx.reversed_first:
                d.status = "reversed"  # its reversal overtook it
                d.flags.append("reversed_before_arrival")
                if mti in ("0200", "0320"):
                    # never answer approved (or counted in the batch) what is already undone; an
                    # advice is only acknowledged
                    d.rc = "12"
            return self._store(ctx, d, mac_key)

    def _too_old(self, doc: Dict[str, str]) -> str:
        return f"terminal {doc['41']} STAN {doc['11']}: field 7 outside {self.policy.max_skew_s}s window (replay?)"

    def _store(self, ctx: Ctx, d: Decision, mac_key: bytes) -> Outcome:
        doc = ctx.doc
        if d.kind is None:
            return self._reply(doc, d.rc, mac_key, d.reason, resp48=d.resp48)
        day = d.local_date  # authorize's; the other kinds' rows look their region up here
        if not day:
            reg = registry.region(self.db, d.region)
            day = registry.local_date(reg, ctx.now) if reg else time.strftime("%Y-%m-%d", time.gmtime(ctx.now))
        flags = ",".join(d.flags)
        tid = ctx.terminal["terminal_id"]
        row_id = self.db.next_txn_id()
        rrn = f"{row_id:012d}"
        approval = f"{(row_id * 7919 + 104729) % 1000000:06d}" if d.rc == "00" else ""
        extra48 = {**d.resp48, "FL": flags[:200]} if flags else d.resp48   # _reply only reads it
        if d.kind == "settlement":  # kept for idempotency only: a 0510 carries no RRN or approval code
            approval = ""
        out = self._reply(doc, d.rc, mac_key, d.reason, resp48=extra48, approval=approval,
                          rrn="" if d.kind == "settlement" else rrn)
        # The UNIQUE (terminal, batch, STAN, kind) key still guards against a second row.
        self.db.execute(
            "INSERT INTO txns (id, terminal_id, batch_no, stan, kind, mti, proc, tx_time, amount, currency,"
            " region, method, merchant_id, masked_pan, card_hash, rc, status, rrn, auth_code, orig_rrn, fee,"
            " flags, location, local_date, created, uploaded, response)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (row_id, tid, ctx.tlv["BN"], doc["11"], d.kind, doc["t"], doc["3"], doc["7"],
             d.amount, d.currency, d.region, d.method, ctx.terminal["merchant_id"], d.masked_pan,
             d.card_hash, d.rc, d.status, rrn, approval, d.orig_rrn, d.fee, flags, d.location, day,
             int(ctx.now), d.uploaded, out.response))
        if totals.counts(d.kind, doc["3"], d.status):
            totals.add(self.db, tid, d.region, day, d.amount)
        out.stored = True
        return out

    def _network(self, doc: Dict[str, str], term: dict, tmk: bytes, mac_key: bytes, now: float,
                 sent: float) -> Outcome:
        """0800: 910000 sign-on delivers fresh TPK/TAK/TDK wrapped under the TMK; 920000 is an echo test."""
        if doc["3"] == iso.PROC["echo"]:
            return self._reply(doc, "00", mac_key, "")
        if doc["3"] != iso.PROC["signon"]:
            return self._reply(doc, "12", mac_key, f"terminal {term['terminal_id']}: 0800 processing code {doc['3']}")
        keys = {name: os.urandom(16) for name in ("P", "M", "D")}
        # A replayed sign-on would rotate the keys under the terminal's feet, and so would any older
        # one recorded within the freshness window: only a sign-on sent no earlier than the last
        # accepted one (same second: another STAN) counts. The reference leads with the send time,
        # 12 digits, so its first 12 characters order as text; a reference from before that
        # (STAN + field 7, no ':') only refuses its exact copy. A terminal whose clock stepped back
        # signs on again once its clock has passed its last sign-on (at most the skew window).
        ref = f"{int(sent):012d}:{doc['11']}{doc['7']}"
        with self.db.transaction():
            cur = self.db.execute("UPDATE terminals SET tpk=?, tak=?, tdk=?, keys_at=?, signon_ref=?"
                                  " WHERE terminal_id=? AND (signon_ref IS NULL"
                                  " OR (signon_ref LIKE '%:%' AND substr(signon_ref, 1, 12) <= ?"
                                  " AND signon_ref <> ?)"
                                  " OR (signon_ref NOT LIKE '%:%' AND signon_ref <> ?))",
                                  (*(self.db.vault().seal(keys[n]) for n in "PMD"), int(now), ref,
                                   term["terminal_id"], ref[:12], ref, doc["11"] + doc["7"]))
            if cur.rowcount != 1:
                row = self.db.one("SELECT signon_ref, tpk, tak, tdk FROM terminals WHERE terminal_id=?",
                                  (term["terminal_id"],))
                if row is None or row[0] != ref:
                    return self._reply(doc, "94", mac_key, f"terminal {term['terminal_id']}: sign-on replayed")
                # The very sign-on that installed the current keys, again (a QoS 1 redelivery, its
                # answer lost): the same answer, as for any stored message. Nothing rotates, and the
                # answer is the bytes its first one carried.
                vault = self.db.vault()
                keys = {name: vault.open(sealed) for name, sealed in zip("PMD", row[1:])}
        resp48 = {}
        for name, key in keys.items():
            resp48[name + "K"] = iso.wrap_key(tmk, key).hex().upper()
            resp48[name + "C"] = iso.kcv(key).hex().upper()
        return self._reply(doc, "00", mac_key, "", resp48=resp48)

    def _reply(self, doc: Dict[str, str], rc: str, mac_key: Optional[bytes], reason: str,
               resp48: Optional[Dict[str, str]] = None, rrn: str = "", approval: str = "") -> Outcome:
        resp: Dict[str, str] = {"t": iso.MTI_RESPONSE.get(doc["t"], doc["t"])}
        # Echoed as decode() accepted them (fixed lengths, numeric fields checked there); a response
        # that still cannot be encoded falls back to MTI + code below.
        for f in _ECHOED:
            if f in doc:
                resp[f] = doc[f]
        if rrn:
            resp["37"] = rrn
        if approval:
            resp["38"] = approval
        resp["39"] = rc
        if resp48:
            resp["48"] = iso.encode_tlv(resp48)
        try:
            raw = iso.encode(resp, mac_key)
        except iso.MessageError:
            raw = iso.encode({"t": resp["t"], "39": rc}, mac_key)
        return Outcome(raw, reason, rc=rc)
