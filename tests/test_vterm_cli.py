"""`roampos vterm` and `roampos run` as a newcomer uses them."""
import signal
import subprocess
import sys

import pytest
import serial

pytestmark = pytest.mark.simulation
CLI = [sys.executable, "-m", "roampos.cli"]


def test_vterm_prints_console_first_and_stops_on_sigterm(tmp_path):
    flash = tmp_path / "f.img"
    p = subprocess.Popen(CLI + ["vterm", "--flash", str(flash), "--heap", "64K"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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


def test_run_starts_the_host_with_the_terminal_registered(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = tmp_path / "host.db"
    r = subprocess.run(CLI + ["run", "--flash", str(tmp_path / "f.img"), "--db", str(db),
                              "--broker-port", str(port)],
                       input="status\nquit\n", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "registered terminal SH000001" in r.stdout, r.stdout
    # its TMK, for injection, and the host key sit beside the ledger, not in it
    assert len(bytes.fromhex((tmp_path / "SH000001.tmk").read_text())) == 16
    assert (tmp_path / "host.db.key").exists()
    assert '"region": "310000"' in r.stdout and '"mode": "ready"' in r.stdout, r.stdout
    log = (tmp_path / "host.log").read_text()
    assert "127.0.0.1:%d" % port in log, log
    listed = subprocess.run(CLI + ["terminal", "--db", "sqlite:///%s" % db, "list"],
                            capture_output=True, text=True, timeout=60)
    assert "SH000001" in listed.stdout and "440300" in listed.stdout, listed.stdout
