"""Every command and subcommand given a word too many (or a malformed one) answers `ERR usage`
naming its form, and changes nothing: a line it cannot read whole is not half obeyed (`reboot now`
does not reboot, `login 01 123456 x` counts no try, `param import abort x` aborts nothing)."""
import base64
import json
import os
import time
import zlib

import pytest

from roampos import ROOT
from console_helpers import ok, err

EXAMPLE = os.path.join(ROOT, "examples", "params", "shanghai-merchant.json")
VTERM_PARAMS = EXAMPLE
pytestmark = pytest.mark.simulation

# (line, what the message says). Each one is a well-formed command plus junk, or a malformed one.
BOGUS = [
    ("help x y", "help takes no arguments"),
    ("status extra", "status takes no arguments"),
    ("reboot now", "reboot takes no arguments"),
    ("login 01 123456 x", "login <operator> <pin>"),
    ("login 01", "login <operator> <pin>"),
    ("logout x", "logout takes no arguments"),
    ("operator list x", "operator list takes no arguments"),
    ("operator add 09 cashier 9999 x", "operator add <id> <role> <pin>"),
    ("operator remove 03 x", "operator remove <id>"),
    ("operator passwd 03 4321 x", "operator passwd <id> <pin>"),
    ("operator frob", "operator list|add"),
    ("param get merchant.id x", "param get <path>"),
    ("param export x", "param export takes no arguments"),
    ("param check x", "param check takes no arguments"),
    ("param log 5 x", "param log [n]"),
    ("param log x", "param log [n]"),
    ("param import begin 10 ffffffff x", "param import begin <bytes> <crc32 hex>"),
    ("param import data 0 e30= x", "param import data <offset> <base64>"),
    ("param import commit x", "param import commit takes no arguments"),
    ("param import abort x", "param import abort takes no arguments"),
    ("param frob", "param get|set"),
    ("region list x", "region list takes no arguments"),
    ("region use 440300 x", "region use <six-digit GB/T 2260 code>"),
    ("region frob", "region list|use"),
    ("batch settle x", "batch settle takes no arguments"),
    ("batch add 100 x", "batch add <amount"),
    ("screen raw x", "screen [raw]"),
    ("bench refresh x", "bench refresh"),
    ("bench card visa x", "bench refresh"),
    ("link mqtt 127.0.0.1 1883 x", "link mqtt <host> <port>"),
    ("link echo 127.0.0.1 7", "link echo <host> <port> <text>"),
    ("link frob", "link [set"),
    ("sim remove x", "sim remove takes no arguments"),
    ("sim tap visa x", "sim tap [profile]"),
    ("sim link wifi up x", "sim link <wifi|cell> <up|down|denied>"),
    ("sim cell 460 00 1 2 x", "sim cell <mcc> <mnc> <lac> <ci>"),
    ("sim signal -60 x", "sim signal <dBm>"),
    ("sim squeeze 100 100 x", "sim squeeze"),
    ("sim clock 1000 x", "sim clock <ms>"),
    ("sim frob", "sim key"),
]
# Commands whose last argument is a text that may hold spaces: a word more is part of it.
TEXT_LAST = {"echo": "echo <text>", "param set": "<json>", "link set": "<json>", "link echo": "<text>",
             "sim scan": "<code>", "sim key": "any number of keys", "region locate": "<json>"}

# Events that would tell of a change (the link's own, from the radio world, may come any time).
_CHANGES = {"ready", "logged_out", "login_failed", "region", "alert", "sale", "card"}
_IMPORT = json.dumps({"x": 1}).encode()


def _snapshot(dut):
    # What any of these commands could change: the session, mode, region, parameters, log, batches.
    st = ok(dut, "status")
    return ({k: st.get(k) for k in ("mode", "region", "operator", "role", "params_version")},
            ok(dut, "param check"), ok(dut, "param log 50"), ok(dut, "batch"), ok(dut, "operator list"))


@pytest.fixture(scope="module")
def admin(dut):
    ok(dut, "login 01 123456")
    ok(dut, "batch add 500")        # an open batch, which `batch settle x` must leave open
    # an import in progress, which the `param import ... x` lines must leave as it is
    ok(dut, "param import begin %d %08x" % (len(_IMPORT), zlib.crc32(_IMPORT)))
    yield dut
    ok(dut, "param import abort")


def test_every_command_is_covered(dut):
    # The table above and TEXT_LAST cover every command `help` lists.
    names = set(ok(dut, "help")["commands"])
    covered = {line.split()[0] for line, _ in BOGUS} | {k.split()[0] for k in TEXT_LAST}
    assert names <= covered, "commands without a usage case: %s" % sorted(names - covered)


@pytest.mark.parametrize("line,usage", BOGUS, ids=[b[0] for b in BOGUS])
def test_a_malformed_line_answers_usage_and_changes_nothing(admin, line, usage):
    dut = admin
    before = _snapshot(dut)
    dut.take_events()
    err(dut, line, "usage", usage)
    time.sleep(0.1)                  # (a reboot or an event would be on its way by now)
    told = [e for e in dut.take_events() if set(e) & _CHANGES]
    assert not told, "%r: %r" % (line, told)
    assert _snapshot(dut) == before, "%r changed something" % line


def test_the_import_in_progress_survived_every_malformed_line(admin):
    # (after the table: the import begun by the fixture takes its chunk at offset 0)
    r = ok(admin, "param import data 0 %s" % base64.b64encode(_IMPORT).decode())
    assert r["received"] == len(_IMPORT), r


@pytest.mark.parametrize("line,code", [
    ("param log 0", "badarg"), ("param log 51", "badarg"), ("param log -1", "usage"),
    ("sim tap nosuchcard", "nocard"), ("sim link wifi sideways", "badarg"),
])
def test_values_out_of_range_are_badarg_not_usage(admin, line, code):
    err(admin, line, code, "")


def test_well_formed_lines_still_work(admin):
    # What takes the rest of the line still does; optional arguments stay optional.
    assert ok(admin, "echo a  b c")["echo"] == "a  b c"
    assert len(ok(admin, "param log 2")["log"]) <= 2
    assert len(ok(admin, "param log")["log"]) <= 10
    assert ok(admin, "region")["active"] == ok(admin, "region list")["active"]
    assert "commands" in ok(admin, "help")
    assert ok(admin, "param set merchant.name \"Two Words\"")["path"] == "merchant.name"
    assert ok(admin, "param get merchant.name")["value"] == "Two Words"
