"""Operator sessions end after 15 minutes without a command or a key press (docs/console.md,
"Parameters"). The vterm's clock moves forward with `sim clock <ms>`, so no test waits 15 minutes:
the firmware judges its deadlines on the board's monotonic clock (firmware/boards: time.ticks_ms
on a board, where nothing moves it; `sim` answers ERR unsupported there)."""
import os

import pytest

from roampos import ROOT
from console_helpers import ok, err

EXAMPLE = os.path.join(ROOT, "examples", "params", "shanghai-merchant.json")
VTERM_PARAMS = EXAMPLE
pytestmark = pytest.mark.simulation

IDLE_MS = 15 * 60 * 1000


def _logged_out(e):
    return "logged_out" in e


def _no_logout_yet(dut):
    assert not [e for e in dut.take_events() if _logged_out(e)], "session ended early"


def _operator(dut):
    # (`status` is a command: it restarts the idle time, as any command does)
    return ok(dut, "status")["operator"]


# What each role may do, and the command that shows it can no longer do it once its session is over.
ROLES = [
    ("01", "123456", "admin", 'param set merchant.name "Idle Test"', "needs a admin login"),
    ("02", "2222", "supervisor", "region use 440300", "needs a supervisor login"),
    ("03", "3333", "cashier", "operator passwd 03 3333", "needs a admin login"),
]


@pytest.mark.parametrize("op,pin,role,privileged,refusal", ROLES, ids=[r[2] for r in ROLES])
def test_every_role_is_logged_out_after_15_idle_minutes(dut, op, pin, role, privileged, refusal):
    ok(dut, "logout")
    assert ok(dut, "login %s %s" % (op, pin))["role"] == role
    dut.take_events()
    ok(dut, "sim clock %d" % (IDLE_MS - 1000))       # a second before the end: still logged in
    _no_logout_yet(dut)
    assert _operator(dut) == op                      # ... and that command starts it over
    ok(dut, "sim clock %d" % (IDLE_MS - 1000))
    _no_logout_yet(dut)
    ok(dut, "sim clock 1000")                        # 15 minutes since `status`: over, told at once
    ev = dut.wait_event(_logged_out, 1)
    assert ev == {"logged_out": op, "why": "idle"}, ev
    assert _operator(dut) is None
    err(dut, privileged, "denied", refusal)          # the existing refusal, nothing changed
    assert ok(dut, "param get merchant.name")["value"] != "Idle Test"
    ok(dut, "sim clock %d" % IDLE_MS)                # told once: nobody is logged in any more
    assert not [e for e in dut.take_events() if _logged_out(e)]


def test_a_key_press_restarts_the_idle_time_and_the_screen_returns_to_idle(dut):
    ok(dut, "login 02 2222")
    dut.take_events()
    ok(dut, "sim clock 600000")
    ok(dut, "sim key D")                             # someone at the keypad (the menu)
    ok(dut, "sim clock 600000")                      # 20 minutes since the login, 10 since the key
    _no_logout_yet(dut)
    assert ok(dut, "screen")["screen"] == "menu"
    ok(dut, "sim key B")
    ok(dut, "sim clock %d" % IDLE_MS)
    assert dut.wait_event(_logged_out, 1)["logged_out"] == "02"
    assert ok(dut, "screen")["screen"] == "idle"     # not left in the menu of a session that is over
    err(dut, "region use 440300", "denied", "needs a supervisor login")


def test_the_session_ends_on_time_with_nobody_there(dut):
    # No command comes: the terminal ends the session by itself at the deadline (its watch task),
    # with its event and the idle screen.
    ok(dut, "login 01 123456")
    ok(dut, "sim key D")
    dut.take_events()
    ok(dut, "sim clock %d" % (IDLE_MS - 1500))      # 1.5 s left, then not a line is sent
    _no_logout_yet(dut)
    ev = dut.wait_event(_logged_out, 5)
    assert ev == {"logged_out": "01", "why": "idle"}, ev
    assert ok(dut, "screen")["screen"] == "idle"
    err(dut, 'param set merchant.name "Idle Test"', "denied", "needs a admin login")


def test_logout_and_login_again_each_start_afresh(dut):
    ok(dut, "login 01 123456")
    ok(dut, "sim clock 800000")
    ok(dut, "logout")
    ok(dut, "sim clock %d" % IDLE_MS)                # nobody logged in: nothing to end, nothing told
    assert not [e for e in dut.take_events() if _logged_out(e)]
    ok(dut, "login 02 2222")
    ok(dut, "sim clock 800000")
    ok(dut, "login 01 123456")                       # whoever logs in starts a session of their own
    ok(dut, "sim clock 800000")
    _no_logout_yet(dut)
    assert ok(dut, "status")["role"] == "admin"
    ok(dut, "logout")


def test_a_failed_login_ends_the_session_and_its_watch(dut):
    ok(dut, "login 02 2222")
    err(dut, "login 02 1", "denied", "wrong PIN")
    ok(dut, "sim clock %d" % IDLE_MS)
    assert not [e for e in dut.take_events() if _logged_out(e)]  # it ended at the failed login
    ok(dut, "login 02 2222")                          # (the failed try is cleared)


def test_sim_clock_arguments(dut):
    for line, code in (("sim clock", "usage"), ("sim clock 10 20", "usage"), ("sim clock soon", "badarg"),
                       ("sim clock 0", "badarg"), ("sim clock -5", "badarg"),
                       ("sim clock 86400001", "badarg")):
        err(dut, line, code, "")


def test_the_last_admins_back_off_runs_on_the_same_clock(dut):
    """The last admin's back-off (1 min, doubling) is measured on the clock the session is: the
    wait is over once the clock has moved past it, and not before."""
    ok(dut, "logout")
    err(dut, "login 01 000000", "denied", "2 tries left")
    err(dut, "login 01 111111", "denied", "1 try left")
    err(dut, "login 01 999999", "locked", "next try in 60 s")
    ok(dut, "sim clock 30000")
    r = dut.command("login 01 123456")
    assert r.code == "locked" and 25 <= int(r.message.split("next try in ")[1].split()[0]) <= 30, r.raw
    ok(dut, "sim clock 30000")
    assert ok(dut, "login 01 123456")["role"] == "admin"   # the minute is over: the right PIN works
    ok(dut, "logout")
