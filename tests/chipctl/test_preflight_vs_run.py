"""Preflight and the simulated run agree within 1 % on duration and volumes (issue 6).

Every built-in protocol runs whole on the simulated reference rig (virtual clock, live
analysis off: it does not change the fluidics), and its measured duration and the volume
each pump infused and withdrew are compared with what the preflight predicted.
"""

from __future__ import annotations

import pytest

from chipctl.api import prepare_run
from chipctl.config import parse_config, reference_rig_config
from chipctl.engine.run import RunState
from chipctl.protocol.catalog import builtin_names

TOLERANCE = 0.01


def _small_camera_rig():
    """The reference rig with a 256 x 256 camera at one field per chamber, polled every 30 s.

    The fluidics, the timeline and the imaging schedule are the same; rendering is 16 times
    cheaper, a third of the frames (fields are tested in test_fields.py and the readout
    tests), and polling 3 times cheaper (over a week of simulated time, polls dominate).
    """
    text = (
        reference_rig_config()
        .text.replace("sensor_px = [1024, 1024]", "sensor_px = [256, 256]")
        .replace('telemetry_period = "10 s"', 'telemetry_period = "30 s"')
        .replace("fields_per_chamber = 3", "fields_per_chamber = 1")
    )
    assert "[256, 256]" in text and '"30 s"' in text and "fields_per_chamber = 1" in text
    return parse_config(text, "reference rig, 256 px camera")


def _condition_waits_s(path) -> float:
    """Return the total time spent in condition waits, from the run file's events."""
    from chipctl.runfile import RunFile

    with RunFile(path) as run:
        events = run.events()
    total = 0.0
    for end in events:
        if end.source == "protocol" and end.kind in ("condition_met", "condition_timeout"):
            label = end.message.split(":")[0]
            start = max(
                e.t_s
                for e in events
                if e.kind == "step_started" and e.message == label and e.t_s <= end.t_s
            )
            total += end.t_s - start
    return total


def _condition_waits_expected_s(handle) -> float:
    from chipctl.protocol.model import WaitStep, walk

    return sum(
        (s.expect_s if s.expect_s is not None else s.timeout_s or 0.0)
        for s in walk(handle.run.compiled.steps)
        if isinstance(s, WaitStep) and s.condition is not None
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", builtin_names())
def test_preflight_predicts_the_simulated_run(name, tmp_path, capsys):
    handle = prepare_run(
        name, _small_camera_rig(), out=tmp_path / f"{name}.h5", live_analysis=False
    )
    pre = handle.preflight
    handle.start()
    result = handle.wait()
    assert result.state is RunState.COMPLETED, result.message
    measured = handle.run.session.last_values
    # a wait on a live condition takes what the experiment takes: the preflight assumes its
    # 'expect' time, so the run's duration is compared with the waits' real lengths removed
    waited_s = _condition_waits_s(result.path) - _condition_waits_expected_s(handle)
    rows = [("duration_s", pre.duration_s, result.duration_s - waited_s)]
    for pump in sorted(set(pre.infused_ul) | set(pre.withdrawn_ul)):
        for quantity, predicted in (
            ("infused_ul", pre.infused_ul),
            ("withdrawn_ul", pre.withdrawn_ul),
        ):
            rows.append((f"{pump} {quantity}", predicted.get(pump, 0.0), measured[pump][quantity]))
    with capsys.disabled():
        for what, predicted, got in rows:
            error = (got - predicted) / predicted if predicted else got
            print(
                f"\n{name:22} {what:22} preflight {predicted:12.2f} run {got:12.2f} ({error:+.3%})"
            )
    for what, predicted, got in rows:
        assert got == pytest.approx(predicted, rel=TOLERANCE, abs=0.5), what
