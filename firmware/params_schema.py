# Parameter set schema: validates a whole set or single records and names the
# field in every error. Pure (no I/O): the host's provision tool runs it too.
# Loaded only while validating; params.py unloads it again to keep idle heap.
#
# Set (docs/console.md "Parameters"):  {"version", "merchant", "authorized",
#   "profiles": {code: profile}, "locations", "operators"}
# Records in flash: merchant, grants, loc, ops, active, r<code> (one per profile).
import gc

ROLES = ("cashier", "supervisor", "admin")
METHODS = ("card", "pin", "qr", "code")  # contactless card, online PIN, merchant QR, payment code
FEE_METHODS = ("card", "qr", "code")     # methods that carry a fee
MAX_BPS = 1000     # 10%: a sanity bound, real acquirer fees are far below
MAX_CAP = 10000000  # minor units (100,000.00 CNY); 0 = no cap
PIN_ITER = (100, 100000)
_PATHS = {"merchant": "merchant", "grants": "authorized", "loc": "locations",
          "ops": "operators", "active": "active"}


class ParamError(ValueError):
    def __init__(self, field, message):
        super().__init__("%s: %s" % (field, message))
        self.field = field
        self.message = message


def field_of(name):
    # Record name -> the field path users see.
    return "profiles." + name[1:] if name[0] == "r" else _PATHS.get(name, name)


def _err(f, m):
    raise ParamError(f, m)


def _shown(v):
    s = repr(v)
    return s if len(s) <= 24 else s[:21] + "..."


def _obj(v, f, required, optional=()):
    if not isinstance(v, dict):
        _err(f, "must be an object")
    for k in v:
        if k not in required and k not in optional:
            _err("%s.%s" % (f, k), "unknown field")
    for k in required:
        if k not in v:
            _err("%s.%s" % (f, k), "missing")
    return v


def _list(v, f, hi, lo=0):
    if not isinstance(v, list):
        _err(f, "must be a list")
    if not lo <= len(v) <= hi:
        _err(f, "needs %d to %d entries, has %d" % (lo, hi, len(v)))
    return v


def _int(v, f, lo, hi):
    if not isinstance(v, int) or isinstance(v, bool):
        _err(f, "must be an integer, got %s" % _shown(v))
    if not lo <= v <= hi:
        _err(f, "%d out of range %d..%d" % (v, lo, hi))
    return v


def _str(v, f, lo, hi, chars=None, secret=False):
    # secret: the message names what is wrong, never the value (a WiFi key must not reach the console).
    if not isinstance(v, str):
        _err(f, "must be a string, got %s" % ("a %s" % type(v).__name__ if secret else _shown(v)))
    if not lo <= len(v) <= hi:
        _err(f, "length %d, must be %s" % (len(v), lo if lo == hi else "%d..%d" % (lo, hi)))
    for c in v:
        # A control character, or a lone surrogate (a JSON "\ud800"): text the console could not
        # send back as valid UTF-8.
        if (chars is not None and c not in chars) or ord(c) < 32 or 0xD800 <= ord(c) <= 0xDFFF:
            _err(f, "a character is not allowed" if secret else
                 "character %s not allowed in %s" % (_shown(c), _shown(v)))
    return v


_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_HEX = "0123456789abcdef"


def _isdigits(s):
    # ASCII digits only, as MicroPython's str.isdigit(): CPython's also takes other scripts'
    # digits, and the host bakes and checks parameter sets with this same schema.
    if not s:
        return False
    for c in s:
        if not "0" <= c <= "9":
            return False
    return True


def _digits(v, f, lo, hi=None):
    if not isinstance(v, str) or not _isdigits(v) or not lo <= len(v) <= (hi or lo):
        _err(f, "must be %s digits, got %s" % (lo if hi is None else "%d..%d" % (lo, hi), _shown(v)))
    return v


def code(v, f):
    # GB/T 2260: six digits, the first two a province (11..82).
    _digits(v, f, 6)
    if not 11 <= int(v[:2]) <= 82:
        _err(f, "%s is not a GB/T 2260 region code" % v)
    return v


_MDAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def date(v, f):
    ok = isinstance(v, str) and len(v) == 10 and v[4] == "-" and v[7] == "-" \
        and _isdigits(v[:4] + v[5:7] + v[8:])
    if ok:
        y, m, d = int(v[:4]), int(v[5:7]), int(v[8:])
        leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
        ok = 1 <= m <= 12 and 1 <= d <= (_MDAYS[m - 1] if m != 2 or leap else 28)
    if not ok:
        _err(f, "must be a date YYYY-MM-DD, got %s" % _shown(v))
    return v


def check_merchant(m, f="merchant"):
    _obj(m, f, ("id", "terminal_id", "serial", "acquirer", "home_region"), ("name",))
    _digits(m["id"], f + ".id", 15)
    _str(m["terminal_id"], f + ".terminal_id", 8, 8, _ALNUM)
    _str(m["serial"], f + ".serial", 1, 32, _ALNUM + "-_")
    _digits(m["acquirer"], f + ".acquirer", 1, 11)  # ISO 8583 field 32, n..11
    code(m["home_region"], f + ".home_region")
    if "name" in m:
        _str(m["name"], f + ".name", 1, 40)


def check_grants(g, home, f="authorized"):
    _list(g, f, 16)
    seen = []
    for i, e in enumerate(g):
        fi = "%s[%d]" % (f, i)
        _obj(e, fi, ("region", "from", "to", "grant"))
        c = code(e["region"], fi + ".region")
        if c == home:
            _err(fi + ".region", "%s is the home region, always authorized" % c)
        if c in seen:
            _err(fi + ".region", "%s granted twice" % c)
        seen.append(c)
        if date(e["from"], fi + ".from") > date(e["to"], fi + ".to"):
            _err(fi + ".to", "grant ends (%s) before it starts (%s)" % (e["to"], e["from"]))
        _str(e["grant"], fi + ".grant", 1, 32)


def _host(v, f):
    _str(v, f, 1, 63, _ALNUM + ".-")


def check_profile(p, f):
    _obj(p, f, ("name", "currency", "utc_offset_min", "endpoint", "network", "fees", "limits",
                "methods", "receipt_header", "language"), ("batch_per_region",))
    _str(p["name"], f + ".name", 1, 24)
    _int(p["currency"], f + ".currency", 1, 999)  # ISO 4217 numeric
    _int(p["utc_offset_min"], f + ".utc_offset_min", -720, 840)
    e = _obj(p["endpoint"], f + ".endpoint", ("broker", "topic_prefix"))
    b = _str(e["broker"], f + ".endpoint.broker", 10, 96)
    if not (b.startswith("mqtt://") or b.startswith("mqtts://")):
        _err(f + ".endpoint.broker", "must start with mqtt:// or mqtts://")
    _str(e["topic_prefix"], f + ".endpoint.topic_prefix", 1, 48, _ALNUM + "/-_.")
    n = _obj(p["network"], f + ".network", ("wifi", "apn", "dns"))
    for i, w in enumerate(_list(n["wifi"], f + ".network.wifi", 8)):
        fw = "%s.network.wifi[%d]" % (f, i)
        _obj(w, fw, ("ssid", "psk"))
        _str(w["ssid"], fw + ".ssid", 1, 32)
        if w["psk"] != "":  # WPA2: 8..63 characters; "" = open network
            _str(w["psk"], fw + ".psk", 8, 63, secret=True)
    a = n["apn"]
    if not isinstance(a, dict) or len(a) > 16:
        _err(f + ".network.apn", "must be an object of at most 16 MCC-MNC keys")
    for k in a:
        fk = "%s.network.apn.%s" % (f, k)
        if len(k) not in (6, 7) or k[3] != "-" or not _isdigits(k[:3] + k[4:]):
            _err(fk, "key must be MCC-MNC, e.g. 460-00")
        _host(a[k], fk)
    for i, d in enumerate(_list(n["dns"], f + ".network.dns", 4)):
        fd = "%s.network.dns[%d]" % (f, i)
        q = _str(d, fd, 7, 15, "0123456789.").split(".")
        if len(q) != 4 or not all(_isdigits(x) and int(x) < 256 for x in q):
            _err(fd, "must be an IPv4 address, got %s" % _shown(d))
    methods = _list(p["methods"], f + ".methods", len(METHODS), 1)
    for i, m in enumerate(methods):
        if m not in METHODS:
            _err("%s.methods[%d]" % (f, i), "unknown method %s; known: %s" % (_shown(m), ", ".join(METHODS)))
    fees = _obj(p["fees"], f + ".fees", (), FEE_METHODS)
    for m in fees:
        ff = "%s.fees.%s" % (f, m)
        _obj(fees[m], ff, ("bps", "cap"))
        _int(fees[m]["bps"], ff + ".bps", 0, MAX_BPS)
        _int(fees[m]["cap"], ff + ".cap", 0, MAX_CAP)
    for m in methods:
        if m in FEE_METHODS and m not in fees:
            _err(f + ".fees." + m, "missing: method %s is allowed but has no fee" % m)
    lim = _obj(p["limits"], f + ".limits", ("per_txn", "per_day", "offline_floor"))
    t = _int(lim["per_txn"], f + ".limits.per_txn", 1, 10 ** 11)
    _int(lim["per_day"], f + ".limits.per_day", t, 10 ** 12)
    _int(lim["offline_floor"], f + ".limits.offline_floor", 0, t)
    for i, line in enumerate(_list(p["receipt_header"], f + ".receipt_header", 4)):
        _str(line, "%s.receipt_header[%d]" % (f, i), 0, 32)
    if p["language"] not in ("zh", "en"):
        _err(f + ".language", "must be zh or en, got %s" % _shown(p["language"]))
    if not isinstance(p.get("batch_per_region", False), bool):
        _err(f + ".batch_per_region", "must be true or false")


def check_loc(loc, f="locations"):
    _obj(loc, f, ("cells",), ("bssids",))
    for i, c in enumerate(_list(loc["cells"], f + ".cells", 64)):
        fc = "%s.cells[%d]" % (f, i)
        if not isinstance(c, list) or len(c) != 5:
            _err(fc, "must be [mcc, mnc or \"*\", lac_from, lac_to, region]")
        _int(c[0], fc + "[0]", 200, 799)  # ITU-T E.212 MCC
        if c[1] != "*":
            _int(c[1], fc + "[1]", 0, 999)
        _int(c[3], fc + "[3]", _int(c[2], fc + "[2]", 0, 65535), 65535)
        code(c[4], fc + "[4]")
    b = loc.get("bssids", {})
    if not isinstance(b, dict) or len(b) > 64:
        _err(f + ".bssids", "must be an object of at most 64 BSSIDs")
    for k in b:
        if len(k) != 17 or any(k[i] != ":" for i in (2, 5, 8, 11, 14)) or \
                any(c not in _HEX + ":" for c in k):
            _err("%s.bssids.%s" % (f, k), "BSSID must be lowercase aa:bb:cc:dd:ee:ff")
        code(b[k], "%s.bssids.%s" % (f, k))


def check_pin_hash(h, f):
    _obj(h, f, ("salt", "n", "hash"))
    # secret: with the salt, a quoted hash would let a 4-12 digit PIN be found offline.
    _str(h["salt"], f + ".salt", 16, 64, _HEX, secret=True)
    if len(h["salt"]) % 2:
        _err(f + ".salt", "must be whole bytes (an even number of hex digits)")
    _int(h["n"], f + ".n", PIN_ITER[0], PIN_ITER[1])
    _str(h["hash"], f + ".hash", 64, 64, _HEX, secret=True)


def check_ops(ops, f="operators"):
    _list(ops, f, 16, 1)
    ids = []
    admin = False
    for i, o in enumerate(ops):
        fo = "%s[%d]" % (f, i)
        if isinstance(o, dict) and "pin" in o:
            _err(fo + ".pin", "clear PINs are not accepted; give pin_hash (roampos provision hashes them)")
        _obj(o, fo, ("id", "role", "pin_hash"), ("name", "tries"))
        _str(o["id"], fo + ".id", 1, 8, _ALNUM)
        if o["id"] in ids:
            _err(fo + ".id", "operator %s listed twice" % o["id"])
        ids.append(o["id"])
        if o["role"] not in ROLES:
            _err(fo + ".role", "must be cashier, supervisor or admin, got %s" % _shown(o["role"]))
        admin = admin or o["role"] == "admin"
        check_pin_hash(o["pin_hash"], fo + ".pin_hash")
        if "name" in o:
            _str(o["name"], fo + ".name", 1, 24)
        _int(o.get("tries", 3), fo + ".tries", 1, 10)
    if not admin:
        _err(f, "at least one admin is needed")


def check_active(a, home, granted, f="active"):
    _obj(a, f, ("region",))
    if a["region"] != home and a["region"] not in granted:
        _err(f + ".region", "%s is not an authorized region" % _shown(a["region"]))


def check_core(recs, codes):
    # Cross-record rules over merchant, grants, loc, ops, active. codes: the
    # region codes that have a profile.
    if not 1 <= len(codes) <= 16:
        _err("profiles", "must be an object of 1 to 16 region profiles")
    m = recs["merchant"]
    check_merchant(m)
    home = m["home_region"]
    if home not in codes:
        _err("merchant.home_region", "no profile for home region %s" % home)
    check_grants(recs["grants"], home)
    for i, g in enumerate(recs["grants"]):
        if g["region"] not in codes:
            _err("authorized[%d].region" % i, "unknown region %s: no profile" % g["region"])
    check_loc(recs["loc"])
    check_ops(recs["ops"])
    check_active(recs["active"], home, [g["region"] for g in recs["grants"]])


def check_records(get, names):
    # A stored set, record by record (get(name): the record's object; names: the manifest's), under
    # the rules split() applies to an imported set: at boot and by `param check`. Raises ParamError,
    # with .record naming the record that holds the field.
    codes = [n[1:] for n in names if n[0] == "r"]
    try:
        for c in codes:
            f = "profiles." + c
            code(c, f)
            check_profile(get("r" + c), f)
            gc.collect()  # one profile in the heap at a time (boot, a 64 KB heap)
        recs = {}
        for n in _PATHS:
            recs[n] = get(n)
        check_core(recs, codes)
    except ParamError as e:
        # field_of() the other way: profiles.440300.fees -> r440300, authorized[0].to -> grants.
        p = e.field.replace("[", ".").split(".")
        e.record = "r" + p[1] if p[0] == "profiles" and len(p) > 1 else "set"  # set: the profile count
        for n in _PATHS:
            if _PATHS[n] == p[0]:
                e.record = n
        raise


def split(s, active=None):
    # Validate a whole set; return (version, {record name: object}).
    _obj(s, "set", ("version", "merchant", "authorized", "profiles", "locations", "operators"))
    ver = _int(s["version"], "version", 1, 2 ** 30)
    profiles = s["profiles"]
    if not isinstance(profiles, dict) or not 1 <= len(profiles) <= 16:
        _err("profiles", "must be an object of 1 to 16 region profiles")
    recs = {}
    for c in profiles:
        code(c, "profiles." + c)
        check_profile(profiles[c], "profiles." + c)
        recs["r" + c] = profiles[c]
    home = s["merchant"].get("home_region") if isinstance(s["merchant"], dict) else None
    granted = [g.get("region") for g in s["authorized"] if isinstance(g, dict)] \
        if isinstance(s["authorized"], list) else ()
    recs["merchant"] = s["merchant"]
    recs["grants"] = s["authorized"]
    recs["loc"] = s["locations"]
    recs["ops"] = s["operators"]
    # Keep the active region across a new set when it is still authorized.
    recs["active"] = {"region": active if active == home or active in granted else home}
    check_core(recs, list(profiles))
    return ver, recs
