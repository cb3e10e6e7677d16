# The serial console: one command a line, one reply a line.
#   request   <command> [args]\n
#   replies   OK <json>  |  ERR <code> <message>
#   events    EVT <json>  (unsolicited)
# Bytes are assembled into a fixed buffer; a line that is too long, holds a
# control byte or is not UTF-8 gets an ERR and the console keeps serving.
# Ctrl-C (0x03) stops the application and leaves the REPL (mpremote needs it).
import json
import select
import time
from asyncio import core
from micropython import const

from firmware import boards, state

MAX_LINE = const(1024)
# An operator session ends after this long without an operator's command or a key press, whatever
# the role (firmware.session; PCI DSS v4.0 8.2.8: 15 minutes).
_IDLE_MS = const(900000)
_DRAIN = const(256)  # bytes taken per wake-up before yielding to other tasks
_CR = const(13)
_LF = const(10)
_CTRL_B = const(2)
_CTRL_C = const(3)
_TOOLONG = const(-1)
# Said when even an answer's text finds no memory: constants, so that saying it allocates nothing.
_NOMEM = b"ERR nomem out of memory\r\n"
_BROKEN = b"ERR internal console error\r\n"
_EVT_LOST = b'EVT {"dropped": "event", "error": "nomem"}\r\n'

_active = None
# Modules without state of their own that idle does not need: dropped after
# each command, and once after boot (app), so that idle keeps only what it
# needs (they import again from flash, quickly from a ROMFS). Modules that
# hold state (cmd_param's import in progress, link) stay once loaded.
_TRANSIENT = ("firmware.cmd_system", "firmware.cmd_screen", "firmware.cmd_sim",
              "firmware.screen_text", "firmware.params", "firmware.commands",
              "firmware.version", "firmware.scanner", "firmware.session")
# firmware.scanner: the sale's scanner task runs on in its own globals; once it ends the module
# leaves the heap (kept, it fragmented the heap a parameter import needs after a sale).



def _one_line(message):
    # An error message may quote what the user sent (a JSON key, an argument, decoded from
    # JSON escapes): a CR or LF in it would end the reply early and start a second line.
    if isinstance(message, str):
        for c in message:
            if c < " " or c == "\x7f":
                return "".join(ch if " " <= ch and ch != "\x7f" else "\\x%02x" % ord(ch) for ch in message)
    return message

class CommandError(Exception):
    # code: one lowercase word that a script can match; message: for people.
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def event(obj):
    # Unsolicited event on the active console; dropped if there is none yet. Never raises: an
    # event that finds no memory is told as dropped, and what sent it carries on.
    if _active is not None:
        try:
            _active.write("EVT", obj)
        except MemoryError:
            _active.out.write(_EVT_LOST)


def failed(source, e):
    # A task's error as the event {source: "error", "error": ...}. Never raises, so that a task
    # reporting an out-of-memory error does not die of the report.
    try:
        event({source: "error", "error": "%s: %s" % (type(e).__name__, e)})
    except MemoryError:  # the message itself found no memory
        if _active is not None:
            _active.out.write(_EVT_LOST)


def words(args, n=None, usage=None, rest=False):
    # Split a command's argument string; n = number of words expected, else ERR usage saying
    # `usage` (the command's form). Only with rest does the last word take the rest of the line
    # (a JSON value, a text): elsewhere a word too many is an error, never part of the last one.
    if n is None:
        return args.split()
    parts = args.split(None, n - 1) if rest and n else args.split()
    if len(parts) != n:
        raise CommandError("usage", usage or "expected %d argument%s" % (n, "" if n == 1 else "s"))
    return parts


def idle(active):
    # The operator session's idle time, on the board's monotonic clock (boards.ticks_ms, wrap-safe):
    # a session idle for _IDLE_MS ends here (firmware.session), before what comes now is judged;
    # then `active` (an operator's command, a key press) starts the idle time again. A difference
    # out of range (ticks wrapped past half their period: days on a board) is over too. Returns the
    # ms the session has left (0: none open).
    now = boards.ticks_ms()
    left = 0
    if state.role is not None:
        left = _IDLE_MS - time.ticks_diff(now, state.seen_ms)
        if not 0 < left <= _IDLE_MS:
            from firmware import session
            session.end("idle")
            left = 0
    if active:
        state.seen_ms = now
    return left


async def _watch():
    # firmware.session's watch task while an operator is logged in: ends the session on time with
    # nobody there. Here, not in firmware.session: a task there would keep that module (~1 KB)
    # in the heap for as long as someone is logged in, a parameter import's commit included.
    left = idle(False)
    while left:
        await core.sleep_ms(left)
        left = idle(False)  # ends the session once it is over
    if state.session is core.cur_task:
        state.session = None


class Console:
    def __init__(self, board):
        global _active
        self.board = board
        self.out = board.stdout
        self._buf = bytearray(MAX_LINE)
        self._mv = memoryview(self._buf)
        self._n = 0
        self._overflow = False
        self._ctrl = -1  # first control byte seen in the line, -1 if none
        self._one = bytearray(1)
        self._poll = select.poll()
        self._poll.register(board.stdin, select.POLLIN)
        self._handlers = {}  # name -> function, filled on first use
        self.stopped = False  # Ctrl-C seen: run() returns
        self._answered = True  # the line being dispatched got its OK or ERR
        _active = self

    def write(self, kind, obj):
        # The text is made whole before a byte goes out: running out of memory leaves no half line.
        text = json.dumps(obj)
        out = self.out
        out.write(kind)
        out.write(b" ")
        out.write(text)
        out.write(b"\r\n")
        if kind != "EVT":
            self._answered = True

    def error(self, code, message):
        # As write(): the message is made before a byte goes out (out of memory here, run() says
        # ERR nomem on a line of its own, not after a half-written ERR).
        text = _one_line(message)
        out = self.out
        out.write(b"ERR ")
        out.write(code)
        out.write(b" ")
        out.write(text)
        out.write(b"\r\n")
        self._answered = True

    async def run(self):
        # Returns when Ctrl-C arrives (app.main awaits this task).
        stdin = self.board.stdin
        one = self._one
        poll = self._poll.poll
        while not self.stopped:
            try:
                await _readable(stdin)  # a generator: allocated at each wait
                # The bytes that are there, up to _DRAIN, each line dispatched as it completes.
                stdin.readinto(one)
                budget = _DRAIN
                while True:
                    line = self._feed(one[0])
                    if line is not None:
                        await self._dispatch(line)
                    if self.stopped:
                        return
                    budget -= 1
                    if budget == 0 or not poll(0):
                        break
                    stdin.readinto(one)
                await core.sleep_ms(0)
            except Exception as e:
                # Anything here may find the heap full: the wait, a line's slice or dispatch, its
                # answer (and a bug must not end the console either). The line in hand gets its
                # ERR (a constant: it allocates nothing), the bytes not read yet stay in the
                # stream, and the console goes on.
                if not self._answered:
                    self._answered = True
                    self.out.write(_NOMEM if isinstance(e, MemoryError) else _BROKEN)
                await core.sleep_ms(20)

    def _feed(self, c):
        # Returns a complete line (a memoryview of the shared buffer), an int
        # for a bad line (_TOOLONG or the control byte), or None meanwhile.
        if c == _CTRL_C and self.board.ctrl_c_is_byte:
            self.stopped = True
            return None
        if c == _CTRL_B and self._n == 0:
            # What mpremote sends as it leaves the raw REPL ("\r" Ctrl-B); after `deploy` resets
            # the board it reaches the new console: not the start of a command.
            return None
        if c == _CR or c == _LF:
            n, over, ctrl = self._n, self._overflow, self._ctrl
            self._n, self._overflow, self._ctrl = 0, False, -1
            if n == 0:  # (a bad line has at least its control byte, or MAX_LINE bytes)
                return None
            self._answered = False  # a line: owed an answer from here, whatever fails next
            if over:
                return _TOOLONG
            if ctrl >= 0:
                return ctrl
            return self._mv[:n]
        if (c < 32 and c != 9) or c == 127:
            if self._ctrl < 0:
                self._ctrl = c
        if self._n < MAX_LINE:
            self._buf[self._n] = c
            self._n += 1
        else:
            self._overflow = True
        return None

    async def _dispatch(self, line):
        # Every line gets one answer, OK or ERR (_feed marked it owed); run() says ERR nomem
        # where this could not.
        if isinstance(line, int):
            if line == _TOOLONG:
                self.error("toolong", "line longer than %d bytes" % MAX_LINE)
            else:
                self.error("binary", "control byte 0x%02x in line" % line)
            return
        try:
            if len(line) and max(line) >= 0x80 and not _utf8_ok(line):
                raise UnicodeError
            text = str(line, "utf-8")
        except UnicodeError:
            self.error("encoding", "line is not UTF-8")
            return
        # Any whitespace (a TAB too) ends the command's name, as it separates arguments.
        parts = text.split(None, 1)
        if not parts:  # spaces only: an empty line, ignored
            self._answered = True
            return
        name = parts[0]
        args = parts[1] if len(parts) > 1 else ""
        ran = False
        try:
            # A command is the operator's activity; the vterm's simulated world (`sim`: a key press
            # counts in ui.key, `sim clock` is time passing with nobody there) is not.
            idle(name != "sim")
            fn = self._lookup(name)
            result = fn(args.strip())
            if hasattr(result, "send"):  # an async command
                result = await result
            ran = True
            self.write("OK", {} if result is None else result)
        except CommandError as e:
            self.error(e.code, e.message)
        except MemoryError:
            # "answering": the command did run, only its reply found no memory
            self.error("nomem", "out of memory %s %s" % ("answering" if ran else "running", name))
        except Exception as e:  # a bug must not take the console down
            self.error("internal", "%s: %s" % (type(e).__name__, e))
        drop_transient(self._handlers)

    def _lookup(self, name):
        fn = self._handlers.get(name)
        if fn is None:
            from firmware import commands

            entry = commands.lookup(name)
            if entry is None:
                raise CommandError("unknown", "no command %s; try help" % _shown(name))
            mod = __import__(entry[0], None, None, (entry[1],))
            fn = getattr(mod, entry[1])
            self._handlers[name] = fn
        return fn


def _utf8_ok(b):
    # Strict UTF-8 (RFC 3629): MicroPython's decoder takes overlong forms (C0 80 = a NUL that
    # slipped past the control-byte check), surrogates and code points above U+10FFFF.
    i, n = 0, len(b)
    while i < n:
        c = b[i]
        if c < 0x80:
            i += 1
            continue
        if 0xC2 <= c <= 0xDF:
            k, lo, hi = 1, 0x80, 0xBF
        elif c == 0xE0:
            k, lo, hi = 2, 0xA0, 0xBF
        elif c == 0xED:
            k, lo, hi = 2, 0x80, 0x9F
        elif 0xE1 <= c <= 0xEF:
            k, lo, hi = 2, 0x80, 0xBF
        elif c == 0xF0:
            k, lo, hi = 3, 0x90, 0xBF
        elif 0xF1 <= c <= 0xF3:
            k, lo, hi = 3, 0x80, 0xBF
        elif c == 0xF4:
            k, lo, hi = 3, 0x80, 0x8F
        else:
            return False
        if i + k >= n or not lo <= b[i + 1] <= hi:
            return False
        for j in range(i + 2, i + k + 1):
            if not 0x80 <= b[j] <= 0xBF:
                return False
        i += k + 1
    return True


async def _readable(stream):
    # Wait until the stream has input, as asyncio.StreamReader.readinto does
    # (asyncio/stream.py) before it reads: without the stream module and its
    # classes, ~2 KB of heap the console would keep for this one wait.
    yield core._io_queue.queue_read(stream)


def drop_transient(handlers=None):
    # handlers: a console's cache of command functions, cleared of theirs.
    import sys
    mods = sys.modules
    pkg = mods.get("firmware")
    # firmware.sale holds state only while a sale waits (its amount, timer and scanner tasks): once
    # none waits it leaves the heap too, with the scanner (below) that refers to it. Kept, it
    # stayed where the first sale imported it (in the keypad task, the heap below still full of a
    # command's garbage): 1.2 KB of objects strewn over 2.3 KB high in a 128K heap (16 KB below its
    # end), splitting the free space a parameter import's peak needs; after a sale the import ran
    # out of memory about 1 run in 7. Found through the package, not by its dotted name: no name
    # to intern at boot.
    s = pkg.__dict__.get("sale") if pkg is not None else None
    if s is not None and s.amount is None:
        mods.pop(s.__name__, None)
        delattr(pkg, "sale")
    s = None
    for name in _TRANSIENT:
        # pop, not `in` then del: an import that ran out of memory half-way was seen to leave a
        # name that `in` finds and del does not.
        if mods.pop(name, None) is not None:
            short = name[9:]
            if hasattr(pkg, short):
                delattr(pkg, short)
            if handlers:
                for k in [k for k, fn in handlers.items() if fn.__globals__.get("__name__") == name]:
                    del handlers[k]


def _shown(text):
    # Echo a bit of what the user typed, never a whole line of it.
    return repr(text[:24] + ("..." if len(text) > 24 else ""))
