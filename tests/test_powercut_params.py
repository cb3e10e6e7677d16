"""Power-cut campaign: SIGKILL the vterm at random instants during parameter
writes and region switches; after every restart the set is exactly the old or
the new one, passes `param check`, and the terminal is ready."""
import os
import random
import re
import time

import pytest

from roampos import ROOT
from console_helpers import ok

VTERM_PARAMS = os.path.join(ROOT, "examples", "params", "shanghai-merchant.json")
CUTS = int(os.environ.get("ROAMPOS_CUTS", "220"))
MAX_DELAY_MS = 25  # a write takes ~10 ms on the vterm; cuts land before, in and after it
_READY = re.compile(rb'(?s)(.*?)EVT \{[^\n]*"ready": true[^\n]*\n')
pytestmark = pytest.mark.simulation



def observe(dut):
    chk = dut.command("param check")
    assert chk.ok, "param check after restart: %r" % chk.raw
    floor = ok(dut, "param get profiles.310000.limits.offline_floor")["value"]
    s = ok(dut, "status")
    assert s["mode"] == "ready", "not at the idle screen after restart: %r" % s
    assert s["region"] == chk.data["region"]
    # The whole set's content (record bytes differ between CPython's and
    # MicroPython's JSON key order, so compare content, not digests).
    return (floor, s["region"]), ok(dut, "param export")["set"]


def test_power_cut_campaign(dut, capsys):
    rnd = random.Random(int(os.environ.get("ROAMPOS_SEED", "4")))
    digests = {}
    cur, d = observe(dut)
    digests[cur] = d
    cuts = failures = olds = news = 0
    t0 = time.monotonic()
    for i in range(CUTS):
        floor, region = cur
        if i % 2 == 0:
            new = (50000 - floor, region)  # 20000 <-> 30000
            line = "param set profiles.310000.limits.offline_floor %d" % new[0]
        else:
            new = (floor, "440300" if region == "310000" else "310000")
            line = "region use %s" % new[1]
        try:
            ok(dut, "login 01 123456")
            dut.flush_input()
            dut.send(line)
            time.sleep(rnd.uniform(0, MAX_DELAY_MS) / 1000.0)
            dut.power_cut()
            cuts += 1
            before = dut.expect(_READY, 15).group(1)
            got, d = observe(dut)
            replied = b"OK {" in before
            if got not in (cur, new) or (replied and got != new):
                raise AssertionError("cut %d during %r: had %r, wanted %r, got %r (reply seen: %s)" % (
                    i, line, cur, new, got, replied))
            if digests.setdefault(got, d) != d:
                raise AssertionError("cut %d: set %r is not the same set as before:\n%r\n%r" % (
                    i, got, d, digests[got]))
            olds += got == cur
            news += got == new
            cur = got
        except AssertionError as e:
            failures += 1
            print("FAIL", e)
            dut.reboot_and_wait(timeout=15)
            cur, _ = observe(dut)
    took = time.monotonic() - t0
    with capsys.disabled():  # the campaign's figures belong in every run's output
        print("\npower-cut campaign: %d cuts, %d failures (old set %d, new set %d) in %.1f s"
              % (cuts, failures, olds, news, took))
    assert cuts >= 200 and failures == 0, "%d cuts, %d failures" % (cuts, failures)
    assert olds > 10 and news > 10, "cuts did not land both before and after commits: %d/%d" % (olds, news)
