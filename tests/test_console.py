"""The serial console on a terminal: every command, and bad input of every kind."""
import json
import time

import pytest


def test_status_fields(dut):
    r = dut.command("status")
    assert r.ok, r
    for key in ("version", "board", "uptime_ms", "heap_free", "flash_free"):
        assert key in r.data, "status lacks %s: %s" % (key, r.raw)
    assert r["heap_free"] > 0 and r["flash_free"] > 0
    later = dut.command("status")
    assert later["uptime_ms"] >= r["uptime_ms"]


def test_help_lists_every_command(dut):
    r = dut.command("help")
    assert r.ok, r
    for name in ("help", "status", "echo", "reboot"):
        assert name in r["commands"], r.raw


def test_echo_returns_text_unchanged(dut):
    text = 'Grüße {"x": 1} \\ 上海'
    r = dut.command("echo " + text)
    assert r.ok and r["echo"] == text, r


def test_unknown_command(dut):
    r = dut.command("frobnicate now")
    assert not r.ok and r.code == "unknown", r
    assert "frobnicate" in r.message


def test_ten_kilobyte_line_is_refused_and_console_survives(dut):
    dut.flush_input()
    r = dut.command("echo " + "x" * 10240)
    assert r.code == "toolong", r
    assert dut.command("echo after")["echo"] == "after"


@pytest.mark.parametrize("raw", [
    b"\xff\xfe\xc3",              # not UTF-8 at all
    b"A\xc0\x80B",                # overlong NUL: a control byte in disguise
    b"A\xc0\x9bB",                # overlong ESC
    b"\xe0\x80\xaf",              # overlong '/'
    b"\xed\xa0\x80",              # a UTF-16 surrogate
    b"\xf4\x90\x80\x80",          # above U+10FFFF
    b"\xe4\xb8",                  # truncated sequence
])
def test_invalid_utf8(dut, raw):
    dut.flush_input()
    dut.write(b"echo " + raw + b"\r\n")
    r = dut.next_reply()
    assert r.code == "encoding", r
    assert dut.command("status").ok


def test_valid_utf8_of_every_length_is_accepted(dut):
    text = "é北京€😀"   # 2, 3, 3, 3 and 4 bytes
    assert dut.command("echo " + text)["echo"] == text


@pytest.mark.parametrize("garbage", [
    bytes(c for c in range(4, 32) if c not in (10, 13)) + b"\x7f\x80\xff",  # controls but Ctrl-C, CR, LF
    b"\x1b[A\x1b[B\x08\x08status",
    bytes(range(128, 256)),
])
def test_binary_garbage_gets_err_and_console_keeps_serving(dut, garbage):
    dut.flush_input()
    dut.write(garbage + b"\n")
    r = dut.next_reply()
    assert r.code in ("binary", "encoding"), r
    assert dut.command("echo alive")["echo"] == "alive"


def test_lines_split_across_writes_and_joined_in_one(dut):
    dut.write(b"ec")
    time.sleep(0.1)
    dut.write(b"ho one\r\necho two\necho three\r\n")
    got = []
    for _ in range(3):
        m = dut.expect(r"^OK (.*)\r\n")
        got.append(json.loads(m.group(1))["echo"])
    assert got == ["one", "two", "three"]


def test_reboot_restarts_the_application(dut):
    before = dut.command("status")["uptime_ms"]
    r = dut.command("reboot")
    assert r.ok and r["rebooting"] is True
    dut.wait_ready(10)
    after = dut.command("status")
    assert after.ok and after["uptime_ms"] < before + 5000


@pytest.mark.simulation
def test_ctrl_c_leaves_the_app_for_the_repl_and_reset_returns(dut):
    dut.flush_input()
    dut.write(b"\x03")
    dut.expect(r">>> ", 5)
    dut.write(b"print(6*7)\r")
    dut.expect(r"42", 5)
    dut.reboot_and_wait("reset")
    assert dut.command("echo back")["echo"] == "back"


@pytest.mark.simulation
def test_power_cut_restarts_the_application(dut):
    dut.reboot_and_wait("power_cut")
    assert dut.command("status").ok


def test_lines_of_spaces_are_empty_lines(dut):
    dut.write(b"   \r\n\t \r\n\r\necho after\r\n")
    assert dut.next_reply().raw == 'OK {"echo": "after"}'  # no reply for the blank ones


def test_ctrl_b_at_the_start_of_a_line_is_not_a_command(dut):
    # mpremote ends its raw-REPL session with "\r" Ctrl-B; after a deploy resets the board it lands
    # on the new console, in front of the engineer's next command.
    dut.flush_input()
    dut.write(b"\r\x02status\r\n")
    assert dut.next_reply().ok
    dut.write(b"echo a\x02b\r\n")            # anywhere else it is a control byte as before
    assert dut.next_reply().code == "binary"
