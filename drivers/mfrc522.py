# NXP MFRC522 contactless reader over SPI: frame exchange for ISO/IEC 14443-3
# type A activation (drivers/iso14443a.py) and -4 (drivers/iso14443.py).
# Builds on drivers.mfrc522_poll (register access, init, the idle poll) and is
# imported only for a card read. CRC_A is computed and checked by the chip
# (TxCRCEn/RxCRCEn). Every wait is a deadline in milliseconds. References:
# MFRC522 datasheet Rev 3.9 (§ below), ISO/IEC 14443-3:2018 and -4:2018.
from micropython import const

from drivers.mfrc522_poll import INIT, MFRC522Poll  # noqa: F401 (INIT: for tests)
from drivers.nfcerr import NoAnswer, FrameError

# Registers, §9.2 table 20.
_COMIRQ = const(0x04)
_COMMAND = const(0x01)
_ERROR = const(0x06)
_FIFODATA = const(0x09)
_FIFOLEVEL = const(0x0A)
_CONTROL = const(0x0C)
_COLL = const(0x0E)
_VERSION = const(0x37)
_TXCONTROL = const(0x14)
_CMD_IDLE = const(0x00)
# ComIrqReg bits (§9.3.1.5).
_IRQ_RX = const(0x20)
_IRQ_IDLE = const(0x10)
# ErrorReg bits (§9.3.1.7).
_ERR_BUFOVFL = const(0x10)
_ERR_COLL = const(0x08)
_ERR_CRC = const(0x04)
_ERR_PARITY = const(0x02)
_ERR_PROTOCOL = const(0x01)
# ISO 14443-3 REQA / WUPA (§6.3.1).
_REQA = const(0x26)
_WUPA = const(0x52)
_T3 = const(10)              # ms: ISO 14443-3 frames answer within ~0.1 ms


class MFRC522(MFRC522Poll):
    T3_TIMEOUT_MS = _T3

    def __init__(self, spi, cs, rst=None):
        super().__init__(spi, cs, rst)
        self._f = bytearray(7)             # short frames (REQA, HLTA, RATS, SELECT)
        self._buf = bytearray(65)          # SPI FIFO transfers: address + 64 data bytes
        self._mv = memoryview(self._buf)
        self.rx = self._mv[1:]             # received frame lands here
        self.rx_bits = 0                   # valid bits of the last byte, 0 = all 8

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

    def version(self):
        return self._rreg(_VERSION)  # 0x91 = v1.0, 0x92 = v2.0 (§9.3.4.8)

    def antenna(self, on):
        self._wreg(_TXCONTROL, 0x83 if on else 0x80)

    def exchange(self, data, crc=True, timeout_ms=_T3, bits=0):
        # Transceive one frame; returns the byte count in self.rx. `bits` =
        # valid bits of the last byte sent (7 for REQA/WUPA short frames).
        self._setup(crc, timeout_ms)
        self._wreg(_COMMAND, _CMD_IDLE)
        self._wreg(_COMIRQ, 0x7F)
        self._wreg(_FIFOLEVEL, 0x80)       # FlushBuffer
        self._fifo_write(data)
        self._start(bits)
        irq = self._wait(timeout_ms)
        if not irq:
            raise NoAnswer("reader silent for %d ms" % (timeout_ms + 20))
        if not irq & (_IRQ_RX | _IRQ_IDLE):  # the chip's timer: silence on air
            raise NoAnswer("no answer in %d ms" % timeout_ms)
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

    # -- ISO/IEC 14443-3 type A: the request; activation is in iso14443a.py
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
