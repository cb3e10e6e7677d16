"""Load a parameter set into a terminal: through its console (`roampos provision`)
or baked into a factory image (`roampos image --params`, via bake_params).

Both paths hash clear operator PINs here ("pin" -> "pin_hash", salted sha256, the
firmware's operators.pin_hash) and validate with the firmware's own schema module,
so a set that passes here passes on the terminal. The console protocol is in
docs/console.md, section "Parameters".
"""
import argparse
import base64
import hashlib
import importlib.util
import json
import os
import sys
import zlib
from typing import Any, Dict, Optional, Tuple

from roampos import ROOT

__all__ = ["ProvisionError", "load_set", "validate", "bake_params", "provision",
           "pin_hash", "records", "add_arguments", "run"]

PIN_ITER = 500          # = firmware/operators.py ITER
STORE_DIR = "/data/p"   # = firmware/params_store.py DIR
CHUNK = 600             # raw bytes per `param import data` line (800 base64 chars < 1024)


class ProvisionError(Exception):
    """A parameter set or a terminal refused it; the message names file, field or reply."""


def _firmware_module(name: str):
    # The firmware's pure modules (no I/O, no MicroPython-only imports) run on CPython too.
    key = "roampos_fw_" + name
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, os.path.join(ROOT, "firmware", name + ".py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules[key] = mod
    return sys.modules[key]


def pin_hash(pin: str, salt: bytes, n: int = PIN_ITER) -> str:
    """h1 = sha256(salt | pin), h(i+1) = sha256(h(i) | salt); hex of h(n)."""
    h = hashlib.sha256(salt + pin.encode()).digest()
    for _ in range(n - 1):
        h = hashlib.sha256(h + salt).digest()
    return h.hex()


def load_set(path: str) -> Dict[str, Any]:
    """Read a parameter set file and replace clear PINs by salted hashes."""
    try:
        with open(path, encoding="utf-8") as f:
            s = json.load(f)
    except OSError as e:
        raise ProvisionError("%s: %s" % (path, e.strerror))
    except ValueError as e:
        raise ProvisionError("%s: not JSON: %s" % (path, e))
    ops = s.get("operators") if isinstance(s, dict) else None
    for i, o in enumerate(ops if isinstance(ops, list) else []):
        if isinstance(o, dict) and "pin" in o:
            pin = o.pop("pin")
            if not (isinstance(pin, str) and pin.isdigit() and 4 <= len(pin) <= 12):
                raise ProvisionError("%s: operators[%d].pin: must be 4 to 12 digits" % (path, i))
            salt = os.urandom(8)
            o["pin_hash"] = {"salt": salt.hex(), "n": PIN_ITER, "hash": pin_hash(pin, salt)}
    return s


def validate(s: Dict[str, Any], where: str = "set") -> Tuple[int, Dict[str, Any]]:
    """Validate with the firmware's schema; returns (version, {record: object})."""
    schema = _firmware_module("params_schema")
    try:
        return schema.split(s)
    except schema.ParamError as e:
        raise ProvisionError("%s: %s" % (where, e))


def records(s: Dict[str, Any], commit: int = 1) -> Dict[str, bytes]:
    """{file name in STORE_DIR: bytes} exactly as the firmware store's first commit writes them."""
    codec = _firmware_module("params_codec")
    ver, recs = validate(s)
    files = {}
    index = {}
    for name in sorted(recs):
        data = codec.encode(name, commit, recs[name])
        files["%s.%d" % (name, commit)] = data
        index[name] = [commit, codec.crc(data[data.index(b"\n") + 1:])]
    files["set"] = codec.encode("set", commit, {"v": commit, "pv": ver, "r": index})
    return files


def bake_params(fs, params_path: str) -> None:
    """Write a parameter set into a littlefs-python filesystem (factory image)."""
    files = records(load_set(params_path))
    fs.makedirs(STORE_DIR, exist_ok=True)
    for name, data in files.items():
        with fs.open(STORE_DIR + "/" + name, "wb") as f:
            f.write(data)


def _expect_ok(con, line: str, shown: Optional[str] = None):
    r = con.command(line, timeout=30)
    if not r.ok:
        raise ProvisionError("terminal refused %s: %s %s" % (shown or line.split(" data ")[0], r.code, r.message))
    return r


def provision(con, s: Dict[str, Any], operator: Optional[str] = None, pin: Optional[str] = None,
              chunk: int = CHUNK) -> Dict[str, Any]:
    """Send a (validated) set through a console_client.Console; returns the commit reply."""
    validate(s)
    if chunk < 1:
        raise ProvisionError("--chunk must be at least 1 byte")
    raw = json.dumps(s, separators=(",", ":"), ensure_ascii=False).encode()
    if operator:
        _expect_ok(con, "login %s %s" % (operator, pin or ""), "login %s" % operator)
    try:
        _expect_ok(con, "param import begin %d %08x" % (len(raw), zlib.crc32(raw) & 0xFFFFFFFF))
        try:
            for off in range(0, len(raw), chunk):
                b64 = base64.b64encode(raw[off:off + chunk]).decode()
                _expect_ok(con, "param import data %d %s" % (off, b64), "chunk at %d" % off)
            return _expect_ok(con, "param import commit").data   # a commit logs everyone out
        except BaseException:
            _quietly(con, "param import abort")
            raise
    except BaseException:
        if operator:
            _quietly(con, "logout")  # never leave an admin session open on a terminal we gave up on
        raise


def _quietly(con, line: str) -> None:
    """Best effort on a terminal that may have stopped answering."""
    try:
        con.command(line, timeout=5)
    except Exception:
        pass


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", required=True, help="serial port or vterm pty of the terminal")
    p.add_argument("--file", required=True, help="parameter set (JSON), e.g. examples/params/shanghai-merchant.json")
    p.add_argument("--operator", help="admin operator to log in as (needed once provisioned)")
    p.add_argument("--pin", default=os.environ.get("ROAMPOS_PIN"),
                   help="the operator's PIN (default: $ROAMPOS_PIN)")
    p.add_argument("--chunk", type=int, default=CHUNK, help="raw bytes per import line")


def run(args: argparse.Namespace) -> int:
    from serial import SerialException

    from roampos.console_client import Console, ExpectTimeout

    try:
        s = load_set(args.file)
        validate(s, args.file)
        con = Console(args.port)
        try:
            res = provision(con, s, args.operator, args.pin, args.chunk)
        finally:
            con.close()
    except ProvisionError as e:
        print("provision: %s" % e, file=sys.stderr)
        return 1
    except ExpectTimeout:
        print("provision: the terminal on %s stopped answering; the import was aborted if it could be"
              % args.port, file=sys.stderr)
        return 1
    except (OSError, SerialException) as e:
        print("provision: cannot talk to %s: %s" % (args.port, e), file=sys.stderr)
        return 1
    print("provisioned: parameter version %s, active region %s" % (res.get("version"), res.get("region")))
    return 0
