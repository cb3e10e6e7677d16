# Heap probe: boots the firmware like launch.py + app._run, but one step at
# a time, and prints the heap in use (after gc.collect) and the change per
# step, so the top consumers at boot show. Run by `python -m
# roampos.vterm.heapprobe`, never on a board (it reads the launcher's source
# from the host before the flash replaces /). PROBE_QSTR=1 in the
# environment also prints the qstr pools after each step.
import gc
import os
import sys

gc.collect()
_base = gc.mem_alloc()
_last = [_base]
_rows = []


def m(tag):
    if os.getenv("PROBE_QSTR"):
        print(tag); __import__("micropython").qstr_info()
    gc.collect()
    a = gc.mem_alloc()
    _rows.append((tag, a, a - _last[0]))
    _last[0] = a


_src = open(os.getenv("ROAMPOS_LAUNCH")).read()
os.putenv("ROAMPOS_NO_MAIN", "1")  # launch runs boot.py only; we do main's job below
_code = compile(_src, "launch", "exec")
del _src
m("(probe: compiled launcher, dropped below)")
exec(_code, {"__name__": "launch"})
del _code
m("launcher: mounts, sys.path; boot.py: board module")
import asyncio  # noqa: E402

m("asyncio (frozen)")
from firmware import console  # noqa: E402

m("firmware.console")
from firmware import boards  # noqa: E402

_b = boards.get()
m("Board(): buses to the device models, drivers")
_con = console.Console(_b)
m("Console instance")


def _params():
    from firmware import params

    m("firmware.params")
    params.load()  # unloads its helpers


async def _steps():
    _params()
    m("params.load() (what stays after its helpers unload)")
    from firmware import peripherals

    peripherals.start(_b)
    m("peripherals.start: ui, keypad task, card poll task")
    console.drop_transient()
    m("drop what idle does not use (params, ...)")
    _t = asyncio.create_task(_con.run())
    await asyncio.sleep_ms(400)
    m("idle 400 ms (tasks ran, console task too)")
    _t.cancel()


asyncio.run(_steps())
try:
    _models = _b.heap_models
except AttributeError:
    _models = None
print("%-52s %7s %7s" % ("step", "in use", "change"))
for t, a, d in _rows:
    print("%-52s %7d %+7d" % (t, a, d))
print("%-52s %7d" % ("total at idle (tasks running)", _last[0]))
if _models is not None:
    print("%-52s %7d" % ("of which simulated buses (heap_models)", _models))
print("modules:", " ".join(sorted(k for k in sys.modules)))
print("(a step that interns the ~300th name also pays the next qstr pool, ~3.6 KB)")
