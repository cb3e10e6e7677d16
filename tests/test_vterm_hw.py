"""The vterm's peripherals (roampos.vterm.hw): device models behind the firmware's buses.

Spoken to here as vhw/wire.py and the vterm board's UART and WLAN (firmware/boards/vterm_extra.py)
speak to them from MicroPython: frames on the Unix socket and the shared keypad page. The console
tests cover the same parts end to end (keys, taps, screen, scanner, links: test_sim_link.py)."""
import os
import socket
import struct
import time

import pytest

from roampos.netutil import free_port
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


def uart_read(s: socket.socket, ident: int) -> bytes:
    s.sendall(frame("u", ident))
    n = struct.unpack("<H", recv(s, 2))[0]
    return recv(s, n)


def uart_until(s: socket.socket, ident: int, want: bytes, timeout: float = 5.0) -> bytes:
    # What the device sent until `want` shows (the modem's URCs come when the host socket moves).
    got = b""
    end = time.monotonic() + timeout
    while want not in got:
        assert time.monotonic() < end, "no %r from UART %d; got %r" % (want, ident, got)
        got += uart_read(s, ident)
        time.sleep(0.01)
    return got


def test_uart_write_and_read_reach_the_modem_and_scanner(hw):
    with connect(hw) as s:
        assert uart_read(s, 1) == b""                 # nothing sent yet: an empty answer, not a wait
        s.sendall(frame("w", 1, b"AT\r"))
        assert uart_read(s, 1) == b"AT\r\r\nOK\r\n"  # echo on (ATE1 default), then OK
        s.sendall(frame("w", 1, b"ATE0\r"))
        s.sendall(frame("w", 1, b"AT+CSQ\r"))
        assert uart_read(s, 1) == b"ATE0\r\r\nOK\r\n\r\n+CSQ: 20,99\r\n\r\nOK\r\n"
        assert ask(s, "scan 134567890123456789") == (0, b"")
        assert ask(s, "scan   hello world ") == (0, b"")   # typed as `sim scan`: stripped
        assert uart_read(s, 2) == b"134567890123456789\rhello world\r"
        assert uart_read(s, 2) == b""
    assert hw.errors == 0


def test_uart_read_answers_in_chunks_of_at_most_1k(hw):
    with connect(hw) as s:
        ask(s, "scan " + "x" * 700)
        ask(s, "scan " + "y" * 700)
        first = uart_read(s, 2)
        assert len(first) == 1024 and first.startswith(b"x" * 700 + b"\r")
        assert uart_read(s, 2) == b"y" * 377 + b"\r"
        assert uart_read(s, 2) == b""


def test_modem_pwrkey_pulse_and_world_requests(hw):
    with connect(hw) as s:
        s.sendall(frame("p", 21, b"\x00"))            # PWRKEY low for >= 100 ms: power on
        time.sleep(0.15)
        s.sendall(frame("p", 21, b"\x01"))
        assert uart_read(s, 1) == b"\r\nRDY\r\n"
        assert hw.board.net.modem.power_ups == 1
        s.sendall(frame("w", 1, b"ATE0\rAT+CREG=1\r"))
        uart_read(s, 1)
        assert ask(s, "cell 460 01 6200 123456") == (0, b"")
        assert ask(s, "link cell denied") == (0, b"")
        assert ask(s, "signal -91") == (0, b"")
        s.sendall(frame("w", 1, b"AT+COPS?\r"))
        assert uart_read(s, 1) == b"\r\n+CREG: 1\r\n\r\n+CREG: 3\r\n\r\n+COPS: 0\r\n\r\nOK\r\n"  # URCs: new cell, denied
        ask(s, "link cell up")
        s.sendall(frame("w", 1, b"AT+CSQ\r"))
        assert uart_read(s, 1) == b"\r\n+CREG: 1\r\n\r\n+CSQ: 11,99\r\n\r\nOK\r\n"   # (-91 + 113) // 2
        ask(s, "cell 0460 001 +5 0")                  # as `sim cell` accepts it: mcc normalised, mnc as typed
        m = hw.board.net.modem
        assert (m.mcc, m.mnc, m.lac, m.ci) == ("460", "001", 5, 0)


def test_wlan_requests(hw):
    with connect(hw) as s:
        assert ask(s, "wlan active (True,)") == (0, b"None")
        assert ask(s, "wlan scan ()")[1].startswith(b"[(b'roampos-shop', b'\\x02RP\\x00\\x00\\x01', 6, -58, 3, False)")
        ask(s, "wlan connect ('roampos-shop', 'wrong')")
        time.sleep(0.08)                               # association takes 50 ms
        assert ask(s, "wlan isconnected ()") == (0, b"False")
        assert ask(s, "wlan status ()") == (0, b"202")  # STAT_WRONG_PASSWORD
        status, text = ask(s, "wlan status ('rssi',)")  # not associated: network.WLAN raises OSError
        assert status == 1 and text.startswith(b"OSError")
        ask(s, "wlan connect ('roampos-shop', 'secret-psk')")
        time.sleep(0.08)
        assert ask(s, "wlan isconnected ()") == (0, b"True")
        assert ask(s, "wlan config ('bssid',)") == (0, b"b'\\x02RP\\x00\\x00\\x01'")
        assert ask(s, "wlan status ('rssi',)") == (0, b"-58")
        ask(s, "link wifi down")                       # the access points vanish: the association drops
        assert ask(s, "wlan isconnected ()") == (0, b"False")
        assert ask(s, "wlan scan ()") == (0, b"[]")


def test_malformed_radio_requests_get_errors_and_the_bus_keeps_serving(hw):
    with connect(hw) as s:
        for text in ("wlan frobnicate ()", "wlan _update ()", "wlan connect (", "wlan connect __import__('os')",
                     "wlan connect 'ssid'", "wlan active (1, 2, 3)", "wlan config ('nope',)",
                     "link wifi denied", "link lora up", "link cell", "cell 460 01 x 2", "cell 460",
                     "signal loud", "scan", "scan   "):
            status, err = ask(s, text)
            assert status == 1 and err, (text, err)
        assert uart_read(s, 7) == b""                 # no such UART: an empty answer, counted
        s.sendall(frame("w", 7, b"AT\r"))             # counted too, no answer due
        s.sendall(frame("w", 1, b"AT+CREG=x\r\xff\xfe\r"))   # a bad number, not UTF-8: ERROR, as a module
        assert uart_read(s, 1) == b"AT+CREG=x\r\r\nERROR\r\n\r\nERROR\r\n"
        assert ask(s, "wlan isconnected ()") == (0, b"False")
        assert read_reg(s, 0x37) == 0x92
    assert hw.errors == 2


def test_modem_tcp_connect_does_not_hold_the_bus(hw):
    # A listener whose accept queue is full drops the next SYN: the modem's connect stays
    # under way (the client retries after ~1 s) while the bus answers at once.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    filler = socket.create_connection(srv.getsockname())
    try:
        with connect(hw) as s:
            s.sendall(frame("w", 1, b"ATE0\r"))
            uart_read(s, 1)
            s.sendall(frame("w", 1, b"AT+NETOPEN\r"))
            uart_until(s, 1, b"+NETOPEN: 0")
            port = srv.getsockname()[1]
            s.sendall(frame("w", 1, b'AT+CIPOPEN=0,"TCP","127.0.0.1",%d\r' % port))
            t0 = time.monotonic()
            assert uart_read(s, 1) == b"\r\nOK\r\n"  # accepted; +CIPOPEN comes when the connect ends
            assert ask(s, "visible")[0] == 0 and read_reg(s, 0x37) == 0x92
            assert time.monotonic() - t0 < 0.5
            srv.accept()[0].close()                   # room in the queue: the retried SYN gets through
            assert b"+CIPOPEN: 0,0" in uart_until(s, 1, b"+CIPOPEN:", timeout=8)
            peer, _ = srv.accept()
            s.sendall(frame("w", 1, b"AT+CIPSEND=0,4\r"))
            assert uart_read(s, 1) == b"\r\n>"
            s.sendall(frame("w", 1, b"ping"))
            assert b"+CIPSEND: 0,4,4" in uart_until(s, 1, b"+CIPSEND:")
            peer.settimeout(5)
            assert peer.recv(16) == b"ping"
            peer.sendall(b"pong")
            assert b"+CIPRXGET: 1,0" in uart_until(s, 1, b"+CIPRXGET: 1,0")
            s.sendall(frame("w", 1, b"AT+CIPRXGET=2,0,16\r"))
            assert uart_until(s, 1, b"OK\r\n") == b"\r\n+CIPRXGET: 2,0,4,0\r\npong\r\nOK\r\n"
        # The connection ended (power off): the modem's host socket is closed with it.
        assert peer.recv(16) == b""
        peer.close()
    finally:
        filler.close()
        srv.close()


def test_modem_connect_refused_is_reported(hw):
    port = free_port()                                # nobody listens there
    with connect(hw) as s:
        s.sendall(frame("w", 1, b"ATE0\rAT+NETOPEN\r"))
        uart_until(s, 1, b"+NETOPEN: 0")
        s.sendall(frame("w", 1, b'AT+CIPOPEN=0,"TCP","127.0.0.1",%d\r' % port))
        assert b"+CIPOPEN: 0,4" in uart_until(s, 1, b"+CIPOPEN:")


def test_radio_models_reset_with_each_power_on(hw):
    with connect(hw) as s:
        ask(s, "link wifi down")
        ask(s, "link cell denied")
        ask(s, "scan stale")
        s.sendall(frame("w", 1, b"ATE0\r"))
        ask(s, "wlan active (True,)")
    with connect(hw) as s:                            # the next boot
        assert uart_read(s, 2) == b""                 # the scanner's unread code went with the power
        s.sendall(frame("w", 1, b"AT\r"))
        assert uart_read(s, 1) == b"AT\r\r\nOK\r\n"  # echo on again: a fresh module
        s.sendall(frame("w", 1, b"AT+CREG?\r"))
        assert b"+CREG: 0,1" in uart_read(s, 1)       # registered (home) again
        assert ask(s, "wlan active ()") == (0, b"False")
        assert len(eval(ask(s, "wlan scan ()")[1])) == 2   # the access points are back


def test_a_frame_no_model_takes_shows_in_the_vterm_log(tmp_path):
    # `roampos vterm --log FILE`: bus errors (a firmware or model bug) are not only counted.
    from roampos.vterm.process import VirtualTerminal
    log = tmp_path / "vterm.log"
    vt = VirtualTerminal(str(tmp_path / "flash.img"), log=str(log), rom=str(tmp_path / "unused.romfs"))
    try:
        with connect(vt.hw) as s:
            s.sendall(frame("?", 0, b"junk"))
            assert ask(s, "remove") == (0, b"0")     # still serving after it
        assert vt.hw.errors == 1
        assert b"vterm hw: unknown frame op 63" in log.read_bytes()
    finally:
        vt.cleanup()
    assert not os.path.exists(vt.tmp)


def test_a_model_bug_on_a_bus_is_logged_and_the_buses_keep_serving(hw, monkeypatch):
    # A card model that raises mid-exchange: the transfer reads as a floating bus (zeros), the bug
    # is counted, and the connection (every bus the firmware has, the display's too) stays up.
    with connect(hw) as s:
        assert ask(s, "tap visa") == (0, b"")
        monkeypatch.setattr(hw.board.spi, "write_readinto", lambda data, out: 1 / 0)
        s.sendall(frame("p", 10, b"\x00"))
        s.sendall(frame("x", 1, bytes((0x80 | 0x37 << 1, 0))))
        assert recv(s, 2) == b"\x00\x00"
        monkeypatch.undo()
        s.sendall(frame("p", 10, b"\x01"))
        assert read_reg(s, 0x37) == 0x92
        s.sendall(frame("i", 0x3C, b"\x00\xaf"))     # the panel still acks
        assert recv(s, 1) == b"\x00"
        # And a panel model that raises: that write fails (as a missing device), the rest goes on.
        monkeypatch.setattr(hw.board.i2c, "writevto", lambda addr, vector: [][0])
        s.sendall(frame("i", 0x3C, b"\x00\xaf"))
        assert recv(s, 1) == b"\x13"
        monkeypatch.undo()
        assert read_reg(s, 0x37) == 0x92
    assert hw.errors == 2
