# GM65-class scanner model: emits a decoded code followed by CR, as the
# module does in its default serial output mode. On the vterm it runs in
# the vterm process (roampos.vterm.hw, UART 2; `sim scan` feeds it).


class ScannerModel:
    def __init__(self):
        self._out = bytearray()

    def scan(self, code, end=b"\r"):
        self._out += code + end if isinstance(code, bytes) else code.encode() + end

    def tx(self):
        if not self._out:
            return None
        out, self._out = bytes(self._out), bytearray()
        return out

    def rx(self, data):
        pass  # serial configuration commands are accepted and ignored
