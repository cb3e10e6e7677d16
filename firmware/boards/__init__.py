# Board selection. boot.py calls select(); the application calls get().
#
# A board object offers what the application needs and nothing about pins:
#   name                  "esp32s3", "rp2" or "vterm"
#   stdin, stdout         byte streams of the console (USB CDC / UART / pty)
#   ctrl_c_is_byte        True where Ctrl-C arrives as the byte 0x03 instead of
#                         a KeyboardInterrupt (the vterm's raw pty)
#   reset()               hard reset of the board
#   display, keypad, reader, modem, wlan, scanner   drivers, or None if absent
#                         (reader: the MFRC522's idle part, init() and poll();
#                         reader.driver() gives the full driver for one read)
#   sim                   (vterm only) simulated-input hooks for `sim ...`:
#                         visible(), key(), cards(), tap(), remove(), and
#                         ask(text) for the checked text of the others
import sys
import time

BOOT_MS = time.ticks_ms()  # boot.py imports us first: the uptime origin
# The monotonic clock the firmware's own deadlines read (operator session idle time, the last
# admin's back-off): time.ticks_ms on a board. The vterm's moves forward with `sim clock` (its
# cmd_sim puts vhw.sim's clock here), so that a test need not wait 15 minutes.
ticks_ms = time.ticks_ms

_module = None
_board = None


def _for_platform(p):
    # sys.platform -> board module. One port, one board module, except that
    # the vterm's hardware also serves MicroPython's WebAssembly port, which
    # measures the firmware's heap at 32 bits (roampos.vterm.wasm32).
    if p == "linux" or p == "darwin" or p == "webassembly":
        return "vterm"
    if p == "esp32":
        return "esp32s3"
    if p == "rp2":
        return "rp2"
    return None


def select(name=None):
    global _module
    name = name or _for_platform(sys.platform)
    if name is None:
        raise OSError("no board module for platform %s" % sys.platform)
    _module = __import__("firmware.boards." + name, None, None, ("Board",))
    return name


def get():
    global _board
    if _board is None:
        if _module is None:
            select()
        _board = _module.Board()
    return _board
