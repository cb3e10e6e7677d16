# Operators: salted PIN hashes, login with lockout, role checks. The operator
# table is record "ops" of the parameter set; failed-try counters live in the
# single record "tries" so that a power cycle does not reset a lockout.
# PINs are never stored, logged or echoed: only sha256 hashes (see pin_hash).
import hashlib
import os
import time
from binascii import hexlify, unhexlify

from firmware import boards, params, params_core, state
from firmware.console import CommandError

RANK = {"cashier": 1, "supervisor": 2, "admin": 3}
ITER = 500  # sha256 rounds: ~tens of ms on an RP2040, enough to slow guessing


def pin_hash(pin, salt, n):
    # h1 = sha256(salt | pin), h(i+1) = sha256(h(i) | salt); hex of h(n).
    # tools/roampos/provision.py computes the same for provisioning files.
    h = hashlib.sha256(salt + pin.encode()).digest()
    for _ in range(n - 1):
        h = hashlib.sha256(h + salt).digest()
    return hexlify(h).decode()


def new_hash(pin):
    check_pin(pin)
    salt = os.urandom(8)
    return {"salt": hexlify(salt).decode(), "n": ITER, "hash": pin_hash(pin, salt, ITER)}


def check_pin(pin):
    if not (4 <= len(pin) <= 12 and pin.isdigit()):
        raise CommandError("badpin", "PIN must be 4 to 12 digits")


def _same(a, b):
    # Compare without an early exit.
    d = len(a) ^ len(b)
    for x, y in zip(a, b):
        d |= ord(x) ^ ord(y)
    return d == 0


def require(role):
    # Refuse unless the logged-in operator has at least `role`.
    if state.mode == params.EMPTY:
        return  # nothing provisioned, no operators yet: provisioning is open
    if state.role is None:
        raise CommandError("denied", "needs a %s login" % role)
    if RANK[state.role] < RANK[role]:
        raise CommandError("denied", "needs a %s login; operator %s is %s" % (role, state.operator, state.role))


def find(ops, op_id):
    for o in ops:
        if o["id"] == op_id:
            return o
    return None


def _ready():
    if state.mode != params.READY:
        raise CommandError("notready", "terminal is %s" % state.mode.upper())


def login(op_id, pin):
    from firmware import params_store as store, session

    _ready()
    # Whoever types a login now is at the terminal: the session before ends, also when this one
    # fails (a wrong PIN must not leave a supervisor's session open for the one who typed it).
    session.end()
    ops = params_core.record("ops")
    o = find(ops, op_id)
    tries = _tries()
    if o is None:
        # Not an operator ID: maybe a PIN typed in the wrong field. Never echoed or journaled.
        _log_fail("?", "unknown operator")
        raise CommandError("denied", "unknown operator or wrong PIN")
    n = tries.get(op_id, 0)
    limit = o.get("tries", 3)
    last = n >= limit and _last_admin(ops, o, tries)
    if n >= limit:
        if not last:
            _log_fail(op_id, "locked")
            raise CommandError("locked", "operator %s is locked after %d wrong PINs; an admin must set a new PIN" % (op_id, n))
        wait = _wait_s(n, limit)
        if wait > 0:
            _log_fail(op_id, "locked")
            raise CommandError("locked", "operator %s is the last admin: next try in %d s" % (op_id, wait))
    # The try counts before the PIN is checked: a power cut between the check and a later
    # write would make a wrong guess free (its answer could be seen before the count is saved).
    tries[op_id] = n + 1
    store.put_single("tries", tries)
    h = o.get("pin_hash")
    try:
        good = _same(pin_hash(pin, unhexlify(h["salt"]), h["n"]), h["hash"])
    except (TypeError, KeyError, ValueError):
        raise CommandError("damaged", "operator %s has no valid PIN hash; load the parameter set again" % op_id)
    if not good:
        if o["role"] == "admin":
            # The last admin's back-off runs from its own last wrong PIN: a cashier typing wrong
            # PINs every minute must not keep restarting it (the admin locked out for good).
            state.pin_fail_ms = boards.ticks_ms()
        _log_fail(op_id, "wrong PIN")
        left = limit - n - 1
        if left <= 0 and (last or _last_admin(ops, o, tries)):
            raise CommandError("locked", "wrong PIN; operator %s is the last admin: next try in %d s"
                               % (op_id, _backoff_s(n + 1, limit)))
        if left <= 0:
            raise CommandError("locked", "wrong PIN; operator %s is now locked" % op_id)
        raise CommandError("denied", "unknown operator or wrong PIN (%d tr%s left)" % (left, "y" if left == 1 else "ies"))
    tries.pop(op_id)
    store.put_single("tries", tries)
    session.begin(op_id, o["role"])  # until logout, or 15 min with no command or key press
    return {"operator": op_id, "role": o["role"]}


# The last admin who can still log in is never locked for good (only reflashing would bring the
# terminal back): past the limit each try waits 1 min, doubling per wrong PIN up to 1 h. The wait
# runs on uptime since the last wrong PIN (state.pin_fail_ms), or since boot, so a reset does not
# shorten it; on the board's monotonic clock (boards.ticks_ms), as the session's idle time.


def _backoff_s(n, limit):
    return 60 << (n - limit) if n - limit < 6 else 3600


def _wait_s(n, limit):
    # Seconds before the last admin's next try; <= 0: it may try now.
    since = state.pin_fail_ms
    if since is None:
        since = boards.BOOT_MS
    return _backoff_s(n, limit) - time.ticks_diff(boards.ticks_ms(), since) // 1000


def _last_admin(ops, o, tries):
    if o["role"] != "admin":
        return False
    for x in ops:
        if x is not o and x["role"] == "admin" and tries.get(x["id"], 0) < x.get("tries", 3):
            return False
    return True


def _tries():
    # Damaged counters must neither crash a login nor lock everyone out: they start from zero.
    from firmware import params_store as store

    return store.get_single_or_reset("tries", "failed-PIN counters damaged; reset to zero")


def _log_fail(op_id, why):
    from firmware import console, params_store as store

    ev = {"t": int(time.time()), "ev": "login_failed", "op": op_id[:8], "why": why}
    store.log(ev)
    console.event({"login_failed": op_id[:8], "why": why})


def logout():
    from firmware import session

    was = state.operator
    session.end()
    return {"operator": was}


def _save(ops, after=None):
    from firmware import params_schema as schema

    try:
        schema.check_ops(ops)
    except schema.ParamError as e:
        raise CommandError("invalid", str(e))
    params_core.commit({"ops": ops}, after=after)  # after: run (or tried) once in flash, even out of memory


def add(op_id, role, pin):
    _ready()   # first: a damaged terminal is not ready, whoever asks (no one can log in there)
    require("admin")
    ops = params_core.record("ops")
    if find(ops, op_id) is not None:
        raise CommandError("exists", "operator %s exists; use operator passwd" % op_id)
    if role not in RANK:
        raise CommandError("invalid", "role must be cashier, supervisor or admin")
    ops.append({"id": op_id, "role": role, "pin_hash": new_hash(pin)})
    _save(ops, lambda: _clear_tries(op_id))
    return {"operator": op_id, "role": role}


def remove(op_id):
    _ready()   # first: a damaged terminal is not ready, whoever asks (no one can log in there)
    require("admin")
    ops = params_core.record("ops")
    o = find(ops, op_id)
    if o is None:
        raise CommandError("notfound", "no such operator")  # never echoed: maybe a PIN in the wrong field
    ops.remove(o)
    if not any(x["role"] == "admin" for x in ops):
        raise CommandError("refused", "operator %s is the last admin" % op_id)
    _save(ops)
    if state.operator == op_id:
        logout()
    return {"removed": op_id}


def passwd(op_id, pin):
    # An admin sets anyone's PIN (and so lifts a lockout); others their own.
    _ready()
    if state.operator != op_id:
        require("admin")
    ops = params_core.record("ops")
    o = find(ops, op_id)
    if o is None:
        raise CommandError("notfound", "no such operator")  # never echoed: maybe a PIN in the wrong field
    o["pin_hash"] = new_hash(pin)
    _save(ops, lambda: _clear_tries(op_id))
    return {"operator": op_id, "pin": "changed"}


def _clear_tries(op_id):
    from firmware import params_store as store

    tries = _tries()
    if op_id in tries:
        tries.pop(op_id)
        store.put_single("tries", tries)
