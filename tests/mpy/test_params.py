# Parameter record codec, schema errors and the store's atomic commit, inside
# MicroPython. The store runs on VfsLfs2 over a RAM block device that can
# "lose power" after any number of block writes.
import json
import os
import vfs

from firmware import params_codec as codec
from firmware import params_schema as schema
from firmware import params_store as store
from firmware.params_codec import RecordError


class CutFlash:
    # RAM block device; writeblocks raises PowerCut once `budget` writes are used.
    def __init__(self, blocks=24, bs=4096):
        self.bs = bs
        self.n = blocks
        self.mem = bytearray(blocks * bs)
        self.writes = 0
        self.budget = -1

    def readblocks(self, block, buf, off=0):
        o = block * self.bs + off
        buf[:] = self.mem[o:o + len(buf)]

    def writeblocks(self, block, buf, off=None):
        if self.budget == 0:
            raise PowerCut()
        self.budget -= 1
        self.writes += 1
        o = block * self.bs + (off or 0)
        self.mem[o:o + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:
            return self.n
        if op == 5:
            return self.bs
        if op == 6:
            return 0
        return None


class PowerCut(Exception):
    pass


def mount(dev, fresh=False):
    try:
        vfs.umount("/t")
    except OSError:
        pass
    if fresh:
        vfs.VfsLfs2.mkfs(dev)
    vfs.mount(vfs.VfsLfs2(dev), "/t")
    store.DIR = "/t/p"
    store.IMPORT_TMP = "/t/import.tmp"
    store.man = None


def example():
    with open("examples/params/shanghai-merchant.json") as f:
        s = json.load(f)
    for o in s["operators"]:
        o.pop("pin")
        o["pin_hash"] = {"salt": "00" * 8, "n": 500, "hash": "ab" * 32}
    return s


def expect_error(fn, field, text):
    try:
        fn()
    except schema.ParamError as e:
        assert e.field == field and text in str(e), "got %r, want %s: ...%s" % (str(e), field, text)
        return
    raise AssertionError("no error for %s" % field)


def test_codec_round_trip_and_damage():
    data = codec.encode("merchant", 7, {"id": "1"})
    assert data.startswith(b"RPR1 merchant 7 10 "), data
    assert codec.decode_obj("merchant", data, 7) == (7, {"id": "1"})
    for bad, reason in ((data[:-3], "truncated"), (data[:-1] + b"X", "checksum"),
                        (data + b"!", "header"), (b"junk", "truncated"),
                        (codec.encode("ops", 7, []), "header")):
        try:
            codec.decode("merchant", bad, 7)
        except RecordError as e:
            assert e.reason == reason, (bad, e.reason, str(e))
        else:
            raise AssertionError("accepted %r" % bad)
    try:
        codec.decode("merchant", data, 8)
    except RecordError as e:
        assert "version 7, expected 8" in str(e), str(e)


def test_schema_accepts_example_and_names_fields():
    ver, recs = schema.split(example())
    assert ver == 1 and recs["active"] == {"region": "310000"}
    assert sorted(n for n in recs if n[0] == "r") == ["r310000", "r330100", "r440300"]

    def bad(path, value):
        s = example()
        obj = s
        keys = path.split(".")
        for k in keys[:-1]:
            obj = obj[int(k)] if isinstance(obj, list) else obj[k]
        obj[keys[-1] if isinstance(obj, dict) else int(keys[-1])] = value
        return lambda: schema.split(s)

    expect_error(bad("merchant.id", "12345"), "merchant.id", "must be 15 digits")
    expect_error(bad("merchant.terminal_id", "SH-00001"), "merchant.terminal_id", "not allowed")
    expect_error(bad("merchant.home_region", "990000"), "merchant.home_region", "not a GB/T 2260")
    expect_error(bad("authorized.0.region", "810000"), "authorized[0].region", "unknown region 810000")
    expect_error(bad("authorized.0.to", "2025-02-30"), "authorized[0].to", "YYYY-MM-DD")
    expect_error(bad("authorized.0.to", "2025-12-31"), "authorized[0].to", "ends (2025-12-31) before")
    expect_error(bad("profiles.440300.fees.card.bps", 1500), "profiles.440300.fees.card.bps",
                 "1500 out of range 0..1000")
    expect_error(bad("profiles.440300.limits.offline_floor", 10 ** 9),
                 "profiles.440300.limits.offline_floor", "out of range")
    expect_error(bad("profiles.310000.currency", "156"), "profiles.310000.currency", "must be an integer")
    expect_error(bad("operators.0.role", "boss"), "operators[0].role", "cashier, supervisor or admin")
    expect_error(bad("operators.1.pin", "2222"), "operators[1].pin", "clear PINs are not accepted")
    expect_error(bad("profiles.310000.colour", "red"), "profiles.310000.colour", "unknown field")
    # A PIN hash or salt that fails is named, never quoted: with the salt, it gives the PIN away.
    h = "87C2F7E4" + "ab" * 28
    s2 = example()
    s2["operators"][0]["pin_hash"]["hash"] = h
    try:
        schema.split(s2)
    except schema.ParamError as e:
        assert e.field == "operators[0].pin_hash.hash" and "87C2" not in str(e), str(e)
    else:
        raise AssertionError("upper-case hash accepted")
    # A salt of half a byte cannot be unhexlified at login: the set must be refused, not stored.
    expect_error(bad("operators.0.pin_hash.salt", "0" * 17), "operators[0].pin_hash.salt", "whole bytes")
    # A lone surrogate (JSON "\ud800") is no text the console could send back as UTF-8.
    expect_error(bad("profiles.310000.name", json.loads('"Shanghai\\ud800"')), "profiles.310000.name",
                 "not allowed")


def test_commit_and_read_back():
    dev = CutFlash()
    mount(dev, fresh=True)
    assert store.recover() == ("empty", None)
    ver, recs = schema.split(example())
    store.commit(recs, ver)
    assert store.get("merchant")["id"] == "310115581234567"
    store.commit({"active": {"region": "440300"}})
    store.man = None
    assert store.recover() == ("ok", None)
    assert store.get("active") == {"region": "440300"} and store.manifest()["v"] == 2
    assert "set.bak" in os.listdir("/t/p")


def snapshot():
    return dict((n, store.get(n)) for n in store.names())


def test_power_cut_at_every_block_write():
    # Cut after 0, 1, 2, ... block writes of one commit; after each cut the
    # recovered set is exactly the old or the new one.
    dev = CutFlash()
    mount(dev, fresh=True)
    ver, recs = schema.split(example())
    store.commit(recs, ver)
    old = snapshot()
    base = bytes(dev.mem)
    cuts = olds = news = 0
    n = 0
    while True:
        dev.mem[:] = base
        mount(dev)
        store.recover()
        dev.budget = n
        try:
            p = store.get("r440300")
            p["fees"]["card"]["bps"] = 99
            store.commit({"r440300": p, "active": {"region": "330100"}})
            done = True
        except (PowerCut, OSError):
            done = False
        dev.budget = -1
        mount(dev)
        how, why = store.recover()
        assert how == "ok", (n, how, why)
        got = snapshot()
        if got == old:
            olds += 1
        else:
            assert got["r440300"]["fees"]["card"]["bps"] == 99 and got["active"]["region"] == "330100", n
            news += 1
        if done:
            break
        cuts += 1
        n += 1
    print("cuts %d: old %d, new %d" % (cuts, olds, news))
    assert cuts >= 3 and olds >= 1 and news >= 1, (cuts, olds, news)


def test_fallback_to_previous_set_when_damaged():
    dev = CutFlash()
    mount(dev, fresh=True)
    ver, recs = schema.split(example())
    store.commit(recs, ver)
    store.commit({"active": {"region": "440300"}})
    with open("/t/p/active.2", "r+b") as f:  # flip a payload byte
        f.seek(30)
        f.write(b"X")
    store.man = None
    how, why = store.recover()
    assert how == "fallback" and "checksum mismatch" in why and "previous version 1" in why, why
    assert store.get("active") == {"region": "310000"}


def test_single_records_and_log():
    dev = CutFlash()
    mount(dev, fresh=True)
    store.recover()
    assert store.get_single("batch") is None
    store.put_single("batch", {"310000": [1, 100, 1]})
    store.put_single("batch", {"310000": [2, 300, 2]})
    assert store.get_single("batch") == {"310000": [2, 300, 2]}
    store.log({"ev": "a"})
    with open("/t/p/log", "ab") as f:
        f.write(b"\n0000dead {\"torn")  # a power cut in the middle of log()
    store.log({"ev": "b"})
    entries, bad = store.read_log(10)
    assert [e["ev"] for e in entries] == ["a", "b"] and bad == 1, (entries, bad)


# -- boot load (params.load: params_boot alone on a sound store, the full
#    recover through params_core otherwise) ----------------------------------

def files():
    return sorted(os.listdir("/t/p"))


def boot_load():
    # params.load() against /t. It unloads the parameter modules, so the ones
    # it imports are fresh: point those at /t first.
    import sys
    from firmware import params, params_boot, params_store

    params_boot.DIR = params_store.DIR = "/t/p"
    params_boot.TMP = params_store.IMPORT_TMP = "/t/import.tmp"
    params.load()
    for name in ("firmware.params_boot", "firmware.params_store", "firmware.params_core"):
        assert name not in sys.modules, name  # unloaded again
    from firmware import state

    return state


def alerts():
    return [e["detail"] for e in store.read_log(20)[0] if e.get("ev") == "alert"]


_dev = []


def provisioned(second=None):
    # A store with the example set (commit 1) and optionally a second commit,
    # on a fresh filesystem (one RAM device per test: the heap is not endless).
    if not _dev:
        _dev.append(CutFlash())
    dev = _dev[0]
    mount(dev, fresh=True)
    store.recover()
    ver, recs = schema.split(example())
    store.commit(recs, ver)
    if second:
        store.commit(second)
    return dev


def test_boot_reader_on_a_sound_store():
    from firmware import params_boot as boot

    provisioned()
    for fn in files():
        os.remove("/t/p/" + fn)
    os.rmdir("/t/p")
    assert boot.scan("/t/p", "/t/import.tmp") == {}  # makes the directory
    assert files() == []
    provisioned()
    with open("/t/import.tmp", "wb") as f:  # an import cut short by a reset
        f.write(b"x")
    before = files()
    m = boot.scan("/t/p", "/t/import.tmp")
    assert m == store.manifest() and m["v"] == 1, m
    assert files() == before and "import.tmp" not in os.listdir("/t")
    assert store.recover() == ("ok", None) and files() == before
    state = boot_load()
    assert (state.mode, state.mode_detail, state.region) == ("ready", "", "310000"), state.mode
    assert state.region_name == store.get("r310000")["name"] and state.params_version == 1
    assert alerts() == []


def test_boot_reader_leaves_repairs_to_recover():
    from firmware import params_boot as boot

    def case(name, damage, how, names):
        provisioned({"active": {"region": "440300"}})
        damage()
        assert boot.scan("/t/p", "/t/import.tmp") is None, name
        got = store.recover()[0]
        assert got == how and files() == names, (name, got, files())
        m = boot.scan("/t/p", "/t/import.tmp")  # repaired: nothing left to do
        assert m is not None and m == (store.manifest() or {}), (name, m)

    def stray():
        with open("/t/p/r440300.7", "wb") as f:
            f.write(b"junk")

    def cut_before_rename():  # set.bak and a complete set.new: roll forward
        os.rename("/t/p/set", "/t/p/set.new")

    def cut_before_backup():  # the old set and set.new: roll back
        os.rename("/t/p/set", "/t/p/set.new")
        os.rename("/t/p/set.bak", "/t/p/set")

    def flip():
        with open("/t/p/active.2", "r+b") as f:
            f.seek(30)
            f.write(b"X")

    v1 = ["active.1", "grants.1", "loc.1", "merchant.1", "ops.1", "r310000.1", "r330100.1", "r440300.1"]
    v2 = sorted(v1 + ["active.2", "set", "set.bak"])
    case("stray", stray, "ok", v2)
    case("roll forward", cut_before_rename, "ok", v2)
    case("roll back", cut_before_backup, "ok", sorted(v1 + ["set"]))
    case("damaged record", flip, "fallback", sorted(v1 + ["set"]))


def test_boot_load_recovers_like_recover():
    # Roll forward / back after a power cut, fallback and damage: the modes,
    # details and alerts are those of the full recover path.
    provisioned({"active": {"region": "440300"}})
    os.rename("/t/p/set", "/t/p/set.new")
    state = boot_load()
    assert (state.mode, state.region, state.params_version) == ("ready", "440300", 1), state.region
    assert "set.new" not in files() and "set" in files() and alerts() == []

    provisioned({"active": {"region": "440300"}})
    os.rename("/t/p/set", "/t/p/set.new")
    os.rename("/t/p/set.bak", "/t/p/set")
    state = boot_load()
    assert (state.mode, state.region) == ("ready", "310000") and alerts() == []
    assert "active.2" not in files() and "set.new" not in files()

    provisioned({"active": {"region": "440300"}})
    with open("/t/p/active.2", "r+b") as f:
        f.seek(30)
        f.write(b"X")
    state = boot_load()
    assert (state.mode, state.region) == ("ready", "310000"), state.mode
    a = alerts()
    assert len(a) == 1 and "checksum mismatch" in a[0] and "previous version 1" in a[0], a

    provisioned()
    with open("/t/p/merchant.1", "r+b") as f:
        f.seek(30)
        f.write(b"X")
    state = boot_load()
    assert state.mode == "parameters damaged" and state.region is None and state.region_name == ""
    assert state.mode_detail == "merchant: checksum mismatch", state.mode_detail
    assert alerts() == ["parameters damaged: merchant: checksum mismatch"], alerts()


def test_boot_load_refuses_a_set_the_schema_refuses():
    # Sound checksums are not a sound set: a record that fails the rules an import applies (a
    # writer's bug, stricter rules in newer firmware) is reported as damaged, naming the record and
    # the field, and nothing in flash changes (no fallback: set.bak stays, and so does the set).
    ver, recs = schema.split(example())
    for second, text in (
            ({"r440300": dict(recs["r440300"], limits=5)},
             "r440300: invalid profiles.440300.limits: must be an object"),
            ({"grants": {"440300": recs["grants"][0]}}, "grants: invalid authorized: must be a list"),
            ({"merchant": [recs["merchant"]]}, "merchant: invalid merchant: must be an object"),
            ({"active": {"region": "810000"}},
             "active: invalid active.region: '810000' is not an authorized region")):
        provisioned(second)
        before = files()
        state = boot_load()
        assert (state.mode, state.mode_detail, state.region) == ("parameters damaged", text, None), \
            (state.mode, state.mode_detail)
        assert alerts() == ["parameters damaged: " + text], alerts()
        assert files() == sorted(before + ["log"]) and "set.bak" in before, files()  # log: the alert


def test_boot_load_empty_store():
    dev = CutFlash()
    mount(dev, fresh=True)
    state = boot_load()
    assert state.mode == "not provisioned" and state.region is None, state.mode
    assert state.mode_detail == "no parameter set; load one with roampos provision"
    assert files() == []
    with open("/t/p/set.7", "wb") as f:  # a stray: cleaned by the full path
        f.write(b"junk")
    state = boot_load()
    assert state.mode == "not provisioned" and files() == []


class _RenameRunsOutOfMemory:
    # MicroPython's os cannot be patched: the store gets this in its place, whose rename of
    # set.new (the commit's second rename) runs out of memory `times` times.
    def __init__(self, times):
        self.times = times

    def __getattr__(self, name):
        return getattr(os, name)

    def rename(self, a, b):
        if a.endswith("/set.new") and self.times:
            self.times -= 1
            raise MemoryError("memory allocation failed")
        os.rename(a, b)


def test_out_of_memory_between_the_renames_loses_nothing():
    dev = CutFlash()
    mount(dev, fresh=True)
    ver, recs = schema.split(example())
    store.commit(recs, ver)                          # commit 1
    store.commit({"active": {"region": "440300"}})   # commit 2 (set.bak: commit 1)
    renamed = dict(store.get("merchant"), name="New Name")
    store.os = _RenameRunsOutOfMemory(1)             # once: the retry after gc finishes it
    try:
        assert store.commit({"merchant": renamed}) == 3
    finally:
        store.os = os
    assert store.get("merchant")["name"] == "New Name" and "set.new" not in files()
    store.os = _RenameRunsOutOfMemory(2)             # twice: left between the renames
    try:
        store.commit({"merchant": dict(renamed, name="Newer Name")})
        raise AssertionError("no MemoryError")
    except MemoryError:
        pass
    finally:
        store.os = os
    assert "set" not in files() and "set.new" in files() and "set.bak" in files()
    store.man = None                                 # the module dropped after the command
    s2 = example()                                   # the next commit, as `param import` runs it
    s2["version"] = 2
    v = store.commit(schema.split(s2)[1], 2)
    assert v == 5, v                                 # after commit 4 (finished first), not from 0
    store.man = None
    assert store.recover() == ("ok", None)
    from firmware import params_boot as boot
    assert boot.verified("/t/p", "set.bak")["v"] == 4   # the fallback: intact, "Newer Name"


def test_the_active_regions_currency_is_what_cards_are_told():
    # tap.py gives the card (PDOL tag 5F2A) state.currency: it must follow the active profile, not
    # stay CNY (a Hong Kong or Macau profile trades in 344 / 446).
    ver, recs = schema.split(example())
    hk = dict(recs["r440300"], currency=344)
    provisioned({"r440300": hk, "active": {"region": "440300"}})
    state = boot_load()
    assert (state.mode, state.region, state.currency) == ("ready", "440300", 344), state.currency
    provisioned()
    assert boot_load().currency == 156


class _RenameFails:
    # In the fresh params_store's place of os: the renames whose source ends with `suffix` run out
    # of memory `times` times (the commit's own try and retry, then recover()'s).
    def __init__(self, suffix, times):
        self.suffix, self.times = suffix, times

    def __getattr__(self, name):
        return getattr(os, name)

    def rename(self, a, b):
        if a.endswith(self.suffix) and self.times:
            self.times -= 1
            raise MemoryError("memory allocation failed")
        os.rename(a, b)


def _core_commit(fails):
    # params_core.commit of a region switch on a ready terminal whose store's renames fail as
    # `fails` says: (what it raised, whether `after` ran, the state).
    provisioned()
    state = boot_load()
    assert (state.mode, state.region) == ("ready", "310000"), state.mode
    from firmware import params_core as core, params_store as st

    st.DIR, st.IMPORT_TMP, st.man = "/t/p", "/t/import.tmp", None
    ran = []
    st.os = fails
    try:
        core.commit({"active": {"region": "440300"}}, after=lambda: ran.append(1))
        raised = None
    except Exception as e:  # MemoryError or the console's CommandError
        raised = e
    finally:
        st.os = os
    return raised, bool(ran), state


def test_a_commit_out_of_memory_before_its_renames_changed_nothing():
    raised, ran, state = _core_commit(_RenameFails("/set", 1))     # set -> set.bak fails
    assert isinstance(raised, MemoryError), raised                   # the command says: nothing changed
    assert not ran and (state.mode, state.region) == ("ready", "310000"), state.region
    assert boot_load().region == "310000"                            # and flash agrees


def test_a_commit_out_of_memory_between_its_renames_is_saved_and_says_so():
    # Both tries of set.new -> set fail; flash holds set.bak and a complete set.new: the new set.
    raised, ran, state = _core_commit(_RenameFails("/set.new", 2))
    assert type(raised).__name__ == "CommandError" and raised.code == "nomem", raised
    assert "saved to flash" in raised.message, raised.message
    assert ran and (state.mode, state.region) == ("ready", "440300"), (state.mode, state.region)
    assert "set.new" not in files() and boot_load().region == "440300"


def test_a_commit_that_cannot_tell_what_flash_holds_asks_for_a_reboot():
    # The renames fail in the commit and again in both of the checks that would finish them: the
    # terminal cannot tell which set flash holds, so it stops acting on the one it published.
    raised, ran, state = _core_commit(_RenameFails("/set.new", 4))
    assert type(raised).__name__ == "CommandError" and raised.code == "nomem", raised
    assert "reboot" in raised.message, raised.message
    assert not ran and state.mode == "reboot needed" and state.region is None, state.mode
    state = boot_load()                                              # the reboot: flash decides
    assert (state.mode, state.region) == ("ready", "440300"), (state.mode, state.region)
