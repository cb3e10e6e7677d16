"""The firmware boots and serves its console in a 64 KB MicroPython heap."""
import re
import time

import pytest

VTERM_HEAP = "64K"
pytestmark = pytest.mark.simulation


def test_boots_and_serves_in_64k(dut):
    st = dut.command("status")
    assert st.ok, st
    assert st["heap_free"] + st["heap_used"] <= 64 * 1024, st.raw  # really a 64K heap
    for cmd in ("help", "echo still here"):
        assert dut.command(cmd).ok, cmd


def test_stays_up_after_many_commands_in_64k(dut):
    before = dut.command("status")["heap_used"]
    for i in range(200):
        assert dut.command("echo %d" % i)["echo"] == str(i)
    after = dut.command("status")["heap_used"]
    assert after - before < 2048, "heap grew from %d to %d over 200 commands" % (before, after)


def test_idle_heap_after_boot_stays_within_budget(dut):
    # heap_used of the ready event (after gc.collect, the simulated buses
    # included; the device models run in the vterm process). It measured
    # 34.7 KB on this 64-bit port; this guards against regressions, with
    # ~2.3 KB of room. The 24 KB budget (issue 2) is a board's, at 32 bits:
    # test_heap_32bit.py holds the same boot to it.
    # When it fails: `python -m roampos.vterm.heapprobe` shows which step grew.
    ev = dut.reboot_and_wait()
    assert ev["heap_used"] <= 37 * 1024, "heap in use at ready: %d B (models %d B)" % (
        ev["heap_used"], ev.get("heap_models", 0))


def _until_ok(dut, line, tries=6):
    # At the heap's edge a command may itself run out of memory; it must say so (ERR nomem),
    # change nothing, and work when the bench engineer tries again.
    for _ in range(tries):
        r = dut.command(line)
        if r.ok:
            return r
        assert r.code == "nomem", r.raw
        time.sleep(0.2)
    raise AssertionError("%s still out of memory after %d tries" % (line, tries))


def _tap_lost(e):
    # Where the read runs out of memory decides how the loss is told: inside the read (the sale
    # reports a card error and keeps waiting) or around it (the reader reports the error).
    if "reader" in e:
        assert e["reader"] == "error" and "MemoryError" in e["error"], e
        return True
    sale = e.get("sale", {})
    assert "card" not in sale, "a card read at 56K: %r" % e
    if sale.get("state") == "card error":
        assert sale["error"] == "nomem", e
        return True
    return False


def _oom_read(vterm_factory):
    # On this 64-bit port a card read in a sale fits 64K (unprovisioned) but not 56K, where it runs
    # out of memory.
    dut = vterm_factory(heap="56K")
    dut.wait_ready(15)
    dut.events.clear()
    assert dut.command("sim key 1 2 5 C").ok
    dut.wait_event(lambda e: e.get("sale", {}).get("state") == "waiting card", 5)
    assert dut.command("sim tap visa").ok
    dut.wait_event(_tap_lost, 10)
    return dut


def test_a_card_read_out_of_memory_loses_the_tap_not_the_terminal(vterm_factory):
    # The tap is reported lost, and every line still gets its one reply (OK, or ERR nomem where
    # the heap is short): the console never goes silent.
    dut = _oom_read(vterm_factory)
    for line in ("sim remove", "sim key A", "echo still here", "status"):
        r = dut.command(line, timeout=5)
        assert r.ok or r.code == "nomem", (line, r.raw)


def test_after_a_card_read_out_of_memory_everything_works_again(vterm_factory):
    dut = _oom_read(vterm_factory)
    assert _until_ok(dut, "sim remove")["removed"] is True
    _until_ok(dut, "sim key A")                 # the keypad still answers: the sale is cancelled
    dut.wait_event(lambda e: e.get("sale", {}).get("state") == "cancelled", 5)
    _until_ok(dut, "echo still here")           # and so does the console
    st = _until_ok(dut, "status")
    assert st["heap_free"] > 4096, st.raw       # what the read took is back




@pytest.mark.parametrize("heap", ["57K", "58K", "59K", "60K"])
def test_after_a_card_read_at_the_heap_edge_everything_works_again(vterm_factory, heap):
    # Between 56K and 64K the read may or may not fit; either way the terminal gets its heap back.
    # (Here a session used to pass the ~620 names the boot-time qstr pools hold, and the next pool,
    # ~7 KB in one block, found no room: every new command answered ERR nomem until a reboot.)
    dut = vterm_factory(heap=heap)
    dut.wait_ready(15)
    dut.events.clear()
    assert dut.command("sim key 1 2 5 C").ok
    dut.wait_event(lambda e: e.get("sale", {}).get("state") == "waiting card", 5)
    assert dut.command("sim tap visa").ok
    dut.wait_event(lambda e: "card" in e.get("sale", {}) or _tap_lost(e), 10)
    _until_ok(dut, "sim remove")
    _until_ok(dut, "sim key A")
    _until_ok(dut, "echo still here")
    st = _until_ok(dut, "status")
    assert st["heap_free"] > 4096, st.raw

@pytest.mark.parametrize("card,state", [("getresp", "card read"), ("endless", "card error")])
def test_a_card_answering_61xx_is_read_or_refused_in_64k(vterm_factory, card, state):
    # A '61XX' answer is joined in one more buffer (at most 258 bytes) over GET RESPONSEs; a card
    # that answers '61XX' for ever ends in a read error after 16 of them. Either way the read fits
    # the 64K a card read in a sale fits unprovisioned, and the terminal has its heap back after.
    dut = vterm_factory(heap="64K")
    dut.wait_ready(15)
    dut.events.clear()
    assert dut.command("sim key 1 2 5 C").ok
    dut.wait_event(lambda e: e.get("sale", {}).get("state") == "waiting card", 5)
    assert dut.command("sim tap " + card).ok
    ev = dut.wait_event(lambda e: e.get("sale", {}).get("state", "waiting card") != "waiting card"
                        or "reader" in e, 10)
    assert ev.get("sale", {}).get("state") == state, ev
    if state == "card error":
        assert ev["sale"]["error"] == "read", ev
    _until_ok(dut, "sim remove")
    _until_ok(dut, "sim key A")
    _until_ok(dut, "echo still here")
    st = _until_ok(dut, "status")
    assert st["heap_free"] > 4096, st.raw


_REPLY = re.compile(r"(OK \{.*\}|ERR [a-z]+ (?!ERR )[^\r\n]*)")


def test_after_a_sale_every_line_gets_one_well_formed_reply(dut):
    # After a sale with a card read, at 64K on this 64-bit port, the commands whose modules are not
    # loaded yet may find no room (ERR nomem). Each reply is still one whole line: an ERR whose
    # message ran out of memory half-way used to run into the fallback ("ERR nomem ERR nomem ...").
    dut.events.clear()
    assert dut.command("sim key 1 2 5 C").ok
    dut.wait_event(lambda e: e.get("sale", {}).get("state") == "waiting card", 5)
    assert dut.command("sim tap visa").ok
    dut.wait_event(lambda e: "card" in e.get("sale", {}) or e.get("sale", {}).get("state") == "card error"
                   or "reader" in e, 10)
    for line in ("sim remove", "param get region.code", "screen", "region list", "batch", "link",
                 "bench refresh", "help", "param check", "echo still here", "status"):
        r = dut.command(line, timeout=5)
        assert _REPLY.fullmatch(r.raw), (line, r.raw)

# `sim squeeze` makes the heap run out at any size; 96K leaves the checks after it (which reload
# what the squeeze pushed out) room to run, where at 64K they may meet a full heap themselves.
SQUEEZE_HEAP = "96K"


def test_the_console_answers_every_line_while_memory_is_exhausted(vterm_factory):
    # `sim squeeze` holds the heap until a few hundred bytes stay free, for a while. Every
    # line sent meanwhile gets one reply, OK or a clear ERR (nomem, where the command could not
    # run or answer); the console never dies, and once the heap is back everything works.
    dut = vterm_factory(heap=SQUEEZE_HEAP)
    dut.wait_ready(15)
    lines = ["status", "echo x", "help", "nosuch", "sim key 1", "param get region", "sim tap nosuch"]
    for line in lines + ["sim key A"]:     # what they keep loaded once used, they keep anyway
        dut.command(line)
    before = dut.command("status")["heap_used"]
    codes, used = set(), []
    for left in (0, 200, 600):             # where it runs out differs with what is left
        r = _until_ok(dut, "sim squeeze %d 1500" % left)  # itself at the edge after the last round
        assert r["free"] <= left + 1024, r.raw
        for line in lines * 2:
            r = dut.command(line, timeout=5)   # a reply, never a timeout: the console is alive
            codes.add("OK" if r.ok else r.code)
        time.sleep(1.6)                    # the squeeze ends
        assert dut.command("echo back")["echo"] == "back"
        assert dut.command("sim key A").ok  # back to idle from whatever digits got through
        used.append(dut.command("status")["heap_used"])
    assert "nomem" in codes and "unknown" in codes, codes
    assert dut.command("screen")["screen"] == "idle"
    # Nothing held on to: a first squeeze may leave a little for good (names interned by a cut
    # import, a pool), a leak would grow with every round.
    assert used[0] - before < 4096 and max(used) - min(used) < 1024, (before, used)


# A burst of every kind of line, good and bad, long and short, sent while the heap is held.
_BURST = [b"status", b"echo " + b"x" * 1000, b"help", b"nosuch", b"echo \xff\xfe", b"echo a\x01b",
          b"echo " + b"y" * 1500, b"sim key 1", b"param get region", b"screen raw", b"link",
          b"param export", b"sim key A"] * 3


def test_a_burst_of_lines_while_memory_is_exhausted_gets_one_reply_each(vterm_factory):
    dut = vterm_factory(heap=SQUEEZE_HEAP)
    dut.wait_ready(15)
    for left in (0, 0, 300, 800):
        _until_ok(dut, "sim squeeze %d 2500" % left)  # itself at the heap's edge after the last round
        dut.write(b"".join(line + b"\r\n" for line in _BURST))
        time.sleep(3)                      # all handled, the squeeze over
        dut.write(b"echo end-marker\r\n")
        m = dut.expect(rb'OK \{"echo": "end-marker"\}\r?\n', 15)
        before = m.string[:m.start()]
        assert b"Traceback" not in before, before.decode("utf-8", "replace")
        replies = re.findall(rb"^(?:OK|ERR) .*$", before, re.M)
        assert len(replies) == len(_BURST), b"\n".join(r[:60] for r in replies).decode("utf-8", "replace")
    # and the devices behind the simulated buses are still in step: the display and the keypad
    # (at 64K after such a burst a command may still meet a full heap once: it says so)
    _until_ok(dut, "sim key 1 A")
    assert _until_ok(dut, "screen")["screen"] == "idle"
    _until_ok(dut, "status")
