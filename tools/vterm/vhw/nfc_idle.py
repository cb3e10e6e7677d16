# MFRC522 model of an empty field, on the SPI bus until the first `sim tap`:
# the register file as the driver's init and idle poll see it (soft reset
# with PowerDown, every transceive ended by the timer: nobody answers). The
# vterm idles in a small heap and the full model (vhw.nfc: FIFO, CRC, cards)
# costs more; full() puts it on the bus with these registers.
# MFRC522 datasheet Rev 3.9 section numbers as in vhw/nfc.py.

# Register values after reset (register, value) (§9.3): CommandReg RcvOff,
# ComIEnReg, ComIrqReg, WaterLevelReg, ControlReg, ModeReg, TxControlReg
# (antenna off), VersionReg v2.0.
RESET = b"\x01\x20\x02\x80\x04\x14\x0b\x08\x0c\x10\x11\x3f\x14\x80\x37\x92"


def reset_regs(r):
    for i in range(len(r)):
        r[i] = 0
    for i in range(0, len(RESET), 2):
        r[RESET[i]] = RESET[i + 1]


class EmptyField:
    card = None

    def __init__(self, spi, cs):
        self._bus = (spi, cs)      # handed to the full model with the registers
        self.regs = bytearray(64)
        reset_regs(self.regs)
        self._waking = 0           # reads of CommandReg still showing PowerDown=1
        self._mode = 0             # in an SPI frame: 0 address next, 1 read, 2 write
        self._reg = -1
        spi.attach(cs, self)

    def begin(self):
        self._mode = 0

    end = begin

    def xfer(self, b):
        # §8.1.2: an address byte (bit 7 = read, bits 6..1 = register), then
        # data; a read sends the next address with each byte.
        mode = self._mode
        if mode == 0:
            self._mode = 1 if b & 0x80 else 2
            self._reg = (b >> 1) & 0x3F
            return 0
        reg = self._reg
        r = self.regs
        if mode == 1:
            self._reg = (b >> 1) & 0x3F if b & 0x80 else -1
            if reg < 0 or reg == 0x09 or reg == 0x0A:  # the FIFO stays empty
                return 0
            if reg == 0x01 and self._waking:           # §8.8.2 oscillator start-up
                self._waking -= 1
                return r[1] | 0x10
            return r[reg]
        if reg == 0x01 and b & 0x0F == 0x0F:           # SoftReset
            reset_regs(r)
            self._waking = 2
        elif reg == 0x04 or reg == 0x05:               # Set1 bit 7: set, else clear (§9.3.1.5)
            r[reg] = r[reg] | (b & 0x7F) if b & 0x80 else r[reg] & ~b & 0xFF
        elif reg != 0x06 and reg != 0x09 and reg != 0x0A and reg != 0x37:
            r[reg] = b
        if r[1] & 0x0F == 0x0C and r[0x0D] & 0x80:     # Transceive, StartSend
            r[0x0D] &= 0x7F
            r[0x06] = 0
            r[0x04] |= 0x41                            # TxIRq, then TimerIRq: silence

    def full(self):
        # The full model on the bus, in this chip state, for a card to come.
        from vhw.nfc import MFRC522Model
        m = MFRC522Model()
        m.regs[:] = self.regs
        spi, cs = self._bus
        spi.attach(cs, m)
        return m
