# SSD1306 128x64 OLED driver (I2C here, 4-wire SPI in ssd1306_spi): a framebuf with init,
# contrast, power save, full refresh and partial refresh by page range.
# References: Solomon Systech SSD1306 datasheet Rev 1.1 (§ numbers below).
import framebuf
from micropython import const

# Fundamental and hardware configuration commands (§9 command table, §10.1).
_SET_CONTRAST = const(0x81)      # §10.1.7, one argument 0..255
_ENTIRE_ON = const(0xA4)         # §10.1.8: A4 follows RAM, A5 all pixels on
_NORM_INV = const(0xA6)          # §10.1.9: A6 normal, A7 inverse
_DISP_OFF = const(0xAE)          # §10.1.12: AE sleep (power save), AF on
_DISP_ON = const(0xAF)
_MEM_ADDR = const(0x20)          # §10.1.3: 0 horizontal, 1 vertical, 2 page
_COL_ADDR = const(0x21)          # §10.1.4: start, end column
_PAGE_ADDR = const(0x22)         # §10.1.5: start, end page
_START_LINE = const(0x40)        # §10.1.6
_SEG_REMAP = const(0xA1)         # §10.1.8: column 127 -> SEG0
_MUX_RATIO = const(0xA8)         # §10.1.11
_COM_DIR = const(0xC8)           # §10.1.14: scan COM[N-1] -> COM0
_DISP_OFFSET = const(0xD3)       # §10.1.15
_COM_PINS = const(0xDA)          # §10.1.18: 0x12 alternative, for 64 rows
_CLK_DIV = const(0xD5)           # §10.1.16: 0x80 = reset value
_PRECHARGE = const(0xD9)         # §10.1.17
_VCOM_DESEL = const(0xDB)        # §10.1.19
_CHARGE_PUMP = const(0x8D)       # charge pump setting (app note): 0x14 enable

WIDTH = const(128)
HEIGHT = const(64)
PAGES = const(8)

# Power-on sequence of the datasheet's software initialization flow chart
# (Appendix "Application Example"), with horizontal addressing so that one
# data stream fills the whole GDDRAM, and the internal charge pump on.
INIT = (  # one bytes constant (a tuple would stay in the heap too)
    b"\xae"                 # _DISP_OFF
    b"\xd5\x80"             # _CLK_DIV: reset value
    b"\xa8\x3f"             # _MUX_RATIO: HEIGHT - 1
    b"\xd3\x00"             # _DISP_OFFSET
    b"\x40"                 # _START_LINE 0
    b"\x8d\x14"             # _CHARGE_PUMP: enable
    b"\x20\x00"             # _MEM_ADDR: horizontal
    b"\xa1"                 # _SEG_REMAP
    b"\xc8"                 # _COM_DIR
    b"\xda\x12"             # _COM_PINS: alternative, 64 rows
    b"\x81\xcf"             # _SET_CONTRAST
    b"\xd9\xf1"             # _PRECHARGE
    b"\xdb\x40"             # _VCOM_DESEL
    b"\xa4"                 # _ENTIRE_ON: follow RAM
    b"\xa6"                 # _NORM_INV: normal
    b"\xaf"                 # _DISP_ON
)


class SSD1306(framebuf.FrameBuffer):
    # The transport subclasses implement _cmd(buf) and _data(buf).
    def __init__(self):
        self.width = WIDTH
        self.height = HEIGHT
        self.buffer = bytearray(WIDTH * PAGES)
        self._mv = memoryview(self.buffer)
        self._c = bytearray(6)  # reused command buffer, never reallocated
        super().__init__(self.buffer, WIDTH, HEIGHT, framebuf.MONO_VLSB)
        self.on = False

    def init_display(self):
        self._cmd(INIT)
        self.on = True
        self.fill(0)
        self.show()

    def _cmdn(self, a, b=-1):
        buf = self._c
        buf[0] = a
        if b < 0:
            self._cmd(memoryview(buf)[:1])
        else:
            buf[1] = b
            self._cmd(memoryview(buf)[:2])

    def contrast(self, level):
        if not 0 <= level <= 255:
            raise ValueError("contrast %r not in 0..255" % (level,))
        self._cmdn(_SET_CONTRAST, level)

    def invert(self, on):
        self._cmdn(_NORM_INV | (1 if on else 0))

    def poweroff(self):
        # Sleep mode (§10.1.12): GDDRAM is kept, the panel is dark.
        self._cmdn(_DISP_OFF)
        self.on = False

    def poweron(self):
        self._cmdn(_DISP_ON)
        self.on = True

    def show(self):
        self.show_pages(0, PAGES - 1)

    def show_pages(self, first, last, x0=0, x1=WIDTH - 1):
        # Partial refresh: only pages first..last (8-pixel bands), columns
        # x0..x1. The address window makes the GDDRAM pointer wrap inside it.
        if not (0 <= first <= last < PAGES and 0 <= x0 <= x1 < WIDTH):
            raise ValueError("window pages %d..%d cols %d..%d" % (first, last, x0, x1))
        c = self._c
        c[0], c[1], c[2], c[3], c[4], c[5] = _COL_ADDR, x0, x1, _PAGE_ADDR, first, last
        self._cmd(c)
        mv = self._mv
        if x0 == 0 and x1 == WIDTH - 1:
            self._data(mv[first * WIDTH:(last + 1) * WIDTH])
        else:
            for p in range(first, last + 1):
                self._data(mv[p * WIDTH + x0:p * WIDTH + x1 + 1])


class SSD1306_I2C(SSD1306):
    # §8.1.5.2: after the slave address a control byte; Co=0 with D/C#=0
    # (0x00) starts a stream of command bytes, D/C#=1 (0x40) of data bytes.
    def __init__(self, i2c, addr=0x3C):
        self.i2c = i2c
        self.addr = addr
        self._vec = [b"\x00", None]  # reused vector for writevto
        super().__init__()

    def _write(self, ctrl, buf):
        v = self._vec
        v[0] = ctrl
        v[1] = buf
        try:
            self.i2c.writevto(self.addr, v)
        except OSError as e:  # say which device: a bare errno does not
            raise OSError("SSD1306 at 0x%02x: I2C error %s" % (self.addr, e))
        finally:
            v[1] = None

    def _cmd(self, buf):
        self._write(b"\x00", buf)

    def _data(self, buf):
        self._write(b"\x40", buf)
