"""The firmware's heap on a 32-bit MicroPython, the size its objects have on
the boards (issue 2's 24 KB budget after boot): the same ROMFS and flash
files booted through boot.py and main.py to the ready event on MicroPython's
WebAssembly port, with the vterm's device models on the buses
(roampos.vterm.wasm32). The 64-bit vterm's figure is guarded in
test_small_heap.py."""
import pytest

from roampos.vterm import wasm32

pytestmark = pytest.mark.simulation


@pytest.fixture(scope="module")
def fig():
    return wasm32.boot()


def test_boots_to_ready_on_a_32_bit_port(fig):
    assert fig["port"]["pointer_bytes"] == 4
    ev = fig["ready"]
    assert ev["ready"] is True and ev["board"] == "vterm", ev


def test_drivers_drove_the_device_models(fig):
    # The display was initialised and the idle screen drawn through the
    # bus bridge; no frame made the models complain.
    m = fig["models"]
    assert m["display_on"] and m["lit_pixels"] > 100, m
    assert m["bus_errors"] == 0, m


def test_firmware_heap_after_boot_within_24_kb(fig):
    # heap_used at ready less the simulated buses and the port's Python
    # stdlib (C modules on a board); the port's asyncio stays counted.
    share = wasm32.firmware_share(fig)
    assert 0 < fig["ready"]["heap_models"] < 8 * 1024, fig
    assert 4 * 1024 < fig["port"]["stdlib"] < 16 * 1024, fig
    assert share <= 24 * 1024, "firmware heap at ready on 32-bit: %d B (%r)" % (share, fig)
