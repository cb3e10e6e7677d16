# WiFi station over network.WLAN (or the vterm's model of it): connect to a
# list of networks in order, report RSSI and the access point's BSSID.
# The link manager (firmware/link.py) owns retries and back-off.
import asyncio
import time

# network.WLAN.status() codes for "it will not work" (ESP32 and RP2 ports).
_FAILED = (201, 202, 203, 204, -1, -2, -3)


class WiFi:
    def __init__(self, wlan):
        self.wlan = wlan
        self.ssid = None

    async def connect(self, networks, timeout_ms=10000):
        # networks: [{"ssid": .., "psk": ..}, ...] tried in order; returns the
        # SSID joined or None. Each attempt is bounded by timeout_ms.
        w = self.wlan
        w.active(True)
        for net in networks:
            ssid = net.get("ssid")
            if not ssid:
                continue
            w.connect(ssid, net.get("psk") or None)
            end = time.ticks_add(time.ticks_ms(), timeout_ms)
            while time.ticks_diff(end, time.ticks_ms()) > 0:
                if w.isconnected():
                    self.ssid = ssid
                    return ssid
                if w.status() in _FAILED:
                    break
                await asyncio.sleep_ms(50)
            w.disconnect()
        self.ssid = None
        return None

    def isconnected(self):
        return self.wlan.isconnected()

    def rssi(self):
        try:
            return self.wlan.status("rssi")
        except (OSError, ValueError):
            return None

    def bssid(self):
        # The AP's BSSID: config('bssid') where the port has it, else the
        # strongest scan entry with our SSID.
        b = None
        try:
            b = self.wlan.config("bssid")
        except (OSError, ValueError, TypeError):
            best = -999
            for e in self.wlan.scan():
                if e[0] == self.ssid.encode() and e[3] > best:
                    b, best = e[1], e[3]
        if not b:
            return None
        return ":".join("%02x" % x for x in b)

    def disconnect(self):
        self.wlan.disconnect()
        self.ssid = None
