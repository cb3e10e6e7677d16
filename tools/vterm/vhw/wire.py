# The vterm's buses as the firmware sees them: Pin and Bus (SPI and I2C)
# with the method names of MicroPython's `machine` that the drivers use,
# whose devices (the vhw models) run in the vterm process
# (roampos.vterm.hw), not in this heap: on a board they are chips, and the
# heap the firmware idles in is its own. The UART and WLAN on the same
# socket, which idle does not use, are in firmware/boards/vterm_extra.py.
# Frames on a Unix socket: op, id, 16-bit length (little endian), payload.
# Writes go one way; a read (SPI, I2C ACK, UART, sim request) waits for its
# answer (~30 us). The keypad's lines (Key) use memory shared with the
# vterm instead: byte 0 holds the rows this side drives low, byte 1 + rows
# the column levels the vterm computed for that pattern, so a 5 ms scan
# costs no round trip. Names are few and short: each one is interned for
# good, and each class and function costs heap.
import socket
import struct

_s = None     # the socket to the vterm
_m = None     # the shared page (uctypes.bytearray_at)
_h = bytearray(4)
_a = bytearray(2)  # a short answer (a level, an ACK, a length): read with no allocation
cost = 0      # heap this module and its connection took (set by vhw._mount)


def connect(path, mem):
    # By vhw._mount(), before / becomes the flash. mem: "address:size".
    global _s, _m
    import uctypes

    _s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    _s.connect(struct.pack("<H", socket.AF_UNIX) + path.encode() + b"\0")
    a, n = mem.split(":")
    _m = uctypes.bytearray_at(int(a), int(n))


def send(op, id, data=b"", n=-1):
    # One frame; data may be a memoryview. n: answer bytes to wait for, at
    # most 2, returned in the shared _a (read it at once). Nothing between
    # the request and its answer allocates: a MemoryError there would leave
    # the answer in the socket, and every later answer one request behind.
    h = _h
    h[0] = op
    h[1] = id
    struct.pack_into("<H", h, 2, len(data))
    _s.write(h)
    if data:
        _s.write(data)
    if n > 0:
        _s.readinto(_a, n)
    return _a


def take(n):
    # The n bytes of an answer whose length came first (send(..., 2)). If
    # there is no memory for them they are still read, and dropped: the
    # stream stays in step, and the MemoryError goes to the caller.
    try:
        return _s.read(n) if n else b""
    except MemoryError:
        while n:
            n -= _s.readinto(_h, n if n < 4 else 4)
        raise


def ask(text):
    # A request to the simulation's side in the vterm (vhw.sim): text in;
    # out a 16-bit length, a status byte, bytes (the answer, or the error).
    a = send(99, 0, text.encode(), 2)  # "c"
    out = take(a[0] | a[1] << 8)
    if out[0]:
        raise ValueError(out[1:].decode())
    return out[1:]


class Pin:
    # A line to a device (chip select, reset): writes only, as the drivers
    # use them; a read asks the vterm.
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            return send(114, self.id, b"", 1)[0]  # "r"
        send(112, self.id, b"\x01" if v else b"\x00")  # "p"

    __call__ = value


class Key(Pin):
    # A keypad matrix line: row i (open drain, driven by the scan) is bit i
    # of shared byte 0; column j (input, pull-up) reads bit j of the levels
    # the vterm computed for the driven rows (id 16 << j).
    def __init__(self, id):
        self.id = id

    def value(self, v=None):
        m = _m
        b = self.id
        if b > 15:
            return 1 if m[1 + (m[0] & 15)] & b >> 4 else 0
        if v is None:
            return 0 if m[0] & b else 1
        m[0] = m[0] & ~b if v else m[0] | b

    __call__ = value


class Bus:
    # SPI (write, write_readinto: full duplex with the device whose chip
    # select is low) and I2C (writevto: one START..STOP write, answered by
    # the ACK or ENODEV) in one class: each class costs heap.
    def __init__(self, id=0, baudrate=0, **kw):
        self.id = id
        self.baudrate = baudrate

    def write(self, buf):
        send(115, self.id, buf)  # "s"

    def write_readinto(self, wbuf, rbuf):
        send(120, self.id, wbuf, 0)  # "x"
        _s.readinto(rbuf, len(wbuf))

    def writevto(self, addr, vector, stop=True):
        n = 0
        for v in vector:
            n += len(v)
        h = _h
        h[0] = 105  # "i"
        h[1] = addr
        struct.pack_into("<H", h, 2, n)
        _s.write(h)
        for v in vector:
            _s.write(v)
        _s.readinto(_a, 1)
        if _a[0]:
            raise OSError(19)  # ENODEV: no ACK from the address
        return n

