# The virtual terminal: the MicroPython unix port with device models from the
# vterm's own module `vhw` (as a port offers `machine`). Only this file
# imports vhw; the drivers receive the simulated buses and cannot tell.
# "Wiring" (mirrors the esp32s3 board): I2C0 SSD1306 at 0x3C; SPI1 MFRC522;
# UART1 SIM7600-class modem; UART2 GM65 scanner; 4x4 keypad on 8 pins;
# WLAN from vhw.net. Scanner, modem and WLAN are built on first use.
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
        from vhw.nfc import MFRC522Model

        i2c = I2C(0)
        oled = SSD1306Model()
        i2c.attach(0x3C, oled)
        rows = [Pin("row%d" % i, Pin.OPEN_DRAIN, value=1) for i in range(4)]
        cols = [Pin("col%d" % i, Pin.IN, Pin.PULL_UP) for i in range(4)]
        keys = KeypadModel(rows, cols)
        spi = SPI(1, baudrate=4000000)
        cs = Pin("nfc_cs", Pin.OUT, value=1)
        rst = Pin("nfc_rst", Pin.OUT, value=1)
        nfc = MFRC522Model()
        spi.attach(cs, nfc)
        self._models = (oled, keys, nfc)
        gc.collect()
        self.heap_models = _BUS + gc.mem_alloc() - m0
        # Then the firmware's drivers on top, as on a board.
        from drivers.ssd1306 import SSD1306_I2C
        from drivers.keypad import Keypad
        from drivers.mfrc522 import MFRC522

        self.stdin = sys.stdin.buffer
        self.stdout = sys.stdout.buffer
        self.display = SSD1306_I2C(i2c, 0x3C)
        self.keypad = Keypad(rows, cols)
        self.reader = MFRC522(spi, cs, rst)

    def __getattr__(self, name):
        # The sim hooks, modem, WLAN and scanner cost heap: built on first use.
        if name == "sim":
            from vhw.sim import Sim
            m = Sim(*self._models, board=self)
        elif name == "scanner":
            from vhw.uart import UART
            from drivers.gm65 import GM65
            m = GM65(UART(2, 9600, model=self.sim.scanner))
        elif name == "modem":
            from vhw.uart import UART
            from drivers.sim7600 import SIM7600
            m = SIM7600(UART(1, 115200, model=self.sim.net.modem), Pin("pwrkey", Pin.OUT, value=1))
        elif name == "wlan":
            m = self.sim.net.wlan
        else:
            raise AttributeError(name)
        setattr(self, name, m)
        return m

    def reset(self):
        vhw.reset()
