# Boot-time parameter load, and the parts of the store that it needs (the
# record read, the manifest check, what clean() keeps, publishing the active
# region): params_store and params_core call these, so boot and the full
# path share one implementation. Small and with few names on purpose: every
# name in an imported module is interned for good (qstrs are never freed,
# even once the module is unloaded), so a store that needs no repair is read,
# checked and published from here and params_schema alone (the rules an
# import applies: a sound checksum does not make a sound set; its names are
# the price of that check); params_store (recover, commits) and params_core
# (alerts, damaged modes) are imported only when it needs repair or anything
# fails. Argument names are interned too: `path`, `name`, `file`, `value`,
# `text` are in MicroPython's own table.
import gc
import os
import sys

from firmware import state
from firmware.params import EMPTY, READY
from firmware.params_codec import RecordError, crc, decode, decode_obj

DIR = "/data/p"
TMP = "/data/import.tmp"  # `param import` chunks; outside DIR so clean() leaves it


def load():
    # Boot: publish the set; never raises (params_core.load reports errors).
    m = None
    try:
        m = scan(DIR, TMP)
        if m:
            # The rules an import applies; a set that breaks them takes the
            # full path, which checks again and reports it damaged.
            from firmware import params_schema

            params_schema.check_records(lambda name: get(DIR, m, name), m["r"])
        if m is not None:
            apply(DIR, m)
    except Exception:  # a set apply cannot publish or the schema refuses: the full path says why
        m = None
    if m is None:
        from firmware import params_core

        params_core.load()  # recover (repairs, fallback), alerts, publish, refresh
    else:
        refresh()


def scan(path, file):
    # What params_store.recover() does first (and all it does at most boots):
    # make the store directory, drop an import temporary `file` cut short by a
    # reset, then return the manifest of a store that needs no repair, {}
    # for an empty one, or None when recover() has work to do (interrupted
    # commit, damage, fallback, strays) or on any error, which it reports.
    mkdirs(path)
    try:
        os.remove(file)
    except OSError:
        pass
    try:
        names = os.listdir(path)
        if "set.new" in names:
            return None
        m = {}
        if "set" in names:
            m = verified(path, "set")
        elif "set.bak" in names:
            return None
        k = keep(path)
        for n in names:
            if n not in k:
                return None
        return m
    except Exception:
        return None


def mkdirs(path):
    p = ""
    for part in path.split("/")[1:]:
        p += "/" + part
        try:
            os.mkdir(p)
        except OSError:
            pass


def read(path, name, file):
    # Bytes of `file` in the store at `path`, which holds record `name`.
    try:
        with open(path + "/" + file, "rb") as f:
            return f.read()
    except OSError:
        raise RecordError(name, "missing", "file %s missing" % file)


def verified(path, file):
    # Load manifest `file` and check every record it names; raises RecordError.
    _, m = decode_obj("set", read(path, "set", file))
    if not isinstance(m, dict) or not isinstance(m.get("r"), dict) or not isinstance(m.get("v"), int):
        raise RecordError("set", "json", "%s is not a manifest" % file)
    for name, (v, c) in m["r"].items():
        _, body = decode(name, read(path, name, "%s.%d" % (name, v)), v)
        if crc(body) != c:
            raise RecordError(name, "checksum", "%s.%d is not the version the manifest names" % (name, v))
    return m


def keep(path):
    # The files params_store.clean() keeps: its own and the record files
    # that `set` or `set.bak` name (whichever of them is readable).
    # From a tuple constant: its strings are objects, not interned names.
    k = list(("set", "set.bak", "tries", "batch", "log", "log.1"))
    for file in ("set", "set.bak"):
        try:
            _, m = decode_obj("set", read(path, "set", file))
            for name, (v, _c) in m["r"].items():
                k.append("%s.%d" % (name, v))
        except (RecordError, KeyError, TypeError, ValueError):
            pass
    return k


def get(path, m, name):
    # Record `name` of the set whose manifest is m; RecordError if damaged or absent.
    if m is None or name not in m["r"]:
        raise RecordError(name, "missing", "no such record")
    v, c = m["r"][name]
    return decode_obj(name, read(path, name, "%s.%d" % (name, v)), v)[1]


def mode(value, text=""):
    state.mode = value
    state.mode_detail = text
    if value != READY:
        state.region = None
        state.region_name = ""


def apply(path, m):
    # Publish the active region of the (checked) set m to state; an empty
    # store (m None or {}) is "not provisioned".
    if not m:
        mode(EMPTY, "no parameter set; load one with roampos provision")
        return
    # Everything read first, then published in plain assignments: running out of memory
    # half-way must not leave one region's code beside another's name.
    active = get(path, m, "active")["region"]
    prof = get(path, m, "r" + active)
    name, currency = prof["name"], prof["currency"]
    del prof
    state.params_version = m["pv"]
    state.region = active
    state.region_name = name
    state.currency = currency   # ISO 4217 numeric: what a card is told (5F2A) in this region
    state.mode = READY
    state.mode_detail = ""
    gc.collect()


def refresh():
    # Redraw idle if the UI runs (it may be absent: headless build). Not
    # imported for it: at boot it is not started yet (peripherals.start
    # draws idle from state afterwards), and importing it here would intern
    # its names in the parameter step.
    fn = getattr(sys.modules.get("firmware.ui"), "refresh", None)
    if fn is not None:
        fn()
