"""MQTT 3.1.1 packet codec for the embedded broker: packet types, framing, fields, topic filters."""
from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

__all__ = ["ProtocolError", "Message", "topic_matches", "valid_filter", "split_share", "read_bin",
           "read_utf8", "packet", "encode_str", "publish_packet", "read_packet", "MAX_PACKET",
           "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP", "SUBSCRIBE",
           "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT"]

MAX_PACKET = 1 << 20   # a terminal message is < 2 kB; anything this big is garbage

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14


class ProtocolError(Exception):
    """The peer broke MQTT 3.1.1; the connection is closed, the broker carries on."""


@dataclass
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool = False


def topic_matches(filt: str, topic: str) -> bool:
    f, t = filt.split("/"), topic.split("/")
    if topic.startswith("$") and f[0] in ("+", "#"):
        return False  # MQTT 4.7.2: wildcards at the first level do not match $-topics
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(f) == len(t)


def valid_filter(filt: str) -> bool:
    if not filt or "\0" in filt:
        return False
    parts = filt.split("/")
    for i, p in enumerate(parts):
        if "#" in p and (p != "#" or i != len(parts) - 1):
            return False
        if "+" in p and p != "+":
            return False
    return True


def split_share(filt: str) -> Tuple[Optional[str], str]:
    """`$share/<group>/<filter>` -> (group, filter); a plain filter -> (None, filter)."""
    if filt.startswith("$share/"):
        parts = filt.split("/", 2)
        if len(parts) == 3 and parts[1] and parts[2] and "+" not in parts[1] and "#" not in parts[1]:
            return parts[1], parts[2]   # (a group name is a name, not a filter: MQTT 5 §4.8.2)
        raise ProtocolError(f"bad shared subscription {filt!r}")
    return None, filt


def read_bin(buf: bytes, pos: int) -> Tuple[bytes, int]:
    """A 2-byte length-prefixed field at `pos`; returns it and the position after it."""
    if pos + 2 > len(buf):
        raise ProtocolError("length beyond packet")
    (n,) = struct.unpack_from("!H", buf, pos)
    if pos + 2 + n > len(buf):
        raise ProtocolError("data beyond packet")
    return buf[pos + 2:pos + 2 + n], pos + 2 + n


def read_utf8(buf: bytes, pos: int) -> Tuple[str, int]:
    raw, pos = read_bin(buf, pos)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("string is not UTF-8") from None
    if "\0" in text:
        raise ProtocolError("string with U+0000")   # §1.5.3 [MQTT-1.5.3-2]: close
    return text, pos


def packet(ptype: int, flags: int, body: bytes) -> bytes:
    """Fixed header (type, flags, variable-length remaining length) + body."""
    n, out = len(body), bytearray([(ptype << 4) | flags])
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out) + body


def encode_str(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("!H", len(raw)) + raw


def publish_packet(msg: Message, mid: int, dup: bool = False) -> bytes:
    flags = (msg.qos << 1) | (1 if msg.retain else 0) | (8 if dup else 0)
    body = encode_str(msg.topic) + (struct.pack("!H", mid) if msg.qos else b"") + msg.payload
    return packet(PUBLISH, flags, body)


async def read_packet(reader: asyncio.StreamReader, timeout: Optional[float],
                      reserve: Optional[Callable[[int], Callable[[], None]]] = None) -> Tuple[int, int, bytes]:
    """One packet: (type, flags, body); `timeout` bounds the whole packet (keepalive): a client that
    stops halfway through one (a dead cellular link) is as gone as a silent one. `reserve(length)`,
    when given, is asked before a body of more than RESERVE_ABOVE bytes is read (it raises
    ProtocolError to refuse it) and returns what frees the reservation once the body is in."""
    if timeout is None:
        return await _read_packet(reader, reserve)
    if hasattr(asyncio, "timeout"):  # 3.11+: no extra task per packet
        async with asyncio.timeout(timeout):
            return await _read_packet(reader, reserve)
    return await asyncio.wait_for(_read_packet(reader, reserve), timeout)


# Bodies up to this size are read without a reservation: every terminal and host message is far
# below it, and asyncio's stream reader buffers about twice that per connection anyway.
RESERVE_ABOVE = 64 * 1024


async def _read_packet(reader: asyncio.StreamReader,
                       reserve: Optional[Callable[[int], Callable[[], None]]] = None) -> Tuple[int, int, bytes]:
    first = await reader.readexactly(1)
    mult, length = 1, 0
    for _ in range(4):
        (b,) = await reader.readexactly(1)
        length += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            break
    else:
        raise ProtocolError("remaining length longer than 4 bytes")
    if length > MAX_PACKET:
        raise ProtocolError(f"packet of {length} bytes")
    if reserve is None or length <= RESERVE_ABOVE:
        body = await reader.readexactly(length) if length else b""
    else:
        release = reserve(length)
        try:
            body = await reader.readexactly(length)
        finally:
            release()
    return first[0] >> 4, first[0] & 0x0F, body
