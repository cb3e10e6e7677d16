# MFRC522 register-level model on the simulated SPI bus, with an RF field
# that holds at most one card (see cards.py). Implements what a driver
# uses: register file, 64-byte FIFO, commands Idle/Transceive/CalcCRC/
# SoftReset, TxCRCEn/RxCRCEn, RxLastBits, ComIrq/Error bits, the timer IRQ
# on silence and on an answer slower than the timer the driver set (TAuto,
# TPrescaler, TReload). MFRC522 datasheet Rev 3.9 section numbers in comments.

_FIFO_MAX = 64

# Register values after reset (register, value) (§9.3): CommandReg RcvOff,
# ComIEnReg, ComIrqReg, WaterLevelReg, ControlReg, ModeReg, TxControlReg
# (antenna off), VersionReg v2.0.
RESET = b"\x01\x20\x02\x80\x04\x14\x0b\x08\x0c\x10\x11\x3f\x14\x80\x37\x92"


def reset_regs(r):
    for i in range(len(r)):
        r[i] = 0
    for i in range(0, len(RESET), 2):
        r[RESET[i]] = RESET[i + 1]


def crc_a(data):
    # CRC_A, ISO/IEC 14443-3 Annex B: preset 6363h, x^16+x^12+x^5+1, LSB first.
    crc = 0x6363
    for b in data:
        b ^= crc & 0xFF
        b = (b ^ (b << 4)) & 0xFF
        crc = ((crc >> 8) ^ (b << 8) ^ (b << 3) ^ (b >> 4)) & 0xFFFF
    return bytes((crc & 0xFF, crc >> 8))


class MFRC522Model:
    def __init__(self):
        self.card = None        # the card in the field, or None
        self.faults = []        # test hooks, one per answered frame: "crc",
        #                         "short", "parity", "drop", "garbage"
        self.frames = 0
        self.log = None         # optional list of (tx bytes, rx bytes or None)
        self.timers = None      # optional list: the timer of each transceive, in us
        self._soft_reset()
        self._mode = None

    def _soft_reset(self):
        self.regs = bytearray(64)
        reset_regs(self.regs)   # RcvOff, antenna off, VersionReg v2.0 (§9.3)
        self.fifo = bytearray()
        self._fi = 0            # read index: MicroPython bytearrays cannot del
        self._waking = 2        # reads of CommandReg showing PowerDown=1

    # -- SPI framing (§8.1.2) -------------------------------------------------
    def begin(self):
        self._mode = None

    def end(self):
        self._mode = None

    def xfer(self, b):
        if self._mode is None:
            self._mode = "r" if b & 0x80 else "w"
            self._reg = (b >> 1) & 0x3F
            return 0
        if self._mode == "r":
            out = self._read(self._reg) if self._reg is not None else 0
            self._reg = (b >> 1) & 0x3F if b & 0x80 else None
            return out
        self._write(self._reg, b)
        return 0

    # -- registers -----------------------------------------------------------
    def _read(self, reg):
        if reg == 0x09:
            if self._fi >= len(self.fifo):
                return 0
            v = self.fifo[self._fi]
            self._fi += 1
            return v
        if reg == 0x0A:
            return len(self.fifo) - self._fi
        if reg == 0x01 and self._waking:
            self._waking -= 1
            return self.regs[1] | 0x10
        return self.regs[reg]

    def _write(self, reg, v):
        r = self.regs
        if reg == 0x01:
            cmd = v & 0x0F
            r[1] = v
            if cmd == 0x0F:
                self._soft_reset()
            elif cmd == 0x03:
                c = crc_a(self.fifo[self._fi:])
                r[0x22], r[0x21] = c[0], c[1]
                r[0x05] |= 0x04  # CRCIRq
            elif cmd == 0x0C and r[0x0D] & 0x80:
                self._transceive()
        elif reg == 0x04 or reg == 0x05:  # Set1 bit 7: set, else clear (§9.3.1.5)
            if v & 0x80:
                r[reg] |= v & 0x7F
            else:
                r[reg] &= ~v & 0xFF
        elif reg == 0x09:
            if len(self.fifo) - self._fi >= _FIFO_MAX:
                r[0x06] |= 0x10  # BufferOvfl
            else:
                self.fifo.append(v)
        elif reg == 0x0A:
            if v & 0x80:
                self.fifo = bytearray()
                self._fi = 0
                r[0x06] &= ~0x10 & 0xFF
        elif reg == 0x0D:
            r[0x0D] = v
            if v & 0x80 and r[1] & 0x0F == 0x0C:
                self._transceive()
        elif reg in (0x06, 0x07, 0x08, 0x37):
            pass  # read-only
        else:
            r[reg] = v

    def _timer_us(self):
        # TAuto: the timer starts at the end of transmission and stops the receiver when it
        # reaches zero; period (TReload + 1) * (2 * TPrescaler + 1) / 13.56 MHz (§8.5). None:
        # no TAuto, the driver waits by itself.
        r = self.regs
        if not r[0x2A] & 0x80:
            return None
        presc = (r[0x2A] & 0x0F) << 8 | r[0x2B]
        return ((r[0x2C] << 8 | r[0x2D]) + 1) * (2 * presc + 1) * 100 // 1356

    # -- RF ----------------------------------------------------------------
    def _transceive(self):
        r = self.regs
        r[0x06] = 0
        data = bytes(self.fifo[self._fi:])
        self.fifo = bytearray()
        self._fi = 0
        bits = r[0x0D] & 7
        r[0x0D] &= 0x7F
        if r[0x12] & 0x80:
            data += crc_a(data)
        self.frames += 1
        resp = None
        card = self.card
        if card is not None and r[0x14] & 0x03:
            resp = card.receive(data, bits)
        timer = self._timer_us()
        if self.timers is not None:
            self.timers.append(timer)
        if resp is not None and timer is not None and getattr(card, "took_us", 0) > timer:
            resp = None          # the card answers after the reader stopped listening
        fault = self.faults.pop(0) if (resp is not None and self.faults) else None
        if self.log is not None:
            self.log.append((data, resp and resp[0]))
        r[0x04] |= 0x40  # TxIRq
        if resp is None or fault == "drop":
            r[0x04] |= 0x01  # the timer ran out: TimerIRq
            return
        out, rbits = resp
        if fault == "crc":
            out = out[:-1] + bytes((out[-1] ^ 0x5A,))
        elif fault == "short":
            out = out[:1]
        elif fault == "garbage":
            out = b"\x5a\xa5\x00"
        if fault == "parity":
            r[0x06] |= 0x02
        if r[0x13] & 0x80 and not rbits:
            if len(out) < 2 or crc_a(out[:-2]) != out[-2:]:
                r[0x06] |= 0x04  # CRCErr; the bytes stay in the FIFO
            else:
                out = out[:-2]
        if len(out) > _FIFO_MAX:
            r[0x06] |= 0x10
            out = out[:_FIFO_MAX]
        self.fifo = bytearray(out)
        self._fi = 0
        r[0x0C] = (r[0x0C] & 0xF8) | rbits
        r[0x04] |= 0x20 | (0x02 if r[0x06] else 0)  # RxIRq, ErrIRq
