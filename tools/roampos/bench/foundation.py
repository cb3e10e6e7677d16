"""Foundation figures: vterm boot to console ready, heap after boot, firmware size."""
import os
import statistics
import tempfile
import time
from typing import List, Tuple

from roampos.console_client import Console
from roampos.image import CODE_DIRS, tree_files
from roampos.vterm import wasm32
from roampos.vterm.control import VTermProcess

BOOTS = 11
MODELS = 0  # the vterm's simulated buses' share of heap_used (vhw.wire; a board has them in ROM)


def boot_figures(heap: str = "64K") -> Tuple[List[float], List[int]]:
    times, heaps = [], []
    global MODELS
    with tempfile.TemporaryDirectory() as d:
        vt = VTermProcess(os.path.join(d, "flash.img"), heap=heap)
        con = Console(vt.console)
        try:
            ev = con.wait_ready(15)
            heaps.append(ev["heap_used"])
            MODELS = ev.get("heap_models", 0)
            for _ in range(BOOTS):
                con.flush_input()
                con.events.clear()
                t0 = time.monotonic()
                vt.power_cut()  # power off and on: the whole boot, process start included
                ev = con.wait_ready(15)
                times.append(time.monotonic() - t0)
                heaps.append(ev["heap_used"])
        finally:
            con.close()
            vt.stop()
    return times, heaps


def heap_32bit():
    # The same boot on a 32-bit MicroPython (pointers and objects the size
    # they have on the boards): deterministic, so one boot.
    fig = wasm32.boot()
    return [
        ("heap in use after boot, 32-bit MicroPython (wasm port), total",
         "%.1f KB" % (fig["ready"]["heap_used"] / 1024), ""),
        ("  of which simulated buses / the port's Python stdlib (C on a board)", "%.1f / %.1f KB" % (
            fig["ready"].get("heap_models", 0) / 1024, fig["port"]["stdlib"] / 1024), ""),
        ("  firmware only, 32-bit (its asyncio %.1f KB included)" % (fig["port"]["asyncio"] / 1024),
         "%.1f KB" % (wasm32.firmware_share(fig) / 1024), "<= 24 KB"),
    ]


def rows():
    times, heaps = boot_figures()
    sizes = {}
    for path, data in tree_files():
        top = path.strip("/").split("/")[0]
        if path.endswith(".mpy"):
            sizes[top] = sizes.get(top, 0) + len(data)
    fw = sum(v for k, v in sizes.items() if k != "lib")
    return [
        ("boot to console ready (median of %d, 64K heap)" % len(times),
         "%.0f ms" % (statistics.median(times) * 1000), "<= 1500 ms"),
        # The 24 KB budget is a board's, at 32 bits: its row is heap_32bit()'s firmware share below.
        ("heap in use after boot, 64-bit vterm (median), total", "%.1f KB" % (statistics.median(heaps) / 1024),
         "(32-bit row)"),
        ("  of which the vterm's simulated buses (vhw.wire)", "%.1f KB" % (MODELS / 1024), ""),
        ("  firmware only, 64-bit (total less buses)", "%.1f KB" % ((statistics.median(heaps) - MODELS) / 1024), ""),
    ] + heap_32bit() + [
        ("compiled firmware (.mpy: %s)" % ", ".join(d for d in CODE_DIRS if d != "lib"),
         "%.1f KB" % (fw / 1024), ""),
        ("compiled lib/ (umqtt.simple)", "%.1f KB" % (sizes.get("lib", 0) / 1024), ""),
    ]
