"""`param import commit` running out of memory part-way: the terminal keeps using exactly the old
set (RAM as flash: the same `status`, `param export`, `region list` and `region use` answers as
before the import), answers `ERR nomem`, keeps the import for a retry, and the same after a
reboot. The bytes left free are swept so that the failure lands at every point of the commit."""
import base64
import json
import os
import time
import zlib

import pytest

from roampos import ROOT, provision

from console_helpers import example_set_with, ok

pytestmark = pytest.mark.simulation


def _old(s):
    # Version 1: Shenzhen granted today; Hangzhou granted, with its own grant ID.
    s["version"] = 1


def _new_set():
    # Version 2 changes what an old/new mix would show: Shenzhen's grant is another one, over since
    # 2020 (old ID beside new dates was the reviewer's "ACQ-2026-SZ-0017 ... expired on 2020-12-31"),
    # Hangzhou is dropped, profile names change.
    s = provision.load_set(os.path.join(ROOT, "examples", "params", "shanghai-merchant.json"))
    s["version"] = 2
    s["authorized"] = [{"region": "440300", "from": "2020-01-01", "to": "2020-12-31",
                        "grant": "ACQ-2020-SZ-0099"}]
    del s["profiles"]["330100"]
    s["profiles"]["440300"]["name"] = "Shenzhen v2"
    s["profiles"]["310000"]["name"] = "Shanghai v2"
    return s


def _view(dut):
    # What the terminal answers about its parameters (not the operator: a commit logs out).
    st = ok(dut, "status")
    st = dict((k, st.get(k)) for k in ("mode", "region", "region_name", "params_version"))
    ok(dut, "login 02 2222")
    use = dut.command("region use 440300")   # from 310000: switches (then back) or refuses
    if use.ok and use.data.get("changed"):
        ok(dut, "region use 310000")
    return {"status": st, "export": ok(dut, "param export")["set"],
            "regions": ok(dut, "region list"), "digest": ok(dut, "param check")["digest"],
            "use": use.raw if not use.ok else use.data}


def _upload(dut, raw):
    ok(dut, "param import begin %d %08x" % (len(raw), zlib.crc32(raw) & 0xFFFFFFFF))
    for off in range(0, len(raw), 600):
        ok(dut, "param import data %d %s" % (off, base64.b64encode(raw[off:off + 600]).decode()))


def _squeezed_commit(dut, left, ms=1000):
    dut.flush_input()
    dut.write(("sim squeeze %d %d\r\nparam import commit\r\n" % (left, ms)).encode())
    dut.next_reply(10)
    r = dut.next_reply(15)
    time.sleep(ms / 1000 + 0.3)
    return r


def test_import_commit_out_of_memory_keeps_exactly_the_old_set(vterm_factory):
    dut = vterm_factory(params=example_set_with(_old, "roampos-impnomem-"))
    dut.wait_ready(15)
    ok(dut, "login 01 123456")
    before = _view(dut)
    assert before["status"]["params_version"] == 1 and before["use"]["changed"], before
    raw = json.dumps(_new_set(), separators=(",", ":")).encode()
    failures = 0
    done = None
    for left in range(4000, 64000, 1000):
        ok(dut, "login 01 123456")
        _upload(dut, raw)
        r = _squeezed_commit(dut, left)
        if r.ok:
            done = left
            break
        assert r.code == "nomem", (left, r.raw)
        st = ok(dut, "status")
        if "saved to flash" in r.message:       # in flash after all: the terminal says so
            assert st["params_version"] == 2 or st["mode"] == "reboot needed", (left, r.raw, st)
            done = left
            break
        failures += 1
        after = _view(dut)
        assert after == before, (left, r.raw, before, after)
        # Nothing lost: the import is still there, a commit with memory to spare would take it;
        # an abort drops it.
        ok(dut, "login 01 123456")
        probe = dut.command("param import data %d QUFB" % len(raw))   # past its end: aborts it
        assert probe.code == "badchunk" and "announced" in probe.message, (left, r.raw, probe.raw)
        if failures % 8 == 1:
            dut.reboot_and_wait(timeout=15)
            assert _view(dut) == before, (left, r.raw)
    assert failures and done, (failures, done)   # the sweep reached into the commit and past it
    assert ok(dut, "status")["params_version"] == 2


def test_import_commit_retried_after_out_of_memory(vterm_factory):
    dut = vterm_factory(params=example_set_with(_old, "roampos-impnomem-"))
    dut.wait_ready(15)
    ok(dut, "login 01 123456")
    before = _view(dut)
    raw = json.dumps(_new_set(), separators=(",", ":")).encode()
    for left in range(4000, 64000, 1000):
        ok(dut, "login 01 123456")
        _upload(dut, raw)
        r = _squeezed_commit(dut, left)
        if r.ok or "saved" in r.message:
            pytest.fail("the sweep never failed a commit that changed nothing: %r" % r.raw)
        assert r.code == "nomem", r.raw
        if "import kept" in r.message:
            break
    assert _view(dut) == before
    ok(dut, "login 01 123456")
    res = ok(dut, "param import commit")      # the same import, not sent again
    assert res["version"] == 2, res
    assert ok(dut, "param get profiles")["value"] == ["310000", "440300"]
    dut.reboot_and_wait(timeout=15)
    assert ok(dut, "status")["params_version"] == 2
