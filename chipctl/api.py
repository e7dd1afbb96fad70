"""The Python scripting API: run protocols and open rigs from a script.

>>> import chipctl
>>> result = chipctl.run_protocol("perfusion-check", sim=True)  # doctest: +SKIP
>>> result.state.value, result.delivered_ul["medium"]  # doctest: +SKIP
('completed', 220.0)

Simulation is always an explicit choice (``sim=True``); with ``config=...`` naming
hardware links, chipctl drives the hardware or fails, never falls back to the simulator.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from chipctl.config import InstrumentConfig, load_config, reference_rig_config
from chipctl.engine.run import Run, RunState, RunStatus
from chipctl.errors import InputError
from chipctl.protocol.loader import load_protocol
from chipctl.protocol.model import Protocol
from chipctl.protocol.preflight import Preflight, preflight
from chipctl.rig import Rig, build_rig
from chipctl.runfile import RunFileWriter
from chipctl.session import telemetry_spec
from drivers.clock import Clock, RealClock, ScaledClock, VirtualClock

__all__ = [
    "RunResult",
    "check_protocol",
    "default_run_path",
    "make_clock",
    "open_rig",
    "resolve_config",
    "run_protocol",
]

#: Fastest scaled clock: beyond it, a stall of the engine thread of a few ms (GIL, disk)
#: is simulated seconds, and a safe-mode watchdog (10 s) can expire between heartbeats
#: (seen at 1000x).
MAX_SPEED = 100.0
#: How often (real time) the waiting caller is given a status snapshot.
STATUS_INTERVAL_S = 0.2


def _version() -> str:
    from chipctl import __version__

    return __version__


def _clock_label(clock: Clock) -> str:
    if isinstance(clock, ScaledClock):
        return f"scaled x{clock.speed:g}"
    return "virtual" if clock.is_virtual else "real"


def _wall_utc() -> dt.datetime:
    """Return the real UTC time: run files say when a run really happened, also simulated."""
    return dt.datetime.now(dt.UTC)


def resolve_config(config: InstrumentConfig | str | Path | None, *, sim: bool) -> InstrumentConfig:
    """Return the instrument config for ``sim`` / ``config`` (exactly one must be chosen).

    Raises:
        InputError: neither or both chosen.
        ConfigError: the config file is invalid.
    """
    if sim and config is not None:
        raise InputError("choose either the simulated reference rig or a config, not both")
    if sim:
        return reference_rig_config()
    if config is None:
        raise InputError(
            "choose the simulated reference rig (--sim) or your instrument (--config FILE)"
        )
    if isinstance(config, InstrumentConfig):
        return config
    return load_config(config)


def make_clock(
    config: InstrumentConfig, *, realtime: bool = False, speed: float | None = None
) -> Clock:
    """Return the clock for a run: virtual for simulated rigs unless real time is asked for.

    Hardware always runs on the real clock (a virtual clock would make the engine think
    hours passed in a second while real pumps keep moving).

    Raises:
        InputError: ``speed`` asked for on hardware, or not > 0.
    """
    if speed is not None:
        if not config.simulated:
            raise InputError("--speed only applies to the simulated rig")
        if not 0 < speed <= MAX_SPEED:
            raise InputError(
                f"--speed must be > 0 and at most {MAX_SPEED:g}, got {speed:g}; for fast "
                "runs use the virtual clock (the default), which never outruns the engine"
            )
        return ScaledClock(speed)
    if realtime or not config.simulated:
        return RealClock()
    return VirtualClock()


def open_rig(
    config: InstrumentConfig | str | Path | None = None,
    *,
    sim: bool = False,
    clock: Clock | None = None,
    seed: int = 0,
) -> Rig:
    """Build the rig for ``config`` (or the simulated reference rig with ``sim=True``).

    The devices are not connected: use :class:`chipctl.session.Session` to connect.
    """
    cfg = resolve_config(config, sim=sim)
    return build_rig(cfg, clock=clock or make_clock(cfg), seed=seed)


def check_protocol(
    protocol: str | Path | Protocol,
    config: InstrumentConfig | str | Path | None = None,
    *,
    sim: bool = False,
) -> tuple[Protocol, Preflight]:
    """Validate ``protocol`` and preflight it on the rig, without touching any device.

    Raises:
        ProtocolError / ConfigError: one line naming file, step and field.
    """
    proto = protocol if isinstance(protocol, Protocol) else load_protocol(str(protocol))
    rig = open_rig(config, sim=sim)
    return proto, preflight(proto, rig)


def default_run_path(protocol_name: str, when: dt.datetime, folder: Path = Path("runs")) -> Path:
    """Return ``runs/20261121T101500Z_NAME.h5``, adding ``-2``, ``-3``... if it exists."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", protocol_name).strip("-.") or "run"
    stem = f"{when.strftime('%Y%m%dT%H%M%SZ')}_{safe}"
    path = folder / f"{stem}.h5"
    counter = 2
    while path.exists():
        path = folder / f"{stem}-{counter}.h5"
        counter += 1
    return path


@dataclass(frozen=True)
class RunResult:
    """How a run ended.

    Args:
        state: completed, aborted or failed.
        message: why it ended.
        path: the run file.
        protocol: the protocol that ran.
        simulated: whether the rig was simulated.
        duration_s: run time on the run's clock.
        delivered_ul: net volume delivered by each pump (last status read).
        preflight: what preflight predicted.
    """

    state: RunState
    message: str
    path: Path
    protocol: Protocol
    simulated: bool
    duration_s: float
    delivered_ul: dict[str, float] = field(default_factory=dict)
    preflight: Preflight | None = None

    @property
    def ok(self) -> bool:
        """Tell whether the run completed."""
        return self.state is RunState.COMPLETED


def run_protocol(
    protocol: str | Path | Protocol,
    config: InstrumentConfig | str | Path | None = None,
    *,
    sim: bool = False,
    out: str | Path | None = None,
    seed: int = 0,
    realtime: bool = False,
    speed: float | None = None,
    on_status: Callable[[RunStatus], None] | None = None,
    run_ready: Callable[[Run], None] | None = None,
) -> RunResult:
    """Validate, preflight and run ``protocol``, writing one run file; block until it ends.

    Args:
        protocol: a path, a built-in name, or a :class:`Protocol`.
        config: an instrument config (path or parsed), for hardware or a custom rig.
        sim: run on the simulated reference rig instead.
        out: the run file (default ``runs/<UTC time>_<protocol>.h5``).
        seed: the simulated world's seed (chooses the patient and the tumoroids).
        realtime: run a simulated rig on the real clock.
        speed: run a simulated rig on a real clock this many times faster.
        on_status: called with a status snapshot every ``STATUS_INTERVAL_S`` (real time).
        run_ready: called with the :class:`Run` before it starts (to keep a handle for
            :meth:`Run.abort`, e.g. from a signal handler).

    Raises:
        ProtocolError / ConfigError / InputError: bad input, before anything moves.
        RunFileError: the run file cannot be created.
    """
    proto = protocol if isinstance(protocol, Protocol) else load_protocol(str(protocol))
    cfg = resolve_config(config, sim=sim)
    clock = make_clock(cfg, realtime=realtime, speed=speed)
    rig = build_rig(cfg, clock=clock, seed=seed)
    started = _wall_utc()
    path = Path(out) if out is not None else default_run_path(proto.name, started)
    writer = RunFileWriter(
        path,
        chipctl_version=_version(),
        simulated=cfg.simulated,
        seed=seed if cfg.simulated else None,
        started_utc=started.isoformat(),
        config_text=cfg.text,
        protocol_text=proto.text,
        protocol_name=proto.name,
        telemetry=telemetry_spec(rig),
        extra_attrs={
            "instrument": cfg.name,
            "clock": _clock_label(clock),
            "protocol_source": proto.source,
        },
    )
    run = Run(proto, rig, writer)  # preflight happens here, before the file exists
    writer.open()
    final = RunState.FAILED
    try:
        if run_ready is not None:
            run_ready(run)
        thread = run.start()
        while thread.is_alive():
            thread.join(STATUS_INTERVAL_S)
            if on_status is not None:
                on_status(run.status())
        status = run.status()
        final = status.state
    except BaseException:
        run.abort("interrupted")
        run.join()
        final = run.status().state
        raise
    finally:
        writer.close(final.value if final.finished else "failed", _wall_utc().isoformat())
    delivered = {
        name: values["delivered_ul"]
        for name, values in run.session.last_values.items()
        if rig.roles[name] == "pump"
    }
    return RunResult(
        state=status.state,
        message=status.message,
        path=path,
        protocol=proto,
        simulated=cfg.simulated,
        duration_s=status.t_s,
        delivered_ul=delivered,
        preflight=run.preflight,
    )
