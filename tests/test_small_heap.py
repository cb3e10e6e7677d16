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
