# Region rules: which regions the terminal may work in today, the switch of
# the active region, and the check of the terminal's location against grants.
# Grant dates are inclusive local dates of the granted region (its profile's
# UTC offset applied to the terminal's UTC clock), as the host checks them.
import sys
import time

from firmware import console, params, params_core, state
from firmware.console import CommandError


def grant_state(g, offset, now=None):
    # "valid", "expired" or "not yet" for a grant {"from", "to"} today.
    today = params_core.today(offset, now)
    if today < g["from"]:
        return "not yet", today
    if today > g["to"]:
        return "expired", today
    return "valid", today


def listing():
    m = params_core.record("merchant")
    home = m["home_region"]
    out = [{"code": home, "name": params_core.record("r" + home)["name"], "home": True,
            "state": "valid", "active": home == state.region}]
    for g in params_core.record("grants"):
        p = params_core.record("r" + g["region"])
        st, _ = grant_state(g, p["utc_offset_min"])
        out.append({"code": g["region"], "name": p["name"], "from": g["from"], "to": g["to"],
                    "grant": g["grant"], "state": st, "active": g["region"] == state.region})
    return out


def authorized_today():
    # Region codes the terminal may work in right now.
    codes = [params_core.record("merchant")["home_region"]]
    for g in params_core.record("grants"):
        if grant_state(g, params_core.record("r" + g["region"])["utc_offset_min"])[0] == "valid":
            codes.append(g["region"])
    return codes


def check(code, need_clock=True):
    # Raise CommandError unless the terminal may work in region `code` today. Without a set
    # clock no grant can be judged: refused for a switch, left to the host (which checks every
    # transaction's region online) for a transaction.
    if code == params_core.record("merchant")["home_region"]:
        return
    grant = None
    for g in params_core.record("grants"):
        if g["region"] == code:
            grant = g
    if grant is None:
        raise CommandError("unauthorized", "region %s is not authorized for this terminal" % code)
    if not params_core.clock_ok():
        if need_clock:
            raise CommandError("clock", "terminal clock not set; sign on first")
        return
    st, today = grant_state(grant, params_core.record("r" + code)["utc_offset_min"])
    if st == "expired":
        raise CommandError("expired", "grant %s for %s expired on %s (today %s there)" % (
            grant["grant"], code, grant["to"], today))
    if st == "not yet":
        raise CommandError("notyet", "grant %s for %s starts on %s (today %s there)" % (
            grant["grant"], code, grant["from"], today))


def no_sale_waiting(cur):
    # A sale keyed and checked in one region must not complete in another: ERR busy while one
    # waits for a card (sale is not imported just to ask: no sale before its import).
    sale = sys.modules.get("firmware.sale")
    if sale is not None and sale.amount is not None:
        raise CommandError("busy", "a sale of %d is waiting in region %s; cancel it first" % (sale.amount, cur))


def no_open_batch(cur):
    # A batch without per-region batches must be settled before the terminal leaves its region:
    # `batch settle` works only in the active region, so a batch left behind (by `region use`, or
    # a new set that withdraws the region) could never be settled on this terminal.
    from firmware import params_batch

    n = params_batch.unsettled(cur)
    if n and not params_core.record("r" + cur).get("batch_per_region", False):
        raise CommandError("unsettled", "region %s has %d unsettled transaction%s; settle before switching" % (
            cur, n, "" if n == 1 else "s"))


def use(code):
    cur = state.region
    if code == cur:
        return {"region": code, "name": state.region_name, "changed": False}
    no_sale_waiting(cur)
    check(code)
    p = params_core.record("r" + code)
    no_open_batch(cur)
    def logged():
        _log({"t": int(time.time()), "ev": "region", "from": cur, "to": code, "op": state.operator})
        console.event({"region": code, "name": p["name"], "from": cur})

    params_core.commit({"active": {"region": code}}, after=logged)  # the link follows in commit
    return {"region": code, "name": p["name"], "changed": True}


def _log(ev):
    from firmware import params_store

    params_store.log(ev)


def where(loc):
    # Region code for location evidence, from the set's mapping table, or None.
    table = params_core.record("loc")
    if "bssid" in loc:
        return table.get("bssids", {}).get(str(loc["bssid"]).lower())
    try:
        mcc, mnc, lac = int(loc["mcc"]), int(loc["mnc"]), int(loc["lac"])
    except (KeyError, TypeError, ValueError):
        return None
    for c in table["cells"]:
        if c[0] == mcc and (c[1] == "*" or c[1] == mnc) and c[2] <= lac <= c[3]:
            return c[4]
    return None


def locate():
    loc = state.location
    region = warn = None
    if loc and state.mode == params.READY:
        region = where(loc)
        if region is not None and region not in authorized_today():
            warn = "location %s not authorized" % region
    changed = warn != state.location_warning or region != state.location_region
    state.location_warning = warn
    state.location_region = region
    if changed:
        console.event({"location": loc, "location_region": region, "warning": warn})
