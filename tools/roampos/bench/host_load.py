"""Host load test: N simulated terminals against 1 and 2 host workers, compared with a broker echo."""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional, Tuple

from ..host.service import no_delay
from ..netutil import free_port, wait_port

__all__ = ["main", "rows", "run_once", "ClosedLoop", "bench_terminal"]

MOSQUITTO = "/usr/sbin/mosquitto"
TMK = bytes.fromhex("000102030405060708090A0B0C0D0E0F")


def _start_broker(kind: str, tmp: str) -> Tuple[subprocess.Popen, str]:
    port = free_port()
    if kind == "mosquitto":
        conf = os.path.join(tmp, "mosquitto.conf")
        with open(conf, "w") as fh:
            fh.write(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 0\n"
                     "max_queued_messages 100000\nset_tcp_nodelay true\n")
        proc = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        proc = subprocess.Popen([sys.executable, "-m", "roampos.broker", "--port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
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

    def __init__(self, url: str, plans: Dict[str, List[bytes]], root: str = "roampos"):
        import paho.mqtt.client as mqtt
        from urllib.parse import urlparse
        self.plans, self.root = plans, root
        self.next = {tid: 0 for tid in plans}
        self.sent_at: Dict[str, float] = {}
        self.latencies: List[float] = []
        # Responses are only kept while timing; decoding them afterwards keeps the generator's
        # per-message work identical for the echo and the host phases.
        self.responses: List[bytes] = []
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
        no_delay(self.c)   # as the host workers and the echo responders do
        self.c.loop_start()
        self.c.subscribe(f"{root}/v1/+/resp", qos=1)
        subscribed.wait(10)

    def _send(self, tid: str) -> None:
        i = self.next[tid]
        self.next[tid] = i + 1
        self.sent_at[tid] = time.perf_counter()
        self.c.publish(f"{self.root}/v1/{tid}/req", self.plans[tid][i], qos=1)

    def _on_message(self, client, userdata, msg) -> None:
        tid = msg.topic.split("/")[2]
        t0 = self.sent_at.pop(tid, None)
        if t0 is None:
            return
        self.latencies.append(time.perf_counter() - t0)
        self.responses.append(msg.payload)
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

    def codes(self) -> Dict[str, int]:
        from .. import iso
        out: Dict[str, int] = {}
        for raw in self.responses:
            try:
                rc = iso.decode(raw).get("39", "??")
            except iso.MessageError:
                rc = "undecodable"
            out[rc] = out.get(rc, 0) + 1
        return out


def _echo_main(url: str, size: int, index: int) -> None:
    """An echo responder: the fastest any MQTT request/response service can be on this broker.

    It is a client exactly like a host worker as the broker sees it: persistent session, shared
    subscription, QoS 1 both ways, the PUBACK sent after the response is published, a response of
    the host's response size. Only the work in between (the host's authorization) is missing.
    """
    import paho.mqtt.client as mqtt
    from urllib.parse import urlparse
    u = urlparse(url)
    reply = b"E" * size
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"echo-{index}", clean_session=False,
                    manual_ack=True)
    c.max_inflight_messages_set(0)
    c.max_queued_messages_set(0)
    gone = threading.Event()

    def on_message(cl, userdata, m) -> None:  # type: ignore[no-untyped-def]
        cl.publish(m.topic[:-3] + "resp", reply, qos=1)
        cl.ack(m.mid, m.qos)

    def on_connect(cl, *a) -> None:  # type: ignore[no-untyped-def]
        no_delay(cl)   # the same socket option as a host worker
        cl.subscribe(ECHO_FILTER, qos=1)

    c.on_connect = on_connect
    c.on_subscribe = lambda *a: print("ready", flush=True)
    c.on_unsubscribe = lambda *a: gone.set()
    c.on_message = on_message
    c.connect(u.hostname, u.port, keepalive=60)
    c.loop_start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    while not stop.wait(0.5):
        pass
    # Leave no shared-subscription member behind: a later phase's requests must not queue for it.
    c.unsubscribe(ECHO_FILTER)
    gone.wait(5)
    c.disconnect()
    c.loop_stop()


def _wire_echo_main(url: str, size: int, index: int) -> None:
    """The same echo on the host workers' own MQTT client (`host.wire`): what remains between the
    two phases is then only the authorization work, not a difference of client libraries."""
    from urllib.parse import urlparse
    from ..host.wire import WireClient
    u = urlparse(url)
    reply = b"E" * size
    c = WireClient(u.hostname or "127.0.0.1", u.port or 1883, f"echo-{index}", keepalive=60,
                   subscriptions=[ECHO_FILTER])
    got: list = []
    c.on_message = got.append
    c.on_subscribe = lambda: print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    c.connect()
    while not stop.is_set():
        if c.loop(0.2):
            time.sleep(0.2)
            c.connect()
            continue
        for m in got:
            c.publish(m.topic[:-3] + "resp", reply, qos=1)
            c.ack(m)
        got.clear()
        c.flush()
    # Leave no shared-subscription member behind: a later phase's requests must not queue for it.
    from ..mqtt_codec import UNSUBSCRIBE, encode_str, packet
    c.out += packet(UNSUBSCRIBE, 2, b"\x00\x01" + encode_str(ECHO_FILTER))
    c.loop(0.5)
    c.disconnect()


# The echo lives on its own topic tree of the same length as roampos/..., so that echo and host
# rounds can alternate with both services running (a burst of other work on the machine then
# hits both phases alike) and no request ever reaches both.
ECHO_ROOT = "echopos"
ECHO_FILTER = f"$share/echo/{ECHO_ROOT}/v1/+/req"


def _response_size(request: bytes) -> int:
    """Size of the host's approval for `request`: the echoed fields + RRN, approval code, RC, MAC."""
    from .. import iso
    doc = iso.decode(request)
    resp = {k: doc[k] for k in ("3", "4", "7", "11", "41", "42", "49") if k in doc}
    resp.update({"t": iso.MTI_RESPONSE[doc["t"]], "37": "0" * 12, "38": "0" * 6, "39": "00"})
    return len(iso.encode(resp, bytes(16)))


def _plans(sims: list, requests: int, round_no: int) -> Dict[str, List[bytes]]:
    """Fresh authorizations (new STANs, current field 7) for one round; distinct cards per request."""
    return {s.tid: [s.financial("622848" + f"{k:03d}{round_no % 10}{j:06d}", 100 + j, cell="460-00-6200-1")
                    for j in range(requests)] for k, s in enumerate(sims)}


def bench_terminal(db, i: int):  # type: ignore[no-untyped-def]
    """The bench's terminal number `i`, registered in `db` (not signed on yet)."""
    from ..host import registry
    from ..termsim import SimTerminal
    tid, serial = f"BEN{i:05d}", f"SN-BENCH-{i:05d}"
    registry.add_terminal(db, tid, serial, "310000000000777", "Bench", "48020000", "62220", "310000", {}, TMK.hex())
    return SimTerminal(tid, "310000000000777", serial, TMK)


def _pct(values: List[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] * 1000 if s else float("nan")


PG_URL = os.environ.get("ROAMPOS_TEST_PG") or "postgresql://postgres@127.0.0.1:5432/test"


def pg_available() -> bool:
    from ..host.db import pg_reachable
    return pg_reachable(PG_URL)


def run_once(broker_kind: str, workers: int, terminals: int, requests: int, rounds: int = 5,
             timeout: float = 120, echo_client: str = "wire", ledger: str = "sqlite") -> dict:
    """One configuration: `rounds` pairs of an echo round and a host round on the same broker and
    the same load generator; rates are the median round of each. `ledger` "postgresql" uses a
    schema of its own on PG_URL, dropped afterwards."""
    from ..host import db as dbm
    from ..termsim import MqttLink, SimTerminal
    tmp = tempfile.mkdtemp(prefix="roampos-bench-")
    broker, url = _start_broker(broker_kind, tmp)
    procs: List[subprocess.Popen] = []
    try:
        schema = f"bench_{os.getpid()}_{workers}"
        db_url = f"sqlite:///{tmp}/ledger.db" if ledger == "sqlite" else \
            f"{PG_URL}{'&' if '?' in PG_URL else '?'}schema={schema}"
        db = dbm.connect(db_url)
        sims, twins = [], []
        for i in range(terminals):
            sims.append(bench_terminal(db, i))
            # The echo phase sends the same kind of message, built with throw-away session keys.
            twin = SimTerminal(sims[-1].tid, sims[-1].mid, sims[-1].serial, TMK)
            twin.tpk = twin.tak = twin.tdk = os.urandom(16)
            twins.append(twin)
        req_size = len(_plans(twins[:1], 1, 0)[twins[0].tid][0])
        resp_size = _response_size(_plans(twins[:1], 1, 0)[twins[0].tid][0])
        # The echo responders (one per worker) and the host run side by side on separate topics.
        echo_main = "_wire_echo_main" if echo_client == "wire" else "_echo_main"
        echo = [subprocess.Popen([sys.executable, "-c", "import sys; from roampos.bench.host_load import "
                                  f"{echo_main} as e; e({url!r}, {resp_size}, {k})"],
                                 stdout=subprocess.PIPE, text=True) for k in range(workers)]
        procs += echo
        for p in echo:
            p.stdout.readline()
        with open(os.path.join(tmp, "host.log"), "w") as log_file:  # the child keeps its own copy
            host = subprocess.Popen([sys.executable, "-m", "roampos.cli", "host", "--broker", url, "--db",
                                     db_url, "--workers", str(workers)], stdout=subprocess.PIPE, stderr=log_file,
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
        echo_rates: List[float] = []
        host_rates, latencies, codes, answered, resp_sizes = [], [], {}, 0, set()
        for r in range(rounds):  # alternate: echo round, host round
            loop = ClosedLoop(url, _plans(twins, requests, r), root=ECHO_ROOT)
            echo_s = loop.run(timeout)
            echo_rates.append(terminals * requests / echo_s if not loop.remaining else float("nan"))
            loop = ClosedLoop(url, _plans(sims, requests, r))
            host_s = loop.run(timeout)
            host_rates.append(len(loop.latencies) / host_s)
            latencies += loop.latencies
            answered += len(loop.latencies)
            resp_sizes.update(len(x) for x in loop.responses)
            for rc, n in loop.codes().items():
                codes[rc] = codes.get(rc, 0) + n
        total = terminals * requests * rounds
        approved = codes.get("00", 0)
        time.sleep(0.2)
        (rows,) = db.one("SELECT COUNT(*) FROM txns")
        (distinct,) = db.one("SELECT COUNT(DISTINCT terminal_id || '/' || batch_no || '/' || stan || '/' || kind)"
                             " FROM txns")
        db.close()
        rate, echo_rate = statistics.median(host_rates), statistics.median(echo_rates)
        return {"broker": "mosquitto" if broker_kind == "mosquitto" else "embedded", "workers": workers,
                "ledger": ledger,
                "terminals": terminals, "requests": total, "answered": answered, "approved": approved,
                "auth_per_s": rate, "p50_ms": _pct(latencies, 50), "p99_ms": _pct(latencies, 99),
                "echo_per_s": echo_rate, "ratio": rate / echo_rate if echo_rate else float("nan"),
                "rounds": rounds, "host_rounds": host_rates, "echo_rounds": echo_rates,
                "ledger_rows": rows, "lost": approved - min(rows, approved), "duplicated": rows - distinct,
                "req_bytes": req_size, "resp_bytes": resp_size, "host_resp_bytes": sorted(resp_sizes),
                "codes": codes}
    finally:
        for p in procs:
            _stop(p)
        _stop(broker)
        if ledger != "sqlite":
            _drop_schema(schema)
        if os.environ.get("ROAMPOS_BENCH_LOG") and os.path.exists(os.path.join(tmp, "host.log")):
            shutil.copy(os.path.join(tmp, "host.log"), os.environ["ROAMPOS_BENCH_LOG"])
        shutil.rmtree(tmp, ignore_errors=True)


def _drop_schema(schema: str) -> None:
    try:
        import psycopg
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    except Exception as exc:  # a leftover schema is untidy, not a wrong figure
        print(f"bench: could not drop schema {schema}: {exc}", file=sys.stderr)


def _ratio(x: float) -> str:
    """Three decimals, cut rather than rounded: 0.4985 against a target of 0.5 must not print 0.50."""
    return "nan" if x != x else f"{int(x * 1000 + 1e-9) / 1000:.3f}"   # 0.57 * 1000 is 569.999...


def _table(results: List[dict]) -> str:
    head = ("ledger", "broker", "workers", "terminals", "requests", "auth/s", "p50 ms", "p99 ms", "echo/s", "ratio",
            "ledger rows", "lost", "dup")
    lines = [head] + [(r["ledger"], r["broker"], str(r["workers"]), str(r["terminals"]), str(r["requests"]),
                       f"{r['auth_per_s']:.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
                       f"{r['echo_per_s']:.0f}", _ratio(r["ratio"]), str(r["ledger_rows"]), str(r["lost"]),
                       str(r["duplicated"])) for r in results]
    w = [max(len(x[i]) for x in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w[i]) for i, c in enumerate(x)) for x in lines)


def main(argv: Optional[List[str]] = None) -> List[dict]:
    p = argparse.ArgumentParser(prog="python -m roampos.bench.host_load", description=__doc__)
    # 200 in flight: the ratio compares two saturated rates, and on mosquitto one worker needs
    # about that many to stay busy (with 50 it idled ~12 % of each host round, waiting for the
    # next requests: ratio 0.43-0.45, 100: 0.49-0.50, 200: 0.53-0.55, 400: 0.64), while the echo
    # is saturated at 50 already (20 200-21 200/s at 50, 19 500-20 500/s at 400: the load
    # generator and the broker fill both cores). docs/host.md, seventh session.
    p.add_argument("--terminals", type=int, default=200, help="simulated terminals, one request in flight each")
    p.add_argument("--requests", type=int, default=40, help="authorizations per terminal and round")
    p.add_argument("--broker", choices=("embedded", "mosquitto"), default="embedded")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    p.add_argument("--rounds", type=int, default=7, help="echo and host rounds per configuration (median)")
    p.add_argument("--echo-client", choices=("paho", "wire"), default="wire",
                   help="the echo's MQTT client: the workers' own (host.wire, default) or paho")
    p.add_argument("--ledger", choices=("sqlite", "postgresql"), default="sqlite",
                   help=f"postgresql: a schema of its own on $ROAMPOS_TEST_PG ({PG_URL})")
    args = p.parse_args(argv)
    if args.broker == "mosquitto" and not os.path.exists(MOSQUITTO):
        print(f"{MOSQUITTO} missing: using the embedded broker", file=sys.stderr)
        args.broker = "embedded"
    results = [run_once(args.broker, int(w), args.terminals, args.requests, args.rounds,
                        echo_client=args.echo_client, ledger=args.ledger) for w in args.workers.split(",")]
    print(_table(results))
    from .. import accel
    print(f"host: {accel.status()}")   # the workers import the same build (same venv and sources)
    for r in results:
        if r["lost"] or r["duplicated"] or r["answered"] != r["requests"] or r["ledger_rows"] != r["requests"]:
            print(f"LEDGER MISMATCH with {r['workers']} worker(s): {r}", file=sys.stderr)
    return results


def rows(argv: Optional[List[str]] = None) -> List[Tuple[str, str, str]]:
    """For `python -m roampos.bench` (one row per metric)."""
    out = []
    results = main(argv if argv is not None else [])
    if argv is None and os.path.exists(MOSQUITTO):
        # The same load on mosquitto: its own request/response rate is 2-4x the embedded
        # broker's, so this ratio says how far the host is from a fast broker's ceiling.
        results += main(["--broker", "mosquitto"])
        if pg_available():
            # The ledger several machines' workers share: each statement is a round trip, so the
            # figure is the server's, not the host's Python (no target: the issue sets none).
            results += main(["--broker", "mosquitto", "--ledger", "postgresql", "--rounds", "3"])
    for r in results:
        tag = f"{r['workers']} worker(s), {r['broker']} broker, {r['terminals']} terminals"
        if r["ledger"] != "sqlite":
            tag += f", {r['ledger']}"
        out.append((f"auth/s {tag}", f"{r['auth_per_s']:.0f}", ""))
        out.append((f"p50/p99 ms {tag}", f"{r['p50_ms']:.1f}/{r['p99_ms']:.1f}", ""))
        out.append((f"ratio to broker echo ({r['echo_per_s']:.0f}/s) {tag}", _ratio(r["ratio"]),
                    ">= 0.5" if r["ledger"] == "sqlite" else ""))
        out.append((f"ledger rows lost/dup {tag}", f"{r['lost']}/{r['duplicated']}", "0/0"))
    return out


if __name__ == "__main__":
    main()
