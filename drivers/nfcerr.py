# Errors of the contactless stack (reader chip, ISO 14443-3 and -4), few on
# purpose (each class costs heap): retry, tell the customer, or give up.


class NfcError(Exception):
    pass


class NoAnswer(NfcError):
    # The card did not answer within the frame waiting time.
    pass


class FrameError(NfcError):
    # An answer came but was damaged or broke the protocol: CRC, parity,
    # collision, length, BCC, block rules. `what` names the check. Only the
    # answer's length goes into the message, never its bytes: a damaged READ
    # RECORD answer still holds the PAN and track 2, and the message reaches
    # the console in the card error event.
    def __init__(self, what, got=b""):
        super().__init__("%s (%d bytes)" % (what, len(got)))
        self.what = what


class CardRemoved(NfcError):
    # The card left the field in the middle of an exchange.
    pass
