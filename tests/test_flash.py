"""mpremote against the vterm, flash persistence across reboots and power cuts,
and the flash image read by an independent littlefs implementation."""
import os
import subprocess
import sys
import time

import pytest

from roampos import ROOT
from roampos.image import open_image

pytestmark = pytest.mark.simulation


def mpremote(dut, *args, resume=True, timeout=60):
    cmd = [sys.executable, "-m", "mpremote", "connect", dut.vterm.console]
    cmd += (["resume"] if resume else []) + list(args)
    with dut.released():  # one program at a time on a serial port
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, "mpremote %s failed (%d):\n%s%s" % (args, r.returncode, r.stdout, r.stderr)
    return r.stdout


@pytest.fixture
def idle(dut):
    """The app running again after a test that used the REPL."""
    yield dut
    dut.reboot_and_wait("reset")


def test_fs_ls_shows_the_board_files(idle):
    out = mpremote(idle, "fs", "ls", ":")
    for name in ("boot.py", "main.py", "data/", "rom/"):
        assert name in out, out
    # The code runs in place from the ROMFS mounted at /rom, as on a board
    # with a ROMFS partition; the littlefs keeps boot.py, main.py and data.
    out = mpremote(idle, "fs", "ls", ":/rom")
    for name in ("firmware/", "drivers/", "lib/"):
        assert name in out, out
    assert "console.mpy" in mpremote(idle, "fs", "ls", ":/rom/firmware")


def test_exec_and_run(idle, tmp_path):
    assert mpremote(idle, "exec", "import sys; print(sys.implementation.name, 6*7)").split() == ["micropython", "42"]
    script = tmp_path / "probe.py"
    script.write_text("import os\nprint('files', len(os.listdir('/')))\n")
    assert mpremote(idle, "run", str(script)).startswith("files ")


def test_without_resume_mpremote_soft_resets_like_a_board(idle):
    out = mpremote(idle, "exec", "print('hello from raw repl')", resume=False)
    assert "hello from raw repl" in out


def test_mpremote_reset_restarts_the_application(dut):
    # README: the app stays at the REPL after mpremote "until a reset (`mpremote ... reset`, ...)".
    # mpremote's reset is `import machine; machine.reset()` and does not follow its output: without
    # machine.reset the AttributeError went unseen and the console stayed at the REPL.
    mpremote(dut, "exec", "print(1)")
    dut.flush_input()
    dut.events.clear()
    mpremote(dut, "reset", resume=False)
    assert dut.wait_ready(15)["ready"] is True
    assert dut.command("echo back")["echo"] == "back"


def test_fs_cp_persists_across_reboot_and_power_cut(dut, tmp_path):
    src = tmp_path / "note.txt"
    src.write_bytes(b"receipt header: \xe4\xb8\x8a\xe6\xb5\xb7\n")
    mpremote(dut, "fs", "cp", str(src), ":note.txt")
    dut.reboot_and_wait("reset")
    assert mpremote(dut, "fs", "cat", ":note.txt").encode() == src.read_bytes()
    dut.reboot_and_wait("power_cut")
    back = tmp_path / "back.txt"
    mpremote(dut, "fs", "cp", ":note.txt", str(back))
    assert back.read_bytes() == src.read_bytes()
    dut.reboot_and_wait("reset")
    assert dut.command("status").ok


def test_image_is_readable_by_littlefs_python(dut, tmp_path):
    src = tmp_path / "x.bin"
    src.write_bytes(bytes(range(256)) * 40)
    mpremote(dut, "fs", "mkdir", ":logs")
    mpremote(dut, "fs", "cp", str(src), ":logs/x.bin")
    dut.reboot_and_wait("reset")  # a board writes through; so does the vterm
    fs = open_image(dut.vterm.flash)
    with fs.open("logs/x.bin", "rb") as f:
        assert f.read() == src.read_bytes()
    with fs.open("boot.py", "rb") as f:
        assert f.read() == open(os.path.join(ROOT, "boot.py"), "rb").read()


def test_mip_installs_a_local_package(idle):
    pkg = os.path.join(ROOT, "tests", "data", "mip-demo", "package.json")
    out = mpremote(idle, "mip", "install", pkg)
    assert "Installing" in out, out
    assert mpremote(idle, "exec", "import roampos_demo; print(roampos_demo.ANSWER)").strip() == "42"
    assert "roampos_demo" in mpremote(idle, "fs", "ls", ":lib")


def test_deploy_copies_the_tree_and_the_board_boots_it(dut):
    # What an earlier deploy left: a module since dropped from the tree, a source beside its .mpy.
    mpremote(dut, "exec", "import os\ntry:\n os.mkdir('/firmware')\nexcept OSError:\n pass\n"
                          "open('/firmware/zz_dropped.py','w').write('X=1')\nopen('/firmware/version.py','w').write('V=0')")
    t0 = time.monotonic()
    with dut.released():
        r = subprocess.run([sys.executable, "-m", "roampos.deploy", "--port", dut.vterm.console, "--offline"],
                           capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    # The deploy restarted the board itself (its ready event may have come while the port was
    # the deploy's): the app answers again, with an uptime younger than the deploy.
    end = time.monotonic() + 15
    st = None
    while time.monotonic() < end:
        try:
            st = dut.command("status", timeout=2)
        except Exception:
            continue
        if st.ok:
            break
    assert st is not None and st.ok, st
    assert st["uptime_ms"] / 1000 < time.monotonic() - t0, st.raw
    out = mpremote(dut, "fs", "ls", ":firmware")
    assert "console.mpy" in out and "zz_dropped" not in out and "version.py" not in out, out
    dut.reboot_and_wait("reset")
    bad = subprocess.run([sys.executable, "-m", "roampos.deploy", "--port", "x", "--board", "esp8266"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_package_json_declares_board_dependencies():
    import json
    with open(os.path.join(ROOT, "package.json")) as f:
        pkg = json.load(f)
    assert ["umqtt.simple", "latest"] in pkg["deps"]


def test_a_deploy_that_does_not_fit_leaves_the_old_application(idle):
    # The new tree is staged beside the running one: a copy that fails half-way (a full flash
    # here) must leave a board that still starts, and say so; the next deploy clears the stage.
    from roampos.image import tree_files
    size = sum(len(data) for path, data in tree_files() if not path.startswith("/lib/"))
    free = int(mpremote(idle, "exec", "import os; s = os.statvfs('/'); print(s[0] * s[3])").split()[-1])
    fill = max(0, free - size // 2) // 4096
    mpremote(idle, "exec", "b = bytes(4096)\nf = open('/data/filler.bin', 'wb')\nfor i in range(%d):\n"
                           " f.write(b)\nf.close()" % fill)
    with idle.released():
        r = subprocess.run([sys.executable, "-m", "roampos.deploy", "--port", idle.vterm.console, "--offline"],
                           capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "keeps its old application" in r.stderr, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    idle.reboot_and_wait("reset")
    assert idle.command("status").ok                      # the old application starts
    mpremote(idle, "fs", "rm", ":/data/filler.bin")
    with idle.released():
        r = subprocess.run([sys.executable, "-m", "roampos.deploy", "--port", idle.vterm.console, "--offline"],
                           capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    # The board restarts by itself; its ready event may have come while the port was the deploy's.
    end = time.monotonic() + 15
    while time.monotonic() < end:
        try:
            if idle.command("status", timeout=2).ok:
                break
        except Exception:
            continue
    out = mpremote(idle, "fs", "ls", ":/")
    assert ".deploy" not in out and "firmware/" in out, out


def test_deploy_to_a_port_where_nothing_answers_says_so_quickly(monkeypatch):
    from roampos import deploy
    master, slave = os.openpty()                          # a port with no MicroPython behind it
    monkeypatch.setattr(deploy, "FIRST_CONTACT_S", 3)
    t0 = time.monotonic()
    try:
        with pytest.raises(SystemExit) as e:
            deploy.deploy(os.ttyname(slave), offline=True)
    finally:
        os.close(master)
        os.close(slave)
    assert "did not answer within 3 s" in str(e.value) and time.monotonic() - t0 < 30
