"""Drivers through the console of a vterm: keypad amount entry on the screen,
card taps at idle and in a sale, card pulled away, scanner codes, and
malformed `sim`/`screen` input answered with ERR while the console keeps serving."""
import re

import pytest

pytestmark = pytest.mark.simulation

PANS = {"visa": "476173******0010", "unionpay": "621234*********4569", "flaky": "621234******0012",
        # cards that answer with ISO 7816-4 status words a terminal must follow: '61XX' (GET
        # RESPONSE), '6CXX' (Le again)
        "getresp": "476173******0010", "wrongle": "621234*********4569"}
ERRORS = {"expired": "expired", "mifare": "not_payment", "pulled": "removed", "blocked": "blocked",
          "endless": "read", "noppse": "no_app"}
FULL_PANS = ("4761739001010010", "6212345678901234569", "4761739001010127", "6212345600000012")


def ok(dut, line, timeout=5):
    r = dut.command(line, timeout)
    assert r.ok, "sent %r, got %r" % (line, r.raw)
    return r


def screen(dut):
    return ok(dut, "screen").data


def back_to_idle(dut):
    ok(dut, "sim key A")
    ok(dut, "sim key A")


def test_digits_start_amount_entry_and_screen_shows_it(dut):
    back_to_idle(dut)
    ok(dut, "sim key 1 2 5")
    s = screen(dut)
    assert s["screen"] == "amount" and "1.25" in s["big"], "after keys 1 2 5 the screen was %r" % s
    ok(dut, "sim key B")                    # clear = backspace
    assert "0.12" in screen(dut)["big"]
    ok(dut, "sim key A")                    # cancel
    s = screen(dut)
    assert s["screen"] == "idle" and "ENTER AMOUNT" in s["text"], s


def test_sim_tap_lists_profiles(dut):
    r = ok(dut, "sim tap")
    assert set(PANS) | set(ERRORS) <= set(r["cards"]), r.raw


@pytest.mark.parametrize("name", sorted(PANS))
def test_tap_at_idle_reports_masked_pan(dut, name):
    back_to_idle(dut)
    ok(dut, "sim tap " + name)
    ev = dut.wait_event(lambda e: "card" in e, 5)["card"]
    assert ev.get("pan") == PANS[name], "sim tap %s gave %r" % (name, ev)
    assert re.fullmatch(r"\d{4}", ev["exp"]) and ev["aid"].startswith("a000000"), ev
    s = screen(dut)
    assert s["text"][0] == "CARD" and PANS[name][-4:] in " ".join(s["text"]), s


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_tap_at_idle_reports_clear_error(dut, name):
    back_to_idle(dut)
    ok(dut, "sim tap " + name)
    ev = dut.wait_event(lambda e: "card" in e, 5)["card"]
    assert ev.get("error") == ERRORS[name], "sim tap %s gave %r" % (name, ev)
    assert ev["message"]
    assert ok(dut, "echo alive")["echo"] == "alive"


def test_sale_takes_the_card_read(dut):
    back_to_idle(dut)
    dut.events.clear()
    ok(dut, "sim key 1 2 5 C")
    ev = dut.wait_event(lambda e: "sale" in e, 5)["sale"]
    assert ev == {"amount": 125, "state": "waiting card"}, ev
    s = screen(dut)
    assert s["screen"] == "tap" and "TAP CARD" in s["text"] and "1.25" in s["big"], s
    ok(dut, "sim tap visa")
    ev = dut.wait_event(lambda e: "sale" in e, 5)["sale"]
    assert ev["state"] == "card read" and ev["amount"] == 125, ev
    assert ev["card"]["pan"] == PANS["visa"] and ev["card"]["scheme"] == "visa", ev
    assert "CARD READ" in screen(dut)["text"]


def start_sale(dut, keys):
    """From the idle screen, key an amount and confirm: the sale waits for a card."""
    back_to_idle(dut)
    dut.events.clear()
    ok(dut, "sim key %s C" % keys)
    dut.wait_event(lambda e: e.get("sale", {}).get("state") == "waiting card", 5)


def test_card_pulled_in_a_sale_then_a_good_tap(dut):
    start_sale(dut, "5 0")
    ok(dut, "sim tap pulled")
    ev = dut.wait_event(lambda e: "sale" in e, 5)["sale"]
    assert ev == {"amount": 50, "state": "card error", "error": "removed"}, ev
    s = screen(dut)                       # the customer sees why, and that the sale still waits
    assert s["screen"] == "tap" and "TAP AGAIN" in s["text"] and "REMOVED" in s["text"] and "0.50" in s["big"], s
    ok(dut, "sim tap unionpay")           # the sale still waits: the next tap completes it
    ev = dut.wait_event(lambda e: "sale" in e, 5)["sale"]
    assert ev["state"] == "card read" and ev["card"]["pan"] == PANS["unionpay"], ev


@pytest.mark.parametrize("name", ["getresp", "wrongle"])
def test_a_sale_completes_with_a_card_that_answers_in_status_words(dut, name):
    start_sale(dut, "2 5")
    ok(dut, "sim tap " + name)
    ev = dut.wait_event(lambda e: "sale" in e, 5)["sale"]
    assert ev["state"] == "card read" and ev["amount"] == 25, "sim tap %s gave %r" % (name, ev)
    assert ev["card"]["pan"] == PANS[name], ev
    assert "CARD READ" in screen(dut)["text"]
    ok(dut, "sim remove")


def test_a_card_that_answers_61xx_for_ever_is_an_error_and_the_terminal_goes_on(dut):
    # Each of its answers is '6110' (16 more bytes wait), GET RESPONSE included: the terminal gives
    # up after 16 turns, tells the customer, and the sale waits for another card.
    start_sale(dut, "8 8")
    ok(dut, "sim tap endless")
    ev = dut.wait_event(lambda e: "sale" in e, 5)["sale"]
    assert ev == {"amount": 88, "state": "card error", "error": "read"}, ev
    s = screen(dut)
    assert s["screen"] == "tap" and "TAP AGAIN" in s["text"] and "READ" in s["text"] and "0.88" in s["big"], s
    assert ok(dut, "echo alive")["echo"] == "alive"
    ok(dut, "sim remove")
    ok(dut, "sim tap visa")
    ev = dut.wait_event(lambda e: "sale" in e, 5)["sale"]
    assert ev["state"] == "card read" and ev["amount"] == 88 and ev["card"]["pan"] == PANS["visa"], ev
    ok(dut, "sim remove")
    # At idle the event says what the card did, and the read ended in well under a second.
    back_to_idle(dut)
    dut.events.clear()
    ok(dut, "sim tap endless")
    ev = dut.wait_event(lambda e: "card" in e, 5)["card"]
    assert ev["error"] == "read" and "6110" in ev["message"] and "GET RESPONSE" in ev["message"], ev
    assert ev["ms"] < 1000, ev
    ok(dut, "sim remove")
    assert ok(dut, "status")["version"]


def test_a_blocked_card_is_declined_with_the_reason(dut):
    # SELECT of its application answers '6283' (selected file deactivated: application blocked).
    start_sale(dut, "6")
    ok(dut, "sim tap blocked")
    ev = dut.wait_event(lambda e: "sale" in e, 5)["sale"]
    assert ev == {"amount": 6, "state": "card error", "error": "blocked"}, ev
    s = screen(dut)
    assert s["screen"] == "tap" and "BLOCKED" in s["text"], s
    ok(dut, "sim remove")
    ok(dut, "sim key A")
    assert dut.wait_event(lambda e: "sale" in e, 5)["sale"]["state"] == "cancelled"


def test_a_card_without_a_contactless_directory_is_refused_and_the_sale_waits(dut):
    # '6A82' to SELECT PPSE: a contactless reader selects through the PPSE only (EMV Book B), so no
    # AID is guessed; the customer is asked for another card and the next one completes the sale.
    start_sale(dut, "7")
    ok(dut, "sim tap noppse")
    ev = dut.wait_event(lambda e: "sale" in e, 5)["sale"]
    assert ev == {"amount": 7, "state": "card error", "error": "no_app"}, ev
    assert screen(dut)["screen"] == "tap"
    ok(dut, "sim remove")
    ok(dut, "sim tap visa")
    ev = dut.wait_event(lambda e: "sale" in e, 5)["sale"]
    assert ev["state"] == "card read" and ev["card"]["pan"] == PANS["visa"], ev
    ok(dut, "sim remove")


def test_a_tap_while_typing_the_amount_keeps_the_amount(dut):
    back_to_idle(dut)
    ok(dut, "sim key 1 2")
    ok(dut, "sim tap visa")
    assert dut.wait_event(lambda e: "card" in e, 5)["card"]["pan"] == PANS["visa"]
    s = screen(dut)
    assert s["screen"] == "amount" and "0.12" in s["big"], s
    ok(dut, "sim remove")
    ok(dut, "sim key 3 C")                # the amount goes on where it was
    assert dut.wait_event(lambda e: "sale" in e, 5)["sale"] == {"amount": 123, "state": "waiting card"}
    back_to_idle(dut)


def test_remove_while_card_in_field(dut):
    back_to_idle(dut)
    ok(dut, "sim tap visa")
    dut.wait_event(lambda e: "card" in e, 5)
    assert ok(dut, "sim remove")["removed"] is True
    assert ok(dut, "sim remove")["removed"] is False


def test_cancel_sale_with_key_a(dut):
    start_sale(dut, "7")
    ok(dut, "sim key A")
    ev = dut.wait_event(lambda e: "sale" in e, 5)["sale"]
    assert ev == {"amount": 7, "state": "cancelled"}, ev


def test_payment_code_scan_in_a_sale(dut):
    start_sale(dut, "9 9")
    ok(dut, "sim scan 134567890123456789")
    ev = dut.wait_event(lambda e: "sale" in e, 5)["sale"]
    assert ev["state"] == "code read" and ev["amount"] == 99, ev
    assert ev["paycode"] == {"kind": "paycode", "scheme": "wechat", "code": "134567********6789"}, ev


def test_text_code_scan_in_a_sale_keeps_non_ascii(dut):
    # The code travels to the vterm's scanner as UTF-8 and comes back over its UART.
    start_sale(dut, "4 2")
    assert ok(dut, "sim scan Grüße aus 北京")["scanned"] == 12   # characters
    ev = dut.wait_event(lambda e: "scan" in e, 5)["scan"]
    assert ev == {"kind": "text", "text": "Grüße aus 北京"}, ev
    ok(dut, "sim key A")                     # cancel the sale
    ev = dut.wait_event(lambda e: "sale" in e, 5)["sale"]
    assert ev == {"amount": 42, "state": "cancelled"}, ev


def test_a_broken_card_is_an_error_and_the_reader_keeps_reading(dut):
    back_to_idle(dut)
    dut.events.clear()
    ok(dut, "sim tap badpdol")
    ev = dut.wait_event(lambda e: "card" in e, 5)["card"]
    assert ev["error"] == "data" and "PDOL" in ev["message"], ev
    ok(dut, "sim remove")
    start_sale(dut, "3")
    ok(dut, "sim tap visa")                 # the next card is read as usual
    ev = dut.wait_event(lambda e: "sale" in e, 5)["sale"]
    assert ev["state"] == "card read" and ev["card"]["scheme"] == "visa", ev
    ok(dut, "sim remove")


def test_a_card_number_in_scanned_text_is_masked(dut):
    start_sale(dut, "4 2")
    for scanned, shown in (("card 6222021234567890 exp 2512", "card 622202******7890 exp 2512"),
                           ("PAN 6222 0212 3456 7890", "PAN 6222 02** **** 7890"),
                           ("6222-0212-3456-7890", "6222-02**-****-7890")):
        ok(dut, "sim scan " + scanned)
        ev = dut.wait_event(lambda e: "scan" in e, 5)["scan"]
        assert ev == {"kind": "text", "text": shown}, ev
    ok(dut, "sim key A")
    dut.wait_event(lambda e: "sale" in e, 5)


def test_menu_shows_inverted_selection(dut):
    back_to_idle(dut)
    ok(dut, "sim key D")
    s = screen(dut)
    assert s["screen"] == "menu" and s["inverted"] == [2], s
    ok(dut, "sim key B")
    assert screen(dut)["inverted"] == [3]
    ok(dut, "sim key A")
    assert screen(dut)["screen"] == "idle"


def test_screen_raw_is_the_panel_image(dut):
    r = ok(dut, "screen raw")
    assert r["w"] == 128 and r["h"] == 64 and r["format"] == "MONO_VLSB"
    assert re.fullmatch(r"[0-9a-f]{2048}", r["hex"]), r.raw[:80]
    assert r["hex"] != "0" * 2048        # idle screen has text


@pytest.mark.parametrize("line,code", [
    ("sim key Z", "badarg"), ("sim key", "usage"), ("sim key 12", "badarg"),
    ("sim tap nosuchcard", "nocard"), ("sim cell 460", "usage"), ("sim cell 460 0 1 2", "badarg"),
    ("sim cell abc 00 1 2", "badarg"), ("sim signal loud", "badarg"), ("sim signal -10", "badarg"),
    ("sim link wifi sideways", "badarg"), ("sim link wifi denied", "badarg"), ("sim link", "usage"),
    ("sim bogus", "usage"), ("sim scan", "usage"), ("screen please", "usage"),
    ("bench", "usage"), ("bench card nosuch", "nocard"), ("sim signal", "usage"), ("sim signal -60 -70", "usage"),
])
def test_malformed_input_gets_err_and_console_keeps_serving(dut, line, code):
    r = dut.command(line)
    assert not r.ok and r.code == code, "sent %r, expected ERR %s, got %r" % (line, code, r.raw)
    assert ok(dut, "echo still here")["echo"] == "still here"


def test_a_large_amount_is_shown_whole(dut):
    # 9 digits are allowed (1,234,567.89): the screen must show what will be charged, not the
    # last 8 characters of it.
    back_to_idle(dut)
    ok(dut, "sim key 1 2 3 4 5 6 7 8 9")
    s = screen(dut)
    assert s["screen"] == "amount" and any("1234567.89" in t for t in s["text"] + s["big"]), s
    ok(dut, "sim key C")
    assert dut.wait_event(lambda e: "sale" in e, 5)["sale"]["amount"] == 123456789
    s = screen(dut)
    assert s["screen"] == "tap" and any("1234567.89" in t for t in s["text"] + s["big"]), s
    back_to_idle(dut)


def test_bench_card_leaves_a_waiting_sale_alone(dut):
    back_to_idle(dut)
    ok(dut, "sim key 7 C")
    dut.wait_event(lambda e: e.get("sale", {}).get("state") == "waiting card", 5)
    r = dut.command("bench card visa")
    assert not r.ok and r.code == "busy", r.raw
    assert screen(dut)["screen"] == "tap"          # the sale still waits for its card
    ok(dut, "sim key A")
    dut.wait_event(lambda e: "sale" in e, 5)


def test_signal_menu_without_a_radio_shows_dashes(dut):
    back_to_idle(dut)
    ok(dut, "sim key D B C")                       # MENU, down to SIGNAL, enter
    s = screen(dut)
    assert "-- dBm" in s["text"] and "None" not in " ".join(s["text"]), s
    back_to_idle(dut)


def test_a_tab_separates_the_command_from_its_arguments(dut):
    dut.write(b"echo\thi\r\n")
    assert dut.next_reply().raw == 'OK {"echo": "hi"}'


def test_no_full_pan_ever_on_the_console(dut):
    # Everything this module's vterm printed so far (the log) holds masked PANs only.
    dut.flush_input()
    with open(dut.log.name, "rb") as f:
        text = f.read().decode("utf-8", "replace")
    for pan in FULL_PANS:
        assert pan not in text, "full PAN %s appeared on the console" % pan
    assert "476173******0010" in text


def test_the_console_client_keeps_replies_in_step(dut):
    # A command whose wait timed out still gets its reply later: it must not be taken for the
    # next command's (every later reply would be off by one).
    from roampos.console_client import ExpectTimeout
    back_to_idle(dut)
    try:
        dut.command("echo first", timeout=0)
    except ExpectTimeout:
        pass
    assert ok(dut, "echo second")["echo"] == "second"
    # Waiting for an event leaves the replies that came meanwhile for next_reply().
    dut.send("echo before")
    dut.send("sim tap visa")
    assert dut.wait_event(lambda e: "card" in e, 5)["card"]["pan"] == PANS["visa"]
    assert dut.next_reply().data == {"echo": "before"}
    assert dut.next_reply().ok
    ok(dut, "sim remove")


def test_a_slow_card_is_read_in_a_sale(dut):
    # The card of the "slow" profile asks, in its ATS, a guard time and a long frame wait (FWI 13:
    # its GPO takes 2 s of 2.47 s, simulated): the reader waits as long as the card may take.
    back_to_idle(dut)
    start_sale(dut, "7")
    ok(dut, "sim tap slow")
    ev = dut.wait_event(lambda e: "sale" in e, 5)["sale"]
    assert ev["state"] == "card read" and ev["card"]["pan"] == "476173******0010", ev
    ok(dut, "sim remove")


def test_a_card_number_cut_by_the_text_limit_stays_masked(dut):
    # Scanned text is shown up to 64 characters: a card number across that limit must be masked
    # as a whole (6 + 4), not cut first to 11 digits that no rule masks any more.
    start_sale(dut, "4 2")
    ok(dut, "sim scan " + "x" * 53 + "6222021234567890")
    ev = dut.wait_event(lambda e: "scan" in e, 5)["scan"]
    assert ev == {"kind": "text", "text": "x" * 53 + "622202*****"}, ev
    ok(dut, "sim key A")
    dut.wait_event(lambda e: "sale" in e, 5)


def test_text_scans_of_new_characters_do_not_grow_the_heap(dut):
    # QR text in Chinese: each scan brings characters the terminal has not seen yet. Masking the
    # text must not keep anything of it (a one-character string per character, interned for good).
    def heap():
        return ok(dut, "status").data["heap_used"]

    start_sale(dut, "4 2")

    def scan(k):
        text = "".join(chr(0x5000 + 64 * k + i) for i in range(64))
        ok(dut, "sim scan " + text)
        ev = dut.wait_event(lambda e: "scan" in e, 5)["scan"]
        assert ev == {"kind": "text", "text": text}, ev

    scan(0)
    before = heap()
    for k in range(1, 25):
        scan(k)
    grown = heap() - before
    ok(dut, "sim key A")
    dut.wait_event(lambda e: "sale" in e, 5)
    assert grown < 1024, "24 text scans kept %d B of heap" % grown


def test_an_unreadable_code_in_a_sale_is_reported(dut):
    # A code the scanner driver drops (longer than its 512-byte line: 200 Chinese characters are
    # 600 bytes of UTF-8) is told, as anything else scanned in a sale is; the sale goes on.
    start_sale(dut, "4 2")
    ok(dut, "sim scan " + "收" * 200)
    ev = dut.wait_event(lambda e: "scan" in e, 5)["scan"]
    assert ev == {"kind": "unreadable"}, ev
    ok(dut, "sim scan 134567890123456789")       # the next code still completes the sale
    ev = dut.wait_event(lambda e: "sale" in e, 5)["sale"]
    assert ev["state"] == "code read" and ev["amount"] == 42, ev


def test_codes_scanned_at_idle_do_not_choke_the_next_sale(vterm_factory):
    # At idle the scanner is not read: what it sends waits in the UART. The sale that follows drops
    # it as stale without decoding it all at once (out of memory in a 64K heap: a traceback on the
    # console and the scanner task gone, so the customer's payment code was never read).
    d = vterm_factory(heap="64K")
    d.wait_ready(15)
    d.flush_input()
    start = d.log.tell()            # the log is appended to: this run's part only
    for k in range(60):
        ok(d, "sim scan %02d%s" % (k, "x" * 498))
    d.events.clear()
    ok(d, "sim key 1 2 C")
    d.wait_event(lambda e: e.get("sale", {}).get("state") == "waiting card", 5)
    ok(d, "sim scan 134567890123456789")
    ev = d.wait_event(lambda e: "sale" in e, 5)["sale"]
    assert ev["state"] == "code read" and ev["paycode"]["scheme"] == "wechat", ev
    assert not [e for e in d.events if "scan" in e or "scanner" in e], d.events   # stale: dropped
    ok(d, "echo alive")
    d.flush_input()
    with open(d.log.name, "rb") as f:
        f.seek(start)
        text = f.read().decode("utf-8", "replace")
    assert "Traceback" not in text and "Task exception" not in text, text[-600:]
