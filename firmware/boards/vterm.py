# The virtual terminal: the MicroPython unix port, whose peripherals (panel,
# keypad, MFRC522 and cards) are device models in the vterm process
# (roampos.vterm.hw), reached through the buses of the vterm's module
# vhw.wire as a port offers `machine`. Only this file (with vterm_extra.py,
# its rarely used part) imports vhw; the drivers receive the buses and
# cannot tell. "Wiring" mirrors the esp32s3 board: I2C0 SSD1306 at 0x3C;
# SPI MFRC522 on pins 10 (CS) and 14 (RST); 4x4 keypad rows and columns (by
# index: the vterm maps them to 38-41 and 1 2 42 47). The modem (UART 1,
# PWRKEY pin 21), the scanner (UART 2) and the WLAN station are models in
# the vterm process too; their drivers are built on first use (vterm_extra).
# heap_models: what the simulated buses (which a board has in ROM) take of
# the heap, so that status and the ready event show the firmware's own share.
import gc
import sys

import vhw
from vhw import wire
from vhw.wire import Bus, Key, Pin


class Board:
    name = "vterm"
    ctrl_c_is_byte = True  # raw pty: Ctrl-C is the byte 0x03, no SIGINT

    def __init__(self):
        from drivers.ssd1306 import SSD1306_I2C
        from drivers.keypad import Keypad
        from drivers.mfrc522_poll import MFRC522Poll

        gc.collect()
        m0 = gc.mem_alloc()
        i2c = Bus(0)
        rows = [Key(1 << i) for i in range(4)]
        cols = [Key(16 << j) for j in range(4)]
        spi = Bus(1, baudrate=4000000)
        cs = Pin(10, Pin.OUT, value=1)
        rst = Pin(14, Pin.OUT, value=1)
        gc.collect()
        self.heap_models = wire.cost + gc.mem_alloc() - m0
        self.stdin = sys.stdin.buffer
        self.stdout = sys.stdout.buffer
        self.display = SSD1306_I2C(i2c, 0x3C)
        self.keypad = Keypad(rows, cols)
        self.reader = MFRC522Poll(spi, cs, rst)

    def __getattr__(self, name):
        # The sim hooks and the modem, WLAN and scanner drivers cost heap:
        # built on first use.
        if name != "sim" and name != "scanner" and name != "modem" and name != "wlan":
            raise AttributeError(name)
        from firmware.boards.vterm_extra import build

        m = build(self, name)
        setattr(self, name, m)
        return m

    def reset(self):
        vhw.reset()
