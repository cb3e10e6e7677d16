# UI drawing primitives and the text read-back used by `screen`.
import framebuf

from firmware import ui_draw as draw
from firmware import screen_text


def fb():
    buf = bytearray(1024)
    return buf, framebuf.FrameBuffer(buf, 128, 64, framebuf.MONO_VLSB)


def test_rows_big_amount_and_pin_read_back():
    buf, f = fb()
    draw.row(f, 0, "SALE")
    draw.row(f, 2, "1 LINK STATUS", inverted=True)
    draw.big(f, 4, draw.money(123456))
    draw.pin(f, 7, 4)
    d = screen_text.decode(buf)
    assert d["text"][0] == "SALE" and d["text"][2] == "1 LINK STATUS", d
    assert d["inverted"] == [2] and d["big"] == ["1234.56"], d
    assert d["text"][7] == "PIN: ****", d
    assert "1" not in d["text"][7] and "2" not in d["text"][7]


def test_money():
    assert draw.money(125) == "1.25" and draw.money(5) == "0.05" and draw.money(0) == "0.00"
    assert draw.money(7, 0) == "7"


def test_qr_scaled_to_fit():
    buf, f = fb()
    # a 21x21 (version 1) matrix: finder-like corners and a checker body
    dark = lambda x, y: (x < 7 and y < 7) or (x + y) % 2 == 0
    scale = draw.qr(f, 21, dark)
    assert scale == 2, scale                 # (21 + 2 quiet) * 2 = 46 <= 64
    x0 = (128 - 2 * 23) // 2 + 2
    y0 = (64 - 2 * 23) // 2 + 2
    assert f.pixel(x0, y0) == 1 and f.pixel(x0 - 1, y0 - 1) == 0
    assert draw.qr(f, 25, dark, title="SCAN TO PAY") == 2   # 27*2 = 54 <= 56
    try:
        draw.qr(f, 70, dark)
    except ValueError:
        pass
    else:
        raise AssertionError("a 70-module QR does not fit")


def test_text_outside_the_font_is_one_cell_per_character():
    buf, f = fb()
    draw.row(f, 0, "深圳 Shenzhen", center=True)   # 2 CJK characters: 2 cells, not 6
    d = screen_text.decode(buf)
    assert d["text"][0] == "?? Shenzhen", d
