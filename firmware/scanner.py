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


def _digit(c):
    return "0" <= c <= "9" or "\uff10" <= c <= "\uff19"   # ASCII or fullwidth


def mask_numbers(text):
    # Any run of 12+ digits could be a card number or a token: keep 6 + 4, as for PANs. Digits
    # grouped by single spaces or dashes ("4761 7390 0101 0010") count as one run.
    out = list(text)
    n, i = len(text), 0
    while i < n:
        if not _digit(text[i]):
            i += 1
            continue
        pos = [i]                      # positions of the run's digits
        j = i + 1
        while j < n:
            if _digit(text[j]):
                pos.append(j)
            elif text[j] in " -" and j + 1 < n and _digit(text[j + 1]):
                pass
            else:
                break
            j += 1
        if len(pos) >= 12:
            for p in pos[6:-4]:
                out[p] = "*"
        i = j
    return "".join(out)


async def run(scanner):
    # Runs while a sale waits for payment (started and stopped by sale.py).
    while scanner.poll() is not None:
        pass                   # codes scanned before the sale are stale
    while sale.amount is not None:
        await asyncio.sleep_ms(POLL_MS)
        try:
            code = scanner.poll()
            if code is None:
                continue
            c = classify(code)
            if c["kind"] == "paycode" and sale.code_read(c):
                continue
            console.event({"scan": c})
        except Exception as e:  # out of memory, a garbled read: this scan is lost, not the scanner
            console.failed("scanner", e)
