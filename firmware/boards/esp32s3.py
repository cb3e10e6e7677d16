# ESP32-S3 devboard (e.g. ESP32-S3-DevKitC-1): its pin map, the only place
# that knows these numbers. Change them here for another layout.
from firmware.boards.devboard import DevBoard


class Board(DevBoard):
    name = "esp32s3"
    I2C = (0, 8, 9)                  # id, SDA, SCL: SSD1306 OLED at 0x3C
    SPI = (2, 12, 11, 13)            # id, SCK, MOSI, MISO: MFRC522
    NFC = (10, 14)                   # CS, RST
    KEY_ROWS = (38, 39, 40, 41)      # driven
    KEY_COLS = (1, 2, 42, 47)        # pull-up
    MODEM = (1, 17, 18, 21)          # UART id, TX, RX, PWRKEY: SIM7600
    SCANNER = (2, 4, 5)              # UART id, TX, RX: GM65
