# Parameters' resident face: boot load, the active profile, location checks.
# Kept tiny because it stays imported; the work is in params_core, the store,
# schema and region rules, imported when needed and unloaded again (module
# bytecode sits in the heap on a board unless frozen).
import gc
import sys

from firmware import state

# Public for other subsystems:
#   profile()            active region profile dict (loaded from flash per call)
#   location_changed()   call after updating state.location (modem / WiFi code)
#   params_core.record(name) / .commit(changes)   for commands (lazy import)

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
    # Only between commands: a module imported inside a function keeps the
    # copy it got, so a store must not be unloaded while a command runs.
    for name in ("params_core", "params_schema", "params_region", "params_batch", "operators",
                 "params_store", "params_codec"):
        _unload(name)
    gc.collect()


def load():
    # Boot: recover the store, check the set, publish the state. Never raises:
    # a bad set leaves a clear mode on screen and console, no boot loop.
    from firmware import params_core

    params_core.load()
    unload()  # `status` finds status() below through cmd_system._STATUS_MODULES


def profile(code=None):
    # The active (or given) region's profile, or None when not provisioned.
    if state.mode != READY:
        return None
    from firmware import params_core

    p = params_core.record("r" + (code or state.region))
    unload()  # callers are tasks between commands (link manager)
    return p


def location_changed():
    # Map state.location to a region and warn when it is outside the grants.
    # For the link code, between commands (it unloads the helpers again).
    try:
        from firmware import params_region

        params_region.locate()
    except Exception as e:  # called from the link code: never raise into it
        state.location_warning = "location check failed: %s" % e
    unload()
    refresh_ui()


def refresh_ui():
    try:
        from firmware import ui
    except ImportError:  # the UI subsystem may be absent (headless build)
        return
    fn = getattr(ui, "refresh", None)
    if fn is not None:
        fn()


def status():
    s = {"mode": state.mode, "region": state.region, "region_name": state.region_name,
         "params_version": version, "operator": state.operator, "role": state.role,
         "location_region": location_region, "location_warning": state.location_warning}
    if state.mode_detail:
        s["mode_detail"] = state.mode_detail
    return s
