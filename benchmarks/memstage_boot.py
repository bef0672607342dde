"""Fork-server boot for ``worker_memory.py``: stops each worker at two early stages.

Not part of the runtime: ``worker_memory.py`` starts a fork server with this module's
:func:`install` run first, so that every worker it forks stops itself (SIGSTOP) right at
the start of ``worker_main`` (just after the fork) and once more right before its seccomp
filter is loaded (every other confinement step done; ``kill`` is still allowed there).
The measuring process reads ``/proc/<pid>/smaps`` of the stopped worker and continues it.
:func:`dump_objects` (``--explain``) has the fork server list the objects it holds right
before it serves; :func:`warm` (``--warm``, an experiment) has it serve recorded frames
first.
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


def dump_objects(path: str) -> None:
    """Have the fork server write (address, size, type) of every object it can reach, right
    before it serves (for ``worker_memory.py --explain``)."""
    import gc
    import sys
    import types

    from sandbox import _forkserver

    real_run = _forkserver._Server.run

    def run(self: Any) -> None:
        seen: set[int] = set()
        gc.unfreeze()  # frozen objects are not listed; unfreeze and freeze move list heads
        stack: list[object] = gc.get_objects()
        gc.freeze()
        with open(path, "w") as out:
            while stack:
                obj = stack.pop()
                if id(obj) in seen:
                    continue
                seen.add(id(obj))
                out.write(f"{id(obj)}\t{sys.getsizeof(obj)}\t{type(obj).__name__}\n")
                if type(obj) is types.CodeType:
                    stack.extend((obj.co_consts, obj.co_names, obj.co_code, obj.co_linetable))
                else:
                    stack.extend(gc.get_referents(obj))
        del seen, stack
        real_run(self)

    _forkserver._Server.run = run  # type: ignore[method-assign]


def warm(frames_path: str, times: int) -> None:  # experiment: serve recorded frames first
    import gc
    import json
    import socket

    from sandbox import _forkserver, _worker
    from sandbox._protocol import HEADER

    real_prepare = _forkserver._prepare
    with open(frames_path) as f:
        frames = json.load(f)

    def prepare(config: Any) -> Any:
        rt = real_prepare(config)
        for _ in range(times):
            a, b = socket.socketpair()
            data = b"".join(
                HEADER.pack(len(p)) + p for p in (json.dumps(fr).encode() for fr in frames)
            )
            b.sendall(data)
            b.shutdown(socket.SHUT_WR)
            old = signal.signal(signal.SIGPROF, signal.SIG_IGN)
            try:
                _worker._Server(a, rt).serve({})
            finally:
                signal.signal(signal.SIGPROF, old)
                gc.unfreeze()
            a.close()
            b.close()
        return rt

    _forkserver._prepare = prepare
