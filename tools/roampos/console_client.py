"""Talk to a terminal's serial console (a board's USB port or a vterm's pty).

One command a line, one reply a line: `OK <json>` or `ERR <code> <message>`;
`EVT <json>` lines can come at any time and are collected in `events`.
Used by the test harness (the DUT), provisioning and `roampos run`.
"""
import contextlib
import json
import re
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional

import serial

__all__ = ["Console", "Reply", "ExpectTimeout"]

_REPLY = re.compile(rb"^(OK|ERR) ?(.*?)\r?\n", re.M)
_EVENT = re.compile(rb"^EVT (.*?)\r?\n", re.M)


class ExpectTimeout(AssertionError):
    """Nothing matched in time; the message shows what was received."""


class Reply:
    def __init__(self, line: str):
        self.raw = line
        self.ok = line.startswith("OK")
        rest = line[3:] if self.ok else line[4:]
        self.data: Any = None
        self.code = self.message = ""
        if self.ok:
            try:
                self.data = json.loads(rest) if rest.strip() else {}
            except ValueError:
                self.data = None
        else:
            self.code, _, self.message = rest.partition(" ")

    def __getitem__(self, key: str) -> Any:
        if not self.ok:
            raise KeyError("%s: reply is an error: %s" % (key, self.raw))
        return self.data[key]

    def __repr__(self) -> str:
        return "Reply(%r)" % self.raw


class Console:
    def __init__(self, port: str, log: Optional[str] = None, baudrate: int = 115200):
        self.port = port
        self.baudrate = baudrate
        self.buf = bytearray()
        self.events: List[Dict[str, Any]] = []
        self.cond = threading.Condition()
        self.log = open(log, "ab") if log else None
        # Replies owed to commands whose wait timed out: they still come (one reply a line, in
        # order) and must not be taken for the next command's.
        self._late = 0
        self.attach()

    def attach(self) -> None:
        """Open the port and start reading it."""
        self.ser = serial.Serial(self.port, self.baudrate, timeout=0.05)
        self.closed = False
        self.thread = threading.Thread(target=self._reader, daemon=True)
        self.thread.start()

    def detach(self) -> None:
        """Let go of the port (so that mpremote can have it); attach() again later."""
        self.closed = True
        self.thread.join(1)
        self.ser.close()

    @contextlib.contextmanager
    def released(self) -> Iterator[None]:
        self.detach()
        try:
            yield
        finally:
            self.attach()

    def _reader(self) -> None:
        while not self.closed:
            try:
                # Block for the first byte only, then take what is there.
                data = self.ser.read(1)
                if data and self.ser.in_waiting:
                    data += self.ser.read(self.ser.in_waiting)
            except (serial.SerialException, OSError, TypeError):
                if self.closed:
                    return
                time.sleep(0.05)
                continue
            if data:
                if self.log:
                    self.log.write(data)
                    self.log.flush()
                with self.cond:
                    self.buf += data
                    self.cond.notify_all()

    def close(self) -> None:
        if not self.closed:
            self.detach()
        if self.log:
            self.log.close()

    # -- low level ------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.log:
            self.log.write(b"\n>>> " + data.rstrip(b"\r\n") + b"\n")
        self.ser.write(data)
        self.ser.flush()

    def send(self, line: str) -> None:
        self.write(line.encode() + b"\r\n")

    def flush_input(self) -> None:
        with self.cond:
            self._take_events(len(self.buf))
            self.buf.clear()

    def take_events(self) -> List[Dict[str, Any]]:
        """The events that have arrived, taken out of the output. Between commands only: it
        consumes the output up to the last event line."""
        with self.cond:
            last = None
            for last in _EVENT.finditer(self.buf):
                pass
            if last is not None:
                self._take_events(last.end())
                del self.buf[:last.end()]
            out, self.events = self.events, []
        return out

    def _take_events(self, upto: int) -> None:
        for m in _EVENT.finditer(self.buf, 0, upto):
            try:
                self.events.append(json.loads(m.group(1)))
            except ValueError:
                pass

    def expect(self, pattern: Any, timeout: float = 5.0) -> "re.Match":
        """Wait for `pattern` (regex, str or bytes) in the output; consume up to it."""
        rx = re.compile(pattern.encode() if isinstance(pattern, str) else pattern, re.M) \
            if not hasattr(pattern, "search") else pattern
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                m = rx.search(bytes(self.buf))  # a snapshot: the match outlives the buffer
                if m:
                    self._take_events(m.end())
                    del self.buf[:m.end()]
                    return m
                left = end - time.monotonic()
                if left <= 0:
                    tail = bytes(self.buf[-2000:])
                    raise ExpectTimeout("%s: no match for %r within %.1fs; received:\n%s" % (
                        self.port, rx.pattern, timeout, tail.decode("utf-8", "replace")))
                self.cond.wait(left)

    def command(self, line: str, timeout: float = 5.0) -> Reply:
        """Send one command line and return its reply (EVT lines go to events)."""
        self.send(line)
        return self.next_reply(timeout)

    def next_reply(self, timeout: float = 5.0) -> Reply:
        """The next OK/ERR line, e.g. the answer to bytes sent with write()."""
        end = time.monotonic() + timeout
        while True:
            try:
                m = self.expect(_REPLY, max(0.0, end - time.monotonic()))
            except ExpectTimeout:
                self._late += 1
                raise
            if self._late:
                self._late -= 1   # the late answer to an earlier command, not to this one
                continue
            return Reply(m.group(0).decode("utf-8", "replace").rstrip("\r\n"))

    def _pull_event(self, timeout: float) -> None:
        """Move the next EVT line from the output into `events`, leaving everything else (replies
        not read yet) where it is."""
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                m = _EVENT.search(bytes(self.buf))
                if m:
                    try:
                        self.events.append(json.loads(m.group(1)))
                    except ValueError:
                        pass
                    del self.buf[m.start():m.end()]
                    return
                left = end - time.monotonic()
                if left <= 0:
                    return
                self.cond.wait(left)

    def wait_event(self, match: Callable[[Dict[str, Any]], bool], timeout: float = 5.0,
                   _pull: Optional[Callable[[float], Any]] = None) -> Dict[str, Any]:
        """The first event `match` accepts (earlier ones stay in `events`); replies that come
        meanwhile stay for next_reply()."""
        pull = _pull or self._pull_event
        end = time.monotonic() + timeout
        seen = 0
        while True:
            while seen < len(self.events):
                ev = self.events[seen]
                seen += 1
                if match(ev):
                    del self.events[:seen]
                    return ev
            left = end - time.monotonic()
            if left <= 0:
                raise ExpectTimeout("%s: no such event within %.1fs; events: %r; buffer:\n%s" % (
                    self.port, timeout, self.events[-10:], bytes(self.buf[-1000:]).decode("utf-8", "replace")))
            try:
                pull(min(left, 0.5))
            except ExpectTimeout:
                pass

    def wait_ready(self, timeout: float = 10.0) -> Dict[str, Any]:
        """The ready event of a (re)start. What came before it belongs to the previous run and is
        dropped, replies owed to it included."""
        ev = self.wait_event(lambda e: e.get("ready") is True, timeout,
                             _pull=lambda t: self.expect(_EVENT, t))
        self._late = 0
        return ev
