"""The host's handle on one worker process: its channel, its pidfd, its exit report.

Which process runs this: the host, in whichever thread holds the worker (a pool hands each
worker to one calling thread at a time), and in the thread that closes its pool. The worker
process itself runs ``_worker``.

Why a handle of its own: the three ways to reach a worker have rules that must hold whoever
uses them. The channel is non-blocking and every send is bounded by the call's deadline, so a
worker that stops reading cannot hang a host thread. The pidfd names this process and no other,
so a SIGKILL can never hit a recycled pid; it is closed under the same lock that signals
through it, so a closed descriptor number reused by another thread is never signalled. The
exit status comes from the fork server (``_forkclient.ExitBox``), which reaps the worker.

The worker's CPU time is read by the host from the kernel (:meth:`WorkerHandle.cpu_ns`), never
taken from what the worker says: after a breakout everything a worker reports about itself
is forged at will, and its own ``ITIMER_PROF`` can be disarmed.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import threading
import time
from time import clock_gettime_ns
from typing import Any

from ._forkclient import ForkedProcess
from ._protocol import FrameReader
from ._quickio import AVAILABLE as QUICK_IO
from ._quickio import QuickIO

__all__ = ["WorkerHandle", "process_cpu_clock"]


def process_cpu_clock(pid: int) -> int:
    """The clock id of process ``pid``'s CPU time (the kernel's ``MAKE_PROCESS_CPUCLOCK(pid,
    CPUCLOCK_SCHED)``, what glibc's ``clock_getcpuclockid`` returns).

    Why this clock: ``clock_gettime`` on it is one system call (~0.6 us from Python,
    measured against ~20 us for opening and parsing ``/proc/<pid>/stat`` or ``schedstat``),
    with nanosecond resolution (the scheduler's own runtime, not 10 ms ticks), and it needs
    no descriptor per worker. The kernel lets any process read it: no ptrace check, so a
    worker running as ``nobody`` in its own user namespace is readable too.
    """
    return (~pid << 3) | 2


class WorkerHandle:
    """The host's handle on one worker process."""

    def __init__(
        self,
        proc: ForkedProcess,
        max_frame_bytes: int,
        memory_mb: int,
        server_epoch: int,
        cpu_s: int,
    ) -> None:
        self.pid = proc.pid
        self.server_epoch = server_epoch  # which fork server made it
        self.sock = proc.channel
        self.pidfd = proc.pidfd
        self.exit = proc.exit
        # Non-blocking for good: a frame that is already there costs one recv/send and no
        # poll or timeout bookkeeping; waits happen in poll() against the call's deadline.
        # `quick` does the calls that cannot block without releasing the GIL (_quickio).
        self.quick = QuickIO(proc.channel) if QUICK_IO else None
        self.reader = FrameReader(proc.channel, max_frame_bytes, nonblocking=True, quick=self.quick)
        self.max_frame_bytes = max_frame_bytes
        self.memory_mb = memory_mb
        self.cpu_s = cpu_s  # its RLIMIT_CPU
        self.cpu_clock = process_cpu_clock(proc.pid)
        # Its CPU time (ns, read by the host) when it last went idle (after its load or a
        # call), and when the current call took it: the idle watch and the per-call
        # budget both measure from these.
        self.idle_cpu_ns = 0
        self.call_cpu_ns = 0
        # The current call's CPU budget (ns, all but the answer's share; None when idle),
        # and the size of the request of its last call (freed while it reads the next).
        self.call_limit_ns: int | None = None
        self.last_request_size = 0
        # Set (before the kill) by whoever found it over a CPU budget, so the death is
        # reported as CpuLimitExceeded, not as a stop by the host.
        self.cpu_verdict: str | None = None
        self.lock = threading.Lock()
        self.killed = False  # the host killed it (deadline, recycling, close)
        self.disposed = False
        self.baseline_rss_kb = 0
        self.confinement: dict[str, str] = {}
        self.init_result: Any = None

    def usable(self) -> bool:
        return not (self.killed or self.disposed or self.exit.reported)

    def has_stray_input(self) -> bool:
        """Anything readable while idle: EOF (it died) or bytes nobody asked for.

        An idle worker must send nothing; a frame sent ahead of time could otherwise be
        read as the answer to the next call.
        """
        if self.reader.has_buffered_bytes():
            return True
        return self.quick.readable() if self.quick is not None else self.reader.readable()

    def cpu_ns(self) -> int | None:
        """The CPU time (user + system, all threads) the process has used, in ns, as the
        kernel counts it; None once the process has been reaped.

        The clock names a pid, not this process: a caller that must be sure the figure is
        this worker's checks that it is still alive *after* the read (its pidfd not
        readable, or its channel not at EOF). Where the host calls this right after the
        worker sent a frame, the pid cannot have been reused in between: the fork server
        must first reap it, and the kernel hands pids out in a cycle through ``pid_max``.
        """
        try:
            return clock_gettime_ns(self.cpu_clock)
        except OSError:
            return None

    def wait_exited(self, timeout: float) -> bool:
        """True once the process has exited (its pidfd turns readable), within ``timeout``."""
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        return bool(poller.poll(timeout * 1000))

    def send(self, frame: bytes, deadline: float, quick: bool = False) -> None:
        """Send a frame; TimeoutError past ``deadline`` (a worker that stops reading).

        MSG_NOSIGNAL: EPIPE (an OSError), never SIGPIPE, if the worker died. The socket is
        non-blocking: a frame that fits in the socket buffer (nearly all) is one send().
        ``quick``: without releasing the GIL (other host threads are calling workers too).
        """
        if time.monotonic() >= deadline:
            raise TimeoutError
        if quick and self.quick is not None:
            sent = self.quick.send(frame)
        else:
            try:
                sent = self.sock.send(frame, socket.MSG_NOSIGNAL)
            except BlockingIOError:
                sent = 0
        if sent == len(frame):
            return
        rest = memoryview(frame)[sent:]
        poller = select.poll()  # not select(): fds above 1023 are common in busy hosts
        poller.register(self.sock, select.POLLOUT)
        while rest:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            poller.poll(int(remaining * 1000) + 1)
            try:
                rest = rest[self.sock.send(rest, socket.MSG_NOSIGNAL) :]
            except BlockingIOError:
                continue

    def kill(self) -> None:
        """SIGKILL through the pidfd: it names this process, never a recycled pid.

        Under the lock with :meth:`dispose`: closing ``pidfd`` in one thread while another
        signals through it could hit a reused descriptor number, i.e. another process.
        """
        with self.lock:
            self.killed = True
            if not self.disposed:
                try:
                    signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def wait_gone(self, timeout: float) -> None:
        """Wait until the process has exited and the fork server has reaped it."""
        if not self.disposed:
            self.wait_exited(timeout)
        self.exit.wait(timeout)

    def dispose(self) -> None:
        with self.lock:
            if not self.disposed:
                self.disposed = True
                self.sock.close()
                os.close(self.pidfd)
