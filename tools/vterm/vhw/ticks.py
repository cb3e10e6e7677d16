# time.ticks_ms and ticks_diff for the device models, which run under
# CPython in the vterm process (roampos.vterm.hw) and under MicroPython in
# the driver tests (tests/mpy).
try:
    from time import ticks_diff, ticks_ms
except ImportError:  # CPython
    import time

    def ticks_ms():
        return int(time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b
