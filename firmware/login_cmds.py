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
        # Before anything counts: a line with a word too many is no try of a PIN.
        op_id, pin = words(args, 2, "login <operator> <pin>")
        return operators.login(op_id, pin)
    finally:
        params.unload()


def cmd_logout(args):
    from firmware import operators

    try:
        words(args, 0, "logout takes no arguments")
        return operators.logout()
    finally:
        params.unload()


def cmd_operator(args):
    from firmware import operators

    try:
        sub, _, rest = args.partition(" ")
        rest = rest.strip()
        if sub == "list":
            words(rest, 0, "operator list takes no arguments")
            if state.mode != params.READY:
                raise CommandError("notready", "terminal is %s" % state.mode.upper())
            operators.require("supervisor")
            return {"operators": [{"id": o["id"], "role": o["role"]} for o in _core().record("ops")]}
        if sub == "add":
            op_id, role, pin = words(rest, 3, "operator add <id> <role> <pin>")
            return operators.add(op_id, role, pin)
        if sub == "remove":
            return operators.remove(words(rest, 1, "operator remove <id>")[0])
        if sub == "passwd":
            op_id, pin = words(rest, 2, "operator passwd <id> <pin>")
            return operators.passwd(op_id, pin)
        raise CommandError("usage", "operator list|add <id> <role> <pin>|remove <id>|passwd <id> <pin>")
    finally:
        params.unload()
