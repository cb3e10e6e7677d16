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

__all__ = ["deploy", "main", "DeployError"]


class DeployError(SystemExit):
    """One line for the user (and exit status 1)."""


def mpremote(port: str, *args: str, timeout: float = 300, then: str = "") -> None:
    """Run one mpremote command; `then` says what state a failure leaves the board in."""
    cmd = [sys.executable, "-m", "mpremote", "connect", port, *args]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DeployError("deploy: %s did not answer within %.0f s (%s)%s"
                          % (port, timeout, " ".join(args[:3]), then)) from None
    if r.returncode:
        raise DeployError("deploy: %s failed:\n%s%s%s" % (" ".join(args[:4]), r.stdout, r.stderr, then))


# Runs on the board. The new tree is copied into /.deploy first, next to the running one, and only
# then swapped in, so that a copy that fails (a full flash, a pulled cable) leaves the old
# application whole. The old entries (firmware/, drivers/, boot.py, main.py; lib/<pkg> with
# --offline) go just before their replacements: a module dropped from the tree, or one shipped the
# other way (.py beside .mpy, which the import prefers), must not outlive the deploy.
_BOARD_FS = """
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
def swap(new, old):
    for name in os.listdir(new):
        if name == 'lib':
            try:
                os.mkdir(old + '/lib')
            except OSError:
                pass
            swap(new + '/lib', old + '/lib')
            continue
        rm(old + '/' + name)
        os.rename(new + '/' + name, old + '/' + name)
    os.rmdir(new)
"""
STAGE = "/.deploy"
FIRST_CONTACT_S = 30   # a port where no MicroPython answers is reported, not waited on for minutes


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
        kept = "; the board keeps its old application (stopped at the REPL until a reset)"
        # Ctrl-C first (mpremote does) so the app stops and the REPL serves; a stage left by an
        # interrupted deploy is cleared.
        mpremote(port, "exec", _BOARD_FS + "rm(%r)\nos.mkdir(%r)" % (STAGE, STAGE),
                 timeout=FIRST_CONTACT_S, then=kept)
        mpremote(port, "resume", "fs", "cp", "-r", *tops, ":" + STAGE,
                 then=kept + " (a partial copy waits in %s; the next deploy clears it)" % STAGE)
        mpremote(port, "resume", "exec", _BOARD_FS + "swap(%r, '')" % STAGE,
                 then="; the swap stopped half-way: the board may not start, rerun deploy")
        restart = "; rerun deploy (--offline installs the copy `make setup` fetched), then reset the board"
        for dep in ([] if offline else deps):
            mpremote(port, "resume", "mip", "install", dep,
                     then="; the new tree is in place but %s is missing%s" % (dep, restart))
        # Start what was just copied, as a power cycle would (the board's own reset line).
        mpremote(port, "resume", "exec", "--no-follow", "from firmware import boards; boards.get().reset()",
                 timeout=FIRST_CONTACT_S)
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
