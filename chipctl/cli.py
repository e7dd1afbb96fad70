"""The ``chipctl`` command line.

Every command prints one clear line and exits non-zero on bad input or a device fault,
never a traceback (exit codes: 0 done, 1 run failed or aborted, 2 bad input). ``--debug``
shows tracebacks and wire traffic for developers.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TextIO

from chipctl.errors import ChipctlError, InputError
from drivers.errors import DeviceError

__all__ = ["main"]

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (and exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_rig_choice(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("instrument (choose one)")
    group.add_argument(
        "--sim", action="store_true", help="use the simulated reference rig (virtual clock)"
    )
    group.add_argument(
        "--config", metavar="FILE", type=Path, help="instrument config (TOML) of your rig"
    )


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="override a protocol parameter (repeatable), e.g. --set exposure='48 h'",
    )


def _parameters(pairs: Sequence[str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise InputError(f"--set {pair!r}: expected NAME=VALUE")
        result[name.strip()] = value.strip()
    return result


def _build_parser() -> _Parser:
    from chipctl import __version__

    parser = _Parser(
        prog="chipctl",
        description="Controller for microfluidic tumor-on-a-chip instruments.",
    )
    parser.add_argument("--version", action="version", version=f"chipctl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and wire traffic")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = commands.add_parser(
        "run",
        help="run a protocol (preflight first)",
        description="Validate, preflight and run a protocol, writing one HDF5 run file.",
    )
    run.add_argument("protocol", metavar="PROTOCOL", help="protocol file or built-in name")
    _add_rig_choice(run)
    run.add_argument("--out", metavar="FILE", type=Path, help="run file (default: runs/...h5)")
    run.add_argument("--seed", type=int, default=0, help="simulated world seed (default 0)")
    timing = run.add_mutually_exclusive_group()
    timing.add_argument(
        "--realtime", action="store_true", help="run the simulated rig on the real clock"
    )
    timing.add_argument(
        "--speed", type=float, metavar="X", help="run the simulated rig X times faster than real"
    )
    run.add_argument("--quiet", action="store_true", help="no progress display")
    _add_set(run)
    run.add_argument(
        "--no-analysis", action="store_true", help="do not analyse images during the run"
    )

    check = commands.add_parser(
        "check",
        help="validate and preflight a protocol without moving anything",
        description="Validate a protocol and preflight it on the instrument; nothing moves.",
    )
    check.add_argument("protocol", metavar="PROTOCOL", help="protocol file or built-in name")
    _add_rig_choice(check)
    _add_set(check)
    check.add_argument("--json", action="store_true", help="print the preflight as JSON")
    check.add_argument(
        "--out", metavar="FILE", type=Path, help="where the run file would go (disk check)"
    )

    resume = commands.add_parser(
        "resume",
        help="resume a simulated run whose process died",
        description=(
            "Continue a run whose process died (killed, power cut): the run file is cut back "
            "to its last complete moment, the simulated rig is re-simulated from the run's "
            "seed to that moment, reconciled, and the run goes on in its clock mode, "
            "appending to the same file."
        ),
    )
    resume.add_argument("run", metavar="RUN.h5", type=Path, help="the run file")
    resume.add_argument("--quiet", action="store_true", help="no progress display")
    resume.add_argument(
        "--no-analysis", action="store_true", help="do not analyse images during the run"
    )

    commands.add_parser(
        "protocols",
        help="list the built-in protocols",
        description="List the built-in protocols with their descriptions.",
    )

    export = commands.add_parser(
        "export",
        help="export a run's images (OME-TIFF)",
        description=(
            "Export the images of a run file: one OME-TIFF per position, channels and time "
            "points as C and T, with physical pixel sizes, channel names and times."
        ),
    )
    export.add_argument("run", metavar="RUN.h5", type=Path, help="the run file")
    export.add_argument(
        "--ome-tiff", metavar="DIR", type=Path, required=True, help="folder to write into"
    )
    export.add_argument("--overwrite", action="store_true", help="replace existing files")

    devices = commands.add_parser("devices", help="device tools", description="Device tools.")
    device_commands = devices.add_subparsers(
        dest="devices_command", metavar="COMMAND", parser_class=_Parser
    )
    scan = device_commands.add_parser(
        "scan",
        help="find instruments on serial ports (read-only queries)",
        description=(
            "Probe serial ports with read-only identification queries of every supported "
            "protocol and print what answers: PORT DRIVER MODEL address, firmware, baud rate. "
            "Nothing is moved or configured."
        ),
    )
    scan.add_argument("ports", nargs="*", metavar="PORT", help="ports (default: all found)")

    simulate = commands.add_parser(
        "simulate", help="simulator tools", description="Simulator tools."
    )
    sim_commands = simulate.add_subparsers(
        dest="sim_command", metavar="COMMAND", parser_class=_Parser
    )
    serve = sim_commands.add_parser(
        "serve",
        help="serve emulated devices on pseudo-terminals",
        description=(
            "Serve every emulated serial device of a simulated rig on its own PTY, in real "
            "time, until interrupted. Prints one line per device: NAME MODEL PATH."
        ),
    )
    serve.add_argument(
        "--config", metavar="FILE", type=Path, help="simulated config (default: reference rig)"
    )
    serve.add_argument("--seed", type=int, default=0, help="simulated world seed (default 0)")

    from chipctl.analysis.cli import add_commands as add_analysis_commands

    add_analysis_commands(commands)
    from chipctl.gui import cli as gui_cli

    gui_cli.add_command(commands)
    return parser


def _need_rig_choice(args: argparse.Namespace) -> None:
    if args.sim and args.config is not None:
        raise InputError("choose either --sim or --config FILE, not both")
    if not args.sim and args.config is None:
        raise InputError(
            "choose the simulated reference rig (--sim) or your instrument (--config FILE); "
            "chipctl never guesses which"
        )


def _rig_label(simulated: bool, name: str, clock_label: str) -> str:
    if simulated:
        return f"SIMULATED: {name} ({clock_label})"
    return f"HARDWARE: {name}"


class _Progress:
    """Progress display on stderr: a live bar on a terminal, one line per step otherwise."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = stream.isatty()
        self._last_step = -2

    def __call__(self, status: object) -> None:
        from chipctl.engine.run import RunStatus
        from chipctl.units import format_duration

        if not self.enabled or not isinstance(status, RunStatus):
            return
        total_s = max(status.expected_duration_s, 1e-9)
        fraction = min(status.t_s / total_s, 1.0)
        step = f"step {status.step_index + 1}/{status.n_steps}"
        label = status.step_name
        t = f"{format_duration(status.t_s)} / {format_duration(status.expected_duration_s)}"
        if self.tty:
            bar = "#" * int(fraction * 30)
            line = f"\r{step} {label:<22.22} {t} [{bar:<30}] {fraction:4.0%}"
            self.stream.write(line)
            self.stream.flush()
        elif status.step_index != self._last_step and status.step_index >= 0:
            self.stream.write(f"{step} {label} at {format_duration(status.t_s)}\n")
            self.stream.flush()
        self._last_step = status.step_index

    def done(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


class _Interrupts:
    """Ctrl-C during a run: the first pauses it and asks, the second aborts it.

    While paused, Enter on a terminal resumes. Both go through the run's thread-safe
    calls, so the engine thread does the device work (pumps stop within a second).
    """

    def __init__(self, holder: list[Any], stream: TextIO) -> None:
        self.holder = holder
        self.stream = stream
        self.count = 0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if not self.holder:
            raise KeyboardInterrupt
        run = self.holder[0]
        self.count += 1
        if self.count == 1:
            run.pause("Ctrl-C")
            self.stream.write(
                "\npaused (Ctrl-C): press Enter to resume, or Ctrl-C again to abort\n"
            )
            self.stream.flush()
            if sys.stdin is not None and sys.stdin.isatty():
                threading.Thread(target=self._wait_enter, daemon=True).start()
        else:
            self.stream.write("\naborting: stopping the pumps\n")
            self.stream.flush()
            run.abort("operator abort (Ctrl-C twice)")

    def _wait_enter(self) -> None:
        try:
            sys.stdin.readline()
        except (OSError, ValueError):
            return
        if self.count == 1 and self.holder:
            self.count = 0
            self.holder[0].resume()
            self.stream.write("resumed\n")
            self.stream.flush()


def _cmd_run(args: argparse.Namespace) -> int:
    import chipctl.api as api
    from chipctl.engine.run import Run
    from chipctl.units import format_duration

    _need_rig_choice(args)
    cfg = api.resolve_config(args.config, sim=args.sim)
    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")
    if not cfg.simulated and (args.realtime or args.speed is not None):
        raise InputError("--realtime and --speed only apply to the simulated rig")
    if args.speed is not None:
        api.make_clock(cfg, speed=args.speed)  # checks the range, one clear line
    # everything the user typed is checked before the banner, so bad input is one line
    parameters = _parameters(args.set)
    protocol, _ = api.check_protocol(args.protocol, cfg, parameters=parameters)
    clock_label = (
        f"{args.speed:g}x real time"
        if args.speed
        else "real time"
        if args.realtime
        else "virtual clock"
    )
    print(
        _rig_label(cfg.simulated, cfg.name, clock_label)
        + (f", seed {args.seed}" if cfg.simulated else ""),
        file=sys.stderr,
    )
    progress = _Progress(sys.stderr, enabled=not args.quiet)
    holder: list[Run] = []

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if holder:
            holder[0].abort("terminated (SIGTERM)")

    interrupts = _Interrupts(holder, sys.stderr)
    previous = signal.signal(signal.SIGTERM, on_sigterm)
    previous_int = signal.signal(signal.SIGINT, interrupts)
    try:
        result = api.run_protocol(
            protocol,
            cfg,
            out=args.out,
            seed=args.seed,
            realtime=args.realtime,
            speed=args.speed,
            parameters=parameters,
            on_status=progress,
            run_ready=holder.append,
            live_analysis=not args.no_analysis,
        )
    except KeyboardInterrupt:
        progress.done()
        print("chipctl: interrupted: pumps stopped, run file closed as aborted", file=sys.stderr)
        return EXIT_RUN_FAILED
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    progress.done()
    volumes = ", ".join(f"{n} {v:.6g} uL" for n, v in result.delivered_ul.items())
    mode = "simulated" if result.simulated else "hardware"
    print(
        f"{result.state.value}: {result.protocol.name} on {cfg.name} ({mode}), "
        f"{format_duration(result.duration_s)} run time; delivered: {volumes or 'none'}"
        + ("" if result.ok else f"; {result.message}")
    )
    print(f"run file: {result.path}")
    return EXIT_OK if result.ok else EXIT_RUN_FAILED


def _cmd_check(args: argparse.Namespace) -> int:
    import chipctl.api as api

    _need_rig_choice(args)
    cfg = api.resolve_config(args.config, sim=args.sim)
    out_dir = (args.out or Path("runs") / "x.h5").parent
    protocol, pre = api.check_protocol(
        args.protocol, cfg, parameters=_parameters(args.set), out_dir=out_dir
    )
    if args.json:
        print(pre.json_text())
        return EXIT_OK
    print(f"{protocol.source}: OK: {protocol.name} on {cfg.name}")
    print(pre.table())
    return EXIT_OK


def _cmd_resume(args: argparse.Namespace) -> int:
    from chipctl.engine.resume import resume_run
    from chipctl.runfile.recover import inspect_run
    from chipctl.units import format_duration

    crashed = inspect_run(args.run)  # a missing or ended run is one line, before any banner
    mode = "SIMULATED" if crashed.simulated else "HARDWARE"
    print(f"{mode}: resuming {args.run} ({crashed.protocol_name})", file=sys.stderr)
    progress = _Progress(sys.stderr, enabled=not args.quiet)
    result = resume_run(args.run, on_status=progress, live_analysis=not args.no_analysis)
    progress.done()
    volumes = ", ".join(f"{n} {v:.6g} uL" for n, v in result.delivered_ul.items())
    print(
        f"{result.state.value}: {result.protocol.name} (resumed), "
        f"{format_duration(result.duration_s)} run time; delivered: {volumes or 'none'}"
        + ("" if result.ok else f"; {result.message}")
    )
    print(f"run file: {result.path}")
    return EXIT_OK if result.ok else EXIT_RUN_FAILED


def _cmd_export(args: argparse.Namespace) -> int:
    from chipctl.export import export_ome_tiff

    for path in export_ome_tiff(args.run, args.ome_tiff, overwrite=args.overwrite):
        print(path)
    return EXIT_OK


def _cmd_protocols(args: argparse.Namespace) -> int:
    from chipctl.protocol.catalog import builtin_names
    from chipctl.protocol.loader import load_protocol

    for name in builtin_names():
        print(f"{name:24} {load_protocol(name).description}")
    return EXIT_OK


def _cmd_simulate_serve(args: argparse.Namespace) -> int:
    from chipctl.config import load_config, reference_rig_config
    from chipctl.rig import build_emulators, serve_on_ptys
    from drivers.clock import RealClock

    cfg = load_config(args.config) if args.config else reference_rig_config()
    clock = RealClock()
    _, emulators, _ = build_emulators(cfg, seed=args.seed, start_s=clock.now_s())
    server = serve_on_ptys(emulators, clock.now_s)
    try:
        for link, emulator in emulators.items():
            names = [d.name for d in cfg.devices.values() if d.link == link]
            model = getattr(emulator, "model", None)
            if not isinstance(model, str):
                model = type(emulator).__name__
            print(f"{','.join(names)} {model} {server.paths[link]}", flush=True)
        print("serving in real time; Ctrl-C to stop", file=sys.stderr, flush=True)
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda signum, frame: stopped.set())
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return EXIT_OK


def _cmd_devices_scan(args: argparse.Namespace) -> int:
    from drivers.clock import RealClock
    from drivers.scan import list_serial_ports, scan_port

    ports = args.ports or list_serial_ports()
    if not ports:
        print("no serial ports found", file=sys.stderr)
        return EXIT_RUN_FAILED
    found_any = False
    for port in ports:
        found = scan_port(port, RealClock())
        if found is None:
            print(f"{port}: nothing answered")
            continue
        found_any = True
        print(
            f"{port}: {found.driver}: {found.model}; address {found.address}, "
            f"firmware {found.firmware or '-'}, {found.baudrate} baud"
        )
    return EXIT_OK if found_any else EXIT_RUN_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    handlers = {
        "run": _cmd_run,
        "check": _cmd_check,
        "protocols": _cmd_protocols,
        "export": _cmd_export,
        "resume": _cmd_resume,
    }
    from chipctl.analysis.cli import HANDLERS as ANALYSIS_HANDLERS

    handlers.update(ANALYSIS_HANDLERS)
    from chipctl.gui import cli as gui_cli

    handlers["gui"] = gui_cli.handle
    try:
        if args.command == "devices":
            if args.devices_command != "scan":
                parser.parse_args(["devices", "--help"])
            return _cmd_devices_scan(args)
        if args.command == "simulate":
            if args.sim_command != "serve":
                parser.parse_args(["simulate", "--help"])
            return _cmd_simulate_serve(args)
        if args.command is None:
            parser.print_help()
            return EXIT_BAD_INPUT
        return handlers[args.command](args)
    except ChipctlError as exc:
        if args.debug:
            raise
        print(f"chipctl {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except DeviceError as exc:
        if args.debug:
            raise
        print(f"chipctl {args.command}: device error: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    except KeyboardInterrupt:
        print(f"chipctl {args.command}: interrupted", file=sys.stderr)
        return EXIT_RUN_FAILED
