# Contactless cards for the MFRC522 model: ISO/IEC 14443-3 type A states
# (IDLE, READY, ACTIVE, HALT) with cascade levels for 4- and 7-byte UIDs,
# ISO/IEC 14443-4 block protocol (chaining, ACK/NAK, WTX, DESELECT), and an
# EMV contactless application (PPSE, SELECT, GPO, READ RECORD). The data is
# made up with the structure of EMV Book 1/3 (TLV, AIDs, Track 2 equivalent
# 57, expiry 5F24); the PANs pass the Luhn check.
from vhw.nfc import crc_a
from vhw.ticks import ticks_diff, ticks_ms

# name: uid, aid (or "" for a MIFARE Classic 1K, SAK 08), pan, expiry YYMMDD,
# behaviour: w = WTX twice on GPO, p = pulled away at frame 3, f = one
# answer damaged on air at frame 4, t = a PDOL cut off inside a tag (a card
# that is broken, or hostile), s = slow: its ATS answers in 5.2 ms (EMV lets
# a card take 5.286), asks a guard time (SFGI 6, 19.3 ms) before the first
# block, and a frame wait of FWI 13 (2474 ms), of which GPO takes 2000.
# Status words of ISO/IEC 7816-4:2005 §5.1.3, as cards whose code also serves
# T=0 send them over T=CL: g = every answer with data comes as '61XX' and is
# fetched with GET RESPONSE (§7.6.1), at most 48 bytes at a time (a record
# takes several), l = a command whose Le is not the answer's length gets
# '6CXX' (XX the length) and must be sent again, e = '6110' for ever, to every
# command and every GET RESPONSE (a card that never ends its answer), b = the
# application is blocked: its SELECT answers the FCI with '6283', n = no PPSE:
# SELECT PPSE answers '6A82' (the terminal has to select the AID itself).
PROFILES = {
    "visa": "04a1b2c3 a0000000031010 4761739001010010 281231 -",
    "unionpay": "0488776655443f a0000003330101 6212345678901234569 301130 w",
    "expired": "04c0ffee a0000000031010 4761739001010127 211231 -",
    "pulled": "04deadbe a0000000031010 4761739001010010 281231 p",
    "flaky": "04f1a2b3 a0000003330101 6212345600000012 291031 f",
    "mifare": "d3a41c5e - - - -",
    "badpdol": "04bad0d1 a0000000031010 4761739001010010 281231 t",
    "slow": "04510517 a0000000031010 4761739001010010 281231 s",
    "getresp": "04610c01 a0000000031010 4761739001010010 281231 g",
    "wrongle": "046c0c02 a0000003330101 6212345678901234569 301130 l",
    "endless": "04611010 a0000000031010 4761739001010010 281231 e",
    "blocked": "04628303 a0000000031010 4761739001010010 281231 b",
    "noppse": "046a8204 a0000003330101 6212345678901234569 301130 n",
}
_CHUNK = 48        # the 'g' card's GET RESPONSE gives at most this much at a time
_FSD = (16, 24, 32, 40, 48, 64, 96, 128, 256)
_LABEL = {"a0000000031010": b"VISA CREDIT", "a0000003330101": b"UnionPay Debit"}


def tlv(tag, value):
    n = len(value)
    return bytes.fromhex(tag) + (bytes((n,)) if n < 128 else bytes((0x81, n))) + value


def _app(aid, pan, exp, how="-"):
    # -> (PPSE FCI, AID FCI, GPO answer, {record p2p1: data}) for one card.
    a = bytes.fromhex(aid)
    lab = _LABEL.get(aid, b"CARD")
    ppse = tlv("6f", tlv("84", b"2PAY.SYS.DDF01") + tlv("a5", tlv("bf0c", tlv(
        "61", tlv("4f", a) + tlv("50", lab) + tlv("87", b"\x01")))))
    # PDOL: TTQ 9F66(4), amount 9F02(6), currency 5F2A(2), UN 9F37(4) = 16 bytes
    pdol = "9f66049f02065f2a029f3704" if how != "t" else "9f66049f"
    fci = tlv("6f", tlv("84", a) + tlv("a5", tlv("50", lab) + tlv("87", b"\x01")
                                       + tlv("9f38", bytes.fromhex(pdol))))
    gpo = tlv("77", tlv("82", b"\x20\x00") + tlv("94", b"\x08\x01\x02\x00"))  # SFI 1, records 1-2
    p = pan + ("f" if len(pan) % 2 else "")
    t2 = pan + "d" + exp[:4] + "2010000000000"
    t2 += "f" if len(t2) % 2 else ""
    rec1 = tlv("70", tlv("57", bytes.fromhex(t2)) + tlv("5f20", b"CARD/TEST")
               + tlv("9f1f", b"0" * 22))
    rec2 = tlv("70", tlv("5a", bytes.fromhex(p)) + tlv("5f24", bytes.fromhex(exp))
               + tlv("5f25", b"\x20\x01\x01") + tlv("5f28", b"\x01\x56") + tlv("5f34", b"\x01")
               + tlv("8e", bytes.fromhex("000000000000000042031e031f03"))
               + tlv("9f0d", bytes.fromhex("b050ac8800")) + tlv("9f0e", bytes(5))
               + tlv("9f0f", bytes.fromhex("b070ac9800")) + tlv("9f4a", b"\x82"))
    return ppse, fci, gpo, {0x0C01: rec1, 0x0C02: rec2}


class Card:
    def __init__(self, name):
        uid, aid, pan, exp, self.how = PROFILES[name].split()
        self.name = name
        self.uid = bytes.fromhex(uid)
        self.sak = 0x20 if aid != "-" else 0x08
        self.atqa = b"\x44\x00" if len(self.uid) == 7 else b"\x04\x00"
        # ATS: TL 05, T0 75 (TA TB TC present, FSCI 5 = 64 bytes), TA 00
        # (106 kBd only), TB 70 (FWI 7 = 38.7 ms, SFGI 0), TC 02.
        self.ats = bytes.fromhex("0575007002") if aid != "-" else None
        if self.how == "s":
            self.ats = bytes.fromhex("057500d602")   # TB: FWI 13, SFGI 6
        self.took_us = 0         # how long the card took to answer the last frame
        self._ats_at = None      # ticks_ms of its ATS: it hears no block for SFGT after
        self.app = _app(aid, pan, exp, self.how) if aid != "-" else None
        self.state = "idle"
        self.gone = False
        self.frames = 0
        self.wtx = 2 if self.how == "w" else 0
        self.selected = False
        self.rest = None         # 'g': what GET RESPONSE still has to give, its final SW last

    def respond(self, c):
        # The answer to command APDU c as this card's behaviour gives it: apdu()'s, or its
        # procedure status words (ISO/IEC 7816-4:2005 §5.1.3) for the g, l, e profiles.
        how = self.how
        if how == "e":
            return b"\x61\x10"
        rest, self.rest = self.rest, None    # GET RESPONSE only right after the answer it ends
        if how == "g" and c[:2] == b"\x00\xc0":
            if rest is None or len(c) != 5:
                return b"\x69\x85"          # conditions of use not satisfied: nothing to give
            return self._give(rest, c[4] or 256)
        r = self.apdu(c)
        if how == "g" and len(r) > 2:
            self.rest = r
            return bytes((0x61, min(len(r) - 2, _CHUNK)))
        if how == "l" and len(r) > 2 and len(c) >= 5:
            le = c[-1] or 256                # each terminal command ends with Le
            if le != len(r) - 2:
                return bytes((0x6C, (len(r) - 2) & 0xFF))
        return r

    def _give(self, rest, le):
        # GET RESPONSE: up to le bytes of what is left, '61XX' while more remains.
        n = min(le, len(rest) - 2, _CHUNK)
        part, rest = rest[:n], rest[n:]
        if len(rest) > 2:
            self.rest = rest
            return part + bytes((0x61, min(len(rest) - 2, _CHUNK)))
        return part + rest

    def apdu(self, c):
        # EMV commands: SELECT by name, GPO, READ RECORD (EMV Book 3 §6.5).
        ppse, fci, gpo, recs = self.app
        if len(c) < 4:
            return b"\x67\x00"
        if c[1] == 0xA4 and c[2] == 0x04:
            name = c[5:5 + c[4]] if len(c) > 4 else b""
            if name == b"2PAY.SYS.DDF01":
                return ppse + b"\x90\x00" if self.how != "n" else b"\x6a\x82"
            if name == fci[4:4 + fci[3]]:
                if self.how == "b":
                    return fci + b"\x62\x83"   # selected file deactivated: application blocked
                self.selected = True
                return fci + b"\x90\x00"
            return b"\x6a\x82"
        if c[:2] == b"\x80\xa8":
            if not self.selected:
                return b"\x69\x85"
            if len(c) < 7 or c[5] != 0x83 or c[6] != 16:
                return b"\x67\x00"
            return gpo + b"\x90\x00"
        if c[1] == 0xB2:
            r = recs.get((c[3] << 8) | c[2])
            return r + b"\x90\x00" if r else b"\x6a\x83"
        return b"\x6d\x00"

    def receive(self, data, bits):
        # One frame in (as on air, CRC included where sent) -> (bytes, last
        # bits) or None for silence.
        self.took_us = 0
        if self.gone:
            return None
        if bits == 7 and len(data) == 1:         # REQA / WUPA
            if data[0] == 0x26 and self.state == "idle" or data[0] == 0x52:
                self.state = "ready"
                self.level = 0
                return self.atqa, 0
            return None
        u = self.uid
        levels = [u] if len(u) == 4 else [b"\x88" + u[:3], u[3:7]]
        if self.state == "ready" and len(data) >= 2 and data[0] == (0x93, 0x95, 0x97)[self.level]:
            part = levels[self.level]
            part += bytes((part[0] ^ part[1] ^ part[2] ^ part[3],))
            if data[1] == 0x20 and len(data) == 2:
                return part, 0
            if data[1] == 0x70 and len(data) == 9 and self._ok(data) and data[2:7] == part:
                self.level += 1
                if self.level < len(levels):
                    return self._c(b"\x04"), 0    # SAK: UID not complete
                self.state = "active"
                return self._c(bytes((self.sak,))), 0
            return None
        if not self._ok(data):
            return None      # a PICC ignores a damaged frame
        data = data[:-2]
        if self.state == "active":
            if data == b"\x50\x00":
                self.state = "halt"
            elif data[0] == 0xE0 and self.ats:
                self.fsd = _FSD[min(data[1] >> 4, 8)]
                self.state = "t4"
                self.bn = 1                      # PICC rule C
                self.inbuf = b""
                self.out = b""
                self.last = None
                if self.how == "s":
                    self.took_us = 5200
                    self._ats_at = ticks_ms()
                return self._c(self.ats), 0
            return None
        if self.state == "t4":
            if self._ats_at is not None and \
                    ticks_diff(ticks_ms(), self._ats_at) < (302 << (self.ats[3] & 0x0F)) // 1000:
                return None      # inside the guard time: the card does not hear the block
            return self._block(data)
        return None

    def _c(self, data):
        return data + crc_a(data)

    def _ok(self, data):
        return len(data) >= 3 and crc_a(data[:-2]) == data[-2:]

    def _send(self, block):
        self.last = self._c(block)
        if self.how == "f" and self.frames == 4:  # damaged on air, once
            return self.last[:-1] + bytes((self.last[-1] ^ 0xFF,)), 0
        return self.last, 0

    def _next(self):
        room = self.fsd - 3
        chunk, self.out = self.out[:room], self.out[room:]
        return self._send(bytes((0x02 | self.bn | (0x10 if self.out else 0),)) + chunk)

    def _block(self, d):
        # ISO 14443-4 §7.5.4 PICC rules, for one block in.
        self.frames += 1
        if self.how == "p" and self.frames == 3:
            self.gone = True                     # pulled away mid-exchange
            return None
        pcb = d[0]
        if pcb & 0xE2 == 0x02:                   # I-block
            self.bn = pcb & 1                    # rule D: toggle = follow the PCD
            if pcb & 0x10:                       # chained: acknowledge
                self.inbuf += d[1:]
                return self._send(bytes((0xA2 | self.bn,)))
            apdu, self.inbuf = self.inbuf + d[1:], b""
            self.out = self.respond(apdu)
            if self.how == "s" and apdu[:2] == b"\x80\xa8":
                self.took_us = 2000000
            if self.wtx and apdu[:2] == b"\x80\xa8":
                self.wtx -= 1
                return self._send(b"\xf2\x01")   # S(WTX): GPO "takes time"
            return self._next()
        if pcb & 0xE6 == 0xA2:                   # R-block, b5 = NAK
            if pcb & 0x10 and pcb & 1 != self.bn:
                return self._send(bytes((0xA2 | self.bn,)))
            if not pcb & 0x10 and pcb & 1 != self.bn:
                self.bn ^= 1                     # ACK: next chained block
                return self._next()
            return (self.last, 0) if self.last else None
        if pcb == 0xF2 and len(d) == 2:          # our WTX acknowledged
            if self.wtx:
                self.wtx -= 1
                return self._send(b"\xf2\x01")
            return self._next()
        if pcb == 0xC2:                          # S(DESELECT)
            self.state = "halt"
            return self._c(b"\xc2"), 0
        return None
