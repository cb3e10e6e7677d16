"""The vterm's peripherals: the device models (tools/vterm/vhw: SSD1306 panel,
keypad matrix, MFRC522 with cards in its field, SIM7600 modem, GM65 scanner,
and the radio world with its WLAN station) run here, in the vterm process,
behind the buses the firmware sees (vhw/wire.py). On a board these are chips
and modules: keeping them out of MicroPython leaves the firmware's heap its own.

Wiring, as on the esp32s3 board (firmware/boards/esp32s3.py): I2C0 SSD1306 at
0x3C; SPI with the MFRC522 on CS pin 10, RST pin 14; keypad rows 38-41,
columns 1 2 42 47 (the firmware addresses rows and columns by index through
the shared page, pins by number on the wire); UART 1 the modem with PWRKEY on
pin 21, UART 2 the scanner.

Protocol (vhw/wire.py): frames op, id, 16-bit little-endian length, payload.
  p pin write (id pin, 1 byte level)      r pin read -> 1 byte
  s SPI write (id bus)                    x SPI write_readinto -> as many bytes
  i I2C write (id address) -> 0 or 19     c request text -> 16-bit length + bytes
  w UART write (id UART)                  u UART read -> 16-bit length + bytes
A UART read answers with all the device has sent (at most UART_CHUNK bytes;
the rest waits for the next read), possibly nothing.
Requests (c), answered by a status byte (0, or 1 and the error text) and
bytes: press L, release L, cards, tap NAME, remove, visible, scan CODE,
link wifi|cell up|down|denied, cell MCC MNC LAC CI, signal DBM, and
wlan METHOD ARGS (a network.WLAN call: ARGS the repr of the argument tuple,
the answer the repr of the result).
The shared page: byte 0 = rows driven low (bit i = row i), byte 1 + pattern
= column levels (bit j = column j) for that pattern, recomputed on each
press and release.

Each connection is one power-on: the models start from their reset state, as
the chips do when the board's supply comes back (the modem's host socket is
closed with the connection). The radio world (access points, registration,
cell, signal) is part of the power-on too: a boot starts from the defaults.
Nothing here waits on the host network: the modem model's sockets are
non-blocking, so the bus thread keeps serving while a TCP connect or send
is under way.
"""
from __future__ import annotations

import ast
import mmap
import os
import socket
import struct
import sys
import threading
from typing import Dict, Optional

from roampos import ROOT

sys.path.insert(0, os.path.join(ROOT, "tools", "vterm"))  # the vhw package, shared with MicroPython

from vhw.bus import I2C, SPI, Pin  # noqa: E402
from vhw.cards import PROFILES, Card  # noqa: E402
from vhw.keys import KeypadModel  # noqa: E402
from vhw.net import Network  # noqa: E402
from vhw.nfc import MFRC522Model  # noqa: E402
from vhw.oled import SSD1306Model  # noqa: E402
from vhw.scanner import ScannerModel  # noqa: E402

__all__ = ["Hardware", "Board"]

ROWS = (38, 39, 40, 41)
COLS = (1, 2, 42, 47)
NFC_CS, NFC_RST = 10, 14
OLED_ADDR = 0x3C
MODEM_UART, MODEM_PWRKEY = 1, 21
SCANNER_UART = 2
UART_CHUNK = 1024   # bytes per UART read answer (a board's rxbuf)
MEM_SIZE = 64
WLAN_METHODS = ("active", "connect", "disconnect", "isconnected", "status", "config", "scan", "ifconfig")


class Board:
    """The models of one power-on, wired as the firmware expects."""

    def __init__(self, mem: mmap.mmap):
        self.mem = mem
        self.i2c = I2C(0)
        self.oled = SSD1306Model()
        self.i2c.attach(OLED_ADDR, self.oled)
        self.rows = [Pin(n, Pin.OPEN_DRAIN, value=1) for n in ROWS]
        self.cols = [Pin(n, Pin.IN, Pin.PULL_UP) for n in COLS]
        self.keys = KeypadModel(self.rows, self.cols)
        self.spi = SPI(1, baudrate=4000000)
        self.pins: Dict[int, Pin] = {NFC_CS: Pin(NFC_CS, Pin.OUT, value=1), NFC_RST: Pin(NFC_RST, Pin.OUT, value=1)}
        self.nfc = MFRC522Model()
        self.spi.attach(self.pins[NFC_CS], self.nfc)
        self.net = Network()  # the radio world: access points, WLAN station, cellular modem
        self.scanner = ScannerModel()
        self.uarts = {MODEM_UART: self.net.modem, SCANNER_UART: self.scanner}
        self.rx: Dict[int, bytes] = {}  # UART bytes sent by a device, not yet read
        pwrkey = self.pins[MODEM_PWRKEY] = Pin(MODEM_PWRKEY, Pin.OUT, value=1)
        pwrkey.on_change = self.net.modem.pwrkey
        mem[0] = 0
        self.matrix()

    def close(self) -> None:
        """Power off: what holds host resources lets go (the modem's socket)."""
        self.net.modem.close()

    def uart_write(self, ident: int, data: bytes) -> None:
        dev = self.uarts.get(ident)
        if dev is None:
            raise ValueError("no UART %d" % ident)
        dev.rx(data)

    def uart_read(self, ident: int) -> bytes:
        dev = self.uarts.get(ident)
        if dev is None:
            raise ValueError("no UART %d" % ident)
        data = self.rx.pop(ident, b"") + (dev.tx() or b"")
        if len(data) > UART_CHUNK:
            data, self.rx[ident] = data[:UART_CHUNK], data[UART_CHUNK:]
        return data

    def matrix(self) -> None:
        """Column levels for each of the 16 row patterns, into the shared page."""
        for pattern in range(16):
            for i, r in enumerate(self.rows):
                r.value(0 if pattern >> i & 1 else 1)
            levels = 0
            for j, c in enumerate(self.cols):
                levels |= c.value() << j
            self.mem[1 + pattern] = levels

    def request(self, text: str) -> bytes:
        op, _, arg = text.partition(" ")
        if op == "press" or op == "release":
            (self.keys.press if op == "press" else self.keys.release)(arg)  # ValueError: no such key
            self.matrix()
            return b""
        if op == "cards":
            return " ".join(sorted(PROFILES)).encode()
        if op == "tap":
            if arg not in PROFILES:
                raise ValueError("no card profile %r" % arg)
            self.nfc.card = Card(arg)
            return b""
        if op == "remove":
            had = self.nfc.card is not None
            self.nfc.card = None
            return b"1" if had else b"0"
        if op == "visible":
            return bytes(self.oled.visible())
        # scan, link, cell and signal come as the console's `sim` commands
        # were typed (firmware/cmd_sim.py has checked them): parsed as it does.
        if op == "scan":
            code = arg.strip(_SPACE)
            if not code:
                raise ValueError("scan needs a code")
            self.scanner.scan(code)
            return b""
        if op == "link":
            self.net.set_link(*_words(arg, 2))  # ValueError: no such link state
            return b""
        if op == "cell":
            mcc, mnc, lac, ci = _words(arg, 4)
            self.net.set_cell("%03d" % int(mcc), mnc, int(lac), int(ci))
            return b""
        if op == "signal":
            self.net.set_signal(int(arg))
            return b""
        if op == "wlan":
            name, _, args = arg.partition(" ")
            if name not in WLAN_METHODS:
                raise ValueError("no WLAN method %r" % name)
            a = ast.literal_eval(args) if args else ()
            if not isinstance(a, tuple):
                raise ValueError("WLAN arguments are a tuple")
            try:
                return repr(getattr(self.net.wlan, name)(*a)).encode()
            except (OSError, TypeError) as e:  # as network.WLAN raises them; TypeError: wrong arguments
                raise ValueError("%s: %s" % (type(e).__name__, e))
        raise ValueError("unknown request %r" % op)


class Hardware:
    """Listens on a Unix socket in `directory`; serves one firmware at a time."""

    def __init__(self, directory: str):
        self.path = os.path.join(directory, "hw")
        self.mem_path = os.path.join(directory, "hwmem")
        with open(self.mem_path, "wb") as f:
            f.write(bytes(mmap.PAGESIZE))
        with open(self.mem_path, "r+b") as f:
            self.mem = mmap.mmap(f.fileno(), MEM_SIZE)
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(self.path)
        self.srv.listen(2)
        self.board: Optional[Board] = None
        self.errors = 0   # frames that made no sense (a firmware bug shows here and in the log)
        self.log = None   # optional callable(str) for such errors
        threading.Thread(target=self._accept, name="vterm-hw", daemon=True).start()

    def env(self) -> Dict[str, str]:
        """What the firmware process needs: the socket (vhw.wire) and the page (roampos.vterm.mp)."""
        return {"ROAMPOS_HW": self.path, "ROAMPOS_HWMEM_FILE": self.mem_path}

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return  # closed
            # One firmware at a time: a new connection is the next boot (the old process is gone).
            threading.Thread(target=self._serve, args=(conn,), name="vterm-hw-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        board = self.board = Board(self.mem)
        f = conn.makefile("rwb", buffering=0)
        try:
            while True:
                head = _read(f, 4)
                if head is None:
                    return
                op, ident, n = head[0], head[1], struct.unpack_from("<H", head, 2)[0]
                data = _read(f, n) if n else b""
                if data is None:
                    return
                self._frame(board, f, op, ident, data)
        except OSError:
            return
        finally:
            board.close()
            conn.close()

    def _frame(self, board: Board, f, op: int, ident: int, data: bytes) -> None:
        # A model's bug on a bus is answered as a floating bus (1s on a pin, 0s on MISO), counted
        # and logged: letting it end the connection cut every bus at once, and the firmware saw
        # only an unrelated error (the display's I2C, EPIPE).
        if op == 0x70:    # p
            pin = board.pins.get(ident)
            try:
                if pin is not None:
                    pin.value(data[:1] != b"\x00")
            except Exception as e:
                self._error("pin %d write: %r" % (ident, e))
        elif op == 0x72:  # r
            pin = board.pins.get(ident)
            try:
                level = pin.value() if pin is not None else 1
            except Exception as e:
                self._error("pin %d read: %r" % (ident, e))
                level = 1
            f.write(bytes((level,)))
        elif op == 0x73:  # s
            try:
                board.spi.write(data)
            except Exception as e:
                self._error("SPI write: %r" % (e,))
        elif op == 0x78:  # x
            out = bytearray(len(data))
            try:
                board.spi.write_readinto(data, out)
            except Exception as e:
                self._error("SPI transfer: %r" % (e,))
                out = bytearray(len(data))
            f.write(bytes(out))
        elif op == 0x69:  # i
            try:
                board.i2c.writevto(ident, (data,))
                f.write(b"\x00")
            except OSError:
                f.write(b"\x13")  # ENODEV
            except Exception as e:  # a model's bug: the firmware sees a failed write
                self._error("I2C 0x%02x write: %r" % (ident, e))
                f.write(b"\x13")
        elif op == 0x77:  # w
            try:
                board.uart_write(ident, data)
            except Exception as e:  # no answer to give: counted and logged
                self._error("UART %d write: %r" % (ident, e))
        elif op == 0x75:  # u
            try:
                out = board.uart_read(ident)
            except Exception as e:  # the firmware waits for an answer: it gets one
                self._error("UART %d read: %r" % (ident, e))
                out = b""
            f.write(struct.pack("<H", len(out)) + out)
        elif op == 0x63:  # c
            try:
                out = b"\x00" + board.request(data.decode())
            except (ValueError, KeyError, UnicodeError, SyntaxError) as e:
                out = b"\x01" + str(e).encode()
            except Exception as e:  # a model's bug: answered, counted and logged
                self._error("request %r: %r" % (data[:40], e))
                out = b"\x01" + ("%s: %s" % (type(e).__name__, e)).encode()
            f.write(struct.pack("<H", len(out)) + out)
        else:
            self._error("unknown frame op %r" % op)

    def _error(self, text: str) -> None:
        self.errors += 1
        if self.log:
            self.log("vterm hw: " + text)

    def close(self) -> None:
        try:
            self.srv.close()
        finally:
            try:
                os.unlink(self.path)
            except OSError:
                pass


_SPACE = " \t\n\r\x0b\x0c"  # white space to MicroPython's str.strip() (ASCII only)


def _words(text: str, n: int):
    w = text.split()
    if len(w) != n:
        raise ValueError("%d words expected, got %r" % (n, text[:40]))
    return w


def _read(f, n: int) -> Optional[bytes]:
    buf = b""
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf
