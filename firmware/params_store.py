# Parameter store in flash: versioned records behind one manifest, committed
# atomically, with the previous manifest kept as the last good version.
#
# Files in DIR (all in params_codec's record format):
#   <name>.<v>   a record written by commit number v (never rewritten in place)
#   set          the manifest: {"v": commit, "pv": acquirer version, "r": {name: [v, crc]}}
#   set.bak      the previous manifest: the fallback when `set` or a record is damaged
#   set.new      a manifest being committed; renamed to `set` once complete
#   <name>       a single record outside the set (operator tries, batch), tmp+rename
#   log          append-only event log, one "<crc32> <json>" line per record
# A commit writes the new record files and set.new, then renames set -> set.bak
# and set.new -> set. littlefs renames are atomic, so a power cut leaves either
# the old manifest (new files are strays, removed by clean()) or set.new alone
# (complete; recover() finishes the rename). Nothing referenced is overwritten.
# The parts boot needs (reading a record, checking a manifest, what clean()
# keeps, the no-repair check that starts recover()) are in params_boot, which
# boot imports without this module (see there: fewer interned names).
import json
import os

from firmware import params_boot as boot
from firmware import params_codec as codec
from firmware.params_codec import RecordError

DIR = boot.DIR
LOG_MAX = 4096  # bytes before the log rotates to log.1
IMPORT_TMP = boot.TMP

man = None  # the current manifest dict, or None when nothing is provisioned


def _p(fn):
    return DIR + "/" + fn


def _read(name, fn):
    return boot.read(DIR, name, fn)


def _write(fn, data):
    with open(_p(fn), "wb") as f:
        f.write(data)


def _remove(fn):
    try:
        os.remove(_p(fn))
    except OSError:
        pass


def _mkdirs():
    boot.mkdirs(DIR)


def recover():
    # At boot (or when a read finds damage): pick the newest intact manifest.
    # Returns (state, text): ("ok", None), ("fallback", why), ("empty", None)
    # or ("damaged", why). Sets `man`.
    global man
    # Makes DIR, drops an import cut short by a reset; a store that needs no
    # repair (most boots; params_boot.load publishes it alone) ends here.
    m = boot.scan(DIR, IMPORT_TMP)
    if m is not None:
        man = m or None
        return ("ok" if m else "empty"), None
    names = os.listdir(DIR)
    if "set" not in names and "set.new" in names:
        try:
            boot.verified(DIR, "set.new")
            os.rename(_p("set.new"), _p("set"))  # finish an interrupted commit
            names.append("set")
        except RecordError:
            pass
    _remove("set.new")
    man = None
    why = None
    if "set" in names:
        try:
            man = boot.verified(DIR, "set")
            clean()
            return "ok", None
        except RecordError as e:
            why = str(e)
    if "set.bak" in names:
        try:
            man = boot.verified(DIR, "set.bak")
            os.rename(_p("set.bak"), _p("set"))
            clean()
            return "fallback", "%s; using previous version %d" % (why or "set: missing", man["v"])
        except RecordError as e:
            why = why or str(e)
    if why is None:
        clean()
        return "empty", None
    return "damaged", why


def clean():
    # Remove strays: temporaries and record files no manifest references.
    keep = boot.keep(DIR)
    for fn in os.listdir(DIR):
        if fn not in keep:
            _remove(fn)


def manifest():
    # The current manifest (read lazily: this module may have been unloaded
    # since boot to save heap); None when nothing is provisioned.
    global man
    if man is None:
        try:
            man = codec.decode_obj("set", _read("set", "set"))[1]
        except RecordError:
            return None
    return man


def get(name):
    # A record of the current set; RecordError if damaged or absent.
    return boot.get(DIR, manifest(), name)


def names():
    return list(man["r"]) if manifest() else []


def commit(changes, pv=None):
    # changes: {record name: object, or None to drop it}. Atomic: afterwards
    # the set is either wholly the old one or wholly the new one.
    global man
    _mkdirs()
    man = None
    manifest()  # from flash, not a cache: the commit must follow the real `set`
    if man is None:
        names = os.listdir(DIR)
        if "set.new" in names or "set.bak" in names:
            # A commit cut short between its renames (out of memory): finish or fall back first,
            # so that this one neither starts from commit 0 over files set.bak names nor loses it.
            recover()
    old = man or {"v": 0, "pv": 0, "r": {}}
    v = old["v"] + 1
    recs = dict(old["r"])
    for name, obj in changes.items():
        if obj is None:
            recs.pop(name, None)
            continue
        data = codec.encode(name, v, obj)
        _write("%s.%d" % (name, v), data)
        _, body = codec.decode(name, data, v)
        recs[name] = [v, codec.crc(body)]
    new = {"v": v, "pv": old["pv"] if pv is None else pv, "r": recs}
    _write("set.new", codec.encode("set", v, new))
    # The paths are made before the first rename, so that nothing between the two allocates.
    p_set, p_new, p_bak = _p("set"), _p("set.new"), _p("set.bak")
    if man is not None:
        os.rename(p_set, p_bak)
    try:
        os.rename(p_new, p_set)
    except MemoryError:
        import gc

        gc.collect()
        os.rename(p_new, p_set)  # failing again, recover() finishes it at the next read or commit
    man = new
    try:
        clean()
    except MemoryError:  # committed: the strays go at the next commit or boot
        pass
    return v


def get_single(name):
    # A record kept outside the set; None if absent, RecordError if damaged.
    try:
        data = _read(name, name)
    except RecordError:
        return None
    return codec.decode_obj(name, data)[1]


def get_single_or_reset(name, alert):
    # A single record, or {} after a damaged one was rewritten empty, logged and announced
    # (EVT {"alert": name, "detail": alert}): counters and summaries the terminal can do without
    # must not stop it.
    try:
        return get_single(name) or {}
    except RecordError:
        import time
        from firmware import console

        put_single(name, {})
        log({"t": int(time.time()), "ev": "alert", "what": name + " damaged, reset"})
        console.event({"alert": name, "detail": alert})
        return {}


def put_single(name, obj):
    _mkdirs()
    try:
        v = int(_read(name, name)[:40].split(b" ")[2]) + 1
    except (RecordError, ValueError, IndexError):
        v = 1
    _write(name + ".tmp", codec.encode(name, v, obj))
    os.rename(_p(name + ".tmp"), _p(name))


def log(obj):
    # Append one event; a torn last line after a power cut fails its CRC and
    # is skipped by read_log.
    _mkdirs()
    line = codec.dumps(obj).encode()
    try:
        if os.stat(_p("log"))[6] > LOG_MAX:
            os.rename(_p("log"), _p("log.1"))
    except OSError:
        pass
    with open(_p("log"), "ab") as f:
        # Newline first: a line torn by a power cut is ended by the next one.
        f.write(("\n%08x " % codec.crc(line)).encode())
        f.write(line)


def read_log(n):
    # The last n intact entries, oldest first, and the count of damaged lines.
    out = []
    bad = 0
    for fn in ("log.1", "log"):
        try:
            f = open(_p(fn), "rb")
        except OSError:
            continue
        with f:
            for line in f:
                line = line.rstrip(b"\n")
                if not line:
                    continue
                try:
                    if len(line) < 10 or int(line[:8], 16) != codec.crc(line[9:]):
                        raise ValueError
                    out.append(json.loads(line[9:]))
                except ValueError:
                    bad += 1
                if len(out) > n:
                    out.pop(0)
    return out, bad
