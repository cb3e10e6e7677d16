# Simulated inputs of the vterm, driven by the console's `sim ...` commands
# through board.sim: keys, card taps and the panel image go to the device
# models in the vterm process (vhw.wire.ask); the scanner, links, cell and
# signal models run here, built on first use.
import asyncio

from vhw.wire import ask

HOLD_MS = 60       # how long `sim key` holds a key (the driver debounces 20 ms)
GAP_MS = 40


class Sim:
    def __init__(self, board):
        self._board = board
        self._scanner = None
        self._net = None   # vhw.net.Network, built on first use

    def visible(self):
        return ask("visible")

    async def key(self, legend):
        ask("press " + legend)           # ValueError for an unknown legend
        await asyncio.sleep_ms(HOLD_MS)
        ask("release " + legend)
        await asyncio.sleep_ms(GAP_MS)

    def cards(self):
        return ask("cards").decode().split()

    def tap(self, name):
        ask("tap " + name)               # ValueError for an unknown profile

    def remove(self):
        return ask("remove") == b"1"

    @property
    def scanner(self):
        if self._scanner is None:
            from vhw.scanner import ScannerModel
            self._scanner = ScannerModel()
            self._board.scanner  # wire the driver to it now
        return self._scanner

    def scan(self, code):
        self.scanner.scan(code)

    @property
    def net(self):
        if self._net is None:
            from vhw.net import Network
            self._net = Network()
        return self._net
