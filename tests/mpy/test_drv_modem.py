# SIM7600 driver and AT engine: exact commands, parsing of answers and URCs,
# and malformed modem output (garbage lines, binary, silence) that must give
# typed errors within the timeout, never a hang. 3GPP TS 27.007 sections named.
import time

from vhw.uart import UART
from vhw.modem import ModemModel
from drivers.atmodem import ATError, ATTimeout
from drivers.sim7600 import SIM7600, ModemError, _parse_reg


class Script:
    # A modem that answers each command line with canned bytes.
    def __init__(self, answers):
        self.answers = answers      # command -> bytes (or list of bytes, in turn)
        self.sent = []
        self.out = b""

    def rx(self, data):
        for line in data.split(b"\r"):
            if not line:
                continue
            self.sent.append(line.decode())
            a = self.answers.get(line.decode(), b"\r\nERROR\r\n")
            if isinstance(a, list):
                a = a.pop(0) if a else b""
            self.out += a

    def tx(self):
        out, self.out = self.out, b""
        return out or None


def modem(answers):
    s = Script(answers)
    return SIM7600(UART(1, model=s)), s


def test_sync_sends_the_settings_we_rely_on():
    m, s = modem({k: b"\r\nOK\r\n" for k in ("AT", "ATE0", "AT+CMEE=1", "AT+CREG=2", "AT+CEREG=2",
                                               "AT+COPS=3,2", "AT+CIPRXGET=1")})
    m.sync(1000)
    assert s.sent == ["AT", "ATE0", "AT+CMEE=1", "AT+CREG=2", "AT+CEREG=2", "AT+COPS=3,2",
                      "AT+CIPRXGET=1"], s.sent


def test_csq_to_dbm_27007_8_5():
    for rssi, dbm in ((0, -113), (1, -111), (20, -73), (31, -51), (99, None)):
        m, _ = modem({"AT+CSQ": ("\r\n+CSQ: %d,99\r\n\r\nOK\r\n" % rssi).encode()})
        assert m.signal() == dbm, (rssi, m.signal())


def test_registration_forms_27007_7_2():
    assert _parse_reg('+CREG: 2,1,"18A8","0004D2"') == {"stat": 1, "lac": 0x18A8, "ci": 0x4D2}
    assert _parse_reg('+CEREG: 2,5,"1840","1A2B3C",7') == {"stat": 5, "lac": 0x1840, "ci": 0x1A2B3C}
    assert _parse_reg("+CREG: 0,3") == {"stat": 3, "lac": None, "ci": None}
    assert _parse_reg('+CREG: 1,"18A8","0004D2"') == {"stat": 1, "lac": 0x18A8, "ci": 0x4D2}  # URC
    assert _parse_reg("+CREG: 2") == {"stat": 2, "lac": None, "ci": None}                     # URC
    assert _parse_reg("+CREG: x,y") is None and _parse_reg("+CREG") is None


def test_operator_numeric_27007_7_3():
    m, _ = modem({"AT+COPS?": b'\r\n+COPS: 0,2,"46001",7\r\n\r\nOK\r\n'})
    assert m.operator() == ("460", "01")
    m, _ = modem({"AT+COPS?": b"\r\n+COPS: 0\r\n\r\nOK\r\n"})
    assert m.operator() is None
    m, _ = modem({"AT+COPS?": b'\r\n+COPS: 0,2,"4x0",7\r\n\r\nOK\r\n'})
    try:
        m.operator()
    except ModemError as e:
        assert "bad operator" in str(e)
    else:
        raise AssertionError("accepted a bad operator")


def test_garbage_lines_and_urcs_between_answers():
    m, _ = modem({"AT+CSQ": b"\r\n\xff\xfe\x00junk\r\n" + b"Z" * 400 + b"\r\n+CPIN: NOT READY\r\n"
                            b"NO CARRIER\r\n+CSQ: 18,99\r\n\r\nOK\r\n"})
    assert m.signal() == -77
    assert m.at.garbage == 2, m.at.garbage
    assert m.sim_lost and m.no_carrier and m.closed


def test_error_answers_and_silence_are_typed_and_bounded():
    m, _ = modem({"AT+CPIN?": b"\r\n+CME ERROR: 10\r\n"})
    assert m.sim() == "absent"
    m, _ = modem({})                       # ERROR to everything
    try:
        m.signal()
    except ATError as e:
        assert e.cmd == "AT+CSQ" and e.result == "ERROR"
    m, _ = modem({"AT+CSQ": b"\r\n+CSQ: 1"})   # cut off: no final result
    t0 = time.ticks_ms()
    try:
        m.at.cmd("AT+CSQ", 150)
    except ATTimeout:
        pass
    else:
        raise AssertionError("no timeout")
    assert time.ticks_diff(time.ticks_ms(), t0) < 400
    m, _ = modem({"AT+CSQ": b"\r\n+CSQ: nonsense\r\n\r\nOK\r\n"})
    try:
        m.signal()
    except ModemError:
        pass
    else:
        raise AssertionError("accepted a bad +CSQ")


def test_sync_gives_up_on_a_silent_modem():
    m, _ = modem({"AT": b""})
    t0 = time.ticks_ms()
    try:
        m.sync(700)
    except ModemError as e:
        assert "silent" in str(e)
    else:
        raise AssertionError("no ModemError")
    assert time.ticks_diff(time.ticks_ms(), t0) < 2000


def test_against_model_registration_location_and_denial():
    mm = ModemModel()
    m = SIM7600(UART(1, model=mm))
    m.sync()
    assert m.sim() == "READY"
    r = m.registration()
    assert r == {"stat": 1, "lac": 0x1840, "ci": 0x1A2B3C}, r
    assert m.operator() == ("460", "00")
    mm.set_cell("460", "11", 0x2000, 77)
    m.at.poll()
    assert m.reg == {"stat": 1, "lac": 0x2000, "ci": 77}, m.reg   # from the +CREG/+CEREG URC
    mm.set_stat(3)
    assert m.registration()["stat"] == 3
    assert m.signal() is None                                        # no service: 99


def test_tcp_over_model_with_real_socket():
    import socket
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # The unix port has no getsockname, so port 0 cannot be read back: walk
    # from a time-based start past ports another process already holds.
    port = 47000 + time.ticks_ms() % 900
    for _ in range(200):
        try:
            srv.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
            break
        except OSError as e:
            if e.errno != 98:            # EADDRINUSE
                raise
            port = 47000 + (port - 47000 + 1) % 900
    else:
        raise AssertionError("no free port in 47000-47899")
    srv.listen(1)
    mm = ModemModel()
    m = SIM7600(UART(1, model=mm))
    m.sync()
    m.set_apn("cmnet")
    assert mm.apn == "cmnet"
    m.net_open()
    s = m.socket()
    s.connect(("127.0.0.1", port))
    peer, _ = srv.accept()
    s.write(b"ping 1234")
    got = peer.recv(64)
    assert got == b"ping 1234", got
    assert 'AT+CIPSEND=0,9' in mm.commands
    peer.send(b"pong")
    assert s.read(4) == b"pong"
    s.setblocking(False)
    assert s.read(1) is None
    peer.close()
    srv.close()
    t0 = time.ticks_ms()
    s.setblocking(True)
    out = s.read(4)
    assert out == b"", out               # closed by the peer: +IPCLOSE
    assert m.closed and time.ticks_diff(time.ticks_ms(), t0) < 3000
    s.close()


class _Late(Script):
    # Answers AT+COPS? only after the driver has given up on it.
    def __init__(self):
        super().__init__({"AT+CSQ": b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"})
        self.late = b""

    def rx(self, data):
        if b"AT+COPS?" in data:
            self.late += b'\r\n+COPS: 0,2,"46000",7\r\n\r\nOK\r\n'
            return
        super().rx(data)


def test_a_late_answer_does_not_shift_the_next_ones():
    model = _Late()
    m = SIM7600(UART(1, model=model))
    try:
        m.operator()
    except ATTimeout:
        pass
    model.out += model.late          # the old answer arrives now, before the next command
    assert m.signal() == -73         # +CSQ: 20 -> -113 + 2*20, not the stale +COPS lines


class _Flood:
    # A modem that never stops sending (noise, a URC storm) and never answers.
    def rx(self, data):
        pass

    def tx(self):
        return b"\r\n+CREG: 2\r\n"


def test_a_modem_that_never_stops_talking_still_times_out():
    m = SIM7600(UART(1, model=_Flood()))
    t0 = time.ticks_ms()
    try:
        m.at.cmd("AT+CSQ", 300, "+CSQ:")
    except ATTimeout:
        pass
    else:
        raise AssertionError("no timeout")
    # bounded: the deadline plus the overrun allowance, not until the noise stops
    assert time.ticks_diff(time.ticks_ms(), t0) < 300 + 100 + 200


def test_sim_absent_only_for_its_own_error_code():
    for err, want in ((b"+CME ERROR: 10", "absent"), (b"+CME ERROR: 100", "error"), (b"+CME ERROR: 110", "error"),
                      (b"+CME ERROR: SIM not inserted", "absent")):
        m = SIM7600(UART(1, model=Script({"AT+CPIN?": b"\r\n" + err + b"\r\n"})))
        assert m.sim() == want, (err, m.sim())


def test_a_negative_receive_length_is_refused():
    m = SIM7600(UART(1, model=Script({"AT+CIPRXGET=2,0,256": b"\r\n+CIPRXGET: 2,0,-5,0\r\n\r\nOK\r\n"})))
    m.closed, m.data_ready = False, True
    try:
        m.tcp_recv(bytearray(256), 256)
    except ModemError as e:
        assert "-5" in str(e), e
    else:
        raise AssertionError("accepted a negative length")


class _Sending:
    # A modem that takes CIPSEND data after its ">" and then confirms with `tail`.
    def __init__(self, tail):
        self.tail, self.want, self.out = tail, 0, b""

    def rx(self, data):
        if self.want:
            self.want -= len(data)
            if self.want <= 0:
                self.want = 0
                self.out += self.tail
            return
        line = data.split(b"\r")[0].decode()
        if line.startswith("AT+CIPSEND=0,"):
            self.want = int(line.split(",")[1])
            self.out += b"\r\n>"

    def tx(self):
        out, self.out = self.out, b""
        return out or None


def test_cipsend_counts_only_what_the_module_confirms():
    # TCPIP manual: OK, then +CIPSEND: <link>,<reqSendLength>,<cnfSendLength>; -1: the connection
    # is gone; fewer than asked: not all of it went out. Neither is a successful write.
    for tail, gone in ((b"\r\nOK\r\n\r\n+CIPSEND: 0,9,-1\r\n", True), (b"\r\nOK\r\n\r\n+CIPSEND: 0,9,4\r\n", False)):
        m = SIM7600(UART(1, model=_Sending(tail)))
        m.closed = False
        try:
            m.socket().write(b"ping 1234")
        except OSError:
            pass
        else:
            raise AssertionError("a write the module did not confirm counted as sent: %r" % tail)
        assert m.closed is gone
    m = SIM7600(UART(1, model=_Sending(b"\r\nOK\r\n\r\n+CIPSEND: 0,9,9\r\n")))
    m.closed = False
    assert m.socket().write(b"ping 1234") == 9


def test_a_urc_cut_by_the_start_of_a_command_is_not_lost():
    # "+CIPRX" is in the UART when AT+CSQ starts; "GET: 1,0" arrives while it runs. A lost
    # +CIPRXGET: 1 leaves the data waiting in the module, unread.
    m, s = modem({"AT+CSQ": b"GET: 1,0\r\n\r\n+CSQ: 20,99\r\n\r\nOK\r\n"})
    s.out = b"\r\n+CIPRX"
    m.closed = False
    assert m.signal() == -73 and m.data_ready


def test_modem_failures_reach_socket_users_as_oserror():
    # umqtt.simple and the link checks catch OSError: an AT error or a silent modem must be one.
    m, _ = modem({})                               # every command: ERROR
    s = m.socket()
    try:
        s.connect(("127.0.0.1", 1883))
    except OSError as e:
        assert "ATError" in str(e) or "CIPOPEN" in str(e), e
    else:
        raise AssertionError("no error")
