# ISO/IEC 14443-4 (T=CL) half-duplex block protocol over any reader that
# offers exchange(frame, crc, timeout_ms) -> n bytes in reader.rx:
# I-blocks with chaining both ways, R(ACK)/R(NAK), S(WTX), S(DESELECT), and
# the error recovery rules of §7.5.4, every wait bounded in milliseconds.
from micropython import const

from drivers.nfcerr import NoAnswer, FrameError, CardRemoved
import time

# PCB coding, ISO 14443-4 §7.1.1.
_I_BLOCK = const(0x02)
_R_BLOCK = const(0xA2)
_S_BLOCK = const(0xC2)
_CHAINING = const(0x10)
_NAK = const(0x10)
_WTX = const(0x30)          # S-block bits 5-4 = 11: WTX; 00: DESELECT
_BN = const(0x01)
_TRIES = const(3)           # a frame and two retransmissions (§7.5.4.2)
_FWT_MAX_MS = const(4955)   # FWTmax (FWI 14) = 4949 ms: also the cap of FWT * WTXM (§7.3)

FSC = (16, 24, 32, 40, 48, 64, 96, 128, 256)  # FSCI -> bytes, §5.2.3 table 1


def parse_ats(ats):
    # ATS (§5.2): TL T0 [TA] [TB] [TC] hist. Returns (fsc, fwi, sfgi).
    fsci, fwi, sfgi = 2, 4, 0         # defaults when the bytes are absent (§5.2.3, §5.2.5)
    if len(ats) >= 2:
        t0 = ats[1]
        fsci = t0 & 0x0F
        i = 2 + (1 if t0 & 0x10 else 0)   # skip TA
        if t0 & 0x20 and i < len(ats):
            fwi, sfgi = ats[i] >> 4, ats[i] & 0x0F
    if fsci > 8:
        fsci = 8                       # RFU values mean 256 (§5.2.3)
    if fwi > 14:
        fwi = 4                        # 15 is RFU: use the default
    if sfgi > 14:
        sfgi = 0                       # likewise
    return FSC[fsci], fwi, sfgi


class T4:
    def __init__(self, reader, ats, fsd=64, total_ms=5000):
        self.r = reader
        fsc, fwi, sfgi = parse_ats(ats)
        self.fsc = min(fsc, 64)        # the reader's FIFO holds 64 bytes
        self.fsd = fsd
        # FWT = 256 * 16 / fc * 2^FWI (§7.2) = 302 us * 2^FWI, plus margin.
        self.fwt_ms = (302 * (1 << fwi)) // 1000 + 5
        self.total_ms = total_ms
        self.bn = 0
        self._tx = bytearray(64)
        self._resp = bytearray(258)    # response APDU: 256 data + SW1 SW2
        self.retries = 0               # statistics for tests and status
        self._nak = bytearray(1)       # allocated once: _block runs for every block
        self._wtx = bytearray(2)
        self._frame = memoryview(self._tx)
        if sfgi:                       # SFGT = 302 us * 2^SFGI: the card listens after it (§5.2.5)
            time.sleep_us(302 << sfgi)

    def transceive(self, apdu):
        # Command APDU -> response APDU (bytes, SW1 SW2 at the end).
        apdu = memoryview(apdu)
        room = self.fsc - 3             # PCB + CRC_A
        off = 0
        while True:
            chunk = len(apdu) - off
            more = chunk > room
            if more:
                chunk = room
            tx = self._tx
            tx[0] = _I_BLOCK | (_CHAINING if more else 0) | self.bn
            tx[1:1 + chunk] = apdu[off:off + chunk]
            m = self._block(1 + chunk)
            rx = self.r.rx
            pcb = rx[0]
            if more:
                # §7.5.3.2: a chained I-block is acknowledged by R(ACK), same bn.
                if pcb & 0xF6 != _R_BLOCK or pcb & _NAK or (pcb & _BN) != self.bn:
                    raise FrameError("expected R(ACK) %d, got %02x" % (self.bn, pcb))
                self.bn ^= 1
                off += chunk
                continue
            break
        # Receive the response, acknowledging the card's chained blocks.
        resp = self._resp
        got = 0
        while True:
            rx = self.r.rx
            pcb = rx[0]
            if pcb & 0xE2 != _I_BLOCK:
                raise FrameError("expected I-block, got %02x" % pcb)
            if (pcb & _BN) != self.bn:
                raise FrameError("block number %d, expected %d" % (pcb & _BN, self.bn))
            self.bn ^= 1
            part = m - 1
            if got + part > len(resp):
                raise FrameError("response longer than %d" % len(resp))
            resp[got:got + part] = rx[1:m]
            got += part
            if not pcb & _CHAINING:
                break
            tx = self._tx
            tx[0] = _R_BLOCK | self.bn      # R(ACK) asks for the next block
            m = self._block(1)
        if got < 2:
            raise FrameError("response APDU without status word", resp[:got])
        return bytes(resp[:got])

    def _block(self, n):
        # Send _tx[:n]; on timeout or damaged answer send R(NAK) and wait for
        # the card to repeat (§7.5.4.2 rules 4, 6); follow S(WTX) (§7.3).
        end = time.ticks_add(time.ticks_ms(), self.total_ms)
        frame = self._frame[:n]
        nak = self._nak
        wtx = self._wtx
        out = frame
        timeout = self.fwt_ms
        errors = 0
        while True:
            if time.ticks_diff(end, time.ticks_ms()) < 0:
                raise CardRemoved("exchange took over %d ms" % self.total_ms)
            try:
                m = self.r.exchange(out, True, timeout)
            except (NoAnswer, FrameError) as e:
                errors += 1
                self.retries += 1
                if errors >= _TRIES:
                    if isinstance(e, NoAnswer):
                        raise CardRemoved("card gone: no answer to %d tries" % errors)
                    raise
                nak[0] = _R_BLOCK | _NAK | self.bn
                out = nak
                timeout = self.fwt_ms
                continue
            if m < 1:
                raise FrameError("empty block")
            pcb = self.r.rx[0]
            if pcb & 0xF7 == 0xF2:     # S(WTX), §7.3
                if m < 2:
                    raise FrameError("S(WTX) without WTXM", self.r.rx[:m])
                wtxm = self.r.rx[1] & 0x3F
                if not 1 <= wtxm <= 59:
                    raise FrameError("WTXM %d out of 1..59" % wtxm)
                wtx[0], wtx[1] = 0xF2, wtxm
                out = wtx
                timeout = min(self.fwt_ms * wtxm, _FWT_MAX_MS)
                continue
            if pcb & 0xF6 == _R_BLOCK and out is nak and not (pcb & _NAK) \
                    and (pcb & _BN) != self.bn:
                # §7.5.4.2 rule 6: R(ACK) with the other block number answers our
                # NAK when the card missed our I-block: send it again.
                out = frame
                continue
            return m

    def deselect(self):
        # S(DESELECT) (§8): the card answers S(DESELECT) and goes to HALT.
        self._tx[0] = _S_BLOCK
        try:
            self.r.exchange(memoryview(self._tx)[:1], True, self.fwt_ms)
            return True
        except (NoAnswer, FrameError):
            return False
