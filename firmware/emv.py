# Reads a contactless payment card: ISO 14443 activation, then the EMV
# application selection and data reading of EMV Contactless Book B / Book 3:
# SELECT PPSE, SELECT AID (highest priority), GET PROCESSING OPTIONS with the
# PDOL, READ RECORD over the AFL. Returns the PAN only inside a Card object;
# everything printable goes through Card.public() with the PAN masked.
import os
import time
from micropython import const

from drivers.nfcerr import NfcError, CardRemoved
from drivers.iso14443 import T4
from drivers import iso14443a

SCHEMES = {"a000000003": "visa", "a000000333": "unionpay", "a000000004": "mastercard"}


class CardError(Exception):
    # code: "not_payment", "no_app", "expired", "removed", "read", "data"
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def mask(pan):
    # First 6 and last 4 digits, the rest starred (PCI DSS 3.4 display rule).
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:] if len(pan) > 10 else "*" * len(pan)


def tlv_iter(data):
    # One level of BER-TLV (EMV Book 3 Annex B): yields (tag, value, constructed)
    # with value a memoryview. Damaged TLV raises CardError.
    mv = memoryview(data)
    i, n = 0, len(mv)
    while i < n:
        if mv[i] in (0x00, 0xFF):   # padding between objects (Annex B1)
            i += 1
            continue
        t = mv[i]
        constructed = t & 0x20
        i += 1
        if t & 0x1F == 0x1F:
            while i < n and mv[i] & 0x80:
                t = (t << 8) | mv[i]
                i += 1
            if i >= n:
                raise CardError("data", "TLV tag cut short")
            t = (t << 8) | mv[i]
            i += 1
        if i >= n:
            raise CardError("data", "TLV length missing for %x" % t)
        ln = mv[i]
        i += 1
        if ln & 0x80:
            k = ln & 0x7F
            if k > 2 or i + k > n:
                raise CardError("data", "TLV length form %02x" % ln)
            ln = 0
            for _ in range(k):
                ln = (ln << 8) | mv[i]
                i += 1
        if i + ln > n:
            raise CardError("data", "TLV %x overruns by %d" % (t, i + ln - n))
        yield t, mv[i:i + ln], constructed
        i += ln


def tlv_find(data, tag, depth=0):
    # Depth-first search for `tag` (int); a memoryview of the value or None.
    for t, v, constructed in tlv_iter(data):
        if t == tag:
            return v
        if constructed and depth < 6:
            r = tlv_find(v, tag, depth + 1)
            if r is not None:
                return r
    return None


def _sw_ok(r, what):
    if len(r) < 2 or r[-2] != 0x90 or r[-1] != 0x00:
        raise CardError("no_app" if what.startswith("SELECT") else "read",
                        "%s answered %s" % (what, bytes(r[-2:]).hex()))
    return memoryview(r)[:-2]


class Card:
    __slots__ = ("pan", "exp", "aid", "label", "uid", "scheme")

    def public(self):
        return {"pan": mask(self.pan), "exp": self.exp[:4], "aid": self.aid,
                "scheme": self.scheme, "label": self.label}


_MAX_PDOL = const(200)    # a short GPO command holds 255 bytes; real PDOLs ask for a few dozen
_MAX_RECORDS = const(32)  # real cards list a handful of records


def _pdol_data(pdol, amount, currency):
    # Fill the card's PDOL (tag-length list) with terminal data; unknown
    # tags are zeros (EMV Book 3 §5.4). A PDOL cut short, or asking for more
    # than one GPO command can carry, is the card's error, not ours.
    out = bytearray()
    i = 0
    n = len(pdol)
    while i < n:
        t = pdol[i]
        i += 1
        if t & 0x1F == 0x1F:
            if i >= n:
                raise CardError("data", "PDOL ends inside a tag")
            t = (t << 8) | pdol[i]
            i += 1
        if i >= n:
            raise CardError("data", "PDOL ends before a length")
        ln = pdol[i]
        i += 1
        if len(out) + ln > _MAX_PDOL:
            raise CardError("data", "PDOL asks for more than %d bytes" % _MAX_PDOL)
        v = bytearray(ln)
        if t == 0x9F02 or t == 0x5F2A:       # amount, currency: format n, BCD right-aligned in
            x = amount if t == 0x9F02 else currency   # exactly ln bytes, zero-padded or cut on
            k = ln - 1                                # the left (Book 3 §4.3, §5.4)
            while k >= 0 and x:
                v[k] = x % 10 | x // 10 % 10 << 4
                x //= 100
                k -= 1
        elif t == 0x9F66 and ln:             # TTQ: EMV mode, online capable
            v[0] = 0x36
        elif t == 0x9F37:                    # unpredictable number: the board's random source
            try:
                v[:] = os.urandom(ln)
            except AttributeError:           # a port without one (the 32-bit test port): its PRNG
                import random
                for k in range(ln):
                    v[k] = random.getrandbits(8)
        out += v
    return out


def read(reader, act, amount=0, currency=156, today=None):
    # One card read on an MFRC522-like reader, given its activation result
    # (uid, sak, atqa) from iso14443a.activate(); raises CardError.
    try:
        if act is None:
            raise CardError("removed", "no card in the field")
        uid, sak, _ = act
        if not iso14443a.is_iso14443_4(sak):
            iso14443a.halt(reader)
            raise CardError("not_payment", "card SAK %02x is not ISO 14443-4 (not a payment card)" % sak)
        t4 = T4(reader, iso14443a.rats(reader))
        try:
            return _read_app(t4, uid, amount, currency, today)
        finally:
            t4.deselect()
    except CardRemoved as e:
        raise CardError("removed", "card removed during the read: %s" % e)
    except NfcError as e:
        raise CardError("read", "%s: %s" % (type(e).__name__, e))


def _read_app(t4, uid, amount, currency, today):
    r = _sw_ok(t4.transceive(b"\x00\xa4\x04\x00\x0e2PAY.SYS.DDF01\x00"), "SELECT PPSE")
    # Pick the directory entry (61) with the best priority (87, low = high).
    best, prio = None, 99
    entries = tlv_find(r, 0xBF0C)
    if entries is None:
        raise CardError("no_app", "PPSE has no directory")
    for t, e, _ in tlv_iter(entries):
        if t != 0x61:
            continue
        aid = tlv_find(e, 0x4F)
        p = tlv_find(e, 0x87)
        pv = p[0] & 0x0F if p is not None and len(p) else 15
        if aid is not None and pv < prio:
            best, prio = bytes(aid), pv
    if best is None:
        raise CardError("no_app", "no application in the PPSE")
    card = Card()
    card.aid = best.hex()
    card.scheme = SCHEMES.get(card.aid[:10], "other")
    card.uid = uid.hex()
    fci = _sw_ok(t4.transceive(b"\x00\xa4\x04\x00" + bytes((len(best),)) + best + b"\x00"), "SELECT AID")
    lab = tlv_find(fci, 0x50)
    # Tag 50 is "ans" (EMV Book 1): keep printable ASCII only, whatever the card sends.
    card.label = "".join(chr(b) if 32 <= b < 127 else "?" for b in bytes(lab)[:16]) if lab is not None else ""
    pdol = tlv_find(fci, 0x9F38)
    data = _pdol_data(pdol, amount, currency) if pdol is not None else b""
    gpo = bytearray(b"\x80\xa8\x00\x00")
    gpo.append(len(data) + 2)
    gpo += b"\x83"
    gpo.append(len(data))
    gpo += data
    gpo.append(0)
    r = _sw_ok(t4.transceive(gpo), "GPO")
    if r and r[0] == 0x80:                   # format 1: AIP(2) AFL
        afl = r[4:] if len(r) > 4 else b""
    else:
        afl = tlv_find(r, 0x94)
    if afl is None or len(afl) % 4:
        raise CardError("data", "bad AFL in GPO response")
    pan = exp = None
    left = _MAX_RECORDS   # a card listing 15,000 records must not hold the terminal for seconds
    for k in range(0, len(afl), 4):
        sfi = afl[k] >> 3
        # Book 3 §10.2: SFI 1..30, first record 1..last, at most as many ODA records as listed.
        if not 1 <= sfi <= 30 or not 1 <= afl[k + 1] <= afl[k + 2] or afl[k + 3] > afl[k + 2] - afl[k + 1] + 1:
            raise CardError("data", "bad AFL entry")
        for rec in range(afl[k + 1], afl[k + 2] + 1):
            left -= 1
            if left < 0:
                raise CardError("data", "AFL lists more than %d records" % _MAX_RECORDS)
            r = _sw_ok(t4.transceive(bytes((0x00, 0xB2, rec, (sfi << 3) | 4, 0))), "READ RECORD")
            v = tlv_find(r, 0x5A)
            if v is not None:
                pan = bytes(v).hex().rstrip("f")
            v = tlv_find(r, 0x5F24)
            if v is not None:
                exp = bytes(v).hex()
            if pan is None:
                v = tlv_find(r, 0x57)        # Track 2 equivalent: PAN D YYMM ...
                if v is not None:
                    t2 = bytes(v).hex()
                    d = t2.find("d")
                    if d > 0:
                        pan, exp = t2[:d], exp or t2[d + 1:d + 5] + "31"
    if not pan or not exp or not pan.isdigit() or len(exp) != 6:
        raise CardError("data", "card has no PAN or expiry")
    if not 12 <= len(pan) <= 19 or not luhn_ok(pan):
        raise CardError("data", "card number fails its check (length %d or Luhn)" % len(pan))
    if not exp.isdigit() or not 1 <= int(exp[2:4]) <= 12:
        raise CardError("data", "card expiry %r is not a date YYMMDD" % exp[:6])
    card.pan, card.exp = pan, exp
    today = today or _today()
    if exp < today:
        raise CardError("expired", "card expired %s/%s (PAN %s)" % (exp[2:4], exp[:2], mask(pan)))
    return card


def luhn_ok(digits):
    # ISO/IEC 7812-1 check digit.
    total, odd = 0, True
    for ch in reversed(digits):
        d = ord(ch) - 48
        if not odd:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
        odd = not odd
    return total % 10 == 0


def _today():
    t = time.localtime()
    return "%02d%02d%02d" % (t[0] % 100, t[1], t[2])
