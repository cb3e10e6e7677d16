"""The worker's group reads (Handler.begin_group) give the same decisions as reading per message."""
from roampos import iso
from roampos.termsim import SimTerminal
from hostkit import MID, SERIAL, TID, TMK, handle_group, totals_from_ledger, totals_table


def card(n: int) -> str:
    return "622848" + f"{n:010d}"


def test_group_reads_keep_duplicates_reversals_and_totals(db, handler):
    term = SimTerminal(TID, MID, SERIAL, TMK)
    term.apply_signon(handler.handle(TID, term.signon()).response)
    committed = term.financial(card(1), 500, cell="460-00-6200-1")
    first = handle_group(handler, TID, [committed])[0]
    assert first.rc == "00" and first.stored
    # The same terminal several times in one group: a redelivery of a committed request, a new sale,
    # its exact duplicate, another sale and its reversal.
    sale = term.financial(card(2), 700, cell="460-00-6200-1")
    other = term.financial(card(3), 900, cell="460-00-6200-1")
    stan = iso.decode(other)["11"]
    rev = term.reversal(stan, card(3), 900)
    out = handle_group(handler, TID, [committed, sale, sale, other, rev])
    assert out[0].response == first.response and not out[0].stored
    assert out[1].rc == "00" and out[1].stored
    assert out[2].response == out[1].response and not out[2].stored
    assert out[3].rc == "00" and out[4].rc == "00"
    assert db.one("SELECT status FROM txns WHERE stan=? AND kind='financial'", (stan,))[0] == "reversed"
    assert db.one("SELECT COUNT(*) FROM txns")[0] == 4
    assert totals_table(db) == totals_from_ledger(db)


def test_group_reads_see_a_blocked_terminal_and_unknown_ones(db, handler):
    term = SimTerminal(TID, MID, SERIAL, TMK)
    term.apply_signon(handler.handle(TID, term.signon()).response)
    db.execute("UPDATE terminals SET blocked=1 WHERE terminal_id=?", (TID,))
    out = handle_group(handler, TID, [term.financial(card(4), 100, cell="460-00-6200-1")])
    assert out[0].rc == "58"
    with db.transaction():
        handler.begin_group([("ZZZ00001", {"t": "0200", "41": "ZZZ00001", "11": "000001"})])
        assert handler._group.terms == {"ZZZ00001": None}
        handler.end_group()
