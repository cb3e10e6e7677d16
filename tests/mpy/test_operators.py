# The last admin's back-off: spaced tries instead of a lock only reflashing could lift.
import time

from firmware import operators, state


def _ops():
    return [{"id": "01", "role": "admin"}, {"id": "02", "role": "supervisor"}, {"id": "04", "role": "admin"}]


def test_backoff_doubles_up_to_an_hour():
    assert [operators._backoff_s(n, 3) for n in range(3, 11)] == [60, 120, 240, 480, 960, 1920, 3600, 3600]


def test_last_admin_is_the_one_no_other_admin_can_replace():
    ops = _ops()
    assert not operators._last_admin(ops, ops[0], {"01": 3})           # 04 can still log in
    assert operators._last_admin(ops, ops[0], {"01": 3, "04": 3})       # 04 is locked too
    assert not operators._last_admin(ops, ops[1], {"01": 3, "04": 3})   # a supervisor is never "last admin"


def test_wait_runs_on_uptime_since_the_last_wrong_pin():
    state.pin_fail_ms = time.ticks_ms()
    assert 59 <= operators._wait_s(3, 3) <= 60
    state.pin_fail_ms = time.ticks_add(time.ticks_ms(), -61000)
    assert operators._wait_s(3, 3) <= 0          # a minute later: one more try
    assert operators._wait_s(4, 3) > 0           # after another wrong PIN: two minutes
    state.pin_fail_ms = None


def test_the_wait_outlives_the_unload_after_each_command():
    # The console drops firmware.operators after every command (params.unload). On a terminal up
    # for two hours, the wait after the last admin's wrong PIN must still be counted from that PIN,
    # not from boot (which would let it guess again at once).
    from firmware import boards, params
    booted = boards.BOOT_MS
    boards.BOOT_MS = time.ticks_add(time.ticks_ms(), -2 * 3600 * 1000)
    try:
        state.pin_fail_ms = time.ticks_ms()       # what login() records on a wrong PIN
        params.unload()
        from firmware import operators as again
        assert again._wait_s(12, 3) > 3500, again._wait_s(12, 3)
    finally:
        boards.BOOT_MS = booted
        state.pin_fail_ms = None
