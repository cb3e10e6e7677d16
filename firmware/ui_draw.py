# Drawing primitives of the 128x64 UI on a framebuf: text rows (8 rows of
# 16 characters, placed on an 8-pixel grid so that `screen` can read them
# back), inverted menu rows, a double-size amount line, a masked PIN line
# and a QR matrix scaled to fit.
import framebuf

W = 128
H = 64
COLS = 16

_scratch = bytearray(8)
_sfb = framebuf.FrameBuffer(_scratch, 8, 8, framebuf.MONO_VLSB)


def _ascii(text):
    # The built-in 8x8 font has ASCII glyphs only, and framebuf.text draws one per byte: a
    # character outside it (a CJK region name) shows as one "?" cell, not as 3 garbage cells.
    for c in text:
        if not " " <= c <= "~":
            return "".join(c if " " <= c <= "~" else "?" for c in text)
    return text


def row(fb, r, text, inverted=False, center=False):
    text = _ascii(text)[:COLS]
    x = ((COLS - len(text)) // 2) * 8 if center else 0
    y = r * 8
    fb.fill_rect(0, y, W, 8, 1 if inverted else 0)
    fb.text(text, x, y, 0 if inverted else 1)


def wrap(text, n=2):
    # text in at most n rows of COLS characters, broken at spaces (the last row is cut): a
    # warning must be read whole ("location 440100 not authorized"), not cut at 16 characters.
    out = []
    for w in text.split():
        if out and len(out[-1]) + 1 + len(w) <= COLS:
            out[-1] += " " + w
        elif len(out) < n:
            out.append(w)
        else:
            out[-1] += " " + w
            break
    return out


def big(fb, r, text, x=None, width=W):
    # Double-size text on rows r, r+1 (8 characters of 16x16 fit), right-aligned
    # as amounts are (or from x), on the 8-pixel grid. Longer text (an amount of
    # 100000.00 and more) is drawn in the normal font on row r instead: shown
    # whole, never cut to its last 8 characters.
    text = _ascii(text)
    y = r * 8
    fb.fill_rect(0, y, width, 16, 0)
    if len(text) > 8:
        text = text[-COLS:]
        fb.text(text, width - 8 * len(text) if x is None else x, y, 1)
        return
    if x is None:
        x = width - 16 * len(text)
    for ch in text:
        _sfb.fill(0)
        _sfb.text(ch, 0, 0, 1)
        for cx in range(8):
            col = _scratch[cx]
            if not col:
                continue
            for cy in range(8):
                if col & (1 << cy):
                    fb.fill_rect(x + 2 * cx, y + 2 * cy, 2, 2, 1)
        x += 16


def pin(fb, r, n, label="PIN: "):
    # The PIN itself never reaches the UI layer: only how many digits.
    row(fb, r, label + "*" * n)


def qr(fb, size, dark, title=None):
    # A QR matrix of size x size modules (dark(x, y) -> bool), scaled by the
    # largest integer that fits with a 1-module quiet zone, centred.
    fb.fill(0)
    top = 8 if title else 0
    if title:
        row(fb, 0, title, center=True)
    avail = min(W, H - top)
    scale = avail // (size + 2)
    if scale < 1:
        raise ValueError("QR of %d modules does not fit %d pixels" % (size, avail))
    side = scale * (size + 2)
    x0 = (W - side) // 2 + scale
    y0 = top + (H - top - side) // 2 + scale
    fb.fill_rect(x0 - scale, y0 - scale, side, side, 0)
    for y in range(size):
        for x in range(size):
            if dark(x, y):
                fb.fill_rect(x0 + x * scale, y0 + y * scale, scale, scale, 1)
    return scale


def money(minor, decimals=2):
    # 125 -> "1.25" (minor units of the region's currency).
    s = "%0*d" % (decimals + 1, minor)
    return s[:-decimals] + "." + s[-decimals:] if decimals else s
