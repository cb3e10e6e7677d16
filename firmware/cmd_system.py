# System console commands: help, status, echo, reboot.
import asyncio
import gc
import os
import time

from firmware import boards, commands, state
from firmware.console import words
from firmware.version import VERSION

# Other subsystems add callables returning dicts to merge into `status`. The
# list lives in firmware.state: the console drops this module after each
# command (see console._TRANSIENT), the list must outlive it.
STATUS = state.status_hooks


def cmd_help(args):
    words(args, 0, "help takes no arguments")
    return {"commands": {name: text for name, text in commands.entries()}}


def cmd_status(args):
    words(args, 0, "status takes no arguments")
    gc.collect()
    st = os.statvfs("/")
    s = {
        "version": VERSION,
        "board": boards.get().name,
        "uptime_ms": time.ticks_diff(time.ticks_ms(), boards.BOOT_MS),
        "heap_free": gc.mem_free(),
        "heap_used": gc.mem_alloc(),
        "flash_free": st[0] * st[3],
        "flash_size": st[0] * st[2],
    }
    models = getattr(boards.get(), "heap_models", None)
    if models is not None:  # vterm: the device models' share of heap_used
        s["heap_models"] = models
    from firmware import params  # not kept at idle; dropped again after the command

    s.update(params.status())
    for fn in STATUS:
        s.update(fn())
    return s


def cmd_echo(args):
    return {"echo": args}


async def _reset_soon():
    await asyncio.sleep_ms(50)  # let the OK reach the host first
    boards.get().reset()


def cmd_reboot(args):
    words(args, 0, "reboot takes no arguments")  # `reboot now` must not reboot as if it were asked
    asyncio.create_task(_reset_soon())
    return {"rebooting": True}
