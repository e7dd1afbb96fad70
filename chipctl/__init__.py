"""chipctl: controller for microfluidic tumor-on-a-chip instruments.

The scripting API is re-exported here::

    import chipctl
    result = chipctl.run_protocol("perfusion-check", sim=True)
    print(result.state, result.path)

See :mod:`chipctl.api` for the functions, :mod:`chipctl.runfile` to read run files.
"""

from __future__ import annotations

__version__ = "0.1.0"

from chipctl.api import (
    RunResult,
    check_protocol,
    open_rig,
    run_protocol,
)

__all__ = ["RunResult", "__version__", "check_protocol", "open_rig", "run_protocol"]
