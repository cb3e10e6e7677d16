"""Authorization rules through a real broker: issuers, PIN, limits, refunds, voids, reversals, replays."""
import time

from roampos import iso
from hostkit import MID, SERIAL, TID

CELL = {"310000": "460-00-6200-1", "440300": "460-01-10000-7", "330100": "460-11-8800-3",
        "810000": "454-00-100-1"}


def card(n: int, prefix: str = "622848") -> str:
    return prefix + f"{n:010d}"


def sale(env, pan, amount, region="310000", **kw):
    kw.setdefault("cell", CELL.get(region))
    return env.send(env.term.financial(pan, amount, region=region, **kw))


def test_signon_keys_rotate_and_old_mac_key_is_refused(env):
    old_tak = env.term.tak
    r = sale(env, card(1), 1000)
    assert r["39"] == "00"
    raw_old = env.term.financial(card(1), 1000)          # MAC'd with the old TAK
    env.term.apply_signon(env.send(env.term.signon(), raw_out=True))
    assert env.term.tak != old_tak and len(env.term.tak) == 16
    resp = env.link.request(TID, raw_old)
    assert iso.decode(resp)["39"] == "A0"


def test_approval_stores_masked_pan_fee_and_no_secret(env):
    pan = card(2)
    r = sale(env, pan, 1000)
    assert r["39"] == "00" and len(r["37"]) == 12 and len(r["38"]) == 6
    row = env.row(r["11"])
    assert row["masked_pan"] == "622848******0002"
    assert row["fee"] == 6          # 1000 * 55 bps = 5.5 -> rounds half up to 6 (Shanghai card fee)
    dump = repr(env.db.all("SELECT * FROM txns")) + repr(env.db.all("SELECT * FROM pin_tries"))
    assert pan not in dump


def test_duplicate_resent_replay_and_stale_refused(env):
    raw = env.term.financial(card(3), 1500, cell=CELL["310000"])
    first = env.send(raw, raw_out=True)
    again = env.send(raw, raw_out=True)
    assert first == again and env.rows() == 1
    stan = iso.decode(raw)["11"]
    env.term.clock = lambda: time.time() + 5
    r = env.send(env.term.financial(card(3), 1500, stan=stan))
    assert r["39"] == "94" and env.rows() == 1
    env.term.clock = lambda: time.time() - 3600
    r = env.send(env.term.financial(card(3), 1500))
    assert r["39"] == "94" and env.rows() == 1


def test_identity_and_mac_rejections(env):
    raw = bytearray(env.term.financial(card(4), 100))
    raw[-1] ^= 1
    assert iso.decode(env.link.request(TID, bytes(raw)))["39"] == "A0"
    wrong_merchant = env.term.financial(card(4), 100)
    env.term.mid = "999999999999999"
    assert env.send(env.term.financial(card(4), 100))["39"] == "03"
    env.term.mid, env.term.serial = MID, "CLONED-DEVICE"
    assert env.send(env.term.financial(card(4), 100))["39"] == "03"
    env.term.serial = SERIAL
    # a message for TID sent on another terminal's topic
    env.link.subscribe(["OTHER001"])
    resp = env.link.request("OTHER001", wrong_merchant)
    assert iso.decode(resp)["39"] == "03"
    env.term.tid = "OTHER001"
    resp = env.link.request("OTHER001", env.term.financial(card(4), 100))
    assert iso.decode(resp)["39"] == "03"     # unknown terminal
    assert env.rows() == 0


def test_test_issuers(env):
    assert sale(env, card(1, "6228481"), 6000)["39"] == "51"
    assert sale(env, card(2, "6228481"), 4000)["39"] == "00"
    assert sale(env, card(3), 1000, expiry="2001")["39"] == "54"
    r = sale(env, card(4, "6228482"), 1000)
    assert r["39"] == "43" and "stolen_card" in env.row(r["11"])["flags"]
    assert sale(env, card(5, "6228483"), 1000)["39"] == "75"
    assert sale(env, card(6, "6228484"), 1000)["39"] == "91"
    assert sale(env, card(7, "999999"), 1000)["39"] == "14"


def test_pin_threshold_and_pin_tries(env):
    assert sale(env, card(10), 150000)["39"] == "65"         # over Shanghai's 1,000.00 no-PIN line
    assert sale(env, card(10), 150000, pin="1234")["39"] == "00"
    assert sale(env, card(10), 90000, method="Q")["39"] == "00"  # QR needs no card PIN
    pan = card(11)
    assert sale(env, pan, 500, pin="9999")["39"] == "55"
    assert sale(env, pan, 500, pin="9999")["39"] == "55"
    assert sale(env, pan, 500, pin="9999")["39"] == "75"
    assert sale(env, pan, 500, pin="1234")["39"] == "75"     # locked after three wrong tries


def test_daily_limits_per_card_and_terminal(env):
    # Hangzhou 330100: txn limit 20,000.00, per card per day 30,000.00, per terminal per day 200,000.00
    a = card(20)
    assert sale(env, a, 2_000_001, region="330100", method="Q")["39"] == "61"
    assert sale(env, a, 1_500_000, region="330100", method="Q")["39"] == "00"
    assert sale(env, a, 1_500_000, region="330100", method="Q")["39"] == "00"
    r = sale(env, a, 1, region="330100", method="Q")
    assert r["39"] == "61" and "daily_card_limit" in env.row(r["11"])["flags"]
    for i in range(8):
        assert sale(env, card(30 + i), 2_000_000, region="330100", method="Q")["39"] == "00"
    assert sale(env, card(40), 1_000_000, region="330100", method="Q")["39"] == "00"   # exactly 200,000.00
    r = sale(env, card(41), 1, region="330100", method="Q")
    assert r["39"] == "61" and "daily_terminal_limit" in env.row(r["11"])["flags"]


def test_refunds_bounded_by_original_sale(env):
    pan = card(50)
    s = sale(env, pan, 10000)
    rrn = s["37"]
    assert sale(env, pan, 6000, proc="200000", orig_rrn=rrn)["39"] == "00"
    assert sale(env, pan, 5000, proc="200000", orig_rrn=rrn)["39"] == "64"
    r = sale(env, pan, 4000, proc="200000", orig_rrn=rrn)
    assert r["39"] == "00" and env.row(r["11"])["fee"] == 0
    assert sale(env, pan, 1, proc="200000", orig_rrn=rrn)["39"] == "64"
    assert sale(env, pan, 100, proc="200000", orig_rrn="000000999999")["39"] == "25"
    assert sale(env, card(51), 100, proc="200000", orig_rrn=rrn)["39"] == "12"


def test_a_refund_naming_no_rrn_of_the_host_finds_no_sale(env):
    # An RRN is its ledger row's id in 12 digits: anything else names no sale, even digits that
    # would read as the same number.
    pan = card(52)
    rrn = sale(env, pan, 1000)["37"]
    for other in (rrn[1:], "0" + rrn, "x" + rrn[1:], rrn[:-1] + " "):
        assert sale(env, pan, 100, proc="200000", orig_rrn=other)["39"] == "25"
    assert sale(env, pan, 100, proc="200000", orig_rrn=rrn)["39"] == "00"


def test_an_older_ledger_drops_the_indexes_no_query_uses(db):
    # Every index is written by every authorization: an RRN lookup is a primary-key lookup, and only
    # refunds and voids carry an orig_rrn worth indexing.
    db.execute("CREATE INDEX IF NOT EXISTS txns_rrn ON txns (rrn)")
    db.execute("CREATE INDEX IF NOT EXISTS txns_orig ON txns (orig_rrn)")
    db.create_schema()
    sql = ("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='txns'" if db.kind == "sqlite" else
           "SELECT indexname FROM pg_indexes WHERE schemaname=current_schema() AND tablename='txns'")
    names = {r[0] for r in db.all(sql)}
    assert "txns_refs" in names and "txns_card" in names
    assert not names & {"txns_rrn", "txns_orig"}


def test_voids_are_idempotent(env):
    pan = card(60)
    s = sale(env, pan, 2000)
    v1 = sale(env, pan, 2000, proc="020000", orig_rrn=s["37"])
    assert v1["39"] == "00" and env.row(s["11"])["status"] == "voided"
    v2 = sale(env, pan, 2000, proc="020000", orig_rrn=s["37"])
    assert v2["39"] == "00" and "already_voided" in env.row(v2["11"])["flags"]
    assert env.row(v2["11"])["status"] == "noop"
    s2 = sale(env, pan, 3000)
    assert sale(env, pan, 2999, proc="020000", orig_rrn=s2["37"])["39"] == "64"


def test_a_void_names_its_sales_card(env):
    # A void with another card would move the sale's card totals under the other card's lock and
    # in the other card's view: refused, as a refund with another card is.
    pan = card(61)
    s = sale(env, pan, 2000)
    v = sale(env, card(62), 2000, proc="020000", orig_rrn=s["37"])
    assert v["39"] == "12" and "void_card_mismatch" in env.row(v["11"])["flags"]
    assert _standing(env, s["11"]) == "approved"
    assert sale(env, pan, 2000, proc="020000", orig_rrn=s["37"])["39"] == "00"


def test_reversals_are_idempotent(env):
    pan = card(70)
    s = sale(env, pan, 4000)
    first = env.send(env.term.reversal(s["11"], pan, 4000), raw_out=True)
    assert iso.decode(first)["39"] == "00" and env.row(s["11"])["status"] == "reversed"
    n = env.rows()
    second = env.send(env.term.reversal(s["11"], pan, 4000), raw_out=True)
    assert second == first and env.rows() == n            # a second reversal does nothing
    r = env.send(env.term.reversal("777777", pan, 500))
    assert r["39"] == "00" and "orphan_reversal" in env.row("777777", "reversal")["flags"]
    late = sale(env, pan, 500, stan="777777")               # the original arrives after its reversal
    assert env.row(late["11"])["status"] == "reversed"
    # ... and is not answered as approved: no approval code, a decline the terminal ignores anyway
    assert late["39"] == "12" and "38" not in late
    assert "reversed_before_arrival" in env.row(late["11"])["flags"]


def _standing(env, stan):
    return env.row(stan)["status"]


def test_void_after_a_refund_is_refused(env):
    pan = card(71)
    s = sale(env, pan, 10000)
    assert sale(env, pan, 6000, proc="200000", orig_rrn=s["37"])["39"] == "00"
    v = sale(env, pan, 10000, proc="020000", orig_rrn=s["37"])
    # 60.00 refunded + a 100.00 void would give back 160.00 of a 100.00 sale
    assert v["39"] == "64" and "sale_refunded" in env.row(v["11"])["flags"]
    assert _standing(env, s["11"]) == "approved"


def test_reversal_of_a_refunded_sale_is_not_applied(env):
    pan = card(74)
    s = sale(env, pan, 10000)
    assert sale(env, pan, 4000, proc="200000", orig_rrn=s["37"])["39"] == "00"
    r = env.send(env.term.reversal(s["11"], pan, 10000))
    assert r["39"] == "12" and "sale_refunded" in env.row(s["11"], "reversal")["flags"]
    assert _standing(env, s["11"]) == "approved"


def test_reversal_of_a_void_brings_the_sale_back(env):
    pan = card(72)
    s = sale(env, pan, 10000)
    v = sale(env, pan, 10000, proc="020000", orig_rrn=s["37"])
    assert v["39"] == "00" and _standing(env, s["11"]) == "voided"
    r = env.send(env.term.reversal(v["11"], pan, 10000, proc="020000"))  # the void's response was lost
    assert r["39"] == "00" and "sale_approved_again" in env.row(v["11"], "reversal")["flags"]
    assert _standing(env, s["11"]) == "approved" and _standing(env, v["11"]) == "reversed"
    # the void's reversal overtakes the void: the late void changes nothing
    s2 = sale(env, pan, 3000)
    stan = f"{env.term.stan + 1:06d}"
    late_void = env.term.financial(pan, 3000, proc="020000", orig_rrn=s2["37"], stan=stan, cell=CELL["310000"])
    assert env.send(env.term.reversal(stan, pan, 3000, proc="020000"))["39"] == "00"
    assert env.send(late_void)["39"] == "12"
    assert _standing(env, s2["11"]) == "approved" and _standing(env, stan) == "reversed"
    # the terminal counts both sales; so does the host
    st = env.send(env.term.settlement((2, 13000, 0, 0)))
    assert st["39"] == "00"


def test_impossible_expiry_and_batch_zero_are_format_errors(env):
    assert sale(env, card(75), 100, expiry="9913")["39"] == "30"      # month 13
    # Found after the request's MAC verified: the refusal is MACed, so the terminal can trust it.
    raw = env.send(env.term.financial(card(75), 100, expiry="9913", cell=CELL["310000"]), raw_out=True)
    assert "64" in iso.decode(raw) and iso.verify_mac(env.term.tak, raw)
    t = env.term
    t.batch = "000000"
    try:
        assert sale(env, card(75), 100)["39"] == "30"
    finally:
        t.batch = "000001"


def test_zero_amount_is_invalid(env):
    r = sale(env, card(73), 0)
    assert r["39"] == "13" and env.row(r["11"])["status"] == "declined"


def test_advice_stored_exactly_once(env):
    raw = env.term.financial(card(80), 800, mti="0220", cell=CELL["310000"])
    a = env.send(raw, raw_out=True)
    assert iso.decode(a)["t"] == "0230" and iso.decode(a)["39"] == "00"
    assert env.send(raw, raw_out=True) == a and env.rows() == 1
    r = env.send(env.term.financial(card(81), 800, mti="0220", region="810000", cell=CELL["810000"]))
    assert r["39"] == "00" and "advice_rc_R1" in env.row(r["11"])["flags"]


def test_advice_outside_the_terminals_grants_is_held_not_counted(env):
    # 810000 is not granted: the advice is acknowledged (the money already moved offline) but held
    # for review: never counted in a batch, a settlement or the clearing report.
    r = env.send(env.term.financial(card(82), 900, mti="0220", region="810000", cell=CELL["810000"]))
    assert r["39"] == "00" and env.row(r["11"])["status"] == "held"
    assert "advice_rc_R1" in env.row(r["11"])["flags"]


def test_an_advice_that_is_no_transaction_is_acknowledged_and_held(env):
    # A terminal resends an advice until it is acknowledged: amount 0 or an unknown processing
    # code is answered 00 all the same, stored held with the rule's flag, and counted nowhere.
    for kw, flag in (({"amount": 0}, "advice_rc_13"), ({"amount": 500, "proc": "310000"}, "advice_rc_12")):
        r = env.send(env.term.financial(card(83), mti="0220", cell=CELL["310000"], **kw))
        row = env.row(r["11"])
        assert r["39"] == "00" and row["status"] == "held" and flag in row["flags"], (kw, r, row)
    assert env.send(env.term.settlement((0, 0, 0, 0)))["39"] == "00"


def test_signon_in_the_same_second_with_another_stan_is_accepted(env):
    t0 = time.time() + 3
    env.term.clock = lambda: t0
    env.term.apply_signon(env.send(env.term.signon(), raw_out=True))
    env.term.apply_signon(env.send(env.term.signon(), raw_out=True))   # a reboot: new STAN, same second
    env.term.clock = time.time
    assert sale(env, card(98), 100)["39"] == "00"


def test_unknown_processing_code_and_missing_tag(env):
    assert sale(env, card(90), 100, proc="310000")["39"] == "12"
    raw = env.term.financial(card(90), 100)
    doc = iso.decode(raw)
    tlv = iso.decode_tlv(doc["48"])
    del tlv["EP"]
    doc["48"] = iso.encode_tlv(tlv)
    assert env.send(iso.encode(doc, env.term.tak))["39"] == "30"
    assert env.rows() == 1


def test_a_signon_delivered_again_gets_its_answer_again_and_rotates_nothing(env):
    # A QoS 1 redelivery of the sign-on whose answer was lost (a worker killed between its commit
    # and its answer): the same answer, byte for byte, so the terminal installs the keys the host
    # holds; before, it got 94 and every later message A0 until it signed on anew.
    raw = env.term.signon()
    first = env.send(raw, raw_out=True)
    again = env.send(raw, raw_out=True)
    assert again == first
    assert env.term.check(again, iso.derive_key(env.term.tmk, iso.LABEL_NM_MAC))["39"] == "00"
    env.term.apply_signon(again)
    assert sale(env, card(95), 100)["39"] == "00"      # the keys the host holds
    env.term.apply_signon(first)
    assert sale(env, card(94), 100)["39"] == "00"      # the same keys: nothing rotated


def test_older_recorded_signon_does_not_rotate_keys(env):
    """Someone who recorded a sign-on replays it after a newer one, still inside the time window."""
    t0 = time.time()   # the fixture signed on just now; these two come 2 and 4 s after it
    env.term.clock = lambda: t0 + 2
    recorded = env.term.signon()
    env.term.apply_signon(env.send(recorded, raw_out=True))
    env.term.clock = lambda: t0 + 4
    env.term.apply_signon(env.send(env.term.signon(), raw_out=True))
    again = env.term.check(env.send(recorded, raw_out=True), iso.derive_key(env.term.tmk, iso.LABEL_NM_MAC))
    assert again["39"] == "94"
    assert sale(env, card(96), 100)["39"] == "00"      # the terminal's current keys still work
    env.term.clock = lambda: t0 + 6
    env.term.apply_signon(env.send(env.term.signon(), raw_out=True))   # a newer one goes through
    env.term.clock = time.time
    assert sale(env, card(97), 100)["39"] == "00"


def test_a_reversal_retried_after_the_freshness_window_is_still_applied(handler):
    # The sale's answer and the first 0400 are lost; the terminal, offline for 15 minutes, resends
    # the identical 0400 (messages.md §10). A reversal only undoes, once: it is applied whatever
    # its age, or the cardholder is charged for a sale the terminal called failed.
    from hostkit import AtTime, utc
    at = AtTime(handler, utc(2026, 11, 27, 2, 0))
    s = at.sale(card(951), 5000)
    assert s["39"] == "00"
    rev = at.term.financial(card(951), 5000, mti="0400", stan=s["11"], cell=CELL["310000"])
    at.now += 900
    assert at.send(rev)["39"] == "00"
    assert at.row(s["11"])["status"] == "reversed"
    assert at.send(rev)["39"] == "00" and at.row(s["11"])["status"] == "reversed"   # once


def test_a_stored_message_retried_late_gets_its_answer_and_a_new_one_stays_refused(handler):
    # A 0220 stored, its 0230 lost: the identical bytes 15 minutes later get the stored answer (it
    # changes nothing), so the terminal's store-and-forward queue moves on. A new message that old
    # is still refused as a possible replay, and so is the advice rebuilt with a new field 7.
    from hostkit import AtTime, utc
    at = AtTime(handler, utc(2026, 11, 27, 2, 0))
    adv = at.term.financial(card(952), 3000, mti="0220", cell=CELL["310000"])
    first = at.send(adv)
    assert first["39"] == "00"
    at.now += 900
    assert at.send(adv) == first
    stan = iso.decode(adv)["11"]
    assert at.send(at.term.financial(card(952), 3000, mti="0220", stan=stan, cell=CELL["310000"]))["39"] == "94"
    old = at.term.financial(card(953), 3000, cell=CELL["310000"])   # built now, arrives 15 min late
    at.now += 900
    assert at.send(old)["39"] == "94"
    assert handler.db.one("SELECT COUNT(*) FROM txns WHERE amount=3000")[0] == 1
