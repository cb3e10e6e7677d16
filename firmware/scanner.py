# Code scanner task: classifies what the scanner reads (customer payment
# codes by their published prefixes and lengths, EMVCo merchant QR, other
# QR text) and hands payment codes to the sale or reports them.
import asyncio

from firmware import console, sale

POLL_MS = 50


def classify(code):
    # Payment codes are bearer tokens: shown masked like PANs (6 + 4).
    if code.isdigit():
        n, p2 = len(code), int(code[:2])
        scheme = None
        if n == 18 and 10 <= p2 <= 15:
            scheme = "wechat"
        elif 16 <= n <= 24 and 25 <= p2 <= 30:
            scheme = "alipay"
        elif code.startswith("62") and 16 <= n <= 19:
            scheme = "unionpay"
        if scheme:
            return {"kind": "paycode", "scheme": scheme,
                    "code": code[:6] + "*" * (n - 10) + code[-4:]}
    if code.startswith("000201"):
        return {"kind": "emvqr", "len": len(code)}
    # Masked whole, then cut: a card number across the cut is still masked 6 + 4.
    return {"kind": "text", "text": mask_numbers(code)[:64]}


def _digit(b, i, n):
    # Bytes of the digit at b[i]: 1 (ASCII), 3 (fullwidth U+FF10..FF19 in UTF-8), else 0.
    c = b[i]
    if 48 <= c <= 57:
        return 1
    if c == 0xEF and i + 2 < n and b[i + 1] == 0xBC and 0x90 <= b[i + 2] <= 0x99:
        return 3
    return 0


def mask_numbers(text):
    # Any run of 12+ digits could be a card number or a token: keep 6 + 4, as for PANs. Digits
    # grouped by single spaces or dashes ("4761 7390 0101 0010") count as one run.
    # On the UTF-8 bytes: a str indexed or iterated gives one-character strings, which this port
    # interns for good, so text in Chinese would keep a little heap at every scan.
    b = text.encode()
    n, i = len(b), 0
    out = bytearray()
    while i < n:
        if not _digit(b, i, n):
            out.append(b[i])
            i += 1
            continue
        j, k = i, 0                    # the run ends at j and holds k digits
        while j < n:
            w = _digit(b, j, n)
            if w:
                k += 1
                j += w
            elif (b[j] == 32 or b[j] == 45) and j + 1 < n and _digit(b, j + 1, n):
                j += 1
            else:
                break
        d = 0
        while i < j:
            w = _digit(b, i, n)
            if w:
                d += 1
            if w and k >= 12 and 6 < d <= k - 4:
                out.append(42)         # "*"
                i += w
            else:
                out.append(b[i])
                i += 1
    return str(out, "utf-8")


async def run(scanner):
    # Runs while a sale waits for payment (started and stopped by sale.py).
    try:
        scanner.flush()        # codes scanned before the sale are stale
    except Exception as e:     # out of memory: the sale still reads the codes to come
        console.failed("scanner", e)
    dropped = scanner.dropped
    while sale.amount is not None:
        await asyncio.sleep_ms(POLL_MS)
        try:
            code = scanner.poll()
            if scanner.dropped != dropped:   # too long or not text: the cashier scans again
                dropped = scanner.dropped
                console.event({"scan": {"kind": "unreadable"}})
            if code is None:
                continue
            c = classify(code)
            if c["kind"] == "paycode" and sale.code_read(c):
                continue
            console.event({"scan": c})
        except Exception as e:  # out of memory, a garbled read: this scan is lost, not the scanner
            console.failed("scanner", e)
