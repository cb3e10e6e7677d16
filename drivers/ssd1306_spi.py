# SSD1306 over 4-wire SPI (the I2C variant and the core are in ssd1306.py).
import time

from drivers.ssd1306 import SSD1306


class SSD1306_SPI(SSD1306):
    # 4-wire SPI (§8.1.3): D/C# low = command, high = data, latched with CS#.
    def __init__(self, spi, dc, cs, res=None):
        self.spi = spi
        self.dc = dc
        self.cs = cs
        cs.value(1)
        dc.value(0)
        if res is not None:
            # §8.9 power on: RES# low at least 3 us, then high.
            res.value(1)
            time.sleep_ms(1)
            res.value(0)
            time.sleep_ms(1)
            res.value(1)
        super().__init__()

    def _xfer(self, dc, buf):
        self.dc.value(dc)
        self.cs.value(0)
        self.spi.write(buf)
        self.cs.value(1)

    def _cmd(self, buf):
        self._xfer(0, buf)

    def _data(self, buf):
        self._xfer(1, buf)
