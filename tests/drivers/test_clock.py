import threading

import pytest

from drivers.clock import Clock, RealClock, ScaledClock, VirtualClock


def test_virtual_clock_moves_only_forward():
    clock = VirtualClock(start_s=10.0)
    clock.sleep_s(5.0)
    clock.sleep_s(-3.0)  # negative waits do nothing
    assert clock.now_s() == 15.0
    clock.sleep_until_s(12.0)  # the past: nothing
    assert clock.now_s() == 15.0
    clock.sleep_until_s(20.0)
    assert clock.now_s() == 20.0
    assert clock.is_virtual


def test_virtual_clock_is_consistent_across_threads():
    clock = VirtualClock()

    def advance():
        for _ in range(10_000):
            clock.sleep_s(0.001)

    threads = [threading.Thread(target=advance) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert clock.now_s() == pytest.approx(40.0)


def test_every_clock_satisfies_the_protocol_and_real_ones_are_not_virtual():
    for clock in (RealClock(), ScaledClock(60.0), VirtualClock()):
        assert isinstance(clock, Clock)
    assert not RealClock().is_virtual and not ScaledClock(2.0).is_virtual


def test_real_time_is_monotonic_and_the_scaled_clock_runs_faster():
    real, fast = RealClock(), ScaledClock(1000.0)
    # reads bracketed in the order r0 f0 (wait) f1 r1, so the bounds hold exactly
    r0 = real.now_s()
    f0 = fast.now_s()
    real.sleep_s(0.01)  # a bounded wait to observe the scale, not to make timing pass
    f1 = fast.now_s()
    r1 = real.now_s()
    assert r1 - r0 >= 0.01
    assert 1000.0 * 0.01 <= f1 - f0 <= 1000.0 * (r1 - r0)


@pytest.mark.parametrize("speed", [0.0, -1.0])
def test_scaled_clock_rejects_a_speed_that_is_not_positive(speed):
    with pytest.raises(ValueError, match="speed must be > 0"):
        ScaledClock(speed)
