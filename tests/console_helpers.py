"""Assertions on console replies that several test modules share; each failure
says what was sent and what came back."""


def ok(dut, line, timeout=5):
    """Send a command that must succeed; return its reply's JSON."""
    r = dut.command(line, timeout)
    assert r.ok, "sent %r, got %r" % (line, r.raw)
    return r.data


def err(dut, line, code, text):
    """Send a command that must be refused with `code` and `text` in the message."""
    r = dut.command(line)
    assert not r.ok and r.code == code and text in r.message, \
        "sent %r, expected ERR %s ...%s..., got %r" % (line, code, text, r.raw)
    return r.message
