"""Lean MQTT 3.1.1 client for host workers: QoS 1 both ways, manual ack, persistent session, one thread."""
from __future__ import annotations

import errno
import logging
import select
import socket
import struct
import time
from typing import Callable, Dict, List, Optional

from ..mqtt_codec import (CONNACK, CONNECT, DISCONNECT, PINGREQ, PINGRESP, PUBACK, PUBLISH,
                          SUBACK, SUBSCRIBE, ProtocolError, encode_str, packet)

__all__ = ["WireClient", "Inbound", "CONNECTION_LOST"]

log = logging.getLogger("roampos.host")

CONNECTION_LOST = 7   # loop() result when the connection is gone (paho's MQTT_ERR_CONN_LOST)
_PUBACK_PACKET = struct.Struct("!BBH")   # a whole PUBACK: type, remaining length 2, packet id
_PINGREQ = bytes([PINGREQ << 4, 0])
_DISCONNECT = bytes([DISCONNECT << 4, 0])
_U16 = struct.Struct("!H")
_u16_at = _U16.unpack_from   # bound once: looked up per packet field, it is a new object each time
_HEAD1 = struct.Struct("!BBH")    # PUBLISH fixed header (1-byte remaining length), topic length
_HEAD2 = struct.Struct("!BBBH")   # the same with a 2-byte remaining length


class Inbound:
    """A received PUBLISH. `conn` is the connection it came on: a PUBACK only means something on that
    connection, so acks for a lost one are dropped (the broker redelivers those messages)."""
    __slots__ = ("topic", "payload", "qos", "mid", "conn")

    def __init__(self, topic: str, payload: bytes, qos: int, mid: int, conn: int):
        self.topic, self.payload, self.qos, self.mid, self.conn = topic, payload, qos, mid, conn


class WireClient:
    """What a worker needs of MQTT and nothing else, without paho's per-packet Python.

    Why it is safe: requests arrive QoS 1 on a persistent session and are acknowledged only by
    `ack()` (called after the commit), so an unacknowledged request is redelivered by the broker after
    a reconnect or to the restarted worker. Responses go out QoS 1 and stay in `inflight` until the
    broker's PUBACK; on reconnect they are resent with DUP set (MQTT 3.1.1 §4.4). Writes are buffered
    and leave in one send() per `flush()`, so a group's responses and PUBACKs share a few segments.
    """

    def __init__(self, host: str, port: int, client_id: str, keepalive: int = 30,
                 subscriptions: Optional[List[str]] = None):
        self.host, self.port, self.client_id, self.keepalive = host, port, client_id, keepalive
        self.subscriptions = list(subscriptions or [])
        self.sock: Optional[socket.socket] = None
        self.conn = 0                       # connection generation, bumped on every CONNECT
        self.out = bytearray()              # bytes waiting for the socket
        self.inbuf = bytearray()
        self.inflight: Dict[int, bytes] = {}   # our QoS 1 publishes the broker has not acknowledged
        self._mid = 0
        self._last_out = self._ping_sent = 0.0
        # CONNACK's session-present flag: False after a broker that lost our session (restarted
        # without persistence), which will not redeliver what it had sent us unacknowledged.
        self.session_present = False
        self.on_message: Callable[[Inbound], None] = lambda m: None
        self.on_subscribe: Callable[[], None] = lambda: None

    # ------------------------------------------------------------ connection
    def connect(self, timeout: float = 10.0) -> None:
        """Open the socket, CONNECT (clean session off), wait for CONNACK, resend in-flight
        publishes, subscribe. Raises OSError (unreachable, refused, timed out)."""
        self.close()
        sock = socket.create_connection((self.host, self.port), timeout)
        try:
            # The group's packets are written at once by flush(); Nagle would only delay the last one.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # not TCP
        # Protocol level 4, connect flags 0: clean session off (the session outlives this connection).
        body = (encode_str("MQTT") + bytes([4, 0x00]) + _U16.pack(self.keepalive) + encode_str(self.client_id))
        try:
            sock.sendall(packet(CONNECT, 0, body))
            head = _read_exact(sock, 4, timeout)
            if head[0] >> 4 != CONNACK or head[1] != 2:
                raise ConnectionError(f"expected CONNACK, got {head.hex()}")
            if head[3]:
                raise ConnectionRefusedError(f"broker refused connection: return code {head[3]}")
            self.session_present = bool(head[2] & 1)
        except BaseException:
            sock.close()   # a half-open connection must not outlive the failed attempt
            raise
        sock.setblocking(False)
        self.sock, self.conn, self.inbuf = sock, self.conn + 1, bytearray()
        self._ping_sent = 0.0
        self.out = bytearray()
        for raw in self.inflight.values():
            self.out += bytes([raw[0] | 0x08]) + raw[1:]   # DUP: the broker may have it already
        if self.subscriptions:
            subs = b"".join(encode_str(f) + b"\x01" for f in self.subscriptions)
            self.out += packet(SUBSCRIBE, 2, _U16.pack(self._next_mid()) + subs)
        self.flush()

    def connected(self) -> bool:
        return self.sock is not None

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None

    def disconnect(self) -> None:
        """Clean DISCONNECT: the session (and any unacknowledged request) stays with the broker."""
        if self.sock is not None:
            self.out += _DISCONNECT
            self.flush()
            self.close()

    # ------------------------------------------------------------ sending
    def _next_mid(self) -> int:
        mid = self._mid % 65535 + 1
        while mid in self.inflight:
            mid = mid % 65535 + 1
        self._mid = mid
        return mid

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Queue a publish; QoS 1 ones are kept until the broker acknowledges them."""
        t = topic.encode()
        if qos:
            mid = self._next_mid()
            raw = _publish(2, t, _U16.pack(mid), payload)
            self.inflight[mid] = raw
        else:
            raw = _publish(0, t, b"", payload)
        if self.sock is not None:
            self.out += raw

    def ack(self, msg: Inbound) -> None:
        """Queue the PUBACK of a received QoS 1 message (after its effects are committed)."""
        if msg.qos == 1 and msg.conn == self.conn and self.sock is not None:
            self.out += _PUBACK_PACKET.pack(PUBACK << 4, 2, msg.mid)

    def flush(self) -> bool:
        """Write what is queued; False if the connection is lost. A full socket buffer keeps the
        rest for the next loop()."""
        if self.sock is None:
            return False
        while self.out:
            try:
                n = self.sock.send(self.out)
            except BlockingIOError:
                return True
            except OSError as exc:
                self._lost(f"send: {exc}")
                return False
            del self.out[:n]
            self._last_out = time.monotonic()
        return True

    # ------------------------------------------------------------ receiving
    def loop(self, timeout: float) -> int:
        """Wait up to `timeout` for data, handle every complete packet, keep the connection alive.
        Returns 0, or CONNECTION_LOST (the caller reconnects)."""
        sock = self.sock
        if sock is None:
            return CONNECTION_LOST
        if self.out and not self.flush():
            return CONNECTION_LOST
        try:
            r, w, _ = select.select([sock], [sock] if self.out else [], [], timeout)
        except (OSError, ValueError) as exc:
            self._lost(f"select: {exc}")
            return CONNECTION_LOST
        if r:
            try:
                data = sock.recv(1 << 16)
            except BlockingIOError:
                data = None
            except OSError as exc:
                self._lost(f"recv: {exc}")
                return CONNECTION_LOST
            if data == b"":
                self._lost("closed by broker")
                return CONNECTION_LOST
            if data:
                self.inbuf += data
                try:
                    self._parse()
                except ProtocolError as exc:
                    self._lost(f"protocol error: {exc}")
                    return CONNECTION_LOST
        if w and not self.flush():
            return CONNECTION_LOST
        return self._keepalive()

    def _keepalive(self) -> int:
        now = time.monotonic()
        if self._ping_sent and now - self._ping_sent > self.keepalive:
            self._lost("no PINGRESP within keepalive")
            return CONNECTION_LOST
        if not self._ping_sent and now - self._last_out > self.keepalive / 2:
            self.out += _PINGREQ
            self._ping_sent = now
            if not self.flush():
                return CONNECTION_LOST
        return 0

    def _parse(self) -> None:
        buf, pos, end = self.inbuf, 0, len(self.inbuf)
        data = bytes(buf)   # one copy of what was received: each packet body is one slice of it
        while end - pos >= 2:
            length, mult, i, complete = 0, 1, pos + 1, False
            while i < end and i < pos + 5:
                b = data[i]
                i += 1
                length += (b & 0x7F) * mult
                if not b & 0x80:
                    complete = True
                    break
                mult *= 128
            if not complete:
                if i >= pos + 5:
                    raise ProtocolError("remaining length longer than 4 bytes")
                break  # the length itself is incomplete
            if i + length > end:
                break  # incomplete packet: wait for more bytes
            first = data[pos]
            try:
                self._handle_packet(first, data[i:i + length])
            except struct.error:  # a packet shorter than its own fields
                raise ProtocolError(f"packet type {first >> 4} of {length} bytes is truncated") from None
            pos = i + length
        del buf[:pos]

    def _handle_packet(self, first: int, body: bytes) -> None:
        ptype = first >> 4
        if ptype == PUBLISH:
            qos = (first >> 1) & 3
            (tlen,) = _u16_at(body, 0)
            topic = body[2:2 + tlen].decode("utf-8", "replace")
            pos, mid = 2 + tlen, 0
            if qos:
                (mid,) = _u16_at(body, pos)
                pos += 2
            if qos == 2:
                raise ProtocolError("QoS 2 PUBLISH on a QoS 1 subscription")
            self.on_message(Inbound(topic, body[pos:], qos, mid, self.conn))
        elif ptype == PUBACK:
            self.inflight.pop(_u16_at(body, 0)[0], None)
        elif ptype == PINGRESP:
            self._ping_sent = 0.0
        elif ptype == SUBACK:
            if any(b == 0x80 for b in body[2:]):
                log.error("broker refused a subscription of %s", self.client_id)
            self.on_subscribe()
        elif ptype == CONNACK:
            raise ProtocolError("second CONNACK")

    def _lost(self, why: str) -> None:
        log.warning("%s: broker connection lost (%s)", self.client_id, why)
        self.close()


def _publish(flags: int, topic: bytes, mid: bytes, payload: bytes) -> bytes:
    """packet(PUBLISH, flags, topic length + topic + mid + payload), in one join: the fixed header
    and the topic length are packed together for the remaining lengths of 1 and 2 bytes."""
    n = 2 + len(topic) + len(mid) + len(payload)
    if n < 128:
        head = _HEAD1.pack(PUBLISH << 4 | flags, n, len(topic))
    elif n < 16384:
        head = _HEAD2.pack(PUBLISH << 4 | flags, n & 0x7F | 0x80, n >> 7, len(topic))
    else:
        return packet(PUBLISH, flags, _U16.pack(len(topic)) + topic + mid + payload)
    return b"".join((head, topic, mid, payload))


def _read_exact(sock: socket.socket, n: int, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while len(data) < n:
        try:
            chunk = sock.recv(n - len(data))
        except socket.timeout:
            raise TimeoutError("no CONNACK") from None
        except OSError as exc:
            if exc.errno == errno.EINTR:
                continue
            raise
        if not chunk:
            raise ConnectionError("closed before CONNACK")
        data += chunk
    return data
