"""``chipctl analyze`` and ``chipctl report``: the readout of a finished run.

:func:`add_commands` adds both subcommands to chipctl's argparse CLI and returns their
handlers (also set as the parsers' ``handler`` default). Like every chipctl command, bad
input is one line and exit code 2, never a traceback: handlers raise
:class:`chipctl.errors.ChipctlError` subclasses, which ``chipctl.cli.main`` prints.

``analyze RUN.h5`` recomputes the tumoroid tables from the stored frames
(:func:`chipctl.analysis.images.analyze_images`), the delivered exposure from the logged
flows, and the GR dose response, prints a short summary and replaces the recomputed tables
under ``/analysis`` (:mod:`chipctl.analysis.store`). ``report RUN.h5 --out DIR`` writes
figures and ``DIR/index.html``; it uses the run's stored ``/analysis/tumoroids`` table (from
the live analysis or an earlier ``analyze``) and segments the frames itself only if there is
none (or with ``--recompute``).
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from chipctl.errors import InputError, ProtocolError, RunFileError

__all__ = ["HANDLERS", "add_commands", "cmd_analyze", "cmd_report"]

#: Bootstrap replicates by default: percentile intervals settle at a few hundred.
DEFAULT_BOOTSTRAP: Final = 500
_TUMOROIDS: Final = "/analysis/tumoroids"
_CHAMBERS: Final = "/analysis/chambers"


def add_commands(commands: Any) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add ``analyze`` and ``report`` to chipctl's subparsers; return their handlers.

    Args:
        commands: the object returned by ``parser.add_subparsers()``.
    """
    analyze = commands.add_parser(
        "analyze",
        help="recompute a run's analysis (images, exposure, GR) and store it in the run file",
        description=(
            "Segment and track the tumoroids in every stored frame, compute the drug "
            "concentration each chamber received from the logged flows, fit the GR dose "
            "response with bootstrap intervals, print a summary and replace the recomputed "
            "tables under /analysis in the run file."
        ),
    )
    analyze.add_argument("run", metavar="RUN.h5", type=Path, help="a finished run file")
    analyze.add_argument(
        "--no-store", action="store_true", help="print the summary, do not write the run file"
    )
    _add_common(analyze)
    analyze.set_defaults(handler=cmd_analyze)

    report = commands.add_parser(
        "report",
        help="write figures and an HTML summary of a run",
        description=(
            "Write lab-meeting figures (fluidics with alarms, delivered concentration, "
            "growth curves, dose response with fits and intervals, image montage) and "
            "DIR/index.html with the answer in words."
        ),
    )
    report.add_argument("run", metavar="RUN.h5", type=Path, help="the run file")
    report.add_argument("--out", metavar="DIR", type=Path, required=True, help="output folder")
    report.add_argument(
        "--recompute",
        action="store_true",
        help="segment the frames again instead of using the stored tumoroid table",
    )
    _add_common(report)
    report.set_defaults(handler=cmd_report)
    return dict(HANDLERS)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=DEFAULT_BOOTSTRAP,
        metavar="N",
        help=f"bootstrap replicates for the intervals (default {DEFAULT_BOOTSTRAP}; 0: none)",
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")


# -- the pipeline ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _ChamberMap:
    control: tuple[str, ...]
    exclude: tuple[str, ...]
    syringes: dict[str, dict[str, float]] | None


def _chamber_map(protocol_text: str, source: str) -> _ChamberMap:
    """The protocol's control and excluded chambers, and syringe contents it declares.

    Parsed with the protocol loader; if the stored text no longer parses (a protocol of an
    older chipctl), its ``[chambers]`` table is read directly.
    """
    from chipctl.protocol.loader import parse_protocol

    try:
        protocol = parse_protocol(protocol_text, source)
    except (ProtocolError, ValueError, KeyError):
        protocol = None
    if protocol is not None:
        chambers = getattr(protocol, "chambers", None)
        syringes = getattr(protocol, "syringes", None) or None
        return _ChamberMap(
            tuple(getattr(chambers, "control", ())),
            tuple(getattr(chambers, "exclude", ())),
            {pump: dict(s.contents_nm) for pump, s in syringes.items()} if syringes else None,
        )
    try:
        table = tomllib.loads(protocol_text).get("chambers", {})
    except tomllib.TOMLDecodeError:
        table = {}
    if not isinstance(table, dict):
        table = {}

    def names(key: str) -> tuple[str, ...]:
        value = table.get(key, [])
        return tuple(str(v) for v in value) if isinstance(value, list) else ()

    return _ChamberMap(names("control"), names("exclude"), None)


@dataclass(frozen=True)
class _Inputs:
    tumoroids: dict[str, np.ndarray[Any, Any]]
    chambers: dict[str, np.ndarray[Any, Any]] | None
    recomputed: bool
    frames: int


def _image_tables(run: Any, recompute: bool) -> _Inputs:
    from chipctl.analysis.images import analyze_images

    if not recompute and _TUMOROIDS in run.tables():
        tumoroids = run.table(_TUMOROIDS)
        if len(tumoroids.get("t_s", ())):
            chambers = run.table(_CHAMBERS) if _CHAMBERS in run.tables() else None
            return _Inputs(tumoroids, chambers, False, 0)
    try:
        tables = analyze_images(run)
    except ValueError as exc:
        raise InputError(f"{run.path}: {exc}") from None
    return _Inputs(tables.tumoroids, tables.chambers, True, tables.frames)


def _analyse(run: Any, inputs: _Inputs, n_boot: int, seed: int, *, need_images: bool) -> Any:
    """Compute the exposure and the dose response.

    Without tumoroids: an error, or (``need_images`` False) the exposure alone, with a
    problem line saying why there is no dose response.
    """
    from chipctl.analysis.exposure import exposure_from_run
    from chipctl.analysis.gr import RunAnalysis, analyse_run

    plan = _chamber_map(run.protocol_text, f"{run.path}:/protocol/source")
    _, exposures = exposure_from_run(run, syringe_contents=plan.syringes)
    if not len(inputs.tumoroids.get("t_s", ())):
        if inputs.recomputed and inputs.frames == 0:
            why = f"{run.path}: the run has no brightfield frames to analyse"
        else:
            why = f"{run.path}: no tumoroids were found in any brightfield frame"
        if need_images:
            raise InputError(why)
        return RunAnalysis(tuple(exposures), (), plan.control, plan.exclude, False, (why,))
    return analyse_run(
        exposures,
        inputs.tumoroids,
        control=plan.control,
        exclude=plan.exclude,
        n_boot=n_boot,
        seed=seed,
    )


def _open(path: Path) -> Any:
    """Open a run file; a missing or foreign file is bad input (exit 2), in one line."""
    from chipctl.runfile import open_run

    try:
        return open_run(path)
    except RunFileError as exc:
        raise InputError(str(exc)) from None


def _check_args(args: argparse.Namespace) -> None:
    if args.bootstrap < 0:
        raise InputError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")


def _print_summary(analysis: Any, out: Any = None) -> None:
    from chipctl.analysis.report import summary_lines

    stream = sys.stdout if out is None else out
    for line in summary_lines(analysis):
        print(line, file=stream)


def cmd_analyze(args: argparse.Namespace) -> int:
    """``chipctl analyze RUN.h5``: recompute, print a summary, store under ``/analysis``."""
    from chipctl.analysis.store import exposure_tables, gr_tables, image_tables, write_analysis

    _check_args(args)
    with _open(args.run) as run:
        if not args.no_store and run.status == "running":
            raise InputError(
                f"{args.run}: the run is still being written (status 'running'); "
                "use --no-store to analyse it without writing"
            )
        inputs = _image_tables(run, recompute=True)
        analysis = _analyse(run, inputs, args.bootstrap, args.seed, need_images=True)
    tables = {**exposure_tables(analysis.exposures), **gr_tables(analysis)}
    if inputs.chambers is not None:
        tables.update(image_tables(inputs.tumoroids, inputs.chambers))
    n_rows = len(inputs.tumoroids.get("t_s", ()))
    print(f"{args.run}: {inputs.frames} frames analysed, {n_rows} tumoroid measurements")
    _print_summary(analysis)
    if args.no_store:
        print("not stored (--no-store)")
        return 0
    written = write_analysis(args.run, tables)
    print(f"stored: {', '.join(written)}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``chipctl report RUN.h5 --out DIR``: figures and ``DIR/index.html``."""
    from chipctl.analysis.report import write_report

    _check_args(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    with _open(args.run) as run:
        inputs = _image_tables(run, recompute=args.recompute)
        if inputs.recomputed:
            print(f"{args.run}: no stored tumoroid table, segmented {inputs.frames} frames")
        analysis = _analyse(run, inputs, args.bootstrap, args.seed, need_images=False)
        try:
            files = write_report(run, analysis, out)
        except OSError as exc:
            raise InputError(f"--out {out}: cannot write the report ({exc})") from None
    _print_summary(analysis)
    print(f"report: {files[0]}")
    return 0


#: The handlers by command name.
HANDLERS: Final[Mapping[str, Callable[[argparse.Namespace], int]]] = {
    "analyze": cmd_analyze,
    "report": cmd_report,
}
