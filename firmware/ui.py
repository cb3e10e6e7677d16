# The terminal's screens and keypad handling: idle, amount entry, tap card,
# messages and a small menu. Other subsystems call refresh() after changing
# firmware.state (mode, region, location warning, link) to redraw idle.
# Keys (drivers/keypad.py): digits enter the amount; A = CANCEL,
# B = CLEAR (backspace), C or # = ENTER, D = MENU; * is not used.
# The drawing code (ui_draw, stateless) is imported per screen and dropped
# once idle is drawn: the terminal idles without it (~1 KB of heap).
import asyncio
import sys

from firmware import console, state

_MAX_DIGITS = 9            # 9,999,999.99 at most

_fb = None                 # the display driver (a framebuf), or None
screen = "idle"            # what is shown: idle, amount, tap, message, menu
digits = ""                # amount being typed, minor units as a string
_back = None               # task that returns to idle after a message



def start(board):
    # Called once at boot: draw idle, start the keypad scanning task.
    global _fb
    _fb = board.display
    if _fb is not None:
        try:
            _fb.init_display()
        except Exception as e:  # a missing panel must not stop the terminal
            from firmware import console
            console.event({"display": "absent", "error": str(e)})
            _fb = None
    show_idle()
    if board.keypad is not None:
        asyncio.create_task(board.keypad.run(key, _key_failed))


def _key_failed(e):
    from firmware import console
    console.failed("keypad", e)


def _show(first=0, last=7):
    if _fb is not None:
        if first == 0 and last == 7:
            _fb.show()
        else:
            _fb.show_pages(first, last)


def refresh():
    # Redraw after a state change; only the idle screen depends on state.
    if screen == "idle":
        show_idle()


def link_label(link):
    # state.link as the idle screen's corner shows it.
    return "WIFI" if link == "wifi" else "4G" if link == "cell" else "--"


def _draw():
    from firmware import ui_draw
    return ui_draw


def _drop_draw():
    # Idle is drawn: modules that imported ui_draw keep their copy, we do not.
    sys.modules.pop("firmware.ui_draw", None)
    pkg = sys.modules.get("firmware")
    if hasattr(pkg, "ui_draw"):
        delattr(pkg, "ui_draw")


def _page(name, title, inverted=False, center=False):
    # Start drawing screen `name`: a cleared frame with its title row. Returns
    # the drawing module, or None on a board without a display.
    global screen
    screen = name
    _cancel_back()
    if _fb is None:
        return None
    draw = _draw()
    _fb.fill(0)
    draw.row(_fb, 0, title, inverted=inverted, center=center)
    return draw


def show_idle():
    global digits
    digits = ""
    draw = _page("idle", "RoamPOS")
    if draw is None:
        return
    fb = _fb
    link = link_label(state.link)
    fb.text(link, 128 - 8 * len(link), 0, 1)
    draw.row(fb, 1, state.region_name or (state.region or ""))
    if state.mode != "ready":   # on row 3, or 2 and 3: "PARAMETERS DAMAGED" is 18 characters
        lines = draw.wrap(state.mode.upper())
        for i, ln in enumerate(lines):
            draw.row(fb, 4 - len(lines) + i, ln, inverted=True, center=True)
    if state.location_warning:  # rows 4 and 5
        for i, ln in enumerate(draw.wrap(state.location_warning)):
            draw.row(fb, 4 + i, ln, inverted=True, center=True)
    draw.row(fb, 7, "ENTER AMOUNT", center=True)
    _show()
    _drop_draw()


def _amount_screen():
    draw = _page("amount", "SALE")
    if draw is not None:
        draw.big(_fb, 3, draw.money(int(digits or "0")))
        draw.row(_fb, 7, "C=OK  A=CANCEL")
        _show()


def _amount_update():
    # Partial refresh: only the two pages of the amount line.
    if _fb is not None:
        draw = _draw()
        draw.big(_fb, 3, draw.money(int(digits or "0")))
        _show(3, 4)


def show_tap(amount, note=None):
    # note: why the last tap did not complete the sale (a read error), shown above A=CANCEL.
    draw = _page("tap", "SALE")
    if draw is not None:
        draw.big(_fb, 2, draw.money(amount))
        draw.row(_fb, 5, "TAP AGAIN" if note else "TAP CARD", center=True)
        if note:
            draw.row(_fb, 6, note, inverted=True, center=True)
        draw.row(_fb, 7, "A=CANCEL")
        _show()


def message(title, lines=(), back_ms=3000, inverted=False):
    # A message screen; returns to idle after back_ms (0 = stays).
    global _back
    draw = _page("message", title, inverted=inverted, center=True)
    if draw is not None:
        for i, ln in enumerate(lines[:6]):
            draw.row(_fb, 2 + i, ln, center=True)
        _show()
    if back_ms:
        _back = asyncio.create_task(_idle_after(back_ms))


async def _idle_after(ms):
    await asyncio.sleep_ms(ms)
    global _back
    _back = None
    if screen == "message":
        show_idle()


def _cancel_back():
    global _back
    if _back is not None:
        _back.cancel()
        _back = None


def key(k, repeat=False):
    # Keypad callback (from the scanning task and from tests).
    global digits
    console.idle(True)  # someone at the keypad: an operator session's idle time starts again
    if screen == "idle" or screen == "message":
        if repeat:
            return
        if "0" <= k <= "9":
            digits = "" if k == "0" else k
            _amount_screen()
        elif k == "D":
            from firmware import ui_menu
            ui_menu.show()
        elif screen == "message" and k in "AC#":
            show_idle()
    elif screen == "amount":
        if "0" <= k <= "9":
            if not repeat and len(digits) < _MAX_DIGITS and (digits or k != "0"):
                digits += k
                _amount_update()
        elif k == "B":
            digits = digits[:-1]
            _amount_update()
        elif k == "A" and not repeat:
            show_idle()
        elif k in "C#" and not repeat and digits:
            from firmware import sale
            sale.start(int(digits))
    elif screen == "tap":
        if k == "A" and not repeat:
            from firmware import sale
            sale.cancel("cancelled")
    elif screen == "menu" and not repeat:
        from firmware import ui_menu
        ui_menu.key(k)
