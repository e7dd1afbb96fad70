"""``chipctl gui``: the command that opens the operator GUI.

``add_command(subparsers)`` adds the sub-command to chipctl's argparse CLI; the handler is
:func:`handle` (also set as the parser's ``handler`` default). Bad input is one line and
exit code 2, like every chipctl command: the rig choice, ``--speed`` (simulated rigs only,
within the engine's range), a missing display or GUI packages.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from chipctl.errors import InputError

__all__ = ["add_command", "handle"]


def add_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``gui`` to chipctl's sub-commands; returns its parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "gui",
        help="open the operator GUI",
        description=(
            "Open the operator window: instrument panel with manual control, protocols with "
            "their preflight, live plots, images, alarms and the event log. With --open, a "
            "run file is browsed (without --sim/--config: only browsed, no instrument)."
        ),
    )
    group = parser.add_argument_group("instrument (choose one, or only --open)")
    group.add_argument(
        "--sim", action="store_true", help="use the simulated reference rig (shown SIMULATED)"
    )
    group.add_argument(
        "--config", metavar="FILE", type=Path, help="instrument config (TOML) of your rig"
    )
    parser.add_argument(
        "--speed",
        type=float,
        metavar="X",
        help="simulated clock X times real time (manual control, and the runs' default)",
    )
    parser.add_argument("--seed", type=int, default=0, help="simulated world seed (default 0)")
    parser.add_argument("--open", metavar="RUN.h5", type=Path, help="open a run file at once")
    parser.add_argument(
        "--runs", metavar="DIR", type=Path, default=Path("runs"), help="where run files go"
    )
    parser.add_argument("--quit-after", type=float, metavar="S", help=argparse.SUPPRESS)
    parser.set_defaults(handler=handle)
    return parser


def handle(args: argparse.Namespace) -> int:
    """Check the arguments, then open the GUI; returns the exit code.

    Raises:
        InputError / ConfigError: bad arguments (one line, exit code 2).
    """
    import chipctl.api as api
    from chipctl.gui.app import check_display, run_gui

    if args.sim and args.config is not None:
        raise InputError("choose either --sim or --config FILE, not both")
    config = None
    if args.sim or args.config is not None:
        config = api.resolve_config(args.config, sim=args.sim)
    elif args.open is None:
        raise InputError(
            "choose the simulated reference rig (--sim) or your instrument (--config FILE), "
            "or --open RUN.h5 to browse a run file; chipctl never guesses which"
        )
    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")
    if args.speed is not None:
        if config is None or not config.simulated:
            raise InputError("--speed only applies to the simulated rig (--sim)")
        api.make_clock(config, speed=args.speed)  # checks the range, one clear line
    if args.open is not None and not args.open.is_file():
        raise InputError(f"--open {args.open}: no such file")
    check_display()
    return run_gui(
        config,
        speed=args.speed,
        seed=args.seed,
        open_path=args.open,
        run_dir=args.runs,
        quit_after_s=args.quit_after,
    )
