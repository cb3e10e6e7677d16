# Reads a contactless payment card: ISO 14443 activation, then the EMV
# application selection and data reading of EMV Contactless Book B / Book 3:
# SELECT PPSE, SELECT AID (by priority, the next one when an application is
# blocked), GET PROCESSING OPTIONS with the PDOL, READ RECORD over
# the AFL. Every command goes through _apdu(), which follows the card's
# '61XX' and '6CXX' status words. Returns the PAN only inside a Card object;
# everything printable goes through Card.public() with the PAN masked.
import os
import time
from micropython import const

from drivers.nfcerr import NfcError, CardRemoved
from drivers.iso14443 import T4
from drivers import iso14443a

SCHEMES = {"a000000003": "visa", "a000000333": "unionpay", "a000000004": "mastercard"}


class CardError(Exception):
    # code: "not_payment", "no_app", "blocked", "expired", "removed", "read", "data"
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


_MAX_TURNS = const(16)    # GET RESPONSEs and Le re-sends for one command
_MAX_DATA = const(256)    # a short response APDU's data field (ISO/IEC 7816-4:2005 §5.1)


def _apdu(t4, cmd, what):
    # One command APDU (each of ours ends with its Le) -> the whole response APDU, SW1 SW2 last.
    # ISO 14443-4 carries APDUs as they are, but a card may still answer with the status words
    # of ISO/IEC 7816-4:2005 §5.1.3 (table 5) that EMV 4.3 Book 1 §9.3.1 has a terminal's
    # transport layer follow for T=0, and some cards do so over T=CL too:
    #   '61XX'  XX more bytes wait (XX = 00: 256): GET RESPONSE, 00 C0 00 00 Le=XX (7816-4
    #           §7.6.1); the data of every answer concatenated, for as long as the card says 61;
    #   '6CXX'  wrong Le, XX is the exact length: the same command again with Le = XX.
    # Bounded: a card that never ends its answer is a read error, not a hung terminal.
    r = t4.transceive(cmd)
    got = None                          # the answer so far, once a '61XX' cut it in parts
    turns = 0
    while True:
        sw1 = r[-2]
        if sw1 == 0x61 or got is not None and sw1 != 0x6C:
            if got is None:
                got = bytearray()
            got += memoryview(r)[:-2]   # data before a '61XX' is the start of the answer
            if len(got) > _MAX_DATA:
                raise CardError("read", "%s: answer longer than %d bytes" % (what, _MAX_DATA))
        if sw1 != 0x61 and sw1 != 0x6C:
            if got is None:
                return r
            got += r[-2:]
            return got
        turns += 1
        if turns > _MAX_TURNS:
            raise CardError("read", "%s: card still answered %s after %d GET RESPONSE/Le turns"
                            % (what, bytes(r[-2:]).hex(), _MAX_TURNS))
        if sw1 == 0x61:
            cmd = b"\x00\xc0\x00\x00" + bytes((r[-1],))
        else:
            cmd = bytes(cmd[:-1]) + bytes((r[-1],))
        r = t4.transceive(cmd)


def _ok(r, what):
    # The data of a response that must end in '9000'.
    if r[-2] != 0x90 or r[-1] != 0x00:
        raise CardError("read", "%s answered %s" % (what, bytes(r[-2:]).hex()))
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
    r = _apdu(t4, b"\x00\xa4\x04\x00\x0e2PAY.SYS.DDF01\x00", "SELECT PPSE")
    ppse = r[-2] << 8 | r[-1]
    if ppse == 0x9000:
        # The directory entries (61) by priority (87, low = high; none = lowest).
        cands = []
        entries = tlv_find(memoryview(r)[:-2], 0xBF0C)
        if entries is None:
            raise CardError("no_app", "PPSE has no directory")
        for t, e, _ in tlv_iter(entries):
            if t != 0x61:
                continue
            aid = tlv_find(e, 0x4F)
            p = tlv_find(e, 0x87)
            if aid is not None:
                cands.append((p[0] & 0x0F if p is not None and len(p) else 15, bytes(aid)))
        if not cands:
            raise CardError("no_app", "no application in the PPSE")
        cands.sort()
    elif ppse == 0x6A81:
        # EMV 4.3 Book 1 §12.3.2: '6A81' to the first SELECT, the card is blocked (or does not
        # know SELECT): the selection ends there.
        raise CardError("blocked", "SELECT PPSE answered 6a81: card blocked")
    else:
        # No PPSE to read ('6A82' file or application not found, '6283' selected file
        # deactivated, ISO/IEC 7816-4:2005 §5.1.3 table 6). The list of AIDs method (EMV 4.3 Book 1
        # §12.3.3) is the contact interface's: a contactless reader selects through the PPSE only
        # (EMV Contactless Book B, Entry Point), so the customer is told to use another card.
        raise CardError("no_app", "SELECT PPSE answered %04x: no contactless directory" % ppse)
    # Final selection: an application that answers SELECT with anything but '9000' leaves the
    # list and the next one is tried; '6283' means it is blocked (EMV 4.3 Book 1 §12.3.3, §12.4).
    blocked = False
    for _, best in cands:
        r = _apdu(t4, b"\x00\xa4\x04\x00" + bytes((len(best),)) + best + b"\x00", "SELECT AID")
        sw = r[-2] << 8 | r[-1]
        if sw == 0x9000:
            break
        if sw == 0x6283:
            blocked = True
    else:
        # Nothing selected: what the card answered, for the cashier and the logs. (Few strings:
        # each one costs heap while this module is loaded.)
        raise CardError("blocked" if blocked else "no_app", "last SELECT AID %04x (of %d)%s"
                        % (sw, len(cands), ": application blocked" if blocked else ""))
    cands = None                             # the read goes on without the list: heap is scarce
    fci = memoryview(r)[:-2]
    card = Card()
    card.aid = best.hex()
    card.scheme = SCHEMES.get(card.aid[:10], "other")
    card.uid = uid.hex()
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
    r = _ok(_apdu(t4, gpo, "GPO"), "GPO")
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
            r = _ok(_apdu(t4, bytes((0x00, 0xB2, rec, (sfi << 3) | 4, 0)), "READ RECORD"), "READ RECORD")
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
