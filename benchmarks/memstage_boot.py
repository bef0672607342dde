"""Fork-server boot for ``worker_memory.py``: stops each worker at two early stages.

Not part of the runtime: ``worker_memory.py`` starts a fork server with this module's
:func:`install` run first, so that every worker it forks stops itself (SIGSTOP) right at
the start of ``worker_main`` (just after the fork) and once more right before its seccomp
filter is loaded (every other confinement step done; ``kill`` is still allowed there).
The measuring process reads ``/proc/<pid>/smaps`` of the stopped worker and continues it.
"""

from __future__ import annotations

import os
import signal
from typing import Any


def _stop() -> None:
    os.kill(os.getpid(), signal.SIGSTOP)


def install() -> None:
    from sandbox import _seccomp, _worker

    real_main = _worker.worker_main

    def worker_main(*args: Any) -> Any:
        _stop()
        return real_main(*args)

    _worker.worker_main = worker_main  # type: ignore[assignment]

    real_load = _seccomp.CompiledFilter.load

    def load(self: Any) -> None:
        _stop()
        real_load(self)

    _seccomp.CompiledFilter.load = load  # type: ignore[method-assign]
