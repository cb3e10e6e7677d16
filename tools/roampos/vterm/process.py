"""`roampos vterm`: run the firmware in the MicroPython unix port like a devboard.

The console is a pseudo-terminal that pyserial and mpremote open like a USB
serial port. The vterm relays it to the MicroPython process (which has a pty
of its own) and restarts that process whenever it ends, as a board reboots:
soft reset, machine reset, Ctrl-D in the raw REPL, a crash, or a power cut.

Signals to the vterm process: SIGUSR1 = power cut (SIGKILL of the MicroPython
process at this instant, then power on), SIGUSR2 = reset button,
SIGTERM/SIGINT = switch off and exit.
"""
import argparse
import hashlib
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tty
from typing import List, Optional

from roampos import ROOT
from roampos.image import CODE_DIRS, build, build_romfs, compile_py

__all__ = ["VirtualTerminal", "add_arguments", "run", "parse_size"]

LAUNCH = os.path.join(ROOT, "tools", "vterm", "launch.py")
DEFAULT_FLASH = os.path.join(ROOT, "build", "vterm-flash.img")  # its ROMFS is DEFAULT_FLASH + ".romfs"
VHW = os.path.join(ROOT, "tools", "vterm")
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
FRIENDLY_PROMPT = b"\r\n>>> "
CONSOLE_BACKLOG = 64 * 1024  # console output held for a reader that lags before the child waits


def parse_size(text: str) -> int:
    """'64K' -> 65536; the forms MicroPython's -X heapsize= accepts."""
    t = text.strip().upper()
    mult = {"K": 1024, "M": 1024 * 1024}.get(t[-1:], 1)
    digits = t[:-1] if t[-1:] in ("K", "M") else t
    if not digits.isdigit() or int(digits) * mult < 16 * 1024:
        raise argparse.ArgumentTypeError("heap size %r: give bytes, or K/M, at least 16K" % text)
    return int(digits) * mult


def heap_arg(text: str) -> str:
    parse_size(text)
    return text.strip().upper()


def compiled_vhw(cache: str = os.path.join(ROOT, "build", "vterm-vhw")) -> str:
    """The device models compiled to .mpy (as a board would have them frozen),
    so that compiling them does not churn the small heap at every boot."""
    src_root = os.path.join(VHW, "vhw")
    out_root = os.path.join(cache, "vhw")
    for dirpath, dirnames, filenames in os.walk(src_root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        rel = os.path.relpath(dirpath, src_root)
        os.makedirs(os.path.join(out_root, rel), exist_ok=True)
        for fn in filenames:
            src = os.path.join(dirpath, fn)
            if fn.endswith(".py"):
                dst = os.path.join(out_root, rel, fn[:-3] + ".mpy")
                if not os.path.exists(dst) or os.path.getmtime(dst) < os.path.getmtime(src):
                    data = compile_py(src, "vhw/" + os.path.normpath(os.path.join(rel, fn)))
                    tmp = dst + ".%d" % os.getpid()
                    with open(tmp, "wb") as f:
                        f.write(data)
                    os.replace(tmp, dst)  # parallel vterms may compile at once
    # The vterm's `machine` (tools/vterm/machine.py: the built-in one plus reset), beside vhw.
    src, dst = os.path.join(VHW, "machine.py"), os.path.join(cache, "machine.mpy")
    if not os.path.exists(dst) or os.path.getmtime(dst) < os.path.getmtime(src):
        tmp = dst + ".%d" % os.getpid()
        with open(tmp, "wb") as f:
            f.write(compile_py(src, "machine.py"))
        os.replace(tmp, dst)
    # Drop compiled modules whose source is gone.
    for dirpath, _, filenames in os.walk(out_root):
        for fn in filenames:
            rel = os.path.relpath(os.path.join(dirpath, fn[:-4] + ".py"), out_root)
            if fn.endswith(".mpy") and not os.path.exists(os.path.join(src_root, rel)):
                os.unlink(os.path.join(dirpath, fn))
    return cache


def romfs_path(flash: str) -> str:
    """The vterm's second flash region, next to its littlefs image."""
    return flash + ".romfs"


def _code_state(tops: List[str]) -> str:
    """What the ROMFS was built from: every code file's path, size and mtime. A deleted, renamed or
    restored file (branch switch) changes it, not only a newer edit."""
    h = hashlib.sha256()
    for top in tops:
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for fn in sorted(filenames):
                if fn.endswith((".py", ".json")):
                    st = os.stat(os.path.join(dirpath, fn))
                    h.update(f"{os.path.join(dirpath, fn)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def ensure_romfs(flash: str, fresh: bool = False) -> str:
    """(Re)build the ROMFS image of the code (firmware/, drivers/, lib/ and the
    device models, compiled) when asked, when missing, or when the tree's code
    is newer than it, so code edits take effect at the next vterm start."""
    rom = romfs_path(flash)
    vhw = compiled_vhw()
    state = _code_state([os.path.join(ROOT, d) for d in CODE_DIRS] + [os.path.join(VHW, "vhw")])
    st = os.stat(os.path.join(VHW, "machine.py"))
    state += "%d:%d" % (st.st_size, st.st_mtime_ns)
    stamp = rom + ".src"
    if not fresh and os.path.exists(rom) and os.path.exists(stamp):
        with open(stamp) as fh:
            if fh.read() == state:
                return rom
    build_romfs(rom, "vterm", extra=vhw)
    with open(stamp, "w") as fh:
        fh.write(state)
    return rom


def micropython_command(rom: Optional[str], heap: str) -> List[str]:
    """The unix port, in our wrapper that maps the ROMFS outside the heap."""
    cmd = [sys.executable, "-m", "roampos.vterm.mp"]
    if rom:
        cmd += ["--rom", rom]
    return cmd + ["-X", "heapsize=" + heap]


def micropython_binary() -> str:
    here = os.path.join(os.path.dirname(sys.executable), "micropython")
    return here if os.path.exists(here) else (shutil.which("micropython") or "micropython")


class VirtualTerminal:
    def __init__(self, flash: str, heap: str = "64K", log: Optional[str] = None,
                 rom: Optional[str] = None):
        self.flash = os.path.abspath(flash)   # the child runs in a temporary directory
        self.rom = os.path.abspath(rom) if rom else None  # the ROMFS image, or None: code from the littlefs only
        self.heap = heap
        self.con_master, self.con_slave = os.openpty()
        tty.setraw(self.con_slave)  # no echo, no CR/LF mangling, Ctrl-C is a byte
        self.console = os.ttyname(self.con_slave)
        # Output nobody reads fills the pty (~4 KB): a blocking write there would stop the loop,
        # and with it signals (SIGTERM, power cut). It waits in to_console instead.
        os.set_blocking(self.con_master, False)
        self.to_console = bytearray()
        self.tmp = tempfile.mkdtemp(prefix="roampos-vterm-")
        self.ctrl_path = os.path.join(self.tmp, "ctrl")
        os.mkfifo(self.ctrl_path)
        # Open read+write so the FIFO never reports EOF between writers.
        self.ctrl_fd = os.open(self.ctrl_path, os.O_RDWR | os.O_NONBLOCK)
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.child: Optional[subprocess.Popen] = None
        self.mp_master = -1
        self.pending = []          # signals to handle in the loop
        self.to_child = bytearray()  # console input waiting for the child
        self.raw_mode = False      # the child's REPL is in raw mode
        self.swallow = None        # output held back while re-entering raw mode
        self.swallow_deadline = 0.0
        self.sent_ctrl_a = False
        self.stopping = False
        self.log = open(log, "ab") if log else None
        self.boots = 0
        self.vhw = None if rom else compiled_vhw()  # the ROMFS holds the models
        from .hw import Hardware
        self.hw = Hardware(self.tmp)  # the device models, behind the firmware's buses
        if self.log:  # a frame no model could take (a firmware or model bug) shows in the log
            self.hw.log = lambda text: self.write_log(("\r\n[%s]\r\n" % text).encode())

    def cleanup(self) -> None:
        """Switched off: the control FIFO, the bus socket and the shared page go with the vterm."""
        self.hw.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write_log(self, data: bytes) -> None:
        if self.log:
            self.log.write(data)
            self.log.flush()

    # -- child process ---------------------------------------------------
    def start_child(self, no_main: bool = False) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        env = dict(os.environ, ROAMPOS_FLASH=os.path.abspath(self.flash),
                   ROAMPOS_CTRL=self.ctrl_path)
        for k in ("ROAMPOS_NO_MAIN", "ROAMPOS_VHW", "ROAMPOS_ROM", "ROAMPOS_HWMEM"):
            env.pop(k, None)
        env.update(self.hw.env())
        if self.vhw:
            env["ROAMPOS_VHW"] = self.vhw
        if no_main:
            env["ROAMPOS_NO_MAIN"] = "1"
        cmd = micropython_command(self.rom, self.heap) + ["-i", LAUNCH]
        self.child = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave,
                                      cwd=self.tmp, env=env, start_new_session=True)
        os.close(slave)
        self.mp_master = master
        self.started_at = time.monotonic()
        self.boots += 1

    def kill_child(self) -> None:
        if self.child and self.child.poll() is None:
            self.child.kill()
            self.child.wait()
        self.close_child_pty()

    def close_child_pty(self) -> None:
        if self.mp_master >= 0:
            try:
                while select.select([self.mp_master], [], [], 0)[0]:
                    data = os.read(self.mp_master, 4096)
                    if not data:
                        break
                    self.from_child(data)
            except OSError:
                pass
            os.close(self.mp_master)
            self.mp_master = -1

    def child_ended(self) -> None:
        # The process ended by itself: a soft reset, Ctrl-D, a crash.
        rc = self.child.wait()
        lived = time.monotonic() - self.started_at
        self.close_child_pty()
        if self.stopping:
            return
        if rc == 0 and self.raw_mode:
            # mpremote's soft reset in the raw REPL: a board prints "soft
            # reboot", runs boot.py but not main.py, and stays in raw mode.
            self.write_console(b"soft reboot\r\n")
            self.swallow = bytearray()
            self.sent_ctrl_a = False
            self.swallow_deadline = time.monotonic() + 10
            self.start_child(no_main=True)
            return
        if rc != 0 and lived < 0.5:
            time.sleep(1.0)  # a crash loop must not spin the host
        self.raw_mode = False
        self.start_child()

    def power_cycle(self, why: str) -> None:
        print("vterm: %s" % why, file=sys.stderr, flush=True)
        self.kill_child()
        self.raw_mode = False
        self.swallow = None
        self.start_child()

    # -- relay --------------------------------------------------------------
    def write_console(self, data: bytes) -> None:
        self.write_log(data)
        self.to_console += data
        self.flush_to_console()

    def flush_to_console(self) -> None:
        # As much as the pty takes now; the rest goes when the reader catches up (serve() stops
        # reading the child meanwhile, so it waits on its output as on a slow UART).
        while self.to_console:
            try:
                n = os.write(self.con_master, self.to_console)
            except (BlockingIOError, OSError):
                return
            del self.to_console[:n]

    def from_child(self, data: bytes) -> None:
        if self.swallow is not None:
            self.swallow += data
            if not self.sent_ctrl_a and FRIENDLY_PROMPT in self.swallow:
                os.write(self.mp_master, b"\x01")  # into the raw REPL again
                self.sent_ctrl_a = True
            i = self.swallow.find(RAW_BANNER)
            if i < 0 and time.monotonic() <= self.swallow_deadline:
                return
            data, self.swallow = bytes(self.swallow[max(i, 0):]), None
        if RAW_BANNER in data:
            self.raw_mode = True
        elif FRIENDLY_PROMPT in data or b"Type \"help()\"" in data:
            self.raw_mode = False
        self.write_console(data)

    def flush_to_child(self) -> None:
        if self.to_child and self.mp_master >= 0 and self.swallow is None:
            try:
                n = os.write(self.mp_master, self.to_child)
                del self.to_child[:n]
            except (BlockingIOError, OSError):
                pass

    def on_signal(self, signum, frame) -> None:
        self.pending.append(signum)
        try:
            os.write(self.wake_w, b"x")
        except OSError:
            pass

    def serve(self) -> int:
        for s in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, self.on_signal)
        self.start_child()
        print("console: %s" % self.console, flush=True)
        while True:
            while self.pending:
                s = self.pending.pop(0)
                if s == signal.SIGUSR1:
                    self.power_cycle("power cut")
                elif s == signal.SIGUSR2:
                    self.power_cycle("reset")
                else:
                    self.stopping = True
                    self.kill_child()
                    self.cleanup()
                    return 0
            fds = [self.con_master, self.ctrl_fd, self.wake_r]
            if self.mp_master >= 0 and len(self.to_console) < CONSOLE_BACKLOG:
                fds.append(self.mp_master)
            wfds = [self.mp_master] if self.to_child and self.mp_master >= 0 else []
            if self.to_console:
                wfds.append(self.con_master)
            try:
                r, w, _ = select.select(fds, wfds, [], 0.2)
            except InterruptedError:
                continue
            if self.wake_r in r:
                os.read(self.wake_r, 64)
            if self.con_master in r:
                try:
                    self.to_child += os.read(self.con_master, 4096)
                except OSError:
                    pass
            if self.ctrl_fd in r:
                try:
                    req = os.read(self.ctrl_fd, 256)
                except BlockingIOError:
                    req = b""
                if b"reset" in req:
                    self.power_cycle("reset by firmware")
                    continue
            if self.mp_master >= 0 and self.mp_master in r:
                try:
                    data = os.read(self.mp_master, 4096)
                except OSError:
                    data = b""
                if data:
                    self.from_child(data)
                else:  # EIO: the process is gone or going
                    try:
                        self.child.wait(timeout=2)
                    except subprocess.TimeoutExpired:
                        pass
            if self.child is not None and self.child.poll() is not None and self.mp_master >= 0:
                self.child_ended()
            elif self.swallow is not None and time.monotonic() > self.swallow_deadline:
                self.from_child(b"")
            self.flush_to_child()
            self.flush_to_console()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--flash", default=DEFAULT_FLASH,
                   help="littlefs2 flash image (built from the tree when missing)")
    # 128K as `make run` and the tests: provisioning a 64-bit vterm needs more than the 64K the
    # firmware boots and serves in (`--heap 64K` for that budget).
    p.add_argument("--heap", default="128K", type=heap_arg, help="MicroPython heap, e.g. 64K (default 128K)")
    p.add_argument("--fresh", action="store_true", help="rebuild the flash images first")
    p.add_argument("--no-romfs", action="store_true",
                   help="no ROMFS: the code goes into the littlefs image and runs from the heap")
    p.add_argument("--params", help="with a new image: parameter set to bake in")
    p.add_argument("--log", help="append all console output to this file")


def run(args: argparse.Namespace) -> int:
    if args.params and (args.fresh or not os.path.exists(args.flash)):
        # Checked before anything is built: a bad set is one line, and leaves no half-made images.
        from roampos.provision import ProvisionError, load_set, validate
        try:
            validate(load_set(args.params), args.params)
        except ProvisionError as e:
            print("vterm: parameter set %s" % e, file=sys.stderr)
            return 1
    rom = None if args.no_romfs else ensure_romfs(args.flash, args.fresh)
    if args.fresh or not os.path.exists(args.flash):
        build(args.flash, "vterm", params=args.params, code=rom is None)
    return VirtualTerminal(args.flash, args.heap, args.log, rom).serve()
