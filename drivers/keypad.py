# 4x4 matrix keypad: row scanning, debounce, key repeat, ghost rejection.
# Rows are open-drain outputs (1 = released, 0 = selected); columns are
# inputs with pull-ups, so a closed key pulls its column low while its row
# is selected. Without diodes three keys held in an L make a fourth appear
# (a "ghost"); a scan that shows a 2x2 rectangle is ambiguous and ignored.
import asyncio
import time
from micropython import const

LEGENDS = "123A456B789C*0#D"  # row-major, key index = row * 4 + col
# Function keys (the application maps them; documented here once, not as a
# dict that would sit in the heap for nothing):
#   A = CANCEL, B = CLEAR (backspace), C = ENTER, D = MENU, # = ENTER too.

_NKEYS = const(16)


class Keypad:
    def __init__(self, rows, cols, debounce_ms=20, repeat_delay_ms=600, repeat_ms=150,
                 period_ms=5):
        if len(rows) != 4 or len(cols) != 4:
            raise ValueError("4x4 keypad needs 4 rows and 4 cols, got %d, %d" % (len(rows), len(cols)))
        self.rows = rows
        self.cols = cols
        self.debounce_ms = debounce_ms
        self.repeat_delay_ms = repeat_delay_ms
        self.repeat_ms = repeat_ms
        self.period_ms = period_ms
        self._raw = 0            # last raw scan
        self._since = time.ticks_ms()
        self.stable = 0          # debounced mask of held keys
        self._rep_key = -1
        self._rep_at = 0
        self.ghosts = 0          # ambiguous scans rejected (for status/tests)
        for r in rows:
            r.value(1)

    def scan(self):
        # One pass over the matrix: a 16-bit mask, bit = row * 4 + col.
        mask = 0
        cols = self.cols
        rows = self.rows
        for i in range(4):              # not enumerate(): no tuple per row, no garbage
            r = rows[i]
            r.value(0)
            for j in range(4):
                if not cols[j].value():
                    mask |= 1 << (i * 4 + j)
            r.value(1)
        return mask

    @staticmethod
    def ambiguous(mask):
        # True if two rows share two closed columns (a 2x2 rectangle).
        for a in range(4):
            ra = (mask >> (a * 4)) & 0xF
            if ra & (ra - 1) == 0:  # fewer than two keys in this row
                continue
            for b in range(a + 1, 4):
                common = ra & (mask >> (b * 4)) & 0xF
                if common & (common - 1):
                    return True
        return False

    def poll(self, emit, now=None):
        # Scan once; emit(legend, repeat) for each debounced new press and
        # each repeat of a single held key.
        now = time.ticks_ms() if now is None else now
        raw = self.scan()
        if raw != self._raw:
            self._raw = raw
            self._since = now
            return
        if raw != self.stable and time.ticks_diff(now, self._since) >= self.debounce_ms:
            if self.ambiguous(raw):
                self.ghosts += 1
                self._since = now  # check again only after it changes or settles anew
                return
            new = raw & ~self.stable
            self.stable = raw
            self._rep_key = -1
            for k in range(_NKEYS):
                if new & (1 << k):
                    emit(LEGENDS[k], False)
            if raw and raw & (raw - 1) == 0:  # exactly one key held: may repeat
                for k in range(_NKEYS):
                    if raw == 1 << k:
                        self._rep_key = k
                self._rep_at = time.ticks_add(now, self.repeat_delay_ms)
            return
        k = self._rep_key
        if k >= 0 and self.stable == 1 << k and time.ticks_diff(now, self._rep_at) >= 0:
            self._rep_at = time.ticks_add(now, self.repeat_ms)
            emit(LEGENDS[k], True)

    async def run(self, emit, on_error=None):
        # The scanning task: one scan per period, forever. A key handler that fails (out of
        # memory, a bug) costs that key press, never the keypad: on_error(exc) is told.
        while True:
            try:
                self.poll(emit)
            except Exception as e:
                if on_error is not None:
                    try:
                        on_error(e)
                    except Exception:  # the report failed too (no memory): the keypad goes on
                        pass
            await asyncio.sleep_ms(self.period_ms)
