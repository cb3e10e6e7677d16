# NXP MFRC522 at idle: register access over SPI, chip reset and init, and the
# card-presence poll (one REQA). Small on purpose: it stays loaded while the
# terminal idles; drivers.mfrc522 (frame exchange, ISO 14443-3 errors) builds
# on it and is imported only when a card answers. MFRC522 datasheet Rev 3.9
# (§ below), ISO/IEC 14443-3:2018.
import time
from micropython import const

# Registers, §9.2 table 20.
_COMMAND = const(0x01)
_COMIRQ = const(0x04)
_ERROR = const(0x06)
_FIFODATA = const(0x09)
_FIFOLEVEL = const(0x0A)
_CONTROL = const(0x0C)
_BITFRAMING = const(0x0D)
_TXMODE = const(0x12)
_RXMODE = const(0x13)
_TMODE = const(0x2A)
_TPRESCALER = const(0x2B)
_TRELOAD_H = const(0x2C)
_TRELOAD_L = const(0x2D)
_VERSION = const(0x37)
# Commands, §10.3 table 149.
_CMD_IDLE = const(0x00)
_CMD_TRANSCEIVE = const(0x0C)
_CMD_SOFTRESET = const(0x0F)
# ComIrqReg bits (§9.3.1.5).
_IRQ_RX = const(0x20)
_IRQ_IDLE = const(0x10)
_IRQ_TIMER = const(0x01)
_ERR_FRAME = const(0x1F)     # ErrorReg: any error in the answer (§9.3.1.7)
_REQA = const(0x26)          # ISO 14443-3 §6.3.1
_TICKS_PER_MS = const(40)    # timer tick 25 us, see INIT
_T3 = const(10)              # ms: ISO 14443-3 frames answer within ~0.1 ms

# Init register values after SoftReset: (register, value) pairs, in order.
# One bytes constant (a tuple would stay in the heap as well).
INIT = (
    b"\x2a\x80"   # TModeReg: TAuto, the timer starts at the end of transmission
    b"\x2b\xa9"   # TPrescalerReg: 13.56 MHz / (2*169+1) = 40 kHz, 25 us a tick (§8.5)
    b"\x2c\x03"   # TReloadReg high: 1000 ticks = 25 ms until the first exchange sets it
    b"\x2d\xe8"   # TReloadReg low
    b"\x15\x40"   # TxASKReg: Force100ASK, type A modulation (§9.3.2.6)
    b"\x11\x3d"   # ModeReg: CRC preset 6363h as ISO 14443-3 §6.2.4 (§9.3.2.2)
    b"\x14\x83"   # TxControlReg: Tx1RFEn | Tx2RFEn, antenna on (§9.3.2.5)
)


class MFRC522Poll:
    def __init__(self, spi, cs, rst=None):
        self.spi = spi
        self.cs = cs
        self.rst = rst
        self._r = bytearray(2)
        self._w = bytearray(2)             # register access
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
                from drivers.nfcerr import NoAnswer
                raise NoAnswer("MFRC522 did not leave soft reset in %d ms" % timeout_ms)
            time.sleep_ms(1)
        for i in range(0, len(INIT), 2):
            self._wreg(INIT[i], INIT[i + 1])
        self._crc = self._tmo = -1
        return self._rreg(_VERSION)  # 0x91 = v1.0, 0x92 = v2.0 (§9.3.4.8)

    def _setup(self, crc, timeout_ms):
        if crc != self._crc:
            v = 0x80 if crc else 0x00  # TxCRCEn / RxCRCEn, 106 kBd (§9.3.2.3, §9.3.2.4)
            self._wreg(_TXMODE, v)
            self._wreg(_RXMODE, v)
            self._crc = crc
        # 25 us ticks (TPrescaler 0x0A9) up to 1638 ms; beyond, 200 us ticks
        # (TPrescaler 0x54C: 13.56 MHz / 2713 = 4998 Hz, 200.07 us), up to 13 s (section 8.5).
        if timeout_ms * _TICKS_PER_MS <= 0xFFFF:
            p, t = 0x0A9, timeout_ms * _TICKS_PER_MS
        else:
            p, t = 0x54C, min(timeout_ms * 5, 0xFFFF)
        if (p << 16 | t) != self._tmo:
            self._wreg(_TMODE, 0x80 | (p >> 8))     # TAuto | TPrescaler_Hi
            self._wreg(_TPRESCALER, p & 0xFF)
            self._wreg(_TRELOAD_H, t >> 8)
            self._wreg(_TRELOAD_L, t & 0xFF)
            self._tmo = p << 16 | t

    def _start(self, bits):
        # Transceive what is in the FIFO; `bits` = valid bits of the last byte.
        self._wreg(_COMMAND, _CMD_TRANSCEIVE)
        self._wreg(_BITFRAMING, 0x80 | (bits & 7))  # StartSend

    def _wait(self, timeout_ms):
        # ComIrqReg once the frame is answered or the chip's timer ran out
        # (the transmission stopped then), 0 if the chip itself went silent:
        # the host deadline is a bit longer than the chip's timer.
        end = time.ticks_add(time.ticks_ms(), timeout_ms + 20)
        while True:
            irq = self._rreg(_COMIRQ)
            if irq & (_IRQ_RX | _IRQ_IDLE | _IRQ_TIMER):
                self._wreg(_BITFRAMING, 0)
                return irq
            if time.ticks_diff(end, time.ticks_ms()) < 0:
                self._wreg(_COMMAND, _CMD_IDLE)
                return 0

    def poll(self):
        # Is a card in the field? One REQA: the ATQA as an int (LSB first on
        # air), 0xFFFF when several cards answered at once, or None. A damaged
        # answer counts as no card this time: the next poll asks again.
        # REQA is a 7-bit short frame (ISO 14443-3 §6.3.1), CRC off.
        self._setup(False, _T3)
        self._wreg(_COMMAND, _CMD_IDLE)
        self._wreg(_COMIRQ, 0x7F)
        self._wreg(_FIFOLEVEL, 0x80)       # FlushBuffer
        self._wreg(_FIFODATA, _REQA)
        self._start(7)
        irq = self._wait(_T3)
        if not irq & (_IRQ_RX | _IRQ_IDLE):
            return None
        if self._rreg(_ERROR) & _ERR_FRAME:  # e.g. a collision: a card is there
            return 0xFFFF
        if self._rreg(_FIFOLEVEL) != 2 or self._rreg(_CONTROL) & 7:
            return None
        return self._rreg(_FIFODATA) | (self._rreg(_FIFODATA) << 8)

    def driver(self):
        # The full driver on the same bus and chip, for one card read: it
        # is imported now (firmware.tap drops it again after the read).
        from drivers.mfrc522 import MFRC522
        self._crc = self._tmo = -1  # it changes the chip's settings: poll sets them again
        return MFRC522(self.spi, self.cs, self.rst)
