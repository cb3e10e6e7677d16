"""RoamPOS message contract: ISO 8583 spec, field-48 TLV, AES crypto; pure functions, no I/O.

Everything here is what both the host and a terminal must agree on byte for byte;
docs/messages.md describes the same rules for the MicroPython implementation.
"""
from __future__ import annotations

import calendar
import copy
import hmac
import hashlib
import os
import re
import string
import time
from typing import Any, Dict, Optional, Tuple

import iso8583
from iso8583.specs import default as _DEFAULT
from cryptography.hazmat.primitives import cmac as _cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from psec import pinblock as _pinblock

__all__ = [
    "SPEC", "MessageError", "MTI_RESPONSE", "PROC", "RC",
    "encode_tlv", "decode_tlv", "encode", "decode", "mac_of", "verify_mac",
    "aes_ecb_encrypt", "aes_ecb_decrypt", "cmac", "kcv", "wrap_key", "unwrap_key",
    "derive_key", "encrypt_pan", "decrypt_pan", "pin_block", "pin_from_block",
    "mask_pan", "card_hash", "sign_params", "verify_params", "parse_location",
    "transmission_time",
]

# Stock pyiso8583 "default" spec; the one override: field 52 carries a 16-byte
# ISO 9564 format 4 (AES) PIN block instead of the 8-byte DES block.
SPEC: dict = copy.deepcopy(_DEFAULT)
SPEC["52"] = dict(SPEC["52"], max_len=16, desc="PIN block, ISO 9564 format 4")

MTI_RESPONSE = {"0200": "0210", "0220": "0230", "0320": "0330", "0400": "0410",
                "0500": "0510", "0800": "0810"}

# Field 3 processing codes (first two digits = transaction type).
PROC = {
    "sale": "000000", "void": "020000", "refund": "200000",
    "signon": "910000", "echo": "920000",          # 0800
    "settle": "920000", "settle_after_upload": "960000",  # 0500
}

# Response codes (field 39). ISO 8583:1987 meanings where one exists; R1-R3 are
# RoamPOS private codes for cross-region controls; A0 = MAC failure (CUP usage).
RC = {
    "00": "approved", "03": "invalid merchant or unknown terminal", "12": "invalid transaction",
    "13": "invalid amount", "14": "invalid card number (no issuer)", "25": "original not found",
    "30": "format error", "43": "stolen card, pick up", "51": "insufficient funds",
    "54": "expired card", "55": "incorrect PIN", "58": "transaction not permitted to terminal (blocked)",
    "59": "suspected fraud (risk rule)", "61": "exceeds amount limit", "64": "original amount incorrect",
    "65": "PIN required (soft decline)", "75": "PIN tries exceeded", "91": "issuer unavailable",
    "94": "duplicate or replayed transmission", "95": "reconciliation error, out of balance",
    "96": "system malfunction", "A0": "MAC verification failed",
    "R1": "region not granted to terminal", "R2": "region grant not valid at this time",
    "R3": "location does not match region (relocation)",
}

_TAG = re.compile(r"[A-Z][A-Z0-9]")
_BSSID = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}")
_NUMERIC = {"3": 6, "4": 12, "7": 10, "11": 6, "12": 6, "13": 4, "14": 4, "22": 3, "49": 3}


class _Memo(dict):
    """A cache whose missing keys read as None: `memo[key]` costs less than `memo.get(key)` (no
    method call), and unlike try/except KeyError leaves no exception context to what follows."""

    def __missing__(self, key: Any) -> None:
        return None


class MessageError(ValueError):
    """A message that cannot be decoded or violates the contract; names the field."""

    def __init__(self, reason: str, field: Optional[str] = None):
        super().__init__(f"field {field}: {reason}" if field else reason)
        self.reason = reason
        self.field = field


# ---------------------------------------------------------------- field 48 TLV
# Exactly the strings _TAG fullmatches: a set lookup instead of a regex call per tag (the regex
# still answers for anything else, so a tag that is not a string raises as it did).
_TAGS = frozenset(a + b for a in string.ascii_uppercase for b in string.ascii_uppercase + string.digits)
_LEN3 = tuple(f"{n:03d}" for n in range(1000))


def encode_tlv(items: Dict[str, str]) -> str:
    """Field 48: tag (2 chars A-Z0-9) + length (3 ASCII digits) + value, in the given order."""
    out = []
    for tag, value in items.items():
        value = str(value)
        if (tag not in _TAGS and not _TAG.fullmatch(tag)) or len(value) > 999:
            raise MessageError(f"bad TLV tag or length {tag!r}", "48")
        out.append(f"{tag}{_LEN3[len(value)]}{value}")
    return "".join(out)


# TLV headers (tag + length, as sent) already checked once -> (tag, length): terminals send a few
# dozen distinct ones. Bounded, because they come off the wire.
_TLV_HEADS: Dict[str, Tuple[str, int]] = _Memo()


def _tlv_head(text: str, i: int) -> Tuple[str, int]:
    tag, ln = text[i:i + 2], text[i + 2:i + 5]
    if not _TAG.fullmatch(tag) or len(ln) != 3 or not ln.isdigit():
        raise MessageError(f"bad TLV header at offset {i}", "48")
    head = (tag, int(ln))
    if len(_TLV_HEADS) >= 1024:
        _TLV_HEADS.clear()
    _TLV_HEADS[tag + ln] = head
    return head


def decode_tlv(text: str) -> Dict[str, str]:
    items: Dict[str, str] = {}
    i, end = 0, len(text)
    while i < end:
        tag, n = _TLV_HEADS[text[i:i + 5]] or _tlv_head(text, i)
        # After a 5-character header, the value is short exactly when it would end past the text.
        nxt = i + 5 + n
        if nxt > end:
            raise MessageError(f"TLV {tag} truncated", "48")
        if tag in items:
            raise MessageError(f"TLV {tag} repeated", "48")
        items[tag] = text[i + 5:nxt]
        i = nxt
    return items


# ---------------------------------------------------------------- AES primitives
def aes_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(data) + enc.finalize()


def aes_ecb_decrypt(key: bytes, data: bytes) -> bytes:
    dec = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    return dec.update(data) + dec.finalize()


# A keyed CMAC context per key, copied for each message: building one (AES key schedule, subkeys,
# the Python objects around them) costs ~5 us, a copy ~0.5 us, and the host MACs every request
# and response under the few keys of the terminals it is serving.
_CMAC_CTX: Dict[bytes, Any] = _Memo()


def cmac(key: bytes, data: bytes) -> bytes:
    """AES-CMAC (NIST SP 800-38B / RFC 4493), full 16 bytes."""
    base = _CMAC_CTX[key]
    if base is None:
        base = _cmac.CMAC(algorithms.AES(key))  # raises on a bad key length before it is cached
        if len(_CMAC_CTX) >= 4096:
            _CMAC_CTX.clear()
        _CMAC_CTX[bytes(key)] = base
    c = base.copy()
    c.update(data)
    return c.finalize()


def kcv(key: bytes) -> bytes:
    """Key check value: first 3 bytes of AES-ECB(key, 16 zero bytes)."""
    return aes_ecb_encrypt(key, bytes(16))[:3]


def wrap_key(tmk: bytes, key: bytes) -> bytes:
    """A 16-byte working key wrapped as one AES-ECB block under the terminal master key."""
    if len(key) != 16:
        raise ValueError("working keys are AES-128 (16 bytes)")
    return aes_ecb_encrypt(tmk, key)


def unwrap_key(tmk: bytes, wrapped: bytes) -> bytes:
    return aes_ecb_decrypt(tmk, wrapped)


def derive_key(tmk: bytes, label: str) -> bytes:
    """Key separation: AES-ECB(TMK, label as ASCII right-padded with zero bytes to 16)."""
    raw = label.encode("ascii")
    if len(raw) > 16:
        raise ValueError("label longer than 16 bytes")
    return aes_ecb_encrypt(tmk, raw + bytes(16 - len(raw)))


# Labels for keys derived from the TMK (not session keys).
LABEL_NM_MAC = "RPOS-NMAC"     # MAC of 0800/0810 sign-on (no session keys yet)
LABEL_PARAMS = "RPOS-PARAM"    # CMAC signature of parameter packages


# ---------------------------------------------------------------- card data
def _pad7816(data: bytes) -> bytes:
    data += b"\x80"
    return data + bytes(-len(data) % 16)


def encrypt_pan(dek: bytes, pan: str, iv: Optional[bytes] = None) -> str:
    """Tag EP: hex(IV || AES-CBC(DEK, IV, ISO 7816-4 padded ASCII PAN)); random IV."""
    iv = os.urandom(16) if iv is None else iv
    enc = Cipher(algorithms.AES(dek), modes.CBC(iv)).encryptor()
    return (iv + enc.update(_pad7816(pan.encode("ascii"))) + enc.finalize()).hex().upper()


def decrypt_pan(dek: bytes, blob_hex: str, ecb: Any = None) -> str:
    try:
        blob = bytes.fromhex(blob_hex)
    except ValueError:
        raise MessageError("EP is not hex", "48") from None
    if len(blob) < 32 or len(blob) % 16:
        raise MessageError("EP length", "48")
    # CBC decryption: ECB-decrypt the blocks, XOR each with the one before (the IV first). `ecb` is a
    # reusable ECB decryptor for `dek` (the host keeps one per key: building one costs ~12 us).
    raw = (ecb or Cipher(algorithms.AES(dek), modes.ECB()).decryptor()).update(blob[16:])
    chained = int.from_bytes(raw, "big") ^ int.from_bytes(blob[:-16], "big")
    plain = chained.to_bytes(len(raw), "big").rstrip(b"\x00")
    if not plain.endswith(b"\x80"):
        raise MessageError("EP padding (wrong data key?)", "48")
    pan = plain[:-1].decode("ascii", "replace")
    # A card's PAN is 12-19 digits (ISO/IEC 7812); a customer payment code up to 24 (Alipay).
    if not (12 <= len(pan) <= 24 and pan.isascii() and pan.isdigit()):
        raise MessageError("EP does not hold a 12-24 digit PAN or payment code", "48")
    return pan


def pin_block(tpk: bytes, pin: str, pan: str) -> bytes:
    """ISO 9564-1 format 4 enciphered PIN block (via psec)."""
    return _pinblock.encipher_pinblock_iso_4(tpk, pin, pan)


def pin_from_block(tpk: bytes, block: bytes, pan: str) -> str:
    return _pinblock.decipher_pinblock_iso_4(tpk, block, pan)


def mask_pan(pan: str) -> str:
    """First 6 / last 4, the rest '*': the only PAN form that is stored or sent in field 2."""
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


# HMAC-SHA256 per card key (one per host) as its two keyed SHA-256 states, copied per PAN: the
# RFC 2104 construction hmac.py itself uses, without the Python wrapper it puts around each copy.
_HMAC_CTX: Dict[bytes, Any] = _Memo()
_IPAD, _OPAD = bytes(x ^ 0x36 for x in range(256)), bytes(x ^ 0x5C for x in range(256))


def card_hash(secret: bytes, pan: str) -> str:
    """Keyed hash so velocity and same-card rules work without storing the PAN."""
    ctx = _HMAC_CTX[secret]
    if ctx is None:
        hmac.new(secret, None, hashlib.sha256)   # raises for a key hmac refuses (a str), as before
        key = bytes(secret)
        if len(key) > 64:   # SHA-256's block size
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        if len(_HMAC_CTX) >= 16:
            _HMAC_CTX.clear()
        ctx = _HMAC_CTX[bytes(secret)] = (hashlib.sha256(key.translate(_IPAD)),
                                          hashlib.sha256(key.translate(_OPAD)))
    inner, outer = ctx[0].copy(), ctx[1].copy()
    inner.update(pan.encode("ascii"))
    outer.update(inner.digest())
    return outer.hexdigest()[:32]


# ---------------------------------------------------------------- ISO 8583
def mac_of(key: bytes, raw: bytes) -> bytes:
    """Field 64 = first 8 bytes of AES-CMAC over every byte of the message before field 64.

    Field 64 is always the last field (secondary bitmap is not used), so the MAC input
    is raw[:-8] of the final message, whose bitmap already has bit 64 set.
    """
    return cmac(key, raw[:-8])[:8]


# Fast path for the host's hot loop. pyiso8583 is general (any spec, headers, BCD, nibbles) and
# costs ~70 us per message each way; the RoamPOS spec only uses ASCII-length ASCII fields and
# fixed binary fields, which take a few slices. Anything the fast path is not sure about (a bad
# length, non-ASCII data, trailing bytes, an unexpected spec entry) goes to pyiso8583, so results
# and error messages stay pyiso8583's; test_iso.py checks both agree on valid and mutated input.
def _simple(spec: dict) -> bool:
    return (spec.get("len_count", "bytes") == "bytes" and spec["len_enc"] == "ascii"
            and spec["len_type"] in (0, 2, 3) and spec["max_len"] > 0
            and (spec["data_enc"] == "ascii" or (spec["data_enc"] == "b" and spec["len_type"] == 0)))


_FAST = {i: (SPEC[str(i)]["len_type"], SPEC[str(i)]["max_len"], SPEC[str(i)]["data_enc"] == "b")
         for i in range(2, 65) if _simple(SPEC[str(i)])}
# The numeric fields are fixed-length ASCII of exactly their _NUMERIC length: a digits check is
# then all that decode() asks of them.
_FAST_OK = (SPEC["h"]["max_len"] <= 0 and SPEC["t"]["max_len"] == 4 and SPEC["p"]["data_enc"] == "b"
            and all(_FAST.get(int(f)) == (0, n, False) for f, n in _NUMERIC.items()))
_MTIS = frozenset(MTI_RESPONSE).union(MTI_RESPONSE.values())
_PRINTABLE = bytes(range(0x20, 0x7F))   # `run.translate(None, _PRINTABLE)` is b"" for printable ASCII
# (len_type, max_len) -> (the length prefix of each length, the length of each valid prefix)
_LENGTHS: Dict[tuple, tuple] = {}


def _lengths(len_type: int, max_len: int) -> tuple:
    table = _LENGTHS.get((len_type, max_len))
    if table is None:
        prefixes = tuple(str(n).zfill(len_type) for n in range(max_len + 1))
        table = _LENGTHS[(len_type, max_len)] = (prefixes, {p: n for n, p in enumerate(prefixes) if n})
    return table


# Per bitmap (its 8 bytes as sent): its hex (field "p") and the fields it names, in order, each with
# its fast-path spec: terminals send a handful of bitmaps, so the 63 bit tests are done once per
# bitmap, not once per message. Bounded, because the bitmap comes off the wire.
_LAYOUTS: Dict[bytes, tuple] = _Memo()


def _layout(bitmap: bytes) -> Optional[tuple]:
    if not _FAST_OK or len(bitmap) != 8 or bitmap[0] & 0x80:
        return None  # short, or a secondary bitmap: pyiso8583 / decode() reject it, naming the field
    bits = int.from_bytes(bitmap, "big")
    fields: list = []
    run = None   # the entry of the numeric field that starts the current run of numeric fields
    for i in range(2, 65):
        if (bits >> (64 - i)) & 1:
            spec = _FAST.get(i)
            if spec is None:
                return None
            len_type, max_len, binary = spec
            key = str(i)
            # Consecutive numeric fields (all fixed-length) are adjacent in the message: one digits
            # check covers the run, its length kept in the entry of its first field.
            lengths = _lengths(len_type, max_len)[1] if len_type else None
            entry = [key, len_type, lengths, max_len, binary, 0]
            if key not in _NUMERIC:
                run = None
            elif run is None:
                run = entry
                entry[5] = max_len
            else:
                run[5] += max_len
            fields.append(entry)
    if len(_LAYOUTS) >= 256:
        _LAYOUTS.clear()
    _LAYOUTS[bitmap] = out = (bitmap.hex().upper(), tuple(map(tuple, fields)))
    return out


def _fast_decode(raw: bytes) -> Optional[Dict[str, str]]:
    """Decode like iso8583.decode(raw, SPEC)[0] a message that also passes decode()'s checks (MTI,
    numeric and printable fields), or None to let pyiso8583 and those checks decide."""
    layout = _LAYOUTS[raw[4:12]] or _layout(raw[4:12])
    if layout is None:
        return None
    # The whole message as one str (latin-1 maps each byte to the character of that code), so a
    # field is one slice; the bytes of each run of text between binary fields are checked once
    # for printable ASCII (cheaper than str.isprintable, which looks every character up).
    s = raw.decode("latin-1")
    mti = s[:4]
    if mti not in _MTIS:
        return None
    bitmap_hex, fields = layout
    doc = {"t": mti, "p": bitmap_hex}
    idx = text = 12   # text: where the run of text (lengths and text fields) not yet checked starts
    end = len(raw)
    try:
        for key, len_type, lengths, n, binary, digits in fields:
            if len_type:
                # KeyError unless len_type ASCII digits for a length from 1 to the maximum; a prefix
                # cut short by the end of the message is not one.
                n = lengths[s[idx:idx + len_type]]
                idx += len_type
            nxt = idx + n
            if nxt > end:
                return None
            if digits and not raw[idx:idx + digits].isdigit():
                return None
            if binary:
                if raw[text:idx].translate(None, _PRINTABLE):
                    return None
                doc[key] = raw[idx:nxt].hex().upper()
                text = nxt
            else:
                doc[key] = s[idx:nxt]
            idx = nxt
    except KeyError:
        return None
    if idx != end or (text < end and raw[text:].translate(None, _PRINTABLE)):
        return None
    return doc


# Per set of field keys (as the caller ordered them, "t" included): the bitmap and the fields in
# bitmap order, each with its spec and its length prefixes. The host answers with a few field sets;
# bounded like _LAYOUTS. With a MAC, field 64 is not among the fields: the MAC is appended.
_PLANS: Dict[tuple, Any] = _Memo()
_MAC_PLANS: Dict[tuple, Any] = _Memo()


def _plan(keys: tuple, mac: bool) -> Optional[tuple]:
    if not _FAST_OK or any(k in ("p", "1") for k in keys):
        return None  # keys encode() drops: left to its general path, which drops them first
    try:
        numbers = [(int(k), k) for k in keys if k != "t"]
    except ValueError:
        return None
    if mac:
        numbers.append((64, "64"))
    numbers.sort()
    if mac:
        if numbers[-1] != (64, "64"):
            return None  # another key sorts after the MAC's: left to encode()'s general path
        del numbers[-1]
    fields, bitmap = [], 1 if mac else 0
    for i, key in numbers:
        spec = _FAST.get(i)
        if spec is None:
            return None
        len_type, max_len, binary = spec
        fields.append((key, _lengths(len_type, max_len)[0] if len_type else None, max_len, binary))
        bitmap |= 1 << (64 - i)
    return bitmap.to_bytes(8, "big"), tuple(fields)


def _fast_encode(doc: Dict[str, str], mac_key: Optional[bytes] = None) -> Optional[bytes]:
    """Encode like iso8583.encode(doc, SPEC)[0] for plain fields, or None to let pyiso8583 decide.
    With mac_key (doc without field 64), field 64 is the MAC, as encode(doc, mac_key) sets it."""
    mti = doc.get("t")
    if not isinstance(mti, str) or len(mti) != 4:
        return None
    plans = _PLANS if mac_key is None else _MAC_PLANS
    keys = tuple(doc)
    plan = plans[keys]
    if plan is None:
        if len(plans) >= 256:
            plans.clear()
        # False: no fast plan for these keys (None reads as not planned yet)
        plan = plans[keys] = _plan(keys, mac_key is not None) or False
    if plan is False:
        return None
    bitmap, fields = plan
    try:
        out = [mti.encode("ascii"), bitmap]
        text = []   # the run of text fields (with their length prefixes) up to a binary field
        for key, prefixes, max_len, binary in fields:
            value = doc[key]
            if not isinstance(value, str) or not value:
                return None
            if binary:
                data = bytes.fromhex(value)
                if len(data) != max_len:
                    return None
                out.append("".join(text).encode("ascii"))
                out.append(data)
                text = []
            else:
                # A non-ASCII value fails the run's encoding: its length in characters is in bytes.
                n = len(value)
                if prefixes is None:
                    if n != max_len:
                        return None
                elif n > max_len:
                    return None
                else:
                    text.append(prefixes[n])
                text.append(value)
        out.append("".join(text).encode("ascii"))
    except ValueError:   # bytes.fromhex, and UnicodeEncodeError
        return None
    raw = b"".join(out)
    if mac_key is not None:
        return raw + cmac(mac_key, raw)[:8]
    return raw


def encode(fields: Dict[str, str], mac_key: Optional[bytes] = None) -> bytes:
    """Encode with the RoamPOS spec; with mac_key, append a MAC as field 64."""
    # The host's responses take one pass over `fields`; field keys "p", "1" or "64" (which encode
    # drops), a field the fast path does not handle or a value it refuses take the general path.
    raw = None if "64" in fields else _fast_encode(fields, mac_key)
    if raw is None:
        doc = {k: v for k, v in fields.items() if k not in ("p", "1", "64")}
        if mac_key is not None:
            doc["64"] = "00" * 8
        raw = _fast_encode(doc)   # fields 2..64 only: one above 64 always takes the checks below
        if raw is None:
            if any(k.isdigit() and int(k) > 64 for k in doc):
                raise MessageError("fields above 64 (secondary bitmap) are not used")
            try:
                raw = bytes(iso8583.encode(doc, SPEC)[0])
            except iso8583.EncodeError as exc:
                raise MessageError(str(exc)) from None
        if mac_key is not None:
            raw = raw[:-8] + mac_of(mac_key, raw)
    return raw


def decode(raw: bytes) -> Dict[str, str]:
    """Decode and validate the framing; raises MessageError naming the field."""
    if len(raw) < 12:
        raise MessageError("message shorter than MTI + bitmap")
    raw = bytes(raw)
    doc = _fast_decode(raw)
    if doc is not None:
        return doc   # it passed the checks below
    try:
        doc, _ = iso8583.decode(raw, SPEC)
    except iso8583.DecodeError as exc:
        raise MessageError(str(exc), getattr(exc, "field", None)) from None
    if "1" in doc:
        raise MessageError("secondary bitmap is not allowed", "1")
    if doc["t"] not in MTI_RESPONSE and doc["t"] not in MTI_RESPONSE.values():
        raise MessageError(f"unsupported MTI {doc['t']!r}", "t")
    for f, n in _NUMERIC.items():
        if f in doc and (len(doc[f]) != n or not doc[f].isdigit()):
            raise MessageError("must be numeric", f)
    for f, v in doc.items():
        # ans fields are printable: a NUL or other control byte is refused here, not by the ledger
        # (PostgreSQL rejects NUL in text) after the message was half handled.
        if isinstance(v, str) and not v.isprintable():
            raise MessageError("control character", f)
    return doc


def verify_mac(key: bytes, raw: bytes) -> bool:
    if len(raw) < 20:
        return False
    return hmac.compare_digest(mac_of(key, raw), raw[-8:])


def transmission_time(now: float) -> str:
    """Field 7, MMDDhhmmss in UTC."""
    return time.strftime("%m%d%H%M%S", time.gmtime(now))


_MIDNIGHTS: Dict[int, int] = _Memo()   # year * 10000 + MMDD -> epoch of that day's 00:00 UTC
_YEAR = (0, 0, 0)   # the UTC year last seen: epoch of its first second, of the next year's, the year


def parse_transmission_time(value: str, now: float) -> float:
    """Field 7 to epoch seconds, choosing the year that puts it closest to now."""
    global _YEAR
    if len(value) != 10 or not value.isdigit():
        raise MessageError("not MMDDhhmmss", "7")
    try:
        x = int(value)   # one int() for the five two-digit parts
    except ValueError:
        # A digit int() does not take (a superscript): the error of the first part that has one.
        for i in (0, 2, 4, 6, 8):
            int(value[i:i + 2])
        raise
    mo, d, h, mi, s = x // 100000000, x // 1000000 % 100, x // 10000 % 100, x // 100 % 100, x % 100
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 60):
        raise MessageError("not a valid MMDDhhmmss", "7")
    # Within the cached year's bounds time.gmtime(now).tm_year is that year (gmtime floors `now`).
    start, end, year = _YEAR
    if not start <= now < end:
        year = time.gmtime(now).tm_year
        _YEAR = (calendar.timegm((year, 1, 1, 0, 0, 0)), calendar.timegm((year + 1, 1, 1, 0, 0, 0)),
                 year)
    day = year * 10000 + x // 1000000
    midnight = _MIDNIGHTS[day]
    if midnight is None and d <= calendar.monthrange(year, mo)[1]:
        if len(_MIDNIGHTS) >= 1024:
            _MIDNIGHTS.clear()
        midnight = _MIDNIGHTS[day] = calendar.timegm((year, mo, d, 0, 0, 0, 0, 0, 0))
    if midnight is not None:
        t = midnight + 3600 * h + 60 * mi + s
        if abs(t - now) <= 90 * 86400:
            # The same date a year earlier or later is >= 275 days from now: this year wins.
            return float(t)
    best = None
    for y in (year - 1, year, year + 1):
        if d > calendar.monthrange(y, mo)[1]:
            continue
        t = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
        if best is None or abs(t - now) < abs(best - now):
            best = t
    if best is None:
        raise MessageError("not a valid MMDDhhmmss", "7")
    return float(best)


_CELLS: Dict[str, Tuple[int, int, int, int]] = _Memo()   # LC -> cell: terminals report the same few


def parse_location(tlv: Dict[str, str]) -> Tuple[str, Optional[Tuple[int, int, int, int]]]:
    """Tag LC = 'MCC-MNC-LAC-CI' (decimal) -> ('cell', tuple); WF = BSSID -> ('wifi', None)."""
    if "LC" in tlv:
        lc = tlv["LC"]
        cell = _CELLS[lc]
        if cell is None:
            parts = lc.split("-")
            if len(parts) != 4 or not all(p.isdigit() and len(p) <= 9 for p in parts):
                raise MessageError("LC must be MCC-MNC-LAC-CI in decimal", "48")
            mcc, mnc, lac, ci = (int(p) for p in parts)
            if len(_CELLS) >= 4096:
                _CELLS.clear()
            cell = _CELLS[lc] = (mcc, mnc, lac, ci)
        return "cell", cell
    if "WF" in tlv:
        if not _BSSID.fullmatch(tlv["WF"]):
            raise MessageError("WF must be a BSSID AA:BB:CC:DD:EE:FF", "48")
        return "wifi", None
    return "none", None


# ---------------------------------------------------------------- parameter packages
def sign_params(tmk: bytes, body: bytes) -> bytes:
    """Retained .../params payload: JSON body + b'\\n' + 32 hex digits of CMAC(K_param, body)."""
    return body + b"\n" + cmac(derive_key(tmk, LABEL_PARAMS), body).hex().upper().encode()


def verify_params(tmk: bytes, payload: bytes) -> bytes:
    body, sep, tag = payload.rpartition(b"\n")
    if not sep or len(tag) != 32:
        raise MessageError("parameter package has no signature")
    want = cmac(derive_key(tmk, LABEL_PARAMS), body).hex().upper().encode()
    if not hmac.compare_digest(want, tag.upper()):
        raise MessageError("parameter package signature does not verify")
    return body
