"""`roampos host`: MQTT workers on one shared subscription; acknowledge a request only after commit."""
from __future__ import annotations

import argparse
import collections
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from typing import List, Optional
from urllib.parse import urlparse

from .. import accel
from .db import DatabaseError, connect, default_url, is_postgres, redact_url
from .vault import VaultError
from .walsync import SyncError
from .wire import WireClient

__all__ = ["add_arguments", "run", "Worker", "SHARE_GROUP", "REQ_FILTER", "no_delay"]

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


def _stop_on_signal(stop) -> None:  # type: ignore[no-untyped-def]
    """SIGTERM/SIGINT call `stop` once. A second signal (killpg of the group plus the supervisor
    forwarding it) must not re-enter Event.set() inside the first: its lock is not reentrant and the
    worker would hang forever, orphaned. The handler stays installed and ignores later signals
    itself: replacing it from inside would free it while it runs when compiled (roampos.accel; the
    interpreter's frame keeps a function alive, a compiled call does not), and `stop` with it."""
    fired: List[int] = []

    def handler(signum, frame) -> None:  # type: ignore[no-untyped-def]
        if fired:
            return
        fired.append(signum)
        stop()
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


STOP_GRACE_S = 10   # a worker gets this long to finish its group; then it is killed
# A worker whose ledger could not be made durable (an fsync that failed) exits with this code and
# the host stops instead of restarting it: after a failed fsync Linux reports the next ones as
# successful although the lost pages were never written, so a new worker would acknowledge
# requests on a ledger it cannot trust. What was not acknowledged waits in the broker.
EXIT_STORAGE = 3


def _stop_workers(procs: List, base: int) -> None:
    """SIGTERM, then SIGKILL whoever is still busy after STOP_GRACE_S (one stuck in a database lock
    wait would keep the host alive for as long as the lock). Killing is safe: what it had not
    committed was not acknowledged, and the broker redelivers it."""
    for p in procs:
        if p.pid is not None and p.is_alive():
            os.kill(p.pid, signal.SIGTERM)
    end = time.monotonic() + STOP_GRACE_S
    for i, p in enumerate(procs):
        p.join(max(0.0, end - time.monotonic()))
        if p.is_alive():
            log.error("worker %d still busy %d s after the stop; killing it", base + i, STOP_GRACE_S)
            p.kill()
            p.join(5)


def _worker_main(broker_url: str, db_url: str, index: int, level: int, ready=None,
                 cpu: Optional[int] = None) -> None:
    logging.basicConfig(level=level, format=f"%(asctime)s worker{index} %(levelname)s %(message)s")
    if cpu is not None:
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError as exc:  # a CPU taken away since the host chose it: the OS places this one
            log.warning("worker %d: could not keep to CPU %d (%s)", index, cpu, exc)
    w = Worker(broker_url, db_url, index, ready)
    _stop_on_signal(w.stop)
    try:
        w.serve_forever()
    except SyncError as exc:
        log.critical("worker %d: %s; exiting, its unanswered requests stay with the broker", index, exc)
        raise SystemExit(EXIT_STORAGE) from None


def _shared_cpu(args: argparse.Namespace, db_url: str) -> Optional[int]:
    """The one CPU all workers on a SQLite ledger run on, or None (the OS places them).

    They take turns on one writer, and almost all of a group's work is done holding it: on one
    CPU the hand-off is a switch on a warm cache; on two, the next worker is woken on the other
    CPU, where the pages the previous one changed are not in the cache. Measured on two cores
    with the load generator and mosquitto beside them (docs/host.md, seventh session), 2 workers'
    ratio to the broker's echo: 0.45-0.47 placed by the OS, 0.50-0.52 on one CPU, 0.37-0.38 one
    on each. The last allowed CPU: the first tends to take the machine's interrupts. PostgreSQL
    workers write in parallel: the OS places them."""
    if args.workers < 2 or args.spread_workers or is_postgres(db_url) or not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None
    log.info("the %d workers share CPU %d (one SQLite writer at a time; --spread-workers to let the OS"
             " place them)", args.workers, allowed[-1])
    return allowed[-1]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", help="mqtt://host:port of an external broker (default: start the embedded one)")
    p.add_argument("--db", help="sqlite:///path or postgresql://... (default $ROAMPOS_DB or ./roampos-host.db)")
    p.add_argument("--workers", type=int, default=1, help="worker processes sharing one subscription")
    p.add_argument("--port", type=int, default=None, help="embedded broker port (default 18830)")
    p.add_argument("--session-expiry", type=float, default=None, metavar="SECONDS",
                   help="embedded broker: end persistent sessions offline this long (default 2 days; 0: never)")
    p.add_argument("--spread-workers", action="store_true",
                   help="SQLite: let the OS place the workers on any CPU (default: all on one)")
    p.add_argument("--worker-index-base", type=int, default=0,
                   help="first worker index; give each machine its own range so client IDs differ")
    p.add_argument("-v", "--verbose", action="store_true")


def run(args: argparse.Namespace) -> int:
    level = logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s host %(levelname)s %(message)s")
    db_url = args.db or default_url()
    try:
        db = connect(db_url)  # create the schema once before the workers race for it
        try:
            db.vault()        # and refuse to start without the host key this database needs
        finally:
            db.close()
    except (DatabaseError, VaultError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    broker = None
    url = args.broker
    if url:
        from .registry import RegistryError
        from .terminals import broker_address
        try:
            broker_address(url)  # mqtt://host:port only: never read as the local broker
        except RegistryError as exc:
            log.error("cannot start: %s", exc)
            return 2
    else:
        from ..broker import DEFAULT_PORT, BrokerThread
        # Requests and heartbeats a terminal sends before the workers have subscribed wait for them.
        try:
            broker = BrokerThread("127.0.0.1", args.port or DEFAULT_PORT, hold=(REQ_FILTER, STATUS_FILTER),
                                  session_expiry=args.session_expiry).start()
        except OSError as exc:
            log.error("cannot start the embedded broker: %s", exc)
            return 1
        url = broker.url
        log.info("embedded broker at %s", url)
    if args.workers > 1 and not is_postgres(db_url):
        # Measured (docs/host.md): SQLite has one writer, so workers on one ledger only take turns
        # on its lock and fsync; two gave 10-20 % fewer authorizations per second than one (on one
        # CPU, see _shared_cpu; about a third fewer before).
        log.warning("%d workers on a SQLite ledger take turns on its single writer: expect less throughput"
                    " than 1 worker; use PostgreSQL to scale out", args.workers)
    cpu = _shared_cpu(args, db_url)
    ctx = multiprocessing.get_context("spawn")
    # Before the first worker exists: a stop that comes while they start (a broker that is not up
    # yet keeps them waiting) must stop them too, never leave them running without a supervisor.
    stop = threading.Event()
    _stop_on_signal(stop.set)
    base = args.worker_index_base
    procs: List = []
    events = []
    for i in range(max(1, args.workers)):
        ev = ctx.Event()
        p = ctx.Process(target=_worker_main, args=(url, db_url, base + i, level, ev, cpu))
        p.start()
        procs.append(p)
        events.append(ev)
    # How long the workers get to subscribe before it is logged as an error (tests shorten it).
    end = time.monotonic() + float(os.environ.get("ROAMPOS_HOST_READY_S", "60"))
    ready = False
    failed = 0
    while not stop.is_set():
        if not ready and all(ev.is_set() for ev in events):   # every subscription in place
            ready = True
            log.info("host running: %d worker(s), broker %s, db %s; %s", len(procs), url, redact_url(db_url),
                     accel.status())
            print(f"roampos host ready broker={url}", flush=True)
        elif not ready and end and time.monotonic() > end:
            log.error("worker(s) %s did not subscribe in time; not ready yet",
                      ", ".join(str(base + i) for i, ev in enumerate(events) if not ev.is_set()))
            end = 0
        stop.wait(0.2 if not ready else 0.5)
        for i, p in enumerate(procs):
            if not p.is_alive() and not stop.is_set() and p.exitcode == EXIT_STORAGE:
                log.critical("worker %d could not make the ledger durable (see above): stopping the host;"
                             " check the disk and reboot the machine before starting it again (the page"
                             " cache may hold ledger pages the disk lost)", base + i)
                failed = EXIT_STORAGE
                stop.set()
            elif not p.is_alive() and not stop.is_set():
                log.error("worker %d exited (%s); restarting", base + i, p.exitcode)
                procs[i] = ctx.Process(target=_worker_main, args=(url, db_url, base + i, level, events[i], cpu))
                procs[i].start()
    _stop_workers(procs, base)
    if broker:
        broker.stop()
    return failed

