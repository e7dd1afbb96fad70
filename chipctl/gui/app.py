"""Start the operator GUI: the Qt application, the controller and the main window.

:func:`run_gui` is what ``chipctl gui`` calls. It needs a display (or
``QT_QPA_PLATFORM=offscreen`` for a headless check) and the ``gui`` extra (PyQt5,
pyqtgraph); both are checked first, so a missing one is one clear line, not a Qt abort.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from chipctl.config import InstrumentConfig
from chipctl.errors import InputError

__all__ = ["check_display", "run_gui"]


def check_display() -> None:
    """Raise :class:`InputError` if Qt would find no display to open a window on."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY")
        or os.environ.get("WAYLAND_DISPLAY")
        or os.environ.get("QT_QPA_PLATFORM")
    ):
        raise InputError(
            "no display to open the window on (DISPLAY is not set); run it in a desktop "
            "session, or set QT_QPA_PLATFORM=offscreen to check it headless"
        )
    try:
        import pyqtgraph  # noqa: F401
        from PyQt5 import QtWidgets  # noqa: F401
    except ImportError as exc:
        raise InputError(
            f"the GUI needs PyQt5 and pyqtgraph ({exc.name} is missing): pip install 'chipctl[gui]'"
        ) from None


def run_gui(
    config: InstrumentConfig | None,
    *,
    speed: float | None = None,
    seed: int = 0,
    open_path: Path | None = None,
    run_dir: Path = Path("runs"),
    quit_after_s: float | None = None,
) -> int:
    """Open the main window and run the Qt event loop until it closes; returns 0.

    Args:
        config: the instrument (None: only browse run files).
        speed: the simulated clock's speed (manual control, and the runs' default).
        seed: the simulated world's seed.
        open_path: a run file to open at once.
        run_dir: where run files go.
        quit_after_s: close the window after this many seconds (for scripted checks).
    """
    check_display()
    from PyQt5.QtCore import QTimer
    from PyQt5.QtWidgets import QApplication

    from chipctl.gui.controller import RigController
    from chipctl.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("chipctl")
    controller = (
        RigController(config, seed=seed, speed=speed, run_dir=run_dir)
        if config is not None
        else None
    )
    window = MainWindow(controller)
    window.show()
    if open_path is not None and not window.open_run(open_path):
        window.shutdown()
        raise InputError(f"{open_path}: not a readable chipctl run file")
    window.start()
    if quit_after_s is not None:
        QTimer.singleShot(int(quit_after_s * 1000), window.shutdown_and_close)
    app.exec_()
    return 0
