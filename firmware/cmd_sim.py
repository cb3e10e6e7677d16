# `sim ...`: simulated inputs on the vterm (keys, card taps, scanner codes,
# links, cell identity, signal, time passing). Other boards answer ERR unsupported.
from firmware import boards
from firmware.console import CommandError, words

_USAGE = "sim key <legends> | tap [profile] | remove | scan <code> | " \
         "link <wifi|cell> <up|down|denied> | cell <mcc> <mnc> <lac> <ci> | signal <dBm> | " \
         "squeeze <bytes free> <ms> | clock <ms>"


def _sim():
    s = boards.get().sim
    if s is None:
        raise CommandError("unsupported", "sim works on the vterm only")
    return s


def _int(text, what, lo, hi):
    try:
        v = int(text)
    except ValueError:
        raise CommandError("badarg", "%s must be a number, got %r" % (what, text[:16]))
    if not lo <= v <= hi:
        raise CommandError("badarg", "%s %d not in %d..%d" % (what, v, lo, hi))
    return v


def cmd_sim(args):
    sim = _sim()
    op, _, rest = args.partition(" ")
    rest = rest.strip()
    if op == "key":
        keys = rest.split()
        if not keys:
            raise CommandError("usage", "sim key <legend> [<legend>...], legends 0-9 A-D * #")
        for k in keys:
            if len(k) != 1 or k not in "0123456789ABCD*#":
                raise CommandError("badarg", "no key %r; legends are 0-9 A-D * #" % k[:8])
        return _keys(sim, keys)
    if op == "tap":
        if not rest:
            return {"cards": sim.cards()}
        rest = words(rest, 1, "sim tap [profile]")[0]
        if rest not in sim.cards():
            raise CommandError("nocard", "no card profile %r; try: sim tap" % rest[:24])
        sim.tap(rest)
        return {"tapped": rest}
    if op == "remove":
        words(rest, 0, "sim remove takes no arguments")
        return {"removed": sim.remove()}
    if op == "scan":
        if not rest or len(rest) > 500:
            raise CommandError("usage", "sim scan <code> (1..500 characters)")
        sim.ask(args)  # the vterm takes the checked text as it is (vhw/sim.py)
        return {"scanned": len(rest)}
    if op == "link":
        kind, what = words(rest, 2, "sim link <wifi|cell> <up|down|denied>")
        if kind not in ("wifi", "cell") or what not in ("up", "down", "denied"):
            raise CommandError("badarg", "sim link <wifi|cell> <up|down|denied>")
        if kind == "wifi" and what == "denied":
            raise CommandError("badarg", "denied applies to cell registration only")
        sim.ask(args)
        return {kind: what}
    if op == "cell":
        w = words(rest)
        if len(w) != 4:
            raise CommandError("usage", "sim cell <mcc> <mnc> <lac> <ci>")
        mcc = _int(w[0], "mcc", 200, 799)
        _int(w[1], "mnc", 0, 999)  # a range check: the text keeps its leading zero
        if len(w[1]) not in (2, 3):
            raise CommandError("badarg", "mnc has 2 or 3 digits, got %r" % w[1][:8])
        lac = _int(w[2], "lac", 1, 0xFFFE)
        ci = _int(w[3], "ci", 0, 0xFFFFFFF)
        sim.ask(args)
        return {"cell": {"mcc": "%03d" % mcc, "mnc": w[1], "lac": lac, "ci": ci}}
    if op == "signal":
        if len(rest.split()) != 1:
            raise CommandError("usage", "sim signal <dBm>")
        dbm = _int(rest.strip(), "signal", -120, -40)
        sim.ask(args)
        return {"signal_dbm": dbm}
    if op == "squeeze":
        w = words(rest)
        if len(w) != 2:
            raise CommandError("usage", "sim squeeze <bytes left free> <ms held>")
        left = _int(w[0], "bytes", 0, 1 << 20)
        ms = _int(w[1], "ms", 1, 60000)
        return {"free": sim.squeeze(left, ms), "ms": ms}
    if op == "clock":
        # Time passes with nobody at the terminal: the vterm's monotonic clock, which the firmware's
        # own deadlines read (boards.ticks_ms: operator session idle time, the last admin's
        # back-off), moves forward (asyncio's sleeps keep real time). Forward only, and on the vterm
        # only: a board's clock is time.ticks_ms, which nothing moves.
        ms = _int(words(rest, 1, "sim clock <ms>")[0], "ms", 1, 86400000)
        boards.ticks_ms = sim.ticks_ms
        sim.advance(ms)
        from firmware import console, state
        console.idle(False)  # what is over by now ends now, and says so before this reply
        if state.session is not None:
            from firmware import session
            session.watch()
        return {"advanced_ms": ms}
    raise CommandError("usage", _USAGE)


async def _keys(sim, keys):
    for k in keys:
        await sim.key(k)
    return {"keys": "".join(keys)}
