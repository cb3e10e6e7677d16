"""`roampos vterm` and `roampos run` as a newcomer uses them."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import serial

from roampos import ROOT
from roampos.vterm.process import _code_state

pytestmark = pytest.mark.simulation
CLI = [sys.executable, "-m", "roampos.cli"]


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_vterm_prints_console_first_and_stops_on_sigterm(tmp_path, relative):
    flash = tmp_path / "f.img"
    p = subprocess.Popen(CLI + ["vterm", "--flash", "f.img" if relative else str(flash), "--heap", "64K"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(tmp_path),
                         env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "tools")))
    try:
        first = p.stdout.readline()
        assert first.startswith("console: /dev/"), first
        assert flash.stat().st_size == 2 * 1024 * 1024  # built because it was missing
        with serial.Serial(first.split()[1], 115200, timeout=5) as s:
            s.write(b"status\r\n")
            line = s.read_until(b"OK")
            assert line.endswith(b"OK"), line
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()


def test_readme_provisioning_on_a_default_vterm(tmp_path):
    # README: `roampos vterm`, then `roampos provision --port <its console>`: the default heap
    # must be enough for the import (64K is the firmware's serving budget, not the tool's).
    p = subprocess.Popen(CLI + ["vterm", "--flash", str(tmp_path / "f.img")], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        port = p.stdout.readline().split()[1]
        r = subprocess.run(CLI + ["provision", "--port", port, "--file",
                                  os.path.join(ROOT, "examples", "params", "shanghai-merchant.json")],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "provisioned: parameter version" in r.stdout, r.stdout + r.stderr
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def test_vterm_rejects_a_bad_heap_size(tmp_path):
    r = subprocess.run(CLI + ["vterm", "--flash", str(tmp_path / "f.img"), "--heap", "lots"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "lots" in r.stderr


def test_run_gives_a_prompt_that_reaches_the_console(tmp_path):
    r = subprocess.run(CLI + ["run", "--no-host", "--flash", str(tmp_path / "f.img")],
                       input="status\nfrob\nquit\n", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("console: ")
    assert any(l.startswith("OK {") and '"board": "vterm"' in l for l in lines), r.stdout
    assert any(l.startswith("ERR unknown") for l in lines), r.stdout


def test_run_shows_events_as_they_come_as_json(tmp_path):
    # A bench engineer presses keys and taps a card: what the terminal reports shows at once, as
    # the console sends it (JSON), not only when the next command is typed.
    p = subprocess.Popen(CLI + ["run", "--no-host", "--flash", str(tmp_path / "f.img")], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    guard = threading.Timer(60, p.kill)  # the reads below end at EOF if the events never come
    guard.start()
    try:
        for line in p.stdout:
            if "terminal ready" in line:
                break
        p.stdin.write("sim key 1 2 5 C\nsim tap visa\n")
        p.stdin.flush()
        seen = []
        for line in p.stdout:
            seen.append(line)
            if line.startswith("EVT ") and '"card read"' in line:
                break
        ev = json.loads(seen[-1][4:])
        assert ev["sale"]["card"]["pan"] == "476173******0010", seen
        assert any(l.startswith("EVT ") and '"waiting card"' in l for l in seen), seen
        p.stdin.write("quit\n")
        p.stdin.flush()
        assert p.wait(30) == 0
    finally:
        guard.cancel()
        if p.poll() is None:
            p.kill()


def test_run_starts_the_host_with_the_terminal_registered(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The ledger's and the flash image's folders do not exist yet, as build/ in a fresh clone.
    db = tmp_path / "build" / "host.db"
    r = subprocess.run(CLI + ["run", "--flash", str(tmp_path / "img" / "f.img"), "--db", str(db),
                              "--broker-port", str(port)],
                       input="status\nquit\n", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "registered terminal SH000001" in r.stdout, r.stdout
    # its TMK, for injection, and the host key sit beside the ledger, not in it
    assert len(bytes.fromhex((db.parent / "SH000001.tmk").read_text())) == 16
    assert (db.parent / "host.db.key").exists()
    assert '"region": "310000"' in r.stdout and '"mode": "ready"' in r.stdout, r.stdout
    log = (db.parent / "host.log").read_text()
    assert "127.0.0.1:%d" % port in log, log
    listed = subprocess.run(CLI + ["terminal", "--db", "sqlite:///%s" % db, "list"],
                            capture_output=True, text=True, timeout=60)
    assert "SH000001" in listed.stdout and "440300" in listed.stdout, listed.stdout


def _port_free(port):
    # Free of listeners: SO_REUSEADDR lets the bind past connections the broker closed (TIME_WAIT
    # for a minute), never past a process still listening.
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_stops_everything_on_sigterm(tmp_path):
    port = _free_port()
    p = subprocess.Popen(CLI + ["run", "--flash", str(tmp_path / "f.img"), "--db", str(tmp_path / "h.db"),
                                "--broker-port", str(port)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    for line in p.stdout:
        if "terminal ready" in line:
            break
    assert not _port_free(port)            # the host's broker serves
    p.send_signal(signal.SIGTERM)
    assert p.wait(30) == 0
    end = time.monotonic() + 10
    while not _port_free(port) and time.monotonic() < end:
        time.sleep(0.1)
    assert _port_free(port), "the host outlived `roampos run`"
    assert not _running_with(str(tmp_path)), "left running after `roampos run`"


def _running_with(text):
    # Processes whose command line names `text` (the run's flash and ledger paths).
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as fh:
                if text.encode() in fh.read():
                    found.append(pid)
        except (OSError, ValueError):
            continue
    return found


def test_run_says_why_when_the_host_cannot_start(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run(CLI + ["run", "--flash", str(tmp_path / "f.img"), "--db", str(tmp_path / "h.db"),
                                  "--broker-port", str(port)], input="quit\n", capture_output=True, text=True,
                           timeout=120)
    assert r.returncode == 1 and "the host exited" in r.stderr, r.stdout + r.stderr
    assert "Address already in use" in r.stderr or "address already in use" in r.stderr.lower(), r.stderr
    bad = subprocess.run(CLI + ["run", "--heap", "64Q"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "heap size" in bad.stderr


def test_code_image_notices_deleted_and_restored_files(tmp_path):
    (tmp_path / "a.py").write_text("A = 1")
    (tmp_path / "b.py").write_text("B = 2")
    before = _code_state([str(tmp_path)])
    os.rename(tmp_path / "b.py", tmp_path / "c.py")          # a rename: same newest mtime
    assert _code_state([str(tmp_path)]) != before
    os.remove(tmp_path / "c.py")                              # a deletion: nothing newer at all
    assert _code_state([str(tmp_path)]) != before


def test_bad_parameter_sets_and_outputs_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    nomerchant = tmp_path / "nomerchant.json"
    nomerchant.write_text('{"version": 1}')
    for args, prefix in (
            (["vterm", "--flash", str(tmp_path / "v.img"), "--params", str(bad)], "vterm: parameter set"),
            (["run", "--no-host", "--fresh", "--flash", str(tmp_path / "r.img"), "--params", str(bad)],
             "run: parameter set"),
            (["run", "--fresh", "--flash", str(tmp_path / "r.img"), "--db", str(tmp_path / "h.db"),
              "--params", str(nomerchant)], "run: parameter set"),
            (["image", "--board", "esp32s3", "-o", str(tmp_path / "z.img"), "--romfs", str(tmp_path)],
             "image: cannot write")):
        r = subprocess.run(CLI + args, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert r.returncode == 1 and r.stderr.startswith(prefix) and "Traceback" not in r.stderr, (args, r.stderr)
    # nothing half-made left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json", "nomerchant.json"]


def test_screen_errors_are_one_line(tmp_path):
    r = subprocess.run(CLI + ["screen", "--port", str(tmp_path / "no-such-port"), "-o", str(tmp_path / "s.png")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.startswith("screen: ") and "Traceback" not in r.stderr, r.stderr


def test_run_says_so_when_the_terminal_goes_away(tmp_path):
    p = subprocess.Popen(CLI + ["run", "--no-host", "--flash", str(tmp_path / "f.img")], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in p.stdout:
            if "terminal ready" in line:
                break
        # the vterm is the run's child: kill it as a crash would
        with open("/proc/%d/task/%d/children" % (p.pid, p.pid)) as f:
            for pid in f.read().split():
                os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.5)
        out, _ = p.communicate("status\n", timeout=60)
        assert p.returncode == 1 and "run: the terminal is gone" in out and "Traceback" not in out, out
    finally:
        if p.poll() is None:
            p.kill()


def test_vterm_stops_on_sigterm_when_nobody_reads_its_console(tmp_path):
    # A script that only writes (or a console nobody opened after a burst of events): the replies
    # fill the pty; the vterm must still serve its signals, not block writing to the console.
    p = subprocess.Popen(CLI + ["vterm", "--flash", str(tmp_path / "f.img")], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        port = p.stdout.readline().split()[1]
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
        try:
            for _ in range(300):  # ~300 `help` replies, far more than a pty holds
                os.write(fd, b"help\r\n")
            time.sleep(5)
        finally:
            os.close(fd)
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
