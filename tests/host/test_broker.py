"""The embedded MQTT 3.1.1 broker on its own: paho and umqtt.simple clients, malformed packets."""
import os
import queue
import re
import socket
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from roampos.broker import BrokerThread, topic_matches

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def broker():
    b = BrokerThread("127.0.0.1", 0).start()
    yield b
    b.stop()


def client(b, cid="", clean=True, will=None):
    q: "queue.Queue" = queue.Queue()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=clean)
    if will:
        c.will_set(*will)
    subs = queue.Queue()
    c.on_message = lambda cl, u, m: q.put((m.topic, m.payload, m.qos, m.retain))
    c.on_subscribe = lambda *a: subs.put(1)
    c.connect("127.0.0.1", b.broker.port, keepalive=5)
    c.loop_start()
    c.q, c.subs = q, subs
    return c


def sub(c, *filters):
    c.subscribe([(f, 1) for f in filters])
    c.subs.get(timeout=5)


def close(*cs):
    for c in cs:
        c.disconnect()
        c.loop_stop()


def test_topic_matching():
    assert topic_matches("roampos/v1/+/req", "roampos/v1/T1/req")
    assert not topic_matches("roampos/v1/+/req", "roampos/v1/T1/resp")
    assert topic_matches("roampos/#", "roampos/v1/T1/req")
    assert topic_matches("roampos/#", "roampos")
    assert not topic_matches("#", "$SYS/x")


def test_pubsub_qos_retained_wildcards(broker):
    a, b = client(broker), client(broker)
    try:
        sub(a, "roampos/v1/+/resp")
        b.publish("roampos/v1/T1/resp", b"one", qos=1).wait_for_publish(5)
        b.publish("roampos/v1/T1/other", b"no", qos=0)
        b.publish("roampos/v1/T2/resp", b"two", qos=0)
        got = [a.q.get(timeout=5), a.q.get(timeout=5)]
        assert got == [("roampos/v1/T1/resp", b"one", 1, False), ("roampos/v1/T2/resp", b"two", 0, False)]
        b.publish("roampos/v1/T1/params", b"p1", qos=1, retain=True).wait_for_publish(5)
        b.publish("roampos/v1/T1/params", b"p2", qos=1, retain=True).wait_for_publish(5)
        sub(a, "roampos/v1/T1/#")
        assert a.q.get(timeout=5) == ("roampos/v1/T1/params", b"p2", 1, True)
        b.publish("roampos/v1/T1/params", b"", qos=1, retain=True).wait_for_publish(5)   # clears it
        a.q.get(timeout=5)
        c = client(broker)
        sub(c, "roampos/v1/T1/params")
        with pytest.raises(queue.Empty):
            c.q.get(timeout=0.3)
        close(c)
    finally:
        close(a, b)


def test_last_will_on_abrupt_disconnect(broker):
    watcher = client(broker)
    sub(watcher, "roampos/v1/+/status")
    dying = client(broker, will=("roampos/v1/T9/status", b'{"online":false}', 1, True))
    time.sleep(0.2)
    dying._sock.close()          # no DISCONNECT: the broker must publish the will
    assert watcher.q.get(timeout=5) == ("roampos/v1/T9/status", b'{"online":false}', 1, False)
    close(watcher)


def test_shared_subscription_delivers_each_message_once(broker):
    w1, w2, pub = client(broker), client(broker), client(broker)
    try:
        sub(w1, "$share/g/roampos/v1/+/req")
        sub(w2, "$share/g/roampos/v1/+/req")
        for i in range(40):
            pub.publish(f"roampos/v1/T{i}/req", str(i).encode(), qos=1)
        got = []
        end = time.time() + 5
        while len(got) < 40 and time.time() < end:
            for w in (w1, w2):
                try:
                    got.append((w, w.q.get(timeout=0.05)[1]))
                except queue.Empty:
                    pass
        assert sorted(int(p) for _, p in got) == list(range(40))
        assert {w for w, _ in got} == {w1, w2}            # both members took a share
    finally:
        close(w1, w2, pub)


def test_persistent_session_keeps_queued_messages(broker):
    a = client(broker, cid="keeper", clean=False)
    sub(a, "t/#")
    close(a)
    pub = client(broker)
    pub.publish("t/x", b"while away", qos=1).wait_for_publish(5)
    b = client(broker, cid="keeper", clean=False)
    assert b.q.get(timeout=5)[:2] == ("t/x", b"while away")
    close(b, pub)


@pytest.mark.parametrize("junk", [
    b"\x10\xff\xff\xff\xff\x7f",                        # remaining length longer than 4 bytes
    b"\x30\x02\x00\x00",                                # PUBLISH before CONNECT
    b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x05ab",   # client id runs past the packet
    os.urandom(64),
    b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x00\x82\x03\x00\x01\x00",  # CONNECT then short SUBSCRIBE
])
def test_malformed_packets_do_not_kill_the_broker(broker, junk):
    s = socket.create_connection(("127.0.0.1", broker.broker.port))
    s.sendall(junk)
    s.settimeout(2)
    try:
        while s.recv(100):
            pass
    except OSError:
        pass
    s.close()
    a = client(broker)
    sub(a, "ok")
    a.publish("ok", b"alive", qos=1)
    assert a.q.get(timeout=5)[1] == b"alive"
    close(a)


def test_umqtt_simple_client_under_micropython(broker, tmp_path):
    mp = REPO / ".venv" / "bin" / "micropython"
    lib = REPO / "lib"
    if not mp.exists() or not (lib / "umqtt" / "simple.py").exists():
        pytest.skip("micropython unix port or lib/umqtt (make setup) missing")
    script = tmp_path / "t.py"
    script.write_text(
        "from umqtt.simple import MQTTClient\n"
        "got = []\n"
        f"c = MQTTClient('umqtt1', '127.0.0.1', port={broker.broker.port}, keepalive=30)\n"
        "c.set_callback(lambda t, m: got.append((t, m)))\n"
        "c.set_last_will(b'roampos/v1/U1/status', b'{\"online\":false}', retain=True, qos=1)\n"
        "c.connect()\n"
        "c.subscribe(b'roampos/v1/U1/resp', qos=1)\n"
        "c.publish(b'roampos/v1/U1/resp', b'hello', qos=1)\n"
        "for _ in range(50):\n"
        "    if got: break\n"
        "    c.wait_msg()\n"
        "c.ping()\n"
        "c.disconnect()\n"
        "print(got)\n")
    out = subprocess.run([str(mp), str(script)], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "MICROPYPATH": f"{lib}:.frozen"})
    assert out.returncode == 0, out.stderr + out.stdout
    assert "(b'roampos/v1/U1/resp', b'hello')" in out.stdout


# -- bounds and edge cases, on raw sockets (paho would acknowledge everything) -------------------
import struct  # noqa: E402

from roampos import broker as broker_mod  # noqa: E402
from roampos.mqtt_codec import encode_str, packet  # noqa: E402


def raw(b, cid, clean=True, keepalive=60, will=None):
    flags = (2 if clean else 0) | ((0x04 | 0x08) if will else 0)
    body = encode_str("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + encode_str(cid)
    if will:
        body += encode_str(will[0]) + struct.pack("!H", len(will[1])) + will[1]
    s = socket.create_connection(("127.0.0.1", b.broker.port))
    s.settimeout(5)
    s.sendall(packet(1, 0, body))
    assert s.recv(4)[:1] == b"\x20", "no CONNACK"
    return s


def raw_sub(s, filt, mid=1):
    s.sendall(packet(8, 2, struct.pack("!H", mid) + encode_str(filt) + b"\x01"))
    assert recv_packets(s, 1)[0][0] == 9


def recv_packets(s, n, timeout=5.0):
    """n packets as (type, flags, body)."""
    out, buf, end = [], b"", time.monotonic() + timeout
    while len(out) < n:
        while True:
            if len(buf) >= 2:
                length, mult, i = 0, 1, 1
                while i < len(buf):
                    length += (buf[i] & 0x7F) * mult
                    mult *= 128
                    i += 1
                    if not buf[i - 1] & 0x80:
                        break
                if len(buf) >= i + length:
                    out.append((buf[0] >> 4, buf[0] & 15, buf[i:i + length]))
                    buf = buf[i + length:]
                    break
            s.settimeout(max(0.01, end - time.monotonic()))
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
    return out


def publish_id(body):
    (tlen,) = struct.unpack_from("!H", body, 0)
    return struct.unpack_from("!H", body, 2 + tlen)[0], body[4 + tlen:]


def test_a_client_that_never_acknowledges_cannot_stall_the_broker(broker, monkeypatch):
    monkeypatch.setattr(broker_mod, "MAX_INFLIGHT", 50)
    lazy = raw(broker, "lazy")
    raw_sub(lazy, "work/#")
    pub = client(broker)
    for i in range(200):
        pub.publish("work/x", b"%d" % i, qos=1)
    got = recv_packets(lazy, 50)
    assert [publish_id(p[2])[1] for p in got] == [b"%d" % i for i in range(50)]
    with pytest.raises(socket.timeout):
        recv_packets(lazy, 1, timeout=0.5)        # nothing past the 50 in flight ...
    a = client(broker)                            # ... and everyone else is served meanwhile
    sub(a, "ok")
    a.publish("ok", b"alive", qos=1)
    assert a.q.get(timeout=5)[1] == b"alive"
    for _, _, body in got[:10]:                  # 10 acks let 10 more through, in order
        lazy.sendall(packet(4, 0, struct.pack("!H", publish_id(body)[0])))
    assert [publish_id(p[2])[1] for p in recv_packets(lazy, 10)] == [b"%d" % i for i in range(50, 60)]
    close(a, pub)
    lazy.close()


def test_requests_before_the_host_subscribes_wait_for_it():
    b = BrokerThread("127.0.0.1", 0, hold=("$share/roampos-host/roampos/v1/+/req",)).start()
    try:
        t = client(b)
        t.publish("roampos/v1/T1/req", b"early", qos=1).wait_for_publish(5)   # acknowledged by the broker
        w = client(b, cid="worker", clean=False)
        sub(w, "$share/roampos-host/roampos/v1/+/req")
        assert w.q.get(timeout=5)[:2] == ("roampos/v1/T1/req", b"early")
        close(t, w)
    finally:
        b.stop()


def test_a_client_stalled_inside_a_packet_is_dropped_and_its_will_sent(broker):
    watch = client(broker)
    sub(watch, "roampos/v1/+/status")
    s = raw(broker, "stall", keepalive=1, will=("roampos/v1/T9/status", b'{"online":false}'))
    s.sendall(b"\x30\x20\x00")                   # a PUBLISH that never finishes
    assert watch.q.get(timeout=5)[:2] == ("roampos/v1/T9/status", b'{"online":false}')
    close(watch)
    s.close()


@pytest.mark.parametrize("body", [
    b"\x82\x06\x00\x01\x00\x01t\x03",          # QoS 3
    b"\x82\x06\x00\x01\x00\x01t\x05",          # reserved bits
    b"\x80\x06\x00\x01\x00\x01t\x01",          # fixed-header flags 0000
    b"\x82\x06\x00\x00\x00\x01t\x01",          # packet id 0
])
def test_malformed_subscribe_closes_the_connection(broker, body):
    s = raw(broker, "")
    s.sendall(body)
    with pytest.raises((ConnectionError, socket.timeout)):
        recv_packets(s, 1, timeout=2)
    s.close()


def test_bad_will_topic_is_refused(broker):
    s = socket.create_connection(("127.0.0.1", broker.broker.port))
    s.settimeout(2)
    body = encode_str("MQTT") + bytes([4, 0x06]) + struct.pack("!H", 60) + encode_str("w") + \
        encode_str("roampos/#") + struct.pack("!H", 1) + b"x"
    s.sendall(packet(1, 0, body))
    assert s.recv(10) == b""                      # closed, no CONNACK
    s.close()
    assert "roampos/#" not in broker.broker.retained


def test_retained_qos0_stays_qos0(broker):
    p = client(broker)
    p.publish("r/t", b"v", qos=0, retain=True)
    time.sleep(0.2)
    a = client(broker)
    sub(a, "r/#")
    assert a.q.get(timeout=5) == ("r/t", b"v", 0, True)
    close(a, p)


def test_slow_reader_is_dropped_and_offline_queue_bounded(broker, monkeypatch):
    monkeypatch.setattr(broker_mod, "MAX_BUFFER", 64 * 1024)
    monkeypatch.setattr(broker_mod, "MAX_QUEUED", 20)
    slow = raw(broker, "slow")
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw_sub(slow, "big/#")
    pub = client(broker)
    for _ in range(100):
        pub.publish("big/x", b"x" * 50000, qos=0)
    end = time.monotonic() + 10
    while "slow" in broker.broker.sessions and time.monotonic() < end:
        time.sleep(0.05)
    assert "slow" not in broker.broker.sessions   # dropped (clean session: gone)
    keeper = client(broker, cid="keeper2", clean=False)
    sub(keeper, "q/#")
    close(keeper)
    for i in range(30):
        pub.publish("q/x", b"%d" % i, qos=1).wait_for_publish(5)
    assert len(broker.broker.sessions["keeper2"].queue) == 20
    close(pub)
    slow.close()


def _closed(s, timeout=3.0):
    """Whether the broker closed `s` within `timeout` (whatever it sent first is read and dropped)."""
    s.settimeout(timeout)
    try:
        while s.recv(65536):
            pass
        return True
    except socket.timeout:
        return False
    except OSError:
        return True


def _established(port):
    """The broker's established connections (local port `port`), from /proc/net/tcp{,6}."""
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            if int(local.rsplit(":", 1)[1], 16) == port and state == "01":
                n += 1
    return n


@pytest.mark.parametrize("pkt", [
    b"\xc1\x00",                                   # PINGREQ with flags 0001
    b"\x42\x02\x00\x01",                           # PUBACK with flags 0010
    b"\xa0\x05\x00\x01\x00\x01t",                  # UNSUBSCRIBE with flags 0000
    b"\xa2\x02\x00\x01",                           # UNSUBSCRIBE without a filter
    b"\x32\x05\x00\x01t\x00\x00",                  # PUBLISH QoS 1 with packet id 0
    b"\xef\x00",                                   # DISCONNECT with flags set: not a clean one
])
def test_packets_the_spec_says_must_close_the_connection(broker, pkt):
    watch = client(broker)
    sub(watch, "will/#")
    s = raw(broker, "bad", will=("will/bad", b"gone"))
    s.sendall(pkt)
    assert _closed(s), pkt
    assert watch.q.get(timeout=5)[:2] == ("will/bad", b"gone")   # an abnormal end: the will is due
    close(watch)
    s.close()


@pytest.mark.parametrize("flags", [0x1e, 0x22, 0x42])   # will QoS 3; will retain without a will; password, no user
def test_connect_flags_the_spec_forbids_are_refused(broker, flags):
    s = socket.create_connection(("127.0.0.1", broker.broker.port))
    body = encode_str("MQTT") + bytes([4, flags]) + struct.pack("!H", 60) + encode_str("c")
    if flags & 0x04:
        body += encode_str("w/t") + struct.pack("!H", 1) + b"x"
    s.sendall(packet(1, 0, body + struct.pack("!H", 1) + b"p"))
    s.settimeout(2)
    assert s.recv(10) == b""                                      # closed, no CONNACK
    s.close()


def test_a_client_that_does_not_read_is_cut_when_taken_over_or_silent(broker, monkeypatch):
    # close() waits for a buffer only the client could empty: without a cut, every takeover or
    # keepalive expiry of a client that stopped reading leaks a socket and its buffer.
    monkeypatch.setattr(broker_mod, "CLOSE_GRACE_S", 0.3)
    port = broker.broker.port
    pub = client(broker)
    base = _established(port)
    for i in range(3):
        victim = raw(broker, "victim", keepalive=1 if i == 2 else 0)
        victim.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw_sub(victim, "big/#")
        for _ in range(20):
            pub.publish("big/x", b"x" * 100_000, qos=0)
        time.sleep(0.3)
        if i < 2:
            raw(broker, "victim").close()   # the same client ID again: takeover
    end = time.monotonic() + 10
    while _established(port) > base and time.monotonic() < end:
        time.sleep(0.1)
    assert _established(port) <= base, "connections of non-reading clients left open"
    close(pub)


def test_a_repeated_filter_is_one_subscription_and_bursts_are_paced(broker):
    p = client(broker)
    for i in range(60):                            # 6 MB of retained messages: past a socket buffer
        p.publish("r/%d" % i, b"%03d" % i + b"y" * 100_000, qos=1, retain=True).wait_for_publish(5)
    s = raw(broker, "reader")
    # 50 copies of one filter in one SUBSCRIBE: the retained messages come once, to a client that
    # reads them as they come (never dropped as one that does not read).
    s.sendall(packet(8, 2, struct.pack("!H", 1) + (encode_str("r/#") + b"\x01") * 50))
    got = recv_packets(s, 61, timeout=20)
    assert got[0][0] == 9 and len(got[0][2]) == 2 + 50
    topics = sorted(body[2:2 + body[1]] for ptype, _, body in got[1:] if ptype == 3)
    assert len(topics) == 60 and len(set(topics)) == 60
    s.settimeout(0.5)
    with pytest.raises(socket.timeout):
        s.recv(1)                                   # nothing more: no second copy
    s.close()
    close(p)


def test_shared_groups_each_go_round_robin(broker):
    # Requests and heartbeats alternating on two groups' filters: each group spreads over its
    # members (one counter for all groups gave one worker every request).
    w = [client(broker, cid="w%d" % i) for i in range(2)]
    for c in w:
        sub(c, "$share/host/roampos/v1/+/req", "$share/host/roampos/v1/+/status")
    p = client(broker)
    for i in range(10):
        p.publish("roampos/v1/T1/req", b"r%d" % i, qos=1).wait_for_publish(5)
        p.publish("roampos/v1/T1/status", b"s%d" % i, qos=1).wait_for_publish(5)
    got = {0: [], 1: []}
    for i, c in enumerate(w):
        try:
            while True:
                got[i].append(c.q.get(timeout=1)[0].rsplit("/", 1)[1])
        except queue.Empty:
            pass
    assert sorted(got[0]) == ["req"] * 5 + ["status"] * 5, got
    assert sorted(got[1]) == ["req"] * 5 + ["status"] * 5, got
    close(p, *w)


def test_queues_and_retained_store_are_bounded_in_bytes(broker, monkeypatch):
    monkeypatch.setattr(broker_mod, "MAX_QUEUED_BYTES", 300_000)
    monkeypatch.setattr(broker_mod, "MAX_RETAINED_BYTES", 300_000)
    keeper = client(broker, cid="keeper3", clean=False)
    sub(keeper, "q/#")
    close(keeper)
    p = client(broker)
    for i in range(10):   # retained at QoS 0: a QoS 1 one the store cannot take is refused (below)
        p.publish("r/%d" % i, b"y" * 100_000, qos=0, retain=True)
        p.publish("q/x", b"y" * 100_000, qos=1).wait_for_publish(5)
    b = broker.broker
    assert len(b.sessions["keeper3"].queue) == 3 and b.sessions["keeper3"].queued_bytes == 300_000
    assert len(b.retained) == 3 and b.retained_bytes == 300_000
    p.publish("r/0", b"", qos=1, retain=True).wait_for_publish(5)   # clearing one frees its bytes
    time.sleep(0.2)
    assert b.retained_bytes == 200_000
    close(p)


# -- second review (each failed on the broker before its fix) --------------------------------------
def test_a_departing_last_member_s_unacknowledged_requests_wait_for_the_next():
    # `roampos host` configures its groups held. Their only member, on a clean session, leaves with
    # two requests the broker had already acknowledged to the terminal: they must wait for the
    # next member, not vanish.
    f = "$share/roampos-host/roampos/v1/+/req"
    b = BrokerThread("127.0.0.1", 0, hold=(f,)).start()
    try:
        t = client(b)
        w1 = raw(b, "w-clean", clean=True)
        raw_sub(w1, f)
        for i in (1, 2):
            t.publish("roampos/v1/T1/req", b"req-%d" % i, qos=1).wait_for_publish(5)
        assert [publish_id(p[2])[1] for p in recv_packets(w1, 2)] == [b"req-1", b"req-2"]
        w1.close()                                     # gone before acknowledging either
        time.sleep(0.3)
        w2 = client(b, cid="w-next", clean=False)
        sub(w2, f)
        assert sorted(w2.q.get(timeout=5)[1] for _ in range(2)) == [b"req-1", b"req-2"]
        close(t, w2)
    finally:
        b.stop()


def test_messages_published_during_a_resend_come_after_it(broker):
    # MQTT 3.1.1 §4.6: a reconnecting session gets its unacknowledged messages again, then what
    # came meanwhile; the resend is paced by the reader, and a new message used to jump into it.
    s = raw(broker, "S", clean=False)
    raw_sub(s, "t")
    pub = client(broker)
    for i in range(200):
        pub.publish("t", b"%05d" % i + b"x" * 16384, qos=1)
    recv_packets(s, min(200, broker_mod.MAX_INFLIGHT), timeout=20)   # read, never acknowledged
    s.close()
    time.sleep(0.3)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # before connecting: a small window
    s.settimeout(5)
    s.connect(("127.0.0.1", broker.broker.port))
    s.sendall(packet(1, 0, encode_str("MQTT") + bytes([4, 0]) + struct.pack("!H", 60) + encode_str("S")))
    time.sleep(0.5)                                    # not reading: the resend waits for it
    pub.publish("t", b"NEW", qos=1).wait_for_publish(5)
    time.sleep(0.2)
    got = recv_packets(s, 202, timeout=30)
    order = [publish_id(p[2])[1][:5] for p in got[1:]]
    assert got[0][0] == 2 and order.index(b"NEW") == 200, order.index(b"NEW")
    close(pub)
    s.close()


def test_a_taken_over_connection_s_will_is_published(broker):
    # §3.1.2-8: the will goes out when the connection ends without DISCONNECT; a takeover by the
    # same client ID ends it so.
    watcher = client(broker)
    sub(watcher, "dead/#")
    old = raw(broker, "dev1", will=("dead/dev1", b"gone"))   # held open: only the takeover ends it
    new = raw(broker, "dev1")
    assert watcher.q.get(timeout=5)[:2] == ("dead/dev1", b"gone")
    close(watcher)
    new.close()
    old.close()


def test_an_empty_client_id_never_takes_a_named_client_s_session(broker):
    named = raw(broker, "anon-1", clean=False)
    raw_sub(named, "x/#")
    anon = raw(broker, "")                             # its generated ID must not be anon-1's
    pub = client(broker)
    pub.publish("x/y", b"still mine", qos=1).wait_for_publish(5)
    assert publish_id(recv_packets(named, 1)[0][2])[1] == b"still mine"
    assert broker.broker.sessions["anon-1"].subs == {"x/#": 1}
    close(pub)
    anon.close()
    named.close()


def test_a_qos_2_publish_is_accepted_and_delivered_once(broker):
    # MQTT 3.1.1 gives a server no way to refuse QoS 2: it was a protocol error here, and paho
    # reconnected and retried forever. Delivered (at QoS 1 at most, as subscribed) once.
    watcher = client(broker)
    sub(watcher, "q2")
    pub = client(broker, cid="pub2", clean=False)
    pub.publish("q2", b"exactly-once", qos=2).wait_for_publish(5)
    assert watcher.q.get(timeout=5)[:3] == ("q2", b"exactly-once", 1)
    s = raw(broker, "raw-q2")                          # a PUBLISH repeated before its PUBREL: once
    for _ in range(2):
        s.sendall(packet(3, 4 | 8, encode_str("q2") + b"\x00\x07" + b"again"))
        assert recv_packets(s, 1)[0][:2] == (5, 0)       # PUBREC
    s.sendall(packet(6, 2, b"\x00\x07"))
    assert recv_packets(s, 1)[0] == (7, 0, b"\x00\x07")  # PUBCOMP
    assert watcher.q.get(timeout=5)[1] == b"again"
    with pytest.raises(queue.Empty):
        watcher.q.get(timeout=0.5)
    close(watcher, pub)
    s.close()


def test_a_big_subscribe_against_many_retained_messages_does_not_stall_others(broker):
    # One retained params message per terminal; a client subscribing to 2000 exact topics used to
    # scan all of them per filter, holding every other client (21 s at 20 000 terminals).
    b = broker.broker
    from roampos.mqtt_codec import Message
    for i in range(20000):
        b.retained[f"roampos/v1/T{i:05d}/params"] = Message(f"roampos/v1/T{i:05d}/params", b"{}", 1, True)
    s = raw(broker, "many")
    body = struct.pack("!H", 1) + b"".join(encode_str(f"roampos/v1/T{i:05d}/params") + b"\x01"
                                           for i in range(2000))
    other = raw(broker, "other")
    s.sendall(packet(8, 2, body))
    t0 = time.monotonic()
    other.sendall(packet(12, 0, b""))                  # PINGREQ
    assert recv_packets(other, 1)[0][0] == 13
    assert time.monotonic() - t0 < 2.0
    s.close()
    other.close()


def test_a_nul_in_a_client_id_closes_the_connection(broker):
    s = socket.create_connection(("127.0.0.1", broker.broker.port))
    s.settimeout(5)
    s.sendall(packet(1, 0, encode_str("MQTT") + bytes([4, 2]) + struct.pack("!H", 60) + encode_str("a\0b")))
    assert _closed(s)


@pytest.mark.parametrize("name, level, tail", [
    ("MQTT", 3, b""),                # 3.1.1 is level 4; level 3 went with the name MQIsdp (3.1)
    ("MQTT", 4, b"\x00"),            # a byte the flags do not announce
])
def test_a_connect_that_is_not_3_1_1_is_refused(broker, name, level, tail):
    s = socket.create_connection(("127.0.0.1", broker.broker.port))
    s.settimeout(5)
    s.sendall(packet(1, 0, encode_str(name) + bytes([level, 2]) + struct.pack("!H", 60) + encode_str("c") + tail))
    got = b""
    try:
        while True:
            chunk = s.recv(64)
            if not chunk:
                break
            got += chunk
    except OSError:
        pass
    assert got in (b"", b"\x20\x02\x00\x01"), got      # closed, or CONNACK "unacceptable protocol"
    s.close()


def test_a_share_group_named_with_a_wildcard_is_refused(broker):
    s = raw(broker, "sharer")
    s.sendall(packet(8, 2, struct.pack("!H", 1) + encode_str("$share/g+/t") + b"\x01"))
    assert recv_packets(s, 1)[0] == (9, 0, b"\x00\x01\x80")    # SUBACK: failure
    s.close()


# -- bounds on all clients together (each failed on the broker before them) -----------------------
from roampos.host.wire import WireClient  # noqa: E402


def wire(b, cid, subs=(), on_message=None):
    """A connected WireClient (clean session off, QoS 1, explicit acks), subscribed to `subs`."""
    w = WireClient("127.0.0.1", b.broker.port, cid, keepalive=30, subscriptions=list(subs))
    subscribed = []
    w.on_subscribe = lambda: subscribed.append(1)
    if on_message:
        w.on_message = on_message
    w.connect()
    end = time.monotonic() + 5
    while subs and not subscribed and time.monotonic() < end:
        w.loop(0.05)
    assert not subs or subscribed, "no SUBACK"
    return w


def until(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        time.sleep(0.01)
    return cond()


def settle(w, timeout=5.0):
    """Pump `w` until the broker acknowledged all its publishes (True) or closed the connection (False)."""
    end = time.monotonic() + timeout
    while w.inflight and time.monotonic() < end:
        if w.loop(0.05):
            return False
    assert not w.inflight or not w.connected(), "neither acknowledged nor closed"
    return True


def test_sessions_are_capped_and_a_known_client_always_gets_its_session_back(broker, monkeypatch, caplog):
    monkeypatch.setattr(broker_mod, "MAX_SESSIONS", 3)
    b = broker.broker
    for cid in ("ghost-1", "ghost-2"):            # persistent sessions that subscribe and go away
        wire(broker, cid, ["fan/#"]).disconnect()
    live = raw(broker, "live")                    # a connected one: 3 sessions
    with pytest.raises(ConnectionRefusedError, match="return code 3"):
        wire(broker, "ghost-3")                   # CONNACK 3, server unavailable
    assert "ghost-3" not in b.sessions and len(b.sessions) == 3
    assert caplog.text.count("refusing client ghost-3") == 1
    back = wire(broker, "ghost-1")                # a known client ID: always its session back
    assert back.session_present
    again = wire(broker, "ghost-1")               # and a takeover of a connected one
    assert again.session_present and len(b.sessions) == 3
    live.close()                                  # a clean session ends: room for one more
    end = time.monotonic() + 5
    while "live" in b.sessions and time.monotonic() < end:
        time.sleep(0.02)
    wire(broker, "ghost-3").disconnect()
    assert len(b.sessions) == 3
    again.disconnect()
    back.close()


def test_a_full_broker_withholds_the_puback_and_the_resent_message_is_delivered_once(broker, monkeypatch, caplog):
    # Offline queues fill the broker's total: a QoS 1 PUBLISH it cannot keep is not acknowledged
    # and its publisher is disconnected; the client keeps it and sends it again after reconnecting.
    cost = len("q/x") + 1000 + broker_mod.COPY_COST
    monkeypatch.setattr(broker_mod, "MAX_TOTAL_BYTES", 3 * cost)
    b = broker.broker
    wire(broker, "away", ["q/#"]).disconnect()
    pub = wire(broker, "pub")
    for i in range(3):
        pub.publish("q/x", b"%04d" % i + b"m" * 996)
    assert settle(pub) and until(lambda: len(b.sessions["away"].queue) == 3)
    pub.publish("q/x", b"0003" + b"m" * 996)
    assert not settle(pub), "acknowledged although the broker cannot keep it"
    assert len(pub.inflight) == 1 and len(b.sessions["away"].queue) == 3 and b.total_bytes == 3 * cost
    assert "PUBLISH 4 on q/x not acknowledged" in caplog.text
    pub.connect()                                 # resent with DUP while still full: refused again
    assert not settle(pub) and len(pub.inflight) == 1
    got = []
    away = wire(broker, "away", on_message=lambda m: (got.append(m.payload[:4]), away.ack(m)))
    end = time.monotonic() + 5
    while len(got) < 3 and time.monotonic() < end:
        away.loop(0.05)
    assert got == [b"0000", b"0001", b"0002"]
    while b.total_bytes and time.monotonic() < end:   # its PUBACKs free the broker
        away.loop(0.05)
    assert b.total_bytes == 0
    pub.connect()
    assert settle(pub), "the resent message was refused once there was room"
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        away.loop(0.05)
    assert got == [b"0000", b"0001", b"0002", b"0003"]   # delivered once
    assert b.total_bytes == 0
    pub.disconnect()
    away.disconnect()


def test_pubacks_sent_after_a_refused_publish_still_free_the_broker(broker, monkeypatch):
    # A worker commits, then writes its responses and then its PUBACKs at once. With the broker full
    # of the requests it holds, the first response is refused: were the connection closed there,
    # the PUBACKs behind it would never be read and the broker would stay full for good.
    cost = len("req/1") + 500 + broker_mod.COPY_COST
    monkeypatch.setattr(broker_mod, "MAX_TOTAL_BYTES", 2 * cost)
    b = broker.broker
    reqs = []
    worker = wire(broker, "worker", ["req/#"], on_message=reqs.append)
    terminal = client(broker)
    sub(terminal, "rsp/#")
    for i in (1, 2):
        terminal.publish("req/%d" % i, b"r" * 500, qos=1).wait_for_publish(5)
    end = time.monotonic() + 5
    while len(reqs) < 2 and time.monotonic() < end:
        worker.loop(0.05)
    assert len(reqs) == 2
    for m in reqs:
        worker.publish("rsp/" + m.topic[4:], b"a" * 500)
    for m in reqs:
        worker.ack(m)
    assert not settle(worker), "the broker had no room for the responses"
    assert b.sessions["worker"].inflight == {} and b.total_bytes == 0   # the PUBACKs were read
    assert len(worker.inflight) == 2
    worker.connect()                              # both responses again, in order
    assert settle(worker)
    assert [terminal.q.get(timeout=5)[0] for _ in range(2)] == ["rsp/1", "rsp/2"]
    with pytest.raises(queue.Empty):
        terminal.q.get(timeout=0.5)
    time.sleep(0.3)
    assert reqs[2:] == []                         # acknowledged: not redelivered
    worker.disconnect()
    close(terminal)


def test_a_full_retained_store_refuses_qos1_and_keeps_qos0_unretained(broker, monkeypatch, caplog):
    monkeypatch.setattr(broker_mod, "MAX_RETAINED_BYTES", 200)
    b = broker.broker
    p = client(broker, cid="params", clean=False)   # paho: keeps what was not acknowledged, resends it
    p.reconnect_delay_set(0.2, 0.5)
    p.publish("r/1", b"x" * 150, qos=1, retain=True).wait_for_publish(5)
    info = p.publish("r/2", b"y" * 100, qos=1, retain=True)
    info.wait_for_publish(1.5)
    assert not info.is_published(), "acknowledged a retained message the store cannot keep"
    assert "r/2" not in b.retained and "(retained store full (1 topics, 150 bytes))" in caplog.text
    other = client(broker)
    other.publish("r/1", b"", qos=1, retain=True).wait_for_publish(5)   # clearing always fits
    info.wait_for_publish(10)                       # resent after a reconnect, now kept
    assert info.is_published() and until(lambda: "r/2" in b.retained)
    assert b.retained["r/2"].payload == b"y" * 100
    watcher = client(broker)
    sub(watcher, "r/#")
    watcher.q.get(timeout=5)
    other.publish("r/3", b"w" * 150, qos=0, retain=True)   # QoS 0: nothing to push back on
    assert watcher.q.get(timeout=5)[:2] == ("r/3", b"w" * 150)
    assert "r/3" not in b.retained and "r/3 delivered but not retained" in caplog.text
    assert other.is_connected()
    close(watcher, other, p)


def test_under_a_full_broker_what_no_client_awaits_an_ack_for_is_dropped_and_logged(broker, monkeypatch, caplog):
    # QoS 0 is never queued here, so a full broker costs it nothing and its publisher is not cut;
    # a last will (QoS 1) has no publisher to push back on: dropped for the session, logged.
    cost = len("q/x") + 100 + broker_mod.COPY_COST
    monkeypatch.setattr(broker_mod, "MAX_TOTAL_BYTES", 2 * cost)
    b = broker.broker
    wire(broker, "away", ["q/#"]).disconnect()
    watch = client(broker)
    watch.subscribe("q/#", 0)
    watch.subs.get(timeout=5)
    p = client(broker, cid="p0")
    for i in range(2):
        p.publish("q/x", b"%03d" % i + b"m" * 97, qos=1).wait_for_publish(5)
    until(lambda: len(b.sessions["away"].queue) == 2)
    p.publish("q/x", b"qos0", qos=0)
    got = [watch.q.get(timeout=5)[1] for _ in range(3)]
    assert got[2] == b"qos0"
    dying = raw(broker, "dying", will=("q/will", b"gone"))
    dying.close()
    assert watch.q.get(timeout=5)[:2] == ("q/will", b"gone")   # delivered where it costs nothing
    time.sleep(0.2)
    assert len(b.sessions["away"].queue) == 2 and b.total_bytes == 2 * cost
    assert "session away: %d bytes kept for sessions; q/will dropped" % (2 * cost) in caplog.text
    time.sleep(broker_mod.REFUSE_GRACE_S + 0.2)
    assert b.sessions["p0"].conn is not None   # the QoS 0 publisher was not cut
    close(watch, p)


# -- resource bounds: subscriptions, offline sessions, send buffers (each failed on the broker before) --
def _suback(s, mid, *filters):
    """SUBSCRIBE `filters` (QoS 1) on raw socket `s`; the SUBACK's return codes."""
    s.sendall(packet(8, 2, struct.pack("!H", mid) + b"".join(encode_str(f) + b"\x01" for f in filters)))
    ptype, _, body = recv_packets(s, 1)[0]
    assert ptype == 9 and body[:2] == struct.pack("!H", mid)
    return list(body[2:])


def _unsub(s, mid, *filters):
    s.sendall(packet(10, 2, struct.pack("!H", mid) + b"".join(encode_str(f) for f in filters)))
    assert recv_packets(s, 1)[0][0] == 11


def test_subscriptions_are_capped_per_session_and_in_all(broker, monkeypatch, caplog):
    b = broker.broker
    s = raw(broker, "many")
    # The documented bound: 1000 filters per session, the 1001st refused (SUBACK 0x80, §3.9.3).
    assert _suback(s, 1, *("f/%d" % i for i in range(1001))) == [1] * 1000 + [0x80]
    assert len(b.sessions["many"].subs) == 1000 and b.subscriptions == 1000
    assert "client many: 1 filter(s) refused, 1000 subscriptions (at most 1000)" in caplog.text
    assert _suback(s, 2, "f/0", "g") == [1, 0x80]   # a filter it has is renewed, a new one is not
    _unsub(s, 3, "f/1")                             # one unsubscribed frees its place
    assert _suback(s, 4, "g") == [1] and b.subscriptions == 1000
    s.close()
    assert until(lambda: "many" not in b.sessions) and b.subscriptions == 0   # its filters go with it
    # All sessions together: a few filters each cannot add up past the total.
    monkeypatch.setattr(broker_mod, "MAX_TOTAL_SUBSCRIPTIONS", 3)
    a, c = raw(broker, "a"), raw(broker, "c")
    assert _suback(a, 1, "x/1", "$share/g/x/2") == [1, 1]
    assert _suback(c, 1, "x/3", "x/4") == [1, 0x80]
    a.close()
    assert until(lambda: b.subscriptions == 1)
    assert _suback(c, 2, "x/4") == [1]
    c.close()


def test_topic_filters_are_bounded_in_bytes_and_levels(broker):
    s = raw(broker, "long")
    fits, too_long = "a/" + "x" * 254, "a/" + "x" * 255           # 256 and 257 bytes
    share_fits, share_too_long = "$share/g/" + "y" * 247, "$share/g/" + "y" * 248   # the prefix counts
    deep, deeper = "/".join("l" * 32), "/".join("l" * 33)           # 32 and 33 levels
    wide = "a/" + "\u00e9" * 127                                    # 129 characters, 256 bytes
    assert _suback(s, 1, fits, too_long, share_fits, share_too_long, deep, deeper, wide, wide + "x") == \
        [1, 0x80, 1, 0x80, 1, 0x80, 1, 0x80]
    assert len(broker.broker.sessions["long"].subs) == 3
    s.close()


def test_unsubscribed_filters_leave_the_routing_index(broker):
    # The index once kept every exact filter a session ever had: subscribe and unsubscribe in a
    # loop grew it without end, within any per-session bound.
    b = broker.broker
    s = raw(broker, "churn")
    for i in range(50):
        assert _suback(s, i + 1, "c/%d" % i, "w/+/%d" % i, "$share/g/c/%d" % i) == [1, 1, 1]
        _unsub(s, i + 1, "c/%d" % i, "w/+/%d" % i, "$share/g/c/%d" % i)
    assert dict(b._exact) == {} and "churn" not in b._scan and b.subscriptions == 0
    assert _suback(s, 99, "c/x", "w/#") == [1, 1]                   # and routing still works
    p = client(broker)
    p.publish("c/x", b"1", qos=1).wait_for_publish(5)
    p.publish("w/y", b"2", qos=1).wait_for_publish(5)
    assert [publish_id(body)[1] for _, _, body in recv_packets(s, 2)] == [b"1", b"2"]
    close(p)
    s.close()


def test_offline_sessions_expire_and_a_reconnect_starts_the_clock_again(monkeypatch, caplog):
    # Client IDs that subscribe and go away filled every session slot for good, with what was
    # kept for them: now a session offline for longer than the expiry is ended.
    caplog.set_level("INFO", logger="roampos.broker")
    monkeypatch.setattr(broker_mod, "MAX_SESSIONS", 3)
    b = BrokerThread("127.0.0.1", 0, session_expiry=1.0).start()
    try:
        br = b.broker
        wire(b, "ghost", ["q/#"]).disconnect()
        back = wire(b, "back", ["r/#"])
        back.disconnect()
        pub = wire(b, "pub")
        for i in range(3):
            pub.publish("q/x", b"m%d" % i)
        assert settle(pub) and until(lambda: len(br.sessions["ghost"].queue) == 3)
        assert br.total_bytes == 3 * (len("q/x") + 2 + broker_mod.COPY_COST)
        with pytest.raises(ConnectionRefusedError, match="return code 3"):
            wire(b, "new")                                       # every slot held
        end = time.monotonic() + 2.5
        while time.monotonic() < end:                            # "back" never stays away 1 s
            time.sleep(0.2)
            back = wire(b, "back")
            assert back.session_present, "a session that came back every 0.2 s expired"
            back.disconnect()
        assert "ghost" not in br.sessions and "back" in br.sessions
        assert br.total_bytes == 0 and br.subscriptions == 1     # ghost's messages and filter freed
        assert re.search(r"session ghost expired after \d s offline: 3 messages dropped, 0 handed to", caplog.text)
        ghost = wire(b, "ghost")                                 # its slot is free again,
        assert not ghost.session_present                         # for a new session
        ghost.disconnect()
        pub.disconnect()
    finally:
        b.stop()


def test_an_expiring_host_worker_session_passes_its_requests_on(caplog):
    # The host's workers share held groups: requests a worker read but did not acknowledge before
    # it went away outlive its session, and the next member gets them, in order.
    b = BrokerThread("127.0.0.1", 0, hold=("$share/host/req/+",), session_expiry=0.5).start()
    try:
        br = b.broker
        got0, got1 = [], []
        w0 = wire(b, "host-0", ["$share/host/req/+"], on_message=got0.append)
        wire(b, "solo", ["$share/other/o/+"]).disconnect()      # a group the broker does not hold
        t = wire(b, "terminal")
        for i in range(4):
            t.publish("req/%d" % i, b"r%d" % i)
        t.publish("o/1", b"o")
        assert settle(t)
        end = time.monotonic() + 5
        while len(got0) < 4 and time.monotonic() < end:
            w0.loop(0.05)
        assert [m.payload for m in got0] == [b"r0", b"r1", b"r2", b"r3"]
        w0.disconnect()                                          # none acknowledged
        assert until(lambda: "host-0" not in br.sessions, 3)
        assert [m.payload for m in br.held[("host", "req/+")]] == [b"r0", b"r1", b"r2", b"r3"]
        assert until(lambda: "solo" not in br.sessions)               # its last member gone: logged
        assert "session solo ended: 1 messages for $share groups left without members dropped" in caplog.text
        w1 = wire(b, "host-1", ["$share/host/req/+"], on_message=got1.append)
        end = time.monotonic() + 5
        while len(got1) < 4 and time.monotonic() < end:
            w1.loop(0.05)
        assert [m.payload for m in got1] == [b"r0", b"r1", b"r2", b"r3"]
        for m in got1:
            w1.ack(m)
        end = time.monotonic() + 5
        while br.total_bytes and time.monotonic() < end:
            w1.loop(0.05)
        assert br.total_bytes == 0
        w1.disconnect()
        t.disconnect()
    finally:
        b.stop()


def test_send_buffers_of_all_clients_are_bounded_and_the_slowest_readers_cut(broker, monkeypatch, caplog):
    # Each connection's buffer had its own bound (8 MB) and nothing bounded them together: 10 000
    # clients that never read could make the broker hold 80 GB.
    monkeypatch.setattr(broker_mod, "MAX_TOTAL_BUFFER", 1 << 20)
    monkeypatch.setattr(broker_mod, "SHED_TO", 768 << 10)
    b = broker.broker
    slow = []
    for i in range(4):
        s = raw(broker, "slow-%d" % i, clean=False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw_sub(s, "big/#")
        slow.append(s)
        # The kernel takes megabytes per socket (tcp_wmem) before the broker's buffer gets any.
        sock = b.sessions["slow-%d" % i].conn.writer.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    reader = client(broker)
    sub(reader, "big/#")
    pub = wire(broker, "pub")
    n, most = 150, 0
    for i in range(n):
        pub.publish("big/x", b"%04d" % i + b"z" * 20_000)
        if i % 10 == 9:
            assert settle(pub, 10)
            most = max(most, b.buffered)
    assert settle(pub, 10)
    assert until(lambda: all(b.sessions["slow-%d" % i].conn is None for i in range(4)), 10), "slow readers kept"
    assert "reads too slowly" in caplog.text
    assert most <= (1 << 20) + 20_100 and b.buffered <= 1 << 20
    got = [reader.q.get(timeout=10)[1][:4] for _ in range(n)]   # the client that reads was served
    assert got == [b"%04d" % i for i in range(n)] and reader.is_connected()
    # Nothing acknowledged is lost: a cut client's session sends what it had not acknowledged again.
    slow[0].close()
    again = raw(broker, "slow-0", clean=False)
    back = [publish_id(body)[1][:4] for _, _, body in recv_packets(again, n, timeout=20)]
    assert back == [b"%04d" % i for i in range(n)]
    again.close()
    for s in slow[1:]:
        s.close()
    close(reader)
    pub.disconnect()


def test_a_simulator_link_for_many_terminals_stays_within_the_subscription_cap(broker, monkeypatch):
    # termsim.MqttLink speaks for many terminals on one client (the load bench's sign-ons): past the
    # broker's filter cap it would wait for answers that never come; it takes the wildcards instead,
    # and a cap it still meets is an error, not a silent timeout.
    from roampos.termsim import MqttLink
    link = MqttLink(broker.url)
    try:
        tids = ["T%05d" % i for i in range(600)]          # 1200 filters one by one: past 1000
        link.subscribe(tids[:300])
        link.subscribe(tids[300:])
        assert link.wildcard and len(broker.broker.sessions[link.client._client_id.decode()].subs) == 2 + 600
        pub = client(broker)
        pub.publish("roampos/v1/T00599/resp", b"not iso", qos=1).wait_for_publish(5)
        pub.publish("roampos/v1/OTHER/resp", b"not iso", qos=1).wait_for_publish(5)
        assert link.wait("T00599", "", 5) == b"not iso"
        assert ("OTHER", "") not in link._resp             # not one of its terminals: dropped
        pub.disconnect()
        pub.loop_stop()
    finally:
        link.close()
    monkeypatch.setattr(broker_mod, "MAX_SUBSCRIPTIONS", 3)
    link = MqttLink(broker.url)
    try:
        with pytest.raises(RuntimeError, match="refused 1 of 4 subscriptions"):
            link.subscribe(["A", "B"])
        assert not link.subscribed
    finally:
        link.close()


def _standalone(*args):
    """`python -m roampos.broker` on a free port: (process, port, its first line)."""
    import sys
    from roampos.netutil import free_port, wait_port
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "roampos.broker", "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_port(port)
    return proc, port, proc.stdout.readline()


@pytest.mark.parametrize("args, kept", [((), True), (("--no-hold",), False),
                                        (("--hold", "$share/roampos-host/roampos/v1/+/req"), True),
                                        (("--hold", "$share/other/roampos/v1/+/req"), False)])
def test_the_standalone_broker_keeps_requests_for_host_workers_not_yet_subscribed(args, kept):
    """In front of `roampos host --broker`, a request a terminal sent (and had acknowledged) before any
    worker subscribed waits for the workers, as on the host's embedded broker; unless told otherwise."""
    proc, port, first = _standalone(*args)
    shim = type("B", (), {"broker": type("P", (), {"port": port})})
    term = worker = None
    try:
        assert first.startswith(f"roampos broker on mqtt://127.0.0.1:{port}")
        assert ("holding $share/roampos-host/roampos/v1/+/req" in first) == kept, first
        term = client(shim, "T1")
        term.publish("roampos/v1/T1/req", b"sale", qos=1).wait_for_publish(5)   # PUBACKed: the terminal moves on
        worker = client(shim, "roampos-host-0", clean=False)
        sub(worker, "$share/roampos-host/roampos/v1/+/req")
        if kept:
            assert worker.q.get(timeout=5)[:2] == ("roampos/v1/T1/req", b"sale")
        else:
            with pytest.raises(queue.Empty):
                worker.q.get(timeout=1)
    finally:
        close(*[c for c in (term, worker) if c])
        proc.terminate()
        proc.wait(5)


@pytest.mark.parametrize("bad", ["roampos/v1/+/req", "$share//x", "$share/g+/x"])
def test_the_standalone_broker_refuses_a_hold_that_is_no_shared_subscription(bad):
    import sys
    r = subprocess.run([sys.executable, "-m", "roampos.broker", "--port", "0", "--hold", bad],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr, r.stderr


def _closed_by_broker(s, within=3.0) -> bool:
    """True when the broker closes `s` within `within` seconds (EOF or reset); False if it keeps it."""
    s.settimeout(within)
    try:
        return s.recv(1) == b""
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


def test_large_packets_arriving_slowly_share_one_bounded_budget(broker, monkeypatch, caplog):
    """A client may announce a 1 MB packet and trickle it in for hours; bodies above 64 kB being
    received are counted for all connections together, and one that does not fit is refused at once
    (its connection closed, logged) while the others and small messages carry on."""
    import roampos.broker as mod
    monkeypatch.setattr(mod, "MAX_INCOMING", 3 << 20)
    size = 1 << 20
    body = encode_str("big/t") + b"x" * (size - 7)
    head = bytes([0x30]) + _remaining(size)

    def announce(cid):
        s = raw(broker, cid)
        s.sendall(head + body[:100])        # header and a little of the body, the rest later
        return s
    slow = [announce(f"slow{i}") for i in range(3)]   # 3 MB announced: the budget is full
    late = announce("late")
    assert _closed_by_broker(late)
    assert "being received (at most 3145728)" in caplog.text
    a, b = client(broker), client(broker)                # small messages are never counted
    try:
        sub(b, "small/t")
        a.publish("small/t", b"hi", qos=1)
        assert b.q.get(timeout=5)[:2] == ("small/t", b"hi")
        slow[0].sendall(body[100:])                      # one body completes: its share is free again
        slow[1].close()                                  # one client goes away mid-body: so is its share
        time.sleep(0.3)
        again = [announce("again1"), announce("again2")]
        assert not any(_closed_by_broker(s, 1.0) for s in again)
        assert _closed_by_broker(announce("again3"))     # 3 in flight again: full
        assert broker.broker.incoming == 3 * size
        for s in again + [slow[2]]:
            s.close()
        deadline = time.monotonic() + 5
        while broker.broker.incoming and time.monotonic() < deadline:
            time.sleep(0.05)
        assert broker.broker.incoming == 0
    finally:
        close(a, b)
        slow[0].close()


def test_a_large_first_packet_counts_too(broker, monkeypatch):
    """Before any CONNECT: a client that announces a 1 MB CONNECT takes its share (for at most the
    10 s the broker waits for a CONNECT), and one that does not fit is closed at once."""
    import roampos.broker as mod
    monkeypatch.setattr(mod, "MAX_INCOMING", 1 << 20)
    first = socket.create_connection(("127.0.0.1", broker.broker.port))
    first.sendall(b"\x10" + _remaining(1 << 20) + b"\x00\x04MQTT")
    time.sleep(0.2)
    second = socket.create_connection(("127.0.0.1", broker.broker.port))
    second.sendall(b"\x10" + _remaining(1 << 20) + b"\x00\x04MQTT")
    try:
        assert _closed_by_broker(second)
        assert not _closed_by_broker(first, 0.5)
    finally:
        first.close()
        second.close()


def _remaining(n):
    """MQTT remaining-length bytes of n (§2.2.3)."""
    out = bytearray()
    while True:
        n, b = divmod(n, 128)
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)
