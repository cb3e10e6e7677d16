# Parameters at run time: load and check the set at boot, publish the active
# region to firmware.state, hand out the active profile, react to location.
# Kept small because it stays imported; the store, schema and region rules
# are imported when needed and unloaded again (their bytecode sits in heap).
import gc
import sys
import time

from firmware import state

# Public for other subsystems:
#   profile()            active region profile dict (loaded from flash per call)
#   location_changed()   call after updating state.location (modem / WiFi code)
#   record(name)         one record of the set ("merchant", "grants", "ops", ...)
#   commit(changes)      atomic write of records, then state/screen refresh

READY = "ready"
EMPTY = "not provisioned"
DAMAGED = "parameters damaged"
version = 0  # the acquirer's parameter set version, for status and sign-on
location_region = None  # region code that state.location maps to, or None


def _unload(name):
    # Drop a module so its bytecode can be collected; the next import reloads it.
    sys.modules.pop("firmware." + name, None)
    pkg = sys.modules.get("firmware")
    if pkg is not None and hasattr(pkg, name):
        delattr(pkg, name)


def unload():
    for name in ("params_schema", "params_region", "params_store", "params_codec", "operators"):
        _unload(name)
    gc.collect()


def alert(text):
    from firmware import console, params_store

    console.event({"alert": "params", "detail": text})
    try:
        params_store.log({"t": int(time.time()), "ev": "alert", "detail": text})
    except OSError:
        pass


def refresh_ui():
    try:
        from firmware import ui
    except ImportError:  # the UI subsystem may be absent (headless build)
        return
    fn = getattr(ui, "refresh", None)
    if fn is not None:
        fn()


def _set_mode(mode, detail=""):
    state.mode = mode
    state.mode_detail = detail
    if mode != READY:
        state.region = None
        state.region_name = ""


def load():
    # Boot: recover the store, validate the whole set, publish the state. Never
    # raises: a bad set leaves a clear mode on screen and console, no boot loop.
    try:
        _load()
    except MemoryError:
        _set_mode(DAMAGED, "out of memory loading parameters")
    except Exception as e:  # flash errors: report, keep the console alive
        _set_mode(DAMAGED, "%s: %s" % (type(e).__name__, e))
    unload()
    refresh_ui()
    _hook_status()


def _load():
    from firmware import params_store as store

    how, why = store.recover()
    if how == "empty":
        _set_mode(EMPTY, "no parameter set; load one with roampos provision")
        return
    if how == "damaged":
        _set_mode(DAMAGED, why)
        alert(DAMAGED + ": " + why)
        return
    if how == "fallback":
        alert(why)
    bad = check()
    if bad:
        _set_mode(DAMAGED, bad)
        alert(DAMAGED + ": " + bad)
        return
    apply()


def check():
    # Schema check of every record in flash; None or the first error.
    from firmware import params_schema as schema, params_store as store
    from firmware.params_codec import RecordError

    try:
        codes = [n[1:] for n in store.names() if n[0] == "r"]
        for c in codes:
            schema.check_profile(store.get("r" + c), "profiles." + c)
            gc.collect()
        recs = {}
        for n in ("merchant", "grants", "loc", "ops", "active"):
            recs[n] = store.get(n)
        schema.check_core(recs, codes)
    except (RecordError, schema.ParamError) as e:
        return str(e)
    finally:
        _unload("params_schema")
    return None


def apply():
    # Publish the active region of the (valid) set to state and the screen.
    global version
    from firmware import params_store as store

    active = store.get("active")["region"]
    version = store.manifest()["pv"]
    state.region = active
    state.region_name = store.get("r" + active)["name"]
    state.mode = READY
    state.mode_detail = ""
    gc.collect()


def record(name):
    # Read a record; on damage fall back to the last good set (with an alert)
    # and read again. Raises RecordError when there is nothing good left.
    from firmware import params_store as store
    from firmware.params_codec import RecordError

    try:
        return store.get(name)
    except RecordError as e:
        if state.mode != READY:
            raise
        alert("%s; falling back" % e)
        _load()
        refresh_ui()
        return store.get(name)


def commit(changes, pv=None, keep=False):
    from firmware import params_store as store

    store.commit(changes, pv)
    apply()
    if state.location is not None:
        location_changed()
    if not keep:
        unload()
    refresh_ui()


def profile(code=None):
    # The active (or given) region's profile, or None when not provisioned.
    if state.mode != READY:
        return None
    return record("r" + (code or state.region))


def location_changed():
    # Map state.location to a region and warn when it is outside the grants.
    try:
        from firmware import params_region

        params_region.locate()
    except Exception as e:  # called from the link code: never raise into it
        state.location_warning = "location check failed: %s" % e
    _unload("params_region")
    refresh_ui()


def status():
    s = {"mode": state.mode, "region": state.region, "region_name": state.region_name,
         "params_version": version, "operator": state.operator, "role": state.role,
         "location_region": location_region, "location_warning": state.location_warning}
    if state.mode_detail:
        s["mode_detail"] = state.mode_detail
    return s


def _hook_status():
    from firmware import cmd_system

    if status not in cmd_system.STATUS:
        cmd_system.STATUS.append(status)


def today(offset_min, now=None):
    # Local date (YYYY-MM-DD) in a region UTC+offset_min. The terminal clock
    # runs on UTC (the unix port's host clock; a board's RTC set at sign-on).
    t = time.gmtime(int(time.time() if now is None else now) + 60 * offset_min)
    return "%04d-%02d-%02d" % (t[0], t[1], t[2])


def clock_ok():
    # A board without a set RTC starts in 2000: no grant can be judged then.
    return time.gmtime(int(time.time()))[0] >= 2024
