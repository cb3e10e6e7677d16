# Errors of the contactless stack (reader chip, ISO 14443-3 and -4), few on
# purpose (each class costs heap): retry, tell the customer, or give up.


class NfcError(Exception):
    pass


class NoAnswer(NfcError):
    # The card did not answer within the frame waiting time.
    pass


class FrameError(NfcError):
    # An answer came but was damaged or broke the protocol: CRC, parity,
    # collision, length, BCC, block rules. `what` names the check.
    def __init__(self, what, got=b""):
        super().__init__("%s (got %s)" % (what, bytes(got).hex() or "nothing"))
        self.what = what


class CardRemoved(NfcError):
    # The card left the field in the middle of an exchange.
    pass
