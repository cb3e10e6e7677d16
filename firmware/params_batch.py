# Per-region batch summary in flash: count, total and unsettled count per
# region code, so that a region switch can refuse to leave an unsettled batch.
# The transaction code calls add() after journaling; settlement calls settle().


def _store():
    from firmware import params_store

    return params_store


def summary():
    # {region: [count, total minor units, unsettled count]}. Damaged totals must not stop the
    # terminal: the host's ledger has every transaction, and a settlement that then does not
    # balance is resolved by the batch upload.
    return _store().get_single_or_reset("batch", "batch summary damaged; reset: settle with upload")


def add(region, amount):
    b = summary()
    c, t, u = b.get(region, (0, 0, 0))
    b[region] = [c + 1, t + amount, u + 1]
    _store().put_single("batch", b)
    return b[region]


def settle(region):
    # The batch is closed: the region starts a new, empty one.
    b = summary()
    done = b.pop(region, [0, 0, 0])
    _store().put_single("batch", b)
    return done


def unsettled(region):
    return summary().get(region, (0, 0, 0))[2]
