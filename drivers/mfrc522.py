# NXP MFRC522 contactless reader over SPI, and ISO/IEC 14443-3 type A card
# activation (REQA/WUPA, anticollision and select for 4/7-byte UIDs, HLTA,
# RATS). CRC_A is computed and checked by the chip (TxCRCEn/RxCRCEn).
# Every wait is a deadline in milliseconds. References: MFRC522 datasheet
# Rev 3.9 (§ below), ISO/IEC 14443-3:2018 and -4:2018.
import time
from micropython import const

from drivers.nfcerr import NoAnswer, FrameError

# Registers, §9.2 table 20.
_COMMAND = const(0x01)
_COMIRQ = const(0x04)
_DIVIRQ = const(0x05)
_ERROR = const(0x06)
_FIFODATA = const(0x09)
_FIFOLEVEL = const(0x0A)
_CONTROL = const(0x0C)
_BITFRAMING = const(0x0D)
_COLL = const(0x0E)
_MODE = const(0x11)
_TXMODE = const(0x12)
_RXMODE = const(0x13)
_TXCONTROL = const(0x14)
_TXASK = const(0x15)
_TMODE = const(0x2A)
_TPRESCALER = const(0x2B)
_TRELOAD_H = const(0x2C)
_TRELOAD_L = const(0x2D)
_VERSION = const(0x37)
# Commands, §10.3 table 149.
_CMD_IDLE = const(0x00)
_CMD_TRANSCEIVE = const(0x0C)
_CMD_SOFTRESET = const(0x0F)
# ComIrqReg bits (§9.3.1.5): writing with Set1=0 clears the bits given.
_IRQ_RX = const(0x20)
_IRQ_IDLE = const(0x10)
_IRQ_ERR = const(0x02)
_IRQ_TIMER = const(0x01)
# ErrorReg bits (§9.3.1.7).
_ERR_BUFOVFL = const(0x10)
_ERR_COLL = const(0x08)
_ERR_CRC = const(0x04)
_ERR_PARITY = const(0x02)
_ERR_PROTOCOL = const(0x01)
# ISO 14443-3 REQA / WUPA (§6.3.1).
_REQA = const(0x26)
_WUPA = const(0x52)

# Timer: TPrescaler 0xA9 gives 13.56 MHz / (2*169+1) = 40 kHz, 25 us a tick
# (§8.5); TReload = ms * 40, at most 0xFFFF (1638 ms).
_TICKS_PER_MS = const(40)
_T3 = const(10)              # ms: ISO 14443-3 frames answer within ~0.1 ms

# Init register values after SoftReset: (register, value) pairs, in order.
INIT = bytes((
    _TMODE, 0x80,          # TAuto: timer starts at the end of transmission
    _TPRESCALER, 0xA9,
    _TRELOAD_H, 0x03,      # 1000 ticks = 25 ms until the first exchange sets it
    _TRELOAD_L, 0xE8,
    _TXASK, 0x40,          # Force100ASK: type A modulation (§9.3.2.6)
    _MODE, 0x3D,           # CRC preset 6363h as ISO 14443-3 §6.2.4 (§9.3.2.2)
    _TXCONTROL, 0x83,      # Tx1RFEn | Tx2RFEn: antenna on (§9.3.2.5)
))


class MFRC522:
    T3_TIMEOUT_MS = _T3

    def __init__(self, spi, cs, rst=None):
        self.spi = spi
        self.cs = cs
        self.rst = rst
        self._r = bytearray(2)
        self._w = bytearray(2)             # register access
        self._f = bytearray(7)             # short frames (REQA, HLTA, RATS, SELECT)
        self._buf = bytearray(65)          # SPI FIFO transfers: address + 64 data bytes
        self._mv = memoryview(self._buf)
        self.rx = self._mv[1:]             # received frame lands here
        self.rx_bits = 0                   # valid bits of the last byte, 0 = all 8
        self._crc = -1                     # cached CRC enable state
        self._tmo = -1                     # cached timer reload
        cs.value(1)

    # -- SPI register access, §8.1.2: address byte = (reg << 1), bit 7 = read
    def _wreg(self, reg, val):
        w = self._w
        w[0] = (reg << 1) & 0x7E
        w[1] = val
        self.cs.value(0)
        self.spi.write(w)
        self.cs.value(1)

    def _rreg(self, reg):
        w = self._w
        w[0] = 0x80 | ((reg << 1) & 0x7E)
        w[1] = 0
        self.cs.value(0)
        self.spi.write_readinto(w, self._r)
        self.cs.value(1)
        return self._r[1]

    def _fifo_write(self, data):
        # §8.1.2.3: one address byte, then data bytes to the same register.
        n = len(data)
        buf = self._buf
        buf[0] = (_FIFODATA << 1) & 0x7E
        buf[1:n + 1] = data
        self.cs.value(0)
        self.spi.write(self._mv[:n + 1])
        self.cs.value(1)

    def _fifo_read(self, n):
        # §8.1.2.2: the address is sent once per byte read, then 00h.
        buf = self._buf
        a = 0x80 | ((_FIFODATA << 1) & 0x7E)
        for i in range(n):
            buf[i] = a
        buf[n] = 0
        mv = self._mv[:n + 1]
        self.cs.value(0)
        self.spi.write_readinto(mv, mv)
        self.cs.value(1)

    # -- chip control -------------------------------------------------------
    def init(self, timeout_ms=50):
        if self.rst is not None:
            self.rst.value(0)
            time.sleep_ms(1)
            self.rst.value(1)
        self._wreg(_COMMAND, _CMD_SOFTRESET)
        # §8.8.2: the oscillator start-up takes a few ms; PowerDown reads 1 until then.
        end = time.ticks_add(time.ticks_ms(), timeout_ms)
        while self._rreg(_COMMAND) & 0x10:
            if time.ticks_diff(end, time.ticks_ms()) < 0:
                raise NoAnswer("MFRC522 did not leave soft reset in %d ms" % timeout_ms)
            time.sleep_ms(1)
        for i in range(0, len(INIT), 2):
            self._wreg(INIT[i], INIT[i + 1])
        self._crc = self._tmo = -1
        return self.version()

    def version(self):
        return self._rreg(_VERSION)  # 0x91 = v1.0, 0x92 = v2.0 (§9.3.4.8)

    def antenna(self, on):
        self._wreg(_TXCONTROL, 0x83 if on else 0x80)

    def _setup(self, crc, timeout_ms):
        if crc != self._crc:
            v = 0x80 if crc else 0x00  # TxCRCEn / RxCRCEn, 106 kBd (§9.3.2.3, §9.3.2.4)
            self._wreg(_TXMODE, v)
            self._wreg(_RXMODE, v)
            self._crc = crc
        t = min(timeout_ms * _TICKS_PER_MS, 0xFFFF)
        if t != self._tmo:
            self._wreg(_TRELOAD_H, t >> 8)
            self._wreg(_TRELOAD_L, t & 0xFF)
            self._tmo = t

    def exchange(self, data, crc=True, timeout_ms=_T3, bits=0):
        # Transceive one frame; returns the byte count in self.rx. `bits` =
        # valid bits of the last byte sent (7 for REQA/WUPA short frames).
        self._setup(crc, timeout_ms)
        self._wreg(_COMMAND, _CMD_IDLE)
        self._wreg(_COMIRQ, 0x7F)
        self._wreg(_FIFOLEVEL, 0x80)       # FlushBuffer
        self._fifo_write(data)
        self._wreg(_COMMAND, _CMD_TRANSCEIVE)
        self._wreg(_BITFRAMING, 0x80 | (bits & 7))  # StartSend
        # The chip's timer ends a silent exchange; the host deadline (a bit
        # longer) covers a chip that stopped answering on the bus.
        end = time.ticks_add(time.ticks_ms(), timeout_ms + 20)
        while True:
            irq = self._rreg(_COMIRQ)
            if irq & (_IRQ_RX | _IRQ_IDLE):
                break
            if irq & _IRQ_TIMER:
                self._wreg(_BITFRAMING, 0)
                raise NoAnswer("no answer in %d ms" % timeout_ms)
            if time.ticks_diff(end, time.ticks_ms()) < 0:
                self._wreg(_COMMAND, _CMD_IDLE)
                raise NoAnswer("reader silent for %d ms" % (timeout_ms + 20))
        self._wreg(_BITFRAMING, 0)
        err = self._rreg(_ERROR)
        n = self._rreg(_FIFOLEVEL) & 0x7F
        if n > 64:
            n = 64
        self.rx_bits = self._rreg(_CONTROL) & 7
        if n:
            self._fifo_read(n)
        if err & _ERR_COLL:
            raise FrameError("collision, CollReg %02x" % self._rreg(_COLL))
        if err & (_ERR_BUFOVFL | _ERR_PARITY | _ERR_PROTOCOL):
            raise FrameError("error register %02x" % err, self.rx[:n])
        if err & _ERR_CRC:
            raise FrameError("CRC_A", self.rx[:n])
        return n

    # -- ISO/IEC 14443-3 type A: the poll; activation is in iso14443a.py
    def request(self, wake=False):
        # REQA (idle cards) or WUPA (idle and halted), 7-bit short frame
        # (§6.3.1). Returns ATQA as an int (LSB first on air) or None.
        self._f[0] = _WUPA if wake else _REQA
        try:
            n = self.exchange(memoryview(self._f)[:1], False, _T3, 7)
        except NoAnswer:
            return None
        except FrameError:
            return 0xFFFF  # several cards answered (collision): a card is there
        if n != 2 or self.rx_bits:
            raise FrameError("ATQA length", self.rx[:n])
        return self.rx[0] | (self.rx[1] << 8)
