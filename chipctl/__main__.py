"""``python -m chipctl`` runs the command-line interface."""

from chipctl.cli import main

raise SystemExit(main())
