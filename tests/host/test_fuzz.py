"""Fuzz: thousands of mutated messages are rejected without a crash and without a ledger change."""
import random

from roampos import iso
from roampos.termsim import SimTerminal
from hostkit import MID, SERIAL, TID, TMK
from test_authorization import card

SNAPSHOT = ("SELECT COUNT(*), COALESCE(SUM(amount),0) FROM txns",
            "SELECT COUNT(*) FROM batches", "SELECT COUNT(*) FROM pin_tries",
            "SELECT tpk, tak, tdk, blocked FROM terminals")


def snapshot(db):
    return [db.all(q) for q in SNAPSHOT]


def mutate(rng: random.Random, raw: bytes) -> bytes:
    b = bytearray(raw)
    kind = rng.randrange(7)
    if kind == 0:                                   # truncated
        return bytes(b[:rng.randrange(len(b))])
    if kind == 1:                                   # wrong bitmap bits
        i = rng.randrange(4, 12)
        b[i] ^= 1 << rng.randrange(8)
    elif kind == 2:                                 # bad length prefix of an LLVAR/LLLVAR field
        i = rng.randrange(12, len(b))
        b[i] = rng.choice(b"0123456789:/ \xff")
    elif kind == 3:                                 # random bytes
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
    elif kind == 4:                                 # flip bits anywhere
        for _ in range(rng.randrange(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif kind == 5:                                 # extra bytes
        b += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 20)))
    else:                                           # a slice moved elsewhere
        i, j = sorted(rng.sample(range(len(b)), 2))
        chunk = b[i:j]
        del b[i:j]
        k = rng.randrange(len(b) + 1)
        b[k:k] = chunk
    return bytes(b)


def bases(t: SimTerminal):
    return [t.financial(card(1), 1000), t.financial(card(2), 200000, pin="1234"),
            t.financial(card(3), 500, mti="0400"), t.settlement((1, 1000, 0, 0)), t.signon(),
            t.financial(card(4), 300, proc="200000", orig_rrn="000000000001"),
            t.financial(card(5), 700, mti="0220"), t.financial(card(6), 700, mti="0320")]


def test_mutated_messages_are_rejected_without_ledger_change(handler):
    t = SimTerminal(TID, MID, SERIAL, TMK)
    t.apply_signon(handler.handle(TID, t.signon()).response)
    before = snapshot(handler.db)
    rng = random.Random(8583)
    messages = bases(t)
    outcomes = {"no response": 0}
    for n in range(3000):
        base = messages[n % len(messages)]
        m = mutate(rng, base)
        if m == base:
            continue
        out = handler.handle(TID, m)
        assert not out.stored, f"mutation stored a row: {m.hex()}"
        if out.response is None:
            outcomes["no response"] += 1
            continue
        rc = iso.decode(out.response).get("39")
        assert rc != "00", f"mutation approved: {m.hex()} -> {out.response.hex()}"
        outcomes[rc] = outcomes.get(rc, 0) + 1
    assert snapshot(handler.db) == before
    assert outcomes["no response"] > 500 and outcomes.get("A0", 0) > 500, outcomes
    # the host still works afterwards
    assert iso.decode(handler.handle(TID, t.financial(card(9), 100)).response)["39"] == "00"


def test_mutations_through_the_broker(env):
    before = snapshot(env.db)
    rng = random.Random(64)
    messages = bases(env.term)
    for n in range(300):
        m = mutate(rng, messages[n % len(messages)])
        if m not in messages:
            env.link.send(TID, m)
    env.link._resp.clear()
    r = env.send(env.term.financial(card(9), 100))
    assert r["39"] == "00"                      # processed after all 300 mutations
    after = snapshot(env.db)
    assert before[0][0][0] == 0 and after[0][0][0] == 1      # only the valid sale was stored
    assert env.db.all("SELECT stan FROM txns") == [(r["11"],)]
    assert after[2] == before[2] and after[3] == before[3]    # no PIN tries, same keys, not blocked


def test_control_characters_in_any_field_are_refused_before_the_ledger(handler):
    """Correctly MACed messages whose text fields hold a NUL or another control character: refused
    (PostgreSQL would reject a NUL in text only when the row is written, as a 96)."""
    t = SimTerminal(TID, MID, SERIAL, TMK)
    t.apply_signon(handler.handle(TID, t.signon()).response)
    before = snapshot(handler.db)
    for field in ("2", "3", "4", "7", "11", "14", "22", "49"):
        for ch in ("\x00", "\x1b", "\x7f"):
            doc = iso.decode(t.financial(card(7), 100, cell=None))
            doc[field] = doc[field][:1] + ch + doc[field][2:]
            out = handler.handle(TID, iso.encode(doc, t.tak))
            assert out.response is None and not out.stored, (field, ch, out)
    for tag, value in (("WF", "AA:BB\x00CC:DD:EE:FF"), ("WF", "not a bssid"), ("OR", "0000\x00000001"),
                       ("SN", SERIAL[:-1] + "\x00")):
        doc = iso.decode(t.financial(card(7), 100, cell=None))
        tlv = iso.decode_tlv(doc["48"])
        tlv[tag] = value
        doc["48"] = iso.encode_tlv(tlv)
        out = handler.handle(TID, iso.encode(doc, t.tak))
        assert not out.stored and (out.response is None or iso.decode(out.response)["39"] == "30"), (tag, out)
    assert snapshot(handler.db) == before
