"""Cross-region controls, location evidence, risk flags, blocking, heartbeats, malformed input."""
import json
import subprocess
import time

from roampos import iso
from roampos.host import registry
from hostkit import TID, AtTime, roampos_bin, utc
from test_authorization import CELL, card, sale


def test_region_must_be_granted_and_valid(env):
    assert sale(env, card(1), 1000, region="440300")["39"] == "00"          # granted Shenzhen
    env.term.currency = "344"
    r = sale(env, card(2), 1000, region="810000")                            # Hong Kong: never granted
    assert r["39"] == "R1" and "region_not_granted" in env.row(r["11"])["flags"]
    env.term.currency = "156"
    registry.grant_region(env.db, TID, "440300", "2020-01-01", "2020-12-31")   # grant expired
    env.term.batch = "000002"
    r = sale(env, card(3), 1000, region="440300")
    assert r["39"] == "R2" and "region_grant_not_valid" in env.row(r["11"])["flags"]
    registry.revoke_region(env.db, TID, "330100")
    env.term.batch = "000003"
    assert sale(env, card(4), 1000, region="330100")["39"] == "R1"


def test_batch_never_mixes_regions_and_currency_must_match(env):
    assert sale(env, card(5), 1000)["39"] == "00"
    r = sale(env, card(6), 1000, region="440300")          # same batch, other region
    assert r["39"] == "12" and "batch_region_mix" in env.row(r["11"])["flags"]
    env.term.currency = "344"
    assert sale(env, card(7), 1000)["39"] == "12"


def test_location_mismatch_declined_or_flagged_by_policy(env):
    env.term.batch = "000010"
    r = sale(env, card(10), 1000, region="440300", cell=CELL["310000"])
    assert r["39"] == "R3" and "location_mismatch:310000" in env.row(r["11"])["flags"]
    env.db.execute("UPDATE terminals SET location_policy='flag' WHERE terminal_id=?", (TID,))
    r = sale(env, card(11), 1000, region="440300", cell=CELL["310000"])
    assert r["39"] == "00" and "location_mismatch:310000" in env.row(r["11"])["flags"]
    assert env.row(r["11"])["location"] == "460-00-6200-1"
    r = sale(env, card(12), 1000, region="440300", cell="460-00-1-1")
    assert r["39"] == "00" and "location_unknown" in env.row(r["11"])["flags"]
    r = sale(env, card(13), 1000, region="440300", cell=None, extra48={"WF": "AA:BB:CC:DD:EE:FF"})
    assert r["39"] == "00" and "location_unverified" in env.row(r["11"])["flags"]
    r = sale(env, card(14), 1000, region="440300", cell=None)
    assert "no_location" in env.row(r["11"])["flags"]


def test_risk_velocity_travel_and_threshold(env):
    v = card(20)
    for i in range(5):
        assert sale(env, v, 100 + i)["39"] == "00"
    r = sale(env, v, 200)
    assert r["39"] == "59" and "velocity" in env.row(r["11"])["flags"]
    w = card(21)
    assert sale(env, w, 1000)["39"] == "00"
    env.term.batch = "000020"
    r = sale(env, w, 1000, region="440300")               # Shanghai -> Shenzhen within the hour
    assert r["39"] == "59" and "impossible_travel" in env.row(r["11"])["flags"]
    env.term.batch = "000021"
    r = sale(env, card(22), 4_600_000, pin="1234")          # within 10% under 50,000.00
    assert r["39"] == "00" and "near_threshold" in env.row(r["11"])["flags"]
    r = sale(env, card(23), 4_400_000, pin="1234")
    assert r["39"] == "00" and "near_threshold" not in env.row(r["11"])["flags"]


def test_block_takes_effect_at_next_message(env):
    pan = card(30)
    s = sale(env, pan, 1000)
    out = subprocess.run([roampos_bin(), "terminal", "--db", env.db_url, "block", TID],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert sale(env, pan, 1000)["39"] == "58"
    assert env.send(env.term.reversal(s["11"], pan, 1000))["39"] == "00"   # reversals still pass
    out = subprocess.run([roampos_bin(), "terminal", "--db", env.db_url, "block", TID, "--unblock"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert sale(env, card(31), 1000)["39"] == "00"


def test_heartbeat_tracking(env):
    env.link.status(TID, {"fw": "0.3.1", "rssi": -71, "region": "440300", "online": True})
    end = time.time() + 5
    while time.time() < end:
        t = registry.get_terminal(env.db, TID)
        if t["last_seen"]:
            break
        time.sleep(0.05)
    assert (t["firmware"], t["signal"], t["seen_region"], t["online"]) == ("0.3.1", -71, "440300", 1)
    env.link.status(TID, {"online": False})        # what the last will says
    end = time.time() + 5
    while time.time() < end and registry.get_terminal(env.db, TID)["online"] != 0:
        time.sleep(0.05)
    assert registry.get_terminal(env.db, TID)["online"] == 0
    env.link.client.publish(f"roampos/v1/{TID}/status", b"\xff not json", qos=1)
    assert sale(env, card(40), 100)["39"] == "00"   # still serving


def test_hostile_heartbeats_change_nothing_and_stop_nothing(env):
    """Heartbeats carry no MAC: whatever a client publishes on .../status must neither stop a worker
    (the broker would redeliver it to every restart) nor put junk into the registry."""
    env.link.status(TID, {"fw": "0.3.1", "rssi": -71, "region": "440300"})
    end = time.time() + 5
    while time.time() < end and not registry.get_terminal(env.db, TID)["last_seen"]:
        time.sleep(0.05)
    hostile = [b'{"rssi": 99999999999999999999}', b"[" * 100000, b'{"fw": "1.0\\u0000x", "rssi": true}',
               b'{"fw": {"a": 1}, "region": [1], "rssi": 1e300}', b'{"rssi": -10000}', b"{" + b" " * 2000 + b"}",
               b"null", b'"fw"']
    for payload in hostile:
        env.link.client.publish(f"roampos/v1/{TID}/status", payload, qos=1)
    assert sale(env, card(41), 100)["39"] == "00"   # answered: the worker outlived all of them
    t = registry.get_terminal(env.db, TID)
    assert (t["firmware"], t["signal"], t["seen_region"]) == ("1.0x", -71, "440300")


def test_malformed_input_gets_no_response_and_no_row(env):
    n = env.rows()
    raw = env.term.financial(card(50), 100)
    env.link._resp.clear()
    for junk in (b"", b"0200", b"\x00" * 40, b"0200" + b"\xff" * 8 + b"123", b"9999" + bytes(8), raw[:-5]):
        env.link.send(TID, junk)
    # one worker handles one terminal's requests in order: once this answer is back, the junk was seen
    assert sale(env, card(51), 100)["39"] == "00"
    assert env.link._resp == {}, f"junk got answers: {env.link._resp}"
    assert env.rows() == n + 1


def test_cli_list_shows_registry_without_secrets(env):
    env.link.status(TID, {"fw": "0.3.2", "rssi": -60, "region": "310000"})
    time.sleep(0.3)
    out = subprocess.run([roampos_bin(), "terminal", "--db", env.db_url, "list", "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert rows[0]["terminal_id"] == TID and "tmk" not in rows[0] and "tak" not in rows[0]
    assert {g["region"] for g in rows[0]["grants"]} == {"440300", "330100"}
    assert rows[0]["addresses"]["440300"] == "Booth 7, Futian"
    table = subprocess.run([roampos_bin(), "terminal", "--db", env.db_url, "list"],
                           capture_output=True, text=True, timeout=60).stdout
    assert TID in table and "0.3.2" in table
    assert env.term.tak.hex() not in out.stdout.lower()
    assert iso.kcv(env.term.tak)  # keys exist, yet never listed


def test_a_card_expires_at_the_end_of_its_month_where_it_is_used(handler):
    # Shanghai is UTC+8: at 17:00 UTC on 30 November it is already 1 December there.
    at = AtTime(handler, utc(2026, 11, 30, 15, 0))        # 23:00 local, still November
    assert at.sale(card(801), 1000, expiry="2611")["39"] == "00"
    at.now = utc(2026, 11, 30, 17, 0)                      # 01:00 local, 1 December
    assert at.sale(card(802), 1000, expiry="2611")["39"] == "54"


def test_payment_codes_up_to_24_digits_and_pin_blocks_only_with_cards(handler):
    at = AtTime(handler, utc(2026, 11, 27, 8, 0))
    for n in (18, 20, 24):                                  # Alipay codes are 16-24 digits
        r = at.sale("28" + "3" * (n - 2), 1000, method="P")
        assert r["39"] == "00", (n, r)
    # A 20-digit number is no card PAN.
    assert at.send(at.term.financial("6" * 20, 1000, method="C"))["39"] == "30"
    # A PIN block with a QR payment is refused, and does not count against the card's PIN tries.
    for _ in range(3):
        assert at.sale(card(803), 1000, method="Q", pin="9999")["39"] == "30"
    assert at.sale(card(803), 150000, pin="1234")["39"] == "00"


def test_the_low_balance_issuer_is_a_balance(handler):
    at = AtTime(handler, utc(2026, 11, 27, 8, 0))
    low = card(804, "6228481")                              # Test Bank low balance: 50.00
    first = at.sale(low, 4000)
    assert first["39"] == "00"
    assert at.sale(low, 2000)["39"] == "51"                 # 40.00 + 20.00 > 50.00
    assert at.sale(low, 1000)["39"] == "00"                 # 40.00 + 10.00 fits
    assert at.sale(low, 3000, proc="200000", orig_rrn=first["37"])["39"] == "00"   # a refund gives back
    assert at.sale(low, 2500)["39"] == "00"


def test_a_cell_of_another_country_is_a_relocation(handler):
    # A mobile country code that is not the region's proves the terminal is not there, whatever
    # the LAC: flagged, and declined under the 'decline' policy (a LAC the table lacks on the
    # region's own network stays 'unknown').
    at = AtTime(handler, utc(2026, 11, 27, 8, 0))
    r = at.sale(card(901), 1000, cell="452-04-1234-5")           # Viettel, Vietnam
    assert r["39"] == "R3" and "location_mismatch:mcc452" in iso.decode_tlv(r["48"])["FL"], r
    r = at.sale(card(902), 1000, cell="460-00-60000-5")          # China Mobile, LAC not in the table
    assert r["39"] == "00" and "location_unknown" in iso.decode_tlv(r["48"])["FL"], r
