# Simulated inputs of the vterm, driven by the console's `sim ...` commands
# through board.sim (this module, as it is: firmware/boards/vterm_extra.py):
# keys, card taps and the panel image go to the device models in the vterm
# process (roampos.vterm.hw) as requests (vhw.wire.ask). `sim scan`, `link`,
# `cell` and `signal` need no code here: once firmware/cmd_sim.py has
# checked them, it hands their text as it is to ask(), which the vterm
# understands. An error of the vterm's raises ValueError. Names are few:
# each one is interned for good.
import asyncio
from micropython import const

from vhw.wire import ask

_HOLD_MS = const(60)  # how long `sim key` holds a key (the driver debounces 20 ms)
_GAP_MS = const(40)


def visible():
    return ask("visible")


async def key(name):
    ask("press " + name)             # ValueError for an unknown legend
    await asyncio.sleep_ms(_HOLD_MS)
    ask("release " + name)
    await asyncio.sleep_ms(_GAP_MS)


def cards():
    return ask("cards").decode().split()


def tap(name):
    ask("tap " + name)               # ValueError for an unknown profile


def remove():
    return ask("remove") == b"1"
