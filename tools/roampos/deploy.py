"""Deploy the firmware tree to a board (or a vterm) over its serial port with mpremote.

    python -m roampos.deploy --port /dev/ttyACM0 [--offline] [--source]

Copies boot.py, main.py and firmware/, drivers/ compiled to .mpy (as the
factory image holds them), then installs the board-side dependencies that
package.json declares with `mpremote mip install` (from micropython-lib's
index), or, with --offline, the copy of umqtt.simple that `make setup` fetched.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

from roampos import ROOT
from roampos.image import BOARDS, tree_files

__all__ = ["deploy", "main"]


def mpremote(port: str, *args: str) -> None:
    cmd = [sys.executable, "-m", "mpremote", "connect", port, *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if r.returncode:
        raise SystemExit("deploy: %s failed:\n%s%s" % (" ".join(args[:4]), r.stdout, r.stderr))


# Runs on the board: remove the given directories of the flash filesystem, recursively.
_REMOVE_TREES = """
import os
def rm(p):
    try:
        mode = os.stat(p)[0]
    except OSError:
        return
    if mode & 0x4000:
        for name in os.listdir(p):
            rm(p + '/' + name)
        os.rmdir(p)
    else:
        os.remove(p)
for d in %r:
    rm('/' + d)
"""


def deploy(port: str, offline: bool = False, source: bool = False) -> int:
    with open(os.path.join(ROOT, "package.json")) as f:
        deps = [name for name, _ in json.load(f).get("deps", [])]
    stage = tempfile.mkdtemp(prefix="roampos-deploy-")
    try:
        n = 0
        for path, data in tree_files(source=source):
            if path.startswith("/lib/") and not offline:
                continue  # mip brings the dependencies
            dest = os.path.join(stage, path.lstrip("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as f:
                f.write(data)
            n += 1
        tops = sorted(os.path.join(stage, e) for e in os.listdir(stage))
        # Ctrl-C first (mpremote does) so the app stops and the REPL serves. The old code trees go
        # first: a module dropped from the tree, or one shipped the other way (.py beside .mpy,
        # which the import prefers), must not outlive the deploy.
        mpremote(port, "exec", _REMOVE_TREES % (("firmware", "drivers") + (("lib/umqtt",) if offline else ()),))
        mpremote(port, "resume", "fs", "cp", "-r", *tops, ":")
        if not offline:
            for dep in deps:
                mpremote(port, "resume", "mip", "install", dep)
        # Start what was just copied, as a power cycle would (the board's own reset line).
        mpremote(port, "resume", "exec", "--no-follow", "from firmware import boards; boards.get().reset()")
        print("deploy: %d files to %s%s; the board restarts" % (n, port, "" if offline else ", then mip: " + " ".join(deps)))
        return n
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m roampos.deploy", description=__doc__.split("\n")[0])
    p.add_argument("--port", required=True)
    p.add_argument("--board", default="esp32s3", choices=sorted(BOARDS), help="for the record; the tree is the same")
    p.add_argument("--offline", action="store_true", help="copy lib/umqtt from setup instead of mip")
    p.add_argument("--source", action="store_true", help="copy .py sources instead of .mpy")
    a = p.parse_args(argv)
    deploy(a.port, a.offline, a.source)
    return 0


if __name__ == "__main__":
    sys.exit(main())
