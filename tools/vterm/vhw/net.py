# The vterm's radio world: a WLAN station (the network.WLAN interface: the
# unix port has no `network` module) with access points that come and go,
# and the cellular modem model. It runs in the vterm process
# (roampos.vterm.hw): the firmware reaches the station and the modem through
# the WLAN and UART of firmware/boards/vterm_extra.py; `sim link/cell/signal`
# act here.
from vhw.ticks import ticks_diff, ticks_ms

# ESP32 port status codes of network.WLAN.status() (MicroPython docs).
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
ASSOC_MS = 50

# ssid, psk, bssid, channel: the shop's access points in the simulation.
APS = (("roampos-shop", "secret-psk", b"\x02\x52\x50\x00\x00\x01", 6),
       ("roampos-backup", "backup-psk", b"\x02\x52\x50\x00\x00\x02", 11))


class WLAN:
    STA_IF = 0

    def __init__(self, net):
        self._net = net
        self._active = False
        self._ssid = None
        self._status = STAT_IDLE
        self._at = 0

    def active(self, v=None):
        if v is None:
            return self._active
        self._active = bool(v)
        if not v:
            self.disconnect()

    def connect(self, ssid, key=None):
        self._ssid = None
        self._status = STAT_CONNECTING
        self._at = ticks_ms()  # association takes a moment (ASSOC_MS)
        self._want = (ssid, key)

    def disconnect(self):
        self._ssid = None
        self._status = STAT_IDLE

    def _update(self):
        if self._status == STAT_CONNECTING and ticks_diff(ticks_ms(), self._at) >= ASSOC_MS:
            ssid, key = self._want
            ap = self._net.ap(ssid)
            if ap is None:
                self._status = STAT_NO_AP_FOUND
            elif ap[1] != key:
                self._status = STAT_WRONG_PASSWORD
            else:
                self._status = STAT_GOT_IP
                self._ssid = ssid
        elif self._status == STAT_GOT_IP and self._net.ap(self._ssid) is None:
            self._status = STAT_IDLE       # AP gone: the association drops
            self._ssid = None

    def isconnected(self):
        self._update()
        return self._status == STAT_GOT_IP

    def status(self, param=None):
        self._update()
        if param is None:
            return self._status
        if param == "rssi":
            if self._status != STAT_GOT_IP:
                raise OSError(1)  # as ports do when not associated
            return self._net.wifi_dbm
        raise ValueError("unknown status param")

    def config(self, name):
        if name == "ssid":
            return self._ssid or ""
        if name == "bssid":
            ap = self._net.ap(self._ssid)
            return ap[2] if ap else b"\0" * 6
        if name == "mac":
            return b"\x02\x00\x00\x00\x00\x42"
        raise ValueError("unknown config param")

    def scan(self):
        if not self._net.wifi_up:
            return []
        return [(a[0].encode(), a[2], a[3], self._net.wifi_dbm, 3, False) for a in APS]

    def ifconfig(self):
        return ("192.168.50.20", "255.255.255.0", "192.168.50.1", "192.168.50.1")


class Network:
    def __init__(self):
        from vhw.modem import ModemModel
        self.wifi_up = True
        self.wifi_dbm = -58
        self.modem = ModemModel()
        self.wlan = WLAN(self)

    def ap(self, ssid):
        if not self.wifi_up:
            return None
        for a in APS:
            if a[0] == ssid:
                return a
        return None

    def set_link(self, kind, what):
        # kind "wifi" or "cell"; what "up", "down" or (cell) "denied".
        if kind == "wifi" and what in ("up", "down"):
            self.wifi_up = what == "up"
        elif kind == "cell" and what in ("up", "down", "denied"):
            self.modem.set_stat({"up": 1, "down": 2, "denied": 3}[what])
        else:
            raise ValueError("no link state %s %s" % (kind, what))

    def set_cell(self, mcc, mnc, lac, ci):
        self.modem.set_cell(mcc, mnc, lac, ci)

    def set_signal(self, dbm):
        self.modem.rssi = max(0, min(31, (dbm + 113) // 2))
        self.wifi_dbm = dbm
