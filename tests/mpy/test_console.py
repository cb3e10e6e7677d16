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


def test_words_usage():
    assert words("a b c", 2) == ["a", "b c"]
    try:
        words("", 1)
    except CommandError as e:
        assert e.code == "usage"
    else:
        raise AssertionError("no usage error")
