# The link manager: brings up WiFi or cellular in the order of the region
# profile, keeps state.link / state.location / signal current, reconnects
# with back-off, and gives the app "online with a socket factory" or
# "offline". Its networks are the active region's (profiles.<code>.network:
# WiFi list, APN per MCC-MNC), read by the link task itself at boot, after a
# region switch and after a new parameter set (follow_params()); `link set`
# (configure()) overrides them until the next boot.
import asyncio

from firmware import boards, console, state

_cfg = {"wifi": [], "apn": {}, "order": ["wifi", "cell"]}
_task = None
_kick = None
_own = False             # configured by `link set`: region profiles no longer apply
_reload = False          # the link task reads the active profile's networks at its next turn
_cell = None             # (operator, LAC, CI) of the serving cell last seen: LAC and CI are
                         # only unique within one network (27.007), so the operator is part of it
_wifi = None
_ppp = None              # network.PPP object when the cell link runs PPP
info = {"signal_dbm": None, "detail": "not configured", "attempts": 0}
CHECK_MS = 1000          # health check period while online
PREFER_MS = 5000         # how often a better link is tried while on a worse one
BACKOFF_MS = (1000, 2000, 4000, 8000, 16000, 30000)


def configure(wifi=None, apn=None, order=None):
    # wifi: [{"ssid": .., "psk": ..}] in order of preference; apn: {"46000":
    # "cmnet", ...} by MCC+MNC ("*" = any); order: ["wifi", "cell"].
    global _own, _reload
    _own = True
    _reload = False  # a profile read still pending must not undo this
    old = (_cfg["wifi"], _cfg["apn"], _cfg["order"])
    if wifi is not None:
        _cfg["wifi"] = list(wifi)
    if apn is not None:
        _cfg["apn"] = dict(apn)
    if order is not None:
        _cfg["order"] = [k for k in order if k in ("wifi", "cell")]
    # A link up on the old settings (a network or a kind now left out) would stay up as long as
    # it holds: bring up the new ones, as after a region switch.
    if state.link != "offline" and old != (_cfg["wifi"], _cfg["apn"], _cfg["order"]):
        _set("offline", "reconfigured by link set")
    _start()


def follow_params():
    # The active region's networks, once the link task next runs: between
    # commands, as it loads the parameter code to read them.
    global _reload
    if not _own:
        _reload = True
        _start()


def _start():
    global _task, _kick
    if _task is None:
        from firmware import cmd_system
        cmd_system.STATUS.append(status)
        _kick = asyncio.Event()
        _task = asyncio.create_task(_run())
    _kick.set()


def _from_profile():
    # Cleared only once the networks are in _cfg: a read that runs out of memory is tried again.
    global _reload
    if _own:
        _reload = False
        return
    from firmware import params_core

    p = params_core.profile()  # None when not provisioned; unloads the parameter code again
    n = p["network"] if p else {}
    wifi = [{"ssid": w["ssid"], "psk": w["psk"]} for w in n.get("wifi", ())]
    apn = {}
    for k, v in n.get("apn", {}).items():
        apn[k.replace("-", "")] = v  # profiles write "460-00"; +COPS gives 46000
    _reload = False
    if wifi == _cfg["wifi"] and apn == _cfg["apn"]:
        return
    _cfg["wifi"], _cfg["apn"] = wifi, apn
    info["detail"] = "networks of region %s" % state.region
    if state.link != "offline":  # the old region's network: bring up this one's
        _set("offline", info["detail"])


def _located():
    # The location changed: map it to a region and warn outside the grants (params_core). From
    # the link task, between commands, as that loads the parameter code.
    if state.mode == "ready":
        from firmware import params_core

        params_core.location_changed()


def status():
    return {"link": state.link, "location": state.location,
            "signal_dbm": info["signal_dbm"], "link_detail": info["detail"]}


def online():
    return state.link != "offline"


def socket_module():
    # What to use as the `socket` module (socket(), getaddrinfo()), or None.
    if state.link == "wifi":
        import socket
        return socket
    if state.link == "cell" and _ppp is not None:
        import socket
        return socket
    if state.link == "cell":
        from drivers.modemsock import Resolver
        return Resolver(boards.get().modem)
    return None


def _set(link, detail, location=None):
    changed = link != state.link
    state.link = link
    info["detail"] = detail
    if link == "offline":
        info["signal_dbm"] = None  # no radio in use: no reading
    # Going offline drops the radio's location, once: evidence set since (the vterm's `region
    # locate`) is not wiped by every retry while offline.
    if (location is not None or (link == "offline" and changed)) and location != state.location:
        state.location = location
        _located()
    if changed:
        console.event({"link": link, "detail": detail})
        from firmware import ui
        ui.refresh()


async def _wait(ms):
    # Sleep, but wake at once when configure() or a test kicks us.
    try:
        await asyncio.wait_for_ms(_kick.wait(), ms)
    except asyncio.TimeoutError:
        pass
    _kick.clear()


async def _up(kind):
    if kind == "wifi":
        return await _wifi_up()
    return _cell_up()


async def _wifi_up():
    global _wifi
    nets = _cfg["wifi"]
    if not nets:
        return False
    b = boards.get()
    wlan = getattr(b, "wlan", None)
    if wlan is None:
        return False
    if _wifi is None:
        from drivers.wifi import WiFi
        _wifi = WiFi(wlan)
    ssid = await _wifi.connect(nets, 8000)
    if ssid is None:
        if state.link == "offline":  # on cell, the detail stays the cell's
            info["detail"] = "no WiFi network joined"
        return False
    info["signal_dbm"] = _wifi.rssi()
    _set("wifi", "joined " + ssid, {"bssid": _wifi.bssid()})
    return True


def _cell_up():
    b = boards.get()
    m = getattr(b, "modem", None)
    if m is None:
        return False
    try:
        if not m.synced:
            m.power_on()
        sim = m.sim()
        if sim != "READY":
            info["detail"] = "SIM " + sim
            return False
        reg = m.registration()
        if reg is None or reg["stat"] not in (1, 5):
            from drivers.sim7600 import REG
            info["detail"] = "cell " + REG.get(reg["stat"] if reg else 4, "unknown")
            return False
        op = m.operator()
        mccmnc = op[0] + op[1] if op else ""
        apn = _cfg["apn"].get(mccmnc, _cfg["apn"].get("*", ""))
        m.set_apn(apn)
        global _ppp
        _ppp = _ppp_up(m)
        if _ppp is None:
            m.net_open()
        info["signal_dbm"] = m.signal()
        global _cell
        _cell = (op, reg["lac"], reg["ci"])
        _set("cell", "registered %s apn %s" % (mccmnc, apn or "-"), _cell_loc(op, reg))
        return True
    except Exception as e:  # AT, OS or parse errors: stay alive, report, retry
        info["detail"] = "cell: %s: %s" % (type(e).__name__, e)
        return False


def _ppp_up(m, timeout_ms=30000):
    # network.PPP where the firmware has it (MicroPython >= 1.24 on esp32 and
    # rp2 builds with PPP): the modem dials and the IP stack runs here, so
    # the real `socket` module works. Otherwise the module's TCP commands.
    try:
        import network
        ppp_cls = network.PPP
    except (ImportError, AttributeError):
        return None
    import time
    m.dial_ppp()
    ppp = ppp_cls(m.at.uart)
    ppp.active(True)
    ppp.connect()
    end = time.ticks_add(time.ticks_ms(), timeout_ms)
    while not ppp.isconnected():
        if time.ticks_diff(end, time.ticks_ms()) <= 0:
            ppp.active(False)
            raise OSError(110, "PPP not up in %d ms" % timeout_ms)
        time.sleep_ms(100)
    return ppp


def _cell_loc(op, reg):
    return {"mcc": op[0] if op else None, "mnc": op[1] if op else None,
            "lac": reg["lac"], "ci": reg["ci"]}


def _check():
    # True while the current link is healthy; refreshes signal and location.
    if state.link == "wifi":
        if not _wifi.isconnected():
            return False
        info["signal_dbm"] = _wifi.rssi()
        return True
    if _ppp is not None:
        return _ppp.isconnected()   # the UART is in data mode: no AT here
    m = boards.get().modem
    try:
        m.at.poll()
        reg = m.registration()
        if m.no_carrier or m.net_lost or reg is None or reg["stat"] not in (1, 5) or m.sim_lost:
            m.no_carrier = False   # (net_lost: cleared by the NETOPEN of the next bring-up)
            return False
        # A change of serving cell, against the cell last seen (not state.location: other
        # evidence, such as the vterm's `region locate`, may have set that since).
        global _cell
        op = m.operator()
        if (op, reg["lac"], reg["ci"]) != _cell:
            _cell = (op, reg["lac"], reg["ci"])
            state.location = _cell_loc(op, reg)
            console.event({"location": state.location})
            _located()
        info["signal_dbm"] = m.signal()
    except Exception as e:
        info["detail"] = "cell check: %s" % e
        return False
    return True


async def _run():
    fails = 0
    since_prefer = 0
    while True:
        # The link must outlive anything a round raises (a MemoryError in a
        # small heap, a driver bug): report it, back off, go on.
        try:
            if _reload:
                _from_profile()
            info["attempts"] += 1
            if state.link == "offline":
                for kind in _cfg["order"]:
                    if await _up(kind):
                        fails = 0
                        break
                else:
                    _set("offline", info["detail"])
                    await _wait(BACKOFF_MS[min(fails, len(BACKOFF_MS) - 1)])
                    fails += 1
                    continue
            await _wait(CHECK_MS)
            if _reload or state.link == "offline":
                continue
            if not _check():
                _set("offline", "%s lost" % state.link)
                continue
            since_prefer += CHECK_MS
            order = _cfg["order"]
            if order and state.link != order[0] and since_prefer >= PREFER_MS:
                since_prefer = 0
                if order[0] == "wifi":
                    await _wifi_up()     # switches state.link when it joins
                elif getattr(getattr(boards.get(), "modem", None), "synced", False):
                    # Cell first, on a modem that answered before (a silent one would block each
                    # try for its timeouts): switches state.link when it registers.
                    detail = info["detail"]
                    if not _cell_up():
                        info["detail"] = detail  # the link in use keeps its own detail
        except Exception as e:
            ms = BACKOFF_MS[min(fails, len(BACKOFF_MS) - 1)]
            fails += 1
            try:
                info["detail"] = "%s: %s" % (type(e).__name__, e)
                console.event({"link": state.link, "detail": info["detail"]})
                await _wait(ms)
            except MemoryError:
                # Even the report or the wait (wait_for allocates): sleep_ms allocates nothing,
                # and the task must outlive this round.
                await asyncio.sleep_ms(ms)
