# The real boards' modules build their buses and drivers from their pin maps.
# A recording stand-in for `machine` takes the port's place, as the boards
# cannot run here; it checks the MicroPython API calls the boards make.
import sys

CALLS = []


class _Bus:
    def __init__(self, *args, **kw):
        CALLS.append((type(self).__name__, args, kw))

    def writevto(self, addr, vector):
        return True

    def writeto(self, addr, buf):
        return len(buf)

    def write(self, buf):
        return len(buf)

    def write_readinto(self, out, into):
        for i in range(len(into)):
            into[i] = 0


class I2C(_Bus):
    pass


class SPI(_Bus):
    pass


class UART(_Bus):
    def any(self):
        return 0

    def read(self, n=-1):
        return None


class Pin:
    IN, OUT, OPEN_DRAIN, PULL_UP = 0, 1, 2, 3

    def __init__(self, n, mode=-1, pull=-1, value=None):
        self.n = n
        self.v = 1 if value is None else value

    def __call__(self, v=None):
        if v is None:
            return self.v
        self.v = v

    def value(self, v=None):
        return self(v)

    def __eq__(self, other):
        return isinstance(other, Pin) and other.n == self.n


class _Machine:
    I2C, SPI, UART, Pin = I2C, SPI, UART, Pin

    @staticmethod
    def reset():
        raise SystemExit("reset")


def _board(name):
    sys.modules["machine"] = _Machine
    for m in ("firmware.boards.devboard", "firmware.boards." + name):
        sys.modules.pop(m, None)
    del CALLS[:]
    mod = __import__("firmware.boards." + name, None, None, ("Board",))
    return mod.Board()


def _bus(kind):
    return [c for c in CALLS if c[0] == kind]


def test_esp32s3_builds_its_buses_from_its_pin_map():
    b = _board("esp32s3")
    assert b.name == "esp32s3" and not b.ctrl_c_is_byte
    (_, args, kw), = _bus("I2C")
    assert args == (0,) and kw["sda"] == Pin(8) and kw["scl"] == Pin(9) and kw["freq"] == 400000
    (_, args, kw), = _bus("SPI")
    assert args == (2,) and kw["sck"] == Pin(12) and kw["mosi"] == Pin(11) and kw["miso"] == Pin(13)
    assert [p.n for p in b.keypad.rows] == [38, 39, 40, 41]
    assert [p.n for p in b.keypad.cols] == [1, 2, 42, 47]
    assert not _bus("UART")  # modem and scanner only on first use
    b.scanner
    (_, args, kw), = _bus("UART")
    assert args == (2, 9600) and kw["tx"] == Pin(4) and kw["rx"] == Pin(5)


def test_rp2_builds_its_buses_from_its_pin_map():
    b = _board("rp2")
    assert b.name == "rp2"
    (_, args, kw), = _bus("I2C")
    assert args == (0,) and kw["sda"] == Pin(4) and kw["scl"] == Pin(5)
    (_, args, kw), = _bus("SPI")
    assert args == (0,) and kw["sck"] == Pin(18) and kw["miso"] == Pin(16)
    assert [p.n for p in b.keypad.cols] == [6, 7, 14, 15]
    b.modem
    (_, args, kw), = _bus("UART")
    assert args == (0, 115200) and kw["tx"] == Pin(0) and kw["rx"] == Pin(1)
