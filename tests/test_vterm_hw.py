"""The vterm's peripherals (roampos.vterm.hw): device models behind the firmware's buses.

Spoken to here as vhw/wire.py speaks to them from MicroPython: frames on the Unix socket and
the shared keypad page. The console tests cover the same parts end to end (keys, taps, screen)."""
import socket
import struct

import pytest

from roampos.vterm.hw import Hardware

pytestmark = pytest.mark.simulation


def frame(op: str, ident: int, data: bytes = b"") -> bytes:
    return op.encode() + bytes((ident,)) + struct.pack("<H", len(data)) + data


def recv(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk, "the vterm closed the bus"
        out += chunk
    return out


def ask(s: socket.socket, text: str):
    s.sendall(frame("c", 0, text.encode()))
    n = struct.unpack("<H", recv(s, 2))[0]
    out = recv(s, n)
    return out[0], out[1:]


def read_reg(s: socket.socket, reg: int) -> int:
    # MFRC522 register read as drivers/mfrc522_poll.py does it: CS low, address | 0x80, CS high.
    s.sendall(frame("p", 10, b"\x00"))
    s.sendall(frame("x", 1, bytes((0x80 | reg << 1, 0))))
    out = recv(s, 2)
    s.sendall(frame("p", 10, b"\x01"))
    return out[1]


@pytest.fixture
def hw(tmp_path):
    h = Hardware(str(tmp_path))
    yield h
    h.close()


def connect(h: Hardware) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(h.path)
    return s


def test_reader_answers_on_spi_only_while_selected(hw):
    with connect(hw) as s:
        assert read_reg(s, 0x37) == 0x92              # VersionReg: MFRC522 v2.0 (datasheet §9.3.4.8)
        s.sendall(frame("x", 1, b"\xee\x00"))        # CS high: nobody drives MISO
        assert recv(s, 2) == b"\xff\xff"


def test_i2c_acks_the_panel_and_not_an_empty_address(hw):
    with connect(hw) as s:
        s.sendall(frame("i", 0x3C, b"\x00\xaf"))     # control byte, display on
        assert recv(s, 1) == b"\x00"
        s.sendall(frame("i", 0x3D, b"\x00\xaf"))
        assert recv(s, 1) == b"\x13"                  # ENODEV
        status, img = ask(s, "visible")
        assert status == 0 and len(img) == 1024


def test_key_press_shows_in_the_shared_page(hw):
    with connect(hw) as s:
        ask(s, "cards")                               # a round trip: the board of this connection is built
        mem = hw.mem
        assert all(mem[1 + p] == 0x0F for p in range(16))   # nothing held: every column high
        assert ask(s, "press 5") == (0, b"")          # row 1, column 1 (LEGENDS 123A 456B ...)
        assert mem[1 + 0b0010] == 0x0F & ~0b0010      # row 1 driven low: column 1 reads low
        assert mem[1 + 0b0001] == 0x0F                # row 0 driven: column 1 stays high
        ask(s, "release 5")
        assert mem[1 + 0b0010] == 0x0F


def test_bad_requests_get_errors_and_the_bus_keeps_serving(hw):
    with connect(hw) as s:
        assert ask(s, "press Z")[0] == 1
        status, text = ask(s, "tap nosuchcard")
        assert status == 1 and b"nosuchcard" in text
        assert ask(s, "frobnicate")[0] == 1
        s.sendall(frame("?", 0, b"junk"))             # an unknown op: counted, nothing answered
        assert ask(s, "tap visa") == (0, b"")
        assert ask(s, "remove") == (0, b"1")
        assert ask(s, "remove") == (0, b"0")
        assert read_reg(s, 0x37) == 0x92
    assert hw.errors == 1


def test_each_connection_is_a_power_on(hw):
    with connect(hw) as s:
        ask(s, "tap visa")
        ask(s, "press 1")
    with connect(hw) as s:                            # the next boot
        assert ask(s, "remove") == (0, b"0")          # the field was reset with the chip
        assert hw.mem[1 + 0b0001] == 0x0F             # and no key is held
