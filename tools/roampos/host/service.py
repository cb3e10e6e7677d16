"""`roampos host`: MQTT workers on one shared subscription; acknowledge a request only after commit."""
from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from typing import List, Optional
from urllib.parse import urlparse

from .db import DatabaseError, connect, default_url

__all__ = ["add_arguments", "run", "Worker", "SHARE_GROUP", "REQ_FILTER"]

SHARE_GROUP = "roampos-host"
REQ_FILTER = f"$share/{SHARE_GROUP}/roampos/v1/+/req"
STATUS_FILTER = f"$share/{SHARE_GROUP}/roampos/v1/+/status"
log = logging.getLogger("roampos.host")


class Worker:
    """One MQTT client + one processing thread; paho's network thread keeps the keepalive going
    while a slow database write holds the processing thread."""

    def __init__(self, broker_url: str, db_url: str, index: int = 0, ready=None):
        import paho.mqtt.client as mqtt
        from .handler import Handler
        self.db_url, self.index = db_url, index
        self.db = connect(db_url)
        self.handler = Handler(self.db)
        self.inbox: "queue.Queue" = queue.Queue()
        self.stopping = threading.Event()
        u = urlparse(broker_url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 1883
        # A persistent session (clean_session=False) makes the broker keep and redeliver any
        # request this worker received but had not acknowledged when it died.
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"roampos-host-{index}",
                                  clean_session=False, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = lambda c, u, m: self.inbox.put(m)
        self.client.reconnect_delay_set(0.2, 5)
        self.client.max_queued_messages_set(0)
        self.processed = 0
        self.max_batch = 32
        self.ready = ready or threading.Event()
        self.client.on_subscribe = lambda *a: self.ready.set()

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            log.error("worker %d: broker refused connection: %s", self.index, reason)
            return
        log.info("worker %d connected to mqtt://%s:%d", self.index, self.host, self.port)
        client.subscribe([(REQ_FILTER, 1), (STATUS_FILTER, 1)])

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        if not self.stopping.is_set():
            log.warning("worker %d: broker connection lost (%s); reconnecting", self.index, reason)

    def start(self) -> None:
        while not self.stopping.is_set():
            try:
                self.client.connect(self.host, self.port, keepalive=30)
                break
            except OSError as exc:
                log.warning("worker %d: broker unreachable (%s); retrying", self.index, exc)
                time.sleep(1)
        self.client.loop_start()

    def serve_forever(self) -> None:
        self.start()
        while not self.stopping.is_set():
            try:
                batch = [self.inbox.get(timeout=0.1)]
            except queue.Empty:
                continue
            # Group commit: whatever else is already waiting goes into the same transaction.
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.inbox.get_nowait())
                except queue.Empty:
                    break
            self.process_batch(batch)
        self.client.disconnect()
        self.client.loop_stop()

    def process(self, msg) -> None:
        self.process_batch([msg])

    def process_batch(self, batch: list) -> None:
        """Handle, commit once, then answer and acknowledge; on a database outage retry the whole
        group and acknowledge nothing until its ledger writes are committed."""
        delay = 0.2
        while not self.stopping.is_set():
            try:
                with self.db.transaction():
                    results = [self._handle_one(m) for m in batch]
                break
            except DatabaseError as exc:
                log.error("worker %d: database unavailable (%s); retrying in %.1fs", self.index, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                try:
                    self.db.reconnect()
                except DatabaseError:
                    pass
        else:
            return  # stopping: leave them unacknowledged for redelivery
        for msg, (tid, response) in zip(batch, results):
            if response is not None:
                self.client.publish(f"roampos/v1/{tid}/resp", response, qos=1)
            self.processed += 1
            if msg.qos:
                self.client.ack(msg.mid, msg.qos)

    def _handle_one(self, msg) -> tuple:
        parts = msg.topic.split("/")
        tid = parts[2] if len(parts) == 4 else "?"
        if parts[-1] == "status":
            why = _heartbeat(self.db, tid, msg.payload)
            if why:
                log.info("worker %d: %s", self.index, why)
            return tid, None
        out = self.handler.handle(tid, msg.payload)
        if out.reason:
            log.info("worker %d: %s", self.index, out.reason)
        return tid, out.response

    def stop(self) -> None:
        self.stopping.set()


def _heartbeat(db, tid: str, payload: bytes) -> Optional[str]:
    from .registry import record_heartbeat
    return record_heartbeat(db, tid, payload, time.time())


def _worker_main(broker_url: str, db_url: str, index: int, level: int, ready=None) -> None:
    logging.basicConfig(level=level, format=f"%(asctime)s worker{index} %(levelname)s %(message)s")
    w = Worker(broker_url, db_url, index, ready)
    signal.signal(signal.SIGTERM, lambda *a: w.stop())
    signal.signal(signal.SIGINT, lambda *a: w.stop())
    w.serve_forever()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", help="mqtt://host:port of an external broker (default: start the embedded one)")
    p.add_argument("--db", help="sqlite:///path or postgresql://... (default $ROAMPOS_DB or ./roampos-host.db)")
    p.add_argument("--workers", type=int, default=1, help="worker processes sharing one subscription")
    p.add_argument("--port", type=int, default=None, help="embedded broker port (default 18830)")
    p.add_argument("--worker-index-base", type=int, default=0,
                   help="first worker index; give each machine its own range so client IDs differ")
    p.add_argument("-v", "--verbose", action="store_true")


def run(args: argparse.Namespace) -> int:
    level = logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s host %(levelname)s %(message)s")
    db_url = args.db or default_url()
    try:
        connect(db_url).close()  # create the schema once before the workers race for it
    except DatabaseError as exc:
        log.error("cannot start: %s", exc)
        return 1
    broker = None
    url = args.broker
    if not url:
        from ..broker import DEFAULT_PORT, BrokerThread
        broker = BrokerThread("127.0.0.1", args.port or DEFAULT_PORT).start()
        url = broker.url
        log.info("embedded broker at %s", url)
    ctx = multiprocessing.get_context("spawn")
    procs: List = []
    events = []
    for i in range(max(1, args.workers)):
        ev = ctx.Event()
        p = ctx.Process(target=_worker_main, args=(url, db_url, args.worker_index_base + i, level, ev))
        p.start()
        procs.append(p)
        events.append(ev)
    for ev in events:  # "ready" means every worker's subscription is in place
        if not ev.wait(60):
            log.error("a worker did not subscribe within 60 s")
    log.info("host running: %d worker(s), broker %s, db %s", len(procs), url, _redact(db_url))
    print(f"roampos host ready broker={url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    while not stop.is_set():
        stop.wait(0.5)
        for i, p in enumerate(procs):
            if not p.is_alive() and not stop.is_set():
                log.error("worker %d exited (%s); restarting", i, p.exitcode)
                procs[i] = ctx.Process(target=_worker_main, args=(url, db_url, args.worker_index_base + i, level))
                procs[i].start()
    for p in procs:
        if p.pid is not None:
            os.kill(p.pid, signal.SIGTERM)
    for p in procs:
        p.join(10)
    if broker:
        broker.stop()
    return 0


def _redact(url: str) -> str:
    u = urlparse(url)
    if u.password:
        return url.replace(":" + u.password + "@", ":***@")
    return url
