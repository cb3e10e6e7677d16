"""Damaged or missing parameters at boot: a clear mode on the console (and
screen), an EVT alert, no boot loop, and fallback to the last good set."""
import json
import os
import re

import pytest

from roampos import ROOT
from roampos.image import open_image

EXAMPLE = os.path.join(ROOT, "examples", "params", "shanghai-merchant.json")
pytestmark = pytest.mark.simulation
HEAP = "128K"  # parameter commands after damage, with the link running: see README, heap


def _edit(flash, fn):
    # Change a file inside the (stopped) vterm's flash image with littlefs-python.
    fs = open_image(flash)
    with fs.open("/data/p/" + fn, "rb") as f:
        data = f.read()
    with fs.open("/data/p/" + fn, "wb") as f:
        f.write(EDITS[fn.split(".")[0]](data))
    with open(flash, "wb") as f:
        f.write(fs.context.buffer)


EDITS = {}


def _boot_damaged(vterm_factory, tmp_path, fn, edit):
    flash = str(tmp_path / "flash.img")
    d = vterm_factory(heap=HEAP, params=EXAMPLE, flash=flash)
    d.wait_ready(15)
    d.close()
    d.vterm.stop()
    EDITS[fn.split(".")[0]] = edit
    _edit(flash, fn)
    d = vterm_factory(heap=HEAP, flash=flash, fresh=False)
    alert = d.expect(r'EVT (\{"[^\n]*"alert"[^\n]*)\r?\n', 15).group(1).decode()
    d.wait_ready(15)
    return d, alert


@pytest.mark.parametrize("fn,edit,text", [
    ("merchant.1", lambda b: b[:-7], "merchant: truncated: 141 of 148 bytes"),
    ("r310000.1", lambda b: b.replace(b"Shanghai", b"Shanghaj"), "r310000: checksum mismatch"),
    # A self-consistent file that is not what the manifest recorded (e.g. a stray).
    ("ops.1", lambda b: _rehead(b, b"[{]}"), "ops: ops.1 is not the version the manifest names"),
    ("set", lambda b: b"RPR1 set 1 3 00000000\nxyz", "set: checksum mismatch"),
])
def test_damaged_set_is_reported_not_used(vterm_factory, tmp_path, fn, edit, text):
    d, alert = _boot_damaged(vterm_factory, tmp_path, fn, edit)
    assert "parameters damaged: " + text in alert, alert
    s = d.command("status").data
    assert s["mode"] == "parameters damaged" and s["mode_detail"].startswith(text), s
    assert s["region"] is None, s
    s = d.command("screen").data        # the mode whole, on two rows: not "PARAMETERS DAMAG"
    assert s["text"][2:4] == ["PARAMETERS", "DAMAGED"] and s["inverted"] == [2, 3], s
    r = d.command("region use 440300")
    assert r.code == "notready" and "PARAMETERS DAMAGED" in r.message, r.raw
    # Not "denied ... needs a admin login": no one can log in on a damaged terminal.
    for line in ('param set merchant.name "X"', "operator add 07 cashier 7777", "operator remove 03"):
        r = d.command(line)
        assert r.code == "notready" and "PARAMETERS DAMAGED" in r.message, (line, r.raw)
    assert d.command("param check").code == "damaged"
    assert d.command("echo still serving").data == {"echo": "still serving"}


def _rehead(b, payload):
    import zlib
    head = b[:b.index(b"\n")].split(b" ")
    return b" ".join(head[:3] + [b"%d" % len(payload), b"%08x" % zlib.crc32(payload)]) + b"\n" + payload


def test_not_provisioned(vterm_factory):
    d = vterm_factory(heap=HEAP)
    d.wait_ready(15)
    s = d.command("status").data
    assert s["mode"] == "not provisioned" and "roampos provision" in s["mode_detail"], s
    r = d.command("login 01 123456")
    assert r.code == "notready" and "NOT PROVISIONED" in r.message, r.raw
    r = d.command("param check")           # no set is not a damaged set
    assert r.code == "notready" and "NOT PROVISIONED" in r.message, r.raw
    from roampos import provision
    res = provision.provision(d, provision.load_set(EXAMPLE))
    assert res["import"] == "done" and d.command("status").data["mode"] == "ready"


def test_fallback_to_last_good_set(vterm_factory, tmp_path):
    flash = str(tmp_path / "flash.img")
    d = vterm_factory(heap=HEAP, params=EXAMPLE, flash=flash)
    d.wait_ready(15)
    assert d.command("login 02 2222").ok and d.command("region use 440300").ok
    d.close()
    d.vterm.stop()
    EDITS["active"] = lambda b: b[:-2]
    _edit(flash, "active.2")
    d = vterm_factory(heap=HEAP, flash=flash, fresh=False)
    alert = d.expect(r'EVT (\{"[^\n]*"alert"[^\n]*)\r?\n', 15).group(1).decode()
    d.wait_ready(15)
    assert re.search(r"active: truncated: \d+ of \d+ bytes; using previous version 1", alert), alert
    s = d.command("status").data
    assert (s["mode"], s["region"]) == ("ready", "310000"), s


def _restart_with_damaged(vterm_factory, tmp_path, action, fn):
    """Provision a vterm, run `action` (which writes file `fn`), flip one bit of it, restart."""
    flash = str(tmp_path / "flash.img")
    d = vterm_factory(heap=HEAP, params=EXAMPLE, flash=flash)
    d.wait_ready(15)
    action(d)
    d.close()
    d.vterm.stop()
    EDITS[fn] = lambda b: b[:-2] + bytes([b[-2] ^ 0x01]) + b[-1:]
    _edit(flash, fn)
    d = vterm_factory(heap=HEAP, flash=flash, fresh=False)
    d.wait_ready(15)
    return d


def test_damaged_failed_pin_counters_are_reset_not_fatal(vterm_factory, tmp_path):
    d = _restart_with_damaged(vterm_factory, tmp_path, lambda d: d.command("login 03 0000"), "tries")
    d.send("login 03 3333")
    alert = d.expect(r'EVT (\{[^\n]*"alert": "tries"[^\n]*)\r?\n', 10).group(1).decode()
    assert "damaged" in alert, alert
    assert d.next_reply().data == {"operator": "03", "role": "cashier"}
    assert "(2 tries left)" in d.command("login 03 0000").message   # counting again from zero


def test_damaged_batch_summary_is_reset_with_an_alert(vterm_factory, tmp_path):
    d = _restart_with_damaged(vterm_factory, tmp_path, lambda d: d.command("batch add 100"), "batch")
    d.send("batch")
    alert = d.expect(r'EVT (\{[^\n]*"alert": "batch"[^\n]*)\r?\n', 10).group(1).decode()
    assert "damaged" in alert, alert
    assert d.next_reply().data["batches"] == {}
    assert d.command("region use 440300").code != "internal"
    assert d.command("batch add 200").data["count"] == 1


# -- records with sound checksums that fail the schema ------------------------
def _files(flash):
    fs = open_image(flash)
    out = {}
    for fn in fs.listdir("/data/p"):
        with fs.open("/data/p/" + fn, "rb") as f:
            out[fn] = f.read()
    return out


def _retype(flash, name, change):
    # Rewrite record `name` of the (stopped) vterm's set as change(obj) with every checksum made
    # good again, its own and the manifest's: only the schema can tell it from a sound record.
    import zlib

    def encode(rec, v, obj):
        payload = json.dumps(obj, separators=(",", ":")).encode()
        return b"RPR1 %s %d %d %08x\n" % (rec.encode(), v, len(payload), zlib.crc32(payload)) + payload

    def body(data):
        return data[data.index(b"\n") + 1:]

    fs = open_image(flash)
    with fs.open("/data/p/set", "rb") as f:
        man = json.loads(body(f.read()))
    v = man["r"][name][0]
    with fs.open("/data/p/%s.%d" % (name, v), "rb") as f:
        data = encode(name, v, change(json.loads(body(f.read()))))
    with fs.open("/data/p/%s.%d" % (name, v), "wb") as f:
        f.write(data)
    man["r"][name][1] = zlib.crc32(body(data))
    with fs.open("/data/p/set", "wb") as f:
        f.write(encode("set", man["v"], man))
    with open(flash, "wb") as f:
        f.write(fs.context.buffer)


def _boot_retyped(vterm_factory, tmp_path, name, change, before=None):
    # A provisioned vterm (after `before(d)`), stopped, one record retyped, started again.
    flash = str(tmp_path / "flash.img")
    d = vterm_factory(heap=HEAP, params=EXAMPLE, flash=flash)
    d.wait_ready(15)
    if before:
        before(d)
    d.close()
    d.vterm.stop()
    _retype(flash, name, change)
    files = _files(flash)
    d = vterm_factory(heap=HEAP, flash=flash, fresh=False)
    # The alert comes before the ready event; a ready event first means no alert at all.
    first = json.loads(d.expect(r'EVT (\{[^\n]*"(?:alert|ready)"[^\n]*)\r?\n', 15).group(1))
    if first.get("ready") is not True:
        d.wait_ready(15)
    return d, flash, files, first


def _set(path, value):
    def change(obj):
        o = obj
        for k in path[:-1]:
            o = o[k]
        o[path[-1]] = value
        return obj
    return change


@pytest.mark.parametrize("name,change,text", [
    ("r310000", _set(["limits"], 5), "r310000: invalid profiles.310000.limits: must be an object"),
    ("r310000", _set(["fees", "card", "bps"], "0.55%"),
     "r310000: invalid profiles.310000.fees.card.bps: must be an integer, got '0.55%'"),
    ("grants", lambda g: {g[0]["region"]: g[0]}, "grants: invalid authorized: must be a list"),
    # Not the active region's profile: the whole set is checked, as an import checks it.
    ("r440300", _set(["limits", "per_txn"], -1),
     "r440300: invalid profiles.440300.limits.per_txn: -1 out of range 1..100000000000"),
    ("r310000", _set(["limits", "per_txn"], 12.5),
     "r310000: invalid profiles.310000.limits.per_txn: must be an integer, got 12.5"),
])
def test_a_record_that_fails_the_schema_is_reported_at_boot(vterm_factory, tmp_path, name, change, text):
    # Used to boot "ready" and fail later: a sale with a TypeError on the keypad, `region use`
    # with ERR internal, a limit of -1 refusing every amount.
    d, _, _, first = _boot_retyped(vterm_factory, tmp_path, name, change)
    assert first == {"alert": "params", "detail": "parameters damaged: " + text}, first
    s = d.command("status").data
    assert (s["mode"], s["mode_detail"], s["region"]) == ("parameters damaged", text, None), s
    for line in ("region use 440300", "region list", "batch add 100", "login 02 2222"):
        r = d.command(line)
        assert r.code == "notready" and "PARAMETERS DAMAGED" in r.message, (line, r.raw)
    # No sale on a set it cannot trust (it used to reach TAP CARD with no region, limits or currency).
    assert d.command("sim key 1 2 5 C").ok
    sale = d.wait_event(lambda e: "sale" in e, 5)["sale"]
    assert (sale["state"], sale["error"], sale["amount"]) == ("refused", "notready", 125), sale
    assert "NOT ALLOWED" in d.command("screen").data["text"][0], d.command("screen").raw
    r = d.command("param check")
    assert (r.code, r.message) == ("damaged", text), r.raw
    assert d.command("echo still serving").data == {"echo": "still serving"}


def test_a_set_that_fails_the_schema_loses_nothing_and_an_import_repairs_it(vterm_factory, tmp_path):
    def before(d):
        assert d.command("login 02 2222").ok and d.command("region use 440300").ok   # set.bak too
        assert d.command("batch add 250").ok

    d, flash, files, first = _boot_retyped(vterm_factory, tmp_path, "merchant", lambda m: [m], before)
    assert first.get("detail") == "parameters damaged: merchant: invalid merchant: must be an object", first
    assert d.command("status").data["mode"] == "parameters damaged"
    assert d.command("batch").data["batches"] == {"440300": [1, 250, 1]}
    d.close()
    d.vterm.stop()
    after = _files(flash)
    log = after.pop("log")
    assert log.startswith(files.pop("log")) and b"merchant: invalid merchant" in log
    assert after == files, "changed in flash: %s" % sorted(n for n in set(after) | set(files)
                                                          if after.get(n) != files.get(n))
    # Damaged, so open to provisioning without a login, as after a bad checksum.
    d = vterm_factory(heap=HEAP, flash=flash, fresh=False)
    d.wait_ready(15)
    from roampos import provision
    assert provision.provision(d, provision.load_set(EXAMPLE))["import"] == "done"
    s = d.command("status").data
    assert (s["mode"], s["region"]) == ("ready", "310000"), s
    assert d.command("param check").ok
    assert d.command("batch").data["batches"] == {"440300": [1, 250, 1]}
