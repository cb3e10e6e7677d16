# A card read: imported when the idle poll (firmware.peripherals) finds a
# card in the field, and dropped again with the reader's full driver after
# the read (unload()). The card is read (firmware.emv) and either attached to
# the sale waiting for it or reported as an event at idle.
import gc
import time

from drivers.nfcerr import NfcError
from firmware import console, state, ui

_EMV = (("firmware", "emv"), ("drivers", "iso14443"), ("drivers", "iso14443a"))
# With the reader's full driver and its errors, and this module: back to idle.
_CARD = _EMV + (("drivers", "mfrc522"), ("drivers", "nfcerr"), ("firmware", "tap"))


def _unload(names=_EMV):
    # The EMV and ISO 14443-4 code (~10 KB) leaves the heap after each read;
    # importing it again at the next tap costs a few milliseconds.
    import sys
    mods = sys.modules
    # An import that ran out of memory half-way is taken out of sys.modules by MicroPython, but
    # its hash-table slot keeps pointing at the half-built module (and all it loaded): the heap
    # stays full. Storing each name again (in import order) takes those slots back; pop() then
    # clears them.
    for pkg_name, name in names:
        try:
            mods[pkg_name + "." + name] = None
        except MemoryError:  # sys.modules full and no room to grow it: nothing to take back
            pass
    for pkg_name, name in names:
        pkg = mods.get(pkg_name)
        mods.pop(pkg_name + "." + name, None)
        if hasattr(pkg, name):
            delattr(pkg, name)
    gc.collect()


def unload():
    # After the last read with a driver from reader.driver(): a driver (and
    # its error classes) must not outlive the modules that define them, or a
    # fresh import would catch other classes than the driver raises.
    _unload(_CARD)


def read_once(rd, atqa=None):
    # Activate and read the card in the field with the full driver `rd`
    # (reader.driver()); report it. Returns the event.
    from firmware import emv, sale
    t0 = time.ticks_ms()
    try:
        try:
            act = emv.iso14443a.activate(rd, atqa=atqa)
        except NfcError as e:
            raise emv.CardError("read", "activation: %s" % e)
        card = emv.read(rd, act, sale.amount or 0, state.currency)
        ev = card.public()
        card.pan = ""  # the full PAN goes no further than here for now
        del card
    except emv.CardError as e:
        ev = {"error": e.code, "message": e.message}
    except NfcError as e:
        ev = {"error": "read", "message": "%s: %s" % (type(e).__name__, e)}
    except MemoryError:
        ev = {"error": "nomem", "message": "out of memory reading the card"}
    except Exception as e:  # whatever a card sends, the answer is an error event (never its data)
        ev = {"error": "data", "message": "card data not understood (%s)" % type(e).__name__}
    ev["ms"] = time.ticks_diff(time.ticks_ms(), t0)
    _unload()
    # A tap while the cashier types an amount is reported, but the amount stays on the screen:
    # the card is for the sale about to start, and the digits typed so far must not be lost.
    typing = ui.screen == "amount"
    if "error" in ev:
        if not sale.card_error(ev["error"], ev["message"]):
            console.event({"card": ev})
            if not typing:
                ui.message("CARD ERROR", (ev["error"].replace("_", " ").upper(),))
        return ev
    if not sale.card_read(ev):
        console.event({"card": ev})
        if not typing:
            ui.message("CARD", (ev["pan"][:8], ev["pan"][8:], ev["scheme"].upper()))
    return ev
