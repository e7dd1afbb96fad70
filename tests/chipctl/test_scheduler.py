from chipctl.engine.scheduler import Scheduler


def test_runs_tasks_in_time_order_on_virtual_clock(clock):
    sched = Scheduler(clock)
    seen = []
    sched.call_at(5.0, lambda: seen.append(("b", clock.now_s())))
    sched.call_at(1.0, lambda: seen.append(("a", clock.now_s())))
    sched.call_at(5.0, lambda: seen.append(("c", clock.now_s())))
    sched.run()
    assert seen == [("a", 1.0), ("b", 5.0), ("c", 5.0)]


def test_periodic_task_has_no_drift_and_can_be_cancelled(clock):
    sched = Scheduler(clock)
    ticks = []
    task = sched.call_every(0.1, lambda: ticks.append(clock.now_s()))

    def stop():
        task.cancel()

    sched.call_at(100.0, stop)
    sched.run()
    assert len(ticks) == 1000  # t = 0, 0.1, ... 99.9 (the one at 100.0 comes after stop)
    assert ticks[-1] == 0.1 * 999  # first + n * period: no accumulated rounding


def test_request_stop_ends_run(clock):
    sched = Scheduler(clock)
    sched.call_every(1.0, lambda: None)
    sched.call_at(10.0, sched.request_stop)
    sched.run()
    assert clock.now_s() == 10.0


def test_threadsafe_callbacks_run_on_the_engine_turn(clock):
    sched = Scheduler(clock)
    seen = []
    sched.call_soon_threadsafe(lambda: seen.append("inbox"))
    sched.call_at(1.0, lambda: seen.append("task"))
    sched.run()
    assert seen == ["inbox", "task"]
