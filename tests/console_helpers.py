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


def example_set_with(edit, prefix):
    """A copy of the example parameter set changed by edit(set), in a temporary file (for
    VTERM_PARAMS or vterm_factory(params=...)); returns its path."""
    import json
    import os
    import tempfile

    from roampos import ROOT

    with open(os.path.join(ROOT, "examples", "params", "shanghai-merchant.json")) as f:
        s = json.load(f)
    edit(s)
    fd, path = tempfile.mkstemp(prefix=prefix, suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(s, f)
    return path
