"""`roampos terminal`: register terminals, grant/revoke regions, block, list, push signed parameters."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Optional

from . import registry
from .db import DatabaseError, connect, default_url, open_ledger
from .vault import VaultError

__all__ = ["add_arguments", "run", "push_params"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", help="database URL (default $ROAMPOS_DB or ./roampos-host.db)")
    p.add_argument("--broker", help="mqtt://host:port: publish the new parameter package (retained)")
    sub = p.add_subparsers(dest="action", required=True)
    a = sub.add_parser("add", help="register a terminal bound to one merchant")
    a.add_argument("terminal_id")
    a.add_argument("--serial", required=True)
    a.add_argument("--merchant", required=True, help="15-digit merchant ID (field 42)")
    a.add_argument("--merchant-name", required=True, help="as the clearing report shows it (1..40 characters)")
    a.add_argument("--acquirer", required=True, help="acquirer code")
    a.add_argument("--account", required=True, help="settlement account")
    a.add_argument("--home-region", required=True, help="GB/T 2260 code")
    a.add_argument("--address", action="append", default=[], metavar="REGION=TEXT",
                   help="deployment address in a region (repeatable)")
    keys = a.add_mutually_exclusive_group()
    keys.add_argument("--tmk", help="terminal master key, 32 hex digits, or - to read it from standard input"
                                 " (a key on the command line is visible to `ps`: prefer - or --tmk-file)")
    keys.add_argument("--tmk-file", help="the TMK for key injection: read from this file if it exists, else"
                                      " generated and written to it (mode 600); one of --tmk/--tmk-file is needed")
    a.add_argument("--location-policy", choices=("decline", "flag"), default="decline")
    g = sub.add_parser("grant-region", help="authorize a region for a period")
    g.add_argument("terminal_id")
    g.add_argument("region")
    g.add_argument("--from", dest="valid_from", required=True, help="YYYY-MM-DD (inclusive)")
    g.add_argument("--to", dest="valid_to", required=True, help="YYYY-MM-DD (inclusive)")
    r = sub.add_parser("revoke-region", help="withdraw a region grant")
    r.add_argument("terminal_id")
    r.add_argument("region")
    b = sub.add_parser("block", help="block a terminal (effective at its next message)")
    b.add_argument("terminal_id")
    b.add_argument("--unblock", action="store_true")
    ls = sub.add_parser("list", help="list terminals, grants and heartbeat state")
    ls.add_argument("--json", action="store_true")
    pp = sub.add_parser("push-params", help="publish the signed parameter package")
    pp.add_argument("terminal_id")


def _mqtt(broker_url: str):  # type: ignore[no-untyped-def]
    """A connected paho client (OSError if the broker does not answer)."""
    import paho.mqtt.client as mqtt
    host, port = broker_address(broker_url)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"roampos-tms-{os.getpid()}")
    c.connect(host, port, keepalive=10)
    c.loop_start()
    return c


def push_params(db, broker_url: str, terminal_id: str, client=None) -> None:  # type: ignore[no-untyped-def]
    """Publish retained on roampos/v1/<tid>/params and wait for the broker's PUBACK."""
    c = client or _mqtt(broker_url)
    try:
        payload = registry.params_package(db, terminal_id, time.time())
        info = c.publish(f"roampos/v1/{terminal_id}/params", payload, qos=1, retain=True)
        info.wait_for_publish(10)
        if not info.is_published():
            raise OSError("broker did not acknowledge the parameter package")
    finally:
        c.disconnect()
        c.loop_stop()


def broker_address(url: str) -> "tuple[str, int]":
    """(host, port) of mqtt://host[:port]; anything else is refused, never read as the local broker."""
    from urllib.parse import urlparse
    u = urlparse(url)
    try:
        port = u.port or 1883
    except ValueError:
        port = -1
    if u.scheme != "mqtt" or not u.hostname or not 0 < port < 65536:
        raise registry.RegistryError(f"--broker {url!r} must be mqtt://host:port")
    return u.hostname, port


def _print_table(rows: list) -> None:
    head = ("terminal", "serial", "merchant", "home", "regions", "blocked", "online", "last seen", "fw", "signal",
            "region")
    lines = [head]
    for t in rows:
        grants = " ".join(f"{g['region']}({g['valid_from']}..{g['valid_to']})" for g in t["grants"]) or "-"
        seen = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t["last_seen"])) if t["last_seen"] else "-"
        lines.append((t["terminal_id"], t["serial"], t["merchant_id"], t["home_region"], grants,
                      "yes" if t["blocked"] else "no",
                      "-" if t["online"] is None else ("yes" if t["online"] else "no"), seen, t["firmware"] or "-",
                      str(t["signal"]) if t["signal"] is not None else "-", t["seen_region"] or "-"))
    widths = [max(len(str(r[i])) for r in lines) for i in range(len(head))]
    for r in lines:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


def _tmk(args: argparse.Namespace) -> "tuple[str, bool]":
    """(TMK hex, whether it is new and goes to --tmk-file). A generated key nobody can inject would
    leave a terminal that can never sign on, so one of the two options is required."""
    if args.tmk == "-":
        return sys.stdin.readline().strip(), False
    if args.tmk:
        return args.tmk, False
    if not args.tmk_file:
        raise registry.RegistryError("give --tmk-file (read, or generated and written there) or --tmk")
    if os.path.exists(args.tmk_file):
        with open(args.tmk_file, "rb") as fh:
            raw = fh.read(256)
        try:
            return raw.decode("ascii").strip(), False
        except UnicodeDecodeError:  # the message must not show any of the key file's bytes
            raise registry.RegistryError(f"{args.tmk_file} does not hold a TMK of 32 hex digits") from None
    return os.urandom(16).hex().upper(), True


def run(args: argparse.Namespace) -> int:
    url = args.db or default_url()
    try:
        # Only `add` may start a new ledger: a typo must not look like an empty registry.
        db = connect(url) if args.action == "add" else open_ledger(url)
    except DatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    tid: Optional[str] = getattr(args, "terminal_id", None)
    client = None
    try:
        if args.broker and args.action != "list":
            broker_address(args.broker)  # before anything changes: a bad URL must not half-apply
            try:
                client = _mqtt(args.broker)   # and an unreachable broker neither
            except OSError as exc:
                raise OSError(f"broker {args.broker} unreachable ({exc}); nothing changed") from None
        if args.action == "add":
            addresses = {}
            for item in args.address:
                code, sep, text = item.partition("=")
                if not sep:
                    raise registry.RegistryError(f"--address {item!r} must be REGION=TEXT")
                addresses[code] = text
            tmk, new_file = _tmk(args)
            if new_file:
                # Written (and on disk) before the terminal is registered under it: a key that could
                # not be written must not leave a terminal nobody can ever sign on.
                fd = os.open(args.tmk_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(tmk + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
            try:
                registry.add_terminal(db, args.terminal_id, args.serial, args.merchant, args.merchant_name,
                                      args.acquirer, args.account, args.home_region, addresses, tmk,
                                      args.location_policy)
            except BaseException:
                if new_file:
                    os.unlink(args.tmk_file)  # a refused add leaves no orphan key behind
                raise
            if new_file:
                print(f"TMK written to {args.tmk_file} (mode 600): inject it into the terminal, then keep it offline")
            print(f"terminal {args.terminal_id} registered (merchant {args.merchant}, home {args.home_region})")
        elif args.action == "grant-region":
            old = registry.grant_region(db, tid, args.region, args.valid_from, args.valid_to)
            print(f"terminal {tid}: region {args.region} granted {args.valid_from}..{args.valid_to}"
                  + (f" (replaces {old[0]}..{old[1]})" if old else ""))
        elif args.action == "revoke-region":
            found = registry.revoke_region(db, tid, args.region)
            print(f"terminal {tid}: region {args.region} " + ("revoked" if found else "was not granted"))
        elif args.action == "block":
            registry.set_blocked(db, tid, not args.unblock)
            print(f"terminal {tid} " + ("unblocked" if args.unblock else "blocked"))
        elif args.action == "list":
            rows = registry.list_terminals(db)
            if args.json:
                print(json.dumps(rows, ensure_ascii=False, indent=1))
            else:
                _print_table(rows)
            return 0
        elif args.action == "push-params":
            if not args.broker:
                raise registry.RegistryError("push-params needs --broker")
        if client is not None and tid:
            try:
                push_params(db, args.broker, tid, client)
            except OSError as exc:
                raise OSError(f"terminal {tid}: {args.action} done, but the parameter package was not published"
                              f" ({exc}): run `roampos terminal --broker URL push-params {tid}`") from None
            client = None  # push_params disconnected it
            print(f"terminal {tid}: parameter package published")
        return 0
    except (registry.RegistryError, VaultError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except UnicodeError:
        # An argument that is not text (undecodable bytes on the command line) reached a lookup.
        print("error: arguments must be text (terminal IDs, region codes and names in UTF-8)", file=sys.stderr)
        return 2
    except (OSError, DatabaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if client is not None:
            client.disconnect()
            client.loop_stop()
        db.close()
