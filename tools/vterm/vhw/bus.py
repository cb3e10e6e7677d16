# Simulated Pin, SPI, I2C and UART with the method names of MicroPython's
# machine module, so that the drivers in drivers/ run unchanged on the vterm.
# Device models plug in behind them (see oled.py, nfc.py, modem.py, ...).
import errno


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 2
    IRQ_RISING = 1

    def __init__(self, id=None, mode=-1, pull=-1, value=None, read=None):
        self.id = id
        self.mode = mode
        self.pull = pull
        self._v = 1 if value is None else (1 if value else 0)
        self._read = read        # model callback for an input: () -> 0/1
        self.on_change = None    # model callback for an output: (v) -> None

    def init(self, mode=-1, pull=-1, value=None):
        if mode != -1:
            self.mode = mode
        if pull != -1:
            self.pull = pull
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            return self._read() if self._read is not None else self._v
        v = 1 if v else 0
        changed = v != self._v
        self._v = v
        if changed and self.on_change is not None:
            self.on_change(v)
        return None

    __call__ = value

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=3):
        return None  # polling drivers only on the vterm


class SPI:
    # Full duplex: each byte out gives one byte in from the device whose chip
    # select is low (one device at a time, as on a real shared bus).
    MSB = 0

    def __init__(self, id=0, baudrate=1000000, **kw):
        self.baudrate = baudrate
        self._sel = None

    def init(self, baudrate=1000000, **kw):
        self.baudrate = baudrate

    def deinit(self):
        pass

    def attach(self, cs, device):
        # device: begin(), xfer(byte) -> byte, end(); driven by the CS pin.
        def change(v, dev=device):
            if v == 0:
                self._sel = dev
                dev.begin()
            elif self._sel is dev:
                dev.end()
                self._sel = None
        cs.on_change = change

    def _x(self, b):
        d = self._sel
        return d.xfer(b) if d is not None else 0xFF  # MISO floats high

    def write(self, buf):
        for b in buf:
            self._x(b)

    def read(self, n, write=0x00):
        buf = bytearray(n)
        self.readinto(buf, write)
        return bytes(buf)

    def readinto(self, buf, write=0x00):
        for i in range(len(buf)):
            buf[i] = self._x(write)

    def write_readinto(self, wbuf, rbuf):
        for i in range(len(wbuf)):
            rbuf[i] = self._x(wbuf[i])


class I2C:
    # Devices: i2c_write(list_of_buffers) for one START..STOP transaction,
    # i2c_read(n) -> bytes. A missing address raises ENODEV as ports do.
    def __init__(self, id=0, **kw):
        self._devs = {}
        self.log = None  # optional list: (addr, bytes) of every write

    def attach(self, addr, device):
        self._devs[addr] = device

    def scan(self):
        return sorted(self._devs)

    def _dev(self, addr):
        d = self._devs.get(addr)
        if d is None:
            raise OSError(errno.ENODEV)
        return d

    def writeto(self, addr, buf, stop=True):
        self.writevto(addr, (buf,), stop)
        return len(buf)

    def writevto(self, addr, vector, stop=True):
        d = self._dev(addr)
        if self.log is not None:
            self.log.append((addr, b"".join(bytes(v) for v in vector)))
        d.i2c_write(vector)
        return sum(len(v) for v in vector)

    def readfrom_into(self, addr, buf, stop=True):
        data = self._dev(addr).i2c_read(len(buf))
        buf[:len(data)] = data

    def readfrom(self, addr, n, stop=True):
        return bytes(self._dev(addr).i2c_read(n))


class UART:
    # Byte pipe to a model: model.rx(data) takes what the driver writes;
    # model.tx() -> bytes gives what the device sends (polled on every read).
    def __init__(self, id=0, baudrate=115200, model=None, **kw):
        self.baudrate = baudrate
        self.model = model
        self._in = bytearray()

    def init(self, baudrate=115200, **kw):
        self.baudrate = baudrate

    def _pull(self):
        if self.model is not None:
            data = self.model.tx()
            if data:
                self._in += data

    def any(self):
        self._pull()
        return len(self._in)

    def read(self, n=-1):
        self._pull()
        if not self._in:
            return None  # a real UART read times out with None
        if n < 0 or n > len(self._in):
            n = len(self._in)
        data = bytes(self._in[:n])
        del self._in[:n]
        return data

    def readinto(self, buf, n=-1):
        data = self.read(len(buf) if n < 0 else n)
        if not data:
            return None
        buf[:len(data)] = data
        return len(data)

    def readline(self):
        self._pull()
        i = self._in.find(b"\n")
        return self.read(i + 1 if i >= 0 else -1)

    def write(self, buf):
        if self.model is not None:
            self.model.rx(bytes(buf))
        return len(buf)

    def flush(self):
        pass
