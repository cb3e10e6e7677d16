# SSD1306 model: decodes the command/data stream (I2C control bytes or SPI
# with a D/C# pin) into its 128x8-page GDDRAM, with the addressing modes of
# the datasheet (§10.1.3), and renders what the panel shows.

# Commands with arguments -> argument count (SSD1306 datasheet §9 table).
_ARGS = {0x81: 1, 0x20: 1, 0x21: 2, 0x22: 2, 0xA8: 1, 0xD3: 1, 0xD5: 1, 0xD9: 1,
         0xDA: 1, 0xDB: 1, 0x8D: 1, 0xA3: 2, 0x26: 6, 0x27: 6, 0x29: 5, 0x2A: 5}


class SSD1306Model:
    def __init__(self, dc=None):
        self.ram = bytearray(1024)
        self.dc = dc          # SPI variant: the D/C# pin
        self.reset()

    def reset(self):
        self.on = False
        self.contrast = 0x7F
        self.inverse = False
        self.all_on = False
        self.remap = False    # A0: column 0 -> SEG0 (mirror of the usual mounting)
        self.comdec = False   # C0: COM0 first
        self.charge_pump = False
        self.mode = 2         # page addressing after reset (§10.1.3)
        self.c0, self.c1, self.p0, self.p1 = 0, 127, 0, 7
        self.col, self.page = 0, 0
        self._cmd = None      # command being assembled: [opcode, args...]
        self.commands = 0
        self.data_bytes = 0
        self.errors = 0
        self._first = True    # I2C: next byte is a control byte

    # -- I2C transport (§8.1.5.2) ------------------------------------------
    def i2c_write(self, vector):
        ctrl = None  # None: expecting a control byte
        cont = True
        for buf in vector:
            for b in buf:
                if ctrl is None:
                    cont = bool(b & 0x80)      # Co: one byte, then a control byte again
                    ctrl = b & 0x40            # D/C#
                    continue
                if ctrl:
                    self.data(b)
                else:
                    self.command(b)
                if cont:
                    ctrl = None

    def i2c_read(self, n):
        # Status read (D/C#=0): bit 6 = display off.
        return bytes([0x00 if self.on else 0x40]) * n

    # -- SPI transport (§8.1.3) -------------------------------------------
    def begin(self):
        pass

    def end(self):
        pass

    def xfer(self, b):
        if self.dc is not None and self.dc.value():
            self.data(b)
        else:
            self.command(b)
        return 0

    # -- command decoder --------------------------------------------------
    def command(self, b):
        c = self._cmd
        if c is None:
            n = _ARGS.get(b, 0)
            if n:
                self._cmd = [b, n]
                return
            self._exec(b, ())
            return
        c.append(b)
        if len(c) - 2 == c[1]:
            self._cmd = None
            self._exec(c[0], c[2:])

    def _exec(self, op, a):
        self.commands += 1
        if op == 0x81:
            self.contrast = a[0]
        elif op == 0x20:
            self.mode = a[0] & 3
        elif op == 0x21:
            self.c0, self.c1 = a[0] & 127, a[1] & 127
            self.col = self.c0
        elif op == 0x22:
            self.p0, self.p1 = a[0] & 7, a[1] & 7
            self.page = self.p0
        elif op == 0x8D:
            self.charge_pump = bool(a[0] & 0x04)
        elif op in (0xAE, 0xAF):
            self.on = op == 0xAF
        elif op in (0xA6, 0xA7):
            self.inverse = op == 0xA7
        elif op in (0xA4, 0xA5):
            self.all_on = op == 0xA5
        elif op in (0xA0, 0xA1):
            self.remap = op == 0xA1
        elif op in (0xC0, 0xC8):
            self.comdec = op == 0xC8
        elif 0xB0 <= op <= 0xB7:            # page start, page mode (§10.1.3)
            self.page = op & 7
        elif op <= 0x0F:                     # lower column nibble, page mode
            self.col = (self.col & 0xF0) | op
        elif op <= 0x1F:                     # higher column nibble, page mode
            self.col = (self.col & 0x0F) | ((op & 0x0F) << 4)
        elif op in _ARGS or 0x40 <= op <= 0x7F or op in (0x2E, 0x2F, 0xE3, 0xA3):
            pass                             # accepted, no effect on the image
        else:
            self.errors += 1

    def data(self, b):
        self.data_bytes += 1
        self.ram[self.page * 128 + (self.col & 127)] = b
        if self.mode == 0:      # horizontal: column first, wrap to next page
            if self.col >= self.c1:
                self.col = self.c0
                self.page = self.p0 if self.page >= self.p1 else self.page + 1
            else:
                self.col += 1
        elif self.mode == 1:    # vertical: page first, wrap to next column
            if self.page >= self.p1:
                self.page = self.p0
                self.col = self.c0 if self.col >= self.c1 else self.col + 1
            else:
                self.page += 1
        else:                   # page mode: column pointer wraps in the page
            self.col = (self.col + 1) & 127

    # -- what the panel shows ----------------------------------------------
    def visible(self, out=None):
        # The panel image as MONO_VLSB bytes (same layout as the GDDRAM).
        # A1 + C8 is the upright orientation of the usual 128x64 module.
        out = out if out is not None else bytearray(1024)
        if not self.on:
            for i in range(1024):
                out[i] = 0
            return out
        ram = self.ram
        fill = 0xFF if self.all_on else -1
        for page in range(8):
            src = page if self.comdec else 7 - page
            for x in range(128):
                b = ram[src * 128 + (x if self.remap else 127 - x)]
                if not self.comdec:  # rows mirrored inside the page too
                    b = int("{:08b}".format(b)[::-1], 2)
                if fill >= 0:
                    b = fill
                if self.inverse:
                    b ^= 0xFF
                out[page * 128 + x] = b
        return out
