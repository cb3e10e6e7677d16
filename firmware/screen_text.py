# Reads the text back from a 128x64 MONO_VLSB panel image: the UI draws on
# an 8-pixel grid with the framebuf 8x8 font (ui_draw), so each character
# is 8 bytes of one page; double-size characters are 16 columns x 2 pages.
# The glyph table is one flat byte string searched with find(): little heap.
# Used by the `screen` console command; imported only when it runs.
import framebuf

from firmware import ui_draw

_FIRST = 33                      # '!' .. '~'
_N = 94


def _table():
    # The 94 printable glyphs of the framebuf font, 8 bytes each, in order.
    small = bytearray(8 * _N)
    fb = framebuf.FrameBuffer(small, 8 * _N, 8, framebuf.MONO_VLSB)
    for i in range(_N):
        fb.text(chr(_FIRST + i), 8 * i, 0, 1)
    return small


def _big_at(small, top, bot, cell, big, bfb):
    # Is there a double-size glyph in these 16 columns x 2 pages? Shrink it
    # to 8x8 (every other pixel), look that up, then redraw it double size
    # and compare, so no table of large glyphs is needed.
    for cx in range(8):
        t, b = top[2 * cx], bot[2 * cx]
        v = 0
        for cy in range(4):
            v |= ((t >> (2 * cy)) & 1) << cy
            v |= ((b >> (2 * cy)) & 1) << (cy + 4)
        cell[cx] = v
    if not any(cell):
        return -1
    i = _find(small, cell, 8)
    if i < 0:
        return -1
    ui_draw.big(bfb, 0, chr(_FIRST + i), 0, 16)
    return i if big[:16] == top[:16] and big[16:] == bot[:16] else -1


def _find(table, key, size):
    i = table.find(key)
    while i >= 0 and i % size:
        i = table.find(key, i + 1)
    return -1 if i < 0 else i // size


def decode(img):
    # -> {"text": [8 strings], "inverted": [rows], "big": [strings]}
    small = _table()
    mv = memoryview(img)
    lines = [""] * 8
    inverted = []
    bigs = []
    done = 0                                 # bit p set: page p already read
    cell = bytearray(8)
    big = bytearray(32)
    bfb = framebuf.FrameBuffer(big, 16, 16, framebuf.MONO_VLSB)
    for p in range(7):                       # double-size lines first
        if done & (1 << p):
            continue
        s = ""
        x = 0
        while x + 16 <= 128:
            i = _big_at(small, mv[p * 128 + x:p * 128 + x + 16],
                        mv[(p + 1) * 128 + x:(p + 1) * 128 + x + 16], cell, big, bfb)
            if i >= 0:
                s += chr(_FIRST + i)
                x += 16
            else:
                x += 8
        if s:
            bigs.append(s)
            lines[p] = s
            done |= 3 << p
    cell = bytearray(8)
    for p in range(8):
        if done & (1 << p):
            continue
        page = mv[p * 128:(p + 1) * 128]
        best = None
        for inv in (0, 0xFF):   # an inverted row is dark text on a lit band
            out = ""
            for x in range(0, 128, 8):
                cell[:] = page[x:x + 8]
                if inv:
                    for k in range(8):
                        cell[k] ^= 0xFF
                if not any(cell):
                    out += " "
                else:
                    i = _find(small, cell, 8)
                    out += chr(_FIRST + i) if i >= 0 else "?"
            if best is None or out.count("?") < best[1].count("?"):
                best = (inv, out)
            if "?" not in out:
                break
        lines[p] = best[1].strip()
        if best[0] and lines[p]:
            inverted.append(p)
    return {"text": lines, "inverted": inverted, "big": bigs}
