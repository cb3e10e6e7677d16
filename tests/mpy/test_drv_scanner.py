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
