"""The link follows the active region's profile: its WiFi networks in order, then cellular with
the APN for the operator, brought up at boot and again after a region switch; `link set`
overrides the profiles until the next boot."""
import time

import pytest

from console_helpers import example_set_with, ok
from test_sim_link import status_until


def _shop_wifi_in_shenzhen(s):
    # Shanghai's shop WiFi is not on the air in the simulation (cellular, then); the Shenzhen
    # profile lists the simulation's access point.
    s["profiles"]["440300"]["network"]["wifi"] = [{"ssid": "Expo-Futian-Hall3", "psk": "expo-hall-3-pass"},
                                                  {"ssid": "roampos-shop", "psk": "secret-psk"}]


VTERM_PARAMS = example_set_with(_shop_wifi_in_shenzhen, "roampos-link-")
pytestmark = pytest.mark.simulation


def _link(dut, kind):
    return status_until(dut, lambda s: s.get("link") == kind, timeout=20, what="link " + kind)


def test_boot_brings_the_link_up_on_the_home_regions_networks(dut):
    s = _link(dut, "cell")
    assert s["link_detail"] == "registered 46000 apn cmnet", s   # the profile's "460-00": "cmnet"
    assert s["location"]["mcc"] == "460" and s["region"] == "310000", s


def test_a_region_switch_brings_up_that_regions_networks(dut):
    _link(dut, "cell")
    ok(dut, "login 02 2222")
    ok(dut, "region use 440300")
    s = _link(dut, "wifi")
    assert s["link_detail"] == "joined roampos-shop" and s["location"] == {"bssid": "02:52:50:00:00:01"}, s
    ok(dut, "region use 310000")     # back home: that WiFi is not one of Shanghai's
    s = _link(dut, "cell")
    assert s["link_detail"] == "registered 46000 apn cmnet", s


def test_a_cell_outside_the_grants_warns_and_the_location_follows_the_link(dut):
    _link(dut, "cell")
    ok(dut, "sim cell 460 00 10800 4660")   # LAC 10800: Guangzhou (440100), not granted
    s = status_until(dut, lambda s: s.get("location_warning") is not None, what="a location warning")
    assert s["location_region"] == "440100" and s["location"]["lac"] == 10800, s
    ok(dut, "sim cell 460 00 6208 1715004")  # back in Shanghai
    s = status_until(dut, lambda s: s.get("location_region") == "310000", what="Shanghai's cell")
    assert s["location_warning"] is None, s
    ok(dut, "login 02 2222")
    ok(dut, "region use 440300")
    s = _link(dut, "wifi")
    # the shop's BSSID is in no row of the location table: no region, rather than the old cell's
    assert s["location"] == {"bssid": "02:52:50:00:00:01"} and s["location_region"] is None, s
    ok(dut, "region use 310000")
    status_until(dut, lambda s: s.get("location_region") == "310000", timeout=20, what="cell again")


def test_running_out_of_memory_during_a_switch_loses_neither_the_switch_nor_the_link(dut):
    _link(dut, "cell")
    ok(dut, "login 02 2222")
    # One write: the link task reads the new region's profile with the heap held.
    dut.write(b"region use 440300\r\nsim squeeze 1000 1500\r\n")
    time.sleep(2)
    s = _link(dut, "wifi")
    assert s["region"] == "440300" and s["link_detail"] == "joined roampos-shop", s
    ok(dut, "sim link wifi down")            # and the link task still follows the radios
    ok(dut, "sim link cell down")
    s = _link(dut, "offline")
    assert s["signal_dbm"] is None, s
    ok(dut, "sim link wifi up")
    ok(dut, "sim link cell up")
    _link(dut, "wifi")
    ok(dut, "region use 310000")
    _link(dut, "cell")


def test_link_set_overrides_the_profiles_until_reboot(dut):
    _link(dut, "cell")
    ok(dut, "login 01 123456")
    # pasted together: a switch, then the admin's own network; the profile must not undo it
    dut.write(b'region use 440300\r\nlink set {"wifi": [{"ssid": "roampos-backup", "psk": "backup-psk"}]}\r\n')
    s = _link(dut, "wifi")
    time.sleep(1)
    assert ok(dut, "status")["link_detail"] == "joined roampos-backup"
    ok(dut, "region use 310000")             # Shanghai's networks would mean cellular
    time.sleep(3)
    assert ok(dut, "status")["link_detail"] == "joined roampos-backup"
    dut.reboot_and_wait()                    # until the next boot
    s = _link(dut, "cell")
    assert s["link_detail"] == "registered 46000 apn cmnet", s


def test_the_idle_screen_shows_the_whole_location_warning(dut):
    # The warning is 30 characters: cut to one 16-character row it read "location 440100", with
    # nothing to say that the terminal is somewhere it is not authorized.
    _link(dut, "cell")
    ok(dut, "sim cell 460 00 10800 4660")   # LAC 10800: Guangzhou (440100), not granted
    status_until(dut, lambda s: s.get("location_warning") is not None, what="a location warning")
    s = ok(dut, "screen")
    assert s["screen"] == "idle" and s["text"][4:6] == ["location 440100", "not authorized"], s
    assert s["inverted"] == [4, 5], s
    ok(dut, "sim cell 460 00 6208 1715004")  # back in Shanghai
    status_until(dut, lambda s: s.get("location_region") == "310000", what="Shanghai's cell")
    s = ok(dut, "screen")
    assert s["text"][4:6] == ["", ""] and s["inverted"] == [], s
