# Simulated inputs of the vterm, driven by the console's `sim ...` commands
# through board.sim: keys, card taps, scanner codes, links, cell, signal.
import asyncio

HOLD_MS = 60       # how long `sim key` holds a key (the driver debounces 20 ms)
GAP_MS = 40


class Sim:
    def __init__(self, oled, keys, nfc, board):
        self.oled = oled
        self.keys = keys
        self.nfc = nfc
        self._board = board
        self._scanner = None
        self._net = None   # vhw.net.Network, built on first use

    def visible(self):
        return self.oled.visible()

    async def key(self, legend):
        self.keys.press(legend)          # ValueError for an unknown legend
        await asyncio.sleep_ms(HOLD_MS)
        self.keys.release(legend)
        await asyncio.sleep_ms(GAP_MS)

    def cards(self):
        from vhw.cards import PROFILES
        return sorted(PROFILES)

    def tap(self, name):
        from vhw.cards import Card, PROFILES
        if name not in PROFILES:
            raise KeyError(name)
        full = getattr(self.nfc, "full", None)
        if full is not None:  # the empty-field model (vhw.nfc_idle) until now
            self.nfc = full()
        self.nfc.card = Card(name)

    def remove(self):
        had = self.nfc.card is not None
        self.nfc.card = None
        return had

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
