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
from roampos.vterm.process import DEFAULT_FLASH

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--flash", default=DEFAULT_FLASH)
    p.add_argument("--heap", default="128K")
    p.add_argument("--fresh", action="store_true", help="rebuild the flash image from the tree")
    p.add_argument("--params", default=os.path.join(ROOT, "examples", "params", "shanghai-merchant.json"),
                   help="parameter set baked into a new image")
    p.add_argument("--no-host", action="store_true", help="the terminal alone")
    p.add_argument("--db", default=os.path.join(ROOT, "build", "roampos-host.db"))
    p.add_argument("--broker-port", type=int, default=18830, help="the embedded broker's port")


def register_terminal(db_url: str, params_path: str) -> None:
    """Register the parameter set's terminal and its region grants with the
    host, as the acquirer does before it ships a terminal."""
    import json
    with open(params_path) as f:
        p = json.load(f)
    m = p["merchant"]
    cli = [sys.executable, "-m", "roampos.cli", "terminal", "--db", db_url]
    out = subprocess.run(cli + ["list"], capture_output=True, text=True)
    if m["terminal_id"] in out.stdout:
        return
    subprocess.run(cli + ["add", m["terminal_id"], "--serial", m["serial"],
                          "--merchant", m["id"], "--merchant-name", m.get("name") or m["id"],
                          "--acquirer", m["acquirer"], "--account", "demo-settlement-account",
                          "--home-region", m["home_region"],
                          # The TMK a real acquirer injects into the terminal; kept beside the ledger.
                          "--tmk-file", os.path.join(os.path.dirname(db_url[len("sqlite:///"):]),
                                                     m["terminal_id"] + ".tmk")],
                   check=True, capture_output=True)
    for g in p.get("authorized", []):
        subprocess.run(cli + ["grant-region", m["terminal_id"], g["region"],
                              "--from", g["from"], "--to", g["to"]], check=True, capture_output=True)
    print("run: registered terminal %s (merchant %s) with the host" % (m["terminal_id"], m["id"]))


def start_host(db: str, port: int, log: str) -> "subprocess.Popen[str]":
    # The host's log goes to a file so that it does not run over the prompt.
    os.makedirs(os.path.dirname(os.path.abspath(db)), exist_ok=True)
    out = open(log, "a")
    return subprocess.Popen([sys.executable, "-m", "roampos.cli", "host", "--db", "sqlite:///" + db,
                             "--port", str(port)], stdout=out, stderr=out, text=True)


def run(args: argparse.Namespace) -> int:
    host = None
    if not args.no_host:
        if os.path.exists(args.params):
            register_terminal("sqlite:///" + args.db, args.params)
        log = os.path.splitext(args.db)[0] + ".log"
        host = start_host(args.db, args.broker_port, log)
        print("host: embedded MQTT broker on 127.0.0.1:%d, ledger %s, log %s"
              % (args.broker_port, args.db, log))
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
