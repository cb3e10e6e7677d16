# The application: console plus whatever subsystems the board supports.
# Returns when Ctrl-C arrives so that the REPL (and mpremote) take over.
import asyncio
import gc

from firmware import boards, state
from firmware.console import Console, drop_transient
from firmware.version import VERSION


async def _run(con):
    task = asyncio.create_task(con.run())
    from firmware import params

    params.load()  # before "ready": never raises, sets state.mode for screen and status
    provisioned = state.mode == params.READY
    del params  # dropped below with what idle does not use: keep no reference
    from firmware import peripherals

    peripherals.start(con.board)  # screen, keypad, card polling, scanner
    if provisioned:  # the link to the acquirer, on the active region's networks
        from firmware import link
        link.follow_params()
        del link
    drop_transient()  # what boot imported and idle does not use (params, version)
    gc.collect()
    ev = {"ready": True, "version": VERSION, "board": con.board.name, "heap_used": gc.mem_alloc()}
    models = getattr(con.board, "heap_models", None)
    if models is not None:  # vterm: the device models' share of heap_used
        ev["heap_models"] = models
    # Start on a fresh line: what came before a reset (a REPL prompt, half a
    # reply cut by the power) must not hide the ready event from line readers.
    con.out.write(b"\r\n")
    con.write("EVT", ev)
    await task  # the console returns on Ctrl-C


def main():
    board = boards.get()
    con = Console(board)
    try:
        asyncio.run(_run(con))
    except KeyboardInterrupt:  # a real board's REPL interrupt
        pass
    asyncio.new_event_loop()
