# Parameter record format: one header line then a JSON payload. Pure (no I/O),
# shared by the firmware store and the host's image baker (tools/roampos/provision.py).
#   RPR1 <name> <version> <payload-length> <crc32 of payload, 8 hex>\n<payload>
# The name and version in the header let a reader reject a file that is not the
# record the manifest points at; the length catches truncation, the CRC damage.
# The magic and the header limit (80 bytes) are literals, not module names:
# boot imports this module, and every name is interned for good.
import binascii
import json


class RecordError(ValueError):
    # reason: "missing" | "truncated" | "checksum" | "header" | "json"
    def __init__(self, name, reason, message):
        super().__init__("%s: %s" % (name, message))
        self.name = name
        self.reason = reason


def crc(data):
    return binascii.crc32(data) & 0xFFFFFFFF


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"))


def encode(name, version, obj):
    payload = dumps(obj).encode()
    head = "RPR1 %s %d %d %08x\n" % (name, version, len(payload), crc(payload))
    return head.encode() + payload


def decode(name, data, version=None):
    # Returns (version, payload bytes as a memoryview) or raises RecordError.
    nl = data.find(b"\n", 0, 80)
    if nl < 0:
        raise RecordError(name, "truncated" if len(data) < 80 else "header",
                          "no record header (%d bytes)" % len(data))
    try:
        f = bytes(data[:nl]).decode().split(" ")
        if len(f) != 5 or f[0] != "RPR1":
            raise ValueError
        ver, n, c = int(f[2]), int(f[3]), int(f[4], 16)
    except (ValueError, UnicodeError):
        raise RecordError(name, "header", "bad record header")
    if f[1] != name:
        raise RecordError(name, "header", "file holds record %s" % f[1])
    if version is not None and ver != version:
        raise RecordError(name, "header", "version %d, expected %d" % (ver, version))
    body = memoryview(data)[nl + 1:]
    if len(body) < n:
        raise RecordError(name, "truncated", "truncated: %d of %d bytes" % (len(body), n))
    if len(body) > n:
        raise RecordError(name, "header", "%d bytes after the payload" % (len(body) - n))
    if crc(body) != c:
        raise RecordError(name, "checksum", "checksum mismatch")
    return ver, body


def decode_obj(name, data, version=None):
    ver, body = decode(name, data, version)
    try:
        return ver, json.loads(bytes(body))
    except ValueError:
        raise RecordError(name, "json", "payload is not JSON")
