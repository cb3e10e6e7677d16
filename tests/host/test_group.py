"""The worker's group reads (Handler.begin_group) give the same decisions as reading per message."""
from roampos import iso
from roampos.host import totals
from roampos.termsim import SimTerminal
from hostkit import MID, SERIAL, TID, TMK


def card(n: int) -> str:
    return "622848" + f"{n:010d}"


def _group(db, handler, msgs):
    """Handle `msgs` as the worker does: one transaction, group reads first."""
    with db.transaction():
        decoded = [handler.decode(TID, m) for m in msgs]
        handler.begin_group([(TID, d) for d in decoded])
        try:
            return [handler.handle(TID, m, decoded=d) for m, d in zip(msgs, decoded)]
        finally:
            handler.end_group()


def test_group_reads_keep_duplicates_reversals_and_totals(db, handler):
    term = SimTerminal(TID, MID, SERIAL, TMK)
    term.apply_signon(handler.handle(TID, term.signon()).response)
    committed = term.financial(card(1), 500, cell="460-00-6200-1")
    first = _group(db, handler, [committed])[0]
    assert first.rc == "00" and first.stored
    # The same terminal several times in one group: a redelivery of a committed request, a new sale,
    # its exact duplicate, another sale and its reversal.
    sale = term.financial(card(2), 700, cell="460-00-6200-1")
    other = term.financial(card(3), 900, cell="460-00-6200-1")
    stan = iso.decode(other)["11"]
    rev = term.reversal(stan, card(3), 900)
    out = _group(db, handler, [committed, sale, sale, other, rev])
    assert out[0].response == first.response and not out[0].stored
    assert out[1].rc == "00" and out[1].stored
    assert out[2].response == out[1].response and not out[2].stored
    assert out[3].rc == "00" and out[4].rc == "00"
    assert db.one("SELECT status FROM txns WHERE stan=? AND kind='financial'", (stan,))[0] == "reversed"
    assert db.one("SELECT COUNT(*) FROM txns")[0] == 4
    assert sorted(map(tuple, db.all("SELECT scope, subject, region, local_date, amount FROM daily_totals"
                                     " WHERE amount<>0"))) == sorted(map(tuple, totals.ledger_daily(db)))


def test_group_reads_see_a_blocked_terminal_and_unknown_ones(db, handler):
    term = SimTerminal(TID, MID, SERIAL, TMK)
    term.apply_signon(handler.handle(TID, term.signon()).response)
    db.execute("UPDATE terminals SET blocked=1 WHERE terminal_id=?", (TID,))
    out = _group(db, handler, [term.financial(card(4), 100, cell="460-00-6200-1")])
    assert out[0].rc == "58"
    with db.transaction():
        handler.begin_group([("ZZZ00001", {"t": "0200", "41": "ZZZ00001", "11": "000001"})])
        assert handler._group.terms == {"ZZZ00001": None}
        handler.end_group()
