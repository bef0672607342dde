"""Non-blocking socket calls that keep the GIL (host side of worker channels).

Every socket method of CPython releases the GIL around its system call, even when the call
cannot block (a non-blocking ``send``, ``recv`` of bytes that are already there, ``poll``
with a zero timeout). With one host thread that costs nothing. With several host threads
calling sandboxed plugins at once, each release hands the GIL to a waiting thread: a
futex wake-up, a context switch, and the releasing thread then waits to get it back. perf
on the throughput benchmark (2 host threads) showed a third of the host's CPU in exactly
that (``pthread_cond_signal`` -> ``try_to_wake_up``, ``futex_wait``).

:class:`QuickIO` makes those three calls through ``ctypes.PyDLL``, which calls C functions
*without* releasing the GIL. None of them blocks (``MSG_DONTWAIT``, zero timeout), so
holding the GIL for them is safe: a host thread then gives the GIL away only when it
really waits for its worker (``poll`` with a timeout, through the ``select`` module) or
yields its CPU in a spinning wait (``os.sched_yield``: the CPU may go to another process
for a scheduler slice, and the other host threads must not wait that slice for the GIL;
see ``_protocol.SpinWait.spin``). The supervisor uses them only while another call is in
flight; alone, CPython's own methods are cheaper (no ctypes argument conversion).

Where ``ctypes`` or the C library's symbols are unavailable, :data:`AVAILABLE` is false and
callers keep using the socket methods.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

__all__ = ["AVAILABLE", "FdProbe", "QuickIO"]

_POLLIN = 0x001
_BUFFER = 65536

try:
    import ctypes

    _libc = ctypes.PyDLL(None, use_errno=True)  # PyDLL: the GIL stays held during calls
    # No argtypes (converting through them costs more than the system call): every
    # argument is passed as an object of its exact C type (c_int, c_size_t, a pointer).
    _send = _libc.send
    _send.restype = ctypes.c_ssize_t
    _recv = _libc.recv
    _recv.restype = ctypes.c_ssize_t
    _poll = _libc.poll
    _poll.restype = ctypes.c_int
    _get_errno = ctypes.get_errno
    _c_int = ctypes.c_int
    _c_size_t = ctypes.c_size_t
    _BUFFER_SIZE = ctypes.c_size_t(_BUFFER)
    _ONE = ctypes.c_ulong(1)
    _ZERO = ctypes.c_int(0)

    class _PollFd(ctypes.Structure):
        _fields_ = [("fd", ctypes.c_int), ("events", ctypes.c_short), ("revents", ctypes.c_short)]

    # Linux flags (MSG_NOSIGNAL does not exist everywhere): the sandbox is Linux-only, and
    # elsewhere this module must still import.
    _SEND_FLAGS = ctypes.c_int(socket.MSG_NOSIGNAL | socket.MSG_DONTWAIT)
    _RECV_FLAGS = ctypes.c_int(socket.MSG_DONTWAIT)
    AVAILABLE = True
except (ImportError, OSError, AttributeError):  # pragma: no cover - non-Linux hosts
    AVAILABLE = False
_AGAIN = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)
_GONE = (errno.ECONNRESET, errno.EPIPE)


class QuickIO:
    """GIL-holding, never-blocking ``poll(0)``/``recv``/``send`` on one socket.

    The socket object must stay open while this is used (the supervisor disposes of a
    worker's channel only when no call uses it).
    """

    __slots__ = ("_buf", "_fd", "_pollfd", "_pollref")

    def __init__(self, sock: socket.socket) -> None:
        self._fd: Any = _c_int(sock.fileno())
        self._pollfd: Any = _PollFd(sock.fileno(), _POLLIN, 0)
        self._pollref: Any = ctypes.byref(self._pollfd)
        self._buf: Any = ctypes.create_string_buffer(_BUFFER)

    def readable(self) -> bool:
        """Bytes waiting, or EOF / an error condition (both end in a recv that says so)."""
        return bool(_poll(self._pollref, _ONE, _ZERO) > 0)

    def recv(self) -> bytes | None:
        """Up to 64 KiB that are already there; ``b""`` at EOF; None when there are none."""
        n = _recv(self._fd, self._buf, _BUFFER_SIZE, _RECV_FLAGS)
        if n >= 0:
            return ctypes.string_at(self._buf, n)
        code = _get_errno()
        if code in _AGAIN:
            return None
        if code in _GONE:
            return b""
        raise OSError(code, os.strerror(code))

    def send(self, data: bytes) -> int:
        """How much of ``data`` the socket took now (0 when its buffer is full).

        Raises ``OSError`` (EPIPE, ECONNRESET...) when the worker is gone; never SIGPIPE.
        """
        n = _send(self._fd, data, _c_size_t(len(data)), _SEND_FLAGS)
        if n >= 0:
            return int(n)
        code = _get_errno()
        if code in _AGAIN:
            return 0
        raise OSError(code, os.strerror(code))


class FdProbe:
    """``poll(fd, POLLIN, 0)`` keeping the GIL: is a descriptor readable *now*?

    For the fork server's pidfd, which turns readable when the server exits: every
    checkout of a worker asks, under the pool's lock. ``Popen.poll()`` there released the
    GIL in ``waitpid`` while the lock was held, and with two host threads each such release
    handed the GIL to a thread that then blocked on the lock (a convoy: two futex wake-ups
    per call, and the threads' calls serialised). Never blocks (zero timeout).
    """

    __slots__ = ("_fd", "_pollfd", "_pollref")

    def __init__(self, fd: int) -> None:
        self._fd = fd
        if AVAILABLE:
            self._pollfd: Any = _PollFd(fd, _POLLIN, 0)
            self._pollref: Any = ctypes.byref(self._pollfd)

    def ready(self) -> bool:
        """True when ``fd`` is readable (for a pidfd: the process has exited) or in error."""
        if AVAILABLE:
            return bool(_poll(self._pollref, _ONE, _ZERO) != 0)
        import select  # pragma: no cover - non-Linux hosts have no pidfd anyway

        poller = select.poll()  # pragma: no cover
        poller.register(self._fd, select.POLLIN)  # pragma: no cover
        return bool(poller.poll(0))  # pragma: no cover
