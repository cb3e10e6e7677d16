"""Driver figures for `make bench`, measured through a vterm's console.

rows() starts a 64K-heap vterm and reports: full-screen refresh time (the
whole SSD1306 frame over the simulated I2C bus), card read time (tap to
PAN, the EMV read of the `visa` profile), heap in use at idle (the ready
event's figure: `status` would count its own command module), and the heap
high-water of a card read above idle (live data sampled after a collection
at every frame exchange, the card path's imports included).
"""
import os
import tempfile
from typing import List, Tuple

from roampos.console_client import Console
from roampos.vterm.control import VTermProcess

__all__ = ["rows"]


def rows() -> List[Tuple[str, str, str]]:
    with tempfile.TemporaryDirectory(prefix="roampos-bench-") as tmp:
        # 96K: the firmware boots in 64K, but `bench card` (EMV code, card
        # model, probe) on top of idle needs more on the 64-bit unix port.
        vt = VTermProcess(os.path.join(tmp, "flash.img"), heap="96K")
        con = Console(vt.console)
        try:
            idle = con.wait_ready(20)["heap_used"]
            ref = con.command("bench refresh", 20)
            card = con.command("bench card visa", 20)
            if not ref.ok or not card.ok:
                raise RuntimeError("bench failed: %s / %s" % (ref.raw, card.raw))
            return [
                ("display full refresh (vterm I2C model)", "%.2f ms" % (ref["full_refresh_us"] / 1000), "< 50 ms"),
                ("display partial refresh, 2 pages", "%.2f ms" % (ref["partial_refresh_us"] / 1000), "< 15 ms"),
                ("card read, tap to PAN (visa)", "%.1f ms" % (card["read_us"] / 1000), "< 500 ms"),
                ("heap in use at idle after boot, 64-bit vterm (32-bit: foundation)", "%d B" % idle, ""),
                ("card read heap high-water above idle", "%d B" % card["heap_peak_live"], "< 16384 B"),
            ]
        finally:
            con.close()
            vt.stop()


if __name__ == "__main__":
    for r in rows():
        print("%-42s %14s   target %s" % r)
