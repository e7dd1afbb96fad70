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
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from chipctl.config import InstrumentConfig, load_config, reference_rig_config
from chipctl.engine.run import Run, RunState, RunStatus
from chipctl.errors import InputError, ProtocolError, RunFileError
from chipctl.protocol.loader import load_protocol, parse_protocol
from chipctl.protocol.model import Protocol
from chipctl.protocol.preflight import Preflight, preflight
from chipctl.rig import Rig, build_rig
from chipctl.runfile import RunFileWriter
from chipctl.session import telemetry_spec
from drivers.clock import Clock, RealClock, ScaledClock, VirtualClock

__all__ = [
    "RunHandle",
    "RunResult",
    "apply_syringes",
    "check_protocol",
    "default_run_path",
    "make_clock",
    "open_rig",
    "prepare_run",
    "resolve_config",
    "run_protocol",
]

#: Fastest scaled clock: beyond it, a stall of the engine thread (GIL, disk, rendering a
#: time point) is simulated seconds, and the New Era safe-mode watchdog (10 s) expires
#: between heartbeats (seen at 30x and 100x during imaging on this 2-core machine).
MAX_SPEED = 10.0
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


def _load(protocol: str | Path | Protocol, parameters: Mapping[str, str] | None) -> Protocol:
    if isinstance(protocol, Protocol):
        if parameters:
            return parse_protocol(protocol.text, protocol.source, parameters)
        return protocol
    return load_protocol(str(protocol), parameters)


def apply_syringes(config: InstrumentConfig, protocol: Protocol) -> InstrumentConfig:
    """Return ``config`` with the syringe contents the protocol declares.

    The protocol says what each syringe holds for this experiment; the config's
    ``contents`` are the rig's default. On a simulated rig the contents decide what the
    simulated chip receives.

    Raises:
        ProtocolError: the protocol declares a syringe for a pump the rig lacks.
    """
    if not protocol.syringes:
        return config
    devices = dict(config.devices)
    for pump, contents in protocol.syringes.items():
        device = devices.get(pump)
        if device is None or config.devices[pump].syringe is None:
            known = ", ".join(n for n, d in config.devices.items() if d.syringe is not None)
            raise ProtocolError(
                protocol.source, f"[syringes.{pump}]: no pump {pump!r} on this rig (pumps: {known})"
            )
        if contents.contents_nm or "contents" in device.options:
            options = dict(device.options)
            options["contents"] = {drug: f"{nm:g} nM" for drug, nm in contents.contents_nm.items()}
            devices[pump] = replace(device, options=options)
    return replace(config, devices=devices)


def check_protocol(
    protocol: str | Path | Protocol,
    config: InstrumentConfig | str | Path | None = None,
    *,
    sim: bool = False,
    parameters: Mapping[str, str] | None = None,
    out_dir: Path | None = None,
) -> tuple[Protocol, Preflight]:
    """Validate ``protocol`` and preflight it on the rig, without touching any device.

    Raises:
        ProtocolError / ConfigError: one line naming file, step and field.
    """
    proto = _load(protocol, parameters)
    cfg = apply_syringes(resolve_config(config, sim=sim), proto)
    rig = build_rig(cfg, clock=make_clock(cfg), seed=0)
    return proto, preflight(proto, rig, out_dir=out_dir)


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
        alarms: the alarms raised during the run (``"source: message"``).
    """

    state: RunState
    message: str
    path: Path
    protocol: Protocol
    simulated: bool
    duration_s: float
    delivered_ul: dict[str, float] = field(default_factory=dict)
    preflight: Preflight | None = None
    alarms: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Tell whether the run completed."""
        return self.state is RunState.COMPLETED


class RunHandle:
    """A prepared run: validated, preflighted, its run file open; nothing has moved yet.

    Args:
        run: the run (its engine is not started).
        writer: the run file's writer (open).
        path: the run file.
        config: the instrument config in effect.
    """

    def __init__(self, run: Run, writer: RunFileWriter, path: Path, config: InstrumentConfig):
        """Hold the parts; :meth:`start` starts the engine."""
        self.run = run
        self.writer = writer
        self.path = path
        self.config = config
        self._closed = False
        #: the run file's failure at close (a full disk), if any
        self.close_error: RunFileError | None = None

    @property
    def preflight(self) -> Preflight:
        """Return the run's preflight."""
        return self.run.preflight

    def start(self) -> None:
        """Start the engine thread."""
        self.run.start()

    def wait(
        self,
        on_status: Callable[[RunStatus], None] | None = None,
        interval_s: float = STATUS_INTERVAL_S,
    ) -> RunResult:
        """Wait for the run to end, close the run file, and say how it ended.

        A KeyboardInterrupt (or any exception) while waiting aborts the run, waits for the
        engine to stop the pumps, closes the file, and is raised again.
        """
        final = RunState.FAILED
        try:
            thread = self.run._thread
            while thread is not None and thread.is_alive():
                thread.join(interval_s)
                if on_status is not None:
                    on_status(self.run.status())
            final = self.run.status().state
        except BaseException:
            self.run.abort("interrupted")
            self.run.join()
            final = self.run.status().state
            raise
        finally:
            self.close(final)
        return self.result()

    def close(self, final: RunState | None = None) -> None:
        """Close the run file with the run's final state (idempotent)."""
        if self._closed:
            return
        self._closed = True
        state = final or self.run.status().state
        try:
            self.writer.close(state.value if state.finished else "failed", _wall_utc().isoformat())
        except RunFileError as exc:
            # the run already ended on this failure (a full disk): pumps are stopped and
            # the result says why; the file keeps everything written before it
            self.close_error = exc

    def result(self) -> RunResult:
        """Return how the run ended."""
        status = self.run.status()
        delivered = {
            name: values["delivered_ul"]
            for name, values in self.run.session.last_values.items()
            if self.run.rig.roles.get(name) == "pump"
        }
        message = status.message
        if self.close_error is not None and str(self.close_error) not in message:
            message = f"{message}; {self.close_error}" if message else str(self.close_error)
        return RunResult(
            state=status.state,
            message=message,
            path=self.path,
            protocol=self.run.protocol,
            simulated=self.config.simulated,
            duration_s=status.t_s,
            delivered_ul=delivered,
            preflight=self.run.preflight,
            alarms=status.alarms,
        )


def prepare_run(
    protocol: str | Path | Protocol,
    config: InstrumentConfig | str | Path | None = None,
    *,
    sim: bool = False,
    out: str | Path | None = None,
    seed: int = 0,
    realtime: bool = False,
    speed: float | None = None,
    parameters: Mapping[str, str] | None = None,
    live_analysis: bool = True,
) -> RunHandle:
    """Validate, compile and preflight ``protocol``, and create its run file.

    Nothing moves until :meth:`RunHandle.start`. Arguments as for :func:`run_protocol`.

    Raises:
        ProtocolError / ConfigError / InputError: bad input, before anything moves.
        RunFileError: the run file cannot be created.
    """
    proto = _load(protocol, parameters)
    cfg = apply_syringes(resolve_config(config, sim=sim), proto)
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
        clock=_clock_label(clock),
        extra_attrs={
            "instrument": cfg.name,
            "protocol_source": proto.source,
            "parameters": json.dumps(proto.overrides()),
        },
    )
    # compile and preflight happen here, before the file exists
    run = Run(proto, rig, writer, out_dir=path.parent, live_analysis=live_analysis)
    writer.open()
    return RunHandle(run, writer, path, cfg)


def run_protocol(
    protocol: str | Path | Protocol,
    config: InstrumentConfig | str | Path | None = None,
    *,
    sim: bool = False,
    out: str | Path | None = None,
    seed: int = 0,
    realtime: bool = False,
    speed: float | None = None,
    parameters: Mapping[str, str] | None = None,
    on_status: Callable[[RunStatus], None] | None = None,
    run_ready: Callable[[Run], None] | None = None,
    live_analysis: bool = True,
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
        parameters: protocol parameter overrides (``{"exposure": "48 h"}``).
        on_status: called with a status snapshot every ``STATUS_INTERVAL_S`` (real time).
        run_ready: called with the :class:`Run` before it starts (to keep a handle for
            :meth:`Run.abort`, e.g. from a signal handler).
        live_analysis: analyse images while the run goes on.

    Raises:
        ProtocolError / ConfigError / InputError: bad input, before anything moves.
        RunFileError: the run file cannot be created.
    """
    handle = prepare_run(
        protocol,
        config,
        sim=sim,
        out=out,
        seed=seed,
        realtime=realtime,
        speed=speed,
        parameters=parameters,
        live_analysis=live_analysis,
    )
    try:
        if run_ready is not None:
            run_ready(handle.run)
        handle.start()
    except BaseException:
        handle.close(RunState.FAILED)
        raise
    return handle.wait(on_status)
