# A socket-like object over the modem's TCP link (SIM7600 class), with the
# methods umqtt.simple uses: connect, write, read, setblocking, close.
# getaddrinfo() passes the host name through: the module resolves it.
import time


def _oserror(e):
    # umqtt.simple and socket users expect OSError: an AT error or timeout, or a modem answer
    # that makes no sense, is one (EIO); out of memory is not.
    if isinstance(e, (OSError, MemoryError)):
        return e
    return OSError(5, "%s: %s" % (type(e).__name__, e))


class ModemSocket:
    def __init__(self, modem, timeout_ms=10000):
        self.m = modem
        self.timeout_ms = timeout_ms
        self.blocking = True
        self._buf = bytearray(256)
        self._have = b""

    def connect(self, addr):
        try:
            self.m.tcp_open(addr[0], addr[1])
        except Exception as e:
            raise _oserror(e)

    def settimeout(self, t):
        self.timeout_ms = 0 if t == 0 else (self.timeout_ms if t is None else int(t * 1000))
        self.blocking = t != 0

    def setblocking(self, flag):
        self.blocking = flag

    def write(self, buf, n=None):
        mv = memoryview(buf)
        if n is not None:
            mv = mv[:n]
        if self.m.closed:
            raise OSError(104, "connection closed")
        try:
            self.m.tcp_send(mv)
        except Exception as e:
            raise _oserror(e)
        return len(mv)

    send = write

    def _fill(self, wait_ms):
        try:
            n = self.m.tcp_recv(self._buf, len(self._buf), wait_ms)
        except Exception as e:
            raise _oserror(e)
        if n:
            self._have += bytes(self._buf[:n])
        return n

    def read(self, n=-1):
        # Blocking: exactly n bytes (or fewer at close), bounded by the
        # timeout; non-blocking: what is there, None if nothing.
        if not self.blocking:
            if not self._have:
                self._fill(0)
            if not self._have:
                return None
            n = len(self._have) if n < 0 else n
            out, self._have = self._have[:n], self._have[n:]
            return out
        deadline = time.ticks_add(time.ticks_ms(), self.timeout_ms)
        while n < 0 or len(self._have) < n:
            left = time.ticks_diff(deadline, time.ticks_ms())
            if left <= 0:
                raise OSError(110, "read timeout")  # ETIMEDOUT
            if not self._fill(min(left, 200)) and self.m.closed and not self.m.data_ready:
                break
            if n < 0 and self._have:
                break
        n = len(self._have) if n < 0 else min(n, len(self._have))
        out, self._have = self._have[:n], self._have[n:]
        return out

    recv = read

    def close(self):
        try:
            self.m.tcp_close()
        except Exception as e:
            raise _oserror(e)


class Resolver:
    # Stands in for the `socket` module where umqtt.simple calls
    # socket.socket() and socket.getaddrinfo().
    def __init__(self, modem):
        self.m = modem

    def socket(self, *args):
        return ModemSocket(self.m)

    def getaddrinfo(self, host, port, *args):
        return [(2, 1, 0, "", (host, port))]
