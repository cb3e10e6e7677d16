# SIM7600-class modem model: an AT command interpreter with SIM state,
# registration (home, searching, denied), signal, operator and cell
# identity, URCs, PWRKEY, and a data path from the TCPIP commands (NETOPEN,
# CIPOPEN, CIPSEND, CIPRXGET manual mode, CIPCLOSE) to real host sockets.
# On the vterm it runs in the vterm process (roampos.vterm.hw), whose bus
# thread must never wait: the host socket is non-blocking throughout (the
# connect completes, and queued data goes out, whenever the driver looks
# at the UART: tx()). Host names are resolved by getaddrinfo, which does
# wait; the tests use numeric addresses. The driver tests (tests/mpy) run
# it inside MicroPython: only what both have is used.
import socket

from vhw.ticks import ticks_diff, ticks_ms

OPEN_MS = 15000               # CIPOPEN gives up (+CIPOPEN: 0,4) after this
_PENDING = (114, 115)         # EALREADY, EINPROGRESS: the connect is under way
_DONE = (0, 106)              # connected now, EISCONN: connected before


class ModemModel:
    def __init__(self):
        self.out = bytearray()
        self._in = b""
        self.echo = True
        self.cpin = "READY"
        self.creg_n = 0
        self.cereg_n = 0
        self.stat = 1                 # 1 home, 0 not registered, 3 denied
        self.mcc, self.mnc, self.lac, self.ci = "460", "00", 0x1840, 0x1A2B3C
        self.rssi = 20                # +CSQ scale: -113 + 2 * 20 = -73 dBm
        self.apn = ""
        self.netopen = False
        self.sock = None
        self._opening = None          # ticks_ms when CIPOPEN started, until it completes
        self._addr = None
        self._txq = b""               # CIPSEND data the host socket did not take yet
        self._send_left = 0           # bytes still expected after the > prompt
        self._send_buf = b""
        self._rx_notified = False
        self._pending = b""           # bytes read from the host socket, not yet fetched
        self.commands = []            # every command line received (tests)
        self._key_at = None           # ticks_ms when PWRKEY went low
        self.power_ups = 0            # PWRKEY pulses seen (tests)

    # -- what the driver sends ------------------------------------------------
    def rx(self, data):
        self._in += data
        while self._in:
            if self._send_left:
                take = self._in[:self._send_left]
                self._in = self._in[len(take):]
                self._send_buf += take
                self._send_left -= len(take)
                if not self._send_left:
                    self._send_done()
                continue
            i = self._in.find(b"\r")
            if i < 0:
                if len(self._in) > 600:
                    self._in = b""
                return
            line, self._in = self._in[:i], self._in[i + 1:]
            line = line.strip(b"\n ")
            if line:
                try:
                    self._line(line.decode())
                except (ValueError, IndexError):  # a malformed command (bad number, not UTF-8)
                    self._w("ERROR")

    def _w(self, text):
        self.out += b"\r\n" + text.encode() + b"\r\n"

    def _ok(self, *lines):
        for ln in lines:
            self._w(ln)
        self._w("OK")

    # -- what the device sends ------------------------------------------------
    def tx(self):
        self._poll_socket()
        if not self.out:
            return None
        out, self.out = bytes(self.out), bytearray()
        return out

    def _poll_socket(self):
        s = self.sock
        if s is None or self._opening is not None and not self._opened():
            return
        if self._txq:
            self._flush()
            if self.sock is None:
                return
        try:
            data = s.recv(1024)
        except OSError:
            return  # nothing yet (non-blocking)
        if data:
            self._pending += data
            if not self._rx_notified:
                self._rx_notified = True
                self._w("+CIPRXGET: 1,0")
        else:
            self._close(1)  # closed by the peer

    def _opened(self):
        # Is the non-blocking connect done? connect() again tells: 0 or
        # EISCONN when it is, EALREADY while under way, else its error.
        try:
            self.sock.connect(self._addr)
            err = 0
        except OSError as e:
            err = e.args[0]
        if err in _PENDING and ticks_diff(ticks_ms(), self._opening) < OPEN_MS:
            return False
        self._opening = None
        if err in _DONE:
            self._w("+CIPOPEN: 0,0")
            return True
        self._drop()
        self._w("+CIPOPEN: 0,4")
        return False

    def _flush(self):
        # Send what the host socket takes now; the rest waits for the next tx().
        try:
            n = self.sock.send(self._txq)
        except OSError as e:
            if e.args[0] != 11:  # EAGAIN: full, try later; anything else: the link broke
                self._close(1)
            return
        self._txq = self._txq[n:]

    def _drop(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self._opening = None
        self._txq = b""

    def _close(self, reason):
        if self.sock is not None:
            self._drop()
            self._w("+IPCLOSE: 0,%d" % reason)

    def close(self):
        # Power off (the vterm's next boot): the host socket goes too.
        self._drop()

    # -- commands -------------------------------------------------------------
    def _line(self, cmd):
        self.commands.append(cmd)
        if self.echo:
            self.out += cmd.encode() + b"\r"
        u = cmd.upper()
        registered = self.stat in (1, 5)
        if u in ("AT", "AT+CMEE=1", "AT+CMEE=2", "AT+COPS=3,2", "AT+CIPRXGET=1"):
            self._ok()
        elif u in ("ATE0", "ATE1"):
            self.echo = u == "ATE1"
            self._ok()
        elif u == "AT+CPIN?":
            if self.cpin == "absent":
                self._w("+CME ERROR: 10")
            else:
                self._ok("+CPIN: " + self.cpin)
        elif u == "AT+CSQ":
            self._ok("+CSQ: %d,99" % (self.rssi if registered else 99))
        elif u.startswith("AT+CREG=") or u.startswith("AT+CEREG="):
            n = int(u.split("=")[1])
            if u.startswith("AT+CREG"):
                self.creg_n = n
            else:
                self.cereg_n = n
            self._ok()
        elif u in ("AT+CREG?", "AT+CEREG?"):
            lte = u == "AT+CEREG?"
            n = self.cereg_n if lte else self.creg_n
            s = "+CEREG: " if lte else "+CREG: "
            s += "%d,%d" % (n, self.stat)
            if n == 2 and registered:
                s += ',"%04X","%07X"' % (self.lac, self.ci) + (",7" if lte else "")
            self._ok(s)
        elif u == "AT+COPS?":
            self._ok('+COPS: 0,2,"%s%s",7' % (self.mcc, self.mnc) if registered else "+COPS: 0")
        elif u.startswith('AT+CGDCONT=1,"IP",'):
            self.apn = cmd.split(",")[2].strip('"')
            self._ok()
        elif u == "AT+NETOPEN?":
            self._ok("+NETOPEN: %d" % (1 if self.netopen else 0))
        elif u == "AT+NETOPEN":
            if self.netopen:
                self._w("+IP ERROR: Network is already opened")
                self._w("ERROR")
                return
            self._ok()
            self.netopen = registered
            self._w("+NETOPEN: %d" % (0 if registered else 1))
        elif u == "AT+NETCLOSE":
            self._close(2)
            self.netopen = False
            self._ok()
            self._w("+NETCLOSE: 0")
        elif u.startswith("AT+CIPOPEN=0,"):
            self._open(cmd)
        elif u.startswith("AT+CIPSEND=0,"):
            n = int(u.split(",")[1])
            if self.sock is None or not 0 < n <= 1500:
                self._w("ERROR")
                return
            self._send_left = n
            self._send_buf = b""
            self.out += b"\r\n>"
        elif u.startswith("AT+CIPRXGET=2,0,"):
            n = int(u.split(",")[2])
            self._poll_socket()
            data, self._pending = self._pending[:n], self._pending[n:]
            self.out += ("\r\n+CIPRXGET: 2,0,%d,%d\r\n" % (len(data), len(self._pending))).encode() + data
            self._w("OK")
            if not self._pending:
                self._rx_notified = False
        elif u == "AT+CIPRXGET=4,0":
            self._ok("+CIPRXGET: 4,0,%d" % len(self._pending))
        elif u == "AT+CIPCLOSE=0":
            if self.sock is None:
                self._w("+CIPCLOSE: 0,4")
                self._w("ERROR")
                return
            if self._txq and self._opening is None:
                self._flush()      # what CIPSEND accepted still goes out
            self._drop()
            self._ok()
            self._w("+CIPCLOSE: 0,0")
        else:
            self._w("ERROR")

    def _open(self, cmd):
        parts = cmd.split(",")
        try:
            host, port = parts[2].strip('"'), int(parts[3])
        except (IndexError, ValueError):
            self._w("ERROR")
            return
        self._ok()
        if not self.netopen or self.sock is not None:
            self._w("+CIPOPEN: 0,%d" % (4 if self.sock else 2))
            return
        try:
            ai = socket.getaddrinfo(host, port)[0]
            s = socket.socket(ai[0], socket.SOCK_STREAM)
            self._addr = ai[-1]
        except OSError:
            self._w("+CIPOPEN: 0,4")
            return
        s.setblocking(False)
        self.sock = s
        self._opening = ticks_ms()
        self._pending = b""
        self._txq = b""
        self._rx_notified = False
        self._opened()             # starts the connect (or finds it refused at once)

    def _send_done(self):
        if self.sock is None:
            self._w("ERROR")
            return
        self._txq += self._send_buf
        if self._opening is None:
            self._flush()
        if self.sock is None:
            self._w("ERROR")
            return
        self._ok()
        self._w("+CIPSEND: 0,%d,%d" % (len(self._send_buf), len(self._send_buf)))

    # -- the module's PWRKEY line (low-active) ------------------------------
    def pwrkey(self, v):
        # A low pulse of at least 100 ms powers the module on (SIM7600
        # hardware design): it answers with RDY. The model is on from the
        # start (the driver tests use it without the line), so a pulse only
        # says RDY again.
        if not v:
            self._key_at = ticks_ms()
        elif self._key_at is not None:
            if ticks_diff(ticks_ms(), self._key_at) >= 100:
                self.power_ups += 1
                self._w("RDY")
            self._key_at = None

    # -- the world changes (sim link / cell / signal) ------------------------
    def set_stat(self, stat):
        if stat == self.stat:
            return
        self.stat = stat
        if stat not in (1, 5):
            if self.sock is not None:
                self._drop()
                self._w("NO CARRIER")
                self._w("+IPCLOSE: 0,2")
            if self.netopen:
                self.netopen = False
                self._w("+CIPEVENT: NETWORK CLOSED UNEXPECTEDLY")
        self._reg_urc()

    def set_cell(self, mcc, mnc, lac, ci):
        self.mcc, self.mnc, self.lac, self.ci = mcc, mnc, lac, ci
        self._reg_urc()

    def _reg_urc(self):
        for n, name, act in ((self.creg_n, "+CREG: ", ""), (self.cereg_n, "+CEREG: ", ",7")):
            if n == 1 or n == 2 and self.stat not in (1, 5):
                self._w(name + "%d" % self.stat)
            elif n == 2:
                self._w(name + '%d,"%04X","%07X"%s' % (self.stat, self.lac, self.ci, act))
