"""The worker's serve loop, through real confined workers: load, init, calls, host calls,
error reporting, and the invocation boundary (escape classes ``exc``, ``serial``, ``frame``).
"""

from __future__ import annotations

import collections
import json
import socket
import struct
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from sandbox import (
    CompileError,
    CpuLimitExceeded,
    RemoteError,
    SandboxLimits,
    SandboxViolation,
    Supervisor,
    WorkerPool,
)
from sandbox._handle import WorkerHandle
from sandbox._jsonrule import MAX_DEPTH
from sandbox._protocol import SpinWait
from sandbox._worker import MAX_JSON_DEPTH, _Requests, plain_json


def test_init_runs_after_loading_and_its_result_is_kept(pool: WorkerPool) -> None:
    assert pool.init_result == {"tag": "t", "add": 5}


def test_call_runs_a_prelude_function_on_the_entry_module(
    pool: WorkerPool, sb: SimpleNamespace
) -> None:
    result = pool.call("sbtest:invoke", ["add", 40, 2], on_host_call=sb.no_host_calls)
    assert result.value == 42
    assert type(result.cpu_ms) is float and result.cpu_ms >= 0
    assert type(result.rss_kb) is int and result.rss_kb > 0


def test_shims_work_inside_the_confined_worker(supervisor: Supervisor, sb: SimpleNamespace) -> None:
    # Everything the shims use was imported by the fork server: after seccomp, nothing can be.
    source = (
        "import base64, datetime, decimal, hashlib, json, random, re, time, uuid\n"
        "from urllib.parse import urlsplit\n"
        "def everything():\n"
        "    return [json.dumps({'a': 1}), re.sub('a', 'b', 'aa'), 0 <= random.random() < 1,\n"
        "            datetime.datetime(2024, 1, 2).isoformat(), hashlib.sha256(b'x').hexdigest()[:8],\n"
        "            base64.b64encode(b'hi').decode(), str(decimal.Decimal('1.10') + 1),\n"
        "            len(str(uuid.uuid4())), time.strftime('%Y', time.gmtime(0)),\n"
        "            urlsplit('https://bücher.example/x').hostname, 'é'.encode('latin-1').decode('latin-1')]\n"
    )
    pool = supervisor.load("worker:shims", {"plugin.py": source}, "plugin.py", limits=sb.LIMITS)
    try:
        value = pool.call("sbtest:invoke", ["everything"], on_host_call=sb.no_host_calls).value
    finally:
        pool.close()
    assert value == [
        '{"a": 1}',
        "bb",
        True,
        "2024-01-02T00:00:00",
        "2d711642",
        "aGk=",
        "2.10",
        36,
        "1970",
        "bücher.example",
        "é",
    ]


# --- host calls ----------------------------------------------------------------------------


def test_host_calls_are_answered_in_the_calling_thread(pool: WorkerPool) -> None:
    seen: list[tuple[str, dict[str, Any], int]] = []

    def on_host_call(method: str, params: dict[str, Any]) -> Any:
        seen.append((method, params, threading.get_ident()))
        return {"value": [1, "two", None]}

    result = pool.call("sbtest:ask_host", ["kv/get", {"key": "k"}], on_host_call=on_host_call)
    assert result.value == {"ok": {"value": [1, "two", None]}}
    assert seen == [("kv/get", {"key": "k"}, threading.get_ident())]


def test_host_errors_reach_the_worker_through_encoder_and_decoder(pool: WorkerPool) -> None:
    def on_host_call(method: str, params: dict[str, Any]) -> Any:
        raise ValueError("no such key")

    result = pool.call("sbtest:ask_host", ["kv/get", {}], on_host_call=on_host_call)
    # host_error_encoder made the dict; the prelude's decoder turned it into HostFailure
    assert result.value == {
        "failed": {"type": "ValueError", "message": "no such key", "from": "host"}
    }


def test_a_host_answer_that_is_not_json_becomes_an_error_in_the_worker(pool: WorkerPool) -> None:
    result = pool.call("sbtest:ask_host", ["m", {}], on_host_call=lambda m, p: object())
    assert result.value == {
        "failed": {
            "type": "TypeError",
            "message": "the answer to host call m is not JSON: Type is not JSON serializable: object",
        }
    }


def test_a_host_answer_over_the_frame_cap_becomes_an_error_in_the_worker(pool: WorkerPool) -> None:
    result = pool.call("sbtest:ask_host", ["big", {}], on_host_call=lambda m, p: "x" * (9 << 20))
    failed = result.value["failed"]
    assert failed["type"] == "SandboxViolation"
    assert failed["message"].startswith("the answer to host call big is too large (94")
    assert failed["message"].endswith(" bytes; the limit is 8388608)")


def test_bad_host_calls_are_refused_inside_the_worker(
    pool: WorkerPool, sb: SimpleNamespace
) -> None:
    source = (
        "result = []\n"
        "for method, params in (('m', {'x': object()}), ('m', ['not', 'a', 'dict']), ('', {}),"
        " ('m', {'big': 'x' * (9 << 20)})):\n"
        "    try:\n        host_call(method, params)\n        result.append('OK')\n"
        "    except Exception as exc:\n        result.append(type(exc).__name__ + ': ' + str(exc))\n"
    )
    value = pool.raw_exec_for_tests(source, on_host_call=sb.no_host_calls).value
    assert value[:3] == [
        "SandboxViolation: host call 'm' has parameters that are not JSON-serialisable: "
        "Object of type object is not JSON serializable",
        "SandboxViolation: host_call params must be a dict",
        "SandboxViolation: host_call method must be a non-empty string",
    ]
    assert value[3].startswith("SandboxViolation: host call 'm' is too large (94")
    assert value[3].endswith(" bytes; the limit is 8388608)")


def test_host_calls_cannot_run_after_the_call_returned(pool: WorkerPool) -> None:
    calls: list[str] = []
    result = pool.call("sbtest:leave_generator", [], on_host_call=lambda m, p: calls.append(m))
    assert result.value == "returned"
    # The generator's finally ran when the worker collected garbage after the call, with no
    # call active: its host_call raised there, and the host never heard of it.
    report = pool.call("sbtest:late_report", [], on_host_call=lambda m, p: calls.append(m))
    assert report.value == [
        "host calls are only possible while a call is running; this code ran after its call "
        "had returned"
    ]
    assert calls == []


def test_garbage_from_an_earlier_call_is_finalized_between_calls_only(pool: WorkerPool) -> None:
    # The worker collects after a call only when the call left a container alive. A cycle
    # that survived a collection (it was reachable then) and is dropped by a later call may
    # so wait for a later collection: still after a call, with no call active.
    calls: list[str] = []

    def on_host_call(method: str, params: dict[str, Any]) -> Any:
        calls.append(method)

    assert pool.call("sbtest:keep_generator", [], on_host_call=on_host_call).value == "kept"
    assert pool.call("sbtest:drop_generator", [], on_host_call=on_host_call).value == "dropped"
    assert pool.call("sbtest:leave_garbage", [], on_host_call=on_host_call).value == "left"
    report = pool.call("sbtest:late_report", [], on_host_call=on_host_call).value
    refused = (
        "host calls are only possible while a call is running; this code ran after its call "
        "had returned"
    )
    # One from keep_generator's own leave_generator (collected after that call), one from
    # the kept generator (collected after a later call at the latest).
    assert report == [refused, refused]
    assert calls == []


def test_a_host_call_kept_from_an_earlier_call_is_revoked(pool: WorkerPool) -> None:
    calls: list[str] = []

    def on_host_call(method: str, params: dict[str, Any]) -> Any:
        calls.append(method)
        return "answered"

    assert pool.call("sbtest:stash_host_call", [], on_host_call=on_host_call).value == "stashed"
    result = pool.call("sbtest:use_stashed_host_call", [], on_host_call=on_host_call)
    assert result.value == {
        "stale": "this host_call (or a ctx built on it) belongs to an earlier call that has "
        "returned; use the one the current call was given",
        "current": "answered",
    }
    assert calls == ["fresh"]


def test_host_calls_are_refused_while_loading(supervisor: Supervisor, sb: SimpleNamespace) -> None:
    with pytest.raises(SandboxViolation) as info:
        supervisor.load(
            "worker:init-host-call",
            sb.BUNDLE,
            sb.ENTRY,
            limits=sb.LIMITS,
            init=("sbtest:init_calls_host", []),
        )
    assert str(info.value) == "host calls are not available while the code is loading"


def test_a_base_exception_from_the_host_callback_kills_the_worker(
    pool: WorkerPool, sb: SimpleNamespace
) -> None:
    (pid,) = pool.worker_pids()

    def on_host_call(method: str, params: dict[str, Any]) -> Any:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pool.call("sbtest:wait_for_host", [], on_host_call=on_host_call)
    assert not sb.proc_exists(pid)  # it was mid-call: it cannot be reused
    assert pool.call("sbtest:echo", [1], on_host_call=sb.no_host_calls).value == 1


# --- errors --------------------------------------------------------------------------------


def test_escaping_exceptions_come_back_as_remote_errors(
    pool: WorkerPool, sb: SimpleNamespace
) -> None:
    with pytest.raises(RemoteError) as info:
        pool.call("sbtest:raise_value_error", ["boom"], on_host_call=sb.no_host_calls)
    err = info.value
    assert str(err) == "boom"
    assert err.error_type == "ValueError"
    assert {k: v for k, v in err.data.items() if k != "traceback"} == {
        "type": "ValueError",
        "message": "boom",
        "encoder": "sbtest",
    }
    assert err.traceback_text is not None
    assert err.traceback_text.startswith("Traceback (most recent call last):\n")
    assert "in raise_value_error" in err.traceback_text
    assert err.traceback_text.endswith("ValueError: boom\n")


def test_system_exit_does_not_end_the_worker(pool: WorkerPool, sb: SimpleNamespace) -> None:
    (pid,) = pool.worker_pids()
    with pytest.raises(RemoteError) as info:
        pool.call("sbtest:exit_worker", [], on_host_call=sb.no_host_calls)
    assert info.value.error_type == "SystemExit"
    assert pool.worker_pids() == [pid]


def test_violations_come_back_as_violations(pool: WorkerPool, sb: SimpleNamespace) -> None:
    (pid,) = pool.worker_pids()
    with pytest.raises(SandboxViolation) as info:
        pool.call("sbtest:raise_violation", [], on_host_call=sb.no_host_calls)
    assert str(info.value) == "not allowed here"
    assert pool.worker_pids() == [pid]  # a refusal does not cost the worker


@pytest.mark.parametrize(
    ("fn", "args", "message"),
    [
        (
            "sbtest:unserialisable",
            [],
            "the result is not JSON-serialisable: Object of type object is not JSON serializable",
        ),
        (
            "sbtest:huge",
            [9 << 20],
            "the result is too large (9437186 bytes of JSON; the limit is 8388352)",
        ),
        ("sbtest:nope", [], "no prelude function sbtest:nope"),
        ("nomodule:fn", [], "no prelude function nomodule:fn"),
    ],
)
def test_results_and_names_the_boundary_refuses(
    fn: str, args: list[Any], message: str, pool: WorkerPool, sb: SimpleNamespace
) -> None:
    with pytest.raises(SandboxViolation) as info:
        pool.call(fn, args, on_host_call=sb.no_host_calls)
    assert str(info.value) == message
    assert pool.call("sbtest:echo", ["ok"], on_host_call=sb.no_host_calls).value == "ok"


def test_results_are_plain_json(pool: WorkerPool, sb: SimpleNamespace) -> None:
    value = {"s": "é", "n": [1, 2.5, None, True], "nested": {"k": []}}
    assert pool.call("sbtest:echo", [value], on_host_call=sb.no_host_calls).value == value
    # a str subclass with a lying __eq__ arrives as a plain str
    source = (
        "class Liar(str):\n    def __eq__(self, other):\n        return True\n"
        "    __hash__ = str.__hash__\nresult = {'role': Liar('user')}\n"
    )
    value = pool.raw_exec_for_tests(source).value
    assert value == {"role": "user"} and type(value["role"]) is str
    assert value["role"] != "admin"


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        # 65 levels: within what json and the old 256-level bound allowed, beyond the
        # exact-JSON rule the host enforces (the host used to kill the worker for it).
        ("result = 'leaf'\nfor _ in range(65):\n    result = [result]\n", "nested more than 64"),
        ("result = {'n': 2**64 + 1}\n", "outside the exact range [-2**63, 2**63 - 1]"),
        ("result = {1: 'a', '1': 'b'}\n", "keys must be str, not int"),
        ("result = {None: 'a'}\n", "keys must be str, not NoneType"),
    ],
)
def test_a_result_that_breaks_the_exact_json_rule_is_a_violation_in_the_worker(
    pool: WorkerPool, sb: SimpleNamespace, source: str, problem: str
) -> None:
    (pid,) = pool.worker_pids()
    epoch = pool.epoch
    with pytest.raises(SandboxViolation) as info:
        pool.raw_exec_for_tests(source, on_host_call=sb.no_host_calls)
    assert str(info.value).startswith("the result is not JSON-serialisable: ")
    assert problem in str(info.value)
    # Refused by the worker, not found by the host: the same worker serves on.
    assert pool.worker_pids() == [pid] and pool.epoch == epoch
    assert pool.call("sbtest:echo", ["ok"], on_host_call=sb.no_host_calls).value == "ok"


def test_host_call_params_that_break_the_rule_are_a_violation_in_the_worker(
    pool: WorkerPool, sb: SimpleNamespace
) -> None:
    (pid,) = pool.worker_pids()
    source = (
        "try:\n    host_call('echo', {'n': 2**63})\n"
        "except Exception as exc:\n    result = [type(exc).__name__, str(exc)]\n"
    )
    kind, message = pool.raw_exec_for_tests(source, on_host_call=sb.no_host_calls).value
    assert kind == "SandboxViolation"
    assert "outside the exact range" in message
    assert pool.worker_pids() == [pid]


# --- loading ---------------------------------------------------------------------------------


def test_compile_errors_propagate_from_load(supervisor: Supervisor, sb: SimpleNamespace) -> None:
    with pytest.raises(CompileError) as info:
        supervisor.load(
            "worker:bad", {"plugin.py": "x = _y\ndef f(:\n"}, "plugin.py", limits=sb.LIMITS
        )
    # compiled in the worker; the language layer's error crosses the boundary intact
    assert info.value.errors == ["plugin.py:2: SyntaxError: invalid syntax"]
    assert str(info.value) == (
        "The plugin source was refused (1 problem); fix them and load the plugin again:\n"
        "  plugin.py:2: SyntaxError: invalid syntax"
    )


def test_refused_import_at_load_is_a_violation(supervisor: Supervisor, sb: SimpleNamespace) -> None:
    with pytest.raises(SandboxViolation) as info:
        supervisor.load("worker:os", {"plugin.py": "import os\n"}, "plugin.py", limits=sb.LIMITS)
    assert str(info.value).startswith('Import of "os" is not allowed in sandboxed plugins.')


def test_module_code_that_raises_fails_the_load(
    supervisor: Supervisor, sb: SimpleNamespace
) -> None:
    with pytest.raises(RemoteError) as info:
        supervisor.load(
            "worker:raises",
            {"plugin.py": "raise ValueError('at import')\n"},
            "plugin.py",
            limits=sb.LIMITS,
        )
    assert (info.value.error_type, str(info.value)) == ("ValueError", "at import")


def test_loading_has_its_own_cpu_budget(supervisor: Supervisor) -> None:
    limits = SandboxLimits(cpu_ms=50, memory_mb=64, wall_ms=5_000, load_cpu_ms=100)
    with pytest.raises(CpuLimitExceeded) as info:
        supervisor.load(
            "worker:spin", {"plugin.py": "while True:\n    pass\n"}, "plugin.py", limits=limits
        )
    assert info.value.limit_ms == 100  # type: ignore[attr-defined]


# --- no code of the call runs after its CPU timer is disarmed (red-team finding 2) ---------

# A dict subclass whose every way of being read spins forever: json's encoder called items()
# of dict subclasses, and for error frames it did so after the CPU timer was disarmed.
LYING = (
    "import collections\n"
    "def spin(*args, **kwargs):\n    while True:\n        pass\n"
    "class Lying(dict):\n"
    "    items = keys = values = __iter__ = __getitem__ = __len__ = get = spin\n"
    "class LyingList(list):\n    __iter__ = __getitem__ = __len__ = spin\n"
    "class LyingTuple(tuple):\n    __iter__ = __getitem__ = __len__ = spin\n"
    "class LyingStr(str):\n    __str__ = __getitem__ = __iter__ = __len__ = encode = spin\n"
    "class LyingInt(int):\n    __repr__ = __str__ = __int__ = __index__ = spin\n"
    "class LyingFloat(float):\n    __repr__ = __float__ = spin\n"
)

# Generous wall time, so that a payload the CPU timer misses is told apart (WallTimeExceeded).
LATE_LIMITS = SandboxLimits(cpu_ms=250, memory_mb=64, wall_ms=4_000)


def test_a_result_is_copied_as_plain_json_without_running_its_methods(pool: WorkerPool) -> None:
    source = LYING + (
        "od = collections.OrderedDict(a=1, b=2)\nod.move_to_end('a')\n"
        "result = {'d': Lying(a=1), 'l': LyingList([1, 2]), 't': LyingTuple((3, 'x')),\n"
        "          's': LyingStr('text'), 'i': LyingInt(5), 'f': LyingFloat(2.5), 'od': od,\n"
        "          LyingStr('key'): 1}\n"
    )
    value = pool.raw_exec_for_tests(source, limits=LATE_LIMITS).value
    assert value == {
        "d": {"a": 1},
        "l": [1, 2],
        "t": [3, "x"],
        "s": "text",
        "i": 5,
        "f": 2.5,
        "od": {"b": 2, "a": 1},
        "key": 1,
    }
    assert list(value["od"]) == ["b", "a"]  # OrderedDict order, not insertion order


def test_error_data_is_copied_before_the_timer_is_disarmed(pool: WorkerPool) -> None:
    source = (
        LYING
        + "class Failure(Exception):\n    pass\ne = Failure('with details')\ne.details = Lying(a=1)\nraise e\n"
    )
    with pytest.raises(RemoteError) as info:
        pool.raw_exec_for_tests(source, limits=LATE_LIMITS)
    assert info.value.error_type == "Failure"
    assert str(info.value) == "with details"
    assert info.value.data["details"] == {"a": 1}


def test_error_fields_that_are_not_json_are_left_out_not_the_error(pool: WorkerPool) -> None:
    source = (
        "class Failure(Exception):\n    pass\ne = Failure('kept')\ne.details = {1, 2}\nraise e\n"
    )
    with pytest.raises(RemoteError) as info:
        pool.raw_exec_for_tests(source)
    assert {k: v for k, v in info.value.data.items() if k != "traceback"} == {
        "type": "Failure",
        "message": "kept",
        "encoder": "sbtest",
    }
    assert info.value.traceback_text is not None
    assert info.value.traceback_text.endswith("Failure: kept\n")


SPINNING_GENERATOR = (
    "def gen():\n    try:\n        yield 1\n    finally:\n        while True:\n            pass\n"
)


def test_a_finalizer_held_by_the_error_data_runs_under_the_timer(
    pool: WorkerPool, sb: SimpleNamespace
) -> None:
    # The encoder's output keeps the generator alive past the except block; it dies when the
    # worker drops that output, which must happen before the timer is disarmed.
    source = (
        SPINNING_GENERATOR
        + "class Failure(Exception):\n    pass\ne = Failure('x')\ne.details = gen()\nnext(e.details)\nraise e\n"
    )
    with pytest.raises(CpuLimitExceeded):
        pool.raw_exec_for_tests(source, limits=LATE_LIMITS)
    assert pool.call("sbtest:echo", ["again"], on_host_call=sb.no_host_calls).value == "again"


def test_a_generator_finally_parked_in_a_cycle_is_killed_by_the_cpu_limit(
    pool: WorkerPool, sb: SimpleNamespace
) -> None:
    # Collected between calls, before the timer is disarmed: the endless finally block runs
    # on what is left of the call's budget, and the worker is killed by SIGPROF.
    source = SPINNING_GENERATOR + (
        "def park():\n    g = gen()\n    next(g)\n    cycle = [g]\n    cycle.append(cycle)\n"
        "park()\nresult = 'returned'\n"
    )
    with pytest.raises(CpuLimitExceeded):
        pool.raw_exec_for_tests(source, limits=LATE_LIMITS)
    assert pool.call("sbtest:echo", ["again"], on_host_call=sb.no_host_calls).value == "again"


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("plain_json ran a method of the value")


class _Dict(dict[Any, Any]):
    items = keys = values = __iter__ = __getitem__ = __len__ = get = _refuse


class _List(list[Any]):
    __iter__ = __getitem__ = __len__ = _refuse


class _Str(str):
    __str__ = __getitem__ = __iter__ = __len__ = _refuse


class _Unequal(str):
    """Equal to no other key, so a dict keeps it next to the plain str it spells."""

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)


class _Int(int):
    __repr__ = __int__ = __index__ = _refuse


_Point = collections.namedtuple("_Point", "x y")


def test_plain_json_copies_into_exact_types_without_calling_the_values_methods() -> None:
    point = _Point(1, 2)
    value = {"d": _Dict(a=_List([_Int(1), _Str("s")])), "t": point, "c": collections.Counter("aa")}
    copy = plain_json(value)
    assert copy == {"d": {"a": [1, "s"]}, "t": [1, 2], "c": {"a": 2}}
    assert type(copy["d"]) is dict and type(copy["d"]["a"]) is list and type(copy["c"]) is dict
    assert [type(x) for x in copy["d"]["a"]] == [int, str]
    # keys: str subclasses are copied as exact strs
    (key,) = plain_json({_Str("k"): 1})
    assert type(key) is str and key == "k"


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ({1, 2}, TypeError, "Object of type set is not JSON serializable"),
        ({"x": b"b"}, TypeError, "Object of type bytes is not JSON serializable"),
        ([float("nan")], ValueError, "Out of range float values are not JSON compliant"),
        ({"x": float("-inf")}, ValueError, "Out of range float values are not JSON compliant"),
        (
            {(1, 2): "tuple key"},
            TypeError,
            "keys must be str, not tuple (convert them yourself, so that two keys cannot collide)",
        ),
        # json would render these keys as strings, so {1: .., "1": ..} would collide
        *(
            (
                {key: "x"},
                TypeError,
                f"keys must be str, not {type(key).__name__} (convert them yourself, so that "
                "two keys cannot collide)",
            )
            for key in (1, 2.5, None, False)
        ),
        ({_Unequal("k"): 1, "k": 2}, ValueError, "duplicate object key 'k'"),
        (
            [2**63],
            ValueError,
            "an integer of 19 digits is outside the exact range [-2**63, 2**63 - 1]; send it as "
            "a string",
        ),
        (
            {"n": _Int(-(2**63) - 1)},
            ValueError,
            "an integer of 19 digits is outside the exact range [-2**63, 2**63 - 1]; send it as "
            "a string",
        ),
    ],
)
def test_plain_json_refuses_what_is_not_json(
    value: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        plain_json(value)
    assert str(info.value) == message


def test_plain_json_keeps_the_int64_edges() -> None:
    assert plain_json([2**63 - 1, -(2**63), _Int(7)]) == [2**63 - 1, -(2**63), 7]


def test_plain_json_depth_is_the_exact_json_rule() -> None:
    # One bound for what a worker may send and what the host accepts (_jsonrule.MAX_DEPTH).
    assert MAX_JSON_DEPTH == MAX_DEPTH == 64


def test_plain_json_refuses_cycles_and_bounds_depth() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(ValueError) as info:
        plain_json({"a": cycle})
    assert str(info.value) == "Circular reference detected"
    shared = [1]
    assert plain_json([shared, shared]) == [[1], [1]]  # shared is not circular
    deep: Any = "leaf"
    for _ in range(MAX_JSON_DEPTH):
        deep = [deep]
    assert plain_json(deep) == deep
    with pytest.raises(ValueError) as info:
        plain_json([deep])
    assert str(info.value) == f"nested more than {MAX_JSON_DEPTH} levels deep"


# --- spinning while other calls are in flight -------------------------------------------------


@pytest.mark.parametrize("spin_limit", [1, 2])
def test_a_call_made_while_more_are_in_flight_than_may_spin_tells_the_worker_not_to_spin(
    pool: WorkerPool, monkeypatch: pytest.MonkeyPatch, spin_limit: int
) -> None:
    # spin_limit: calls in flight up to which calls spin (one per two usable CPUs in production).
    monkeypatch.setattr(pool._sup._inflight, "spin_limit", spin_limit)
    # A spy on the frames the pool sends (the real worker still gets and answers them).
    sent: list[dict[str, Any]] = []
    real_send = WorkerHandle.send

    def spy(self: WorkerHandle, frame: bytes, deadline: float, quick: bool = False) -> None:
        sent.append(json.loads(frame[4:]))
        real_send(self, frame, deadline, quick)

    monkeypatch.setattr(WorkerHandle, "send", spy)
    inside, release = threading.Event(), threading.Event()

    def hold(method: str, params: dict[str, Any]) -> Any:
        inside.set()  # the first call is in flight, inside its host call
        assert release.wait(60)
        return None

    first = threading.Thread(
        target=pool.call, args=("sbtest:ask_host", ["m", {}]), kwargs={"on_host_call": hold}
    )
    first.start()
    try:
        assert inside.wait(60)
        pool.call("sbtest:echo", [1], on_host_call=lambda m, p: None)
    finally:
        release.set()
        first.join()
    calls = [f for f in sent if f.get("op") == "call"]
    assert [c["fn"] for c in calls] == ["sbtest:ask_host", "sbtest:echo"]
    assert "spin" not in calls[0]  # alone: the worker may spin
    if spin_limit == 1:
        assert calls[1]["spin"] is False  # two calls in flight, one may spin: it does not
    else:
        assert "spin" not in calls[1]  # two calls in flight, and two may spin


def test_a_worker_measures_host_call_answers_and_next_requests_apart() -> None:
    # Two kinds of wait, two SpinWaits: what a host-call answer took never moves the
    # measurements of the wait for the next request, and the other way round.
    ours, theirs = socket.socketpair()
    try:
        reader = _Requests(ours, 4096)
        payload = b'{"op":"call","id":1}'
        frame = struct.pack(">I", len(payload)) + payload
        theirs.sendall(frame)
        assert reader.read(answer=True) == {"op": "call", "id": 1}
        assert (reader._spin_answer.turn, reader._spin_request.turn) == (1, 0)
        theirs.sendall(frame)
        assert reader.read() == {"op": "call", "id": 1}
        assert (reader._spin_answer.turn, reader._spin_request.turn) == (1, 1)
    finally:
        ours.close()
        theirs.close()


def test_a_worker_told_not_to_spin_goes_straight_to_recv() -> None:
    ours, theirs = socket.socketpair()
    try:
        reader = _Requests(ours, 4096)

        class NoSpin(SpinWait):
            def budget(self) -> float:
                raise AssertionError("the spin was consulted")

        reader._spin_request = reader._spin_answer = NoSpin()
        reader.spin_allowed = False
        payload = b'{"op":"call","id":1}'
        theirs.sendall(struct.pack(">I", len(payload)) + payload)
        assert reader.read() == {"op": "call", "id": 1}
        reader.spin_allowed = True
        theirs.sendall(struct.pack(">I", len(payload)) + payload)
        with pytest.raises(AssertionError, match="consulted"):
            reader.read()
    finally:
        ours.close()
        theirs.close()
