"""Host-side simulated terminals: build and check the same messages the firmware sends (tests, bench)."""
from __future__ import annotations

import json
import os
import threading
import time
from typing import Dict, List, Optional
from urllib.parse import urlparse

from . import iso

__all__ = ["SimTerminal", "MqttLink", "TOPIC"]

TOPIC = "roampos/v1/{tid}/{leaf}"


class SimTerminal:
    """Message builder with the terminal's keys, STAN counter and batch number; no I/O."""

    def __init__(self, tid: str, mid: str, serial: str, tmk: bytes, region: str = "310000",
                 batch: str = "000001", cell: Optional[str] = "460-00-6200-1"):
        self.tid, self.mid, self.serial, self.tmk = tid, mid, serial, tmk
        self.region, self.batch, self.cell = region, batch, cell
        self.stan = 0
        self.tpk = self.tak = self.tdk = b""
        self.currency = "156"
        self.clock = time.time  # tests shift it to play with transmission times

    def next_stan(self) -> str:
        self.stan = self.stan % 999999 + 1
        return f"{self.stan:06d}"

    def _common(self, mti: str, proc: str, stan: Optional[str]) -> Dict[str, str]:
        return {"t": mti, "3": proc, "7": iso.transmission_time(self.clock()),
                "11": stan or self.next_stan(), "41": self.tid, "42": self.mid}

    # -------------------------------------------------------------- network management
    def signon(self) -> bytes:
        doc = self._common("0800", iso.PROC["signon"], None)
        doc["48"] = iso.encode_tlv({"SN": self.serial})
        return iso.encode(doc, iso.derive_key(self.tmk, iso.LABEL_NM_MAC))

    def apply_signon(self, raw: bytes) -> Dict[str, str]:
        doc = self.check(raw, iso.derive_key(self.tmk, iso.LABEL_NM_MAC))
        if doc.get("39") != "00":
            raise ValueError(f"sign-on refused: {doc.get('39')}")
        tlv = iso.decode_tlv(doc["48"])
        keys = {}
        for name in ("P", "M", "D"):
            key = iso.unwrap_key(self.tmk, bytes.fromhex(tlv[name + "K"]))
            if iso.kcv(key).hex().upper() != tlv[name + "C"]:
                raise ValueError(f"check value of {name}K does not match")
            keys[name] = key
        self.tpk, self.tak, self.tdk = keys["P"], keys["M"], keys["D"]
        return doc

    # -------------------------------------------------------------- financial
    def financial(self, pan: str, amount: int, mti: str = "0200", proc: str = "000000",
                  pin: Optional[str] = None, method: str = "C", expiry: str = "3012",
                  orig_rrn: str = "", stan: Optional[str] = None, region: Optional[str] = None,
                  cell: Optional[str] = "default", extra48: Optional[Dict[str, str]] = None,
                  mac_key: Optional[bytes] = None) -> bytes:
        doc = self._common(mti, proc, stan)
        doc.update({"4": f"{amount:012d}", "22": "071", "49": self.currency})
        if len(pan) <= 19:   # field 2 holds 19 digits at most: a longer payment code goes in EP only
            doc["2"] = iso.mask_pan(pan)
        if method == "C":
            doc["14"] = expiry
        tlv = {"BN": self.batch, "RG": region or self.region, "PM": method, "SN": self.serial,
               "EP": iso.encrypt_pan(self.tdk, pan)}
        cell = self.cell if cell == "default" else cell
        if cell:
            tlv["LC"] = cell
        if orig_rrn:
            tlv["OR"] = orig_rrn
        tlv.update(extra48 or {})
        doc["48"] = iso.encode_tlv(tlv)
        if pin is not None:
            doc["52"] = iso.pin_block(self.tpk, pin, pan).hex().upper()
        return iso.encode(doc, mac_key or self.tak)

    def reversal(self, stan: str, pan: str, amount: int, proc: str = "000000") -> bytes:
        return self.financial(pan, amount, mti="0400", proc=proc, stan=stan)

    def settlement(self, totals: tuple, proc: str = "920000", region: Optional[str] = None) -> bytes:
        doc = self._common("0500", proc, None)
        sc, sa, rc, ra = totals
        doc["49"] = self.currency
        doc["48"] = iso.encode_tlv({"BN": self.batch, "RG": region or self.region, "SC": str(sc),
                                    "SA": str(sa), "RC": str(rc), "RA": str(ra)})
        return iso.encode(doc, self.tak)

    def check(self, raw: bytes, key: Optional[bytes] = None) -> Dict[str, str]:
        """Decode a response and verify its MAC (a terminal drops responses that fail)."""
        doc = iso.decode(raw)
        key = key or self.tak
        if "64" not in doc:
            # Only refusals come without a MAC: an unknown terminal (03), a MAC that failed or no
            # keys yet (A0), a format error found before the MAC could be checked (30). Anything
            # else without one, an approval above all, could have been sent by anybody.
            if doc.get("39") not in ("03", "A0", "30"):
                raise ValueError(f"response without a MAC: {raw.hex()}")
        elif not iso.verify_mac(key, raw):
            raise ValueError(f"response MAC does not verify: {raw.hex()}")
        return doc


class MqttLink:
    """One paho client per simulated terminal set: publish req, wait resp by terminal+STAN."""

    def __init__(self, url: str, client_id: Optional[str] = None):
        import paho.mqtt.client as mqtt
        u = urlparse(url)
        self._cond = threading.Condition()
        self._resp: Dict[tuple, bytes] = {}
        self.params: Dict[str, bytes] = {}
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"sim-{os.getpid()}-{id(self)}", clean_session=True)
        self.client.max_inflight_messages_set(1000)
        self.client.on_message = self._on_message
        self.client.connect(u.hostname or "127.0.0.1", u.port or 1883, keepalive=30)
        self.client.loop_start()
        self.subscribed: set = set()
        self.wildcard = False   # subscribed to every terminal's topics (see subscribe)

    # Brokers cap the filters of one client (the embedded one at 1000, docs/host.md): a link that
    # speaks for more terminals than this takes every terminal's topics and keeps its own.
    WILDCARD_OVER = 400

    def subscribe(self, tids: List[str]) -> None:
        new = [t for t in tids if t not in self.subscribed]
        if not new or self.wildcard:
            self.subscribed.update(new)
            return
        if len(self.subscribed) + len(new) > self.WILDCARD_OVER:
            self.wildcard = True
            topics = [(TOPIC.format(tid="+", leaf=leaf), 1) for leaf in ("resp", "params")]
        else:
            topics = [(TOPIC.format(tid=t, leaf=leaf), 1) for leaf in ("resp", "params") for t in new]
        # Known before the SUBACK: a retained message (a params package) may come right behind it.
        self.subscribed.update(new)
        codes: list = []
        done = threading.Event()

        def on_subscribe(client, userdata, mid, reason_codes, properties=None) -> None:  # type: ignore[no-untyped-def]
            codes.extend(reason_codes)
            done.set()
        self.client.on_subscribe = on_subscribe
        self.client.subscribe(topics)
        refused = sum(1 for c in codes if c.is_failure) if done.wait(10) else -1
        if refused:
            self.subscribed.difference_update(new)
            self.wildcard = False   # (it can only have been set by this call)
            if refused < 0:
                raise RuntimeError("the broker did not acknowledge the subscriptions (no SUBACK in 10 s)")
            # Waiting for answers that can never come would only look like a slow host.
            raise RuntimeError(f"the broker refused {refused} of {len(topics)} subscriptions")

    def _on_message(self, client, userdata, msg) -> None:
        parts = msg.topic.split("/")
        if len(parts) != 4 or parts[2] not in self.subscribed:
            return  # another terminal's, reaching a link on the wildcards
        if parts[3] == "params":
            with self._cond:
                self.params[parts[2]] = msg.payload
                self._cond.notify_all()
            return
        try:
            stan = iso.decode(msg.payload).get("11", "")
        except iso.MessageError:
            stan = ""
        with self._cond:
            self._resp[(parts[2], stan)] = msg.payload
            self._cond.notify_all()

    def send(self, tid: str, raw: bytes) -> None:
        self.client.publish(TOPIC.format(tid=tid, leaf="req"), raw, qos=1)

    def request(self, tid: str, raw: bytes, timeout: float = 10.0) -> Optional[bytes]:
        stan = iso.decode(raw)["11"]
        with self._cond:
            self._resp.pop((tid, stan), None)
        self.send(tid, raw)
        return self.wait(tid, stan, timeout)

    def wait(self, tid: str, stan: str, timeout: float = 10.0) -> Optional[bytes]:
        end = time.monotonic() + timeout
        with self._cond:
            while (tid, stan) not in self._resp:
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return self._resp.pop((tid, stan))

    def wait_params(self, tid: str, timeout: float = 10.0) -> Optional[bytes]:
        end = time.monotonic() + timeout
        with self._cond:
            while tid not in self.params:
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return self.params[tid]

    def status(self, tid: str, data: dict) -> None:
        self.client.publish(TOPIC.format(tid=tid, leaf="status"), json.dumps(data).encode(), qos=1)

    def close(self) -> None:
        self.client.disconnect()   # before loop_stop, so the network thread wakes up at once
        self.client.loop_stop()
