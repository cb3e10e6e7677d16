# ESP32-S3 devboard (e.g. ESP32-S3-DevKitC-1): the only firmware file, with
# rp2.py, that knows pin numbers. Pin map (change here for another layout):
#   I2C0  SDA 8, SCL 9        SSD1306 OLED at 0x3C
#   SPI2  SCK 12, MOSI 11, MISO 13, CS 10, RST 14   MFRC522
#   UART1 TX 17, RX 18        SIM7600 modem, PWRKEY 21
#   UART2 TX 4, RX 5          GM65 scanner
#   keypad rows 38 39 40 41 (driven), cols 1 2 42 47 (pull-up)
import sys

import machine
from machine import Pin


class Board:
    name = "esp32s3"
    ctrl_c_is_byte = False  # the USB REPL raises KeyboardInterrupt itself
    sim = None

    def __init__(self):
        from drivers.ssd1306 import SSD1306_I2C
        from drivers.keypad import Keypad
        from drivers.mfrc522_poll import MFRC522Poll

        self.stdin = sys.stdin.buffer
        self.stdout = sys.stdout.buffer
        # SSD1306 I2C clock up to 400 kHz (datasheet §13, I2C timing)
        self.display = SSD1306_I2C(machine.I2C(0, sda=Pin(8), scl=Pin(9), freq=400000), 0x3C)
        # Rows open-drain (released = high) so two held keys never short two outputs.
        rows = [Pin(n, Pin.OPEN_DRAIN, value=1) for n in (38, 39, 40, 41)]
        cols = [Pin(n, Pin.IN, Pin.PULL_UP) for n in (1, 2, 42, 47)]
        self.keypad = Keypad(rows, cols)
        # MFRC522 SPI: mode 0, MSB first, up to 10 Mbit/s (datasheet §8.1.2)
        spi = machine.SPI(2, baudrate=4000000, polarity=0, phase=0,
                          sck=Pin(12), mosi=Pin(11), miso=Pin(13))
        self.reader = MFRC522Poll(spi, Pin(10, Pin.OUT, value=1), Pin(14, Pin.OUT, value=1))

    def __getattr__(self, name):
        # Built on first use: the link manager and the sale ask for them.
        if name == "modem":
            from drivers.sim7600 import SIM7600
            uart = machine.UART(1, 115200, tx=17, rx=18, rxbuf=1024, timeout=0)
            m = SIM7600(uart, Pin(21, Pin.OUT, value=1))
        elif name == "scanner":
            from drivers.gm65 import GM65
            m = GM65(machine.UART(2, 9600, tx=4, rx=5, rxbuf=512, timeout=0))
        elif name == "wlan":
            import network
            m = network.WLAN(network.STA_IF)
        else:
            raise AttributeError(name)
        setattr(self, name, m)
        return m

    def reset(self):
        machine.reset()
