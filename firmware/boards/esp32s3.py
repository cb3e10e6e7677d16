# ESP32-S3 devboard (e.g. ESP32-S3-DevKitC-1): the only firmware file, with
# rp2.py, that knows pin numbers. Pin map (change here for another layout):
#   I2C0  SDA 8, SCL 9        SSD1306 OLED at 0x3C
#   SPI2  SCK 12, MOSI 11, MISO 13, CS 10, RST 14   MFRC522
#   UART1 TX 17, RX 18        SIM7600 modem, PWRKEY 21
#   UART2 TX 4, RX 5          GM65 scanner
#   keypad rows 38 39 40 41 (driven), cols 1 2 42 47 (pull-up)
import sys

import machine


class Board:
    name = "esp32s3"
    ctrl_c_is_byte = False  # the USB REPL raises KeyboardInterrupt itself

    def __init__(self):
        self.stdin = sys.stdin.buffer
        self.stdout = sys.stdout.buffer
        self.display = self.keypad = self.reader = None
        self.modem = self.wlan = self.scanner = None
        self.sim = None

    def reset(self):
        machine.reset()
