# Raspberry Pi Pico W (RP2040) / Pico 2 W (RP2350): the only firmware file,
# with esp32s3.py, that knows pin numbers. Pin map:
#   I2C0  SDA GP4, SCL GP5    SSD1306 OLED at 0x3C
#   SPI0  SCK GP18, MOSI GP19, MISO GP16, CS GP17, RST GP20   MFRC522
#   UART0 TX GP0, RX GP1      SIM7600 modem, PWRKEY GP22
#   UART1 TX GP8, RX GP9      GM65 scanner
#   keypad rows GP10-13 (driven), cols GP6, GP7, GP14, GP15 (pull-up)
import sys

import machine
from machine import Pin


class Board:
    name = "rp2"
    ctrl_c_is_byte = False
    sim = None

    def __init__(self):
        from drivers.ssd1306 import SSD1306_I2C
        from drivers.keypad import Keypad
        from drivers.mfrc522_poll import MFRC522Poll

        self.stdin = sys.stdin.buffer
        self.stdout = sys.stdout.buffer
        self.display = SSD1306_I2C(machine.I2C(0, sda=Pin(4), scl=Pin(5), freq=400000), 0x3C)
        rows = [Pin(n, Pin.OPEN_DRAIN, value=1) for n in (10, 11, 12, 13)]
        cols = [Pin(n, Pin.IN, Pin.PULL_UP) for n in (6, 7, 14, 15)]
        self.keypad = Keypad(rows, cols)
        spi = machine.SPI(0, baudrate=4000000, polarity=0, phase=0,
                          sck=Pin(18), mosi=Pin(19), miso=Pin(16))
        self.reader = MFRC522Poll(spi, Pin(17, Pin.OUT, value=1), Pin(20, Pin.OUT, value=1))

    def __getattr__(self, name):
        if name == "modem":
            from drivers.sim7600 import SIM7600
            uart = machine.UART(0, 115200, tx=Pin(0), rx=Pin(1), rxbuf=1024, timeout=0)
            m = SIM7600(uart, Pin(22, Pin.OUT, value=1))
        elif name == "scanner":
            from drivers.gm65 import GM65
            m = GM65(machine.UART(1, 9600, tx=Pin(8), rx=Pin(9), rxbuf=512, timeout=0))
        elif name == "wlan":
            import network  # Pico W / Pico 2 W (CYW43)
            m = network.WLAN(network.STA_IF)
        else:
            raise AttributeError(name)
        setattr(self, name, m)
        return m

    def reset(self):
        machine.reset()
