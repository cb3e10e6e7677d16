# Card polling: looks for a card in the field a few times a second; a card
# is read (firmware.emv, imported on the first tap) and either attached to
# the sale waiting for it or reported as an event at idle.
import asyncio
import gc
import time

from drivers.nfcerr import NfcError
from firmware import console, state, ui

POLL_MS = 150
last = {}                  # figures of the last read: ms, heap (for bench)


async def run(board):
    rd = board.reader
    try:
        rd.init()
    except Exception as e:  # no reader wired: the rest of the terminal works
        console.event({"reader": "absent", "error": str(e)})
        return
    while True:
        await asyncio.sleep_ms(POLL_MS)
        try:
            atqa = rd.request()
        except NfcError:
            continue
        if atqa is not None:
            read_once(rd, atqa)


def _unload():
    # The EMV and ISO 14443-4 code (~10 KB) leaves the heap after each read;
    # importing it again at the next tap costs a few milliseconds.
    import sys
    import drivers
    import firmware
    for pkg, name in ((firmware, "emv"), (drivers, "iso14443"), (drivers, "iso14443a")):
        sys.modules.pop(pkg.__name__ + "." + name, None)
        try:
            delattr(pkg, name)
        except AttributeError:
            pass
    gc.collect()


def read_once(rd, atqa=None):
    # Activate and read the card in the field; report it. Returns the event.
    from firmware import emv, sale
    t0 = time.ticks_ms()
    try:
        try:
            act = emv.iso14443a.activate(rd, atqa=atqa)
        except NfcError as e:
            raise emv.CardError("read", "activation: %s" % e)
        card = emv.read(rd, act, sale.amount or 0, getattr(state, "currency", 156) or 156)
        ev = card.public()
        card.pan = ""  # the full PAN goes no further than here for now
        del card
    except emv.CardError as e:
        ev = {"error": e.code, "message": e.message}
    ms = time.ticks_diff(time.ticks_ms(), t0)
    last["ms"] = ms
    last["heap"] = gc.mem_alloc()
    ev["ms"] = ms
    _unload()
    if "error" in ev:
        if not sale.card_error(ev["error"], ev["message"]):
            console.event({"card": ev})
            ui.message("CARD ERROR", (ev["error"].replace("_", " ").upper(),))
        return ev
    if not sale.card_read(ev):
        console.event({"card": ev})
        ui.message("CARD", (ev["pan"][:8], ev["pan"][8:], ev["scheme"].upper()))
    return ev
