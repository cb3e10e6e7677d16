"""The firmware boots and serves its console in a 64 KB MicroPython heap."""
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


def test_a_card_read_out_of_memory_loses_the_tap_not_the_terminal(vterm_factory):
    # On this 64-bit port a card read in a sale fits 64K (unprovisioned) but not 56K, where it runs
    # out of memory. The tap is reported lost; the reader, the keypad and the sale flow carry on.
    dut = vterm_factory(heap="56K")
    dut.wait_ready(15)
    dut.events.clear()
    assert dut.command("sim key 1 2 5 C").ok
    dut.wait_event(lambda e: e.get("sale", {}).get("state") == "waiting card", 5)
    assert dut.command("sim tap visa").ok
    ev = dut.wait_event(lambda e: "reader" in e or "card" in e.get("sale", {}), 10)
    assert ev.get("reader") == "error" and "MemoryError" in ev["error"], ev
    assert dut.command("sim remove").ok
    assert dut.command("sim key A").ok          # the keypad still answers: the sale is cancelled
    dut.wait_event(lambda e: e.get("sale", {}).get("state") == "cancelled", 5)
    r = dut.command("echo still here")          # the console answers: OK, or a clear ERR nomem
    assert r.ok or r.code == "nomem", r.raw     # (the read's names stay interned: 64K is tight)
