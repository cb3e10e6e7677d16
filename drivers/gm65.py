# GM65-class UART barcode/QR scanner. In its default serial mode the module
# sends each decoded code followed by a CR (GM65 user manual, "serial output
# / end mark"); this driver assembles those lines in a fixed buffer.
# Over-long or binary lines are dropped and counted, never returned.
from micropython import const

_CR = const(13)
_LF = const(10)


class GM65:
    def __init__(self, uart, max_len=512):
        self.uart = uart
        self._buf = bytearray(max_len)
        self._n = 0
        self._bad = False
        self._chunk = bytearray(64)
        self._pending = []
        self.dropped = 0

    def poll(self):
        # Non-blocking: the next complete code (str), or None. Reads no further than the chunk
        # that completes one: a backlog stays in the UART, not in the heap.
        if self._pending:
            return self._pending.pop(0)
        uart = self.uart
        while not self._pending and uart.any():
            n = uart.readinto(self._chunk)
            if not n:
                break
            for i in range(n):
                self._byte(self._chunk[i])
        return self._pending.pop(0) if self._pending else None

    def flush(self):
        # Drop everything received so far without decoding it (stale codes, however many). A
        # line still arriving (or cut by a UART overrun) is dropped at its end, not joined to
        # the next code.
        self._pending.clear()
        partial = self._n > 0          # a line begun: its end is still to come
        uart = self.uart
        while uart.any():
            n = uart.readinto(self._chunk)
            if not n:
                break
            c = self._chunk[n - 1]
            partial = c != _CR and c != _LF
        self._n, self._bad = 0, partial

    def _byte(self, c):
        if c == _CR or c == _LF:
            n, bad = self._n, self._bad
            self._n, self._bad = 0, False
            if n == 0:
                return
            if bad:
                self.dropped += 1
                return
            try:
                self._pending.append(str(memoryview(self._buf)[:n], "utf-8"))
            except UnicodeError:
                self.dropped += 1
            return
        if c < 32 or c == 127:
            self._bad = True
        if self._n < len(self._buf):
            self._buf[self._n] = c
            self._n += 1
        else:
            self._bad = True
