"""``python -m chipctl.gui``: the same as ``chipctl gui`` (one-line errors, exit code 2)."""

from __future__ import annotations

import argparse
import sys

from chipctl.errors import ChipctlError
from chipctl.gui.cli import add_command


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` as ``chipctl gui`` arguments and run the GUI; returns the exit code."""
    parser = argparse.ArgumentParser(prog="chipctl")
    commands = parser.add_subparsers(dest="command")
    add_command(commands)
    args = parser.parse_args(["gui", *(sys.argv[1:] if argv is None else argv)])
    try:
        code: int = args.handler(args)
    except ChipctlError as exc:
        print(f"chipctl gui: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return code


if __name__ == "__main__":
    sys.exit(main())
