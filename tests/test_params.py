"""Parameters through the console: get/set/export, validation errors as the user
sees them, operators and lockout, chunked import by the provision tool."""
import base64
import json
import os
import time
import zlib

import pytest

from roampos import ROOT
from roampos import provision
from console_helpers import ok, err

EXAMPLE = os.path.join(ROOT, "examples", "params", "shanghai-merchant.json")
VTERM_PARAMS = EXAMPLE
pytestmark = pytest.mark.simulation
# The default 128K heap (tests/conftest.py): a provisioned terminal runs its link (~15 KB) and
# parameter commands need the next qstr pool in one piece on the 64-bit unix port; see README, heap.




def test_get_and_export_hold_no_secrets(dut):
    assert ok(dut, "param get merchant.id")["value"] == "310115581234567"
    assert ok(dut, "param get profiles.440300.limits.per_txn")["value"] == 5000000
    assert ok(dut, "param get authorized.1.region")["value"] == "330100"
    assert ok(dut, "param get profiles")["value"] == ["310000", "330100", "440300"]
    assert ok(dut, "param get profiles.310000.network.wifi.0.psk")["value"] == "***"
    err(dut, "param get merchant.nope", "notfound", "no parameter 'merchant.nope'")
    err(dut, "param get colour", "badpath", "unknown parameter 'colour'")
    dut.send("param export")
    raw = dut.expect(r"(OK|ERR) [^\n]*\n").group(0).decode()
    assert raw.startswith("OK "), raw
    for secret in ("pin_hash", "change-me-shop-wifi", "expo-hall-3-pass", '"hash"', '"salt"'):
        assert secret not in raw, "export leaks %s: %s" % (secret, raw[:300])
    exported = json.loads(raw[3:])["set"]
    assert exported["merchant"]["terminal_id"] == "SH000001"
    assert [o["id"] for o in exported["operators"]] == ["01", "02", "03"]


def test_an_error_quoting_a_json_key_stays_one_line(dut):
    # The field name in an `invalid` error comes from the user's JSON, escapes decoded: a CR LF in
    # it must not end the reply and start a second line that reads as an OK.
    ok(dut, "login 01 123456")
    dut.flush_input()
    dut.write(b'param set profiles.310000.network.apn {"46\\r\\nOK {}": "cmnet"}\r\n')
    r = dut.next_reply()
    assert r.raw.startswith("ERR invalid ") and "\\x0d\\x0a" in r.raw, r.raw
    assert ok(dut, "echo next")["echo"] == "next"   # and the next reply is the next command's
    ok(dut, "logout")


def test_set_needs_admin(dut):
    err(dut, "param set profiles.310000.limits.offline_floor 30000", "denied", "needs a admin login")
    ok(dut, "login 02 2222")
    err(dut, "param set profiles.310000.limits.offline_floor 30000", "denied", "operator 02 is supervisor")


@pytest.mark.parametrize("path,value,text", [
    ("merchant.id", '"31011558123"', "invalid merchant.id: must be 15 digits, got '31011558123'"),
    ("merchant.terminal_id", '"SH01"', "invalid merchant.terminal_id: length 4, must be 8"),
    ("authorized.0.region", '"810000"', "invalid authorized[0].region: unknown region 810000: no profile"),
    ("authorized.0.to", '"2025-13-01"', "invalid authorized[0].to: must be a date YYYY-MM-DD"),
    ("profiles.440300.fees.card.bps", "1500", "invalid profiles.440300.fees.card.bps: 1500 out of range 0..1000"),
    ("profiles.440300.fees.card.cap", "-1", "invalid profiles.440300.fees.card.cap: -1 out of range"),
    ("profiles.310000.currency", '"CNY"', "invalid profiles.310000.currency: must be an integer, got 'CNY'"),
    ("profiles.310000.methods", '["card", "cash"]', "invalid profiles.310000.methods[1]: unknown method 'cash'"),
    ("merchant.home_region", '"810000"', "invalid merchant.home_region: no profile for home region 810000"),
    ("profiles.310000.limits.per_txn", "{bad json", "invalid value for profiles.310000.limits.per_txn is not JSON"),
])
def test_set_validation_errors(dut, path, value, text):
    ok(dut, "login 01 123456")
    before = ok(dut, "param check")["digest"]
    r = dut.command("param set %s %s" % (path, value))
    shown = "%s %s" % (r.code, r.message)
    assert not r.ok and shown.startswith(text), "sent param set %s %s\nwant: %s\ngot:  %s" % (path, value, text, r.raw)
    assert ok(dut, "param check")["digest"] == before, "a refused set changed the parameters"


def test_set_is_stored_and_survives_reset(dut):
    ok(dut, "login 01 123456")
    r = ok(dut, "param set profiles.310000.limits.offline_floor 30000")
    assert r["path"] == "profiles.310000.limits.offline_floor"
    ok(dut, 'param set merchant.name "Huangpu Tea House No.2"')
    err(dut, "param set operators.0.role \"cashier\"", "refused", "use param import, operator or region use")
    dut.reboot_and_wait()
    assert ok(dut, "param get profiles.310000.limits.offline_floor")["value"] == 30000
    assert ok(dut, "param get merchant.name")["value"] == "Huangpu Tea House No.2"
    assert ok(dut, "param check")["ok"] is True


def test_wrong_pins_lock_operator_across_reset(dut):
    err(dut, "login 03 0000", "denied", "2 tries left")
    err(dut, "login 03 1111", "denied", "1 try left")
    err(dut, "login 03 9999", "locked", "operator 03 is now locked")
    dut.reboot_and_wait()
    err(dut, "login 03 3333", "locked", "operator 03 is locked after 3 wrong PINs")
    err(dut, "login 99 1234", "denied", "unknown operator or wrong PIN")
    # A PIN typed where the operator ID goes (arguments swapped) is not echoed or journaled.
    err(dut, "login 123456 01", "denied", "unknown operator or wrong PIN")
    log = ok(dut, "param log 20")["log"]
    fails = [e for e in log if e["ev"] == "login_failed"]
    assert [e["why"] for e in fails][-6:] == ["wrong PIN"] * 3 + ["locked"] + ["unknown operator"] * 2, fails
    assert "9999" not in json.dumps(log) and "3333" not in json.dumps(log) and "123456" not in json.dumps(log)
    assert fails[-1]["op"] == "?"
    dut.flush_input()
    with open(dut.log.name, "rb") as f:
        console_text = f.read()
    assert b'"login_failed": "123456"' not in console_text and b'"login_failed": "?"' in console_text
    ok(dut, "login 01 123456")
    assert ok(dut, "operator passwd 03 4321")["pin"] == "changed"
    assert ok(dut, "login 03 4321") == {"operator": "03", "role": "cashier"}


def test_a_failed_login_ends_the_session_before_it(dut):
    # Whoever types a login is at the terminal: a wrong PIN (or an unknown operator) must not leave
    # the supervisor's session open for them.
    ok(dut, "login 02 2222")
    assert ok(dut, "status")["operator"] == "02"
    err(dut, "login 03 1", "denied", "unknown operator or wrong PIN")
    assert ok(dut, "status")["operator"] is None
    err(dut, "region use 440300", "denied", "needs a supervisor login")
    ok(dut, "login 02 2222")
    err(dut, "login 99 1", "denied", "unknown operator or wrong PIN")
    err(dut, "region use 440300", "denied", "needs a supervisor login")
    ok(dut, "login 01 123456")
    assert ok(dut, "operator passwd 03 3333")["pin"] == "changed"   # 03's try counted above
    ok(dut, "logout")


def test_last_admin_waits_instead_of_locking_for_good(vterm_factory):
    """Only reflashing could unlock the last admin: past the limit its tries are spaced out instead
    (1 min, doubling), on uptime since the last wrong PIN or since boot, so a reset does not help."""
    dut = vterm_factory(params=EXAMPLE)   # its own terminal: this one stays locked for a minute
    dut.wait_ready(15)
    err(dut, "login 01 000000", "denied", "2 tries left")
    err(dut, "login 01 111111", "denied", "1 try left")
    err(dut, "login 01 999999", "locked", "wrong PIN; operator 01 is the last admin: next try in 60 s")
    err(dut, "login 01 123456", "locked", "operator 01 is the last admin: next try in")  # even the right PIN
    # Others' wrong PINs do not restart its wait (a cashier could keep the admin out for good).
    time.sleep(2.2)
    err(dut, "login 03 0000", "denied", "2 tries left")
    r = dut.command("login 01 123456")
    assert r.code == "locked" and int(r.message.split("next try in ")[1].split()[0]) <= 58, r.raw
    dut.reboot_and_wait()
    r = dut.command("login 01 123456")
    assert r.code == "locked" and "next try in" in r.message, r.raw
    assert 0 < int(r.message.split("next try in ")[1].split()[0]) <= 60, r.raw
    ok(dut, "login 02 2222")      # the others are not affected


def test_operator_add_remove(dut):
    ok(dut, "login 01 123456")
    assert ok(dut, "operator add 07 supervisor 7777")["role"] == "supervisor"
    err(dut, "operator add 07 cashier 1234", "exists", "operator 07 exists")
    err(dut, "operator add 08 boss 1234", "invalid", "role must be")
    err(dut, "operator add 08 cashier 12", "badpin", "PIN must be 4 to 12 digits")
    err(dut, "operator remove 01", "refused", "operator 01 is the last admin")
    ok(dut, "login 07 7777")
    err(dut, "operator add 09 cashier 1234", "denied", "needs a admin login")
    ids = [o["id"] for o in ok(dut, "operator list")["operators"]]
    assert "07" in ids, ids
    ok(dut, "login 01 123456")
    assert ok(dut, "operator remove 07") == {"removed": "07"}
    err(dut, "login 07 7777", "denied", "unknown operator")


def _import_lines(s):
    raw = json.dumps(s, separators=(",", ":")).encode()
    return raw, zlib.crc32(raw) & 0xFFFFFFFF


def test_import_bad_checksum_or_chunk_keeps_old_set(dut):
    ok(dut, "login 01 123456")
    before = ok(dut, "param check")["digest"]
    s = provision.load_set(EXAMPLE)
    raw, crc = _import_lines(s)
    ok(dut, "param import begin %d %08x" % (len(raw), crc ^ 1))
    for off in range(0, len(raw), 600):
        ok(dut, "param import data %d %s" % (off, base64.b64encode(raw[off:off + 600]).decode()))
    err(dut, "param import commit", "badimport", "checksum")
    ok(dut, "param import begin %d %08x" % (len(raw), crc))
    err(dut, "param import data 600 %s" % base64.b64encode(raw[600:900]).decode(), "badchunk",
        "chunk at offset 600, expected 0; import aborted")
    err(dut, "param import commit", "noimport", "no import in progress")
    ok(dut, "param import begin %d %08x" % (len(raw), crc))
    err(dut, "param import data 0 !!!notbase64", "badchunk", "not base64")
    # MicroPython's decoder skips what is not base64 ("QUFB!" would be "AAA"): refused all the same
    for bad in ("QUFB!", "!!!!", "QU=B", "QUF"):
        ok(dut, "param import begin %d %08x" % (len(raw), crc))
        err(dut, "param import data 0 %s" % bad, "badchunk", "not base64")
    ok(dut, "param import begin 4 %08x" % crc)      # more bytes than announced
    err(dut, "param import data 0 %s" % base64.b64encode(b"{}{}{}").decode(), "badchunk",
        "chunk ends past the 4 bytes announced")
    assert ok(dut, "param check")["digest"] == before


def test_import_invalid_set_keeps_old_set(dut):
    ok(dut, "login 01 123456")
    before = ok(dut, "param check")["digest"]
    s = provision.load_set(EXAMPLE)
    s["profiles"]["440300"]["fees"]["qr"]["bps"] = 5000
    raw, crc = _import_lines(s)
    ok(dut, "param import begin %d %08x" % (len(raw), crc))
    for off in range(0, len(raw), 600):
        ok(dut, "param import data %d %s" % (off, base64.b64encode(raw[off:off + 600]).decode()))
    err(dut, "param import commit", "invalid", "profiles.440300.fees.qr.bps: 5000 out of range 0..1000; import aborted")
    bad = b"{" + raw[1:-5]
    ok(dut, "param import begin %d %08x" % (len(bad), zlib.crc32(bad)))
    ok(dut, "param import data 0 %s" % base64.b64encode(bad[:600]).decode())
    for off in range(600, len(bad), 600):
        ok(dut, "param import data %d %s" % (off, base64.b64encode(bad[off:off + 600]).decode()))
    err(dut, "param import commit", "invalid", "parameter set is not JSON")
    assert ok(dut, "param check")["digest"] == before


def test_provision_tool_replaces_set(dut):
    s = provision.load_set(EXAMPLE)
    s["version"] = 2
    s["operators"][0]["pin_hash"] = provision.load_set(EXAMPLE)["operators"][0]["pin_hash"]
    del s["profiles"]["330100"]
    s["authorized"] = [g for g in s["authorized"] if g["region"] != "330100"]
    ok(dut, "logout")
    with pytest.raises(provision.ProvisionError, match="denied needs a admin login"):
        provision.provision(dut, s)
    res = provision.provision(dut, s, "01", "123456")
    assert res == {"import": "done", "version": 2, "region": "310000"}, res
    assert ok(dut, "param get version")["value"] == 2
    assert ok(dut, "param get profiles")["value"] == ["310000", "440300"]
    assert ok(dut, "status")["operator"] is None  # import logs the operator out
    dut.reboot_and_wait()
    assert ok(dut, "status")["params_version"] == 2


def test_import_refuses_an_older_version(dut):
    """After version 2 (test_provision_tool_replaces_set) dropped region 330100, version 1 would
    bring the revoked grant back."""
    assert ok(dut, "param get version")["value"] == 2
    with pytest.raises(provision.ProvisionError, match="stale parameter set version 1 is not newer than the current 2"):
        provision.provision(dut, provision.load_set(EXAMPLE), "01", "123456")
    assert ok(dut, "status")["operator"] is None   # the tool gave up: its admin session is closed
    assert ok(dut, "param get profiles")["value"] == ["310000", "440300"]
    assert not dut.command("region use 330100").ok


def test_secret_and_odd_values_are_not_echoed(dut):
    ok(dut, "login 01 123456")
    r = dut.command("param set profiles.310000.network.wifi.0.psk NewShopWifiKey2026")
    assert r.code == "invalid" and "NewShopWifiKey2026" not in r.raw, r.raw
    r = dut.command("param set profiles.310000.network.wifi.0.psk 1234567890")
    assert r.code == "invalid" and "1234567890" not in r.raw, r.raw
    # a key inside a bigger value that is not JSON either (cut short, pasted wrong)
    for path in ("profiles.310000.network.wifi", "profiles.310000.network", "profiles.310000"):
        r = dut.command('param set %s [{"ssid":"a","psk":"secret-psk"}' % path)
        assert r.code == "invalid" and "secret-psk" not in r.raw, r.raw
    err(dut, "param get authorized.99999999999999999999", "notfound", "no parameter")
    err(dut, "param get authorized.-1", "notfound", "no parameter")


def test_network_and_import_control_need_an_admin(dut):
    ok(dut, "logout")
    err(dut, 'link set {"wifi": [{"ssid": "free-wifi", "psk": ""}]}', "denied", "needs a admin login")
    err(dut, "param import abort", "denied", "needs a admin login")
    ok(dut, "login 01 123456")
    assert ok(dut, "param import abort") == {"import": "aborted"}


@pytest.mark.parametrize("line", ["operator passwd 482913 03", "operator remove 482913"])
def test_an_unknown_operator_id_is_not_echoed(dut, line):
    # Typed in the wrong order (`operator passwd <new PIN> <id>`) the "ID" is the new PIN: it must
    # not land on the console and in bench logs, as login already never echoes one.
    ok(dut, "login 01 123456")
    r = dut.command(line)
    assert r.code == "notfound" and "482913" not in r.raw, r.raw
    ok(dut, "logout")


def test_param_set_cannot_grow_the_set_past_16_profiles(dut):
    # The schema allows 1..16 region profiles (an import refuses a 17th): `param set` of new
    # profiles kept adding, and `param check` called the result sound.
    with open(VTERM_PARAMS) as f:
        profile = json.dumps(json.load(f)["profiles"]["310000"], separators=(",", ":"))
    ok(dut, "login 01 123456")
    n = len(ok(dut, "param get profiles")["value"])
    codes = ["%d0000" % c for c in range(11, 80) if "%d0000" % c not in ("310000", "440300", "330100")]
    refused = None
    for code in codes[:17 - n]:
        r = dut.command("param set profiles.%s %s" % (code, profile), 10)
        if not r.ok:
            refused = r
            break
    assert refused is not None and refused.code == "invalid" and "16" in refused.message, refused
    assert len(ok(dut, "param get profiles")["value"]) == 16
    assert ok(dut, "param check", 10)["ok"] is True
    ok(dut, "logout")
