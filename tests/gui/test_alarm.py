"""An alarm (a fault injected by the simulator) raises the banner until acknowledged."""

from __future__ import annotations

from pathlib import Path

import pytest
from PyQt5.QtCore import Qt

from chipctl.engine.run import RunState
from tests.gui.conftest import faulty_config, make_window

pytestmark = pytest.mark.gui


def test_a_pump_stall_raises_the_alarm_banner_until_acknowledged(
    qtbot, tmp_path: Path, small_protocol: Path
) -> None:
    window = make_window(qtbot, tmp_path, faulty_config("medium", "inject_stall", "20 min"))
    try:
        panel, banner = window.protocol_panel, window.alarms
        assert not banner.raised
        assert banner.label.text() == "no active alarms"
        assert not banner.button.isEnabled()
        panel.choose(str(small_protocol))
        qtbot.waitUntil(lambda: panel.preflight is not None, timeout=20_000)
        panel.speed.setCurrentText("virtual clock (as fast as possible)")
        with qtbot.waitSignal(window.controller.run_ended, timeout=60_000) as ended:
            qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
        result = ended.args[0]
        # the reference rig's pump_alarm interlock aborts the run on the stall
        assert result.state is RunState.ABORTED
        assert "stall" in result.message or "pump_alarm" in result.message
        assert banner.raised
        text = banner.label.text()
        assert text.startswith("ALARM at ") and "medium" in text
        assert banner.button.isEnabled()
        alarms = [row for row in window.events.visible_rows() if row.kind == "alarm"]
        assert any(row.source == "medium" for row in alarms)
        assert any(row.source.startswith("interlock:") for row in alarms)

        with qtbot.waitSignal(banner.acknowledged) as acknowledged:
            qtbot.mouseClick(banner.button, Qt.MouseButton.LeftButton)
        assert len(acknowledged.args[0]) >= 2  # the pump's alarm and the interlock's
        assert not banner.raised
        assert banner.label.text() == "no active alarms"
        # the alarms stay in the log, with the acknowledgement
        window.events.kind_box.setCurrentText("alarms and errors")
        kept = [row.kind for row in window.events.visible_rows()]
        assert kept.count("alarm") == len(alarms)
        window.events.kind_box.setCurrentText("all events")
        assert any(row.kind == "acknowledged" for row in window.events.visible_rows())
    finally:
        window.shutdown()


def test_event_log_filters_by_kind_and_text(qtbot) -> None:
    from chipctl.gui.events import EventLog

    log = EventLog()
    qtbot.addWidget(log)
    log.add(
        [
            (1.0, "medium", "command", "infuse 100 uL at 5 uL/min"),
            (2.0, "medium", "alarm", "stall"),
            (3.0, "protocol", "step_started", "step 2 ('perfuse')"),
            (4.0, "outlet", "command", "select 2"),
        ]
    )
    assert len(log.visible_rows()) == 4
    log.kind_box.setCurrentText("commands")
    assert [r.source for r in log.visible_rows()] == ["medium", "outlet"]
    log.search.setText("OUTLET")
    assert [r.message for r in log.visible_rows()] == ["select 2"]
    log.kind_box.setCurrentText("alarms and errors")
    assert log.visible_rows() == []
    log.search.setText("")
    assert [r.kind for r in log.visible_rows()] == ["alarm"]
    assert log.count.text() == "1 of 4 events"
