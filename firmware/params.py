# Parameters' face: boot load, status, unloading the helpers. Stateless (what
# the parameters publish is in firmware.state), so not even this module stays
# at idle: app drops it after the boot load and the console after each
# command (console._TRANSIENT); commands and `status` import it again. The
# work is in params_core, the store, schema and region rules, imported when
# needed and unloaded again (module bytecode sits in the heap on a board
# unless frozen). Boot reads a sound store with params_boot and the schema
# alone: the names of the others would stay interned for good (see there).
import gc
import sys

from firmware import state

# Public for other subsystems (in params_core, imported on demand so that
# idle keeps only this module):
#   params_core.profile()            active region profile dict (from flash per call)
#   params_core.location_changed()   call after updating state.location (modem / WiFi code)
#   params_core.record(name) / .commit(changes)   for commands

READY = "ready"
EMPTY = "not provisioned"
DAMAGED = "parameters damaged"
REBOOT = "reboot needed"  # flash holds a sound set that RAM could not publish (out of memory)
OPEN = (EMPTY, DAMAGED)   # the modes in which provisioning (import, link set) needs no login


def _unload(name):
    # Drop a module so its bytecode can be collected; the next import reloads it.
    sys.modules.pop("firmware." + name, None)
    pkg = sys.modules.get("firmware")
    # `in __dict__`, not hasattr: that would intern the name of a module
    # never loaded (qstrs are never freed).
    if pkg is not None and name in pkg.__dict__:
        delattr(pkg, name)


def unload():
    # Only between commands: a module imported inside a function keeps the
    # copy it got, so a store must not be unloaded while a command runs.
    for name in ("params_core", "params_schema", "params_region", "params_batch", "operators",
                 "params_store", "params_boot", "params_codec"):
        _unload(name)
    gc.collect()


def load():
    # Boot: recover the store, check the set, publish the state. Never raises:
    # a bad set leaves a clear mode on screen and console, no boot loop.
    from firmware import params_boot

    params_boot.load()  # params_core.load when the store needs repair
    unload()


def status():
    s = {"mode": state.mode, "region": state.region, "region_name": state.region_name,
         "params_version": state.params_version, "operator": state.operator, "role": state.role,
         "location_region": state.location_region, "location_warning": state.location_warning}
    if state.mode_detail:
        s["mode_detail"] = state.mode_detail
    return s
