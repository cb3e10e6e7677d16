# Console entry points of the parameter subsystem: param, region, batch, login,
# logout, operator. Thin on purpose: the console keeps this module for good,
# the work is in param_cmds / region_cmds / login_cmds, unloaded after each
# command so that their bytecode does not stay in the heap.
from firmware import params

imp = None  # `param import` in progress: [total bytes, crc32, bytes so far, running crc]


def _run(module, fn, args):
    try:
        mod = __import__("firmware." + module, None, None, (fn,))
        return getattr(mod, fn)(args)
    finally:
        params._unload(module)
        params.unload()


def cmd_param(args):
    return _run("param_cmds", "cmd_param", args)


def cmd_region(args):
    return _run("region_cmds", "cmd_region", args)


def cmd_batch(args):
    return _run("region_cmds", "cmd_batch", args)


def cmd_login(args):
    return _run("login_cmds", "cmd_login", args)


def cmd_logout(args):
    return _run("login_cmds", "cmd_logout", args)


def cmd_operator(args):
    return _run("login_cmds", "cmd_operator", args)
