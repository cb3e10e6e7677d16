# SSD1306 model: decodes the command/data stream (I2C control bytes, or SPI
# with a D/C# pin) into its 8-page GDDRAM with the addressing modes of the
# datasheet (§10.1.3), and renders what the panel shows.

# Opcode -> number of argument bytes, for commands that take any (§9 table).
_ARGS = b"\x81\x01\x20\x01\x21\x02\x22\x02\xa8\x01\xd3\x01\xd5\x01\xd9\x01\xda\x01\xdb\x01" \
        b"\x8d\x01\xa3\x02\x26\x06\x27\x06\x29\x05\x2a\x05"


def _nargs(op):
    for i in range(0, len(_ARGS), 2):
        if _ARGS[i] == op:
            return _ARGS[i + 1]
    return 0


class SSD1306Model:
    def __init__(self, dc=None):
        self.ram = bytearray(1024)
        self.dc = dc            # SPI variant: the D/C# pin
        self.on = False
        self.contrast = 0x7F
        self.inverse = self.all_on = self.remap = self.comdec = self.charge_pump = False
        self.mode = 2           # page addressing after reset (§10.1.3)
        self.c0, self.c1, self.p0, self.p1 = 0, 127, 0, 7
        self.col = self.page = 0
        self._cmd = None        # command being assembled: [opcode, nargs, args...]
        self.errors = 0         # opcodes this model does not know

    # I2C (§8.1.5.2): control byte Co|D/C#; Co=1 means one byte, then control again
    def i2c_write(self, vector):
        ctrl = -1
        cont = True
        for buf in vector:
            for b in buf:
                if ctrl < 0:
                    cont = b & 0x80
                    ctrl = b & 0x40
                    continue
                if ctrl:
                    self.data(b)
                else:
                    self.command(b)
                if cont:
                    ctrl = -1

    # SPI (§8.1.3): D/C# selects command or data
    def begin(self):
        pass

    end = begin

    def xfer(self, b):
        if self.dc is not None and self.dc.value():
            self.data(b)
        else:
            self.command(b)
        return 0

    def command(self, b):
        c = self._cmd
        if c is None:
            n = _nargs(b)
            if n:
                self._cmd = [b, n]
            else:
                self._exec(b, None)
            return
        c.append(b)
        if len(c) - 2 == c[1]:
            self._cmd = None
            self._exec(c[0], c[2:])

    def _exec(self, op, a):
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
        elif op >> 1 == 0xAE >> 1:
            self.on = op == 0xAF
        elif op >> 1 == 0xA6 >> 1:
            self.inverse = op == 0xA7
        elif op >> 1 == 0xA4 >> 1:
            self.all_on = op == 0xA5
        elif op >> 1 == 0xA0 >> 1:
            self.remap = op == 0xA1
        elif op in (0xC0, 0xC8):
            self.comdec = op == 0xC8
        elif 0xB0 <= op <= 0xB7:            # page mode: page start
            self.page = op & 7
        elif op <= 0x0F:                     # page mode: lower column nibble
            self.col = (self.col & 0xF0) | op
        elif op <= 0x1F:                     # page mode: higher column nibble
            self.col = (self.col & 0x0F) | ((op & 0x0F) << 4)
        elif a is None and not (0x40 <= op <= 0x7F or op in (0x2E, 0x2F, 0xE3)):
            self.errors += 1

    def data(self, b):
        self.ram[self.page * 128 + (self.col & 127)] = b
        if self.mode == 0:      # horizontal: column first, then next page
            if self.col >= self.c1:
                self.col = self.c0
                self.page = self.p0 if self.page >= self.p1 else self.page + 1
            else:
                self.col += 1
        elif self.mode == 1:    # vertical: page first, then next column
            if self.page >= self.p1:
                self.page = self.p0
                self.col = self.c0 if self.col >= self.c1 else self.col + 1
            else:
                self.page += 1
        else:                   # page mode: the column wraps inside the page
            self.col = (self.col + 1) & 127

    def visible(self):
        # The panel image as MONO_VLSB bytes. A1 + C8 (segment remap, COM
        # scan from COM63) is the upright orientation of the usual module.
        out = bytearray(1024)
        if not self.on or not self.charge_pump:
            return out          # off, or no panel voltage: the usual module has no external VCC,
            #                     only the internal charge pump (8D 14, app note) lights it
        ram = self.ram
        for page in range(8):
            src = page if self.comdec else 7 - page
            for x in range(128):
                b = ram[src * 128 + (x if self.remap else 127 - x)]
                if not self.comdec:  # rows mirrored inside the page too
                    r = 0
                    for i in range(8):
                        r = (r << 1) | ((b >> i) & 1)
                    b = r
                if self.all_on:
                    b = 0xFF
                if self.inverse:
                    b ^= 0xFF
                out[page * 128 + x] = b
        return out
