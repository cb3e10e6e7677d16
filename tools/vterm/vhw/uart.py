# Simulated machine.UART: a byte pipe to a model in the same interpreter
# (the driver tests in tests/mpy). model.rx(data) takes what the driver
# writes; model.tx() -> bytes or None gives what the device sends, pulled
# whenever the driver looks. On the vterm the firmware's UARTs are the UART
# of firmware/boards/vterm_extra.py, the models being in the vterm process
# (roampos.vterm.hw).


class UART:
    def __init__(self, id=0, baudrate=115200, model=None, **kw):
        self.baudrate = baudrate
        self.model = model
        self._in = b""

    def _pull(self):
        data = self.model.tx()
        if data:
            self._in += data

    def any(self):
        self._pull()
        return len(self._in)

    def read(self, n=-1):
        self._pull()
        if not self._in:
            return None  # a real UART read times out with None
        if n < 0 or n > len(self._in):
            n = len(self._in)
        data, self._in = self._in[:n], self._in[n:]
        return data

    def readinto(self, buf, n=-1):
        data = self.read(len(buf) if n < 0 else min(n, len(buf)))
        if not data:
            return None
        buf[:len(data)] = data
        return len(data)

    def write(self, buf):
        # machine.UART.write takes str too
        self.model.rx(buf.encode() if isinstance(buf, str) else bytes(buf))
        return len(buf)
