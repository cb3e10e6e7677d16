# Simulated inputs of the vterm, driven by the console's `sim ...` commands
# through board.sim (this module, as it is: firmware/boards/vterm_extra.py):
# keys, card taps and the panel image go to the device models in the vterm
# process (roampos.vterm.hw) as requests (vhw.wire.ask). `sim scan`, `link`,
# `cell` and `signal` need no code here: once firmware/cmd_sim.py has
# checked them, it hands their text as it is to ask(), which the vterm
# understands. An error of the vterm's raises ValueError. `sim clock` moves
# the vterm's monotonic clock (ticks_ms below) forward. Names are few:
# each one is interned for good.
import asyncio
import gc
import time
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


_ballast = None  # what `sim squeeze` holds of the heap


def squeeze(left, ms):
    # Hold the heap until about `left` bytes stay free, for `ms` milliseconds: a bench test of
    # what the terminal does when memory runs out. Released by a timer, since with the heap
    # held even the command that would release it may not find the memory to run.
    global _ballast
    _ballast = None
    gc.collect()
    release = asyncio.create_task(_release(ms))  # allocated before the heap is held
    held = None  # a chain of (piece, rest): no list to grow into a hole that is not there
    size = 1024
    while gc.mem_free() > left:
        try:
            if size >= 32:  # smaller pieces as the big holes run out
                held = (bytearray(min(gc.mem_free() - left, size)), held)
            else:
                held = (None, held)  # one GC block: the last small holes
        except MemoryError:
            if size < 32:
                break
            size //= 2
    _ballast = (held, release)
    return gc.mem_free()


async def _release(ms):
    global _ballast
    await asyncio.sleep_ms(ms)
    _ballast = None
    gc.collect()


_skew = 0  # how far `sim clock` moved the clock forward, ms


def ticks_ms():
    # The vterm's monotonic clock as the firmware reads it (firmware.boards.ticks_ms, once moved).
    return time.ticks_add(time.ticks_ms(), _skew)


def advance(ms):
    global _skew
    # Kept within half a ticks period (what ticks_add takes), as ticks are: modulo the period.
    _skew = time.ticks_diff(time.ticks_add(_skew, ms), 0)
