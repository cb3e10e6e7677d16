# Console commands `screen` (what the display shows: text read back from the
# pixels, or the raw 1-bit image) and `bench` (driver timings and heap).
import gc
import time

from firmware import boards
from firmware.console import CommandError


def _image():
    b = boards.get()
    if b.sim is not None:
        return b.sim.visible()      # decoded by the panel model from bus traffic
    if b.display is None:
        raise CommandError("absent", "this board has no display")
    return b.display.buffer         # a real panel: the last frame drawn


def cmd_screen(args):
    img = _image()
    if args == "raw":
        import binascii
        return {"w": 128, "h": 64, "format": "MONO_VLSB", "hex": binascii.hexlify(img).decode()}
    if args:
        raise CommandError("usage", "screen [raw]")
    from firmware import screen_text, ui
    d = screen_text.decode(img)
    d["screen"] = ui.screen
    return d


def cmd_bench(args):
    w = args.split()
    b = boards.get()
    if w == ["refresh"]:
        if b.display is None:
            raise CommandError("absent", "this board has no display")
        n = 10
        t0 = time.ticks_us()
        for _ in range(n):
            b.display.show()
        us = time.ticks_diff(time.ticks_us(), t0) // n
        t0 = time.ticks_us()
        for _ in range(n):
            b.display.show_pages(3, 4)
        part = time.ticks_diff(time.ticks_us(), t0) // n
        return {"full_refresh_us": us, "partial_refresh_us": part}
    if len(w) == 2 and w[0] == "card":
        if b.sim is None:
            raise CommandError("unsupported", "bench card needs the vterm's simulated cards")
        if w[1] not in b.sim.cards():
            raise CommandError("nocard", "no card profile %s" % w[1])
        from firmware import sale
        if sale.amount is not None:
            # The bench read goes the idle poll's way, which hands a card to a waiting sale.
            raise CommandError("busy", "a sale is waiting for a card; cancel it first")
        # Each read as the idle poll does it: the card path (firmware.tap, the
        # reader's full driver, EMV) imported for the read and dropped after,
        # so "idle" is measured without it.
        _bench_read(b, w[1])        # warm-up: the first import after boot
        b.sim.tap(w[1])             # the card (a model object) is in the field first
        gc.collect()
        idle = gc.mem_alloc()
        peak = [idle]

        def probe(real):            # live heap at every frame exchange
            def exchange(*a):
                gc.collect()
                v = gc.mem_alloc()
                if v > peak[0]:
                    peak[0] = v
                return real(*a)
            return exchange

        t0 = time.ticks_us()
        ev = _bench_read(b, None, probe)
        us = time.ticks_diff(time.ticks_us(), t0)
        # No figure with the collector off: the read collects when it unloads
        # the EMV code, and without collections it needs ~37 KB free.
        return {"read_us": us, "heap_peak_live": peak[0] - idle,
                "heap_idle": idle, "result": ev.get("error") or ev.get("pan")}
    raise CommandError("usage", "bench refresh | bench card <profile>")


def _bench_read(b, card, wrap=None):
    # One card read through the path the idle poll takes (peripherals).
    if card:
        b.sim.tap(card)
    from firmware import tap
    rd = b.reader.driver()
    if wrap is not None:
        rd.exchange = wrap(rd.exchange)
    try:
        return tap.read_once(rd)
    finally:
        tap.unload()
