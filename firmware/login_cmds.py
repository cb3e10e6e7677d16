# Console commands login, logout and `operator ...`. PINs come in on the
# console (as on the keypad) but are never echoed, logged or stored in clear.
from firmware import params, state
from firmware.console import CommandError, words


def _core():
    # Imported per use, not pinned here: params.unload() frees it between commands.
    from firmware import params_core

    return params_core


def cmd_login(args):
    from firmware import operators

    try:
        op_id, pin = words(args, 2)
        return operators.login(op_id, pin)
    finally:
        params.unload()


def cmd_logout(args):
    from firmware import operators

    try:
        return operators.logout()
    finally:
        params.unload()


def cmd_operator(args):
    from firmware import operators

    try:
        sub, _, rest = args.partition(" ")
        rest = rest.strip()
        if sub == "list":
            if state.mode != params.READY:
                raise CommandError("notready", "terminal is %s" % state.mode.upper())
            operators.require("supervisor")
            return {"operators": [{"id": o["id"], "role": o["role"]} for o in _core().record("ops")]}
        if sub == "add":
            op_id, role, pin = words(rest, 3)
            return operators.add(op_id, role, pin)
        if sub == "remove":
            return operators.remove(words(rest, 1)[0])
        if sub == "passwd":
            op_id, pin = words(rest, 2)
            return operators.passwd(op_id, pin)
        raise CommandError("usage", "operator list|add <id> <role> <pin>|remove <id>|passwd <id> <pin>")
    finally:
        params.unload()
