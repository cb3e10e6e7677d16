# Raspberry Pi Pico W (RP2040) / Pico 2 W (RP2350): the only firmware file,
# with esp32s3.py, that knows pin numbers. Pin map:
#   I2C0  SDA GP4, SCL GP5    SSD1306 OLED at 0x3C
#   SPI0  SCK GP18, MOSI GP19, MISO GP16, CS GP17, RST GP20   MFRC522
#   UART0 TX GP0, RX GP1      SIM7600 modem, PWRKEY GP22
#   UART1 TX GP8, RX GP9      GM65 scanner
#   keypad rows GP10-13 (driven), cols GP6, GP7, GP14, GP15 (pull-up)
import sys

import machine


class Board:
    name = "rp2"
    ctrl_c_is_byte = False

    def __init__(self):
        self.stdin = sys.stdin.buffer
        self.stdout = sys.stdout.buffer
        self.display = self.keypad = self.reader = None
        self.modem = self.wlan = self.scanner = None
        self.sim = None

    def reset(self):
        machine.reset()
