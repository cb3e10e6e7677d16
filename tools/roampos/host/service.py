"""A host worker: MQTT requests on one shared subscription, handled in groups; a request is
acknowledged only after its group's ledger writes commit. `host/supervisor.py` runs the workers."""
from __future__ import annotations

import collections
import logging
import socket
import threading
import time
from typing import Optional
from urllib.parse import urlparse

from .db import DatabaseError, connect
from .wire import WireClient

__all__ = ["Worker", "SHARE_GROUP", "REQ_FILTER", "STATUS_FILTER", "no_delay"]

SHARE_GROUP = "roampos-host"
REQ_FILTER = f"$share/{SHARE_GROUP}/roampos/v1/+/req"
STATUS_FILTER = f"$share/{SHARE_GROUP}/roampos/v1/+/status"
log = logging.getLogger("roampos.host")


class Worker:
    """One MQTT connection driven by one thread: read what the broker has, handle it as one group,
    commit, answer, acknowledge, repeat. No network thread: handing every message across threads
    (queue, GIL hand-offs, a wake-up byte per publish and per PUBACK) was ~40 % of the worker's CPU
    under load; and no paho: its per-packet Python was another ~25 % (`wire.WireClient` instead).
    While a database outage is retried the loop keeps servicing the connection, so the keepalive
    never lapses."""

    groups = 0   # transactions committed (processed/groups = mean group size); class default for fakes
    unsynced: "collections.deque | tuple" = ()   # committed groups waiting for their sync (see __init__)

    def __init__(self, broker_url: str, db_url: str, index: int = 0, ready=None):
        from .handler import Handler
        self.db_url, self.index = db_url, index
        self.db = connect(db_url)
        self.handler = Handler(self.db)
        self.inbox: "collections.deque" = collections.deque()
        self.stopping = threading.Event()
        u = urlparse(broker_url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 1883
        # A persistent session (the client never asks for a clean one) makes the broker keep and
        # redeliver any request this worker received but had not acknowledged when it died.
        self.client = WireClient(self.host, self.port, f"roampos-host-{index}", keepalive=30,
                                 subscriptions=[REQ_FILTER, STATUS_FILTER])
        self.client.on_message = self.inbox.append
        self._backoff = 0.2   # broker reconnect delay, doubled up to 5 s
        self.processed = 0
        # Up to 64 messages a group: the group's reads, its COMMIT (WAL pages the messages share)
        # and, with SQLite and several workers, a hand-off of the write lock are paid once per
        # group. Against 32, on mosquitto with 200 terminals: one worker ~5 % more authorizations/s
        # and lower p50 latency; 128 and 256 gained nothing more (docs/host.md, seventh session).
        self.max_batch = 64
        self.ready = ready or threading.Event()
        self.client.on_subscribe = self.ready.set
        # SQLite: a committed group is answered once its WAL sync returns (db.defer_sync); until
        # then it waits here as (WalSync, commit number, messages, results) while the next group
        # is handled. PostgreSQL syncs in its COMMIT: answered at once.
        self.db.defer_sync()
        self.unsynced: "collections.deque" = collections.deque()
        self.db.lock_wait = self._lock_wait

    def start(self) -> None:
        while not self.stopping.is_set():
            try:
                self.client.connect()
                log.info("worker %d connected to mqtt://%s:%d", self.index, self.host, self.port)
                return
            except OSError as exc:
                log.warning("worker %d: broker unreachable (%s); retrying", self.index, exc)
                time.sleep(1)

    def pump(self, timeout: float) -> None:
        """Service the connection once (read, write, keepalive); reconnect with backoff if lost."""
        if self.client.loop(timeout) == 0 or self.stopping.is_set():
            return
        delay = self._backoff
        log.warning("worker %d: broker connection lost; reconnecting in %.1fs", self.index, delay)
        time.sleep(delay)
        self._backoff = min(delay * 2, 5.0)
        try:
            self.client.connect()
            self._backoff = 0.2
            # Requests read on the lost connection can no longer be acknowledged. A broker that kept
            # the session redelivers them on this one, so handling the old copies would only do the
            # work twice; one that lost it (restarted without persistence) never will, so they are
            # handled from here (their PUBACKs are dropped: they belong to the old connection).
            if getattr(self.client, "session_present", True):
                for m in [m for m in self.inbox if m.conn != self.client.conn]:
                    self.inbox.remove(m)
            log.info("worker %d reconnected to mqtt://%s:%d", self.index, self.host, self.port)
        except OSError as exc:
            log.warning("worker %d: broker unreachable (%s)", self.index, exc)

    def serve_forever(self) -> None:
        self.start()
        while not self.stopping.is_set():
            self.answer_synced()
            self.pump(0 if self.unsynced else 0.1)
            # Group commit: whatever else the socket already holds goes into the same transaction.
            while self.inbox and len(self.inbox) < self.max_batch:
                before = len(self.inbox)
                self.client.loop(0)
                if len(self.inbox) == before:
                    break
            if self.inbox:
                batch = [self.inbox.popleft() for _ in range(min(len(self.inbox), self.max_batch))]
                self.process_batch(batch, wait_sync=False)
            elif self.unsynced:
                self.answer_synced(wait=0.1)  # nothing else to do meanwhile
        self.answer_synced(wait=10, every=True)   # committed groups: answered, not left for redelivery
        log.info("worker %d stopping: %d messages in %d transactions", self.index, self.processed, self.groups)
        self.client.disconnect()

    def process(self, msg) -> None:
        self.process_batch([msg])

    def process_batch(self, batch: list, wait_sync: bool = True) -> None:
        """Handle, commit once, then answer and acknowledge; on a database outage retry the whole
        group and acknowledge nothing until its ledger writes are committed (and synced: without
        `wait_sync` the answers wait in self.unsynced while the caller goes on)."""
        delay = 0.2
        # Decoding needs no database: do it once, outside the write lock another worker may want.
        decoded = [self._decode_one(m) for m in batch]
        first = True
        safe = False   # real savepoints per message: after a pass that left one message half-written
        while not self.stopping.is_set():
            try:
                self.db.lazy_savepoints, self.db.dirty = not safe, False
                errors = self.db.statement_errors
                with self.db.transaction():
                    if first:
                        # Group commit across workers: whatever arrived while this worker waited
                        # for the write lock joins the group, so one fsync serves all of it.
                        self._refill(batch, decoded)
                        first = False
                    begin = getattr(self.handler, "begin_group", None)
                    if begin is not None:
                        # One query per table for the group's terminals, batches and STAN keys.
                        begin([(d[0], d[2]) for d in decoded if d[1] == "req"])
                    try:
                        results = []
                        for m, d in zip(batch, decoded):
                            results.append(self._handle_one(m, d))
                            if self.unsynced:
                                self.answer_synced()   # the previous group, as soon as it is durable
                    finally:
                        end = getattr(self.handler, "end_group", None)
                        if end is not None:
                            end()
                    if not safe and (self.db.dirty or self.db.statement_errors != errors):
                        raise _Redo()  # roll all of it back; nothing was answered yet
                break
            except _Redo:
                safe = True
                continue
            except DatabaseError as exc:
                log.error("worker %d: database unavailable (%s); retrying in %.1fs", self.index, exc, delay)
                self._idle(delay)
                delay = min(delay * 2, 5.0)
                try:
                    self.db.reconnect()
                except DatabaseError:
                    pass
            finally:
                self.db.lazy_savepoints = False
        else:
            return  # stopping: leave them unacknowledged for redelivery
        self.groups += 1
        if self.db.wal is not None:
            self.unsynced.append((self.db.wal, self.db.commit_seq, batch, results))
            self.answer_synced(wait=30 if wait_sync else 0, every=wait_sync)
        else:
            self._answer(batch, results)
            self._flush()

    def answer_synced(self, wait: float = 0, every: bool = False) -> None:
        """Answer and acknowledge the committed groups whose WAL sync has returned, oldest first;
        with `wait`, wait up to that long for the oldest (`every`: for each). A failed sync raises
        SyncError: the worker stops with those messages unacknowledged, for redelivery."""
        sent = False
        try:
            while self.unsynced:
                wal, seq, batch, results = self.unsynced[0]
                if not wal.done(seq) and not (wait and wal.wait(seq, wait)):
                    break
                self.unsynced.popleft()
                self._answer(batch, results)
                sent, wait = True, wait if every else 0
        finally:
            if sent:
                # Also when a later group's sync failed: these are durable, and left unflushed the
                # worker's exit would drop them, for redelivery to a terminal that may have reversed.
                self._flush()

    def _lock_wait(self) -> bool:
        """Another writer holds the write lock the next group needs: answer what turns durable
        meanwhile (the sync needs no lock), instead of holding it until that writer commits."""
        if not self.unsynced:
            return False
        self.answer_synced(wait=0.005)
        return True

    def _answer(self, batch: list, results: list) -> None:
        client = self.client
        for msg, (tid, response) in zip(batch, results):
            if response is not None:
                client.publish(f"roampos/v1/{tid}/resp", response, qos=1)
            self.processed += 1
            if msg.qos:
                client.ack(msg)

    def _flush(self) -> None:
        # Responses and PUBACKs are queued and leave in one write: the broker reads the groups in
        # a few segments instead of one wake-up per packet.
        flush = getattr(self.client, "flush", None)
        if flush is not None:
            flush()

    def _refill(self, batch: list, decoded: list) -> None:
        """Add what the socket holds now to the group (up to max_batch), decoded."""
        if not hasattr(self.client, "loop"):
            return  # a test double without a connection
        while len(batch) + len(self.inbox) < self.max_batch:
            before = len(self.inbox)
            self.client.loop(0)
            if len(self.inbox) == before:
                break
        while self.inbox and len(batch) < self.max_batch:
            msg = self.inbox.popleft()
            batch.append(msg)
            decoded.append(self._decode_one(msg))

    def _idle(self, seconds: float) -> None:
        """Wait, still answering the broker's pings (the connection outlives a database outage);
        requests that arrive meanwhile queue in the inbox for the next group."""
        end = time.monotonic() + seconds
        while not self.stopping.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            self.answer_synced()
            if hasattr(self.client, "loop"):
                self.pump(min(left, 0.1))
            else:
                time.sleep(min(left, 0.1))

    def _decode_one(self, msg) -> tuple:
        """(terminal ID, leaf, decoded request or Outcome); heartbeats are decoded when stored."""
        parts = msg.topic.split("/")
        tid = parts[2] if len(parts) == 4 else "?"
        if parts[-1] == "status":
            return tid, "status", None
        return tid, "req", self.handler.decode(tid, msg.payload)

    def _handle_one(self, msg, decoded: Optional[tuple] = None) -> tuple:
        tid, leaf, doc = decoded or self._decode_one(msg)
        if leaf == "status":
            try:
                why = _heartbeat(self.db, tid, msg.payload)
            except DatabaseError:
                raise
            except Exception as exc:  # its savepoint rolled back; the group's requests stand
                log.exception("worker %d: heartbeat of %s", self.index, tid)
                why = f"status of {tid} not stored: {type(exc).__name__}"
            if why:
                log.info("worker %d: %s", self.index, why)
            return tid, None
        out = self.handler.handle(tid, msg.payload, decoded=doc)
        if out.reason:
            log.info("worker %d: %s", self.index, out.reason)
        return tid, out.response

    def stop(self) -> None:
        self.stopping.set()


class _Redo(Exception):
    """A lazy-savepoint pass left a message half-written: handle the group again, with savepoints."""


def no_delay(client) -> None:  # type: ignore[no-untyped-def]
    """TCP_NODELAY on a paho client's socket (paho leaves Nagle on): the responses and PUBACKs of a
    group go out as several small writes, and Nagle would hold them for the peer's delayed ACK
    (up to 40 ms on Linux)."""
    sock = client.socket()
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # not TCP (e.g. a Unix socket): nothing to tune


def _heartbeat(db, tid: str, payload: bytes) -> Optional[str]:
    from .registry import record_heartbeat
    return record_heartbeat(db, tid, payload, time.time())
