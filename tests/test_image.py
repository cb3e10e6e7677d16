"""Factory images: the right geometry per board, readable by littlefs-python
and mountable by MicroPython's own littlefs (VfsLfs2)."""
import os
import subprocess
import sys

import pytest

from roampos.image import BOARDS, ROMFS, open_image
from roampos.vterm.process import micropython_binary

MOUNT = r"""
import vfs, os, sys
class Dev:
    def __init__(s, f, n): s.f = f; s.n = n
    def readblocks(s, b, buf, off=0): s.f.seek(b * 4096 + off); s.f.readinto(buf)
    def writeblocks(s, b, buf, off=0): s.f.seek(b * 4096 + off); s.f.write(buf)
    def ioctl(s, op, arg): return s.n if op == 4 else 4096 if op == 5 else 0
f = open(sys.argv[1], "r+b"); f.seek(0, 2)
vfs.mount(vfs.VfsLfs2(Dev(f, f.tell() // 4096)), "/flash")
print(sorted(os.listdir("/flash")), sorted(os.listdir("/flash/firmware"))[:3], os.statvfs("/flash")[2])
"""


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_board_image(board, tmp_path):
    out = tmp_path / (board + ".img")
    r = subprocess.run([sys.executable, "-m", "roampos.cli", "image", "--board", board, "-o", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    bs, count, offset = BOARDS[board]
    assert out.stat().st_size == bs * count
    assert "0x%X" % offset in r.stdout
    fs = open_image(str(out), board)
    names = fs.listdir("/")
    for n in ("boot.py", "main.py", "firmware", "lib", "data"):
        assert n in names, names
    assert "console.mpy" in fs.listdir("/firmware")
    script = tmp_path / "mount.py"
    script.write_text(MOUNT)
    m = subprocess.run([micropython_binary(), str(script), str(out)], capture_output=True, text=True, timeout=30)
    assert m.returncode == 0, m.stdout + m.stderr
    assert "'boot.py'" in m.stdout and m.stdout.strip().endswith(str(count)), m.stdout


def test_image_refuses_unknown_board(tmp_path):
    r = subprocess.run([sys.executable, "-m", "roampos.cli", "image", "--board", "esp8266", "-o",
                        str(tmp_path / "x.img")], capture_output=True, text=True)
    assert r.returncode == 2 and "invalid choice" in r.stderr
    assert not os.path.exists(tmp_path / "x.img")


def test_romfs_image_holds_the_code_and_littlefs_the_rest(tmp_path):
    out, rom = tmp_path / "esp32s3.img", tmp_path / "esp32s3.romfs"
    r = subprocess.run([sys.executable, "-m", "roampos.cli", "image", "--board", "esp32s3", "-o", str(out),
                        "--romfs", str(rom)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    offset, size = ROMFS["esp32s3"]
    assert "0x%X" % offset in r.stdout, r.stdout
    assert 0 < rom.stat().st_size <= size
    names = open_image(str(out), "esp32s3").listdir("/")
    assert "firmware" not in names and "boot.py" in names, names
    # MicroPython's own VfsRom mounts it and lists the compiled code.
    script = tmp_path / "rom.py"
    script.write_text("import vfs, os, sys\n"
                      "vfs.mount(vfs.VfsRom(open(sys.argv[1], 'rb').read()), '/rom')\n"
                      "print(sorted(os.listdir('/rom')), 'console.mpy' in os.listdir('/rom/firmware'))\n")
    m = subprocess.run([micropython_binary(), str(script), str(rom)], capture_output=True, text=True, timeout=30)
    assert m.stdout.strip() == "['drivers', 'firmware', 'lib'] True", m.stdout + m.stderr


def test_image_and_provision_errors_are_one_line(tmp_path):
    cli = [sys.executable, "-m", "roampos.cli"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1}')
    r = subprocess.run(cli + ["image", "--board", "rp2", "-o", str(tmp_path / "x.img"), "--params", str(bad)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.startswith("image: parameter set") and "Traceback" not in r.stderr
    (tmp_path / "adir").mkdir()
    r = subprocess.run(cli + ["image", "--board", "rp2", "-o", str(tmp_path / "adir")], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1 and "cannot write" in r.stderr and "Traceback" not in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["adir", "bad.json"]        # no temporary file left behind
    r = subprocess.run(cli + ["provision", "--port", str(tmp_path / "no-such-port"), "--file",
                              os.path.join(os.path.dirname(__file__), "..", "examples", "params",
                                           "shanghai-merchant.json")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "cannot talk to" in r.stderr and "Traceback" not in r.stderr


def test_the_host_validates_parameters_as_the_terminal_does():
    # The baker and provision tool run the firmware's schema under CPython, whose str.isdigit()
    # also takes other scripts' digits: a set the terminal would refuse must be refused here too,
    # or a factory image boots READY with it.
    import json
    from roampos import ROOT, provision
    with open(os.path.join(ROOT, "examples", "params", "shanghai-merchant.json")) as f:
        good = json.load(f)
    provision.validate(provision.load_set(os.path.join(ROOT, "examples", "params", "shanghai-merchant.json")))
    for edit, field in ((lambda s: s["merchant"].__setitem__("id", "31011558123456\uff17"), "merchant.id"),
                        (lambda s: s["profiles"]["310000"].__setitem__("name", "Shanghai\ud800"),
                         "profiles.310000.name")):
        s = json.loads(json.dumps(good))
        for o in s["operators"]:
            o["pin_hash"] = {"salt": o.pop("pin") and "00" * 8, "n": 500, "hash": "ab" * 32}
        edit(s)
        with pytest.raises(provision.ProvisionError, match=field.replace(".", r"\.")):
            provision.validate(s)


def test_an_image_with_parameters_is_readable_by_its_owner_only(tmp_path):
    # It holds WiFi keys and the operators' PIN hashes (salted, but a 4-12 digit PIN falls to a
    # search): not for every user of the machine.
    from roampos import ROOT
    out = tmp_path / "p.img"
    r = subprocess.run([sys.executable, "-m", "roampos.cli", "image", "--board", "rp2", "-o", str(out), "--params",
                        os.path.join(ROOT, "examples", "params", "shanghai-merchant.json")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_mode & 0o077 == 0, oct(out.stat().st_mode)


def test_compiled_modules_are_named_by_their_dotted_name():
    # Tracebacks name a module as imported ("firmware.tap"): that qstr exists anyway, where a path
    # ("firmware/tap.py") would cost one more per module, and the board's qstr pools fill up (the
    # next one takes ~7 KB in one block: at 64K after a sale, commands then found no room).
    from roampos.image import compile_py
    root = os.path.join(os.path.dirname(__file__), "..")
    mpy = compile_py(os.path.join(root, "firmware", "tap.py"), "firmware/tap.py")
    assert b"firmware.tap" in mpy and b"firmware/tap.py" not in mpy
    pkg = compile_py(os.path.join(root, "firmware", "__init__.py"), "firmware/__init__.py")
    assert b"__init__" not in pkg
