# GM65 scanner driver and the payment-code classification.
from vhw.uart import UART
from vhw.scanner import ScannerModel
from drivers.gm65 import GM65
from firmware.scanner import classify


def test_lines_and_garbage():
    m = ScannerModel()
    g = GM65(UART(2, model=m), max_len=32)
    m.scan("134567890123456789")
    m.scan(b"\x01\x02bin")
    m.scan("X" * 40)
    m.scan("000201010211")
    assert g.poll() == "134567890123456789"
    assert g.poll() == "000201010211"
    assert g.poll() is None
    assert g.dropped == 2


def test_classify_payment_codes():
    assert classify("134567890123456789") == {"kind": "paycode", "scheme": "wechat", "code": "134567********6789"}
    assert classify("281234567890123456")["scheme"] == "alipay"
    assert classify("6212345678901234567")["scheme"] == "unionpay"
    assert classify("000201010211")["kind"] == "emvqr"
    assert classify("hello") == {"kind": "text", "text": "hello"}
    assert classify("99")["kind"] == "text"


def test_flush_drops_the_backlog_and_a_line_in_progress():
    m = ScannerModel()
    g = GM65(UART(2, model=m), max_len=32)
    for k in range(50):
        m.scan("%02d-stale" % k)
    m.scan("half of a li", end=b"")          # cut: its end comes after the flush
    g.flush()
    assert g.poll() is None
    m.scan("ne")                              # ...the end of that line: dropped, not a code
    m.scan("281234567890123456")
    assert g.poll() == "281234567890123456"
    assert g.poll() is None and g.dropped == 1


def test_mask_numbers_ascii_and_fullwidth():
    from firmware.scanner import mask_numbers
    assert mask_numbers("card 6222021234567890 exp 2512") == "card 622202******7890 exp 2512"
    assert mask_numbers("PAN 6222 0212 3456 7890") == "PAN 6222 02** **** 7890"
    assert mask_numbers("北京 6222-0212-3456-7890 收") == "北京 6222-02**-****-7890 收"
    fw = "".join(chr(0xFF10 + int(c)) for c in "6222021234567890")
    assert mask_numbers("x" + fw) == "x" + fw[:6] + "*" * 6 + fw[-4:]
    assert mask_numbers("12345678901") == "12345678901"       # 11 digits: not masked
    assert mask_numbers("1234 5678 9012") == "1234 56** 9012"
    assert mask_numbers("-- 12  34 --") == "-- 12  34 --"
