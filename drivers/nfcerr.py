# Errors of the contactless stack (reader chip, ISO 14443-3 and -4). Each
# carries what the caller needs to decide: retry, tell the customer, give up.


class NfcError(Exception):
    pass


class NoAnswer(NfcError):
    # The card did not answer within the frame waiting time.
    pass


class FrameError(NfcError):
    # An answer came but was damaged: CRC, parity, protocol, length, BCC.
    def __init__(self, what, got=b""):
        super().__init__("%s (got %s)" % (what, bytes(got).hex() or "nothing"))
        self.what = what


class Collision(NfcError):
    pass


class CardRemoved(NfcError):
    # The card left the field in the middle of an exchange.
    pass


class ProtocolError(NfcError):
    # The card broke the ISO 14443-4 block rules.
    pass
