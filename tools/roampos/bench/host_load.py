"""Host load test: N simulated terminals against 1 and 2 host workers, compared with a broker echo."""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional, Tuple

__all__ = ["main", "rows", "run_once"]

MOSQUITTO = "/usr/sbin/mosquitto"
TMK = bytes.fromhex("000102030405060708090A0B0C0D0E0F")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 15) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"broker did not open port {port}")


def _start_broker(kind: str, tmp: str) -> Tuple[subprocess.Popen, str]:
    port = _free_port()
    if kind == "mosquitto":
        conf = os.path.join(tmp, "mosquitto.conf")
        with open(conf, "w") as fh:
            fh.write(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 0\n"
                     "max_queued_messages 100000\nset_tcp_nodelay true\n")
        proc = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        proc = subprocess.Popen([sys.executable, "-m", "roampos.broker", "--port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_port(port)
    return proc, f"mqtt://127.0.0.1:{port}"


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM) if _own_group(proc) else proc.terminate()
        except ProcessLookupError:
            pass
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _own_group(proc: subprocess.Popen) -> bool:
    try:
        return os.getpgid(proc.pid) == proc.pid
    except ProcessLookupError:
        return False


class ClosedLoop:
    """Each terminal keeps exactly one request outstanding; the next goes when its answer arrives."""

    def __init__(self, url: str, plans: Dict[str, List[bytes]], check: bool):
        import paho.mqtt.client as mqtt
        from urllib.parse import urlparse
        self.plans, self.check = plans, check
        self.next = {tid: 0 for tid in plans}
        self.sent_at: Dict[str, float] = {}
        self.latencies: List[float] = []
        self.codes: Dict[str, int] = {}
        self.done = threading.Event()
        self.remaining = sum(len(p) for p in plans.values())
        u = urlparse(url)
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"load-{os.getpid()}-{id(self)}")
        self.c.max_inflight_messages_set(0)
        self.c.max_queued_messages_set(0)
        self.c.on_message = self._on_message
        subscribed = threading.Event()
        self.c.on_subscribe = lambda *a: subscribed.set()
        self.c.connect(u.hostname, u.port, keepalive=60)
        self.c.loop_start()
        self.c.subscribe("roampos/v1/+/resp", qos=1)
        subscribed.wait(10)

    def _send(self, tid: str) -> None:
        i = self.next[tid]
        self.next[tid] = i + 1
        self.sent_at[tid] = time.perf_counter()
        self.c.publish(f"roampos/v1/{tid}/req", self.plans[tid][i], qos=1)

    def _on_message(self, client, userdata, msg) -> None:
        tid = msg.topic.split("/")[2]
        t0 = self.sent_at.pop(tid, None)
        if t0 is None:
            return
        self.latencies.append(time.perf_counter() - t0)
        if self.check:
            from .. import iso
            rc = iso.decode(msg.payload).get("39", "??")
            self.codes[rc] = self.codes.get(rc, 0) + 1
        self.remaining -= 1
        if self.next[tid] < len(self.plans[tid]):
            self._send(tid)
        elif self.remaining == 0:
            self.done.set()

    def run(self, timeout: float) -> float:
        t0 = time.perf_counter()
        for tid in self.plans:
            self._send(tid)
        self.done.wait(timeout)
        elapsed = time.perf_counter() - t0
        self.c.disconnect()
        self.c.loop_stop()
        return elapsed


def _echo_main(url: str, size: int) -> None:
    """An echo responder: the fastest any MQTT request/response service can be on this broker."""
    import paho.mqtt.client as mqtt
    from urllib.parse import urlparse
    u = urlparse(url)
    reply = b"E" * size
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"echo-{os.getpid()}")
    c.max_inflight_messages_set(0)
    c.max_queued_messages_set(0)
    c.on_connect = lambda cl, *a: cl.subscribe("$share/echo/roampos/v1/+/req", qos=1)
    c.on_subscribe = lambda *a: print("ready", flush=True)
    c.on_message = lambda cl, u_, m: cl.publish(m.topic[:-3] + "resp", reply, qos=1)
    c.connect(u.hostname, u.port, keepalive=60)
    signal.signal(signal.SIGTERM, lambda *a: c.disconnect())
    c.loop_forever()


def _pct(values: List[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] * 1000 if s else float("nan")


def run_once(broker_kind: str, workers: int, terminals: int, requests: int, timeout: float = 120) -> dict:
    from .. import iso
    from ..host import db as dbm, registry
    from ..termsim import MqttLink, SimTerminal
    tmp = tempfile.mkdtemp(prefix="roampos-bench-")
    broker, url = _start_broker(broker_kind, tmp)
    procs: List[subprocess.Popen] = []
    try:
        db_url = f"sqlite:///{tmp}/ledger.db"
        db = dbm.connect(db_url)
        sims = []
        for i in range(terminals):
            tid = f"BEN{i:05d}"
            registry.add_terminal(db, tid, f"SN-BENCH-{i:05d}", "310000000000777", "Bench", "ACQ", "62220",
                                  "310000", {}, TMK.hex())
            sims.append(SimTerminal(tid, "310000000000777", f"SN-BENCH-{i:05d}", TMK))
        # Phase 1: the broker's own request/response rate with an echo responder per worker.
        size = 0
        echo = [subprocess.Popen([sys.executable, "-c", "import sys; from roampos.bench.host_load import "
                                  f"_echo_main; _echo_main({url!r}, 120)"],
                                 stdout=subprocess.PIPE, text=True) for _ in range(workers)]
        procs += echo
        for p in echo:
            p.stdout.readline()
        dummy = b"0200" + b"\0" * 300
        loop = ClosedLoop(url, {s.tid: [dummy] * requests for s in sims}, check=False)
        echo_s = loop.run(timeout)
        echo_rate = terminals * requests / echo_s if not loop.remaining else float("nan")
        for p in echo:
            _stop(p)
        # Phase 2: the host.
        host = subprocess.Popen([sys.executable, "-m", "roampos.cli", "host", "--broker", url, "--db", db_url,
                                 "--workers", str(workers)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, start_new_session=True)
        procs.append(host)
        for line in host.stdout:
            if "ready" in line:
                break
        threading.Thread(target=host.stdout.read, daemon=True).start()
        link = MqttLink(url)
        link.subscribe([s.tid for s in sims])
        for s in sims:
            s.apply_signon(link.request(s.tid, s.signon(), 30))
        link.close()
        plans = {}
        for k, s in enumerate(sims):
            plans[s.tid] = [s.financial("622848" + f"{k:04d}{j:06d}", 100 + j, cell="460-00-6200-1")
                            for j in range(requests)]
        size = len(plans[sims[0].tid][0])
        loop = ClosedLoop(url, plans, check=True)
        host_s = loop.run(timeout)
        total = terminals * requests
        answered = len(loop.latencies)
        approved = loop.codes.get("00", 0)
        time.sleep(0.2)
        (rows,) = db.one("SELECT COUNT(*) FROM txns")
        (distinct,) = db.one("SELECT COUNT(DISTINCT terminal_id || '/' || stan) FROM txns")
        db.close()
        rate = answered / host_s
        return {"broker": "mosquitto" if broker_kind == "mosquitto" else "embedded", "workers": workers,
                "terminals": terminals, "requests": total, "answered": answered, "approved": approved,
                "auth_per_s": rate, "p50_ms": _pct(loop.latencies, 50), "p99_ms": _pct(loop.latencies, 99),
                "echo_per_s": echo_rate, "ratio": rate / echo_rate if echo_rate else float("nan"),
                "ledger_rows": rows, "lost": approved - min(rows, approved), "duplicated": rows - distinct,
                "req_bytes": size, "codes": dict(loop.codes)}
    finally:
        for p in procs:
            _stop(p)
        _stop(broker)
        shutil.rmtree(tmp, ignore_errors=True)


def _table(results: List[dict]) -> str:
    head = ("broker", "workers", "terminals", "requests", "auth/s", "p50 ms", "p99 ms", "echo/s", "ratio",
            "ledger rows", "lost", "dup")
    lines = [head] + [(r["broker"], str(r["workers"]), str(r["terminals"]), str(r["requests"]),
                       f"{r['auth_per_s']:.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
                       f"{r['echo_per_s']:.0f}", f"{r['ratio']:.2f}", str(r["ledger_rows"]), str(r["lost"]),
                       str(r["duplicated"])) for r in results]
    w = [max(len(x[i]) for x in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w[i]) for i, c in enumerate(x)) for x in lines)


def main(argv: Optional[List[str]] = None) -> List[dict]:
    p = argparse.ArgumentParser(prog="python -m roampos.bench.host_load", description=__doc__)
    p.add_argument("--terminals", type=int, default=20)
    p.add_argument("--requests", type=int, default=50, help="authorizations per terminal")
    p.add_argument("--broker", choices=("embedded", "mosquitto"), default="embedded")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    args = p.parse_args(argv)
    if args.broker == "mosquitto" and not os.path.exists(MOSQUITTO):
        print(f"{MOSQUITTO} missing: using the embedded broker", file=sys.stderr)
        args.broker = "embedded"
    results = [run_once(args.broker, int(w), args.terminals, args.requests) for w in args.workers.split(",")]
    print(_table(results))
    for r in results:
        if r["lost"] or r["duplicated"] or r["answered"] != r["requests"] or r["ledger_rows"] != r["requests"]:
            print(f"LEDGER MISMATCH with {r['workers']} worker(s): {r}", file=sys.stderr)
    return results


def rows(argv: Optional[List[str]] = None) -> List[Tuple[str, str, str]]:
    """For `python -m roampos.bench` (one row per metric)."""
    out = []
    for r in main(argv if argv is not None else []):
        tag = f"{r['workers']} worker(s), {r['broker']} broker, {r['terminals']} terminals"
        out.append((f"auth/s {tag}", f"{r['auth_per_s']:.0f}", ""))
        out.append((f"p50/p99 ms {tag}", f"{r['p50_ms']:.1f}/{r['p99_ms']:.1f}", ""))
        out.append((f"ratio to broker echo ({r['echo_per_s']:.0f}/s) {tag}", f"{r['ratio']:.2f}", ">= 0.5"))
        out.append((f"ledger rows lost/dup {tag}", f"{r['lost']}/{r['duplicated']}", "0/0"))
    return out


if __name__ == "__main__":
    main()
