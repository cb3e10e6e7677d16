"""`roampos host`: the embedded broker (unless told of another), the worker processes on one
shared subscription, their CPU placement, restarts and stop. The workers are `host/service.py`."""
from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import signal
import threading
import time
from typing import List, Optional

from .. import accel
from .db import DatabaseError, connect, default_url, is_postgres, redact_url
from .service import REQ_FILTER, STATUS_FILTER, Worker
from .vault import VaultError
from .walsync import SyncError

__all__ = ["add_arguments", "run", "EXIT_STORAGE"]

log = logging.getLogger("roampos.host")


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

