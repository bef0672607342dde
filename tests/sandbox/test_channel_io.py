"""The host's end of a worker channel: non-blocking reads, the adaptive spin, GIL-keeping calls.

Real socketpairs, no mocks. Timing is never asserted; the spin's decisions are (its state
after a wait that was answered in time, or not).
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


def test_a_wait_answered_within_the_spin_keeps_spinning(pair: SocketPair) -> None:
    a, b = pair
    reader = host_reader(b)
    waiter = reader._spin
    assert waiter is not None and waiter.worth_it()
    a.sendall(encode_frame({"n": 1}, 100))
    assert reader.read(time.monotonic() + 5, spin=True) == {"n": 1}
    assert waiter.penalty == 0 and waiter.skip == 0
    assert waiter.worth_it()


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


def test_a_slow_wait_stops_spinning_until_a_short_one(pair: SocketPair) -> None:
    a, b = pair
    reader = host_reader(b)
    waiter = reader._spin
    assert waiter is not None
    sender = threading.Timer(0.05, lambda: a.sendall(encode_frame({"n": 1}, 100)))
    sender.start()
    try:
        assert reader.read(time.monotonic() + 5, spin=True) == {"n": 1}
    finally:
        sender.join()
    # The answer took far longer than the spin budget: the next wait sleeps at once.
    assert waiter.last > SPIN_MAX_S
    assert waiter.penalty >= 1
    while waiter.skip:
        assert not waiter.worth_it()
    assert not waiter.worth_it()  # last wait was long
    a.sendall(encode_frame({"n": 2}, 100))
    assert reader.read(time.monotonic() + 5, spin=False) == {"n": 2}
    assert waiter.worth_it()  # a short wait again


def test_worker_side_spin_probes_without_consuming(pair: SocketPair) -> None:
    a, b = pair  # b is blocking, as a worker's channel is
    reader = FrameReader(b, 1000, spin=True)
    a.sendall(encode_frame({"n": 1}, 100))
    assert reader.read() == {"n": 1}
    assert b.gettimeout() is None
    assert reader._spin is not None and reader._spin.worth_it()
    sender = threading.Timer(0.05, lambda: a.sendall(encode_frame({"n": 2}, 100)))
    sender.start()
    try:
        assert reader.read() == {"n": 2}  # spun, gave up, then slept in recv
    finally:
        sender.join()
    assert not reader._spin.worth_it()
    a.close()
    with pytest.raises(ChannelClosed):
        reader.read()


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
