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


def test_boot_brings_the_link_up_on_the_home_regions_networks(dut):
    s = status_until(dut, lambda s: s.get("link") == "cell", what="link cell")
    assert s["link_detail"] == "registered 46000 apn cmnet", s   # the profile's "460-00": "cmnet"
    assert s["location"]["mcc"] == "460" and s["region"] == "310000", s


def test_a_region_switch_brings_up_that_regions_networks(dut):
    status_until(dut, lambda s: s.get("link") == "cell", what="link cell")
    ok(dut, "login 02 2222")
    ok(dut, "region use 440300")
    s = status_until(dut, lambda s: s.get("link") == "wifi", timeout=20, what="link wifi in Shenzhen")
    assert s["link_detail"] == "joined roampos-shop" and s["location"] == {"bssid": "02:52:50:00:00:01"}, s
    ok(dut, "region use 310000")     # back home: that WiFi is not one of Shanghai's
    s = status_until(dut, lambda s: s.get("link") == "cell", timeout=20, what="link cell in Shanghai")
    assert s["link_detail"] == "registered 46000 apn cmnet", s


def test_link_set_overrides_the_profiles_until_reboot(dut):
    status_until(dut, lambda s: s.get("link") == "cell", what="link cell")
    ok(dut, "login 01 123456")
    ok(dut, 'link set {"order": ["cell"]}')
    ok(dut, "region use 440300")     # its WiFi is on the air, but the admin said cellular only
    time.sleep(3)                     # longer than the switch to WiFi took above
    s = ok(dut, "status")
    assert s["link"] == "cell" and s["link_detail"] == "registered 46000 apn cmnet", s
    ok(dut, "region use 310000")
