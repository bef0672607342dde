"""The worker's serve loop, through real confined workers: load, init, calls, host calls,
error reporting, and the invocation boundary (escape classes ``exc``, ``serial``, ``frame``).
"""

from __future__ import annotations

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


def test_init_runs_after_loading_and_its_result_is_kept(pool: WorkerPool) -> None:
    assert pool.init_result == {"tag": "t", "add": 5}


def test_call_runs_a_prelude_function_on_the_entry_module(pool: WorkerPool, sb: SimpleNamespace) -> None:
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
        '{"a": 1}', "bb", True, "2024-01-02T00:00:00", "2d711642", "aGk=", "2.10", 36, "1970",
        "bücher.example", "é",
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
    assert result.value == {"failed": {"type": "ValueError", "message": "no such key", "from": "host"}}


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


def test_bad_host_calls_are_refused_inside_the_worker(pool: WorkerPool, sb: SimpleNamespace) -> None:
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
            "worker:init-host-call", sb.BUNDLE, sb.ENTRY, limits=sb.LIMITS,
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


def test_escaping_exceptions_come_back_as_remote_errors(pool: WorkerPool, sb: SimpleNamespace) -> None:
    with pytest.raises(RemoteError) as info:
        pool.call("sbtest:raise_value_error", ["boom"], on_host_call=sb.no_host_calls)
    err = info.value
    assert str(err) == "boom"
    assert err.error_type == "ValueError"
    assert {k: v for k, v in err.data.items() if k != "traceback"} == {
        "type": "ValueError", "message": "boom", "encoder": "sbtest",
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
        ("sbtest:unserialisable", [],
         "the result is not JSON-serialisable: Object of type object is not JSON serializable"),
        ("sbtest:huge", [9 << 20],
         "the result is too large (9437186 bytes of JSON; the limit is 8388352)"),
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


# --- loading ---------------------------------------------------------------------------------


def test_compile_errors_propagate_from_load(supervisor: Supervisor, sb: SimpleNamespace) -> None:
    with pytest.raises(CompileError) as info:
        supervisor.load("worker:bad", {"plugin.py": "x = _y\ndef f(:\n"}, "plugin.py", limits=sb.LIMITS)
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


def test_module_code_that_raises_fails_the_load(supervisor: Supervisor, sb: SimpleNamespace) -> None:
    with pytest.raises(RemoteError) as info:
        supervisor.load(
            "worker:raises", {"plugin.py": "raise ValueError('at import')\n"}, "plugin.py",
            limits=sb.LIMITS,
        )
    assert (info.value.error_type, str(info.value)) == ("ValueError", "at import")


def test_loading_has_its_own_cpu_budget(supervisor: Supervisor) -> None:
    limits = SandboxLimits(cpu_ms=50, memory_mb=64, wall_ms=5_000, load_cpu_ms=100)
    with pytest.raises(CpuLimitExceeded) as info:
        supervisor.load("worker:spin", {"plugin.py": "while True:\n    pass\n"}, "plugin.py", limits=limits)
    assert info.value.limit_ms == 100  # type: ignore[attr-defined]
