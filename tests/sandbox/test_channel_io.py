"""The host's end of a worker channel: non-blocking reads, the adaptive spin, GIL-keeping calls.

Real socketpairs, no mocks. Timing is never asserted, and neither is a decision of the spin
that follows from a measured time (how long a wait took depends on the machine's load). Its
state is asserted where it follows from what happened: nothing was sent, so a spin ran out;
the bytes were there before it began, so it got its answer.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from sandbox._protocol import (
    SPIN_MAX_S,
    ChannelClosed,
    FrameReader,
    FrameTooLarge,
    SpinWait,
    encode_frame,
)
from sandbox._quickio import AVAILABLE, QuickIO

SocketPair = tuple[socket.socket, socket.socket]


@pytest.fixture
def pair() -> Iterator[SocketPair]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def host_reader(sock: socket.socket, quick: bool = False) -> FrameReader:
    return FrameReader(
        sock, 1000, nonblocking=True, quick=QuickIO(sock) if quick and AVAILABLE else None
    )


# --- the non-blocking reader --------------------------------------------------------------


@pytest.mark.parametrize("spin", [False, True])
@pytest.mark.parametrize("quick", [False, True])
def test_nonblocking_reader_reads_frames_already_there(
    pair: SocketPair, spin: bool, quick: bool
) -> None:
    a, b = pair
    a.sendall(encode_frame({"n": 1}, 100) + encode_frame({"n": 2}, 100))
    reader = host_reader(b, quick)
    assert b.gettimeout() == 0.0  # non-blocking for good
    deadline = time.monotonic() + 5
    assert reader.read(deadline, spin=spin, quick=quick) == {"n": 1}
    assert reader.read(deadline, spin=spin, quick=quick) == {"n": 2}
    assert not reader.has_buffered_bytes()


@pytest.mark.parametrize("spin", [False, True])
def test_nonblocking_reader_waits_for_a_frame_sent_later_in_pieces(
    pair: SocketPair, spin: bool
) -> None:
    a, b = pair
    frame = encode_frame({"value": "é" * 10}, 100)

    def trickle() -> None:
        for byte in frame:
            time.sleep(0.001)
            a.send(bytes([byte]))

    sender = threading.Thread(target=trickle)
    sender.start()
    try:
        assert host_reader(b).read(time.monotonic() + 10, spin=spin) == {"value": "é" * 10}
    finally:
        sender.join()


@pytest.mark.parametrize("spin", [False, True])
def test_nonblocking_reader_gives_up_at_the_deadline(pair: SocketPair, spin: bool) -> None:
    a, b = pair
    a.sendall(b"\x00\x00\x00\x10{")  # a frame that never completes
    reader = host_reader(b)
    with pytest.raises(TimeoutError):
        reader.read(time.monotonic() + 0.05, spin=spin)
    with pytest.raises(TimeoutError):
        reader.read(time.monotonic() - 1, spin=spin)


@pytest.mark.parametrize("quick", [False, True])
def test_nonblocking_reader_reports_eof_and_says_the_socket_is_readable(
    pair: SocketPair, quick: bool
) -> None:
    a, b = pair
    reader = host_reader(b, quick)
    assert not reader.readable()
    a.sendall(b"\x00\x00")
    a.close()
    assert reader.readable()
    with pytest.raises(ChannelClosed) as info:
        reader.read(time.monotonic() + 5, spin=True, quick=quick)
    assert str(info.value) == "the other side closed the channel"


def test_nonblocking_reader_refuses_an_oversized_header(pair: SocketPair) -> None:
    a, b = pair
    a.sendall((5000).to_bytes(4, "big") + b"{}")
    with pytest.raises(FrameTooLarge) as info:
        host_reader(b).read(time.monotonic() + 5, spin=True)
    assert str(info.value) == "frame of 5000 bytes is over the 1000-byte limit"


# --- the spin's decisions -----------------------------------------------------------------


def test_a_wait_answered_within_the_spin_does_not_back_off(pair: SocketPair) -> None:
    a, b = pair
    reader = host_reader(b)
    waiter = reader._spin
    assert waiter is not None and waiter.worth_it()
    waiter.penalty = 4  # backed off before
    a.sendall(encode_frame({"n": 1}, 100))
    assert reader.read(time.monotonic() + 5, spin=True) == {"n": 1}
    # The bytes were there before the spin began, so it got its answer: the back-off is
    # reset and nothing is skipped. (Whether the *next* wait spins also depends on how long
    # this one took, preemptions included: a measurement, so not asserted.)
    assert (waiter.penalty, waiter.skip) == (0, 0)


def test_a_spin_that_runs_out_backs_off_1_2_4_waits_then_resets_on_success() -> None:
    waiter = SpinWait()
    waiter._missed(SPIN_MAX_S)
    assert (waiter.penalty, waiter.skip) == (1, 1)
    assert not waiter.worth_it()  # skipped once...
    assert waiter.worth_it()  # ...then it tries again
    waiter._missed(SPIN_MAX_S)
    assert (waiter.penalty, waiter.skip) == (2, 2)
    waiter._missed(SPIN_MAX_S)
    assert (waiter.penalty, waiter.skip) == (4, 4)
    for _ in range(20):
        waiter._missed(SPIN_MAX_S)
    assert waiter.penalty == 256  # the cap


def test_a_spin_that_runs_out_stops_spinning_and_an_answered_one_resets_it(
    pair: SocketPair,
) -> None:
    a, b = pair
    reader = host_reader(b)
    waiter = reader._spin
    assert waiter is not None
    # Nobody sends: the spin can only run out, however fast or busy the machine is.
    with pytest.raises(TimeoutError):
        reader.read(time.monotonic() + 0.05, spin=True)
    assert (waiter.penalty, waiter.skip) == (1, 1)
    assert not waiter.worth_it()  # the next wait sleeps at once
    a.sendall(encode_frame({"n": 1}, 100))
    assert reader.read(time.monotonic() + 5, spin=True) == {"n": 1}
    # Once a wait is short again (here: set by hand, with the back-off still up), the next
    # spin finds its answer already there, and that resets the back-off.
    (waiter.last, waiter.skip, waiter.penalty) = (0.0, 0, 2)
    a.sendall(encode_frame({"n": 2}, 100))
    assert reader.read(time.monotonic() + 5, spin=True) == {"n": 2}
    assert (waiter.penalty, waiter.skip) == (0, 0)


def _blocked_in_recv(thread: threading.Thread, sock: socket.socket) -> None:
    """Return once ``thread`` sleeps in the reader's 64 KiB ``recv`` on ``sock``.

    Read from /proc/self/task/<tid>/syscall (number, then the arguments: fd, buffer,
    length...): the spin's probe asks for 1 byte without blocking, so a 65536-byte read
    of this descriptor means the spin is over and the thread is asleep. This orders the
    test's send after the wait began without guessing at a delay. Where the kernel does not
    offer that file, it returns at once: the assertions hold in either order.
    """
    path = f"/proc/self/task/{thread.native_id}/syscall"
    want = (hex(sock.fileno()), hex(65536))
    give_up = time.monotonic() + 60  # a liveness bound only (the thread died, or never got here)
    while thread.is_alive() and time.monotonic() < give_up:
        try:
            with open(path) as f:
                fields = f.read().split()
        except OSError:
            return
        if len(fields) > 3 and (fields[1], fields[3]) == want:
            return
        time.sleep(0.001)


def _read_in_thread(reader: FrameReader) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []

    def run() -> None:
        try:
            out.append(reader.read())
        except Exception as exc:  # noqa: BLE001 - the test inspects what the read raised
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_worker_side_spin_probes_without_consuming(pair: SocketPair) -> None:
    a, b = pair  # b is blocking, as a worker's channel is
    reader = FrameReader(b, 1000, spin=True)
    waiter = reader._spin
    assert waiter is not None and b.gettimeout() is None
    frame = encode_frame({"n": 1}, 100)
    a.sendall(frame)
    # The probe sees the bytes and takes none of them: every byte is still in the socket.
    assert waiter.spin_blocking(b, time.monotonic())
    assert b.recv(65536, socket.MSG_PEEK) == frame
    assert reader.read() == {"n": 1}
    assert not reader.has_buffered_bytes()
    assert b.gettimeout() is None  # still blocking
    # Nothing there: the probe runs out of budget, consumes nothing and backs off.
    assert not waiter.spin_blocking(b, time.monotonic())
    assert (waiter.penalty, waiter.skip) == (1, 1)


@pytest.mark.parametrize("spin_first", [False, True])
def test_worker_side_reader_reads_a_later_frame_whole_and_reports_eof(
    pair: SocketPair, spin_first: bool
) -> None:
    a, b = pair
    reader = FrameReader(b, 1000, spin=True)
    waiter = reader._spin
    assert waiter is not None
    if spin_first:
        (waiter.last, waiter.skip, waiter.penalty) = (0.0, 0, 0)  # this read spins first
    else:
        waiter.skip = 1  # this read goes straight to recv
    thread, out = _read_in_thread(reader)
    _blocked_in_recv(thread, b)
    frame = encode_frame({"value": "é" * 10}, 100)
    a.sendall(frame[:3])  # in pieces: not even the whole header at first
    a.sendall(frame[3:])
    thread.join(60)
    assert out == [{"value": "é" * 10}]
    assert not reader.has_buffered_bytes()
    # A closed channel ends a waiting read with ChannelClosed, never with a hang.
    thread, out = _read_in_thread(reader)
    _blocked_in_recv(thread, b)
    a.close()
    thread.join(60)
    assert len(out) == 1 and type(out[0]) is ChannelClosed
    with pytest.raises(ChannelClosed):
        reader.read()


def test_worker_side_read_without_deadline_clears_an_earlier_timeout(pair: SocketPair) -> None:
    a, b = pair
    reader = FrameReader(b, 1000, spin=True)
    a.sendall(encode_frame({"n": 1}, 100))
    assert reader.read(time.monotonic() + 5) == {"n": 1}
    assert b.gettimeout() is not None  # a deadline read bounds the socket's recv
    a.sendall(encode_frame({"n": 2}, 100))
    assert reader.read() == {"n": 2}
    # Blocking again: a read without a deadline can neither time out nor poll in its probe.
    assert b.gettimeout() is None


# --- GIL-keeping calls ----------------------------------------------------------------------


needs_quickio = pytest.mark.skipif(not AVAILABLE, reason="ctypes has no C library here")


@needs_quickio
def test_quickio_send_recv_readable(pair: SocketPair) -> None:
    a, b = pair
    a.setblocking(False)
    b.setblocking(False)
    qa, qb = QuickIO(a), QuickIO(b)
    assert not qb.readable()
    assert qb.recv() is None
    assert qa.send(b"hello") == 5
    assert qb.readable()
    assert qb.recv() == b"hello"
    assert qb.recv() is None
    QuickIO.yield_cpu()


@needs_quickio
def test_quickio_send_reports_a_full_buffer_as_zero(pair: SocketPair) -> None:
    a, b = pair
    a.setblocking(False)
    qa = QuickIO(a)
    chunk = b"x" * 65536
    sent = 1
    for _ in range(10_000):
        sent = qa.send(chunk)
        if sent == 0:
            break
    assert sent == 0  # nobody reads b: the buffer filled up, and send did not block


@needs_quickio
def test_quickio_sees_eof_and_a_dead_peer(pair: SocketPair) -> None:
    a, b = pair
    b.setblocking(False)
    qb = QuickIO(b)
    a.close()
    assert qb.readable()
    assert qb.recv() == b""
    with pytest.raises(OSError) as info:  # and no SIGPIPE: this process is still here
        for _ in range(3):
            qb.send(b"x")
    assert info.value.errno in (errno.EPIPE, errno.ECONNRESET)
