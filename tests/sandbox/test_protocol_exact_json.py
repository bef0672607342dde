"""The host decodes worker frames under the exact-JSON rule (``sandbox._jsonrule``).

Issue row: a forged result nested 1022 levels deep (orjson decodes up to 1024) was accepted by
the host, whose own encoder then failed on it (orjson encodes at most 255). Now the payload
fields of a worker frame (result, host-call params, load reply, error data) are held to the
same bound the worker side applies before sending: 64 levels, int64 integers.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from sandbox import WorkerCrashed
from sandbox._jsonrule import (
    INT_MAX,
    INT_MIN,
    MAX_DEPTH,
    NotExactJSON,
    check_decoded,
    exact_copy,
)
from sandbox._pool import WorkerPool
from sandbox._protocol import ProtocolError, ResultFrame, parse_worker_frame

CALL = frozenset({"host_call", "result", "error"})


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def _result(value: Any) -> Any:
    """A result frame decoded by orjson, as the host's FrameReader does."""
    frame = {"op": "result", "id": 7, "value": None, "cpu_ms": 0, "rss_kb": 0}
    return orjson.loads(orjson.dumps(frame).replace(b"null", _text(value)))


def _text(value: Any) -> bytes:
    # Written by hand: neither json nor orjson encodes 1022 levels (nor does recursion).
    depth = 0
    while type(value) is list and len(value) == 1:
        value, depth = value[0], depth + 1
    if depth:
        return b"[" * depth + _text(value) + b"]" * depth
    if type(value) is list:
        return b"[" + b",".join(_text(v) for v in value) + b"]"
    if type(value) is dict:
        return b"{" + b",".join(orjson.dumps(k) + b":" + _text(v) for k, v in value.items()) + b"}"
    return str(value).encode()


def test_a_result_at_the_depth_bound_is_accepted() -> None:
    parsed = parse_worker_frame(_result(_nested(MAX_DEPTH)), expect_id=7, allowed=CALL)
    assert isinstance(parsed, ResultFrame)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 254, 1022])
def test_a_deeper_result_is_a_protocol_error(depth: int) -> None:
    decoded = _result(_nested(depth))  # orjson decodes it (up to 1024 levels)...
    with pytest.raises(ProtocolError, match=f"nested more than {MAX_DEPTH} levels"):
        parse_worker_frame(decoded, expect_id=7, allowed=CALL)  # ...the host refuses it


@pytest.mark.parametrize("value", [INT_MAX + 1, 2**64 - 1, {"a": [INT_MAX + 1]}])
def test_integers_beyond_int64_are_a_protocol_error(value: Any) -> None:
    with pytest.raises(ProtocolError, match="outside the exact range"):
        parse_worker_frame(_result(value), expect_id=7, allowed=CALL)


def test_host_call_params_and_load_reply_are_held_to_the_rule_too() -> None:
    params = {"op": "host_call", "id": 7, "method": "kv/set", "params": {"v": _nested(70)}}
    with pytest.raises(ProtocolError, match="host_call params breaks the exact-JSON rule"):
        parse_worker_frame(orjson.loads(orjson.dumps(params)), expect_id=7, allowed=CALL)
    loaded = {"op": "loaded", "id": 7, "init": {"n": INT_MAX + 1}, "cpu_ms": 0, "rss_kb": 0}
    with pytest.raises(ProtocolError, match="load reply breaks the exact-JSON rule"):
        parse_worker_frame(loaded, expect_id=7, allowed=frozenset({"loaded", "error"}))
    error = {
        "op": "error",
        "id": 7,
        "kind": "remote",
        "cpu_ms": 0,
        "rss_kb": 0,
        "data": {"type": "X", "message": "m", "details": _nested(70)},
    }
    with pytest.raises(ProtocolError, match="error data breaks the exact-JSON rule"):
        parse_worker_frame(error, expect_id=7, allowed=CALL)


# --- the rule itself ---------------------------------------------------------------------


def test_int64_edges() -> None:
    check_decoded([INT_MIN, INT_MAX])
    assert exact_copy([INT_MIN, INT_MAX]) == [INT_MIN, INT_MAX]
    for bad in (INT_MIN - 1, INT_MAX + 1, 2**64 + 1, 10**5000):
        with pytest.raises(NotExactJSON, match="outside the exact range"):
            check_decoded(bad)
        with pytest.raises(NotExactJSON, match="outside the exact range"):
            exact_copy({"k": bad})


def test_keys_must_be_strings_and_distinct() -> None:
    for bad in ({1: "a", "1": "b"}, {1: "a"}, {None: 1}, {True: 1}, {(1,): 2}):
        with pytest.raises(NotExactJSON, match="is not a string"):
            exact_copy(bad)

    class Liar(str):
        def __eq__(self, other: object) -> bool:
            return False

        __hash__ = str.__hash__

    with pytest.raises(NotExactJSON, match="duplicate object key 'k'"):
        exact_copy({Liar("k"): 1, "k": 2})


def test_exact_copy_runs_no_method_of_the_value() -> None:
    class Sneaky(dict):  # type: ignore[type-arg]
        def items(self) -> Any:
            raise AssertionError("items() of a subclass must not run")

    class Text(str):
        def __str__(self) -> str:
            raise AssertionError("__str__ of a subclass must not run")

    out = exact_copy(Sneaky(a=[Text("x"), (1, 2.5)]))
    assert out == {"a": ["x", [1, 2.5]]}
    assert type(out) is dict and type(out["a"][0]) is str


def test_other_refusals() -> None:
    loop: list[Any] = []
    loop.append(loop)
    for bad, problem in [
        (float("nan"), "NaN"),
        ("\ud800", "lone surrogate"),
        ({"\udc00": 1}, "lone surrogate"),
        (b"bytes", r"a bytes at \$ is not JSON data"),
        (loop, "circular reference"),
        (_nested(MAX_DEPTH + 1), f"nested more than {MAX_DEPTH} levels"),
    ]:
        with pytest.raises(NotExactJSON, match=problem):
            exact_copy(bad)


# --- a real worker forging a deep result ---------------------------------------------------


def test_a_real_worker_sending_a_1022_deep_result_is_killed(
    pool: WorkerPool, sb: SimpleNamespace
) -> None:
    (pid,) = pool.worker_pids()
    cid = int(repr(pool._ids).split("(")[1].rstrip(")"))
    source = (
        "import socket\n"
        f'data = (b\'{{"op":"result","id":{cid},"cpu_ms":0,"rss_kb":0,"value":\''
        " + b'[' * 1022 + b']' * 1022 + b'}')\n"
        # The way the serve loop writes (sendto on fd 0): write() is not on the allowlist.
        "chan = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fileno=0)\n"
        "chan.sendall(len(data).to_bytes(4, 'big') + data)\n"
        "chan.detach()\n"
        "import time\ntime.sleep(5)\n"
    )
    with pytest.raises(WorkerCrashed) as info:
        pool.raw_exec_for_tests(source, on_host_call=sb.no_host_calls)
    assert f"nested more than {MAX_DEPTH} levels" in str(info.value)
    assert str(info.value).endswith("); it was killed")
    assert not sb.proc_exists(pid)
    assert pool.call("sbtest:echo", ["next"], on_host_call=sb.no_host_calls).value == "next"
