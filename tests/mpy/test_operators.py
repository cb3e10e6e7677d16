# The last admin's back-off: spaced tries instead of a lock only reflashing could lift.
import time

from firmware import operators


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
    operators._fail_at = time.ticks_ms()
    assert 59 <= operators._wait_s(3, 3) <= 60
    operators._fail_at = time.ticks_add(time.ticks_ms(), -61000)
    assert operators._wait_s(3, 3) <= 0          # a minute later: one more try
    assert operators._wait_s(4, 3) > 0           # after another wrong PIN: two minutes
    operators._fail_at = None
