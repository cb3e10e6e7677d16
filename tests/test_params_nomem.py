"""Running out of memory in the middle of a parameter change: the terminal acts on what flash
holds, and its answer says which: `OK`, `ERR nomem ... running` (nothing changed) or
`ERR nomem ... saved to flash` (changed). `sim squeeze` and the command go in one write, the
bytes left swept so that the failure lands at different points of the command."""
import time

import pytest

from console_helpers import example_set_with, ok
from test_region_link import _shop_wifi_in_shenzhen
from test_sim_link import status_until

pytestmark = pytest.mark.simulation


def _squeezed(dut, left, line, ms=1000):
    dut.flush_input()
    dut.write(("sim squeeze %d %d\r\n%s\r\n" % (left, ms, line)).encode())
    dut.next_reply(10)                 # the squeeze's OK (or ERR: then the command runs unsqueezed)
    r = dut.next_reply(10)
    time.sleep(ms / 1000 + 0.3)        # the squeeze lets go
    return r


def _last_switch(dut):
    log = [e for e in ok(dut, "param log 50")["log"] if e.get("ev") == "region"]
    return log[-1]["to"] if log else None


def test_region_use_out_of_memory_never_leaves_state_and_flash_apart(vterm_factory):
    dut = vterm_factory(params=example_set_with(_shop_wifi_in_shenzhen, "roampos-nomem-"))
    dut.wait_ready(15)
    seen = set()
    for left in range(8000, 40000, 1000):
        ok(dut, "login 02 2222")
        before = ok(dut, "param get active.region")["value"]
        target = "440300" if before == "310000" else "310000"
        r = _squeezed(dut, left, "region use %s" % target)
        st = ok(dut, "status")
        if st["mode"] != "ready":      # saved but not applied: the terminal asks for a reboot
            assert "reboot" in st["mode_detail"], st
            dut.reboot_and_wait()
            st = ok(dut, "status")
        flash = ok(dut, "param get active.region")["value"]
        name = ok(dut, "param get profiles.%s.name" % flash)["value"]
        assert (st["region"], st["region_name"]) == (flash, name), (left, r.raw, st)
        if r.ok or "saved to flash" in r.message:
            assert flash == target, (left, r.raw)
            if st["mode"] == "ready":        # acted on: logged, and the link takes its networks
                assert _last_switch(dut) == target, (left, r.raw)
                if "saved" not in seen or "ok" not in seen:
                    status_until(dut, lambda s: s.get("link") == ("wifi" if target == "440300" else "cell"),
                                 timeout=20, what="the link of region %s after %r" % (target, r.raw))
            seen.add("ok" if r.ok else "saved")
        else:
            assert r.code == "nomem" and flash == before, (left, r.raw, flash)
            seen.add("nomem")
    print("outcomes seen:", sorted(seen))
    assert {"ok", "nomem"} <= seen, seen   # the sweep did reach into the command
