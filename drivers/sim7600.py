# SIM7600-class LTE modem: power-up and sync, SIM state, signal (+CSQ),
# registration with LAC/TAC and cell id (+CREG/+CEREG), operator MCC/MNC
# (+COPS), APN, and TCP through the module's own socket commands behind a
# socket-like object that umqtt.simple can use. References: 3GPP TS 27.007
# (§ below), SIM7500/SIM7600 Series AT Command Manual and TCPIP AT Command
# Manual (command names below).
import time
from micropython import const

from drivers.atmodem import AT, ATError, ATTimeout

_LINK = const(0)             # the one socket used (link number 0 of 10)
_MAX_SEND = const(1460)      # CIPSEND length limit per call (TCPIP manual)

# +CREG/+CEREG <stat> (27.007 §7.2 / §10.1.22)
REG = {0: "not registered", 1: "home", 2: "searching", 3: "denied", 4: "unknown", 5: "roaming"}


class ModemError(Exception):
    pass


class SIM7600:
    def __init__(self, uart, pwrkey=None):
        self.at = AT(uart, self._urc)
        self.pwrkey = pwrkey
        self.synced = False
        self.data_ready = False      # +CIPRXGET: 1 seen: bytes wait in the module
        self.closed = True           # the TCP link is closed (or never opened)
        self.no_carrier = False
        self.sim_lost = False
        self.net_lost = False        # +CIPEVENT: the network (NETOPEN) was closed under us
        self.reg = None              # last registration seen (dict)
        self._rxbuf = bytearray(512)

    def _urc(self, line):
        if line.startswith("+CIPRXGET: 1"):
            self.data_ready = True
        elif line.startswith("+IPCLOSE:"):
            self.closed = True
        elif line.startswith("+CIPEVENT:"):
            # "NETWORK CLOSED UNEXPECTEDLY" (TCPIP manual): not only the TCP link, the whole data
            # session is gone; it takes another NETOPEN.
            self.closed = self.net_lost = True
        elif line == "NO CARRIER":
            self.no_carrier = True
            self.closed = True
        elif line.startswith("+CPIN: NOT READY"):
            self.sim_lost = True
        elif line.startswith("+CREG:") or line.startswith("+CEREG:"):
            r = _parse_reg(line)
            if r is not None:
                self.reg = r

    def power_on(self, timeout_ms=15000):
        if self.pwrkey is not None:
            # Power-on pulse: PWRKEY low for at least 100 ms; 500 ms as in the
            # SIM7600 hardware design's reference timing.
            self.pwrkey.value(0)
            time.sleep_ms(500)
            self.pwrkey.value(1)
        self.sync(timeout_ms)

    def sync(self, timeout_ms=10000):
        # Autobaud/sync: repeat AT until OK, then fix the settings we rely on.
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        while True:
            try:
                self.at.cmd("AT", 300)
                break
            except ATError:
                if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                    raise ModemError("modem silent for %d ms" % timeout_ms)
        for c in ("ATE0", "AT+CMEE=1", "AT+CREG=2", "AT+CEREG=2", "AT+COPS=3,2", "AT+CIPRXGET=1"):
            self.at.cmd(c, 2000)
        self.synced = True

    def sim(self):
        # "READY", "SIM PIN", "SIM PUK", ... or "absent" (27.007 §8.3).
        try:
            r = self.at.cmd("AT+CPIN?", 5000, "+CPIN:")
        except ATError as e:
            # 27.007 §9.2.1: +CME ERROR: 10 is "SIM not inserted" (100, 110 are other errors).
            return "absent" if e.result.replace(" ", "") in ("+CMEERROR:10", "+CMEERROR:SIMnotinserted") \
                else "error"
        if r:
            self.sim_lost = r[0][7:].strip() != "READY"
            return r[0][7:].strip()
        return "error"

    def signal(self):
        # +CSQ: <rssi>,<ber> (27.007 §8.5): 0 = -113 dBm .. 31 = -51 dBm, 99 unknown.
        r = self.at.cmd("AT+CSQ", 1000, "+CSQ:")
        try:
            rssi = int(r[0][6:].split(",")[0])
        except (IndexError, ValueError):
            raise ModemError("bad +CSQ answer %r" % (r[:1],))
        return None if rssi == 99 or rssi > 31 else -113 + 2 * rssi

    def registration(self):
        # LTE (+CEREG) first, then 2G/3G (+CREG): {"stat", "lac", "ci"}.
        best = None
        for c, p in (("AT+CEREG?", "+CEREG:"), ("AT+CREG?", "+CREG:")):
            try:
                r = self.at.cmd(c, 1000, p)
            except ATError:
                continue
            reg = _parse_reg(r[0]) if r else None
            if reg is not None and (best is None or reg["stat"] in (1, 5)):
                best = reg
                if reg["stat"] in (1, 5):
                    break
        self.reg = best
        return best

    def operator(self):
        # +COPS: <mode>,2,"<MCC><MNC>",<AcT> (27.007 §7.3) -> ("460", "00").
        r = self.at.cmd("AT+COPS?", 3000, "+COPS:")
        parts = r[0][6:].split(",") if r else []
        if len(parts) < 3:
            return None
        num = parts[2].strip().strip('"')
        if not num.isdigit() or len(num) not in (5, 6):
            raise ModemError("bad operator %r" % num[:8])
        return num[:3], num[3:]

    def set_apn(self, apn):
        if '"' in apn or len(apn) > 62:
            raise ModemError("bad APN %r" % apn[:16])
        self.at.cmd('AT+CGDCONT=1,"IP","%s"' % apn, 2000)

    def net_open(self, timeout_ms=30000):
        # AT+NETOPEN: OK, then the URC +NETOPEN: <err> (0 = opened). Open
        # already (the link left cell and came back), NETOPEN would answer
        # "+IP ERROR: Network is already opened" and ERROR: ask first.
        if self.at.cmd("AT+NETOPEN?", 2000, "+NETOPEN:") == ["+NETOPEN: 1"]:
            self.net_lost = False
            return
        self.at.cmd("AT+NETOPEN", 2000)
        line = self.at.wait_urc("+NETOPEN:", timeout_ms)
        if line[9:].strip() != "0":
            raise ModemError("NETOPEN failed: %s" % line)
        self.net_lost = False

    def net_close(self):
        try:
            self.at.cmd("AT+NETCLOSE", 2000)
            self.at.wait_urc("+NETCLOSE:", 5000)
        except ATError:
            pass

    def dial_ppp(self, timeout_ms=10000):
        # Data mode for network.PPP: ATD*99# (27.007 §10.1.1 / V.250) answers
        # CONNECT; from then on the UART carries PPP frames, not AT lines.
        self.at.send_line("ATD*99#")
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        while True:
            line = self.at._getline(deadline)
            if line is None:
                raise ATTimeout("ATD*99#", "no CONNECT in %d ms" % timeout_ms)
            if line.startswith("CONNECT"):
                return
            if line in ("ERROR", "NO CARRIER") or line.startswith("+CME ERROR"):
                raise ATError("ATD*99#", line)

    # -- TCP over link 0 (TCPIP manual: CIPOPEN, CIPSEND, CIPRXGET, CIPCLOSE)
    def tcp_open(self, host, port, timeout_ms=20000):
        if '"' in host or not 0 < port < 65536:
            raise ModemError("bad address %r:%r" % (host[:32], port))
        self.at.cmd('AT+CIPOPEN=%d,"TCP","%s",%d' % (_LINK, host, port), 2000)
        line = self.at.wait_urc("+CIPOPEN:", timeout_ms)
        err = line.split(",")[-1].strip()
        if err != "0":
            raise OSError(111, "CIPOPEN error %s" % err)  # ECONNREFUSED-like
        self.closed = self.no_carrier = self.data_ready = False

    def tcp_send(self, data):
        mv = memoryview(data)
        for off in range(0, len(mv), _MAX_SEND):
            chunk = mv[off:off + _MAX_SEND]
            try:
                self.at.cmd("AT+CIPSEND=%d,%d" % (_LINK, len(chunk)), 5000, prompt=chunk)
                # OK only means the module took the bytes: +CIPSEND: <link>,<req>,<cnf> says what
                # went out (TCPIP manual: cnf -1 = the connection is gone).
                line = self.at.wait_urc("+CIPSEND:", 5000)
            except ATError as e:
                self.closed = True
                raise OSError(104, "CIPSEND: %s" % e.result)  # ECONNRESET-like
            try:
                _, req, cnf = line[9:].split(",")
                req, cnf = int(req), int(cnf)
            except ValueError:
                raise ModemError("bad CIPSEND confirmation %r" % line[:40])
            if cnf != req:
                self.closed = cnf < 0
                raise OSError(104 if cnf < 0 else 5, "CIPSEND: %d of %d bytes sent" % (max(cnf, 0), req))

    def tcp_recv(self, buf, n, timeout_ms=0):
        # Up to n bytes into buf (manual receive mode); 0 when none arrived.
        deadline = time.ticks_add(time.ticks_ms(), timeout_ms)
        while True:
            self.at.poll()
            if self.data_ready or timeout_ms == 0:
                break
            if self.closed or time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                return 0
            time.sleep_ms(5)
        n = min(n, len(self._rxbuf))
        self.at.send_line("AT+CIPRXGET=2,%d,%d" % (_LINK, n))
        deadline = time.ticks_add(time.ticks_ms(), 2000)
        got = 0
        while True:
            line = self.at._getline(deadline)
            if line is None:
                raise ATTimeout("CIPRXGET", "no answer")
            if line.startswith("+CIPRXGET: 2,"):
                # +CIPRXGET: 2,<link>,<read_len>,<rest_len> then the bytes
                try:
                    _, _, rl, rest = line.split(",")
                    got, rest = int(rl), int(rest)
                except ValueError:
                    raise ModemError("bad CIPRXGET header %r" % line[:40])
                if not 0 <= got <= n or rest < 0:
                    raise ModemError("CIPRXGET gave %d bytes (%d asked), %d left" % (got, n, rest))
                self.at.read_raw(buf, got, 2000)
                if rest == 0:
                    self.data_ready = False
            elif line == "OK":
                return got
            elif line == "ERROR" or line.startswith("+CME ERROR") or line.startswith("+IP ERROR"):
                self.data_ready = False
                return 0
            else:
                self._urc(line)

    def tcp_close(self):
        if not self.closed:
            try:
                self.at.cmd("AT+CIPCLOSE=%d" % _LINK, 2000)
            except ATError:
                pass
            self.closed = True

    def socket(self):
        from drivers.modemsock import ModemSocket
        return ModemSocket(self)


def _parse_reg(line):
    # "+CREG: [<n>,]<stat>[,"<lac>","<ci>"[,<AcT>]]" -> dict, or None if it
    # does not parse. A URC has no <n>; an answer to AT+CREG? has it.
    try:
        body = line.split(":", 1)[1].strip().split(",")
        vals = [v.strip().strip('"') for v in body]
        if len(vals) >= 3 and len(vals[1]) > 2:     # URC with location: stat,lac,ci
            vals = ["2"] + vals
        elif len(vals) == 1:                         # URC: stat only
            vals = ["0"] + vals
        stat = int(vals[1])
        lac = int(vals[2], 16) if len(vals) > 2 and vals[2] else None
        ci = int(vals[3], 16) if len(vals) > 3 and vals[3] else None
    except (IndexError, ValueError):
        return None
    return {"stat": stat, "lac": lac, "ci": ci}
