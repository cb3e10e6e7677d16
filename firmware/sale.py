# The sale flow up to the card read: amount from the keypad, then the first
# card tap (or customer payment code scan) is attached to it and reported.
# The online authorization (a later issue) continues from card_read().
import asyncio

from firmware import boards, console, state, ui

WAIT_CARD_MS = 60000       # a sale waiting for a card gives up after this

amount = None              # minor units of the sale in progress, or None
_timer = None
_scan = None               # scanner task while a sale waits


def refused(minor=0):
    # (code, message) when no transaction may start in the active region now (its grant expired,
    # is not yet valid, or it is not granted at all) or `minor` is over its per-transaction
    # limit, else None.
    from firmware import params
    from firmware.console import CommandError

    if state.mode == params.EMPTY:
        return None  # no parameter set, so no regions: the bench flow up to the card read
    if state.mode != params.READY:
        # A set it cannot trust (damaged, or saved but not published): no sale on defaults.
        return "notready", "terminal is %s" % state.mode.upper()
    try:
        from firmware import params_region  # loaded for the check only: a sale runs at idle's heap
        params_region.check(state.region, need_clock=False)
        lim = params_region.params_core.record("r" + state.region)["limits"]["per_txn"]
        if minor > lim:
            return "limit", "amount %d over the per-transaction limit %d" % (minor, lim)
    except CommandError as e:
        return e.code, e.message
    finally:
        params.unload()
    return None


def start(minor):
    global amount, _timer, _scan
    why = refused(minor)
    if why is not None:
        console.event({"sale": {"amount": minor, "state": "refused", "error": why[0], "detail": why[1]}})
        ui.message("NOT ALLOWED", (why[0].upper(), "region %s" % state.region) if state.region else (why[0].upper(),))
        return
    amount = minor
    _stop_timer()
    try:
        _timer = asyncio.create_task(_timeout())
        sc = getattr(boards.get(), "scanner", None)
        if sc is not None:
            from firmware import scanner
            _scan = asyncio.create_task(scanner.run(sc))
    except MemoryError:
        _stop_timer()
        amount = None   # no sale half-started: the keypad starts over at idle
        console.event({"sale": {"amount": minor, "state": "failed", "error": "nomem"}})
        ui.message("OUT OF MEMORY", ("TRY AGAIN",))  # 16 characters a row: titles fit one
        return
    console.event({"sale": {"amount": minor, "state": "waiting card"}})
    ui.show_tap(minor)


async def _timeout():
    await asyncio.sleep_ms(WAIT_CARD_MS)
    global _timer
    _timer = None
    cancel("timeout")


def _stop_timer():
    global _timer, _scan
    if _timer is not None:
        _timer.cancel()
        _timer = None
    if _scan is not None:
        if _scan is not asyncio.current_task():   # the scanner task ends by itself
            _scan.cancel()
        _scan = None


def cancel(why):
    global amount
    if amount is None:
        return
    a, amount = amount, None
    _stop_timer()
    console.event({"sale": {"amount": a, "state": why}})
    ui.message("CANCELLED" if why == "cancelled" else "TIMEOUT", back_ms=2000)


def _complete(what, key, value, title, detail):
    # The sale got its means of payment: report it and show it. Returns True
    # if a sale was waiting (else the read belongs to the idle screen).
    global amount
    if amount is None:
        return False
    a, amount = amount, None
    _stop_timer()
    console.event({"sale": {"amount": a, key: value, "state": what}})
    from firmware.ui_draw import money
    ui.message(title, (money(a), detail))
    return True


def card_read(card):
    # card: the public (masked) dict.
    return _complete("card read", "card", card, "CARD READ", card["pan"][-8:])


def card_error(code, message):
    # A failed read in a sale: report it and keep waiting for another tap.
    if amount is None:
        return False
    console.event({"sale": {"amount": amount, "state": "card error", "error": code}})
    ui.show_tap(amount, code.replace("_", " ").upper())
    return True


def code_read(code):
    # A customer payment code (already classified and masked by the scanner).
    return _complete("code read", "paycode", code, "CODE READ", code.get("scheme", ""))
