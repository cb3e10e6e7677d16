"""`roampos run` (`make run`): a virtual terminal with its acquirer host, on
embedded defaults (the host's own MQTT broker and a SQLite ledger), and a
prompt that sends what you type to the terminal's console.

    roampos> status
    OK {"version": "0.1.0", "board": "vterm", ...}

Other programs (mpremote, pyserial, `roampos provision`) can use the console
path printed at start; type `quit` (or Ctrl-D) to stop everything.
"""
import argparse
import os
import subprocess
import sys
import time

from roampos import ROOT
from roampos.console_client import Console, ExpectTimeout
from roampos.vterm.control import VTermProcess

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--flash", default=os.path.join(ROOT, "build", "vterm-flash.img"))
    p.add_argument("--heap", default="128K")
    p.add_argument("--fresh", action="store_true", help="rebuild the flash image from the tree")
    p.add_argument("--params", default=os.path.join(ROOT, "examples", "params", "shanghai-merchant.json"),
                   help="parameter set baked into a new image")
    p.add_argument("--no-host", action="store_true", help="the terminal alone")
    p.add_argument("--db", default=os.path.join(ROOT, "build", "roampos-host.db"))


def start_host(db: str) -> "subprocess.Popen[str]":
    os.makedirs(os.path.dirname(db), exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "roampos.cli", "host", "--db", "sqlite:///" + db],
                            stdout=sys.stderr, stderr=sys.stderr, text=True)


def run(args: argparse.Namespace) -> int:
    host = None
    if not args.no_host:
        try:
            import roampos.host.service  # noqa: F401  (present once the host is built)
            host = start_host(args.db)
        except ImportError:
            print("run: no acquirer host in this tree; the terminal runs alone", file=sys.stderr)
    fresh = args.fresh or not os.path.exists(args.flash)
    params = args.params if fresh and os.path.exists(args.params) else None
    vt = VTermProcess(args.flash, heap=args.heap, fresh=fresh, params=params)
    con = Console(vt.console)
    try:
        print("console: %s" % vt.console)
        try:
            con.wait_ready(15)
            print("terminal ready; type a console command (help, status, ...), quit to stop")
        except ExpectTimeout as e:
            print("terminal did not report ready: %s" % e)
        interactive = sys.stdin.isatty()
        while True:
            try:
                line = input("roampos> " if interactive else "")
            except EOFError:
                if not interactive:  # started in the background: serve until stopped
                    while vt.alive():
                        time.sleep(1)
                break
            except KeyboardInterrupt:
                print()
                break
            line = line.strip()
            if line in ("quit", "exit"):
                break
            if not line:
                continue
            for ev in con.events:
                print("EVT", ev)
            con.events.clear()
            try:
                print(con.command(line, timeout=30).raw)
            except ExpectTimeout as e:
                print(str(e))
        return 0
    finally:
        con.close()
        vt.stop()
        if host is not None:
            host.terminate()
            try:
                host.wait(10)
            except subprocess.TimeoutExpired:
                host.kill()
