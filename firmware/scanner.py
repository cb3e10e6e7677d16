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
    return {"kind": "text", "text": mask_numbers(code[:64])}


def mask_numbers(text):
    # Any run of 12+ digits could be a card number or a token: keep 6 + 4, as for PANs.
    out, i, n = [], 0, len(text)
    while i < n:
        j = i
        while j < n and "0" <= text[j] <= "9":
            j += 1
        if j - i >= 12:
            out.append(text[i:i + 6] + "*" * (j - i - 10) + text[j - 4:j])
        elif j > i:
            out.append(text[i:j])
        if j < n:
            out.append(text[j])
        i = j + 1
    return "".join(out)


async def run(scanner):
    # Runs while a sale waits for payment (started and stopped by sale.py).
    while scanner.poll() is not None:
        pass                   # codes scanned before the sale are stale
    while sale.amount is not None:
        await asyncio.sleep_ms(POLL_MS)
        code = scanner.poll()
        if code is None:
            continue
        c = classify(code)
        if c["kind"] == "paycode" and sale.code_read(c):
            continue
        console.event({"scan": c})
