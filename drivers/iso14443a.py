# ISO/IEC 14443-3 type A activation on an MFRC522-like reader (exchange(),
# request(), a 7-byte frame buffer _f): anticollision and select over the
# cascade levels for 4-, 7- and 10-byte UIDs, HLTA, and RATS (ISO 14443-4
# §5.6). Imported on the first card, not at idle.
from micropython import const

from drivers.nfcerr import NoAnswer, FrameError

_HLTA = const(0x50)
_CASCADE_TAG = const(0x88)
_SAK_INCOMPLETE = const(0x04)
_SAK_ISO14443_4 = const(0x20)


def _cascade(rd, sel, out):
    # Anticollision then select at one cascade level (ISO 14443-3 §6.4.3).
    # Appends the 4 UID CLn bytes to `out`, returns SAK.
    f = rd._f
    f[0] = sel
    f[1] = 0x20                         # NVB: no UID bits known yet
    n = rd.exchange(memoryview(f)[:2], False, rd.T3_TIMEOUT_MS)
    if n != 5:
        raise FrameError("anticollision length", rd.rx[:n])
    rx = rd.rx
    if rx[0] ^ rx[1] ^ rx[2] ^ rx[3] != rx[4]:
        raise FrameError("BCC", rx[:5])
    f[1] = 0x70                         # NVB: all 40 bits follow
    f[2:7] = rx[:5]
    out += rx[:4]
    n = rd.exchange(f, True, rd.T3_TIMEOUT_MS)   # CRC_A appended by the chip
    if n != 1:
        raise FrameError("SAK length", rd.rx[:n])
    return rd.rx[0]


def activate(rd, wake=False, atqa=None):
    # A card in the field -> (uid bytes, sak, atqa), or None if no card.
    # Pass the ATQA of a request() just made: the card is READY already.
    if atqa is None:
        atqa = rd.request(wake)
        if atqa is None:
            return None
    raw = bytearray()
    sak = 0
    for sel in (0x93, 0x95, 0x97):      # cascade levels 1..3
        sak = _cascade(rd, sel, raw)
        if not sak & _SAK_INCOMPLETE:
            break
    else:
        raise FrameError("UID longer than 10 bytes")
    # Drop the cascade tags: CL1 of a 7-byte UID is 88 uid0 uid1 uid2.
    uid = bytearray()
    for i in range(0, len(raw), 4):
        part = raw[i:i + 4]
        if part[0] == _CASCADE_TAG and i + 4 < len(raw):
            part = part[1:]
        uid += part
    return bytes(uid), sak, atqa


def halt(rd):
    # HLTA (§6.4.3): a card never answers it; silence is success.
    f = rd._f
    f[0], f[1] = _HLTA, 0
    try:
        rd.exchange(memoryview(f)[:2], True, 2)
    except NoAnswer:
        return True
    return False


def is_iso14443_4(sak):
    return bool(sak & _SAK_ISO14443_4) and not sak & _SAK_INCOMPLETE


def rats(rd, fsdi=5, cid=0):
    # RATS (ISO 14443-4 §5.6.1): E0, FSDI|CID -> ATS. FSDI 5 = 64 bytes,
    # the size of the MFRC522 FIFO.
    f = rd._f
    f[0], f[1] = 0xE0, (fsdi << 4) | (cid & 0x0F)
    n = rd.exchange(memoryview(f)[:2], True, 6)  # FWT_ACT 71680/fc = 5.3 ms (EMV, NFC Forum)
    if n < 1 or rd.rx[0] != n:
        raise FrameError("ATS length", rd.rx[:n])
    return bytes(rd.rx[:n])
