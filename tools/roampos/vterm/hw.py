"""The vterm's peripherals: the device models (tools/vterm/vhw: SSD1306 panel,
keypad matrix, MFRC522 with cards in its field) run here, in the vterm
process, behind the buses the firmware sees (vhw/wire.py). On a board these
are chips: keeping them out of MicroPython leaves the firmware's heap its own.

Wiring, as on the esp32s3 board (firmware/boards/esp32s3.py): I2C0 SSD1306 at
0x3C; SPI with the MFRC522 on CS pin 10, RST pin 14; keypad rows 38-41,
columns 1 2 42 47 (the firmware addresses rows and columns by index through
the shared page, pins by number on the wire).

Protocol (vhw/wire.py): frames op, id, 16-bit little-endian length, payload.
  p pin write (id pin, 1 byte level)      r pin read -> 1 byte
  s SPI write (id bus)                    x SPI write_readinto -> as many bytes
  i I2C write (id address) -> 0 or 19     c request text -> 16-bit length + bytes
Requests (c): press L, release L, cards, tap NAME, remove, visible.
The shared page: byte 0 = rows driven low (bit i = row i), byte 1 + pattern
= column levels (bit j = column j) for that pattern, recomputed on each
press and release.

Each connection is one power-on: the models start from their reset state, as
the chips do when the board's supply comes back.
"""
from __future__ import annotations

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
from vhw.nfc import MFRC522Model  # noqa: E402
from vhw.oled import SSD1306Model  # noqa: E402

__all__ = ["Hardware", "Board"]

ROWS = (38, 39, 40, 41)
COLS = (1, 2, 42, 47)
NFC_CS, NFC_RST = 10, 14
OLED_ADDR = 0x3C
MEM_SIZE = 64


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
        mem[0] = 0
        self.matrix()

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
            conn.close()

    def _frame(self, board: Board, f, op: int, ident: int, data: bytes) -> None:
        if op == 0x70:    # p
            pin = board.pins.get(ident)
            if pin is not None:
                pin.value(data[:1] != b"\x00")
        elif op == 0x72:  # r
            pin = board.pins.get(ident)
            f.write(bytes((pin.value() if pin is not None else 1,)))
        elif op == 0x73:  # s
            board.spi.write(data)
        elif op == 0x78:  # x
            out = bytearray(len(data))
            board.spi.write_readinto(data, out)
            f.write(bytes(out))
        elif op == 0x69:  # i
            try:
                board.i2c.writevto(ident, (data,))
                f.write(b"\x00")
            except OSError:
                f.write(b"\x13")  # ENODEV
        elif op == 0x63:  # c
            try:
                out = b"\x00" + board.request(data.decode())
            except (ValueError, KeyError, UnicodeError) as e:
                out = b"\x01" + str(e).encode()
            f.write(struct.pack("<H", len(out)) + out)
        else:
            self.errors += 1
            if self.log:
                self.log("vterm hw: unknown frame op %r" % op)

    def close(self) -> None:
        try:
            self.srv.close()
        finally:
            try:
                os.unlink(self.path)
            except OSError:
                pass


def _read(f, n: int) -> Optional[bytes]:
    buf = b""
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf
