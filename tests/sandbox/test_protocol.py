"""Framing and the host's validation of worker frames (everything from a worker is hostile)."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox import WorkerCrashed
from sandbox._protocol import (
    ChannelClosed,
    ErrorFrame,
    FrameReader,
    FrameTooLarge,
    HostCallFrame,
    LoadedFrame,
    ProtocolError,
    ReadyFrame,
    ResultFrame,
    encode_frame,
    parse_worker_frame,
    send_frame,
)

CALL = frozenset({"host_call", "result", "error"})


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_frame_is_big_endian_length_then_json() -> None:
    assert encode_frame({"op": "x", "n": [1, 2]}, 100) == b'\x00\x00\x00\x14{"op":"x","n":[1,2]}'


def test_encode_refuses_frames_over_the_cap() -> None:
    with pytest.raises(FrameTooLarge) as info:
        encode_frame("x" * 100, 50)
    assert str(info.value) == "frame of 102 bytes is over the 50-byte limit"
    assert (info.value.size, info.value.limit) == (102, 50)
    assert isinstance(info.value, ProtocolError) and isinstance(info.value, WorkerCrashed)


def test_encode_refuses_what_json_cannot_say() -> None:
    with pytest.raises(TypeError):
        encode_frame({"x": object()}, 1000)


def test_reader_round_trips_several_frames_in_one_chunk(pair: Any) -> None:
    a, b = pair
    a.sendall(encode_frame({"n": 1}, 100) + encode_frame({"n": 2}, 100))
    reader = FrameReader(b, 100)
    assert reader.read() == {"n": 1}
    assert reader.has_buffered_frame()
    assert reader.read() == {"n": 2}
    assert not reader.has_buffered_bytes()


def test_reader_reassembles_a_frame_sent_byte_by_byte(pair: Any) -> None:
    a, b = pair
    for byte in encode_frame({"value": "é" * 10}, 100):
        a.send(bytes([byte]))
    assert FrameReader(b, 100).read() == {"value": "é" * 10}


def test_reader_refuses_an_oversized_header_before_reading_the_body(pair: Any) -> None:
    a, b = pair
    a.sendall(struct.pack(">I", 2**31) + b"{}")
    reader = FrameReader(b, 1000)
    assert reader.has_buffered_frame() is False
    with pytest.raises(FrameTooLarge) as info:
        reader.read()
    assert str(info.value) == "frame of 2147483648 bytes is over the 1000-byte limit"


def test_reader_refuses_invalid_json(pair: Any) -> None:
    a, b = pair
    a.sendall(b"\x00\x00\x00\x03abc")
    with pytest.raises(ProtocolError) as info:
        FrameReader(b, 100).read()
    assert str(info.value).startswith("frame is not valid JSON (")


def test_reader_reports_eof_as_channel_closed(pair: Any) -> None:
    a, b = pair
    a.sendall(b"\x00\x00")  # half a header, then the peer goes away
    a.close()
    with pytest.raises(ChannelClosed) as info:
        FrameReader(b, 100).read()
    assert str(info.value) == "the other side closed the channel"


def test_reader_gives_up_at_the_deadline(pair: Any) -> None:
    a, b = pair
    a.sendall(b"\x00\x00\x00\x10{")  # a frame that never completes
    with pytest.raises(TimeoutError):
        FrameReader(b, 100).read(time.monotonic() + 0.05)
    with pytest.raises(TimeoutError):
        FrameReader(b, 100).read(time.monotonic() - 1)


def test_send_frame_writes_one_frame(pair: Any) -> None:
    a, b = pair
    send_frame(a, [1, "two"], 100)
    assert FrameReader(b, 100).read() == [1, "two"]


# --- exact shapes ------------------------------------------------------------------------


def test_valid_frames_of_every_kind() -> None:
    usage = {"cpu_ms": 1.5, "rss_kb": 2048}
    assert parse_worker_frame(
        {"op": "ready", "rss_kb": 10, "confinement": {"seccomp": "allowlist"}},
        expect_id=None,
        allowed=frozenset({"ready"}),
    ) == ReadyFrame(10, {"seccomp": "allowlist"})
    assert parse_worker_frame(
        {"op": "loaded", "id": 1, "init": {"a": 1}, **usage},
        expect_id=1,
        allowed=frozenset({"loaded"}),
    ) == LoadedFrame({"a": 1}, 1.5, 2048)
    assert parse_worker_frame(
        {"op": "host_call", "id": 7, "method": "kv/get", "params": {"key": "k"}},
        expect_id=7,
        allowed=CALL,
    ) == HostCallFrame("kv/get", {"key": "k"})
    assert parse_worker_frame(
        {"op": "result", "id": 7, "value": [1], "cpu_ms": 3, "rss_kb": 5},
        expect_id=7,
        allowed=CALL,
    ) == ResultFrame([1], 3.0, 5)
    assert parse_worker_frame(
        {"op": "error", "id": 7, "kind": "violation", "message": "no", **usage},
        expect_id=7,
        allowed=CALL,
    ) == ErrorFrame("violation", "no", {}, [], 1.5, 2048)
    assert parse_worker_frame(
        {
            "op": "error",
            "id": 7,
            "kind": "compile",
            "message": "bad",
            "errors": ["a:1: x"],
            **usage,
        },
        expect_id=7,
        allowed=CALL,
    ) == ErrorFrame("compile", "bad", {}, ["a:1: x"], 1.5, 2048)
    remote = {"type": "ValueError", "message": "m", "traceback": "tb", "extra": [1]}
    assert parse_worker_frame(
        {"op": "error", "id": 7, "kind": "remote", "data": remote, **usage},
        expect_id=7,
        allowed=CALL,
    ) == ErrorFrame("remote", "m", remote, [], 1.5, 2048)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ([], "frame is not a JSON object"),
        ({"op": "loaded", "id": 1}, "unexpected frame op 'loaded'"),
        ({"op": 3}, "unexpected frame op 3"),
        ({"op": {"x": 1}}, "unexpected frame op <dict>"),
        (
            {"op": "result", "id": 8, "value": 1, "cpu_ms": 0, "rss_kb": 0},
            "result frame for call id 8, expected 7",
        ),
        (
            {"op": "result", "id": True, "value": 1, "cpu_ms": 0, "rss_kb": 0},
            "result frame for call id True, expected 7",
        ),
        (
            {"op": "result", "id": 7, "value": 1, "cpu_ms": 0, "rss_kb": 0, "more": 1},
            "result frame has keys ['cpu_ms', 'id', 'more', 'op', 'rss_kb', 'value'], expected "
            "['cpu_ms', 'id', 'op', 'rss_kb', 'value']",
        ),
        (
            {"op": "result", "id": 7, "value": 1, "cpu_ms": -1, "rss_kb": 0},
            "cpu_ms must be a non-negative number",
        ),
        (
            {"op": "result", "id": 7, "value": 1, "cpu_ms": "1", "rss_kb": 0},
            "cpu_ms must be a non-negative number",
        ),
        (
            {"op": "result", "id": 7, "value": 1, "cpu_ms": 0, "rss_kb": 1.5},
            "rss_kb must be a non-negative integer",
        ),
        (
            {"op": "host_call", "id": 7, "method": "", "params": {}},
            "host_call method must be a non-empty string",
        ),
        (
            {"op": "host_call", "id": 7, "method": "m" * 201, "params": {}},
            "host_call method must be a non-empty string",
        ),
        (
            {"op": "host_call", "id": 7, "method": "kv/get", "params": ["k"]},
            "host_call params must be a JSON object",
        ),
        (
            {"op": "error", "id": 7, "kind": "panic", "message": "x", "cpu_ms": 0, "rss_kb": 0},
            "unknown error kind 'panic'",
        ),
        (
            {"op": "error", "id": 7, "kind": "remote", "data": "x", "cpu_ms": 0, "rss_kb": 0},
            "remote error data must be a JSON object",
        ),
        (
            {
                "op": "error",
                "id": 7,
                "kind": "remote",
                "data": {"message": "x"},
                "cpu_ms": 0,
                "rss_kb": 0,
            },
            "remote error type must be a string",
        ),
        (
            {
                "op": "error",
                "id": 7,
                "kind": "remote",
                "data": {"type": "E", "traceback": 1},
                "cpu_ms": 0,
                "rss_kb": 0,
            },
            "remote error traceback must be a string",
        ),
        (
            {
                "op": "error",
                "id": 7,
                "kind": "violation",
                "message": None,
                "cpu_ms": 0,
                "rss_kb": 0,
            },
            "violation error message must be a string",
        ),
        (
            {
                "op": "error",
                "id": 7,
                "kind": "compile",
                "message": "m",
                "errors": [1],
                "cpu_ms": 0,
                "rss_kb": 0,
            },
            "compile errors must be a list of strings",
        ),
    ],
)
def test_anything_but_an_exact_shape_is_a_protocol_violation(frame: Any, message: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_worker_frame(frame, expect_id=7, allowed=CALL)
    assert str(info.value) == message


def test_ready_report_must_be_short_strings() -> None:
    for report in ({"a": 1}, {"a": "x" * 501}, {f"k{i}": "" for i in range(33)}, ["x"]):
        with pytest.raises(ProtocolError):
            parse_worker_frame(
                {"op": "ready", "rss_kb": 1, "confinement": report},
                expect_id=None,
                allowed=frozenset({"ready"}),
            )


def test_long_texts_from_a_worker_are_cut() -> None:
    data = {"type": "E", "message": "m" * 5000, "traceback": "a" * 10 + "t" * 20000}
    frame = parse_worker_frame(
        {"op": "error", "id": 1, "kind": "remote", "data": data, "cpu_ms": 0, "rss_kb": 0},
        expect_id=1,
        allowed=CALL,
    )
    assert isinstance(frame, ErrorFrame)
    assert frame.data["message"] == "m" * 4000
    assert frame.data["traceback"] == "t" * 16000  # the end of a traceback is what matters
    assert frame.message == "m" * 4000
    assert data["message"] == "m" * 5000  # the decoded frame itself is not modified
    compile_frame = parse_worker_frame(
        {
            "op": "error",
            "id": 1,
            "kind": "compile",
            "message": "x",
            "errors": ["e"] * 500,
            "cpu_ms": 0,
            "rss_kb": 0,
        },
        expect_id=1,
        allowed=CALL,
    )
    assert isinstance(compile_frame, ErrorFrame) and len(compile_frame.errors) == 200
