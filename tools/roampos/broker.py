"""Embedded asyncio MQTT 3.1.1 broker: sessions, QoS 0/1 (QoS 2 accepted in, sent on at 1), retained, last will,
wildcards, $share groups."""
from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import logging
import struct
import threading
from dataclasses import dataclass, field
from typing import Deque, Dict, List, Optional, Tuple

from .mqtt_codec import (CONNACK, CONNECT, DISCONNECT, PINGREQ, PINGRESP, PUBACK, PUBCOMP, PUBLISH,
                         PUBREC, PUBREL, SUBACK,
                         SUBSCRIBE, UNSUBACK, UNSUBSCRIBE, Message, ProtocolError, packet,
                         publish_packet, read_bin, read_packet, read_utf8, split_share, topic_matches,
                         valid_filter)

__all__ = ["Broker", "BrokerThread", "topic_matches", "DEFAULT_PORT", "main"]

DEFAULT_PORT = 18830
log = logging.getLogger("roampos.broker")

# Bounds, so that no client can exhaust the broker. A session has at most MAX_INFLIGHT messages
# awaiting its PUBACK (more wait in its queue, sent as acks come: a worker holding its acks through
# a database outage must not make the broker spin looking for a free packet id); a session keeps at
# most MAX_QUEUED messages and MAX_QUEUED_BYTES of payload (the newest are dropped, and logged,
# beyond it; so are messages held for a $share group without members); at most MAX_RETAINED retained
# topics and MAX_RETAINED_BYTES; a client whose socket buffer passes MAX_BUFFER is not reading and is
# dropped (its persistent session keeps what was unacknowledged). Bursts the broker sends by itself
# (redelivery at reconnect, retained messages for a new subscription) wait for the client to read
# past PACE bytes instead, so a client that reads is never taken for one that does not.
#
# Bounds on all clients together, so that many of them (client IDs with clean session off that
# subscribe and go away while others publish to them) cannot exhaust the broker either: at most
# MAX_SESSIONS sessions, connected or not (a CONNECT that would add one more is refused with
# CONNACK 3, server unavailable; a known client ID always gets its session back), and at most
# MAX_TOTAL_BYTES kept for them (queued, in flight, held for a $share group), each copy counted as
# its topic and payload plus COPY_COST, what a kept copy costs beyond them (about 160 bytes measured:
# a queue of empty messages is not free). Where that total or the retained store is full, a PUBLISH
# the client awaits a PUBACK (PUBREC) for is refused whole: see _refuse.
MAX_SESSIONS = 10_000
MAX_TOTAL_BYTES = 64 << 20
COPY_COST = 200
REFUSE_GRACE_S = 0.5   # a connection whose PUBLISH was refused reads on this long, then is closed
MAX_INFLIGHT = 1000
MAX_QUEUED = 100_000
MAX_QUEUED_BYTES = 64 << 20
MAX_RETAINED = 100_000
MAX_RETAINED_BYTES = 64 << 20
MAX_BUFFER = 8 << 20
PACE = 256 * 1024
CLOSE_GRACE_S = 5   # a closing connection's last bytes get this long to leave, then it is cut
# Send buffers of all connections together: MAX_BUFFER each would let 10 000 clients that never
# read hold 80 GB. Past MAX_TOTAL_BUFFER the clients backlogged longest are cut until the buffers
# hold at most SHED_TO (see _shed); their QoS 1 messages stay in flight in their sessions.
MAX_TOTAL_BUFFER = 64 << 20
SHED_TO = 48 << 20
# Packets being received: a client may announce up to MAX_PACKET (1 MB) and then send it slowly
# (within 1.5 keepalives: hours), and the body waits whole in its connection's reader. Bodies above
# mqtt_codec.RESERVE_ABOVE (64 kB, far above any terminal or host message) are counted against
# MAX_INCOMING for all connections together while they arrive; a client whose packet does not fit is
# disconnected at once (logged), so 10 000 of them cannot make the broker hold 10 GB.
MAX_INCOMING = 64 << 20
# Subscriptions: at most MAX_SUBSCRIPTIONS filters per session (a terminal needs 2, a host worker
# 2) and MAX_TOTAL_SUBSCRIPTIONS for all sessions together (~600 bytes each measured, with a
# 256-byte filter: ~60 MB at most; 10 000 sessions x 1000 would be 6 GB), a filter at most
# MAX_FILTER_BYTES as sent ($share/<group>/ included) and MAX_FILTER_LEVELS levels (matching
# splits it for every message). Beyond, SUBACK grants that filter 0x80 (§3.9.3); one the session
# already has is always renewed.
MAX_SUBSCRIPTIONS = 1000
MAX_TOTAL_SUBSCRIPTIONS = 100_000
MAX_FILTER_BYTES = 256
MAX_FILTER_LEVELS = 32
# A persistent session offline this long is ended (mosquitto's persistent_client_expiration): with
# no authentication, client IDs that subscribe and go away would otherwise hold MAX_SESSIONS and
# their kept messages for good. Counted from the last disconnect; a reconnect starts it again.
# Terminals use clean sessions (nothing to expire) and the host restarts a worker within seconds;
# an expiring session's shared-subscription messages go to another member or wait for the group
# (see _end), so a host worker's unanswered requests outlive its session. 0: never.
SESSION_EXPIRY_S = 2 * 86400


@dataclass
class Session:
    client_id: str
    clean: bool
    subs: Dict[str, int] = field(default_factory=dict)                 # plain filters
    shares: Dict[Tuple[str, str], int] = field(default_factory=dict)   # (group, filter)
    inflight: Dict[int, Tuple[Message, Optional[Tuple[str, str]]]] = field(default_factory=dict)
    queue: "Deque[Tuple[Message, Optional[Tuple[str, str]]]]" = field(default_factory=collections.deque)
    conn: Optional["Connection"] = None
    mids: "itertools.cycle[int]" = field(default_factory=lambda: itertools.cycle(range(1, 65536)))
    queued_bytes: int = 0   # payload bytes in `queue`
    replaying: Optional["Connection"] = None   # resending in-flight messages on this connection
    qos2: set = field(default_factory=set)   # inbound QoS 2 ids PUBRECed, awaiting their PUBREL
    offline_since: float = 0.0   # loop time of its last disconnect (persistent sessions: expiry)


class Connection:
    def __init__(self, broker: "Broker", reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.broker, self.reader, self.writer = broker, reader, writer
        self.session: Optional[Session] = None
        self.will: Optional[Message] = None
        self.keepalive = 0
        self.refused_until: Optional[float] = None   # loop time this connection closes at (_refuse)
        self.buffered = 0   # its send buffer's size when last looked at (Broker.buffered sums them)

    def send(self, data: bytes) -> None:
        writer = self.writer
        if writer.is_closing():
            return
        writer.write(data)
        # What the socket did not take waits in the transport's buffer: almost always nothing, and
        # then this costs one call and a test.
        size = writer.transport.get_write_buffer_size()
        if size or self.buffered:
            self.broker._buffered(self, size)

    def abort(self) -> None:
        """Cut the connection now, its send buffer freed (close() would wait for it to drain)."""
        self.writer.transport.abort()
        self.broker._buffered(self, 0)

    async def read_packet(self) -> Tuple[int, int, bytes]:
        # A silent client is dropped after 1.5 keepalive periods (MQTT 3.1.1 §3.1.2.10).
        timeout = self.keepalive * 1.5 if self.keepalive else None
        if self.refused_until is not None:
            timeout = max(0.0, self.refused_until - asyncio.get_running_loop().time())
        return await read_packet(self.reader, timeout, self.broker._reserve_incoming)

    async def drain(self, above: int = 0) -> None:
        """Wait for the client to read what is queued for it (when more than `above` bytes wait),
        within the keepalive's grace: a client that stops reading is dropped, and its will sent."""
        if self.writer.transport.get_write_buffer_size() > above:
            await asyncio.wait_for(self.writer.drain(), self.keepalive * 1.5 if self.keepalive else 60)

    def close(self) -> None:
        """close() waits for the send buffer to drain, forever for a client that does not read
        (its socket and buffer would leak): such a connection is cut after CLOSE_GRACE_S."""
        transport = self.writer.transport
        self.writer.close()
        if transport.get_write_buffer_size():
            asyncio.get_running_loop().call_later(CLOSE_GRACE_S, self.abort)
        else:
            self.broker._buffered(self, 0)


class Broker:
    """Single asyncio loop; all state in memory (it is a broker, not a store)."""

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 hold: Tuple[str, ...] = (), session_expiry: Optional[float] = None):
        self.host, self.port = host, port
        self.sessions: Dict[str, Session] = {}
        self.session_expiry = SESSION_EXPIRY_S if session_expiry is None else session_expiry
        # Persistent sessions offline, by client ID, in the order they went offline (oldest first).
        self._offline: "collections.OrderedDict[str, Session]" = collections.OrderedDict()
        self._expiring: Optional[asyncio.Task] = None
        self.subscriptions = 0   # filters of all sessions together (MAX_TOTAL_SUBSCRIPTIONS)
        self.buffered = 0        # Connection.buffered of all connections (MAX_TOTAL_BUFFER)
        self.incoming = 0        # large packet bodies being received (MAX_INCOMING)
        # Connections whose send buffer was not empty when last looked at, in the order their
        # backlog began (oldest first: the slowest readers).
        self._backlog: Dict[Connection, None] = {}
        self.retained: Dict[str, Message] = {}
        # Shared subscriptions ("$share/<group>/<filter>") whose messages wait while the group has
        # no member: a request the broker acknowledged before the host's workers subscribed is
        # kept for them instead of being dropped.
        self.held: Dict[Tuple[str, str], List[Message]] = {}
        for filt in hold:
            group, f = split_share(filt)
            if group is None:
                raise ValueError(f"hold needs a $share/<group>/<filter>, not {filt!r}")
            self.held[(group, f)] = []
        self.held_bytes: Dict[Tuple[str, str], int] = collections.defaultdict(int)
        self.retained_bytes = 0
        self.total_bytes = 0   # what sessions' queues, in-flight messages and `held` cost (_cost)
        # Round robin per group: one counter for all would hand every request to one worker when
        # requests and heartbeats (two groups' filters) alternate.
        self._rr: Dict[Tuple[str, str], "itertools.count[int]"] = collections.defaultdict(itertools.count)
        self._server: Optional[asyncio.AbstractServer] = None
        self._anon = itertools.count(1)
        # Routing index, a superset checked against each session's own filters at publish time:
        # exact topic -> client ids with that plain filter; client ids with a wildcard or a share.
        self._exact: Dict[str, set] = collections.defaultdict(set)
        self._scan: set = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.session_expiry > 0:
            self._expiring = asyncio.create_task(self._expire_loop())
        log.info("MQTT broker listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._expiring:
            self._expiring.cancel()
            await asyncio.gather(self._expiring, return_exceptions=True)
        if self._server:
            self._server.close()
            for s in list(self.sessions.values()):
                if s.conn:
                    s.conn.writer.transport.abort()
            await self._server.wait_closed()

    # ------------------------------------------------------------ connection life
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(self, reader, writer)
        graceful = False
        try:
            ptype, flags, body = await asyncio.wait_for(conn.read_packet(), 10)
            if ptype != CONNECT or flags:
                raise ProtocolError("first packet is not CONNECT")
            if not await self._connect(conn, body):
                return
            while True:
                ptype, flags, body = await conn.read_packet()
                # MQTT 3.1.1 §2.2.2: fixed-header flags are 0010 for (UN)SUBSCRIBE, 0000 for the
                # rest but PUBLISH; anything else closes the connection, as a protocol error (a
                # DISCONNECT with flags set is not a clean one: the will is published).
                if ptype != PUBLISH and flags != (2 if ptype in (SUBSCRIBE, UNSUBSCRIBE, PUBREL) else 0):
                    raise ProtocolError(f"packet type {ptype} with flags {flags:#x}")
                if ptype == DISCONNECT:
                    if body:
                        raise ProtocolError("DISCONNECT with a body")
                    graceful = True
                    return
                if ptype == SUBSCRIBE:
                    await self._subscribe(conn, conn.session, flags, body)
                else:
                    self._dispatch(conn, ptype, flags, body)
                await conn.drain(PACE)
        except ProtocolError as exc:
            log.warning("closing client %s: %s", conn.session.client_id if conn.session else "?", exc)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, OSError):
            pass
        except Exception:  # never let one client take the broker down
            log.exception("unexpected error on a client connection")
        finally:
            self._drop(conn, graceful)
            conn.close()

    async def _connect(self, conn: Connection, body: bytes) -> bool:
        name, pos = read_utf8(body, 0)
        if pos + 4 > len(body):
            raise ProtocolError("CONNECT header truncated")
        level, flags = body[pos], body[pos + 1]
        (conn.keepalive,) = struct.unpack_from("!H", body, pos + 2)
        pos += 4
        if (name, level) not in (("MQTT", 4), ("MQIsdp", 3)):   # 3.1.1, and 3.1 as it named itself
            conn.send(packet(CONNACK, 0, b"\x00\x01"))  # unacceptable protocol version
            return False
        if flags & 0x01:
            raise ProtocolError("reserved CONNECT flag set")
        # §3.1.2.6-9, §3.1.2.11: will QoS 0..2, no will QoS or retain without a will, no password
        # without a user name.
        if (flags >> 3) & 3 == 3 or (not flags & 0x04 and flags & 0x38) or (flags & 0x40 and not flags & 0x80):
            raise ProtocolError(f"CONNECT flags {flags:#04x}")
        client_id, pos = read_utf8(body, pos)
        clean = bool(flags & 0x02)
        if flags & 0x04:
            wtopic, pos = read_utf8(body, pos)
            wmsg, pos = read_bin(body, pos)
            _check_topic(wtopic, "will topic")
            conn.will = Message(wtopic, wmsg, min((flags >> 3) & 3, 1), bool(flags & 0x20))
        if flags & 0x80:
            _, pos = read_utf8(body, pos)
        if flags & 0x40:
            _, pos = read_bin(body, pos)
        if pos != len(body):
            raise ProtocolError("bytes after the CONNECT payload")   # the flags announce every field
        if not client_id:
            if not clean:
                conn.send(packet(CONNACK, 0, b"\x00\x02"))  # identifier rejected
                return False
            client_id = f"anon-{next(self._anon)}"
            while client_id in self.sessions:
                client_id = f"anon-{next(self._anon)}"
        old = self.sessions.get(client_id)
        self._offline.pop(client_id, None)   # back: its expiry starts again at its next disconnect
        if old is None and len(self.sessions) >= MAX_SESSIONS:
            log.warning("refusing client %s: %d sessions, the most the broker keeps", client_id, len(self.sessions))
            conn.send(packet(CONNACK, 0, b"\x00\x03"))  # server unavailable
            return False
        if old and old.conn:
            old.conn.close()   # session takeover: the old connection ends without DISCONNECT,
            if old.conn.will is not None:   # so its will is published (§3.1.2-8)
                self.publish(old.conn.will)
                old.conn.will = None
            old.conn.session = None
            old.conn = None
        present = bool(old) and not clean and not old.clean
        session = old if present else Session(client_id, clean)
        if old and not present:
            self._end(old)
        session.clean = clean
        session.conn = conn
        conn.session = session
        self.sessions[client_id] = session
        conn.send(packet(CONNACK, 0, bytes([1 if present else 0, 0])))
        # While the resend waits for the client to read, new messages queue behind it (§4.6).
        session.replaying = conn
        try:
            for mid, (msg, share) in list(session.inflight.items()):
                if session.conn is not conn:
                    return False   # taken over meanwhile
                conn.send(publish_packet(msg, mid, dup=True))
                await conn.drain(PACE)
        finally:
            if session.replaying is conn:
                session.replaying = None
        while session.queue and session.conn is conn and len(session.inflight) < MAX_INFLIGHT:
            self._send_one(session)
            await conn.drain(PACE)
        return session.conn is conn

    def _drop(self, conn: Connection, graceful: bool) -> None:
        s = conn.session
        if s is None:
            return
        s.conn = None
        if not graceful and conn.will is not None:
            self.publish(conn.will)
        if s.clean:
            if self.sessions.get(s.client_id) is s:
                del self.sessions[s.client_id]
                self._end(s)
            else:
                self._requeue_shared(s)
        elif self.sessions.get(s.client_id) is s:
            s.offline_since = asyncio.get_running_loop().time()
            self._offline[s.client_id] = s

    def _end(self, s: Session) -> None:
        """`s` is over (its clean session ended, a clean one replaced it, or it expired): its filters
        leave the routing index and the count, its shared-subscription messages go to another
        member of their group (or wait for one), the rest of what it kept is freed."""
        self._scan.discard(s.client_id)
        for f in s.subs:
            self._unindex_exact(s.client_id, f)
        self.subscriptions -= len(s.subs) + len(s.shares)
        s.subs = {}
        self._requeue_shared(s)

    def _unindex_exact(self, cid: str, f: str) -> None:
        ids = self._exact.get(f)
        if ids is not None:
            ids.discard(cid)
            if not ids:
                del self._exact[f]

    async def _expire_loop(self) -> None:
        # Looked at every minute (more often for a short expiry): a session ends at most a minute late.
        period = min(60.0, max(0.05, self.session_expiry / 2))
        while True:
            await asyncio.sleep(period)
            try:
                self._expire(asyncio.get_running_loop().time())
            except Exception:   # the next round tries again; the broker carries on meanwhile
                log.exception("session expiry failed")

    def _expire(self, now: float) -> None:
        """End the persistent sessions offline for longer than the session expiry at loop time `now`."""
        while self._offline:
            cid, s = next(iter(self._offline.items()))
            if now - s.offline_since < self.session_expiry:
                return   # the rest went offline later
            del self._offline[cid]
            if s.conn is not None or self.sessions.get(cid) is not s:
                continue
            del self.sessions[cid]
            pending = list(s.inflight.values()) + list(s.queue)
            shared = sum(1 for _, share in pending if share is not None)
            log.info("session %s expired after %.0f s offline: %d messages dropped, %d handed to their "
                     "$share groups", cid, now - s.offline_since, len(pending) - shared, shared)
            self._end(s)

    def _buffered(self, conn: Connection, size: int) -> None:
        """`conn`'s send buffer holds `size` bytes now (Connection.send saw it non-empty, or it was)."""
        if size > MAX_BUFFER:
            log.warning("dropping client %s: it does not read (%d bytes waiting)",
                        conn.session.client_id if conn.session else "?", size)
            conn.abort()
            return
        self.buffered += size - conn.buffered
        if not size:
            self._backlog.pop(conn, None)
        elif size < conn.buffered or not conn.buffered:
            # Smaller than before this packet was added: the client read more than the packet
            # since, so it goes behind those that did not (a client that never reads only grows).
            self._backlog.pop(conn, None)
            self._backlog[conn] = None
        conn.buffered = size
        if self.buffered > MAX_TOTAL_BUFFER:
            self._shed()

    def _reserve_incoming(self, length: int):  # type: ignore[no-untyped-def]
        """Room for a packet body of `length` bytes about to be received (see MAX_INCOMING)."""
        if self.incoming + length > MAX_INCOMING:
            raise ProtocolError(f"packet of {length} bytes while {self.incoming} bytes of others are"
                                f" being received (at most {MAX_INCOMING})")
        self.incoming += length

        def release() -> None:
            self.incoming -= length
        return release

    def _shed(self) -> None:
        """The send buffers of all connections, as last seen, passed MAX_TOTAL_BUFFER: look again
        (those not written to since may have been read), then cut the connections that have gone
        longest without reading any of their backlog, the readers too slow, until the buffers hold
        at most SHED_TO. A QoS 1 message they did not acknowledge stays in flight in their session
        and is sent again when it reconnects. A client that keeps up has an empty buffer (the
        kernel's socket buffer takes what is sent) and is not in the backlog. Cutting below the
        bound means another MAX_TOTAL_BUFFER - SHED_TO must be written before the next look, which
        goes through every backlogged connection."""
        total, read = 0, []
        for c in list(self._backlog):
            size = c.writer.transport.get_write_buffer_size()
            if not size:
                del self._backlog[c]
            elif size < c.buffered:
                read.append(c)
            c.buffered = size
            total += size
        for c in read:   # read some since last seen: behind those that did not
            del self._backlog[c]
            self._backlog[c] = None
        self.buffered = total
        for c in list(self._backlog):
            if self.buffered <= SHED_TO:
                break
            log.warning("dropping client %s: it reads too slowly (%d bytes waiting; %d for all clients, at most %d)",
                        c.session.client_id if c.session else "?", c.buffered, self.buffered, MAX_TOTAL_BUFFER)
            c.abort()

    def _requeue_shared(self, s: Session) -> None:
        """Unacknowledged messages of a departing shared-subscription member go to another member."""
        pending = list(s.inflight.values()) + list(s.queue)
        self.total_bytes -= sum(_cost(msg) for msg, _ in pending)
        s.inflight, s.queue, s.queued_bytes = {}, collections.deque(), 0
        s.shares = {}
        lost = 0
        for msg, share in pending:
            if share is not None and not self._route_share(share, msg, exclude=s):
                lost += 1
        if lost:   # the last member of a group the broker does not hold messages for
            log.warning("session %s ended: %d messages for $share groups left without members dropped",
                        s.client_id, lost)

    # ------------------------------------------------------------ packets
    def _dispatch(self, conn: Connection, ptype: int, flags: int, body: bytes) -> None:
        s = conn.session
        assert s is not None
        if ptype == PUBLISH:
            qos = (flags >> 1) & 3
            if qos == 3:
                raise ProtocolError("PUBLISH with QoS 3")   # §3.3.1.2
            topic, pos = read_utf8(body, 0)
            _check_topic(topic, "topic name")
            mid = 0
            if qos:
                if pos + 2 > len(body):
                    raise ProtocolError("PUBLISH without packet id")
                (mid,) = struct.unpack_from("!H", body, pos)
                if not mid:
                    raise ProtocolError("PUBLISH with packet id 0")   # §2.3.1
                pos += 2
            if qos == 2 and mid in s.qos2:   # accepted already: delivered once per id until its PUBREL
                conn.send(packet(PUBREC, 0, struct.pack("!H", mid)))
                return
            msg = Message(topic, bytes(body[pos:]), min(qos, 1), bool(flags & 1))
            route = self._route(msg)
            if qos and (conn.refused_until is not None or self._refuse(conn, msg, mid, route)):
                return   # not acknowledged: the client sends it again after reconnecting
            if qos == 2:   # accepted (§4.3.3, method B: deliver now, once per id until its PUBREL)
                conn.send(packet(PUBREC, 0, struct.pack("!H", mid)))
                s.qos2.add(mid)
            elif qos:  # ack first: umqtt.simple's publish() returns on the first PUBACK it sees
                conn.send(packet(PUBACK, 0, struct.pack("!H", mid)))
            self._send_out(msg, route)
        elif ptype == PUBREL:
            if len(body) != 2:
                raise ProtocolError("PUBREL length")
            s.qos2.discard(struct.unpack("!H", body)[0])
            conn.send(packet(PUBCOMP, 0, body))
        elif ptype == PUBACK:
            if len(body) != 2:
                raise ProtocolError("PUBACK length")
            done = s.inflight.pop(struct.unpack("!H", body)[0], None)
            if done is not None:
                self.total_bytes -= _cost(done[0])
            if s.queue and len(s.inflight) < MAX_INFLIGHT:
                self._send_queued(s)
        elif ptype == UNSUBSCRIBE:
            if len(body) < 5 or body[:2] == b"\x00\x00":
                raise ProtocolError("UNSUBSCRIBE without a packet id or a filter")   # §3.10.3
            pos, rescan = 2, False
            while pos < len(body):
                filt, pos = read_utf8(body, pos)
                try:
                    group, f = split_share(filt)
                except ProtocolError:
                    continue   # a filter no SUBSCRIBE could have granted: nothing to remove
                if group:
                    gone = s.shares.pop((group, f), None)
                    rescan = True
                else:
                    gone = s.subs.pop(f, None)
                    if "+" in f or "#" in f:
                        rescan = True
                    else:   # or the index keeps every filter ever subscribed to: unbounded
                        self._unindex_exact(s.client_id, f)
                if gone is not None:
                    self.subscriptions -= 1
            if rescan and not s.shares and not any("+" in f or "#" in f for f in s.subs):
                self._scan.discard(s.client_id)
            conn.send(packet(UNSUBACK, 0, body[:2]))
        elif ptype == PINGREQ:
            conn.send(packet(PINGRESP, 0, b""))
        else:
            raise ProtocolError(f"unexpected packet type {ptype}")

    async def _subscribe(self, conn: Connection, s: Session, flags: int, body: bytes) -> None:
        # MQTT 3.1.1 §3.8.1, §3.8.3.1: fixed-header flags 0010, a non-zero packet id, QoS 0..2 with
        # the reserved bits clear; anything else closes the connection.
        if flags != 2 or len(body) < 5 or body[:2] == b"\x00\x00":
            raise ProtocolError("malformed SUBSCRIBE")
        # A filter named twice in one packet is one subscription (§3.8.4: the later replaces the
        # earlier), its retained messages sent once.
        pos, granted, new, shared, refused = 2, bytearray(), {}, {}, 0
        while pos < len(body):
            start = pos
            filt, pos = read_utf8(body, pos)
            if pos >= len(body):
                raise ProtocolError("SUBSCRIBE without QoS byte")
            if body[pos] > 2:
                raise ProtocolError(f"SUBSCRIBE options byte {body[pos]:#x}")
            qos = body[pos]
            pos += 1
            try:
                group, f = split_share(filt)
            except ProtocolError:
                group, f = None, ""
            if pos - start - 3 > MAX_FILTER_BYTES or f.count("/") >= MAX_FILTER_LEVELS or not valid_filter(f):
                granted.append(0x80)
                continue
            qos = min(qos, 1)
            subs, key = (s.shares, (group, f)) if group else (s.subs, f)
            if key not in subs:   # a new filter, not a renewal
                if len(s.subs) + len(s.shares) >= MAX_SUBSCRIPTIONS or self.subscriptions >= MAX_TOTAL_SUBSCRIPTIONS:
                    granted.append(0x80)
                    refused += 1
                    continue
                self.subscriptions += 1
            subs[key] = qos
            if group:
                shared[(group, f)] = None
            else:
                new[f] = qos
            if group or "+" in f or "#" in f:
                self._scan.add(s.client_id)
            else:
                self._exact[f].add(s.client_id)
            granted.append(qos)
        if refused:
            log.warning("client %s: %d filter(s) refused, %d subscriptions (at most %d) and %d for all sessions "
                        "(at most %d)", s.client_id, refused, len(s.subs) + len(s.shares), MAX_SUBSCRIPTIONS,
                        self.subscriptions, MAX_TOTAL_SUBSCRIPTIONS)
        conn.send(packet(SUBACK, 0, body[:2] + bytes(granted)))
        for f, qos in new.items():  # retained messages go to new plain subscriptions only
            if "+" in f or "#" in f:
                candidates = list(self.retained.values())
            else:
                hit = self.retained.get(f)
                candidates = [hit] if hit is not None else []
            for msg in candidates:
                if s.conn is not conn:
                    return   # gone or taken over while it read
                if topic_matches(f, msg.topic):
                    self._deliver(s, Message(msg.topic, msg.payload, msg.qos, True), min(qos, msg.qos), None)
                    await conn.drain(PACE)
        for key in shared:  # what waited for the group's first member
            waiting = self.held.get(key)
            if waiting:
                self.held[key], self.held_bytes[key] = [], 0
                self.total_bytes -= sum(_cost(msg) for msg in waiting)
                for msg in waiting:
                    self._route_share(key, msg)

    # ------------------------------------------------------------ routing
    def publish(self, msg: Message) -> None:
        """Store (if retained) and deliver a message no client awaits an ack for (a will)."""
        self._send_out(msg, self._route(msg))

    def _route(self, msg: Message) -> Tuple[List[Tuple[Session, int]], List[Tuple[str, str]], List[Tuple[str, str]]]:
        """Where `msg` goes: (session, QoS) of plain subscriptions, the $share groups it goes to
        one member of, the held groups without members it waits for."""
        plain: List[Tuple[Session, int]] = []
        groups: Dict[Tuple[str, str], None] = {}
        for cid in list(self._exact.get(msg.topic, set()) | self._scan):
            s = self.sessions.get(cid)
            if s is None:
                continue
            best = -1
            for f, q in s.subs.items():
                if q > best and topic_matches(f, msg.topic):
                    best = q
            if best >= 0:
                plain.append((s, min(best, msg.qos)))
            for key in s.shares:
                if topic_matches(key[1], msg.topic):
                    groups[key] = None
        held = [key for key in self.held if key not in groups and topic_matches(key[1], msg.topic)]
        return plain, list(groups), held

    def _refuse(self, conn: Connection, msg: Message, mid: int, route: tuple) -> bool:
        """Whether a QoS 1/2 PUBLISH is refused because the broker cannot keep every copy of it (the
        total for sessions or the retained store is full): then it sends no PUBACK (PUBREC) and
        closes the connection REFUSE_GRACE_S later; the client still holds the message and sends it
        again after reconnecting (§4.4; MQTT 3.1.1 has no negative ack). Not dropped, as mosquitto's
        max_queued_messages/bytes drop past one client's queue (so do the per-session bounds here):
        that loses what the publisher was told is safe, and a full broker would do it to every
        client. Refused before the ack, all copies or none (the resend would duplicate a partial
        delivery), no acknowledged message is lost to this bound; mosquitto's memory_limit too
        disconnects the publisher of a message it cannot take. Until the close the connection's
        other packets are handled: the PUBACKs a worker writes after its refused responses free
        room (closed at once, a worker whose requests fill the broker could never free it); its
        later PUBLISHes are refused too, so they come again in order."""
        plain, groups, held = route
        need = (sum(q for _, q in plain) + len(groups) + len(held)) * _cost(msg)
        if self.total_bytes + need > MAX_TOTAL_BYTES:
            why = f"{self.total_bytes} bytes kept for sessions, {need} more would pass {MAX_TOTAL_BYTES}"
        elif msg.retain and msg.payload and not self._retainable(msg):
            why = f"retained store full ({len(self.retained)} topics, {self.retained_bytes} bytes)"
        else:
            return False
        log.warning("client %s: PUBLISH %d on %s not acknowledged (%s); closing its connection, it "
                    "sends the message again after reconnecting", conn.session.client_id if conn.session else "?",
                    mid, msg.topic, why)
        conn.refused_until = asyncio.get_running_loop().time() + REFUSE_GRACE_S
        return True

    def _retainable(self, msg: Message) -> bool:
        old = self.retained.get(msg.topic)
        count = len(self.retained) - (old is not None)
        size = self.retained_bytes - (len(old.payload) if old is not None else 0)
        return count < MAX_RETAINED and size + len(msg.payload) <= MAX_RETAINED_BYTES

    def _send_out(self, msg: Message, route: tuple) -> None:
        if msg.retain:
            fits = self._retainable(msg)
            old = self.retained.pop(msg.topic, None)
            if old is not None:
                self.retained_bytes -= len(old.payload)
            if not msg.payload:
                pass
            elif fits:
                self.retained[msg.topic] = Message(msg.topic, msg.payload, msg.qos, True)
                self.retained_bytes += len(msg.payload)
            else:   # QoS 0 (or a will): QoS 1/2 was refused before its ack (_refuse)
                log.warning("retained store full (%d topics, %d bytes): %s delivered but not retained",
                            len(self.retained), self.retained_bytes, msg.topic)
        out = Message(msg.topic, msg.payload, msg.qos, False)
        plain, groups, held = route
        for s, qos in plain:
            self._deliver(s, out, qos, None)
        for key in groups:
            self._route_share(key, out)
        for key in held:
            self._hold(key, out)

    def _hold(self, key: Tuple[str, str], msg: Message) -> None:
        waiting = self.held.get(key)
        if waiting is None or not msg.qos:
            return
        if self.total_bytes + _cost(msg) > MAX_TOTAL_BYTES:
            log.warning("no member of $share/%s/%s and %d bytes kept for sessions: %s dropped", key[0], key[1],
                        self.total_bytes, msg.topic)
        elif len(waiting) < MAX_QUEUED and self.held_bytes[key] + len(msg.payload) <= MAX_QUEUED_BYTES:
            waiting.append(msg)
            self.held_bytes[key] += len(msg.payload)
            self.total_bytes += _cost(msg)
        else:
            log.warning("no member of $share/%s/%s and %d waiting: %s dropped", key[0], key[1],
                        MAX_QUEUED, msg.topic)

    def _route_share(self, key: Tuple[str, str], msg: Message, exclude: Optional[Session] = None) -> bool:
        """Deliver `msg` to one member of group `key`, or hold it for the group; False: no member and
        the group is not held."""
        members = [s for s in self.sessions.values() if key in s.shares and s is not exclude]
        if not members:
            self._hold(key, msg)
            return key in self.held
        live = [s for s in members if s.conn is not None] or members
        s = live[next(self._rr[key]) % len(live)]
        self._deliver(s, msg, min(s.shares[key], msg.qos), key)
        return True

    def _deliver(self, s: Session, msg: Message, qos: int, share: Optional[Tuple[str, str]]) -> None:
        if qos and (s.conn is not None or not s.clean) and self.total_bytes + _cost(msg) > MAX_TOTAL_BYTES:
            # Only what no client awaits a PUBACK for gets here (a will, retained messages for a new
            # subscription): _refuse turned the rest away before acknowledging it.
            log.warning("session %s: %d bytes kept for sessions; %s dropped", s.client_id, self.total_bytes, msg.topic)
            return
        if qos and (s.conn is None or s.replaying is not None or len(s.inflight) >= MAX_INFLIGHT or s.queue):
            # Offline, or as many in flight as allowed: wait in order (a clean session offline
            # is gone, nothing to keep).
            if s.conn is None and s.clean:
                return
            if len(s.queue) >= MAX_QUEUED or s.queued_bytes + len(msg.payload) > MAX_QUEUED_BYTES:
                log.warning("session %s: %d messages (%d bytes) waiting; %s dropped", s.client_id,
                            len(s.queue), s.queued_bytes, msg.topic)
                return
            s.queue.append((Message(msg.topic, msg.payload, qos, msg.retain), share))
            s.queued_bytes += len(msg.payload)
            self.total_bytes += _cost(msg)
            return
        if s.conn is None:
            return
        mid = 0
        if qos:
            mid = next(s.mids)
            while mid in s.inflight:  # at most MAX_INFLIGHT ids are taken: this ends
                mid = next(s.mids)
            s.inflight[mid] = (Message(msg.topic, msg.payload, qos, msg.retain), share)
            self.total_bytes += _cost(msg)
        s.conn.send(publish_packet(Message(msg.topic, msg.payload, qos, msg.retain), mid))

    def _send_queued(self, s: Session) -> None:
        while s.queue and s.conn is not None and len(s.inflight) < MAX_INFLIGHT:
            self._send_one(s)

    def _send_one(self, s: Session) -> None:
        assert s.conn is not None
        msg, share = s.queue.popleft()
        s.queued_bytes -= len(msg.payload)
        mid = next(s.mids)
        while mid in s.inflight:
            mid = next(s.mids)
        s.inflight[mid] = (msg, share)
        s.conn.send(publish_packet(msg, mid))


def _cost(msg: Message) -> int:
    return len(msg.topic) + len(msg.payload) + COPY_COST


def _check_topic(topic: str, what: str) -> None:
    if not topic or "+" in topic or "#" in topic or "\0" in topic:
        raise ProtocolError(f"bad {what} {topic!r}")


class BrokerThread:
    """Run a Broker on its own event loop thread (for `roampos host` and tests)."""

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, hold: Tuple[str, ...] = (),
                 session_expiry: Optional[float] = None):
        self.broker = Broker(host, port, hold, session_expiry)
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, name="mqtt-broker", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.broker.start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> "BrokerThread":
        self.thread.start()
        self._ready.wait(10)
        if self._error:
            raise self._error
        return self

    @property
    def url(self) -> str:
        return f"mqtt://{self.broker.host}:{self.broker.port}"

    def stop(self) -> None:
        fut = asyncio.run_coroutine_threadsafe(self.broker.stop(), self.loop)
        try:
            fut.result(5)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m roampos.broker", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--session-expiry", type=float, default=SESSION_EXPIRY_S, metavar="SECONDS",
                   help="end persistent sessions offline this long (default 2 days; 0: never)")
    p.add_argument("--hold", action="append", metavar="$share/GROUP/FILTER",
                   help="keep what a shared subscription's group gets while it has no member (repeat it;"
                        " default: the host workers' requests and heartbeats)")
    p.add_argument("--no-hold", action="store_true", help="hold no group: drop what no one subscribes to")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # On its own, as in front of `roampos host --broker`, the broker holds the host's groups as the
    # host's embedded one does: a request a terminal sent while no worker was subscribed yet (the
    # host starting, or all its workers restarting) was acknowledged to the terminal and must not
    # be dropped. Only here: the workers' module is not imported by a broker the host runs.
    if args.no_hold:
        hold: Tuple[str, ...] = ()
    elif args.hold:
        hold = tuple(args.hold)
    else:
        from .host.service import REQ_FILTER, STATUS_FILTER
        hold = (REQ_FILTER, STATUS_FILTER)
    try:
        b = Broker(args.host, args.port, hold, session_expiry=args.session_expiry)
    except (ValueError, ProtocolError) as exc:   # a bad filter is a usage error, before the port is taken
        p.error(str(exc))

    async def serve() -> None:
        await b.start()
        print(f"roampos broker on mqtt://{b.host}:{b.port}" + (f" holding {', '.join(hold)}" if hold else ""),
              flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
