"""The link manager on a vterm: WiFi first, cellular when WiFi is gone, link
and cell changes visible in `status`, and real TCP (echo, then MQTT through
umqtt.simple) over the modem model's data path to host sockets."""
import json
import socket
import threading
import time

import pytest

from roampos.netutil import free_port

pytestmark = pytest.mark.simulation
# The cellular path with umqtt needs more than 64K on the 64-bit unix port
# (link manager, WiFi and modem drivers, umqtt, qstr pools in 7-14 KB steps;
# the modem, WLAN and scanner models run in the vterm process, not in this
# heap): the default 96K. See README, heap.
VTERM_HEAP = "96K"

CONFIG = {"wifi": [{"ssid": "not-here", "psk": "not-here-psk"}, {"ssid": "roampos-shop", "psk": "secret-psk"}],
          "apn": {"46000": "cmnet", "46001": "3gnet"}}


def ok(dut, line, timeout=5):
    r = dut.command(line, timeout)
    assert r.ok, "sent %r, got %r" % (line, r.raw)
    return r


def status_until(dut, pred, timeout=8.0, what=""):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = ok(dut, "status").data
        if pred(last):
            return last
        time.sleep(0.2)
    raise AssertionError("status never showed %s within %.0fs; last: %r" % (what, timeout, last))


# Each test sets up the terminal it needs, so that it runs alone, in any order, as in the file.
def fresh(dut):
    """The terminal as booted: no link configured (`link set` holds until the next boot) and
    the radio models' defaults (WiFi on the air at -58 dBm; the modem registered on 460-00,
    LAC 0x1840, CI 0x1A2B3C, -73 dBm): they run in the firmware's process and restart with it."""
    dut.reboot_and_wait()


def online(dut, kind):
    """A fresh terminal with CONFIG, online over `kind`: "wifi", or "cell" with the WiFi off
    the air. Returns the status that showed it."""
    fresh(dut)
    if kind == "cell":
        ok(dut, "sim link wifi down")
    ok(dut, "link set " + json.dumps(CONFIG))
    return status_until(dut, lambda s: s.get("link") == kind, timeout=15, what="link " + kind)


class Server:
    """A TCP server on localhost running handler(conn) per connection."""

    def __init__(self, handler):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.seen = []
        self.stop = False
        self.t = threading.Thread(target=self._loop, daemon=True)
        self.t.start()

    def _loop(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            c.settimeout(5)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            self.handler(c, self.seen)
        except OSError:
            pass
        finally:
            c.close()

    def wait_seen(self, n, timeout=5.0):
        # The terminal's reply can come before this server's thread has read the last packet.
        end = time.monotonic() + timeout
        while len(self.seen) < n and time.monotonic() < end:
            time.sleep(0.02)
        return self.seen

    def close(self):
        self.stop = True
        self.t.join(2)
        self.sock.close()


def echo(c, seen):
    while True:
        d = c.recv(256)
        if not d:
            return
        seen.append(d)
        c.sendall(d)


def recv_exact(c, n):
    out = b""
    while len(out) < n:
        d = c.recv(n - len(out))
        if not d:
            raise OSError("closed")
        out += d
    return out


def mqtt_packet(c):
    head = recv_exact(c, 1)[0]
    n, mult = 0, 1
    while True:
        b = recv_exact(c, 1)[0]
        n += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            break
    return head, recv_exact(c, n)


def tiny_broker(c, seen):
    # MQTT 3.1.1 just enough for connect / publish QoS 0 / disconnect.
    head, body = mqtt_packet(c)
    seen.append(("connect", head, body))
    c.sendall(b"\x20\x02\x00\x00")          # CONNACK, accepted
    while True:
        head, body = mqtt_packet(c)
        seen.append((head >> 4, head, body))
        if head >> 4 == 14:                 # DISCONNECT
            return


def test_unconfigured_link_is_offline(dut):
    fresh(dut)
    r = ok(dut, "link")
    assert r["link"] == "offline", r.raw


def test_bad_link_config_is_refused(dut):
    fresh(dut)
    for line, code in (("link set nope", "badjson"), ('link set [1]', "badjson"),
                       ('link set {"wifi": "shop"}', "badarg"), ('link set {"apn": {"46000": 5}}', "badarg"),
                       ('link set {"order": ["lora"]}', "badarg"), ("link echo 127.0.0.1 99999 x", "badarg"),
                       # the rules of a profile's network: WPA2 key length, text, known fields, APN keys
                       ('link set {"wifi": [{"ssid": "shop", "psk": 5}]}', "badarg"),
                       ('link set {"wifi": [{"ssid": "shop", "psk": "short"}]}', "badarg"),
                       ('link set {"wifi": [{"ssid": ""}]}', "badarg"),
                       ('link set {"apn": {"x\\ny": "cmnet"}}', "badarg"),
                       ('link set {"apn": {"46000": "cm net"}}', "badarg"),
                       ('link set {"foo": 1}', "badarg"),
                       ("link frobnicate", "usage")):
        r = dut.command(line)
        assert not r.ok and r.code == code, "sent %r, expected ERR %s, got %r" % (line, code, r.raw)
        assert "short" not in r.raw   # a WiFi key is never echoed, even a wrong one
    assert ok(dut, "link")["link"] == "offline"   # nothing of it was applied


def test_wifi_first_in_profile_order(dut):
    fresh(dut)
    ok(dut, "link set " + json.dumps(CONFIG))
    s = status_until(dut, lambda s: s.get("link") == "wifi", what="link wifi")
    assert s["location"] == {"bssid": "02:52:50:00:00:01"}, s
    assert s["signal_dbm"] == -58 and "roampos-shop" in s["link_detail"]


def test_wifi_echo_uses_host_tcp(dut):
    online(dut, "wifi")
    srv = Server(echo)
    try:
        r = ok(dut, "link echo 127.0.0.1 %d hello-over-wifi" % srv.port, 10)
        assert r.data == {"echo": "hello-over-wifi", "via": "wifi"}, r.raw
    finally:
        srv.close()


def _silent(c, seen):
    # accepts, reads, never answers (the connection ends when the test closes the server)
    seen.append(c.recv(64))
    time.sleep(30)


def test_a_server_that_never_answers_is_a_neterr_not_a_hang(dut):
    online(dut, "wifi")
    srv = Server(_silent)
    try:
        t0 = time.monotonic()
        r = dut.command("link echo 127.0.0.1 %d are-you-there" % srv.port, 30)
        assert not r.ok and r.code == "neterr" and r.message.startswith("echo via wifi"), r.raw
        r = dut.command("link mqtt 127.0.0.1 %d" % srv.port, 30)
        assert not r.ok and r.code == "neterr", r.raw
        assert time.monotonic() - t0 < 28
        assert ok(dut, "echo alive").data == {"echo": "alive"}
    finally:
        srv.close()


def test_wifi_down_falls_back_to_cell_with_location(dut):
    online(dut, "wifi")
    ok(dut, "sim link wifi down")
    s = status_until(dut, lambda s: s.get("link") == "cell", what="link cell")
    assert s["location"] == {"mcc": "460", "mnc": "00", "lac": 0x1840, "ci": 0x1A2B3C}, s
    assert "apn cmnet" in s["link_detail"], s
    assert s["signal_dbm"] == -73


def test_cell_change_and_signal_show_in_status(dut):
    online(dut, "cell")
    ok(dut, "sim cell 460 01 6200 123456")
    s = status_until(dut, lambda s: (s.get("location") or {}).get("ci") == 123456, what="ci 123456")
    assert s["location"] == {"mcc": "460", "mnc": "01", "lac": 6200, "ci": 123456}, s
    ok(dut, "sim signal -91")
    s = status_until(dut, lambda s: s.get("signal_dbm") == -91, what="signal -91")


def test_tcp_echo_over_the_modem(dut):
    online(dut, "cell")
    srv = Server(echo)
    try:
        r = ok(dut, "link echo 127.0.0.1 %d hello-over-cell" % srv.port, 15)
        assert r.data == {"echo": "hello-over-cell", "via": "cell"}, r.raw
        assert b"".join(srv.seen) == b"hello-over-cell"
    finally:
        srv.close()


def test_umqtt_simple_over_the_modem(dut):
    online(dut, "cell")
    srv = Server(tiny_broker)
    try:
        r = ok(dut, "link mqtt 127.0.0.1 %d" % srv.port, 20)
        assert r.data == {"mqtt": "published", "via": "cell"}, r.raw
        kinds = [s[0] for s in srv.wait_seen(3)]
        assert kinds == ["connect", 3, 14], srv.seen
        pub = srv.seen[1][2]
        # Not .../status: the host's workers would take "probe" for a terminal's heartbeat.
        assert pub[2:2 + pub[1]] == b"roampos/v1/probe/link" and pub.endswith(b"link check"), pub
        # A client ID of its own each time (MQTT 3.1.1 §3.1.3.1: at most 23 bytes): two
        # terminals probing one broker must not take each other's session over.
        first = _client_id(srv.seen[0][2])
        ok(dut, "link mqtt 127.0.0.1 %d" % srv.port, 20)
        second = _client_id(srv.wait_seen(6)[3][2])
        assert first.startswith(b"roampos-probe-") and len(first) <= 23 and first != second, (first, second)
    finally:
        srv.close()


def _client_id(connect_body):
    # CONNECT variable header: protocol name (2 + 4), level, flags, keepalive; then the ID.
    n = int.from_bytes(connect_body[10:12], "big")
    return bytes(connect_body[12:12 + n])


def _no_connack(c, seen):
    seen.append(mqtt_packet(c))   # CONNECT, then the server goes away without a CONNACK


def test_a_failed_mqtt_check_over_the_modem_leaves_the_link_free(dut):
    online(dut, "cell")
    # The modem has one TCP link: a check that failed half-way must close it, or the next
    # connection is refused ("CIPOPEN error 4") until a reset.
    bad, good = Server(_no_connack), Server(echo)
    try:
        r = dut.command("link mqtt 127.0.0.1 %d" % bad.port, 30)
        assert not r.ok and r.code == "neterr" and "via cell" in r.message, r.raw
        r = ok(dut, "link echo 127.0.0.1 %d still-here" % good.port, 20)
        assert r.data == {"echo": "still-here", "via": "cell"}, r.raw
    finally:
        bad.close()
        good.close()


def test_a_data_session_closed_by_the_network_is_opened_again(dut):
    online(dut, "cell")
    # The cell drops and comes back between two checks: the modem says the network closed the
    # data session (+CIPEVENT), and the link must open it again, not report "cell" while every
    # connection fails.
    ok(dut, "sim link cell down")
    ok(dut, "sim link cell up")
    time.sleep(3)
    srv = Server(echo)
    try:
        end = time.monotonic() + 25
        while True:
            r = dut.command("link echo 127.0.0.1 %d again" % srv.port, 20)
            if r.ok or time.monotonic() > end:
                break
            time.sleep(1)
        assert r.ok and r.data == {"echo": "again", "via": "cell"}, r.raw
    finally:
        srv.close()


def test_an_operator_change_in_the_same_lac_and_ci_moves_the_location(dut):
    online(dut, "cell")
    # LAC and CI are only unique within one network: the same numbers on a Hong Kong operator
    # are another place than on a Shanghai one.
    before = ok(dut, "status").data["location"]
    ok(dut, "sim cell 454 00 %d %d" % (before["lac"], before["ci"]))
    s = status_until(dut, lambda s: (s.get("location") or {}).get("mcc") == "454", timeout=15, what="mcc 454")
    assert s["location"] == {"mcc": "454", "mnc": "00", "lac": before["lac"], "ci": before["ci"]}, s
    ok(dut, "sim cell %s %s %d %d" % (before["mcc"], before["mnc"], before["lac"], before["ci"]))
    status_until(dut, lambda s: (s.get("location") or {}).get("mcc") == before["mcc"], timeout=15, what="back")


def test_connection_refused_is_an_error_not_a_hang(dut):
    online(dut, "cell")
    port = free_port()                           # nobody listens there
    t0 = time.monotonic()
    r = dut.command("link echo 127.0.0.1 %d x" % port, 30)
    assert not r.ok and r.code == "neterr", r.raw
    assert time.monotonic() - t0 < 25
    ok(dut, "echo alive")


def test_cell_lost_then_denied_then_back(dut):
    online(dut, "cell")
    ok(dut, "sim link cell down")
    s = status_until(dut, lambda s: s.get("link") == "offline", what="offline")
    assert s["location"] is None
    ok(dut, "sim link cell denied")
    status_until(dut, lambda s: "denied" in s.get("link_detail", ""), what="denied registration")
    ok(dut, "sim link cell up")
    status_until(dut, lambda s: s.get("link") == "cell", timeout=20, what="cell again (back-off)")


def test_wifi_back_is_preferred_again(dut):
    online(dut, "cell")
    ok(dut, "sim link wifi up")
    s = status_until(dut, lambda s: s.get("link") == "wifi", timeout=15, what="wifi again")
    assert s["location"] == {"bssid": "02:52:50:00:00:01"}


def test_the_link_screen_shows_the_whole_bssid(dut):
    # MENU, LINK STATUS: "bssid 02:52:50:00:00:01" is 23 characters, cut to 16 it showed a
    # BSSID that is not the access point's ("02:52:50:0").
    online(dut, "wifi")
    ok(dut, "sim key D 1 C")
    s = ok(dut, "screen").data
    assert s["text"][:6] == ["LINK", "", "WIFI", "bssid", "02:52:50:", "00:00:01"], s
    ok(dut, "sim key A")


def test_link_set_applies_while_a_link_is_up(dut):
    # A bench engineer moves a terminal that is on WiFi to cellular: the new order takes effect
    # now, not whenever the WiFi happens to drop.
    online(dut, "wifi")
    r = ok(dut, 'link set {"order": ["cell"]}')
    assert r.data == {"configured": True, "networks": 2, "apns": 2}, r.raw   # kept, not 0
    s = status_until(dut, lambda s: s.get("link") == "cell", timeout=15, what="link cell")
    assert "apn cmnet" in s["link_detail"] and s["location"]["mcc"] == "460", s
    ok(dut, 'link set {"order": ["wifi", "cell"], "wifi": [{"ssid": "roampos-backup", "psk": "backup-psk"}]}')
    s = status_until(dut, lambda s: s.get("link") == "wifi", timeout=15, what="link wifi")
    assert s["link_detail"] == "joined roampos-backup" and s["location"] == {"bssid": "02:52:50:00:00:02"}, s


def test_cell_first_order_returns_to_cell(dut):
    # order ["cell", "wifi"]: WiFi is the fallback, and the link goes back to cellular once it
    # registers again, as it goes back to WiFi in the usual order.
    fresh(dut)
    ok(dut, "link set " + json.dumps(dict(CONFIG, order=["cell", "wifi"])))
    status_until(dut, lambda s: s.get("link") == "cell", timeout=15, what="link cell")
    ok(dut, "sim link cell down")
    s = status_until(dut, lambda s: s.get("link") == "wifi", timeout=20, what="link wifi")
    assert s["link_detail"] == "joined roampos-shop", s
    ok(dut, "sim link cell up")
    s = status_until(dut, lambda s: s.get("link") == "cell", timeout=20, what="cell again")
    assert s["location"]["mcc"] == "460" and s["signal_dbm"] == -73, s
