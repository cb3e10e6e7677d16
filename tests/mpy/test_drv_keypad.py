# Keypad scanning against the matrix model: debounce, repeat, ghosting.
from vhw.bus import Pin
from vhw.keys import KeypadModel
from drivers.keypad import Keypad


def rig(bounce_ms=0):
    rows = [Pin("r%d" % i, Pin.OPEN_DRAIN, value=1) for i in range(4)]
    cols = [Pin("c%d" % i, Pin.IN, Pin.PULL_UP) for i in range(4)]
    model = KeypadModel(rows, cols, bounce_ms)
    kp = Keypad(rows, cols, debounce_ms=20, repeat_delay_ms=500, repeat_ms=100)
    return kp, model


def run(kp, t0, t1, step=5):
    out = []
    for t in range(t0, t1, step):
        kp.poll(lambda k, rep: out.append((k, rep)), t)
    return out


def test_scan_each_key():
    kp, m = rig()
    for legend in "123A456B789C*0#D":
        m.press(legend)
        assert kp.scan() == 1 << "123A456B789C*0#D".index(legend), legend
        m.release()
    assert kp.scan() == 0


def test_debounce_needs_stable_scans():
    kp, m = rig()
    m.press("5")
    assert run(kp, 0, 15) == []            # not yet stable for 20 ms
    assert run(kp, 15, 40) == [("5", False)]
    assert run(kp, 40, 100) == []          # one event per press
    m.release()
    run(kp, 100, 140)
    m.press("5")
    assert run(kp, 140, 200) == [("5", False)]


def test_repeat_after_delay():
    kp, m = rig()
    m.press("B")
    ev = run(kp, 0, 800)
    assert ev[0] == ("B", False)
    reps = [e for e in ev if e[1]]
    assert 2 <= len(reps) <= 4, ev          # first at ~520 ms, then every 100 ms


def test_ghost_rejected_when_three_held():
    kp, m = rig()
    for k in "124":                          # 1,2 on row 0; 4 under 1: ghost at 5
        m.press(k)
    assert kp.scan() & (1 << 5), "model should ghost key 5"
    ev = run(kp, 0, 100)
    assert ev == [], ev
    assert kp.ghosts > 0
    m.release()
    m.press("1")
    m.press("2")                              # two keys: no ambiguity
    assert sorted(run(kp, 200, 260)) == [("1", False), ("2", False)]


def test_bounce_is_filtered():
    import time
    kp, m = rig(bounce_ms=15)
    m.press("7")
    out = []
    t0 = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), t0) < 80:
        kp.poll(lambda k, r: out.append(k))
        time.sleep_ms(1)
    assert out == ["7"], out


def test_bad_wiring_rejected():
    try:
        Keypad([Pin(1)], [Pin(2)])
    except ValueError as e:
        assert "4x4" in str(e)
    else:
        raise AssertionError("accepted 1x1")


def test_a_scan_leaves_no_garbage():
    # scan() runs every few milliseconds for as long as the terminal is on: in a 64 KB heap it must
    # allocate nothing (enumerate() cost a tuple per row, ~38 KB/s of garbage at a 5 ms period).
    # Bare pins (the matrix model allocates as it works out levels): only the driver is measured.
    import gc
    rows = [Pin("r%d" % i, Pin.OPEN_DRAIN, value=1) for i in range(4)]
    cols = [Pin("c%d" % i, Pin.IN, Pin.PULL_UP, value=i & 1) for i in range(4)]
    kp = Keypad(rows, cols, debounce_ms=20, repeat_delay_ms=500, repeat_ms=100)
    assert kp.scan() == 0x5555        # columns 0 and 2 low: keys closed in every row
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        for _ in range(20):
            kp.scan()
        grown = gc.mem_alloc() - before
    finally:
        gc.enable()
    assert grown == 0, grown
