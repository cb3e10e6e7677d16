"""Start and steer a `roampos vterm` process from Python (tests, bench, run)."""
import os
import signal
import subprocess
import sys
from typing import List, Optional

__all__ = ["VTermProcess"]


class VTermProcess:
    def __init__(self, flash: str, heap: str = "64K", fresh: bool = True,
                 params: Optional[str] = None, log: Optional[str] = None,
                 extra: Optional[List[str]] = None):
        cmd = [sys.executable, "-m", "roampos.cli", "vterm", "--flash", flash, "--heap", heap]
        if fresh:
            cmd.append("--fresh")
        if params:
            cmd += ["--params", params]
        if log:
            cmd += ["--log", log]
        cmd += extra or []
        self.flash = flash
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("console: "):
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.stop()
            raise RuntimeError("vterm did not start: %r %s" % (line, err))
        self.console = line.split(" ", 1)[1].strip()

    def power_cut(self) -> None:
        """SIGKILL the MicroPython process now; the vterm powers it on again."""
        os.kill(self.proc.pid, signal.SIGUSR1)

    def reset(self) -> None:
        os.kill(self.proc.pid, signal.SIGUSR2)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()

    def __enter__(self) -> "VTermProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
