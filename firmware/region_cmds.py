# Console commands `region ...` and `batch ...`: list and switch regions, show
# where the terminal is, and the per-region batch summary.
import json

from firmware import boards, params, state
from firmware.console import CommandError, words


def _ready():
    if state.mode != params.READY:
        raise CommandError("notready", "terminal is %s: %s" % (state.mode.upper(), state.mode_detail))


def _vterm_only(what):
    if boards.get().name != "vterm":
        raise CommandError("refused", "%s is a virtual-terminal test hook" % what)


def cmd_region(args):
    from firmware import params_region

    try:
        sub, _, rest = args.partition(" ")
        rest = rest.strip()
        if sub in ("", "list"):
            words(rest, 0, "region list takes no arguments")
            _ready()
            return {"active": state.region, "regions": params_region.listing()}
        if sub == "use":
            from firmware import operators

            code = words(rest, 1, "region use <six-digit GB/T 2260 code>")[0]
            _ready()
            operators.require("supervisor")
            if len(code) != 6 or not code.isdigit():
                raise CommandError("usage", "region use <six-digit GB/T 2260 code>")
            return params_region.use(code)
        if sub == "locate":
            if rest:
                # Test hook: what `sim cell` / the modem will set on a board.
                _vterm_only("region locate <json>")
                try:
                    loc = json.loads(rest)
                except ValueError:
                    raise CommandError("invalid", "location is not JSON")
                if loc is not None and not isinstance(loc, dict):
                    raise CommandError("invalid", 'location must be {"mcc","mnc","lac","ci"} or {"bssid"}')
                state.location = loc
                from firmware import params_core

                params_core.location_changed()
            return {"location": state.location, "location_region": state.location_region,
                    "warning": state.location_warning}
        raise CommandError("usage", "region list|use <code>|locate")
    finally:
        params.unload()


def cmd_batch(args):
    from firmware import params_batch

    try:
        sub, _, rest = args.partition(" ")
        if sub == "":
            return {"region": state.region, "batches": params_batch.summary()}
        _ready()
        if sub == "add":  # until the transaction code feeds the batch
            _vterm_only("batch add")
            amount = rest.strip()
            if not amount.isdigit() or not 0 < int(amount) < 10 ** 11:
                raise CommandError("usage", "batch add <amount in minor units>")
            from firmware import params_region
            params_region.check(state.region, need_clock=False)
            c, t, u = params_batch.add(state.region, int(amount))
            return {"region": state.region, "count": c, "total": t, "unsettled": u}
        if sub == "settle":
            words(rest, 0, "batch settle takes no arguments")
            _vterm_only("batch settle")
            c, t, u = params_batch.settle(state.region)
            return {"region": state.region, "settled": c, "total": t}
        raise CommandError("usage", "batch [add <amount>|settle]")
    finally:
        params.unload()
