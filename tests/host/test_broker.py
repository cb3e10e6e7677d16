"""The embedded MQTT 3.1.1 broker on its own: paho and umqtt.simple clients, malformed packets."""
import os
import queue
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
