# The virtual terminal: the MicroPython unix port with device models from the
# vterm's own module `vhw` (as a port offers `machine`). Only this file
# (with vterm_extra.py, its rarely used part) imports vhw; the drivers
# receive the simulated buses and cannot tell.
# "Wiring" mirrors the esp32s3 board, pin numbers included: I2C0 SSD1306 at
# 0x3C; SPI1 MFRC522 (CS 10, RST 14); UART1 SIM7600-class modem (PWRKEY 21);
# UART2 GM65 scanner; 4x4 keypad rows 38-41, cols 1 2 42 47; WLAN from
# vhw.net. Scanner, modem, WLAN and the sim hooks are built on first use.
# heap_models: what the device models (which a real board does not have)
# took of the heap when built, so that status and the ready event can show
# the firmware's own share apart from the simulation's.
import gc
import sys

gc.collect()
_m0 = gc.mem_alloc()
import vhw  # noqa: E402
from vhw.bus import I2C, SPI, Pin  # noqa: E402

gc.collect()
_BUS = gc.mem_alloc() - _m0
del _m0


class Board:
    name = "vterm"
    ctrl_c_is_byte = True  # raw pty: Ctrl-C is the byte 0x03, no SIGINT

    def __init__(self):
        # The simulated hardware first (buses, pins, device models), measured.
        gc.collect()
        m0 = gc.mem_alloc()
        from vhw.oled import SSD1306Model
        from vhw.keys import KeypadModel
        from vhw.nfc_idle import EmptyField

        i2c = I2C(0)
        oled = SSD1306Model()
        i2c.attach(0x3C, oled)
        rows = [Pin(n, Pin.OPEN_DRAIN, value=1) for n in (38, 39, 40, 41)]
        cols = [Pin(n, Pin.IN, Pin.PULL_UP) for n in (1, 2, 42, 47)]
        keys = KeypadModel(rows, cols)
        spi = SPI(1, baudrate=4000000)
        cs = Pin(10, Pin.OUT, value=1)
        rst = Pin(14, Pin.OUT, value=1)
        nfc = EmptyField(spi, cs)  # on the bus; the full model comes with the first tap
        self._models = (oled, keys, nfc)
        gc.collect()
        self.heap_models = _BUS + gc.mem_alloc() - m0
        # Then the firmware's drivers on top, as on a board.
        from drivers.ssd1306 import SSD1306_I2C
        from drivers.keypad import Keypad
        from drivers.mfrc522_poll import MFRC522Poll

        self.stdin = sys.stdin.buffer
        self.stdout = sys.stdout.buffer
        self.display = SSD1306_I2C(i2c, 0x3C)
        self.keypad = Keypad(rows, cols)
        self.reader = MFRC522Poll(spi, cs, rst)

    def __getattr__(self, name):
        # The sim hooks, modem, WLAN and scanner cost heap: built on first use.
        if name != "sim" and name != "scanner" and name != "modem" and name != "wlan":
            raise AttributeError(name)
        from firmware.boards.vterm_extra import build

        m = build(self, name)
        setattr(self, name, m)
        return m

    def reset(self):
        vhw.reset()
