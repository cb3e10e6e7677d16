"""Boot the firmware once on a 32-bit MicroPython and report its heap at ready.

    python -m roampos.vterm.wasm32                   # boot, print the figures
    python -m roampos.vterm.wasm32 --install         # fetch the port (make setup does)

The vterm runs the 64-bit unix port (the only one on PyPI), where every object
and pointer takes twice the room it takes on an ESP32-S3 or RP2040. This runs
the same ROMFS (firmware, drivers, lib and the device models' bus module) and
the same flash files, through boot.py, main.py and app._run up to the ready
event, on MicroPython's WebAssembly port (wasm32: 4-byte pointers), with the
vterm's device models (roampos.vterm.hw) on the buses, and returns that event
with the port's own share (see tools/vterm/wasm32/launch.py) beside it.
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from typing import Dict

from roampos import ROOT
from roampos.image import compile_py, tree_files
from roampos.vterm.process import DEFAULT_FLASH, ensure_romfs

__all__ = ["PACKAGE", "install", "node", "package_dir", "boot"]

# MicroPython 1.29.0 built for WebAssembly (the PyScript variant: it has
# vfs.VfsRom, framebuf, uctypes, asyncio). Pinned like requirements.txt.
PACKAGE = "@micropython/micropython-webassembly-pyscript@1.29.0-6"
PREFIX = os.path.join(ROOT, ".venv", "wasm32")
SRC = os.path.join(ROOT, "tools", "vterm", "wasm32")
# The port's first heap area. It adds areas as it needs them (its GC heap is
# split and grows), so this is no budget: the figures do not depend on it.
HEAP = 64 * 1024


def package_dir() -> str:
    return os.path.join(PREFIX, "node_modules", PACKAGE.rsplit("@", 1)[0])


def node() -> str:
    """The node binary, or SystemExit saying how to get it."""
    path = shutil.which("node")
    if path is None:
        raise SystemExit("wasm32: node is missing (make setup installs nodejs and npm as root)")
    return path


def install() -> str:
    """npm-install the port into .venv/wasm32 unless it is there (npm's own registry setting)."""
    d = package_dir()
    if not os.path.exists(os.path.join(d, "micropython.mjs")):
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit("wasm32: npm is missing (make setup installs nodejs and npm as root)")
        os.makedirs(PREFIX, exist_ok=True)
        subprocess.run([npm, "install", "--prefix", PREFIX, "--no-save", "--no-audit", "--no-fund",
                        "--loglevel=error", PACKAGE], check=True)
    return d


def _flash_dir(d: str) -> str:
    # The flash partition's files as the vterm's image holds them with a ROMFS.
    root = os.path.join(d, "flash")
    for path, data in tree_files(code=False):
        full = root + path
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)
    os.makedirs(os.path.join(root, "data"), exist_ok=True)
    return root


def _launch_dir(d: str) -> str:
    # launch.py as source (the port compiles it, like the unix launcher);
    # the socket module compiled, as the rest of the code is.
    out = os.path.join(d, "wasm")
    os.makedirs(out)
    shutil.copy(os.path.join(SRC, "launch.py"), out)
    with open(os.path.join(out, "socket.mpy"), "wb") as f:
        f.write(compile_py(os.path.join(SRC, "socket.py"), "wasm32/socket.py"))
    return out


def boot(timeout: float = 60) -> Dict[str, dict]:
    """One boot to ready. Returns {"port": PORT line, "ready": ready event, "models": what the
    device models saw (display on, lit pixels, bus errors)}."""
    from roampos.vterm.hw import Hardware

    exe = node()
    pkg = install()
    # The vterm's ROMFS, rebuilt only when the code is newer (as `roampos vterm` does).
    rom = ensure_romfs(DEFAULT_FLASH)
    with tempfile.TemporaryDirectory(prefix="roampos-wasm32-") as d:
        hw = Hardware(d)
        bus = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            bus.connect(hw.path)
            env = dict(os.environ, ROAMPOS_HWFD=str(bus.fileno()), **hw.env())
            r = subprocess.run([exe, os.path.join(SRC, "run.mjs"), pkg, rom, _flash_dir(d), _launch_dir(d),
                                str(HEAP)],
                               env=env, pass_fds=(bus.fileno(),), capture_output=True, text=True,
                               timeout=timeout)
            b = hw.board  # what the drivers did to the device models (None: never connected)
            models = {"display_on": bool(b and b.oled.on),
                      "lit_pixels": sum(bin(x).count("1") for x in b.oled.visible()) if b else 0,
                      "bus_errors": hw.errors}
        finally:
            bus.close()
            hw.close()
    out = {"models": models}
    for line in r.stdout.splitlines():
        if line.startswith("PORT "):
            out["port"] = json.loads(line[5:])
        elif line.startswith("EVT ") and '"ready"' in line:
            out["ready"] = json.loads(line[4:])
    if r.returncode or "ready" not in out or "port" not in out:
        raise RuntimeError("wasm32 boot failed (exit %d):\n%s\n%s" % (r.returncode, r.stdout[-3000:],
                                                                      r.stderr[-3000:]))
    return out


def firmware_share(fig: Dict[str, dict]) -> int:
    """Heap in use at ready less the simulated buses and the port's Python stdlib."""
    return fig["ready"]["heap_used"] - fig["ready"].get("heap_models", 0) - fig["port"]["stdlib"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m roampos.vterm.wasm32", description=__doc__.split("\n")[0])
    p.add_argument("--install", action="store_true", help="only install the port")
    a = p.parse_args(argv)
    if a.install:
        print(install())
        return 0
    fig = boot()
    ev, port = fig["ready"], fig["port"]
    print("32-bit MicroPython (WebAssembly port, %d-byte pointers), at the ready event:" % port["pointer_bytes"])
    rows = [
        ("heap in use", ev["heap_used"]),
        ("  simulated buses (vhw.wire and its socket)", ev.get("heap_models", 0)),
        ("  port's Python stdlib (os time io binascii collections; C on a board)", port["stdlib"]),
        ("  firmware's share (the rest)", firmware_share(fig)),
        ("    of which the port's asyncio (a board's is frozen too)", port["asyncio"]),
    ]
    for name, v in rows:
        print("%-72s %6d B  %5.1f KB" % (name, v, v / 1024))
    return 0


if __name__ == "__main__":
    sys.exit(main())
