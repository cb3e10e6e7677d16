"""The message contract in roampos.iso: exact bytes, standard test vectors, the docs' worked example."""
import pytest

from roampos import iso

TMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
TAK = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
TDK = bytes.fromhex("FFEEDDCCBBAA99887766554433221100")
PAN = "6228480000000001"

# docs/messages.md "Worked example": the same fields must give the same bytes and MAC.
WORKED_HEX = (
    "303230307224040000C1800131363632323834382A2A2A2A2A2A30303031303030303030303030303030303132"
    "3334353131323730383330303030303030343233303132303731534841303030303133313030303030303030"
    "303030303131363542 4E3030363030303030315247303036343430333030504D30303143534E303132525"
    "02D53332D30303030303145503039363030303130323033303430353036303730383039304130423043304430"
    "453046353730323939333535443646383730313738303945354542463444443333343739383130354632303633"
    "444230304430463043444237333846443339363042354C433031343436302D30312D31303030302D3731353"
    "60F3C11026E7024C5").replace(" ", "")


def worked_doc():
    return {"t": "0200", "2": iso.mask_pan(PAN), "3": "000000", "4": "000000012345", "7": "1127083000",
            "11": "000042", "14": "3012", "22": "071", "41": "SHA00001", "42": "310000000000001",
            "48": iso.encode_tlv({"BN": "000001", "RG": "440300", "PM": "C", "SN": "RP-S3-000001",
                                  "EP": iso.encrypt_pan(TDK, PAN, iv=bytes(range(16))),
                                  "LC": "460-01-10000-7"}),
            "49": "156"}


def test_worked_example_bytes_and_mac():
    raw = iso.encode(worked_doc(), TAK)
    assert raw.hex().upper() == WORKED_HEX
    assert raw[-8:].hex().upper() == "0F3C11026E7024C5"
    assert iso.mac_of(TAK, raw) == iso.cmac(TAK, raw[:-8])[:8]
    assert iso.verify_mac(TAK, raw)
    doc = iso.decode(raw)
    assert doc["64"] == "0F3C11026E7024C5" and iso.decrypt_pan(TDK, iso.decode_tlv(doc["48"])["EP"]) == PAN


def test_cmac_rfc4493_vectors():
    k = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    assert iso.cmac(k, b"").hex() == "bb1d6929e95937287fa37d129b756746"
    assert iso.cmac(k, bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")).hex() == "070a16b46b4d4144f79bdd9dd04a287c"


def test_cmac_per_key_contexts_stay_separate():
    """cmac() reuses one keyed context per key (copied per message): a cached key must still give
    its own MAC, another key another, and filling the cache must not change any result."""
    import os
    k = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    msg = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
    keys = [os.urandom(16) for _ in range(5000)]   # more than the cache holds: it is cleared on the way
    first = [iso.cmac(key, msg) for key in keys]
    assert len(set(first)) == len(keys)
    assert [iso.cmac(key, msg) for key in keys] == first
    for _ in range(3):  # repeated use of a cached context: copies, never the context itself
        assert iso.cmac(k, msg).hex() == "070a16b46b4d4144f79bdd9dd04a287c"
    with pytest.raises(ValueError):
        iso.cmac(bytes(15), msg)


def test_card_hash_is_keyed_hmac_sha256():
    """The ledger's card key: HMAC-SHA256 (RFC 4231 case 2: key "Jefe") truncated to 32 hex digits,
    from a cached keyed context that must not carry one PAN into the next or one key into another."""
    assert iso.card_hash(b"Jefe", "what do ya want for nothing?") == "5bdcc146bf60754e6a042426089575c7"
    a, b = iso.card_hash(b"k" * 32, PAN), iso.card_hash(b"j" * 32, PAN)
    assert a != b and iso.card_hash(b"k" * 32, PAN) == a and iso.card_hash(b"k" * 32, PAN + "1") != a


def test_transmission_time_and_local_date_match_the_calendar():
    """Field 7 and the regions' local dates are read through small caches: they must agree with
    the plain calendar computation, across month ends, leap days and year ends, both ways."""
    import calendar
    import random
    import time
    from roampos.host import registry
    rnd = random.Random(7)
    for _ in range(3000):
        now = float(rnd.randrange(1577836800, 1893456000))  # 2020-2030
        sent = now + rnd.randrange(-86400, 86400)
        assert iso.parse_transmission_time(iso.transmission_time(sent), now) == sent
        off = rnd.choice((-720, -300, 0, 330, 480, 840))
        assert registry.local_date({"utc_offset_min": off}, now) == \
            time.strftime("%Y-%m-%d", time.gmtime(now + 60 * off))
    # 29 Feb seen on 1 Mar 2028 (leap) and a 29 Feb that no nearby year has
    mar1 = float(calendar.timegm((2028, 3, 1, 0, 0, 5, 0, 0, 0)))
    assert iso.parse_transmission_time("0229235959", mar1) == mar1 - 6
    with pytest.raises(iso.MessageError):
        iso.parse_transmission_time("0229120000", float(calendar.timegm((2026, 6, 1, 0, 0, 0, 0, 0, 0))))
    with pytest.raises(iso.MessageError):
        iso.parse_transmission_time("1301120000", mar1)


def test_key_check_value_wrap_and_derivation():
    # FIPS-197 appendix C.1: AES-128(000102..0f, 00112233..ff) = 69c4e0d86a7b0430d8cdb78070b4c55a
    assert iso.aes_ecb_encrypt(bytes(range(16)), TAK).hex() == "69c4e0d86a7b0430d8cdb78070b4c55a"
    assert iso.kcv(TAK).hex().upper() == "FDE4FB"
    wrapped = iso.wrap_key(TMK, TAK)
    assert wrapped.hex().upper() == "71A55BFC8650E37183984CF11D111C32"
    assert iso.unwrap_key(TMK, wrapped) == TAK
    assert iso.derive_key(TMK, iso.LABEL_NM_MAC).hex().upper() == "D1E313DC4E45CB109A8E2E5B4DC0CE7B"
    with pytest.raises(ValueError):
        iso.wrap_key(TMK, b"short")


def test_field_52_is_16_bytes_format_4():
    block = iso.pin_block(TAK, "1234", PAN)
    assert len(block) == 16
    raw = iso.encode({"t": "0200", "11": "000001", "52": block.hex()}, TAK)
    assert iso.decode(raw)["52"] == block.hex().upper()
    assert iso.pin_from_block(TAK, block, PAN) == "1234"
    with pytest.raises(ValueError):
        iso.pin_from_block(TAK, block, "6228480000000002")   # PAN-bound: another card fails


def test_tlv_roundtrip_and_errors():
    text = iso.encode_tlv({"BN": "000001", "RG": "310000", "FL": ""})
    assert text == "BN006000001RG006310000FL000"
    assert iso.decode_tlv(text) == {"BN": "000001", "RG": "310000", "FL": ""}
    for bad in ("BN0060000", "bn003abc", "BN00x", "BN001ABN001B"):
        with pytest.raises(iso.MessageError) as e:
            iso.decode_tlv(bad)
        assert e.value.field == "48"


def test_decode_rejections_name_the_field():
    raw = iso.encode(worked_doc(), TAK)
    with pytest.raises(iso.MessageError) as e:
        iso.decode(raw[:-3])
    assert "64" in str(e.value)
    with pytest.raises(iso.MessageError):
        iso.decode(b"0200")
    doc = worked_doc()
    doc["4"] = "00000001234X"
    with pytest.raises(iso.MessageError) as e:
        iso.decode(iso.encode(doc))
    assert e.value.field == "4"
    secondary = bytearray(raw)
    secondary[4] |= 0x80
    with pytest.raises(iso.MessageError):
        iso.decode(bytes(secondary))
    with pytest.raises(iso.MessageError):
        iso.encode({"t": "0200", "90": "0" * 42})


def test_pan_encryption_and_masking():
    ep = iso.encrypt_pan(TDK, PAN)
    assert ep != iso.encrypt_pan(TDK, PAN)            # random IV: equal PANs do not look equal
    assert iso.decrypt_pan(TDK, ep) == PAN
    with pytest.raises(iso.MessageError):
        iso.decrypt_pan(TAK, ep)                       # wrong key fails the padding check
    assert iso.mask_pan("6228480000000001") == "622848******0001"
    assert iso.mask_pan("6228480000000000001") == "622848*********0001"


def test_location_and_transmission_time():
    assert iso.parse_location({"LC": "460-00-6200-1"}) == ("cell", (460, 0, 6200, 1))
    assert iso.parse_location({"WF": "AA:BB:CC:DD:EE:FF"})[0] == "wifi"
    assert iso.parse_location({}) == ("none", None)
    with pytest.raises(iso.MessageError):
        iso.parse_location({"LC": "460-00-6200"})
    now = 1798364400.0          # 2026-12-27 UTC
    assert iso.parse_transmission_time(iso.transmission_time(now), now) == now
    # 31 Dec 23:59:59 seen on 1 Jan belongs to the previous year
    assert iso.parse_transmission_time("1231235959", 1767225600.0) == 1767225599.0


def test_fast_codec_agrees_with_pyiso8583_on_valid_and_mutated_messages():
    """iso.decode/encode take a fast path for plain messages; pyiso8583 must give the same result,
    and whatever the fast path is unsure about must fall back to pyiso8583 (same error)."""
    import random

    import iso8583
    from roampos.termsim import SimTerminal
    t = SimTerminal("SHA00001", "310000000000001", "RP-S3-000001", TMK)
    t.tak = t.tdk = t.tpk = TAK
    msgs = [t.financial(PAN, 12345), t.financial(PAN, 12345, pin="1234"), t.signon(),
            t.settlement((1, 2, 3, 4)), t.financial(PAN, 5, proc="200000", orig_rrn="000000000001"),
            bytes.fromhex(WORKED_HEX)]
    rnd = random.Random(8583)
    fast = 0
    for base in msgs:
        ref = iso8583.decode(base, iso.SPEC)[0]
        assert iso._fast_decode(base) == ref
        fields = {k: v for k, v in ref.items() if k != "p"}
        assert iso._fast_encode(fields) == bytes(iso8583.encode(dict(fields), iso.SPEC)[0])
        for _ in range(1500):
            raw = bytearray(base)
            for _ in range(rnd.randint(1, 3)):
                op = rnd.random()
                if op < 0.5 and raw:
                    raw[rnd.randrange(len(raw))] = rnd.choice([rnd.randrange(256), 0x30 + rnd.randrange(10)])
                elif op < 0.75 and raw:
                    del raw[rnd.randrange(len(raw)):]
                else:
                    raw += bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 4)))
            got = iso._fast_decode(bytes(raw))
            if got is None:
                continue
            fast += 1
            assert got == iso8583.decode(bytes(raw), iso.SPEC)[0], bytes(raw).hex()
    assert fast > 100  # the fast path did run on many of the mutants
    # values the fast path refuses are pyiso8583's to reject, with its message
    with pytest.raises(iso.MessageError):
        iso.encode({"t": "0210", "39": "000"})
    with pytest.raises(iso.MessageError):
        iso.encode({"t": "0210", "41": "ÄBCDEFGH"})


def test_encode_refuses_fields_above_64():
    # The contract has no secondary bitmap: such a field is an error, never a 128-bit bitmap.
    for key in ("65", "128"):
        with pytest.raises(iso.MessageError, match="above 64"):
            iso.encode({"t": "0210", "3": "000000", "39": "00", key: "1"}, bytes(16))


def test_the_simulated_terminal_drops_a_response_without_a_mac():
    # Only the answer to an unknown terminal (03) comes without a MAC; a 0210 00 without one
    # could be anybody's (the terminal model the tests and the bench rely on must refuse it).
    from roampos.termsim import SimTerminal
    t = SimTerminal("SHA00001", "310000000000001", "SN", bytes(16))
    t.tak = TAK
    forged = iso.encode({"t": "0210", "3": "000000", "11": "000001", "38": "123456", "39": "00"})
    with pytest.raises(ValueError, match="without a MAC"):
        t.check(forged)
    assert t.check(iso.encode({"t": "0210", "3": "000000", "39": "03"}))["39"] == "03"
    assert t.check(iso.encode({"t": "0210", "3": "000000", "39": "00"}, TAK))["39"] == "00"
