# Raspberry Pi Pico W (RP2040) / Pico 2 W (RP2350): its pin map (GP numbers),
# the only place that knows these numbers.
from firmware.boards.devboard import DevBoard


class Board(DevBoard):
    name = "rp2"
    I2C = (0, 4, 5)                  # id, SDA, SCL: SSD1306 OLED at 0x3C
    SPI = (0, 18, 19, 16)            # id, SCK, MOSI, MISO: MFRC522
    NFC = (17, 20)                   # CS, RST
    KEY_ROWS = (10, 11, 12, 13)      # driven
    KEY_COLS = (6, 7, 14, 15)        # pull-up
    MODEM = (0, 0, 1, 22)            # UART id, TX, RX, PWRKEY: SIM7600
    SCANNER = (1, 8, 9)              # UART id, TX, RX: GM65
