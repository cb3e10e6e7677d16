# `link`: the network link's status, its configuration (normally set from
# the region profile by the parameter code) and two end-to-end checks over
# whatever link is up: a TCP echo and an MQTT connect/publish (umqtt.simple).
import json

from firmware import link
from firmware.console import CommandError, words


def cmd_link(args):
    op, _, rest = args.partition(" ")
    rest = rest.strip()
    if not op:
        return link.status()
    if op == "set":
        # Pointing a provisioned terminal at another network (a rogue access point) is an
        # admin's act; the profile's own networks come with the parameter set.
        from firmware import operators, params, state

        if state.mode not in params.OPEN:   # a blank or damaged terminal stays open, as for provisioning
            operators.require("admin")
            params.unload()
        return _set(rest)
    if op == "echo":
        host, port, text = words(rest, 3, "link echo <host> <port> <text>", rest=True)
        return _echo(host, _port(port), text)
    if op == "mqtt":
        host, port = words(rest, 2, "link mqtt <host> <port>")
        return _mqtt(host, _port(port))
    raise CommandError("usage", "link [set <json> | echo <host> <port> <text> | mqtt <host> <port>]")


def _port(text):
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise CommandError("badarg", "port %r not in 1..65535" % text[:8])
    return int(text)


def _set(text):
    try:
        cfg = json.loads(text)
    except ValueError:
        raise CommandError("badjson", "link set needs a JSON object")
    if not isinstance(cfg, dict):
        raise CommandError("badjson", "link set needs a JSON object")
    _check(cfg)
    wifi, apn = cfg.get("wifi"), cfg.get("apn")
    link.configure(wifi, apn, cfg.get("order"))
    # What the link now uses: a field left out keeps its networks (they are not 0).
    return {"configured": True, "networks": len(link._cfg["wifi"]), "apns": len(link._cfg["apn"])}


def _check(cfg):
    # The rules of a region profile's network (params_schema), with `link set`'s own APN keys:
    # MCC+MNC digits ("46000") or "*". Loaded for the check only.
    from firmware import params_schema as ps

    try:
        ps._obj(cfg, "link", (), ("wifi", "apn", "order"))
        for i, w in enumerate(ps._list(cfg.get("wifi", []), "wifi", 8)):
            f = "wifi[%d]" % i
            ps._obj(w, f, ("ssid",), ("psk",))
            ps._str(w["ssid"], f + ".ssid", 1, 32)
            if w.get("psk", ""):  # WPA2: 8..63 characters; none or "" = open network
                ps._str(w["psk"], f + ".psk", 8, 63, secret=True)
        apn = cfg.get("apn", {})
        if not isinstance(apn, dict) or len(apn) > 16:
            ps._err("apn", 'must be {"<mcc><mnc>": "<apn>", ...} with at most 16 keys')
        for k in apn:
            if k != "*" and not (len(k) in (5, 6) and k.isdigit()):
                ps._err("apn." + k, 'key must be MCC+MNC digits ("46000") or "*"')
            ps._host(apn[k], "apn." + k)
        order = ps._list(cfg.get("order", []), "order", 2)
        if not all(k in ("wifi", "cell") for k in order):
            ps._err("order", 'must be a list of "wifi" / "cell"')
    except ps.ParamError as e:
        raise CommandError("badarg", str(e))
    finally:
        from firmware import params
        params.unload()   # the schema (module and package attribute): idle heap stays as it was


def _sockmod():
    sm = link.socket_module()
    if sm is None:
        raise CommandError("offline", "no link is up: %s" % link.info["detail"])
    return sm


_TIMEOUT_S = 10   # a server that accepts and then says nothing must not hold the console


class _Timed:
    # The socket module as umqtt.simple uses it (socket(), getaddrinfo()), every socket with a
    # timeout: its connect() makes the socket itself and sets none.
    def __init__(self, sm):
        self.sm = sm

    def socket(self, *args):
        s = self.sm.socket(*args)
        s.settimeout(_TIMEOUT_S)
        return s

    def getaddrinfo(self, *args):
        return self.sm.getaddrinfo(*args)


def _failed(what, e):
    # Whatever the network or the modem raised (OSError, an AT error or timeout, a short answer
    # from a server): one neterr. Out of memory stays nomem.
    if isinstance(e, MemoryError):
        raise e
    return CommandError("neterr", "%s via %s: %s: %s" % (what, link.state.link, type(e).__name__, e))


def _echo(host, port, text):
    sm = _Timed(_sockmod())
    s = sm.socket()
    try:
        s.connect(sm.getaddrinfo(host, port)[0][-1])
        data = text.encode()
        s.write(data)
        got = b""
        while len(got) < len(data):
            chunk = s.read(len(data) - len(got))
            if not chunk:
                break
            got += chunk
    except Exception as e:
        raise _failed("echo", e)
    finally:
        try:
            s.close()
        except Exception:
            pass
    return {"echo": got.decode(), "via": link.state.link}


def _mqtt(host, port):
    import os
    import time
    sm = _sockmod()
    from umqtt import simple
    simple.socket = _Timed(sm)   # umqtt.simple looks up socket at call time
    # A client ID of its own (two terminals probing at once would take each other's session
    # over), on a topic no host subscription takes (roampos/v1/+/status would read it as the
    # heartbeat of a terminal "probe").
    try:
        tag = os.urandom(4)
    except AttributeError:   # a port without it: the clock
        tag = time.ticks_us().to_bytes(4, "little")
    c = simple.MQTTClient("roampos-probe-%02x%02x%02x%02x" % tuple(tag), host, port)
    try:
        c.connect()
        c.publish(b"roampos/v1/probe/link", b"link check")
        c.disconnect()
    except Exception as e:
        if c.sock is not None:   # a link left open would refuse the next connection (modem: one link)
            try:
                c.sock.close()
            except Exception:
                pass
        raise _failed("mqtt", e)
    return {"mqtt": "published", "via": link.state.link}
