# MFRC522 driver, ISO 14443-3/-4 and the EMV card read, against the
# register-level model with cards in the field (vhw.nfc, vhw.cards).
import time

from vhw.bus import SPI, Pin
from vhw.nfc import MFRC522Model, crc_a
from vhw.cards import Card, PROFILES, tlv
from drivers.mfrc522 import MFRC522, INIT
from drivers.mfrc522_poll import MFRC522Poll
from drivers.iso14443 import T4, parse_ats
from drivers.nfcerr import FrameError, CardRemoved
from drivers import iso14443a
from firmware import emv


class Tap:
    # SPI device that records every byte the driver clocks out, per CS frame.
    def __init__(self, dev):
        self.dev = dev
        self.frames = []

    def begin(self):
        self.frames.append(bytearray())
        self.dev.begin()

    def xfer(self, b):
        self.frames[-1].append(b)
        return self.dev.xfer(b)

    def end(self):
        self.dev.end()


def bus():
    # The reader model on an SPI bus, seen through a Tap: (spi, cs, model, tap).
    spi = SPI(1)
    cs = Pin("cs", Pin.OUT, value=1)
    model = MFRC522Model()
    tap = Tap(model)
    spi.attach(cs, tap)
    return spi, cs, model, tap


def rig(card=None):
    spi, cs, model, tap = bus()
    rd = MFRC522(spi, cs)
    rd.init()
    if card:
        model.card = Card(card)
    return rd, model, tap


def test_crc_a_vectors():
    # ISO/IEC 14443-3 Annex B worked examples: 00 00 -> A0 1E, 12 34 -> 26 CF
    # (transmitted LSB first); HLTA is 50 00 57 CD on air.
    assert crc_a(b"\x00\x00") == b"\xa0\x1e", crc_a(b"\x00\x00")
    assert crc_a(b"\x12\x34") == b"\x26\xcf", crc_a(b"\x12\x34")
    assert crc_a(b"\x50\x00") == b"\x57\xcd"


def test_init_bus_traffic_datasheet_8_1_2():
    # §8.1.2.3 write = (reg<<1)&7E then value; §8.1.2.2 read = 80|(reg<<1).
    spi = SPI(1)
    cs = Pin("cs", Pin.OUT, value=1)
    tap = Tap(MFRC522Model())
    spi.attach(cs, tap)
    rd = MFRC522(spi, cs)
    assert rd.init() == 0x92
    fr = [bytes(f) for f in tap.frames]
    assert fr[0] == b"\x02\x0f", fr[0]          # CommandReg <- SoftReset
    # PowerDown polled until clear (§8.8.2): reads of CommandReg 0x82
    i = 1
    while fr[i] == b"\x82\x00":
        i += 1
    assert i >= 2
    want = [bytes(((INIT[k] << 1) & 0x7E, INIT[k + 1])) for k in range(0, len(INIT), 2)]
    assert fr[i:i + len(want)] == want, fr[i:i + len(want)]
    assert fr[i] == b"\x54\x80" and fr[i + 5] == b"\x22\x3d" and fr[i + 6] == b"\x28\x83"
    assert fr[-1] == b"\xee\x00"                 # VersionReg read (37h)


def test_reqa_is_7_bit_short_frame():
    rd, model, tap = rig("visa")
    model.log = []
    atqa = rd.request()
    assert atqa == 0x0004, atqa
    assert model.log[0][0] == b"\x26", model.log       # REQA on air, no CRC
    fr = [bytes(f) for f in tap.frames]
    assert b"\x1a\x87" in fr, fr                      # BitFramingReg <- StartSend | 7 bits
    assert b"\x12\x26" in fr                          # FIFO <- 26


def test_idle_poll_finds_a_card_then_the_full_driver_reads_it():
    # The idle part alone (drivers.mfrc522_poll): REQA with CRC off, ATQA
    # back; then driver() continues from that ATQA (the card is READY).
    spi, cs, model, tap = bus()
    idle = MFRC522Poll(spi, cs)
    assert idle.init() == 0x92
    assert idle.poll() is None                        # empty field: the timer ran out
    model.card = Card("unionpay")
    model.log = []
    assert idle.poll() == 0x0044, model.log
    assert model.log[0][0] == b"\x26", model.log      # REQA on air, no CRC
    fr = [bytes(f) for f in tap.frames]
    assert b"\x1a\x87" in fr and b"\x12\x26" in fr, fr
    rd = idle.driver()
    uid, sak, _ = iso14443a.activate(rd, atqa=0x0044)
    assert uid == bytes.fromhex("0488776655443f") and sak == 0x20, uid
    model.card = Card("visa")                         # the driver set CRC on: poll resets it
    assert idle.poll() == 0x0004, model.log[-1]


def test_idle_poll_counts_a_damaged_answer_as_no_card():
    rd, model, _ = rig("visa")
    model.faults = ["short"]                          # a 1-byte ATQA
    assert MFRC522Poll.poll(rd) is None
    model.card = Card("visa")
    model.faults = ["parity"]                         # an error bit: something answered
    assert MFRC522Poll.poll(rd) == 0xFFFF


def test_activate_4_and_7_byte_uids():
    rd, model, tap = rig("visa")
    model.log = []
    uid, sak, atqa = iso14443a.activate(rd)
    assert uid == bytes.fromhex("04a1b2c3") and sak == 0x20 and atqa == 0x0004
    # anticollision 93 20, select 93 70 uid bcc + CRC_A (ISO 14443-3 §6.4.3)
    sent = [d for d, _ in model.log]
    assert sent[1] == b"\x93\x20", sent
    sel = b"\x93\x70" + bytes.fromhex("04a1b2c3") + bytes((0x04 ^ 0xa1 ^ 0xb2 ^ 0xc3,))
    assert sent[2] == sel + crc_a(sel), sent[2]
    model.card = Card("unionpay")
    uid, sak, atqa = iso14443a.activate(rd)
    assert uid == bytes.fromhex("0488776655443f"), uid
    assert atqa == 0x0044 and sak == 0x20
    model.card = Card("mifare")
    uid, sak, _ = iso14443a.activate(rd)
    assert sak == 0x08 and not iso14443a.is_iso14443_4(sak)


def test_no_card_and_halt():
    rd, model, tap = rig()
    assert rd.request() is None
    model.card = Card("visa")
    assert iso14443a.activate(rd) is not None
    assert iso14443a.halt(rd)
    assert rd.request() is None          # halted: REQA is ignored
    assert rd.request(wake=True) == 0x0004  # WUPA wakes it


def test_bad_bcc_and_crc_are_typed_errors():
    rd, model, _ = rig("visa")
    model.faults = ["ok", "garbage"]  # ATQA fine, anticollision answer damaged
    try:
        iso14443a.activate(rd)
    except FrameError as e:
        assert "anticollision" in str(e) or "BCC" in str(e), e
    else:
        raise AssertionError("no FrameError")
    model.card = Card("visa")
    model.faults = ["ok", "ok", "crc"]  # SAK with a bad CRC_A
    try:
        iso14443a.activate(rd)
    except FrameError as e:
        assert "CRC" in str(e), e
    else:
        raise AssertionError("no CRC error")


def t4_for(rd, model, name):
    model.card = Card(name)
    iso14443a.activate(rd)
    return T4(rd, iso14443a.rats(rd))


def test_rats_and_ats_parsing():
    rd, model, _ = rig("visa")
    iso14443a.activate(rd)
    ats = iso14443a.rats(rd)
    assert ats == bytes.fromhex("0575007002"), ats
    assert parse_ats(ats) == (64, 7, 0)
    assert parse_ats(b"\x01") == (32, 4, 0)  # defaults, ISO 14443-4 §5.2.3/§5.2.5
    assert parse_ats(bytes.fromhex("057500d602")) == (64, 13, 6)        # TB: FWI 13, SFGI 6
    assert parse_ats(bytes.fromhex("0565d602")) == (64, 13, 6)          # TB without TA
    assert parse_ats(bytes.fromhex("057500ff02")) == (64, 4, 0)         # 15 is RFU: defaults
    assert parse_ats(bytes.fromhex("0555d602")) == (64, 4, 0)           # no TB: TC is not TB


def test_apdu_with_chaining_both_ways():
    rd, model, _ = rig()
    t4 = t4_for(rd, model, "visa")
    model.log = []
    r = t4.transceive(b"\x00\xa4\x04\x00\x07\xa0\x00\x00\x00\x03\x10\x10\x00")
    assert r[-2:] == b"\x90\x00" and r[0] == 0x6f, r
    r = t4.transceive(b"\x80\xa8\x00\x00\x12\x83\x10" + bytes(16) + b"\x00")
    assert r[-2:] == b"\x90\x00", r
    model.log = []
    r = t4.transceive(b"\x00\xb2\x02\x0c\x00")    # record 2 is longer than FSD
    assert r[0] == 0x70 and r[-2:] == b"\x90\x00" and len(r) > 64, len(r)
    pcbs = [d[0] for d, _ in model.log]
    assert pcbs[1] & 0xF6 == 0xA2, pcbs            # R(ACK) asked for the next block
    # A command longer than FSC-3 goes out in chained I-blocks.
    model.log = []
    r = t4.transceive(b"\x00\xa4\x04\x00\x50" + bytes(80) + b"\x00")
    assert r == b"\x6a\x82", r
    assert model.log[0][0][0] & 0x10, model.log[0]  # chaining bit on the first block


def test_wtx_and_nak_recovery():
    rd, model, _ = rig()
    t4 = t4_for(rd, model, "unionpay")  # asks for WTX twice on GPO
    t4.transceive(b"\x00\xa4\x04\x00\x07\xa0\x00\x00\x03\x33\x01\x01\x00")
    model.log = []
    r = t4.transceive(b"\x80\xa8\x00\x00\x12\x83\x10" + bytes(16) + b"\x00")
    assert r[-2:] == b"\x90\x00", r
    assert [d[0] for d, _ in model.log].count(0xF2) == 2, model.log
    model.faults = ["crc"]              # one damaged answer: R(NAK), then good
    r = t4.transceive(b"\x00\xb2\x01\x0c\x00")
    assert r[-2:] == b"\x90\x00"
    assert t4.retries == 1
    model.faults = ["short"]
    r = t4.transceive(b"\x00\xb2\x01\x0c\x00")
    assert r[-2:] == b"\x90\x00"


def test_card_removed_mid_exchange_is_bounded():
    rd, model, _ = rig()
    t4 = t4_for(rd, model, "visa")
    model.card = None                   # pulled away
    t0 = time.ticks_ms()
    try:
        t4.transceive(b"\x00\xb2\x01\x0c\x00")
    except CardRemoved:
        pass
    else:
        raise AssertionError("no CardRemoved")
    dt = time.ticks_diff(time.ticks_ms(), t0)
    assert dt < 500, dt


def test_persistent_damage_raises_not_hangs():
    rd, model, _ = rig()
    t4 = t4_for(rd, model, "visa")
    model.faults = ["crc"] * 5
    try:
        t4.transceive(b"\x00\xb2\x01\x0c\x00")
    except FrameError:
        pass
    else:
        raise AssertionError("no FrameError")


def test_emv_read_profiles():
    rd, model, _ = rig()
    model.card = Card("visa")
    c = emv.read(rd, iso14443a.activate(rd), 125, 156, today="261127")
    assert c.public()["pan"] == "476173******0010", c.public()
    assert c.pan == "4761739001010010" and c.scheme == "visa" and c.exp == "281231"
    model.card = Card("unionpay")
    c = emv.read(rd, iso14443a.activate(rd), 125, 156, today="261127")
    assert c.public()["pan"] == "621234*********4569" and c.scheme == "unionpay", c.public()
    for name, code in (("expired", "expired"), ("pulled", "removed"), ("mifare", "not_payment")):
        model.card = Card(name)
        try:
            emv.read(rd, iso14443a.activate(rd), 1, 156, today="261127")
        except emv.CardError as e:
            assert e.code == code, (name, e.code, e.message)
            assert "4761739001010127" not in e.message
        else:
            raise AssertionError("%s read without error" % name)
    model.card = Card("flaky")
    assert emv.read(rd, iso14443a.activate(rd), 1, 156, today="261127").scheme == "unionpay"


def test_tlv_errors_are_typed():
    for bad in (b"\x5a\x08\x47", b"\x9f", b"\x5a", b"\x5a\x83\x00\x00\x01"):
        try:
            emv.tlv_find(bad, 0x5A)
        except emv.CardError as e:
            assert e.code == "data"
        else:
            raise AssertionError("accepted %s" % bad.hex())
    assert bytes(emv.tlv_find(bytes.fromhex("700a5a0847617390010100109000")[:12], 0x5A)) \
        == bytes.fromhex("4761739001010010")


def _hostile(mutate):
    # The visa profile with parts of its answers replaced; GPO accepts whatever PDOL data comes.
    rd, model, _ = rig()
    c = Card("visa")
    c.app = mutate(*c.app)
    real = c.apdu

    def apdu(cmd):
        return c.app[2] + b"\x90\x00" if cmd[:2] == b"\x80\xa8" else real(cmd)
    c.apdu = apdu
    model.card = c
    return emv.read(rd, iso14443a.activate(rd), 125, 156, today="261127")


_AID = bytes.fromhex("a0000000031010")


def _fci(pdol_hex, label=b"VISA"):
    return tlv("6f", tlv("84", _AID) + tlv("a5", tlv("50", label) + tlv("87", b"\x01")
                                          + tlv("9f38", bytes.fromhex(pdol_hex))))


def _rec(pan_hex, exp_hex="281231"):
    return {0x0C01: tlv("70", tlv("5a", bytes.fromhex(pan_hex)) + tlv("5f24", bytes.fromhex(exp_hex)))}


_GPO1 = tlv("77", tlv("82", b"\x20\x00") + tlv("94", b"\x08\x01\x01\x00"))


def test_hostile_card_data_is_a_card_error_not_a_crash():
    cases = (
        ("truncated PDOL", lambda p, f, g, r: (p, _fci("9f66049f02"), g, r)),
        ("PDOL tag without length", lambda p, f, g, r: (p, _fci("9f66049f"), g, r)),
        ("PDOL asking 510 bytes", lambda p, f, g, r: (p, _fci("9f37ff9f37ff"), g, r)),
        ("PAN fails Luhn", lambda p, f, g, r: (p, f, _GPO1, _rec("4761739001010011"))),
        ("PAN of 1 digit", lambda p, f, g, r: (p, f, _GPO1, _rec("4f"))),
        ("PAN of 30 digits", lambda p, f, g, r: (p, f, _GPO1, _rec("476173900101001047617390010100"))),
        ("expiry not BCD", lambda p, f, g, r: (p, f, _GPO1, _rec("4761739001010010", "ffffff"))),
        ("expiry month 13", lambda p, f, g, r: (p, f, _GPO1, _rec("4761739001010010", "291399"))),
        ("AFL first record 0", lambda p, f, g, r: (p, f, tlv("77", tlv("94", b"\x08\x00\x00\x00")), r)),
    )
    for name, mutate in cases:
        try:
            _hostile(mutate)
        except emv.CardError as e:
            assert e.code == "data", (name, e.code, e.message)
            assert "4761739001010010" not in e.message, (name, e.message)
        else:
            raise AssertionError("%s: read without error" % name)


def test_a_label_that_is_not_text_is_shown_safely():
    c = _hostile(lambda p, f, g, r: (p, _fci("9f6604", b"\xff\xfeAB\x1b"), g, r))
    assert c.label == "??AB?" and c.pan == "4761739001010010", c.label


def test_a_card_listing_thousands_of_records_is_refused_quickly():
    # 60 AFL entries of records 1..255 (15,300 READ RECORDs) answered by a card that has them all.
    rd, model, _ = rig()
    c = Card("visa")
    many = tlv("77", tlv("82", b"\x20\x00") + tlv("94", b"\x08\x01\xff\x00" * 60))
    real = c.apdu

    def apdu(cmd):
        if cmd[:2] == b"\x80\xa8":
            return many + b"\x90\x00"
        if cmd[:2] == b"\x00\xb2":
            return tlv("70", tlv("9f4a", b"\x82")) + b"\x90\x00"
        return real(cmd)
    c.apdu = apdu
    model.card = c
    reads = []

    def counted(cmd):
        if cmd[:2] == b"\x00\xb2":
            reads.append(cmd[2])
        return apdu(cmd)
    c.apdu = counted
    try:
        emv.read(rd, iso14443a.activate(rd), 125, 156, today="261127")
    except emv.CardError as e:
        assert e.code == "data" and "records" in e.message, e.message
    else:
        raise AssertionError("read without error")
    assert len(reads) == 32, len(reads)   # stopped at the cap, not after 15,300


def test_damaged_record_answers_never_put_card_data_in_the_error():
    # RF noise at the edge of the field: the READ RECORD answer and both repeats arrive with a
    # bad CRC_A. The read fails, and its error (which becomes the console's card error event)
    # names the check and the length only: the damaged frame still holds the PAN and track 2.
    rd, model, _ = rig("visa")
    card = model.card
    pan = PROFILES["visa"].split()[2]
    answer = card.apdu

    def apdu(cmd):
        if cmd[:2] == b"\x00\xb2":   # READ RECORD
            model.faults = ["crc"] * 3
        return answer(cmd)
    card.apdu = apdu
    try:
        emv.read(rd, iso14443a.activate(rd), 125, 156, today="261127")
    except emv.CardError as e:
        text = str(e)
        assert "CRC_A" in text and "bytes" in text, text
        assert pan not in text and pan[-8:] not in text and pan[:8] not in text, text
    else:
        raise AssertionError("the damaged record was accepted")


def test_pdol_numbers_fill_exactly_the_length_the_card_asks():
    # EMV Book 3 §4.3/§5.4: format n is BCD, right-aligned, padded with leading zero digits or cut
    # on the left, in exactly the length the PDOL gives (a GPO of the wrong length is refused).
    def data(pdol_hex, amount=125, currency=156):
        return bytes(emv._pdol_data(bytes.fromhex(pdol_hex), amount, currency)).hex()
    assert data("9f0206") == "000000000125"
    assert data("9f0207") == "00000000000125"                  # longer: zero digits in front
    assert data("9f0204", 123456789) == "23456789"             # shorter: the left digits go
    assert data("9f0200") == ""                                # none asked, none sent
    assert data("5f2a02") == "0156" and data("5f2a03") == "000156" and data("5f2a01") == "56"
    assert data("9f66049f02065f2a02", 99) == "36000000" + "000000000099" + "0156"
    assert data("9f0206", 999999999999) == "999999999999"


def test_unpredictable_numbers_are_not_a_clock():
    # 9F37 feeds the card's cryptogram: it must not be guessable from the last one (a clock's low
    # bytes differ by a few counts between reads).
    uns = [bytes(emv._pdol_data(b"\x9f\x37\x04", 1, 156)) for _ in range(8)]
    assert all(len(u) == 4 for u in uns)
    assert len(set(uns)) == 8, uns
    if hasattr(__import__("os"), "urandom"):
        vals = sorted(int.from_bytes(u, "little") for u in uns)
        assert vals[-1] - vals[0] > 1 << 20, [hex(v) for v in vals]   # not clustered like ticks


def test_afl_entries_the_standard_forbids_are_refused():
    # Book 3 §10.2: SFI 0 (the current file) and 31 are not record files, and the count of records
    # for offline data authentication cannot exceed the records listed.
    for name, afl in (("SFI 0", b"\x00\x01\x01\x00"), ("SFI 31", b"\xf8\x01\x01\x00"),
                      ("ODA count 2 of 1 record", b"\x08\x01\x01\x02")):
        try:
            _hostile(lambda p, f, g, r: (p, f, tlv("77", tlv("94", afl)), r))
        except emv.CardError as e:
            assert e.code == "data", (name, e.code, e.message)
        else:
            raise AssertionError("%s: read without error" % name)


def test_a_slow_card_is_given_the_times_its_ats_asks_for():
    # The "slow" card answers RATS in 5.2 ms (EMV's activation frame wait is 71680/fc = 5286 us),
    # hears nothing during the guard time its ATS asks (SFGI 6: 19.3 ms), and takes 2 s of its
    # FWI 13 frame wait (2474 ms) to answer GPO: beyond what 25 us timer ticks can count (1638 ms).
    rd, model, _ = rig("slow")
    model.timers, model.log = [], []
    c = emv.read(rd, iso14443a.activate(rd), 125, 156, today="261127")
    assert c.scheme == "visa" and c.pan == "4761739001010010"
    sent = [d for d, _ in model.log]
    rats = [i for i, d in enumerate(sent) if d[0] == 0xE0]
    assert rats and model.timers[rats[0]] >= 5286, model.timers[rats[0]]
    # Nothing had to be asked again: no R(NAK) (a timeout or a block lost in the guard time).
    assert not [d for d in sent if d[0] & 0xF6 == 0xB2], [bytes(d).hex() for d in sent]
    assert max(model.timers) >= 2474000, max(model.timers)
    # And the timer goes back to its fine ticks for the next short frames (the prescaler is
    # switched, not left coarse).
    rd.request(True)
    assert model.timers[-1] < 20000, model.timers[-4:]


def _logged(name):
    # A card of profile `name` in the field, with every command APDU it receives recorded.
    rd, model, _ = rig(name)
    card = model.card
    sent = []
    real = card.respond

    def respond(c):
        sent.append(bytes(c))
        return real(c)
    card.respond = respond
    return rd, card, sent


def _read_error(rd, code):
    try:
        emv.read(rd, iso14443a.activate(rd), 125, 156, today="261127")
    except emv.CardError as e:
        assert e.code == code, (e.code, e.message)
        assert "4761739001010010" not in e.message and "6212345678901234569" not in e.message, e.message
        return e.message
    raise AssertionError("read without error")


def test_61xx_answers_are_fetched_with_get_response_and_joined():
    # ISO/IEC 7816-4:2005 §5.1.3 '61XX' then §7.6.1 GET RESPONSE 00 C0 00 00 Le=XX, as often as the
    # card says: the "getresp" card gives at most 48 bytes at a time, so its records take several.
    rd, card, sent = _logged("getresp")
    c = emv.read(rd, iso14443a.activate(rd), 125, 156, today="261127")
    assert c.pan == "4761739001010010" and c.exp == "281231" and c.label == "VISA CREDIT", c.public()
    gets = [s for s in sent if s[:4] == b"\x00\xc0\x00\x00"]
    assert all(len(s) == 5 and 1 <= s[4] <= 48 for s in gets), [s.hex() for s in gets]
    # Every GET RESPONSE asked exactly what the card's '61XX' announced.
    assert gets[0] == b"\x00\xc0\x00\x00\x30", gets[0].hex()
    rr = [i for i, s in enumerate(sent) if s[:2] == b"\x00\xb2"]
    assert len(rr) == 2, [s.hex() for s in sent]
    # Record 2 (80 bytes of template) came in two GET RESPONSEs after its READ RECORD.
    assert sent[rr[1] + 1][:4] == b"\x00\xc0\x00\x00" and sent[rr[1] + 2][:4] == b"\x00\xc0\x00\x00", \
        [s.hex() for s in sent[rr[1]:]]
    assert len(sent) > 2 * 5, len(sent)


def test_6cxx_answers_send_the_command_again_with_the_exact_le():
    rd, card, sent = _logged("wrongle")
    c = emv.read(rd, iso14443a.activate(rd), 125, 156, today="261127")
    assert c.pan == "6212345678901234569" and c.scheme == "unionpay", c.public()
    # Each command went twice: Le 00 first, then the same bytes with the Le the card gave.
    assert len(sent) == 10, [s.hex() for s in sent]
    for first, again in zip(sent[::2], sent[1::2]):
        assert first[-1] == 0 and again[:-1] == first[:-1] and again[-1] != 0, (first.hex(), again.hex())
    ans = card.apdu(sent[-1])
    assert len(ans) - 2 == sent[-1][-1], (len(ans), sent[-1].hex())


def test_a_card_answering_61xx_for_ever_is_a_read_error_quickly():
    rd, card, sent = _logged("endless")
    t0 = time.ticks_ms()
    msg = _read_error(rd, "read")
    assert "SELECT PPSE" in msg and "6110" in msg, msg
    # The first SELECT and 16 GET RESPONSEs, then the terminal gave up.
    assert len(sent) == 17 and sent[1:] == [b"\x00\xc0\x00\x00\x10"] * 16, [s.hex() for s in sent]
    assert time.ticks_diff(time.ticks_ms(), t0) < 2000
    # The reader and the card protocol are intact: the next card reads.
    model_card = Card("visa")
    rd2, model, _ = rig()
    model.card = model_card
    assert emv.read(rd2, iso14443a.activate(rd2), 1, 156, today="261127").scheme == "visa"


def test_a_card_giving_data_with_61xx_for_ever_stops_at_256_bytes():
    rd, card, sent = _logged("visa")
    real = card.respond

    def respond(c):
        if c[:2] == b"\x00\xc0":
            sent.append(bytes(c))
            return bytes(range(32)) + b"\x61\x20"
        return real(c) if c[:2] != b"\x80\xa8" else b"\x61\x20"
    card.respond = respond
    msg = _read_error(rd, "read")
    assert "GPO" in msg and "256" in msg, msg
    # 8 answers of 32 bytes fill the 256 a response may hold; the 9th is one too many.
    assert len([s for s in sent if s[:2] == b"\x00\xc0"]) == 9, [s.hex() for s in sent]


def test_a_card_whose_le_never_fits_is_a_read_error():
    rd, card, sent = _logged("visa")
    real = card.respond

    def respond(c):
        if c[:2] == b"\x00\xb2":
            sent.append(bytes(c))
            return bytes((0x6C, (c[-1] + 1) & 0xFF))    # always one more than asked
        return real(c)
    card.respond = respond
    msg = _read_error(rd, "read")
    assert "READ RECORD" in msg, msg
    assert len([s for s in sent if s[:2] == b"\x00\xb2"]) == 17, len(sent)


def test_a_blocked_application_is_declined_as_blocked():
    # EMV 4.3 Book 1 §12.4: '6283' (ISO/IEC 7816-4 selected file deactivated) to SELECT AID.
    rd, card, sent = _logged("blocked")
    msg = _read_error(rd, "blocked")
    assert msg == "last SELECT AID 6283 (of 1): application blocked", msg
    assert not [s for s in sent if s[:2] == b"\x80\xa8"], "GPO sent to a blocked application"


def test_the_next_candidate_is_tried_when_the_first_is_blocked():
    # The PPSE lists Mastercard first (priority 1), which answers '6283'; Visa (priority 2) is read.
    rd, model, _ = rig("visa")
    card = model.card
    mc = bytes.fromhex("a0000000041010")
    ppse, fci, gpo, recs = card.app
    card.app = (tlv("6f", tlv("84", b"2PAY.SYS.DDF01") + tlv("a5", tlv("bf0c", tlv(
        "61", tlv("4f", _AID) + tlv("87", b"\x02")) + tlv("61", tlv("4f", mc) + tlv("87", b"\x01"))))),
        fci, gpo, recs)
    real = card.apdu
    sel = []

    def apdu(c):
        if c[1] == 0xA4:
            sel.append(bytes(c[5:5 + c[4]]))
        return b"\x62\x83" if c[1] == 0xA4 and c[5:5 + c[4]] == mc else real(c)
    card.apdu = apdu
    c = emv.read(rd, iso14443a.activate(rd), 125, 156, today="261127")
    assert c.scheme == "visa" and c.aid == "a0000000031010", c.public()
    assert sel == [b"2PAY.SYS.DDF01", mc, _AID], sel


def test_no_ppse_is_no_app_and_no_aid_is_tried():
    # '6A82' to SELECT PPSE: a contactless reader selects through the PPSE only (EMV Contactless
    # Book B); the list of AIDs (EMV 4.3 Book 1 §12.3.3) is the contact interface's.
    rd, card, sent = _logged("noppse")
    msg = _read_error(rd, "no_app")
    assert msg == "SELECT PPSE answered 6a82: no contactless directory", msg
    assert [s[5:5 + s[4]] for s in sent if s[1] == 0xA4] == [b"2PAY.SYS.DDF01"], [s.hex() for s in sent]


def test_a_blocked_card_ends_the_selection():
    # EMV 4.3 Book 1 §12.3.2: '6A81' to SELECT PPSE, the card is blocked: no AID is tried.
    rd, card, sent = _logged("visa")
    real = card.apdu
    card.apdu = lambda c: b"\x6a\x81" if c[1] == 0xA4 else real(c)
    msg = _read_error(rd, "blocked")
    assert "6a81" in msg, msg
    assert len(sent) == 1, [s.hex() for s in sent]
