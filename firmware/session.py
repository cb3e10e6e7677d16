# Operator sessions: a login begins one; logout, a failed login, a new parameter set or idle time
# end it. Idle: 15 min (console._IDLE_MS) without an operator's command or a key press, for every
# role (docs/console.md). console.idle() judges it before each command and key press, and a watch
# task (console._watch) while a session is open ends it on time with nobody there: EVT
# {"logged_out": <id>, "why": "idle"} and the idle screen. Dropped after each command
# (console._TRANSIENT): neither idle nor a session keeps this module in the heap.
import asyncio

from firmware import boards, console, state


def begin(op_id, role):
    state.operator = op_id
    state.role = role
    state.seen_ms = boards.ticks_ms()
    watch()


def watch():
    # (Re)start the watch: at login, and when the vterm's clock jumped (`sim clock`: the watch
    # sleeps on asyncio's clock until the deadline it planned on the clock as it was).
    t = state.session
    if t is not None:
        t.cancel()
    state.session = asyncio.create_task(console._watch())


def end(why=None):
    # why: None for a logout the operator asked for (its reply says so), else told in an event.
    op = state.operator
    state.operator = state.role = None
    t = state.session
    state.session = None
    if t is not None and t is not asyncio.current_task():
        t.cancel()
    if why and op is not None:
        console.event({"logged_out": op, "why": why})
        from firmware import ui
        # A sale waiting for its card goes on: it is the customer's, and it times out by itself.
        if ui.screen != "tap" and ui.screen != "idle":
            ui.show_idle()

