# SSD1306 driver: exact bus traffic against the datasheet, and the vterm's
# panel model decoding the stream back into the same pixels.

from vhw.bus import I2C, SPI, Pin
from vhw.oled import SSD1306Model
from drivers.ssd1306 import SSD1306_I2C, INIT
from drivers.ssd1306_spi import SSD1306_SPI


def i2c_rig():
    bus = I2C(0)
    model = SSD1306Model()
    bus.attach(0x3C, model)
    bus.log = []
    return bus, model


def test_init_sequence_i2c_datasheet_8_1_5_2():
    # One write: control byte 00 (Co=0, D/C#=0: command stream), then the
    # init commands of the datasheet's flow chart; then the cleared frame.
    bus, model = i2c_rig()
    d = SSD1306_I2C(bus)
    d.init_display()
    addr, first = bus.log[0]
    assert addr == 0x3C
    assert first == b"\x00" + INIT, first.hex()
    assert INIT[:1] == b"\xae" and INIT[-1:] == b"\xaf"        # off first, on last (§10.1.12)
    assert b"\x8d\x14" in INIT and b"\xa8\x3f" in INIT and b"\xda\x12" in INIT
    # full refresh: window 0..127 x pages 0..7 (§10.1.4, §10.1.5), then 1024 data bytes
    assert bus.log[1][1] == b"\x00\x21\x00\x7f\x22\x00\x07", bus.log[1][1].hex()
    assert bus.log[2][1][:1] == b"\x40" and len(bus.log[2][1]) == 1025
    assert model.on and model.charge_pump and model.mode == 0 and model.errors == 0


def test_model_decodes_pixels_and_partial_refresh():
    bus, model = i2c_rig()
    d = SSD1306_I2C(bus)
    d.init_display()
    d.text("12.50", 0, 8, 1)
    d.fill_rect(100, 40, 10, 10, 1)
    d.show()
    assert model.ram == d.buffer
    assert model.visible() == d.buffer  # A1 + C8: upright, as drawn
    d.fill_rect(0, 8, 128, 8, 0)
    d.text("99", 0, 8, 1)
    bus.log = []
    d.show_pages(1, 1)
    assert bus.log[0][1] == b"\x00\x21\x00\x7f\x22\x01\x01"
    assert len(bus.log[1][1]) == 1 + 128              # one page only
    assert model.ram == d.buffer
    bus.log = []
    d.show_pages(2, 3, 16, 31)                         # a window: page by page
    assert [len(x[1]) for x in bus.log] == [7, 17, 17]
    assert model.ram == d.buffer


def test_contrast_power_invert():
    bus, model = i2c_rig()
    d = SSD1306_I2C(bus)
    d.init_display()
    bus.log = []
    d.contrast(0x10)
    d.poweroff()
    d.invert(True)
    assert [x[1] for x in bus.log] == [b"\x00\x81\x10", b"\x00\xae", b"\x00\xa7"]
    assert model.contrast == 0x10 and not model.on and model.inverse
    assert model.visible() == bytearray(1024)         # dark in power save
    try:
        d.contrast(300)
    except ValueError:
        pass
    else:
        raise AssertionError("contrast 300 accepted")


def test_spi_variant_dc_pin():
    spi = SPI(1)
    dc = Pin("dc", Pin.OUT, value=0)
    cs = Pin("cs", Pin.OUT, value=1)
    model = SSD1306Model(dc=dc)
    spi.attach(cs, model)
    d = SSD1306_SPI(spi, dc, cs)
    d.init_display()
    d.text("PIN", 0, 0, 1)
    d.show()
    assert model.on and model.ram == d.buffer and model.errors == 0


def test_missing_display_is_typed_error():
    d = SSD1306_I2C(I2C(0), 0x3D)
    try:
        d.init_display()
    except OSError as e:
        assert "0x3d" in str(e)
    else:
        raise AssertionError("no DisplayError")


def test_page_mode_and_column_nibbles():
    # Page addressing (§10.1.3): B0-B7 page, 00-0F/10-1F column nibbles.
    m = SSD1306Model()
    m.i2c_write([b"\x00\x20\x02\xb3\x05\x12"])
    m.i2c_write([b"\x40\xff\x81"])
    assert m.ram[3 * 128 + 0x25] == 0xFF and m.ram[3 * 128 + 0x26] == 0x81
    m.i2c_write([b"\x80\xb1\x40\x7e"])   # Co=1: one command then a control byte
    assert m.ram[1 * 128 + 0x27] == 0x7E


def test_without_the_charge_pump_the_panel_stays_dark():
    # The usual 128x64 module takes its panel voltage from the internal charge pump only: an init
    # that does not enable it (8D 14) shows nothing, whatever the RAM holds.
    m = SSD1306Model()
    m.i2c_write([b"\x00" + INIT.replace(b"\x8d\x14", b"\x8d\x10")])
    m.i2c_write([b"\x40" + b"\xff" * 1024])
    assert m.on and not m.charge_pump and m.visible() == bytearray(1024)
    m.i2c_write([b"\x00\x8d\x14"])
    assert m.visible() != bytearray(1024)
