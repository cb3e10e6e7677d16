# Contactless cards for the MFRC522 model: ISO/IEC 14443-3 type A states
# (IDLE, READY, ACTIVE, HALT) with cascade levels for 4- and 7-byte UIDs,
# ISO/IEC 14443-4 block protocol (chaining, ACK/NAK, WTX, DESELECT), and an
# EMV contactless application (PPSE, SELECT, GPO, READ RECORD) built from a
# profile. The data is made up with the structure of EMV Book 1/3 (TLV,
# AIDs, Track 2 equivalent 57, expiry 5F24); PANs pass the Luhn check.
from vhw.nfc import crc_a

FSD = (16, 24, 32, 40, 48, 64, 96, 128, 256)

# name -> profile. uid hex, aid hex, pan, expiry YYMMDD, extra behaviour.
PROFILES = {
    "visa": {"uid": "04a1b2c3", "aid": "a0000000031010", "label": "VISA CREDIT",
             "pan": "4761739001010010", "exp": "281231", "name": "CARD/VISA TEST"},
    "unionpay": {"uid": "0488776655443f", "aid": "a0000003330101", "label": "UnionPay Debit",
                 "pan": "6212345678901234569", "exp": "301130", "name": "CARD/UNIONPAY",
                 "wtx": 2},
    "expired": {"uid": "04c0ffee", "aid": "a0000000031010", "label": "VISA CREDIT",
                "pan": "4761739001010127", "exp": "211231", "name": "CARD/EXPIRED"},
    "pulled": {"uid": "04deadbe", "aid": "a0000000031010", "label": "VISA CREDIT",
               "pan": "4761739001010010", "exp": "281231", "name": "CARD/PULLED",
               "leave_after": 3},
    "flaky": {"uid": "04f1a2b3", "aid": "a0000003330101", "label": "UnionPay Debit",
              "pan": "6212345600000012", "exp": "291031", "name": "CARD/FLAKY",
              "bad_crc_at": 4},
    "mifare": {"uid": "d3a41c5e", "sak": 0x08, "atqa": 0x0004},
}


def tlv(tag, value):
    n = len(value)
    ln = bytes((n,)) if n < 0x80 else (bytes((0x81, n)) if n < 256 else bytes((0x82, n >> 8, n & 0xFF)))
    return bytes.fromhex(tag) + ln + value


def bcd(digits):
    if len(digits) % 2:
        digits += "f"
    return bytes.fromhex(digits)


class EmvApp:
    # Answers command APDUs for one card profile.
    def __init__(self, p):
        aid = bytes.fromhex(p["aid"])
        label = p["label"].encode()
        self.aid = aid
        self.ppse = tlv("6f", tlv("84", b"2PAY.SYS.DDF01") + tlv("a5", tlv("bf0c", tlv(
            "61", tlv("4f", aid) + tlv("50", label) + tlv("87", b"\x01")))))
        # PDOL: TTQ 9F66(4), amount 9F02(6), currency 5F2A(2), UN 9F37(4).
        pdol = bytes.fromhex("9f66049f02065f2a029f3704")
        self.pdol_len = 16
        self.fci = tlv("6f", tlv("84", aid) + tlv("a5", tlv("50", label) + tlv("87", b"\x01") + tlv("9f38", pdol)))
        pan, exp = p["pan"], p["exp"]
        track2 = bcd(pan + "d" + exp[:4] + "201" + "0000000000")
        rec1 = tlv("70", tlv("57", track2) + tlv("5f20", p["name"].encode())
                   + tlv("9f1f", b"0000000000000000000000"))
        rec2 = tlv("70", tlv("5a", bcd(pan)) + tlv("5f24", bytes.fromhex(exp))
                   + tlv("5f25", bytes.fromhex("200101")) + tlv("5f28", b"\x01\x56")
                   + tlv("5f34", b"\x01") + tlv("9f07", b"\xff\x00")
                   + tlv("8e", bytes.fromhex("000000000000000042031e031f03"))
                   + tlv("9f0d", bytes.fromhex("b050ac8800")) + tlv("9f0e", bytes(5))
                   + tlv("9f0f", bytes.fromhex("b070ac9800")) + tlv("9f4a", b"\x82"))
        self.records = {(1, 1): rec1, (1, 2): rec2}
        self.selected = False

    def apdu(self, c):
        if len(c) < 4:
            return b"\x67\x00"
        cla, ins, p1, p2 = c[0], c[1], c[2], c[3]
        if ins == 0xA4 and p1 == 0x04:
            lc = c[4] if len(c) > 4 else 0
            name = bytes(c[5:5 + lc])
            if name == b"2PAY.SYS.DDF01":
                return self.ppse + b"\x90\x00"
            if name == self.aid:
                self.selected = True
                return self.fci + b"\x90\x00"
            return b"\x6a\x82"
        if ins == 0xA8 and cla == 0x80:
            if not self.selected:
                return b"\x69\x85"
            if len(c) < 7 or c[5] != 0x83 or c[6] != self.pdol_len:
                return b"\x67\x00"
            return tlv("77", tlv("82", b"\x20\x00") + tlv("94", b"\x08\x01\x02\x00")) + b"\x90\x00"
        if ins == 0xB2:
            rec = self.records.get((p2 >> 3, p1))
            return rec + b"\x90\x00" if rec else b"\x6a\x83"
        return b"\x6d\x00"


class Card:
    def __init__(self, name):
        p = PROFILES[name]
        self.name = name
        self.p = p
        self.uid = bytes.fromhex(p["uid"])
        self.sak = p.get("sak", 0x20)
        atqa = p.get("atqa", 0x0044 if len(self.uid) == 7 else 0x0004)
        self.atqa = bytes((atqa & 0xFF, atqa >> 8))
        # ATS: TL, T0 = TA TB TC present, FSCI 5 (64 bytes); TA 00 (106 kBd
        # only); TB FWI 7 (38.7 ms), SFGI 0; TC 02 (CID not supported).
        self.ats = None if "sak" in p else bytes.fromhex("0575007002")
        self.app = EmvApp(p) if "aid" in p else None
        self.state = "idle"
        self.gone = False
        self.frames = 0       # ISO 14443-4 frames received
        self.wtx_left = p.get("wtx", 0)
        self._bad_crc_at = p.get("bad_crc_at", -1)

    def _levels(self):
        u = self.uid
        if len(u) == 4:
            return [u]
        return [b"\x88" + u[:3], u[3:7]]

    def receive(self, data, bits):
        # One frame in (bytes as on air, CRC included where sent) -> (bytes,
        # last bits) or None for silence.
        if self.gone:
            return None
        if bits == 7 and len(data) == 1:
            if data[0] == 0x26 and self.state == "idle" or \
                    data[0] == 0x52 and self.state in ("idle", "halt", "ready", "active"):
                self.state = "ready"
                self.level = 0
                return self.atqa, 0
            return None
        if self.state == "ready" and len(data) >= 2 and data[0] in (0x93, 0x95, 0x97):
            lv = self._levels()
            if data[0] != (0x93, 0x95, 0x97)[self.level]:
                return None
            part = lv[self.level]
            bcc = part[0] ^ part[1] ^ part[2] ^ part[3]
            if data[1] == 0x20 and len(data) == 2:
                return part + bytes((bcc,)), 0
            if data[1] == 0x70 and len(data) == 9 and self._crc_ok(data) and data[2:7] == part + bytes((bcc,)):
                self.level += 1
                if self.level < len(lv):
                    return self._crc(bytes((0x04,))), 0
                self.state = "active"
                return self._crc(bytes((self.sak,))), 0
            return None
        if not self._crc_ok(data):
            return None  # a PICC ignores a damaged frame (ISO 14443-4 §7.5.5)
        data = data[:-2]
        if self.state == "active":
            if data == b"\x50\x00":
                self.state = "halt"
                return None
            if data[0] == 0xE0 and self.ats:
                self.fsd = FSD[min(data[1] >> 4, 8)]
                self.state = "t4"
                self.bn = 1              # PICC rule C: block number starts at 1
                self.chain_in = bytearray()
                self.out = b""
                self.last = None
                return self._crc(self.ats), 0
            return None
        if self.state == "t4":
            return self._block(data)
        return None

    def _crc(self, data):
        return data + crc_a(data)

    def _crc_ok(self, data):
        return len(data) >= 3 and crc_a(data[:-2]) == data[-2:]

    def _send(self, block):
        self.last = self._crc(block)
        if self.frames == self._bad_crc_at:  # damage one answer on air
            return self.last[:-1] + bytes((self.last[-1] ^ 0xFF,)), 0
        return self.last, 0

    def _next_chunk(self):
        room = self.fsd - 3
        chunk, self.out = self.out[:room], self.out[room:]
        pcb = 0x02 | self.bn | (0x10 if self.out else 0)
        return self._send(bytes((pcb,)) + chunk)

    def _block(self, d):
        self.frames += 1
        if self.p.get("leave_after", -1) == self.frames:
            self.gone = True    # pulled away while the reader was talking
            return None
        pcb = d[0]
        if pcb & 0xE2 == 0x02:                       # I-block
            self.bn = pcb & 1                        # PICC rule D (toggle = follow the PCD)
            if pcb & 0x10:                           # chained: acknowledge
                self.chain_in += d[1:]
                return self._send(bytes((0xA2 | self.bn,)))
            apdu = bytes(self.chain_in) + d[1:]
            self.chain_in = bytearray()
            self.out = self.app.apdu(apdu)
            if self.wtx_left and apdu[:2] == b"\x80\xa8":  # GPO "takes time"
                self.wtx_left -= 1
                return self._send(b"\xf2\x01")
            return self._next_chunk()
        if pcb & 0xE6 == 0xA2:                       # R-block (b5 = NAK)
            if pcb & 0x10:                           # NAK
                if pcb & 1 == self.bn:
                    return (self.last, 0) if self.last else None
                return self._send(bytes((0xA2 | self.bn,)))
            if pcb & 1 != self.bn:                   # ACK: next chained block
                self.bn ^= 1
                return self._next_chunk()
            return (self.last, 0) if self.last else None
        if pcb == 0xF2 and len(d) == 2:              # WTX answered: the result
            if self.wtx_left:
                self.wtx_left -= 1
                return self._send(b"\xf2\x01")
            return self._next_chunk()
        if pcb == 0xC2:                              # DESELECT
            self.state = "halt"
            return self._crc(b"\xc2"), 0
        return None
