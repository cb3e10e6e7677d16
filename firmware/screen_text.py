# Reads the text back from a 128x64 MONO_VLSB panel image: the UI draws on
# an 8-pixel grid with the framebuf 8x8 font (ui_draw), so each character
# is 8 bytes of one page; double-size characters are 16 columns x 2 pages.
# Used by the `screen` console command; imported only when it runs.
import framebuf

from firmware import ui_draw


def _tables():
    small, large = {}, {}
    buf = bytearray(8)
    fb = framebuf.FrameBuffer(buf, 8, 8, framebuf.MONO_VLSB)
    bbuf = bytearray(32)
    bfb = framebuf.FrameBuffer(bbuf, 16, 16, framebuf.MONO_VLSB)
    for c in range(33, 127):
        ch = chr(c)
        fb.fill(0)
        fb.text(ch, 0, 0, 1)
        small[bytes(buf)] = ch
        ui_draw.big(bfb, 0, ch, 0, 16)
        large[bytes(bbuf)] = ch
    return small, large


def decode(img):
    # -> {"text": [8 strings], "inverted": [rows], "big": [strings]}
    small, large = _tables()
    mv = memoryview(img)
    lines = [""] * 8
    inverted = []
    bigs = []
    skip = set()
    for p in range(7):
        if p in skip:
            continue                       # double-size lines first
        s = ""
        found = False
        x = 0
        top, bot = mv[p * 128:(p + 1) * 128], mv[(p + 1) * 128:(p + 2) * 128]
        while x + 16 <= 128:
            ch = large.get(bytes(top[x:x + 16]) + bytes(bot[x:x + 16]))
            if ch is not None:
                s += ch
                found = True
                x += 16
            else:
                x += 8
        if found:
            bigs.append(s)
            lines[p] = s
            skip.add(p)
            skip.add(p + 1)
    for p in range(8):
        if p in skip:
            continue
        page = mv[p * 128:(p + 1) * 128]
        inv = sum(1 for b in page if b == 0xFF) > 64
        out = []
        for x in range(0, 128, 8):
            chunk = bytes(page[x:x + 8])
            if inv:
                chunk = bytes(b ^ 0xFF for b in chunk)
            if chunk == b"\x00" * 8:
                out.append(" ")
            else:
                out.append(small.get(chunk, "?"))
        lines[p] = "".join(out).strip()
        if inv:
            inverted.append(p)
    return {"text": lines, "inverted": inverted, "big": bigs}
