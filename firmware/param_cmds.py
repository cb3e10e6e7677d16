# `param ...` commands (via cmd_param): get, set, export, check, log, and the chunked
# import of a whole parameter set (protocol in docs/console.md "Parameters").
import binascii
import json
import os

from firmware import params, state
from firmware.console import CommandError, words


def _core():
    # Imported per use, not pinned here: params.unload() frees it between commands.
    from firmware import params_core

    return params_core

_TOP = {"merchant": "merchant", "authorized": "grants", "locations": "loc",
        "operators": "ops", "active": "active"}
_IMPORT = "/data/import.tmp"  # = params_store.IMPORT_TMP, removed at boot
_MAX_SET = 32768


def cmd_param(args):
    sub, _, rest = args.partition(" ")
    fn = _SUBS.get(sub)
    if fn is None:
        raise CommandError("usage", "param get|set|export|import|check|log")
    try:
        return fn(rest.strip())
    finally:
        params.unload()


def _ready():
    if state.mode != params.READY:
        raise CommandError("notready", "terminal is %s: %s" % (state.mode.upper(), state.mode_detail))


def redact(rec, obj):
    # Secrets never leave the terminal: PIN hashes and WiFi keys are masked.
    if rec == "ops":
        return [dict((k, v) for k, v in o.items() if k != "pin_hash") for o in obj]
    if rec[0] == "r":
        for w in obj["network"]["wifi"]:
            if w["psk"]:
                w["psk"] = "***"
    return obj


def _locate(path):
    # "profiles.440300.limits.per_txn" -> ("r440300", ["limits", "per_txn"])
    parts = path.split(".")
    if parts[0] == "profiles" and len(parts) > 1:
        return "r" + parts[1], parts[2:]
    rec = _TOP.get(parts[0])
    if rec is None:
        raise CommandError("badpath", "unknown parameter %s; top level: version, merchant, authorized, "
                           "profiles.<code>, locations, operators, active" % _short(path))
    return rec, parts[1:]


def _short(s):
    return repr(s if len(s) <= 40 else s[:37] + "...")


def _walk(obj, keys, path):
    for k in keys:
        try:
            # A list index is a few digits: no sign, nothing that overflows a machine int.
            if isinstance(obj, list) and not (k.isdigit() and len(k) <= 4):
                raise IndexError
            obj = obj[int(k)] if isinstance(obj, list) else obj[k]
        except (KeyError, IndexError, ValueError, TypeError):
            raise CommandError("notfound", "no parameter %s" % _short(path))
    return obj


def _record(rec, path):
    if rec[0] == "r" and rec not in _store().names():
        raise CommandError("notfound", "no parameter %s" % _short(path))
    return _core().record(rec)


def _store():
    from firmware import params_store

    return params_store


def p_get(args):
    _ready()
    path = words(args, 1, "param get <path>")[0]
    if path == "version":
        return {"path": path, "value": state.params_version}
    if path == "profiles":
        return {"path": path, "value": sorted(n[1:] for n in _store().names() if n[0] == "r")}
    rec, keys = _locate(path)
    return {"path": path, "value": _walk(redact(rec, _record(rec, path)), keys, path)}


def p_set(args):
    from firmware import operators
    from firmware import params_schema as schema

    path, text = words(args, 2, "param set <path> <json>", rest=True)
    _ready()   # first: a damaged terminal is not ready, whoever asks (no one can log in there)
    operators.require("admin")
    if path == "version" or path.split(".")[0] in ("operators", "active"):
        raise CommandError("refused", "%s is not set this way; use param import, operator or region use" % path)
    try:
        value = json.loads(text)
    except ValueError:
        # A profile's value may hold WiFi keys anywhere inside it (network, wifi, a whole profile)
        shown = "(may hold a WiFi key: not shown)" if path.startswith("profiles") or "psk" in text \
            else _short(text)
        raise CommandError("invalid", "value for %s is not JSON: %s" % (path, shown))
    rec, keys = _locate(path)
    if rec[0] == "r" and not keys and rec not in _store().names():
        obj = value  # a new region profile
    else:
        obj = _record(rec, path)
        if not keys:
            obj = value
        else:
            parent = _walk(obj, keys[:-1], path)
            k = keys[-1]
            if isinstance(parent, list):
                if not k.isdigit() or int(k) > len(parent):
                    raise CommandError("notfound", "no parameter %s" % _short(path))
                if int(k) == len(parent):
                    parent.append(value)
                else:
                    parent[int(k)] = value
            elif isinstance(parent, dict):
                parent[k] = value
            else:
                raise CommandError("notfound", "no parameter %s" % _short(path))
    codes = [n[1:] for n in _store().names() if n[0] == "r"]
    try:
        if rec[0] == "r":
            schema.code(rec[1:], "profiles." + rec[1:])
            schema.check_profile(obj, "profiles." + rec[1:])
            if rec[1:] not in codes:
                codes.append(rec[1:])
        recs = {}
        for n in ("merchant", "grants", "loc", "ops", "active"):
            recs[n] = obj if n == rec else _core().record(n)
        schema.check_core(recs, codes)
    except schema.ParamError as e:
        raise CommandError("invalid", str(e))
    _core().commit({rec: obj})  # a profile may hold the active region's networks: the link follows
    return {"path": path, "commit": _store().manifest()["v"]}


def p_export(args):
    words(args, 0, "param export takes no arguments")
    _ready()
    out = {"version": state.params_version, "profiles": {}}
    for top, rec in _TOP.items():
        out[top] = redact(rec, _core().record(rec))
    for n in _store().names():
        if n[0] == "r":
            out["profiles"][n[1:]] = redact(n, _core().record(n))
    return {"set": out}


def p_check(args):
    words(args, 0, "param check takes no arguments")
    if state.mode == params.EMPTY:  # nothing to check is not a damaged set
        raise CommandError("notready", "terminal is %s: %s" % (state.mode.upper(), state.mode_detail))
    err = _core().check()
    if err:
        raise CommandError("damaged", err)
    m = _store().manifest()
    c = 0
    for n in sorted(m["r"]):
        c = binascii.crc32(("%s:%d;" % (n, m["r"][n][1])).encode(), c)
    return {"ok": True, "version": m["pv"], "commit": m["v"], "digest": "%08x" % (c & 0xFFFFFFFF),
            "region": state.region}


def p_log(args):
    w = words(args)
    if len(w) > 1 or w and not w[0].isdigit():
        raise CommandError("usage", "param log [n]")
    n = int(w[0]) if w else 10
    if not 1 <= n <= 50:
        raise CommandError("badarg", "param log shows 1..50 entries")
    entries, bad = _store().read_log(n)
    return {"log": entries, "damaged_lines": bad}


def p_import(args):
    from firmware import cmd_param

    sub, _, rest = args.partition(" ")
    if state.mode not in params.OPEN:
        # Only a blank or damaged store is open to provisioning: a sound set that an out-of-memory
        # left unpublished ("reboot needed") keeps its operators and its version.
        from firmware import operators

        operators.require("admin")
        # Not held here: the commit unloads it (params.unload) before it reads the set, its peak.
        del operators
    if sub == "abort":  # after the check: nobody else may cancel an admin's import
        words(rest, 0, "param import abort takes no arguments")
        _abort()
        return {"import": "aborted"}
    if sub == "begin":
        w = words(rest, 2, "param import begin <bytes> <crc32 hex>")
        if not w[0].isdigit() or not 2 <= int(w[0]) <= _MAX_SET:
            raise CommandError("usage", "param import begin <bytes 2..%d> <crc32 hex>" % _MAX_SET)
        try:
            c = int(w[1], 16)
        except ValueError:
            raise CommandError("usage", "param import begin <bytes> <crc32 hex>")
        _abort()
        open(_IMPORT, "wb").close()
        cmd_param.imp = [int(w[0]), c, 0, 0]
        return {"import": "begun", "bytes": int(w[0])}
    imp = cmd_param.imp
    if imp is None:
        raise CommandError("noimport", "no import in progress; start with param import begin")
    if sub == "data":
        # A word too many is a malformed line, not a bad chunk: the import goes on.
        off, b64 = words(rest, 2, "param import data <offset> <base64>")
        try:
            chunk = binascii.a2b_base64(b64)
            # MicroPython's decoder skips what is not base64: only a chunk that encodes back to
            # exactly what was sent is one.
            if binascii.b2a_base64(chunk)[:-1] != b64.encode():
                raise ValueError
        except ValueError:
            _abort()
            raise CommandError("badchunk", "chunk at %s is not base64; import aborted" % off)
        if off != str(imp[2]):
            got = imp[2]
            _abort()
            raise CommandError("badchunk", "chunk at offset %s, expected %d; import aborted" % (off, got))
        if imp[2] + len(chunk) > imp[0]:
            n = imp[0]
            _abort()
            raise CommandError("badchunk", "chunk ends past the %d bytes announced; import aborted" % n)
        with open(_IMPORT, "ab") as f:
            f.write(chunk)
        imp[2] += len(chunk)
        imp[3] = binascii.crc32(chunk, imp[3])
        return {"received": imp[2]}
    if sub == "commit":
        words(rest, 0, "param import commit takes no arguments")  # before _commit: it ends the import
        return _commit(imp)
    raise CommandError("usage", "param import begin|data|commit|abort")


def _reset_tries():
    _store().put_single("tries", {})  # the operator table is new


def _abort():
    from firmware import cmd_param

    cmd_param.imp = None
    try:
        os.remove(_IMPORT)
    except OSError:
        pass


def _commit(imp):
    from firmware import params_schema as schema

    n, c, got, run = imp
    kept, ver, mode = False, None, state.mode
    try:
        if got != n:
            raise CommandError("badimport", "received %d of %d bytes; import aborted" % (got, n))
        if run & 0xFFFFFFFF != c:
            raise CommandError("badimport", "checksum %08x, expected %08x; import aborted" % (run & 0xFFFFFFFF, c))
        # As `region use`: a set that moves the terminal must not strand the region's open batch.
        # Asked before the set is parsed (and its helpers freed): the commit's heap peak is there.
        stranded = None
        if state.region is not None:
            from firmware import params_region
            try:
                params_region.no_open_batch(state.region)
            except CommandError as e:
                stranded = e
            params.unload()
        try:
            with open(_IMPORT) as f:
                s = json.load(f)
        except ValueError:
            raise CommandError("invalid", "parameter set is not JSON; import aborted")
        try:
            ver, recs = schema.split(s, state.region)
        except schema.ParamError as e:
            raise CommandError("invalid", "%s; import aborted" % e)
        del s
        # Checked: the schema (7.6 KB of objects on this port, the largest parameter helper) leaves
        # the heap before the records are written, where the whole set is held: the peak.
        schema = None
        params._unload("params_schema")
        if state.mode not in params.OPEN and ver <= state.params_version:
            # An older set would bring back what the acquirer withdrew (a revoked region grant).
            raise CommandError("stale", "parameter set version %d is not newer than the current %d; import aborted"
                               % (ver, state.params_version))
        if state.region is not None and recs["active"]["region"] != state.region:
            from firmware import params_region   # the new set moves the terminal to another region

            params_region.no_sale_waiting(state.region)
            if stranded:
                raise stranded
        for name in _store().names():
            if name[0] == "r" and name not in recs:
                recs[name] = None  # a profile the new set drops
        # Logged out first: the operator table may change, and once the set is in flash nothing
        # that runs out of memory may leave the old session open under it.
        state.operator = state.role = None
        if state.session is not None:  # and its idle watch (firmware.session), not imported here
            state.session.cancel()
            state.session = None
        _core().commit(recs, ver, after=_reset_tries)  # the link follows the new set's networks
        return {"import": "done", "version": ver, "region": state.region}
    except MemoryError:
        # Nothing changed (a change that reached flash answers CommandError "saved to flash"):
        # the terminal goes on with the old set, and the import stays for a retry or an abort.
        if state.params_version == ver or state.mode != mode:
            raise   # published after all (its answer found no memory): the import is over
        kept = True
        raise CommandError("nomem", "out of memory committing the import; nothing changed, "
                           "import kept: param import commit again, or abort")
    finally:
        if not kept:
            _abort()


_SUBS = {"get": p_get, "set": p_set, "export": p_export, "import": p_import,
         "check": p_check, "log": p_log}
