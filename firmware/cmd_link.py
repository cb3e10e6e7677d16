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

        if state.mode == params.READY:  # a blank or damaged terminal stays open, as for provisioning
            operators.require("admin")
            params.unload()
        return _set(rest)
    if op == "echo":
        host, port, text = words(rest, 3)
        return _echo(host, _port(port), text)
    if op == "mqtt":
        host, port = words(rest, 2)
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
    wifi = cfg.get("wifi")
    if wifi is not None:
        if not isinstance(wifi, list) or not all(isinstance(w, dict) and isinstance(w.get("ssid"), str) for w in wifi):
            raise CommandError("badarg", 'wifi must be [{"ssid": .., "psk": ..}, ...]')
    apn = cfg.get("apn")
    if apn is not None and not (isinstance(apn, dict) and all(isinstance(v, str) for v in apn.values())):
        raise CommandError("badarg", 'apn must be {"<mcc><mnc>": "<apn>", ...}')
    order = cfg.get("order")
    if order is not None and not (isinstance(order, list) and all(k in ("wifi", "cell") for k in order)):
        raise CommandError("badarg", 'order must be a list of "wifi" / "cell"')
    link.configure(wifi, apn, order)
    return {"configured": True, "networks": len(wifi or []), "apns": len(apn or {})}


def _sockmod():
    sm = link.socket_module()
    if sm is None:
        raise CommandError("offline", "no link is up: %s" % link.info["detail"])
    return sm


def _echo(host, port, text):
    sm = _sockmod()
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
    except OSError as e:
        raise CommandError("neterr", "echo via %s: %s" % (link.state.link, e))
    finally:
        s.close()
    return {"echo": got.decode(), "via": link.state.link}


def _mqtt(host, port):
    sm = _sockmod()
    from umqtt import simple
    simple.socket = sm           # umqtt.simple looks up socket at call time
    c = simple.MQTTClient("roampos-probe", host, port)
    try:
        c.connect()
        c.publish(b"roampos/v1/probe/status", b"link check")
        c.disconnect()
    except (OSError, simple.MQTTException) as e:
        raise CommandError("neterr", "mqtt via %s: %r" % (link.state.link, e))
    return {"mqtt": "published", "via": link.state.link}
