# Parameters' working part, imported on demand: boot load when the store
# needs repair or reports damage (params_boot.load publishes a sound store
# alone), record reads with fallback to the last good set, commits that
# update the state.
import gc
import time

from firmware import params, params_boot as boot, state
from firmware.params import DAMAGED, READY


def alert(text):
    from firmware import console, params_store

    console.event({"alert": "params", "detail": text})
    try:
        params_store.log({"t": int(time.time()), "ev": "alert", "detail": text})
    except OSError:
        pass


def load():
    try:
        _load()
    except MemoryError:
        boot.mode(params.REBOOT, "out of memory loading parameters: reboot")
    except Exception as e:  # flash errors: report, keep the console alive
        boot.mode(DAMAGED, "%s: %s" % (type(e).__name__, e))
    boot.refresh()


def _load():
    from firmware import params_store as store

    how, why = store.recover()
    if how == "damaged":
        boot.mode(DAMAGED, why)
        alert(DAMAGED + ": " + why)
        return
    if how == "fallback":
        alert(why)
    # A checksum only says a record is what was written: one that fails the
    # schema (a writer's bug, a firmware with stricter rules) is refused as a
    # damaged one would be, before anything of it is published.
    why = check() if how != "empty" else None
    if why:
        boot.mode(DAMAGED, why)
        alert(DAMAGED + ": " + why)
        return
    try:
        apply()  # also "empty": not provisioned
    except (KeyError, TypeError, ValueError, IndexError) as e:
        boot.mode(DAMAGED, "active region: %s" % e)
        alert(DAMAGED + ": active region: %s" % e)


def check():
    # Schema check of every record in flash (at boot and `param check`); None
    # or the first error, naming the record: "r440300: invalid profiles.440300...".
    from firmware import params_schema as schema, params_store as store
    from firmware.params_codec import RecordError

    try:
        schema.check_records(store.get, store.names())
    except RecordError as e:
        return str(e)
    except schema.ParamError as e:
        return "%s: invalid %s" % (e.record, e)
    finally:
        params._unload("params_schema")
    return None


def apply():
    # Publish the active region of the (valid) set to state; with nothing
    # provisioned, that mode.
    from firmware import params_store as store

    boot.apply(store.DIR, store.manifest())


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
        boot.refresh()
        return store.get(name)


def commit(changes, pv=None, after=None):
    # Atomic write of records (see params_store.commit), then publish. after(): what the caller
    # does once the change is in flash (a log entry, an event); it runs, or is tried, either way.
    from firmware import params_store as store

    before = store.manifest()
    before = before["v"] if before else 0
    try:
        store.commit(changes, pv)
    except MemoryError:
        # Before or between its renames? What flash holds decides (recover() finishes a commit
        # whose set.new is complete): unchanged, the command did not run; else it did.
        changes.clear()  # the new records are in flash or not needed: room to find out which
        if _in_flash(store, before):
            _saved_anyway(after)
        # Unchanged: RAM keeps the set it published, which is what flash holds (apply() runs only
        # after a commit, so nothing of the new set reached state).
        raise
    # In flash now, whatever happens next: the terminal must act on it and say so. The records
    # given are not needed any more (callers pass them for this commit only): dropped before
    # apply() reads them back, or an import holds a whole set twice at its peak.
    changes.clear()
    gc.collect()
    try:
        apply()
        if state.location is not None:
            from firmware import params_region

            params_region.locate()
        boot.refresh()
        _follow(after)
    except MemoryError:
        _saved_anyway(after)


def _in_flash(store, before):
    # After a commit that ran out of memory: True if flash holds the new set, False if still the
    # old one. Not knowing (out of memory again, a commit cut between its renames that reading
    # flash cannot settle) is neither: the terminal stops acting on the set it published, which
    # may no longer be the one in flash, and a reboot publishes what flash holds.
    for _ in range(2):
        try:
            gc.collect()
            store.man = None
            if store.manifest() is None:
                store.recover()
            now = store.manifest()
            return (now["v"] if now else 0) != before
        except MemoryError:
            pass
    from firmware.console import CommandError

    boot.mode(params.REBOOT, "out of memory committing parameters: reboot")
    raise CommandError("nomem", "out of memory committing parameters; reboot to use what flash holds")


def _follow(after):
    # What follows a committed change: the link takes the (perhaps new) region's networks (a flag
    # for the link task: allocates next to nothing), then the caller's steps.
    from firmware import link

    link.follow_params()
    if after is not None:
        after()


def _saved_anyway(after):
    # Out of memory after a commit: publish the committed set (what apply() needs is little once
    # the failed step's garbage is gone), try what follows it, and answer that it is saved,
    # never "did not run".
    from firmware.console import CommandError

    gc.collect()
    try:
        apply()
    except MemoryError:
        boot.mode(params.REBOOT, "saved but not applied (out of memory): reboot")
    try:
        _follow(after)
    except MemoryError:
        pass
    raise CommandError("nomem", "saved to flash; out of memory after: check status")




def today(offset_min, now=None):
    # Local date (YYYY-MM-DD) in a region UTC+offset_min. The terminal clock
    # runs on UTC (the unix port's host clock; a board's RTC set at sign-on).
    t = time.gmtime(int(time.time() if now is None else now) + 60 * offset_min)
    return "%04d-%02d-%02d" % (t[0], t[1], t[2])


def clock_ok():
    # A board without a set RTC starts in 2000: no grant can be judged then.
    return time.gmtime(int(time.time()))[0] >= 2024


def profile(code=None):
    # The active (or given) region's profile, or None when not provisioned.
    if state.mode != READY:
        return None
    p = record("r" + (code or state.region))
    params.unload()  # callers are tasks between commands (link manager)
    return p


def location_changed():
    # Map state.location to a region and warn when it is outside the grants.
    # For the link code, between commands (it unloads the helpers again).
    try:
        from firmware import params_region

        params_region.locate()
    except Exception as e:  # called from the link code: never raise into it
        state.location_warning = "location check failed: %s" % e
    params.unload()
    boot.refresh()

