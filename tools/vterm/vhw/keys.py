# Keypad matrix model: a pressed key connects its row line to its column
# line. A column reads low when it is connected, through any chain of
# pressed keys, to a row that is driven low: this reproduces ghosting.
# Optional bounce: for bounce_ms after a change the contact chatters.
from vhw.ticks import ticks_diff, ticks_ms

LEGENDS = "123A456B789C*0#D"


class KeypadModel:
    def __init__(self, rows, cols, bounce_ms=0):
        self.rows = rows      # vhw Pins the driver drives (open drain)
        self.cols = cols
        self.held = {}        # key index -> ticks_ms of the last change
        self.bounce_ms = bounce_ms
        read = self._read  # one bound method for the four columns
        for c in cols:
            c._read = read

    def press(self, legend):
        k = LEGENDS.find(legend)
        if k < 0 or len(legend) != 1:
            raise ValueError("no key %r" % (legend,))
        self.held[k] = ticks_ms()

    def release(self, legend=None):
        if legend is None:
            self.held.clear()
        else:
            self.held.pop(LEGENDS.find(legend), None)

    def _closed(self, k, now):
        t = self.held[k]
        if self.bounce_ms and ticks_diff(now, t) < self.bounce_ms:
            return (now // 2) & 1 == 0  # chatter every 2 ms
        return True

    def _read(self, pin):
        # The level of column `pin`.
        j = self.cols.index(pin)
        now = ticks_ms()
        keys = [k for k in self.held if self._closed(k, now)]
        # Flood from the columns through closed keys to find the rows reached.
        cols = {j}
        rows = set()
        grew = True
        while grew:
            grew = False
            for k in keys:
                r, c = k // 4, k % 4
                if c in cols and r not in rows:
                    rows.add(r)
                    grew = True
                if r in rows and c not in cols:
                    cols.add(c)
                    grew = True
        for r in rows:
            if self.rows[r].value() == 0:
                return 0
        return 1  # pull-up
