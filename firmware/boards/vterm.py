# The virtual terminal: the MicroPython unix port with device models from the
# vterm's own module `vhw` (as a port offers `machine`). Only this file
# imports vhw; the drivers receive the simulated buses and cannot tell.
import sys

import vhw


class Board:
    name = "vterm"
    ctrl_c_is_byte = True  # raw pty: Ctrl-C is the byte 0x03, no SIGINT

    def __init__(self):
        self.stdin = sys.stdin.buffer
        self.stdout = sys.stdout.buffer
        self.display = self.keypad = self.reader = None
        self.modem = self.wlan = self.scanner = None
        self.sim = None

    def reset(self):
        vhw.reset()
