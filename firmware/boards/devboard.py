# What the real devboards (esp32s3, rp2) share: building the buses and drivers
# from a pin map. Each board module holds only its pin numbers.
import sys

import machine
from machine import Pin


class DevBoard:
    ctrl_c_is_byte = False  # the USB REPL raises KeyboardInterrupt itself
    sim = None
    # Set by each board: name, I2C (id, sda, scl), SPI (id, sck, mosi, miso),
    # NFC (cs, rst), KEY_ROWS, KEY_COLS, MODEM (uart, tx, rx, pwrkey), SCANNER (uart, tx, rx).

    def __init__(self):
        from drivers.keypad import Keypad
        from drivers.mfrc522_poll import MFRC522Poll
        from drivers.ssd1306 import SSD1306_I2C

        self.stdin = sys.stdin.buffer
        self.stdout = sys.stdout.buffer
        i2c_id, sda, scl = self.I2C
        # SSD1306 I2C clock up to 400 kHz (datasheet §13, I2C timing)
        self.display = SSD1306_I2C(machine.I2C(i2c_id, sda=Pin(sda), scl=Pin(scl), freq=400000), 0x3C)
        # Rows open-drain (released = high) so two held keys never short two outputs.
        rows = [Pin(n, Pin.OPEN_DRAIN, value=1) for n in self.KEY_ROWS]
        cols = [Pin(n, Pin.IN, Pin.PULL_UP) for n in self.KEY_COLS]
        self.keypad = Keypad(rows, cols)
        spi_id, sck, mosi, miso = self.SPI
        # MFRC522 SPI: mode 0, MSB first, up to 10 Mbit/s (datasheet §8.1.2)
        spi = machine.SPI(spi_id, baudrate=4000000, polarity=0, phase=0,
                          sck=Pin(sck), mosi=Pin(mosi), miso=Pin(miso))
        cs, rst = self.NFC
        self.reader = MFRC522Poll(spi, Pin(cs, Pin.OUT, value=1), Pin(rst, Pin.OUT, value=1))

    def __getattr__(self, name):
        # Built on first use: the link manager and the sale ask for them.
        if name == "modem":
            from drivers.sim7600 import SIM7600
            uart_id, tx, rx, pwrkey = self.MODEM
            uart = machine.UART(uart_id, 115200, tx=Pin(tx), rx=Pin(rx), rxbuf=1024, timeout=0)
            m = SIM7600(uart, Pin(pwrkey, Pin.OUT, value=1))
        elif name == "scanner":
            from drivers.gm65 import GM65
            uart_id, tx, rx = self.SCANNER
            m = GM65(machine.UART(uart_id, 9600, tx=Pin(tx), rx=Pin(rx), rxbuf=512, timeout=0))
        elif name == "wlan":
            import network  # ESP32-S3, Pico W / Pico 2 W (CYW43)

            m = network.WLAN(network.STA_IF)
        else:
            raise AttributeError(name)
        setattr(self, name, m)
        return m

    def reset(self):
        machine.reset()
