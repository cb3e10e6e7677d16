"""`roampos run` (`make run`): a virtual terminal with its acquirer host, on
embedded defaults (the host's own MQTT broker and a SQLite ledger), and a
prompt that sends what you type to the terminal's console.

    roampos> status
    OK {"version": "0.1.0", "board": "vterm", ...}

Other programs (mpremote, pyserial, `roampos provision`) can use the console
path printed at start; type `quit` (or Ctrl-D) to stop everything.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

import serial

from roampos import ROOT
from roampos.host.db import sqlite_path
from roampos.console_client import Console, ExpectTimeout
from roampos.provision import ProvisionError
from roampos.vterm.control import VTermProcess
from roampos.vterm.process import DEFAULT_FLASH, heap_arg

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--flash", default=DEFAULT_FLASH)
    p.add_argument("--heap", default="128K", type=heap_arg, help="MicroPython heap, e.g. 128K")
    p.add_argument("--fresh", action="store_true", help="rebuild the flash image from the tree")
    p.add_argument("--params", default=os.path.join(ROOT, "examples", "params", "shanghai-merchant.json"),
                   help="parameter set baked into a new image")
    p.add_argument("--no-host", action="store_true", help="the terminal alone")
    p.add_argument("--db", default=os.path.join(ROOT, "build", "roampos-host.db"))
    p.add_argument("--broker-port", type=int, default=18830, help="the embedded broker's port")


def register_terminal(db_url: str, params_path: str) -> None:
    """Register the parameter set's terminal and its region grants with the
    host, as the acquirer does before it ships a terminal; on later runs only
    the grants are applied again (the set may have new ones)."""
    import json
    with open(params_path) as f:
        p = json.load(f)
    m = p["merchant"]
    cli = [sys.executable, "-m", "roampos.cli", "terminal", "--db", db_url]

    def call(*args: str) -> "subprocess.CompletedProcess[str]":
        r = subprocess.run(cli + list(args), capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError("roampos terminal %s: %s" % (args[0], (r.stderr or r.stdout).strip()))
        return r

    # A new ledger (a fresh clone) has no terminals yet; `list` refuses a ledger that is not there.
    known = {t["terminal_id"] for t in json.loads(call("list", "--json").stdout or "[]")} \
        if os.path.exists(sqlite_path(db_url)) else set()
    if m["terminal_id"] not in known:
        call("add", m["terminal_id"], "--serial", m["serial"],
             "--merchant", m["id"], "--merchant-name", m.get("name") or m["id"],
             "--acquirer", m["acquirer"], "--account", "demo-settlement-account",
             "--home-region", m["home_region"],
             # The TMK a real acquirer injects into the terminal; kept beside the ledger.
             "--tmk-file", os.path.join(os.path.dirname(sqlite_path(db_url)), m["terminal_id"] + ".tmk"))
        print("run: registered terminal %s (merchant %s) with the host" % (m["terminal_id"], m["id"]))
    for g in p.get("authorized", []):
        call("grant-region", m["terminal_id"], g["region"], "--from", g["from"], "--to", g["to"])


def start_host(db: str, port: int, log: str) -> "subprocess.Popen[str]":
    # The host's log goes to a file so that it does not run over the prompt.
    os.makedirs(os.path.dirname(os.path.abspath(db)), exist_ok=True)
    out = open(log, "a")
    return subprocess.Popen([sys.executable, "-m", "roampos.cli", "host", "--db", "sqlite:///" + db,
                             "--port", str(port)], stdout=out, stderr=out, text=True)


def _host_up(host: "subprocess.Popen[str]", log: str, since: int, timeout: float = 60) -> None:
    """Return once the host says it is ready in its log (past offset `since`): a port that merely
    accepts connections may be someone else's. Raise with the log's last line if it died."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with open(log, errors="replace") as fh:
            fh.seek(since)
            text = fh.read()
        if "roampos host ready" in text:
            return
        if host.poll() is not None:
            last = ([ln.strip() for ln in text.splitlines() if ln.strip()] or ["(no log)"])[-1]
            raise RuntimeError("the host exited (%s): %s" % (host.returncode, last))
        time.sleep(0.1)
    raise RuntimeError("the host did not get ready within %.0f s (log %s)" % (timeout, log))


def run(args: argparse.Namespace) -> int:
    # SIGTERM/SIGHUP (a background `run` stopped with kill, a closed terminal) end it like `quit`:
    # the finally below stops the terminal and the host instead of leaving them running.
    def stop(signum, frame):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    host = vt = con = None
    try:
        try:
            if os.path.exists(args.params):
                # The set is baked into the terminal and registered with the host: checked first,
                # so that a bad one is one line, not a traceback from either.
                from roampos.provision import load_set, validate
                validate(load_set(args.params), args.params)
            if not args.no_host:
                # The ledger's folder (build/ by default) is not in a fresh clone: make it before the
                # terminal is registered there.
                os.makedirs(os.path.dirname(os.path.abspath(args.db)), exist_ok=True)
                if os.path.exists(args.params):
                    register_terminal("sqlite:///" + args.db, args.params)
                log = os.path.splitext(args.db)[0] + ".log"
                since = os.path.getsize(log) if os.path.exists(log) else 0
                host = start_host(args.db, args.broker_port, log)
                _host_up(host, log, since)
                print("host: embedded MQTT broker on 127.0.0.1:%d, ledger %s, log %s"
                      % (args.broker_port, args.db, log))
            fresh = args.fresh or not os.path.exists(args.flash)
            params = args.params if fresh and os.path.exists(args.params) else None
            vt = VTermProcess(args.flash, heap=args.heap, fresh=fresh, params=params)
            con = Console(vt.console)
        except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
            print("run: %s" % exc, file=sys.stderr)
            return 1
        except ProvisionError as exc:
            print("run: parameter set %s" % exc, file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        try:
            return _serve(vt, con)
        except KeyboardInterrupt:  # a signal while serving in the background
            return 0
    finally:
        if con is not None:
            con.close()
        if vt is not None:
            vt.stop()
        if host is not None:
            host.terminate()
            try:
                host.wait(10)
            except subprocess.TimeoutExpired:
                host.kill()


def _serve(vt: VTermProcess, con: Console) -> int:
    """The prompt: console commands until quit, EOF or a signal. Events (a key, a card, a sale)
    are shown as they arrive, not only with the next command's reply."""
    print("console: %s" % vt.console)
    try:
        con.wait_ready(15)
        print("terminal ready; type a console command (help, status, ...), quit to stop")
    except ExpectTimeout as e:
        print("terminal did not report ready: %s" % e)
    interactive = sys.stdin.isatty()
    prompt = "roampos> " if interactive else ""
    if interactive:
        try:
            import readline  # noqa: F401  line editing and history for input()
        except ImportError:
            pass
    busy = threading.Lock()     # held while a command waits for its reply
    done = threading.Event()
    shower = threading.Thread(target=_show_events, args=(con, busy, done, prompt), daemon=True)
    shower.start()
    try:
        while True:
            try:
                line = input(prompt)
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
            with busy:
                try:
                    print(con.command(line, timeout=30).raw)
                except ExpectTimeout as e:
                    print(str(e))
                except (OSError, serial.SerialException):   # the vterm went away (killed, crashed)
                    print("run: the terminal is gone (%s)" % ("exited" if not vt.alive() else "port error"))
                    return 1
                for ev in con.take_events():  # those that came with the reply
                    print(_evt(ev))
    finally:
        done.set()
    return 0


def _evt(ev: dict) -> str:
    return "EVT " + json.dumps(ev, ensure_ascii=False)  # as the console sent it


def _show_events(con: Console, busy: threading.Lock, done: threading.Event, prompt: str) -> None:
    """Print events that arrive between commands above the prompt, keeping what is being typed."""
    while not done.wait(0.2):
        with busy:
            events = con.take_events()
        if not events:
            continue
        typed = ""
        if prompt:
            try:
                import readline
                typed = readline.get_line_buffer()
            except ImportError:
                pass
        text = "".join(_evt(ev) + "\n" for ev in events)
        sys.stdout.write(("\r\x1b[K" if prompt else "") + text + prompt + typed)
        sys.stdout.flush()
