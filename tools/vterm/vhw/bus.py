# Simulated Pin, SPI and I2C with the method names of MicroPython's machine
# module (UART is in vhw.uart), so that the drivers in drivers/ run
# unchanged on the vterm. Device models plug in behind them.


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1

    # Model hooks, set on the pins a model uses; class defaults so that a pin
    # instance holds only what it needs (the vterm idles in a small heap).
    _read = None                 # model callback for an input: (pin) -> 0/1
    on_change = None             # model callback for an output: (v) -> None

    def __init__(self, id=None, mode=-1, pull=-1, value=1):
        self.id = id
        self._v = 1 if value else 0

    def value(self, v=None):
        if v is None:
            return self._read(self) if self._read is not None else self._v
        v = 1 if v else 0
        if v != self._v:
            self._v = v
            if self.on_change is not None:
                self.on_change(v)

    __call__ = value

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class SPI:
    # Full duplex: each byte out gives one byte in from the device whose chip
    # select is low. Devices: begin(), xfer(byte) -> byte, end().
    def __init__(self, id=0, baudrate=1000000, **kw):
        self.baudrate = baudrate
        self._sel = None

    def attach(self, cs, device):
        def change(v, dev=device):
            if v == 0:
                self._sel = dev
                dev.begin()
            elif self._sel is dev:
                dev.end()
                self._sel = None
        cs.on_change = change

    def write(self, buf):
        d = self._sel
        for b in buf:
            if d is not None:
                d.xfer(b)

    def readinto(self, buf, write=0x00):
        d = self._sel
        for i in range(len(buf)):
            buf[i] = d.xfer(write) if d is not None else 0xFF  # MISO floats high

    def write_readinto(self, wbuf, rbuf):
        d = self._sel
        for i in range(len(wbuf)):
            rbuf[i] = d.xfer(wbuf[i]) if d is not None else 0xFF


class I2C:
    # Devices: i2c_write(vector) for one START..STOP write transaction. A
    # missing address raises OSError(ENODEV) as the ports do.
    def __init__(self, id=0, **kw):
        self._devs = {}
        self.log = None  # optional list of (addr, bytes) of every write

    def attach(self, addr, device):
        self._devs[addr] = device

    def scan(self):
        return sorted(self._devs)

    def writevto(self, addr, vector, stop=True):
        d = self._devs.get(addr)
        if d is None:
            raise OSError(19)  # ENODEV: no ACK from the address
        if self.log is not None:
            self.log.append((addr, b"".join(bytes(v) for v in vector)))
        d.i2c_write(vector)
        return sum(len(v) for v in vector)

    def writeto(self, addr, buf, stop=True):
        return self.writevto(addr, (buf,), stop)
