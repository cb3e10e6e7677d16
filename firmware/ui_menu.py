# The menu screen (key D at idle): inverted row = selection; digits pick,
# B moves down, C/# opens, A goes back. Imported when the menu opens.
from firmware import state, ui
from firmware import ui_draw as draw

MENU = ("LINK STATUS", "SIGNAL", "ABOUT")
sel = 0


def show():
    global sel
    sel = 0
    _draw()


def key(k):
    global sel
    if k == "A":
        ui.show_idle()
    elif "1" <= k <= "9" and int(k) <= len(MENU):
        sel = int(k) - 1
        _draw()
    elif k == "B":
        sel = (sel + 1) % len(MENU)
        _draw()
    elif k in "C#":
        _enter()


def _draw():
    ui.screen = "menu"
    fb = ui._fb
    if fb is None:
        return
    fb.fill(0)
    draw.row(fb, 0, "MENU", center=True)
    for i, item in enumerate(MENU):
        draw.row(fb, 2 + i, "%d %s" % (i + 1, item), inverted=(i == sel))
    draw.row(fb, 7, "C=OK  A=BACK")
    ui._show()


def _enter():
    item = MENU[sel]
    if item == "ABOUT":
        from firmware.version import VERSION
        ui.message("ABOUT", ("RoamPOS", VERSION))
    elif item == "SIGNAL":
        from firmware import link
        s = link.status()
        dbm = s.get("signal_dbm")   # None while no radio is up
        ui.message("SIGNAL", ("%s dBm" % ("--" if dbm is None else dbm),))
    else:
        lines = [ui.link_label(state.link)]
        for k, v in sorted((state.location or {}).items()):
            if k == "bssid" and v:  # "02:52:50:00:00:01" is 17 characters: in two halves
                lines += (k, v[:9], v[9:])
            else:
                lines.append("%s %s" % (k, v))
        ui.message("LINK", lines)
