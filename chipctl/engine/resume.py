"""Resume a simulated run whose process died, from its run file.

``chipctl resume RUN.h5``:

1. The run file is cut back to the last moment before which everything is on disk
   (:func:`chipctl.runfile.recover.reopen_for_resume`; at most about one flush interval,
   1 s, is lost) and reopened for appending.
2. The config, the protocol text and its parameters, the seed and the clock mode are read
   from the file, and the same rig is built again.
3. The run is **re-simulated from its seed** on virtual time up to the cut: the engine is
   deterministic, so the simulated world (syringes, chip, drug, tumoroids) and the devices
   are then in exactly the state they were in at the crash. Nothing of the replay before
   the cut is written again (:class:`GateRecorder`): the file already holds it.
4. At the cut the engine reconciles: it compares each pump's volume counters and each
   valve's position with the last values the file holds, and records what it found and how
   long the process was down (events from ``resume``); then the run goes on in the clock
   mode it was started with (virtual, or real time at its speed).

So the delivered drug totals of a resumed run equal those of an uninterrupted run with the
same seed (tested). Hardware runs cannot be re-simulated; resuming them (reading the
devices' counters and continuing from the last completed step) is not supported yet, and
``chipctl resume`` says so.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from chipctl.api import RunHandle, RunResult, apply_syringes
from chipctl.config import parse_config
from chipctl.engine.run import Run, RunStatus
from chipctl.errors import InputError
from chipctl.protocol.loader import parse_protocol
from chipctl.rig import build_rig
from chipctl.runfile.images import META_SUFFIX
from chipctl.runfile.reader import RunFile
from chipctl.runfile.recover import inspect_run, reopen_for_resume
from drivers.clock import ReplayClock

__all__ = ["GateRecorder", "resume_run"]

_SCALED = re.compile(r"^scaled x([0-9.eE+-]+)$")


class GateRecorder:
    """Forwards only records from ``cut_t_s`` on; earlier ones are already in the file.

    A frame is held until its metadata row arrives (the acquisition appends the frame, then
    its row), and both are kept or dropped together, by the row's time.
    """

    def __init__(self, writer: Any, cut_t_s: float) -> None:
        """Wrap the reopened ``writer``."""
        self.writer = writer
        self.cut_t_s = cut_t_s
        self._held: dict[str, Any] = {}

    def _keep(self, t_s: float) -> bool:
        return t_s >= self.cut_t_s

    def event(self, t_s: float, source: str, kind: str, message: str) -> None:
        """Record an event from the cut on."""
        if self._keep(t_s):
            self.writer.event(t_s, source, kind, message)

    def telemetry(self, device: str, t_s: float, values: Mapping[str, float]) -> None:
        """Record a telemetry row from the cut on."""
        if self._keep(t_s):
            self.writer.telemetry(device, t_s, values)

    def append_frame(self, path: str, frame: Any) -> None:
        """Hold a frame until its metadata row says when it was taken."""
        self._held[path + META_SUFFIX] = (path, np.array(frame, copy=True))

    def append_rows(self, path: str, rows: Mapping[str, Any]) -> None:
        """Append rows from the cut on (a held frame follows its row)."""
        t = rows.get("t_s")
        first = float(np.asarray(t).ravel()[0]) if t is not None and np.size(t) else math.inf
        held = self._held.pop(path, None)
        if not self._keep(first):
            return
        if held is not None:
            self.writer.append_frame(*held)
        self.writer.append_rows(path, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.writer, name)


def _last_before(run: RunFile, device: str, cut_t_s: float) -> dict[str, float]:
    try:
        columns = run.telemetry(device)
    except Exception:  # a device the file has no table for
        return {}
    t = np.asarray(columns.get("t_s", []))
    index = int(np.searchsorted(t, cut_t_s, side="left")) - 1
    if index < 0:
        return {}
    return {k: float(np.asarray(v)[index]) for k, v in columns.items()}


def resume_run(
    path: str | Path,
    *,
    on_status: Callable[[RunStatus], None] | None = None,
    live_analysis: bool = True,
) -> RunResult:
    """Resume the simulated run in ``path`` whose process died; block until it ends.

    Raises:
        InputError: the run was on hardware (not supported yet).
        RunFileError: the file is not a run that can be resumed (one line naming it).
    """
    path = Path(path)
    crashed = inspect_run(path)
    if not crashed.simulated:
        raise InputError(
            f"{path}: resuming a hardware run is not supported yet (only simulated runs "
            "can be re-simulated to the moment of the crash); start a new run"
        )
    with RunFile(path) as before:
        down_s = dt.datetime.now(dt.UTC).timestamp() - path.stat().st_mtime
        snapshot = before
        cut_probe = crashed.last_t_s or 0.0
        last = {d: _last_before(snapshot, d, cut_probe) for d in crashed.telemetry}
    reopened = reopen_for_resume(path)
    cut_t_s = reopened.cut_t_s or 0.0
    source = f"{path}:/config/text"
    cfg = parse_config(crashed.config_text, source)
    try:
        parameters = json.loads(str(crashed.attrs.get("parameters", "{}")) or "{}")
    except json.JSONDecodeError:
        parameters = {}
    protocol = parse_protocol(
        crashed.protocol_text,
        f"{path}:/protocol/source",
        {str(k): str(v) for k, v in parameters.items()},
    )
    cfg = apply_syringes(cfg, protocol)
    clock = ReplayClock()
    rig = build_rig(cfg, clock=clock, seed=crashed.seed or 0)
    gate = GateRecorder(reopened.writer, cut_t_s)
    run = Run(protocol, rig, gate, out_dir=path.parent, live_analysis=live_analysis)
    writer = reopened.open()
    mode = crashed.clock or "virtual"

    def at_cut() -> None:
        session = run.session  # last_values: the replay's last poll before the cut
        session.event(
            "resume",
            "replayed",
            f"re-simulated {cut_t_s:.6g} s of the run from seed {crashed.seed}; "
            f"the process was down {down_s:.0f} s (real time); the simulated world was "
            "frozen meanwhile",
        )
        for device, values in session.last_values.items():
            before_values = last.get(device, {})
            for quantity in ("delivered_ul", "position"):
                if quantity in values and quantity in before_values:
                    now, then = values[quantity], before_values[quantity]
                    session.event(
                        "resume",
                        "reconciled",
                        f"{device}.{quantity}: device {now:.6g}, file {then:.6g} "
                        f"(at t={before_values.get('t_s', math.nan):.6g} s)",
                    )
        match = _SCALED.match(mode)
        if match:
            clock.go_live(float(match.group(1)))
        elif mode == "real":
            clock.go_live(1.0)

    run.scheduler.call_at(cut_t_s, at_cut, name="resume point")
    handle = RunHandle(run, writer, path, cfg)
    handle.start()
    return handle.wait(on_status)
