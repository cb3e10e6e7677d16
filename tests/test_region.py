"""Region rules through the console: who may switch, to which regions, when."""
import datetime

import pytest

from console_helpers import err, example_set_with, ok
from test_sim_link import status_until


def _local_date(days=0):
    # Today in UTC+8 (the profiles' offset), as the terminal judges grants.
    now = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=8, days=days)
    return now.strftime("%Y-%m-%d")


def _more_regions(s):
    # The example plus regions whose grants are expired, not yet valid, and
    # ending exactly today / yesterday in local time (the date boundary).
    base = s["profiles"]["330100"]
    for code, name, frm, to in (("320100", "Nanjing", "2020-01-01", "2020-12-31"),
                                ("350200", "Xiamen", "2099-01-01", "2099-12-31"),
                                ("110000", "Beijing", "2024-01-01", _local_date(0)),
                                ("120000", "Tianjin", "2024-01-01", _local_date(-1))):
        s["profiles"][code] = dict(base, name=name, batch_per_region=False)
        s["authorized"].append({"region": code, "from": frm, "to": to, "grant": "G-" + code})


VTERM_PARAMS = example_set_with(_more_regions, "roampos-regions-")
pytestmark = pytest.mark.simulation




def test_starts_ready_in_home_region(dut):
    s = ok(dut, "status")
    assert (s["mode"], s["region"], s["region_name"]) == ("ready", "310000", "Shanghai"), s
    regions = {r["code"]: r for r in ok(dut, "region list")["regions"]}
    assert regions["310000"]["home"] and regions["310000"]["active"]
    assert regions["440300"]["state"] == "valid" and regions["320100"]["state"] == "expired"
    assert regions["350200"]["state"] == "not yet" and "810000" not in regions


def test_switch_needs_supervisor(dut):
    err(dut, "region use 440300", "denied", "needs a supervisor login")
    ok(dut, "login 03 3333")
    err(dut, "region use 440300", "denied", "operator 03 is cashier")
    assert ok(dut, "status")["region"] == "310000"


def test_authorized_switch_shows_region_and_is_logged(dut):
    ok(dut, "login 02 2222")
    dut.events.clear()
    r = ok(dut, "region use 440300")
    assert r == {"region": "440300", "name": "Shenzhen", "changed": True}, r
    ev = dut.wait_event(lambda e: "region" in e and "from" in e)
    assert ev == {"region": "440300", "name": "Shenzhen", "from": "310000"}, ev
    s = ok(dut, "status")
    assert (s["region"], s["region_name"]) == ("440300", "Shenzhen"), s
    log = ok(dut, "param log")["log"]
    assert log[-1]["ev"] == "region" and log[-1]["to"] == "440300" and log[-1]["op"] == "02", log


def test_unauthorized_expired_and_future_refused(dut):
    ok(dut, "login 02 2222")
    err(dut, "region use 810000", "unauthorized", "region 810000 is not authorized for this terminal")
    m = err(dut, "region use 320100", "expired", "grant G-320100 for 320100 expired on 2020-12-31")
    assert "today %s there" % _local_date(0) in m, m
    err(dut, "region use 350200", "notyet", "grant G-350200 for 350200 starts on 2099-01-01")
    err(dut, "region use 31000", "usage", "six-digit")
    assert ok(dut, "status")["region"] == "440300"


def test_grant_dates_are_inclusive_local_dates(dut):
    ok(dut, "login 02 2222")
    err(dut, "region use 120000", "expired", "expired on %s" % _local_date(-1))
    assert ok(dut, "region use 110000")["region"] == "110000"  # last valid day: today there
    assert ok(dut, "region use 440300")["region"] == "440300"


def test_unsettled_batch_refuses_switch_until_settled(dut):
    ok(dut, "login 02 2222")
    ok(dut, "batch add 2500")
    b = ok(dut, "batch add 1000")
    assert (b["count"], b["total"], b["unsettled"]) == (2, 3500, 2), b
    err(dut, "region use 310000", "unsettled", "region 440300 has 2 unsettled transactions; settle before switching")
    assert ok(dut, "status")["region"] == "440300"
    ok(dut, "batch settle")
    assert ok(dut, "region use 310000")["region"] == "310000"


def test_per_region_batches_allow_switch(dut):
    # Hangzhou's profile keeps per-region batches: its open batch may stay.
    ok(dut, "login 02 2222")
    ok(dut, "region use 330100")
    ok(dut, "batch add 800")
    assert ok(dut, "region use 310000")["region"] == "310000"
    assert ok(dut, "batch")["batches"]["330100"] == [1, 800, 1]


def test_location_outside_grants_warns(dut):
    # The location set by hand, with no radio up (the link would report its own cell).
    ok(dut, "sim link cell down")
    ok(dut, "sim link wifi down")
    status_until(dut, lambda s: s.get("link") == "offline", timeout=15, what="link offline")
    dut.events.clear()
    r = ok(dut, 'region locate {"mcc": 454, "mnc": 0, "lac": 1200, "ci": 77}')
    assert r["location_region"] == "810000" and r["warning"] == "location 810000 not authorized", r
    ev = dut.wait_event(lambda e: "location" in e)
    assert ev["warning"] == "location 810000 not authorized", ev
    assert ok(dut, "status")["location_warning"] == "location 810000 not authorized"
    r = ok(dut, 'region locate {"mcc": 460, "mnc": 0, "lac": 10000, "ci": 9}')
    assert r["location_region"] == "440300" and r["warning"] is None, r
    r = ok(dut, 'region locate {"bssid": "02:00:5E:10:00:01"}')
    assert r["location_region"] == "310000" and r["warning"] is None, r
    err(dut, "region locate {nope", "invalid", "not JSON")
    ok(dut, "sim link cell up")
    ok(dut, "sim link wifi up")


def test_region_and_logout_survive_reset(dut):
    ok(dut, "login 02 2222")
    ok(dut, "region use 440300")
    dut.reboot_and_wait()
    s = ok(dut, "status")
    assert (s["region"], s["operator"]) == ("440300", None), s
    err(dut, "region use 310000", "denied", "needs a supervisor login")


def test_no_transaction_once_the_active_regions_grant_has_expired(dut):
    """The grant of the region in use runs out (here: the acquirer's new dates, set by an admin):
    sales and batch entries stop there, also after a reset, until the terminal is back home."""
    ok(dut, "login 02 2222")
    ok(dut, "region use 440300")
    ok(dut, "login 01 123456")
    ok(dut, 'param set authorized.0.from "2020-01-01"')
    ok(dut, 'param set authorized.0.to "2020-12-31"')
    for _ in range(2):
        err(dut, "batch add 100", "expired", "grant ACQ-2026-SZ-0017 for 440300 expired on 2020-12-31")
        dut.events.clear()
        ok(dut, "sim key 1 2 C")
        ev = dut.wait_event(lambda e: "sale" in e, 5)["sale"]
        assert ev["state"] == "refused" and ev["error"] == "expired", ev
        dut.reboot_and_wait()
        ok(dut, "login 01 123456")
    ok(dut, "region use 310000")
    assert ok(dut, "batch add 100")["count"] >= 1
    ok(dut, "batch settle")


def _idle(dut):
    ok(dut, "sim key A")
    ok(dut, "sim key A")
    dut.events.clear()


def test_a_sale_over_the_regions_per_transaction_limit_is_refused(dut):
    # 310000's profile allows 50,000.00 a transaction: 1,234,567.89 (a slip of the finger) used to
    # go straight to TAP CARD; the card read, the cryptogram made for an amount the acquirer forbids.
    _idle(dut)
    ok(dut, "sim key 1 2 3 4 5 6 7 8 9 C")
    ev = dut.wait_event(lambda e: "sale" in e, 5)["sale"]
    assert ev["state"] == "refused" and ev["error"] == "limit", ev
    _idle(dut)
    ok(dut, "sim key 5 0 0 0 0 0 0 C")                         # exactly the limit: allowed
    assert dut.wait_event(lambda e: "sale" in e, 5)["sale"]["state"] == "waiting card"
    ok(dut, "sim key A")


def test_no_region_switch_while_a_sale_waits(dut):
    # A sale keyed and checked in one region must not complete in another (its grant, limits and
    # currency were those of the first): the switch waits until the sale ends.
    _idle(dut)
    ok(dut, "login 02 2222")
    ok(dut, "sim key 5 0 0 C")
    assert dut.wait_event(lambda e: "sale" in e, 5)["sale"]["state"] == "waiting card"
    err(dut, "region use 330100", "busy", "a sale of 500 is waiting in region 310000")
    ok(dut, "sim key A")                                        # cancelled: now it may
    dut.wait_event(lambda e: e.get("sale", {}).get("state") == "cancelled", 5)
    assert ok(dut, "region use 330100")["changed"] is True
    ok(dut, "region use 310000")
    ok(dut, "logout")


def test_no_parameter_set_moves_the_region_under_a_waiting_sale(dut):
    # A new set that no longer grants the active region moves the terminal home: not while a sale
    # keyed in that region waits for a card (as `region use` refuses).
    from roampos import provision

    def withdrawn(s):
        _more_regions(s)
        s["version"] = s.get("version", 1) + 1
        s["authorized"] = [g for g in s["authorized"] if g["region"] != "330100"]
        del s["profiles"]["330100"]
    path = example_set_with(withdrawn, "roampos-withdrawn-")
    ok(dut, "login 02 2222")
    ok(dut, "region use 330100")
    _idle(dut)
    ok(dut, "sim key 7 0 0 C")
    assert dut.wait_event(lambda e: "sale" in e, 5)["sale"]["state"] == "waiting card"
    with pytest.raises(provision.ProvisionError) as e:
        provision.provision(dut, provision.load_set(path), operator="01", pin="123456")
    assert "busy" in str(e.value) and "330100" in str(e.value), e.value
    assert ok(dut, "status")["region"] == "330100"
    ok(dut, "sim key A")                                        # the sale cancelled: now it may
    dut.wait_event(lambda e: e.get("sale", {}).get("state") == "cancelled", 5)
    assert provision.provision(dut, provision.load_set(path), operator="01", pin="123456")["import"] == "done"
    assert ok(dut, "status")["region"] == "310000"


def test_no_parameter_set_moves_the_region_away_from_its_unsettled_batch(dut):
    # A new set that withdraws the active region moved the terminal home with the region's batch
    # open: `batch settle` works only in the active region and the region could not be chosen
    # again, so the batch was stranded. Refused as `region use` refuses, until it is settled.
    from roampos import provision

    def withdrawn(s):
        _more_regions(s)
        s["version"] = 50
        s["authorized"] = [g for g in s["authorized"] if g["region"] != "440300"]
        del s["profiles"]["440300"]
    path = example_set_with(withdrawn, "roampos-withdrawn-sz-")
    ok(dut, "login 02 2222")
    ok(dut, "region use 440300")
    ok(dut, "batch add 700")
    with pytest.raises(provision.ProvisionError) as e:
        provision.provision(dut, provision.load_set(path), operator="01", pin="123456")
    assert "unsettled" in str(e.value) and "440300" in str(e.value), e.value
    assert ok(dut, "status")["region"] == "440300"
    assert ok(dut, "batch settle")["total"] == 700
    assert provision.provision(dut, provision.load_set(path), operator="01", pin="123456")["import"] == "done"
    assert ok(dut, "status")["region"] == "310000"
    assert "440300" not in ok(dut, "batch")["batches"]
