"""The host's end of a worker channel: non-blocking reads, the adaptive spin, GIL-keeping calls.

Real socketpairs, no mocks. Timing is never asserted, and neither is a decision of the spin
that follows from a measured time (how long a wait took depends on the machine's load). Its
state is asserted where it follows from what happened: nothing was sent, so a spin ran out;
the bytes were there before it began, so it got its answer.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from sandbox._protocol import (
    EXPLORE_EVERY,
    EXPLORE_RUN,
    MAX_EXPLORE_GAP,
    MEAN_WEIGHT,
    MEDIAN_STEP,
    OUTLIER_FACTOR,
    SPIN_CAP_S,
    ChannelClosed,
    FrameReader,
    FrameTooLarge,
    SpinWait,
    encode_frame,
)
from sandbox._quickio import AVAILABLE, FdProbe, QuickIO

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
    assert waiter is not None
    prefer_spinning(waiter)  # this wait spins
    waiter.penalty = 4  # backed off before
    a.sendall(encode_frame({"n": 1}, 100))
    assert reader.read(time.monotonic() + 5, spin=True) == {"n": 1}
    # The bytes were there before the spin began, so it got its answer: the back-off is
    # reset and nothing is skipped. (Whether the *next* wait spins also depends on how long
    # this one took, preemptions included: a measurement, so not asserted.)
    assert (waiter.penalty, waiter.skip) == (0, 0)


def test_a_spin_that_runs_out_backs_off_1_2_4_waits_then_resets_on_success() -> None:
    waiter = SpinWait()
    prefer_spinning(waiter, typical=50e-6)
    waiter._missed(100e-6)
    assert (waiter.penalty, waiter.skip) == (1, 1)
    assert waiter.budget() == 0.0  # skipped once...
    assert waiter.budget() == 100e-6  # ...then it tries again, for twice the typical answer
    waiter._missed(100e-6)
    assert (waiter.penalty, waiter.skip) == (2, 2)
    waiter._missed(100e-6)
    assert (waiter.penalty, waiter.skip) == (4, 4)
    for _ in range(20):
        waiter._missed(100e-6)
    assert waiter.penalty == 256  # the cap


def prefer_spinning(waiter: SpinWait, typical: float = SPIN_CAP_S / 4) -> None:
    """A history of short answers, spun waits shorter than slept ones, and the next turn
    not an exploring one: the next wait spins (unless backed off)."""
    waiter.typical, waiter.spun, waiter.slept, waiter.turn = typical, typical, 4 * typical, 0


def wait(waiter: SpinWait, took: float | Callable[[bool], float]) -> bool:
    """One wait as a reader makes it: ask for a budget, then record how long it took
    (``took``, or what ``took(spun)`` says). True when the wait spun first."""
    spun = waiter.budget() > 0
    waiter.record(took(spun) if callable(took) else took)
    return spun


def test_the_budget_follows_the_channels_own_answer_times() -> None:
    waiter = SpinWait()
    assert waiter.budget() == 0.0  # no history: the first wait sleeps and measures
    waiter.record(40e-6)
    assert (waiter.typical, waiter.slept) == (40e-6, 40e-6)
    # Spinning not measured yet: a run of EXPLORE_RUN spun waits, each for 2x typical...
    assert waiter.budget() == 80e-6
    waiter.record(20e-6)
    assert waiter.typical == pytest.approx(40e-6 * (1 - MEDIAN_STEP))  # one step down
    assert waiter.spun == 0.0  # ...whose mean counts once the run is over
    for _ in range(EXPLORE_RUN - 1):
        assert wait(waiter, 20e-6)
    assert waiter.spun == pytest.approx(20e-6)
    # A running median: a change of workload moves it within a few dozen waits...
    for _ in range(100):
        wait(waiter, 120e-6)
    assert 110e-6 < waiter.typical < 130e-6
    # ...one outlier, however long, moves it by one step only...
    before = waiter.typical
    waiter.record(50e-3)
    assert waiter.typical == pytest.approx(before * (1 + MEDIAN_STEP))
    # ...and a channel whose answers take longer than half the ceiling does not spin at all
    # (a wake-up is a small part of such a wait), until its answers are short again.
    for _ in range(100):
        wait(waiter, 5e-3)
    assert waiter.budget() == 0.0
    for _ in range(200):
        wait(waiter, 20e-6)
    assert 0.0 < 2 * waiter.typical <= SPIN_CAP_S


def test_the_channel_spins_where_it_pays_and_measures_the_other_policy() -> None:
    waiter = SpinWait()
    waiter.typical, waiter.spun, waiter.slept = 30e-6, 25e-6, 60e-6  # spinning pays
    policies = [wait(waiter, 25e-6) for _ in range(2 * EXPLORE_EVERY)]
    assert policies.count(False) == 2  # one wait in EXPLORE_EVERY sleeps, to measure it
    # Loaded cores: spun waits got longer than slept ones on average. It sleeps, and
    # measures spinning again by a run of EXPLORE_RUN spun waits after a gap that doubles
    # each time the run's mean says spinning still does not pay.
    waiter.spun = 90e-6
    waiter.turn = 0
    spun_turns = []
    for turn in range(1, 2000):
        if wait(waiter, lambda spun: 90e-6 if spun else 60e-6):
            spun_turns.append(turn)
    starts = [t for t in spun_turns if t - 1 not in spun_turns]
    assert all(
        list(range(start, start + EXPLORE_RUN))
        == spun_turns[i * EXPLORE_RUN : (i + 1) * EXPLORE_RUN]
        for i, start in enumerate(starts)
    )  # every try is a whole run
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:], strict=False)]
    assert gaps[:5] == [EXPLORE_EVERY * 2**i for i in range(5)]
    for _ in range(20):
        waiter.next_try = 0
        waiter.run_left = 0
        waiter.budget()
    assert waiter.gap == MAX_EXPLORE_GAP  # the cap
    # What a wait measured goes to the policy it was made under.
    waiter.next_try = 10**9
    waiter.run_left = 0
    assert waiter.budget() == 0.0 and not waiter.spinning
    waiter.spun = 90e-6
    waiter.record(50e-6)
    assert waiter.slept == pytest.approx(60e-6 - 10e-6 * MEAN_WEIGHT) and waiter.spun == 90e-6
    # Once spinning pays again, the gap is back to its start.
    waiter.spun = 20e-6
    waiter.budget()
    assert waiter.gap == EXPLORE_EVERY


def test_a_new_channel_where_spinning_does_not_pay_measures_it_again_after_the_first_gap() -> None:
    # The first run (spinning never measured) counts as a try like any other: the next run
    # comes EXPLORE_EVERY waits later, then after gaps that double. (It used to follow the
    # first at once: two runs back to back on a channel where spinning costs.)
    waiter = SpinWait()
    spun_turns = [
        turn for turn in range(1, 400) if wait(waiter, lambda spun: 90e-6 if spun else 60e-6)
    ]
    starts = [t for t in spun_turns if t - 1 not in spun_turns]
    assert len(spun_turns) == EXPLORE_RUN * len(starts)  # whole runs only
    assert starts[0] == 2  # the first wait sleeps and measures
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:], strict=False)]
    assert gaps[:4] == [EXPLORE_EVERY * 2**i for i in range(4)]


def test_a_run_that_pays_turns_spinning_back_on_however_stale_the_spun_mean() -> None:
    # The regression: a worker's spun mean went high while the host warmed up (270 us
    # against 190 us slept); later spun waits took 110 us, but each try moved the mean by
    # an eighth of the way and the tries got rarer, so it slept for thousands of waits.
    waiter = SpinWait()
    waiter.typical, waiter.spun, waiter.slept = 150e-6, 270e-6, 190e-6
    policies = [wait(waiter, lambda spun: 110e-6 if spun else 190e-6) for _ in range(40)]
    first_run = policies.index(True)
    assert policies[first_run : first_run + EXPLORE_RUN] == [True] * EXPLORE_RUN
    assert waiter.spun == pytest.approx(110e-6)  # the run's mean, not 1/8 of the way
    after = policies[first_run + EXPLORE_RUN :]
    assert after and after.count(True) >= len(after) - 2  # spinning again (sleeps: exploring)


def test_a_wait_that_may_not_spin_is_not_measured(pair: SocketPair) -> None:
    # Another host thread's call is in flight: the read sleeps at once, and its duration
    # says nothing about either policy, so it goes into neither mean.
    a, b = pair
    reader = host_reader(b)
    waiter = reader._spin
    assert waiter is not None
    prefer_spinning(waiter)
    before = (waiter.typical, waiter.spun, waiter.slept, waiter.turn)

    def send_later() -> None:
        # Most likely after the read began to wait; either order must leave the state alone.
        time.sleep(0.01)
        a.sendall(encode_frame({"n": 1}, 100))

    thread = threading.Thread(target=send_later)
    thread.start()
    assert reader.read(time.monotonic() + 60, spin=False) == {"n": 1}
    thread.join()
    assert (waiter.typical, waiter.spun, waiter.slept, waiter.turn) == before


def test_one_outlier_does_not_turn_spinning_off() -> None:
    # Spinning pays on this channel; then one spun wait is preempted for 5 ms. It counts as
    # OUTLIER_FACTOR typical waits, so the channel keeps spinning.
    waiter = SpinWait()
    waiter.typical, waiter.spun, waiter.slept = 40e-6, 30e-6, 60e-6
    waiter.turn = 1
    assert waiter.budget() > 0
    waiter.record(5e-3)
    assert waiter.spun == pytest.approx(30e-6 + (OUTLIER_FACTOR * 40e-6 - 30e-6) * MEAN_WEIGHT)
    assert waiter.spun < waiter.slept
    assert waiter.budget() > 0
    # Spun waits that are longer than slept ones on average still turn it off (loaded cores).
    for _ in range(40):
        waiter.spinning = True
        waiter.record(150e-6)
    assert waiter.spun > waiter.slept
    waiter.turn = 1
    waiter.next_try = 10**9
    assert waiter.budget() == 0.0


def test_a_spin_that_runs_out_stops_spinning_and_an_answered_one_resets_it(
    pair: SocketPair,
) -> None:
    a, b = pair
    reader = host_reader(b)
    waiter = reader._spin
    assert waiter is not None
    prefer_spinning(waiter)  # this wait spins
    # Nobody sends: the spin can only run out, however fast or busy the machine is.
    with pytest.raises(TimeoutError):
        reader.read(time.monotonic() + 0.05, spin=True)
    assert (waiter.penalty, waiter.skip) == (1, 1)
    assert waiter.budget() == 0.0  # the next wait sleeps at once
    a.sendall(encode_frame({"n": 1}, 100))
    assert reader.read(time.monotonic() + 5, spin=True) == {"n": 1}
    # Once the answers are short again (here: set by hand, with the back-off still up), the
    # next spin finds its answer already there, and that resets the back-off.
    prefer_spinning(waiter)
    (waiter.skip, waiter.penalty) = (0, 2)
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
    assert waiter.spin_blocking(b, time.monotonic(), SPIN_CAP_S)
    assert b.recv(65536, socket.MSG_PEEK) == frame
    assert reader.read() == {"n": 1}
    assert not reader.has_buffered_bytes()
    assert b.gettimeout() is None  # still blocking
    # Nothing there: the probe runs out of budget, consumes nothing and backs off.
    assert not waiter.spin_blocking(b, time.monotonic(), SPIN_CAP_S)
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
        prefer_spinning(waiter)  # this read spins first
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


def test_fd_probe_reports_a_pidfd_readable_once_the_process_exited() -> None:
    # The fork server's liveness check: a pidfd turns readable when its process exits.
    pid = os.fork()
    if pid == 0:  # the child waits to be killed
        time.sleep(60)
        os._exit(0)
    pidfd = os.pidfd_open(pid)
    try:
        probe = FdProbe(pidfd)
        assert not probe.ready()
        os.kill(pid, signal.SIGKILL)
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        assert poller.poll(10_000)  # exited (a structural wait, not a timing)
        assert probe.ready()
    finally:
        os.waitpid(pid, 0)
        os.close(pidfd)
