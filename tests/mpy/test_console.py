# Console line assembly and dispatch, inside MicroPython, with fake streams.
import asyncio
import io

from firmware import console
from firmware.console import Console, CommandError, words


class FakeBoard:
    name = "fake"
    ctrl_c_is_byte = True

    def __init__(self, data):
        self.stdin = io.BytesIO(data)
        self.stdout = io.BytesIO()


def feed(con, data):
    out = []
    for c in data:
        r = con._feed(c)
        if r is not None:
            out.append(bytes(r) if not isinstance(r, int) else r)
    return out


def test_assembles_lines_and_ignores_empty():
    con = Console(FakeBoard(b""))
    assert feed(con, b"status\r\n\r\necho  a b\n") == [b"status", b"echo  a b"]


def test_overflow_reported_once_and_recovers():
    con = Console(FakeBoard(b""))
    r = feed(con, b"x" * (console.MAX_LINE + 5) + b"\nstatus\n")
    assert r == [-1, b"status"], r


def test_control_byte_reported():
    con = Console(FakeBoard(b""))
    assert feed(con, b"ab\x01c\nok\n") == [1, b"ok"]


def test_ctrl_c_stops():
    con = Console(FakeBoard(b""))
    feed(con, b"sta\x03")
    assert con.stopped


def test_dispatch_replies():
    b = FakeBoard(b"")
    con = Console(b)

    async def go():
        await con._dispatch(memoryview(b"echo hi there"))
        await con._dispatch(memoryview(b"nosuch x"))
        await con._dispatch(memoryview(b"\xff\xfe"))
        await con._dispatch(-1)

    asyncio.run(go())
    lines = b.stdout.getvalue().split(b"\r\n")
    assert lines[0] == b'OK {"echo": "hi there"}', lines
    assert lines[1].startswith(b"ERR unknown "), lines
    assert lines[2].startswith(b"ERR encoding "), lines
    assert lines[3].startswith(b"ERR toolong "), lines


def _usage(*a, **kw):
    try:
        words(*a, **kw)
    except CommandError as e:
        assert e.code == "usage"
        return e.message
    raise AssertionError("no usage error for %r" % (a,))


def test_words_usage():
    assert words("a b c", 2, rest=True) == ["a", "b c"]   # the last takes the rest only if asked
    assert words("a  b", 2) == ["a", "b"]
    assert _usage("a b c", 2, "x <a> <b>") == "x <a> <b>"   # a word too many
    assert _usage("", 1) == "expected 1 argument"
    assert words("", 0) == [] and _usage("junk", 0, "status takes no arguments") == "status takes no arguments"
    assert _usage("a", 2, rest=True) == "expected 2 arguments"


def test_session_idle_time_is_wrap_safe():
    # console.idle() measures on boards.ticks_ms with ticks_diff: a session stamped just before
    # the ticks wrap is not over just after it; one idle for 15 min is; and a stamp that reads as
    # later than now (ticks wrapped past half their period: days on a board) is over too.
    import time
    from firmware import boards, state
    clock = [0]
    real = boards.ticks_ms
    boards.ticks_ms = lambda: clock[0]
    try:
        state.operator, state.role = "01", "admin"
        state.seen_ms = time.ticks_add(0, -100)            # 100 ms before the ticks wrap
        clock[0] = 500                                      # 600 ms later, past it
        assert console.idle(False) == 900000 - 600 and state.role == "admin"
        clock[0] = time.ticks_add(state.seen_ms, 900000 - 1)
        assert console.idle(False) == 1 and state.role == "admin"
        clock[0] = time.ticks_add(state.seen_ms, 900000)
        assert console.idle(False) == 0 and state.role is None and state.operator is None
        state.operator, state.role = "02", "supervisor"
        state.seen_ms = time.ticks_add(clock[0], 5)         # "later than now": wrapped, so over
        assert console.idle(False) == 0 and state.role is None
        state.operator, state.role, state.seen_ms = "03", "cashier", clock[0]   # (as a login does)
        clock[0] = time.ticks_add(clock[0], 600000)
        console.idle(True)                                  # a command: the idle time starts again
        assert state.seen_ms == clock[0] and console.idle(False) == 900000 and state.role == "cashier"
    finally:
        boards.ticks_ms = real
        state.operator = state.role = None


def test_sale_module_leaves_with_the_transients_once_no_sale_waits():
    # A sale's module kept at idle stayed where the first sale imported it, high in the heap, in
    # the free space a parameter import needs (ERR nomem after a cancelled sale).
    import sys
    import firmware
    from firmware import sale

    sale.amount = 700                     # a sale waits: it stays, with its state
    console.drop_transient()
    assert sys.modules.get("firmware.sale") is sale and firmware.sale is sale
    sale.amount = None                    # it ended: gone until the next sale imports it again
    console.drop_transient()
    assert "firmware.sale" not in sys.modules and "sale" not in firmware.__dict__
    from firmware import sale as again
    assert again is not sale and again.amount is None
    console.drop_transient()
