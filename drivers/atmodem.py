# AT command engine over a UART (3GPP TS 27.007 / V.250 framing): one
# command at a time, information lines collected until OK / ERROR /
# +CME ERROR, unsolicited result codes (URCs) handed to a callback, garbage
# lines (binary, too long) counted and skipped. Every wait is in ms.
import time
from micropython import const

_OVERRUN_MS = const(100)  # bytes still arriving past the deadline are read this long
_MAX_LINE = const(256)

# Lines that are always URCs (never a command's answer) on SIM7600-class
# modules (SIM7500/SIM7600 AT Command Manual; TCPIP manual for IP ones).
URCS = ("NO CARRIER", "+CPIN: NOT READY", "+CIPRXGET: 1", "+IPCLOSE:", "+CIPEVENT:",
        "RDY", "+CPIN: READY", "SMS DONE", "PB DONE", "+NETOPEN:", "+CIPOPEN:",
        "+CIPCLOSE:", "+NETCLOSE:", "+CIPSEND:")


class ATError(Exception):
    def __init__(self, cmd, result):
        super().__init__("%s -> %s" % (cmd, result))
        self.cmd = cmd
        self.result = result


class ATTimeout(ATError):
    pass


class AT:
    def __init__(self, uart, urc=None):
        self.uart = uart
        self.urc = urc            # callback(line) for unsolicited lines
        self._rx = bytearray(_MAX_LINE)
        self._n = 0
        self._bad = False
        self._one = bytearray(1)
        self.garbage = 0          # lines dropped as garbage

    def _getline(self, deadline, prompt=False):
        # Next complete line (str, without CR LF), "" for the ">" prompt when
        # prompt=True, or None at the deadline.
        one = self._one
        while True:
            left = time.ticks_diff(deadline, time.ticks_ms())
            if not self.uart.any():
                if left <= 0:
                    return None
                time.sleep_ms(1)
                continue
            if left <= -_OVERRUN_MS:
                return None   # a modem that never stops talking: the deadline still holds
            self.uart.readinto(one, 1)
            c = one[0]
            if c == 10:               # LF ends a line; CR is dropped
                n, bad = self._n, self._bad
                self._n, self._bad = 0, False
                if bad:
                    self.garbage += 1
                    continue
                if n == 0:
                    continue
                try:
                    return str(memoryview(self._rx)[:n], "utf-8")
                except UnicodeError:
                    self.garbage += 1
                    continue
            if c == 13:
                continue
            if prompt and c == 62 and self._n == 0:   # ">": send data now
                return ""
            if c < 32 or c > 126:
                self._bad = True
            if self._n < _MAX_LINE:
                self._rx[self._n] = c
                self._n += 1
            else:
                self._bad = True

    def _is_urc(self, line, prefix):
        if prefix and line.startswith(prefix):
            return False
        for u in URCS:
            if line.startswith(u):
                return True
        return False

    def send_line(self, cmd):
        self.uart.write(cmd)
        self.uart.write(b"\r")

    def cmd(self, cmd, timeout_ms=1000, prefix=None, prompt=None):
        # Run one command; return its information lines (those starting with
        # `prefix` when given). prompt: bytes sent after the ">" prompt.
        # What arrived before it (URCs, or the late answer of a command that
        # timed out) belongs to no answer of this one: hand it over first.
        self.poll()
        if not (self._n and self._rx[0] == 43):
            # Half a line left is dropped, except a "+..." one: an unsolicited result cut by the
            # start of this command, whose rest comes while it runs and which the loop below hands
            # to the callback (a lost +CIPRXGET: 1 would leave the data waiting in the modem).
            self._n, self._bad = 0, False
        self.send_line(cmd)
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        out = []
        while True:
            line = self._getline(deadline, prompt is not None)
            if line is None:
                raise ATTimeout(cmd, "no final result in %d ms" % timeout_ms)
            if line == "" and prompt is not None:
                self.uart.write(prompt)
                prompt = None
                continue
            if line == "OK":
                return out
            if line == "ERROR" or line.startswith("+CME ERROR") or line.startswith("+CMS ERROR"):
                raise ATError(cmd, line)
            if line == cmd or line.startswith("AT"):
                continue              # echo still on (before ATE0)
            if self._is_urc(line, prefix):
                if self.urc:
                    self.urc(line)
                continue
            if prefix is None or line.startswith(prefix):
                out.append(line)
            else:
                self.garbage += 1

    def poll(self, wait_ms=0):
        # Hand pending URCs to the callback; non-blocking unless wait_ms.
        deadline = time.ticks_add(time.ticks_ms(), wait_ms)
        while True:
            line = self._getline(deadline)
            if line is None:
                return
            if self.urc:
                self.urc(line)

    def wait_urc(self, prefix, timeout_ms):
        # Wait for one URC starting with prefix; others go to the callback.
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        while True:
            line = self._getline(deadline)
            if line is None:
                raise ATTimeout(prefix, "no %s in %d ms" % (prefix, timeout_ms))
            if line.startswith(prefix):
                return line
            if self.urc:
                self.urc(line)

    def read_raw(self, buf, n, timeout_ms):
        # n payload bytes right after a line (e.g. +CIPRXGET: 2 data).
        got = 0
        mv = memoryview(buf)
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        while got < n:
            if self.uart.any():
                r = self.uart.readinto(mv[got:n], n - got)
                got += r or 0
            elif time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                raise ATTimeout("data", "%d of %d bytes in %d ms" % (got, n, timeout_ms))
            else:
                time.sleep_ms(1)
        return got
