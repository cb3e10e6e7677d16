# The vterm board's parts built on first use (firmware/boards/vterm.py): the
# simulated-input hooks (the module vhw.sim as it is), the modem, the WLAN
# and the scanner. Their device models run in the vterm process
# (roampos.vterm.hw), as the panel's and reader's do, behind the UART and
# WLAN below (vhw.wire's socket): UART 1 the modem (PWRKEY on pin 21),
# UART 2 the scanner. Here, not in vhw.wire, because each class and
# function costs heap (~100 B each) from import on and every module a few
# interned names: vhw.wire is resident from boot, this module is imported
# on first use.

from vhw import wire


def build(board, name):
    if name == "sim":
        from vhw import sim
        return sim
    if name == "scanner":
        from drivers.gm65 import GM65
        return GM65(UART(2, 9600))
    if name == "modem":
        from drivers.sim7600 import SIM7600
        return SIM7600(UART(1, 115200), wire.Pin(21, wire.Pin.OUT, value=1))  # PWRKEY
    if name == "wlan":
        return WLAN()
    raise AttributeError(name)


class UART:
    # machine.UART to a device in the vterm. write goes one way; when
    # nothing is buffered here, any() and read fetch all the device has
    # sent (up to 1 KB, as a board's rxbuf) in one round trip. read with
    # nothing there gives None, as a UART read that times out.
    def __init__(self, id, baudrate=0, **kw):
        self.id = id
        self.buf = b""
        self.pos = 0

    def any(self):
        n = len(self.buf) - self.pos
        if not n:
            a = wire.send(117, self.id, b"", 2)  # "u"
            n = a[0] | a[1] << 8
            self.buf, self.pos = b"", 0  # what take() cannot hold is lost, as a UART overrun
            self.buf = wire.take(n)
        return n

    def read(self, n=-1):
        k = self.any()
        if not k:
            return None
        if 0 <= n < k:
            k = n
        p = self.pos
        self.pos = p + k
        return self.buf[p:p + k]

    def readinto(self, buf, n=-1):
        k = self.any()
        if not k:
            return None
        if n < 0 or n > len(buf):
            n = len(buf)
        if n < k:
            k = n
        p = self.pos
        b = self.buf
        for i in range(k):  # no allocation: the AT engine reads byte by byte
            buf[i] = b[p + i]
        self.pos = p + k
        return k

    def write(self, buf):
        if isinstance(buf, str):
            buf = buf.encode()
        wire.send(119, self.id, buf)  # "w"
        return len(buf)


class WLAN:
    # network.WLAN, the station of the vterm's radio world: each method call
    # is one request with its arguments' repr; the answer is the result's
    # repr (bytes stay bytes; MicroPython has no literal_eval, and the
    # answer comes from the vterm process over its private socket: this
    # module exists on the vterm only). An error (e.g. status("rssi") while
    # not associated) comes back as ValueError.
    def __getattr__(self, name):
        return lambda *a: eval(wire.ask("wlan %s %r" % (name, a)))
