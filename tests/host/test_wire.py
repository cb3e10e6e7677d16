"""The workers' lean MQTT client: framing, persistent session, redelivery, reconnect."""
import os
import subprocess
import threading
import time

import pytest

from roampos import iso
from roampos.host.service import Worker
from roampos.host.wire import CONNECTION_LOST, WireClient
from roampos.mqtt_codec import PUBLISH, ProtocolError, packet
from roampos.termsim import MqttLink, SimTerminal
from hostkit import MID, SERIAL, TID, TMK, free_port, signed_on, wait_port, worker_thread
from test_authorization import card

FILTER = "$share/wire-test/wt/v1/+/req"


def _client(url: str, cid: str, subs=(FILTER,)) -> WireClient:
    port = int(url.rsplit(":", 1)[1])
    c = WireClient("127.0.0.1", port, cid, keepalive=5, subscriptions=list(subs))
    return c


def _collect(c: WireClient, n: int, timeout: float = 5.0) -> list:
    got: list = []
    c.on_message = got.append
    end = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < end:
        assert c.loop(0.05) == 0
    return got


def _subscribed(c: WireClient) -> None:
    done = threading.Event()
    c.on_subscribe = done.set
    end = time.monotonic() + 5
    while not done.is_set() and time.monotonic() < end:
        c.loop(0.05)
    assert done.is_set(), "no SUBACK"


def test_packets_split_anywhere_are_reassembled():
    c = WireClient("127.0.0.1", 1, "split")
    got: list = []
    c.on_message = got.append
    big = os.urandom(300)   # a two-byte remaining length
    raw = (packet(PUBLISH, 2, b"\x00\x03a/b\x00\x07" + big) + packet(PUBLISH, 0, b"\x00\x01x" + b"hi"))
    for i in range(len(raw)):
        c.inbuf += raw[i:i + 1]
        c._parse()
    assert [(m.topic, m.payload, m.qos, m.mid) for m in got] == [("a/b", big, 1, 7), ("x", b"hi", 0, 0)]
    assert not c.inbuf


@pytest.mark.parametrize("raw", [packet(PUBLISH, 2, b"\x00"), packet(PUBLISH, 2, b"\x00\x01a\x00"),
                                 packet(4, 0, b"\x01")])
def test_a_truncated_packet_from_the_broker_is_a_protocol_error(raw):
    """What loop() turns into a reconnect, not an exception that would end the worker."""
    c = WireClient("127.0.0.1", 1, "short")
    c.on_message = lambda m: None
    c.inbuf += raw
    with pytest.raises(ProtocolError, match="truncated"):
        c._parse()


def test_unacknowledged_message_is_redelivered_to_the_same_session(mosquitto):
    """A worker that dies between receipt and commit has acknowledged nothing: its session gets it again."""
    a = _client(mosquitto, "wt-worker")
    a.connect()
    _subscribed(a)
    pub = _client(mosquitto, "wt-pub", subs=())
    pub.connect()
    pub.publish("wt/v1/T1/req", b"first", qos=1)
    pub.publish("wt/v1/T1/req", b"second", qos=1)
    pub.flush()
    first, second = _collect(a, 2)
    a.ack(first)          # committed
    a.flush()
    time.sleep(0.2)
    a.sock.close()        # dies without DISCONNECT, "second" unacknowledged
    a.sock = None
    b = _client(mosquitto, "wt-worker")   # the restarted worker: same client ID, same session
    b.connect()
    again = _collect(b, 1)
    assert [m.payload for m in again] == [b"second"]
    assert _collect(b, 1, timeout=0.5) == [], "an acknowledged message came back"
    b.ack(again[0])
    b.disconnect()
    pub.disconnect()


def test_response_in_flight_is_resent_after_reconnect(mosquitto):
    link = _client(mosquitto, "wt-term", subs=("wt/v1/T1/resp",))
    link.connect()
    _subscribed(link)
    w = _client(mosquitto, "wt-host", subs=())
    w.connect()
    w.close()                              # connection gone before the broker acknowledged
    w.publish("wt/v1/T1/resp", b"answer", qos=1)
    assert w.loop(0) == CONNECTION_LOST and len(w.inflight) == 1
    w.connect()                            # resent with DUP, kept until the PUBACK
    assert [m.payload for m in _collect(link, 1)] == [b"answer"]
    end = time.monotonic() + 5
    while w.inflight and time.monotonic() < end:
        w.loop(0.05)
    assert not w.inflight
    w.disconnect()
    link.disconnect()


def _mosquitto(port: int, tmp_path) -> subprocess.Popen:
    conf = tmp_path / "restart.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc


def test_worker_reconnects_and_resubscribes_after_broker_restart(db, tmp_path):
    if not os.path.exists("/usr/sbin/mosquitto"):
        pytest.skip("mosquitto not installed")
    port = free_port()
    broker = _mosquitto(port, tmp_path)
    url = f"mqtt://127.0.0.1:{port}"
    w, t = worker_thread(url, db.url, int(time.time() * 1000) % 10000)
    try:
        assert w.ready.wait(10)
        broker.terminate()
        broker.wait(5)
        w.ready.clear()
        time.sleep(0.5)
        broker = _mosquitto(port, tmp_path)     # a new broker without the old session
        assert w.ready.wait(15), "worker did not resubscribe"
        link = MqttLink(url)
        try:
            term = signed_on(link)
            assert term.check(link.request(TID, term.financial(card(400), 300)))["39"] == "00"
        finally:
            link.close()
    finally:
        w.stop()
        t.join(10)
        broker.terminate()
        broker.wait(5)


def test_request_of_a_worker_that_died_before_commit_is_answered_once(mosquitto, db):
    index = int(time.time() * 1000) % 10000 + 10000
    w = Worker(mosquitto, db.url, index=index)
    died = threading.Event()

    def die(batch, **kw):   # received, never committed nor acknowledged; the process is gone
        w.client.sock.close()
        w.client.sock = None
        w.stop()
        died.set()
    t = threading.Thread(target=w.serve_forever, daemon=True)
    link = MqttLink(mosquitto)
    try:
        link.subscribe([TID])
        t.start()
        assert w.ready.wait(10)
        term = SimTerminal(TID, MID, SERIAL, TMK)
        term.apply_signon(link.request(TID, term.signon()))
        w.process_batch = die
        raw = term.financial(card(500), 800)
        link.send(TID, raw)
        assert died.wait(10)
        t.join(10)
        assert db.one("SELECT COUNT(*) FROM txns WHERE amount=800")[0] == 0
        w2, t2 = worker_thread(mosquitto, db.url, index)
        resp = link.wait(TID, iso.decode(raw)["11"], 10)
        assert resp is not None and term.check(resp)["39"] == "00"
        w2.stop()
        t2.join(10)
        assert db.one("SELECT COUNT(*) FROM txns WHERE amount=800")[0] == 1
    finally:
        link.close()


def test_requests_held_when_the_broker_lost_the_session_are_still_handled(db, tmp_path):
    # The worker has read a request but not handled it yet (its group is running, or the database
    # is out) when the broker restarts without persistence: CONNACK says no session, nothing will
    # be redelivered, so the held copy is the only one left and must be handled, not dropped.
    port = free_port()
    broker = _mosquitto(port, tmp_path)
    url = f"mqtt://127.0.0.1:{port}"
    w = Worker(url, db.url, index=int(time.time() * 1000) % 10000 + 20000)
    link = MqttLink(url)
    try:
        w.start()
        end = time.monotonic() + 10
        while not w.ready.is_set() and time.monotonic() < end:
            w.client.loop(0.1)
        raw = SimTerminal(TID, MID, SERIAL, TMK).signon()
        link.send(TID, raw)
        while not w.inbox and time.monotonic() < end:
            w.client.loop(0.1)
        assert [m.payload for m in w.inbox] == [raw]          # read, not handled yet
        broker.terminate()
        broker.wait(5)
        broker = _mosquitto(port, tmp_path)                    # the session is gone with it
        for _ in range(100):
            w.pump(0.1)
            if w.client.connected():
                break
        assert w.client.connected() and not w.client.session_present
        assert [m.payload for m in w.inbox] == [raw]          # kept: nobody will redeliver it
        w.process_batch([w.inbox.popleft()])
        assert db.one("SELECT keys_at FROM terminals WHERE terminal_id=?", (TID,))[0] is not None
    finally:
        link.close()
        w.client.disconnect()
        broker.terminate()
        broker.wait(5)
