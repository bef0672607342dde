"""Negative controls: the audit notices escapes when they happen.

A suite whose checks can never fail proves nothing. Here the same harness runs payloads
that *do* get through -- plugins run in-process with ``AuditSession(sandbox=False)`` (the
debugging bypass), or raw-worker code that simply returns evidence -- and each check must
report exactly the failure it exists for. Also: the report and the ``run_audit`` entry
point the CLI uses, and which layer each kind of stop is attributed to (real runs: an EPERM,
a SIGSYS kill, a SIGSEGV, a compile refusal, a guard, a limit).
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from emdash._selfaudit import _runner as _audit
from emdash._selfaudit._canaries import CanaryHttpServer
from emdash._selfaudit._corpus import CLASSES, Expect, Payload, payloads_for
from emdash._selfaudit._corpus import P as make_payload
from emdash._selfaudit._runner import (
    AuditReport,
    AuditSession,
    Containment,
    PayloadResult,
    run_audit,
)


@pytest.fixture(scope="module")
def unsandboxed() -> Iterator[AuditSession]:
    with AuditSession("ctx", sandbox=False) as session:
        yield session


@pytest.fixture(scope="module")
def sandboxed() -> Iterator[AuditSession]:
    with AuditSession("os") as session:
        yield session


def _payload(code: str, error: str = "SandboxViolation", error_type: str | None = None) -> Payload:
    return make_payload(
        "negative_control",
        "a payload that gets through",
        "test",
        code,
        "runtime_denied",
        error,
        error_type=error_type,
    )


def test_ok_evidence_is_an_escape(unsandboxed: AuditSession) -> None:
    import_os = next(p for p in payloads_for("import") if p.name == "import_os")
    r = unsandboxed.run(import_os)
    assert r.evidence == ["OK import os: <module 'os' (frozen)>"]
    assert r.failures_of("escape") == [
        "the payload returned evidence: OK import os: <module 'os' (frozen)>"
    ]
    assert r.failures_of("error") == [
        "no error: the invocation returned \"OK import os: <module 'os' (frozen)>\""
    ]
    assert r.failures_of("log") == ["an untrusted plugin ran in-process (SANDBOX BYPASS)"]
    assert not r.passed


def test_a_reached_canary_server_is_an_escape(unsandboxed: AuditSession) -> None:
    code = """
    def handler(event, ctx):
        import urllib.request
        urllib.request.urlopen("http://127.0.0.1:@@CANARY_PORT@@/native", timeout=5).read()
        raise LookupError("DENIED")
    """
    r = unsandboxed.run(_payload(code))
    assert r.failures_of("escape") == ["the canary HTTP server was reached: ['GET /native']"]


def test_a_connection_to_the_canary_server_without_a_request_is_an_escape(
    unsandboxed: AuditSession,
) -> None:
    # Connected, nothing sent, closed: no handler ever reads a request, and the check runs
    # right after the payload, possibly before the server's thread accepted anything.
    code = """
    def handler(event, ctx):
        import socket
        s = socket.create_connection(("127.0.0.1", @@CANARY_PORT@@), timeout=5)
        s.close()
        raise LookupError("DENIED")
    """
    r = unsandboxed.run(_payload(code))
    (failure,) = r.failures_of("escape")
    assert failure.startswith("the canary HTTP server was reached: ['a connection from 127.0.0.1:")
    # Counted once, and not again in the next payload's window.
    r = unsandboxed.run(_payload('def handler(event, ctx):\n    raise LookupError("DENIED")\n'))
    assert r.failures_of("escape") == []


def test_a_payloads_canary_hits_are_its_own_whichever_address_it_used() -> None:
    # The audit takes a payload's hits as the tail of the list past a mark taken before it
    # ran: the 127.0.0.1 and ::1 servers' hits must be one list in the order they came.
    server = CanaryHttpServer()
    try:
        if len(server._servers) < 2:
            pytest.skip("no ::1 on this machine: the canary serves 127.0.0.1 only")

        def reach(host: str, path: str) -> None:
            with socket.create_connection((host, server.port), timeout=5) as s:
                s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
                assert s.recv(4096).startswith(b"HTTP/1.0 200")

        reach("::1", "/earlier")
        mark = len(server.hits)
        reach("127.0.0.1", "/later")
        assert server.hits[mark:] == ["GET /later"]
        assert server.hits == ["GET /earlier", "GET /later"]
    finally:
        server.close()


def test_a_written_canary_file_and_a_database_change_are_caught(unsandboxed: AuditSession) -> None:
    code = """
    def handler(event, ctx):
        with open("@@CANARY_FILE@@", "w") as f:  # closed: a file left to the GC raises ResourceWarning
            f.write("x")
        ctx.kv.set("written", 1)
        return "done"
    """
    r = unsandboxed.run(_payload(code))
    assert r.failures_of("escape") == [f"the canary file {unsandboxed.canary_file} was written"]
    # The KV row, and the plugin's stored-usage counter its trigger keeps (also watched: a
    # plugin that could reset its own counter would have escaped its quota), and the
    # versions its write bumped (docs/integrity.md).
    assert r.failures_of("database") == [
        "table '_emdash_options' differs after the attack",
        "table '_emdash_plugin_usage' differs after the attack",
        "table '_emdash_versions' differs after the attack",
    ]
    assert r.failures_of("error") == ["no error: the invocation returned 'done'"]
    assert not unsandboxed.canary_file.exists()


def test_the_abstract_socket_canary_and_the_victim_are_watched(unsandboxed: AuditSession) -> None:
    code = """
    def handler(event, ctx):
        import socket
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect("\\0@@ABSTRACT_NAME@@")
        s.close()
        import emdash._runtime._runtime
        raise LookupError("DENIED")
    """
    r = unsandboxed.run(_payload(code))
    assert r.failures_of("escape") == ["the abstract-socket canary accepted a connection"]


def test_log_injection_and_host_side_formatting_are_caught(unsandboxed: AuditSession) -> None:
    name = unsandboxed.logger.name
    code = f'''
    def handler(event, ctx):
        import logging
        log = logging.getLogger("{name}.plugins.x")
        log.warning("AUDIT-FORGED line one\\n[plugin:victim] forged\\x1b[2J")
        log.warning("AUDIT-FMT {{}}".format(ctx.__class__))
        log.warning("AUDIT-LATE")
        raise LookupError("DENIED")
    '''
    r = unsandboxed.run(_payload(code, error="PluginError", error_type="LookupError"))
    assert r.failures_of("log") == [
        "an untrusted plugin ran in-process (SANDBOX BYPASS)",
        "log injection: raw control characters in 'AUDIT-FORGED line one\\n[plugin:victim] forged\\x1b[2J'",
        "log injection: a forged log line '[plugin:victim] forged\\x1b[2J'",
        "the host formatted plugin text: \"AUDIT-FMT <class 'emdash.Context'>\"",
        "code ran after its handler returned and reached the host log",
    ]
    assert r.failures_of("error") == []


def test_host_poisoning_is_caught(unsandboxed: AuditSession) -> None:
    code = """
    def handler(event, ctx):
        import json, os
        os.environ["AUDIT_POISON"] = "1"
        json.dumps = lambda *a, **k: "poisoned"
        raise LookupError("DENIED")
    """
    real_dumps = json.dumps
    try:
        r = unsandboxed.run(_payload(code, error="PluginError", error_type="LookupError"))
    finally:
        json.dumps = real_dumps
        os.environ.pop("AUDIT_POISON", None)
    assert r.failures_of("host") == [
        "the host's environment changed",
        "the host's json.dumps was replaced",
    ]


def test_host_time_spent_on_a_plugin_is_checked(
    unsandboxed: AuditSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 3 s of the host's CPU, however long that takes on this machine: the check counts CPU
    # time, so its verdict does not depend on the load. On a busy machine 3 s of CPU can take
    # longer than the harness waits before it calls an invocation hung; here it waits on.
    monkeypatch.setattr(_audit, "_HANG_GRACE_S", 3600.0)
    code = """
    def handler(event, ctx):
        import time
        start = time.process_time()
        while time.process_time() - start < 3:
            pass
        raise LookupError("DENIED")
    """
    p = make_payload(
        "slow_native",
        "keeps a host thread busy for 3 s of CPU",
        "test",
        code,
        "runtime_denied",
        "PluginError",
        error_type="LookupError",
        limits={"cpu_ms": 50, "memory_mb": 64, "wall_ms": 500, "subrequests": 10},
    )
    r = unsandboxed.run(p)
    assert len(r.failures_of("host")) == 1
    found = re.fullmatch(
        r"the host spent (\d+\.\d)s of CPU on one attack call \(wall limit 500ms\)",
        r.failures_of("host")[0],
    )
    assert found and float(found.group(1)) >= 3.0, r.failures_of("host")


def test_raw_worker_evidence_and_error_names(sandboxed: AuditSession) -> None:
    gets_through = make_payload(
        "raw_negative",
        "raw code that returns evidence",
        "test",
        'result = "OK " + str(6 * 7)\n',
        "os_denied",
        "PermissionError",
        mode="raw-worker",
    )
    r = sandboxed.run(gets_through)
    assert r.failures_of("escape") == ["the payload returned evidence: OK 42"]
    assert r.failures_of("error") == ["no error: the invocation returned 'OK 42'"]
    refused = make_payload(
        "raw_refused",
        "raw code whose syscall is refused",
        "test",
        'import os\nos.listdir("/")\n',
        "os_denied",
        "PermissionError",
        mode="raw-worker",
    )
    r = sandboxed.run(refused)
    assert (r.error_name, r.passed) == ("PermissionError", True), r.describe()
    assert sandboxed.confinement["seccomp"] == "allowlist"


def _bomb(name: str, code: str, **kwargs: Any) -> Payload:
    """A ``contained`` payload that targets the CPU limit (what the stop actually is comes
    from the code: these are built so only one outcome is possible on any machine)."""
    return make_payload(
        name,
        "a bomb",
        "test",
        code,
        "contained",
        "CpuLimitExceeded",
        limits={"cpu_ms": 50, "memory_mb": 64, "wall_ms": 500, "subrequests": 10},
        **kwargs,
    )


def test_a_bomb_stopped_by_another_limit_passes_and_is_reported(sandboxed: AuditSession) -> None:
    # Asleep, the worker uses no CPU: only the wall clock can end it, on any machine.
    r = sandboxed.run(_bomb("asleep", "import time\ntime.sleep(3600)\n", mode="raw-worker"))
    assert (r.error_name, r.passed, r.stopped_by_another_limit) == ("WallTimeExceeded", True, True)
    text = AuditReport([r], {"python": "3"}, 1.0).render()
    assert (
        "  [os] asleep: WallTimeExceeded at attack (targets CpuLimitExceeded)" in text.splitlines()
    )
    assert (
        text.splitlines()[-1] == "Every payload was stopped (some by another limit, listed above)."
    )


def test_another_limit_must_carry_its_own_message(sandboxed: AuditSession) -> None:
    # A host call blocked on the store's write lock (corpus 119): the wall limit ends it.
    code = """
    def handler(event, ctx):
        ctx.kv.set("blocked", "AUDIT")
        return "OK the host call returned"
    """
    r = sandboxed.run(
        _bomb("blocked", code, setup="store-lock", message=("exceeded CPU limit of 50ms",))
    )
    assert (r.error_name, r.stopped_by_another_limit) == ("WallTimeExceeded", True), r.describe()
    assert r.failures_of("message") == [] and r.passed, r.describe()
    assert "exceeded wall-time limit of 500ms during route:attack" in (r.message or "")


def test_a_bomb_that_returns_or_fails_otherwise_is_not_stopped(sandboxed: AuditSession) -> None:
    returned = sandboxed.run(_bomb("returns", 'result = "done"\n', mode="raw-worker"))
    assert returned.failures_of("error") == ["no error: the invocation returned 'done'"]
    assert not returned.passed and not returned.stopped_by_another_limit
    refused = sandboxed.run(_bomb("refused", 'import os\nos.listdir("/")\n', mode="raw-worker"))
    assert refused.failures_of("error") == [
        "wrong error class PermissionError (expected CpuLimitExceeded or a stop by any limit)"
    ]
    assert "expected CpuLimitExceeded or any limit (contained), got PermissionError" in (
        refused.describe()
    )


def test_run_audit_reports_per_class() -> None:
    report = run_audit(classes=["guardshadow"])
    assert report.passed and report.exit_code == 0, report.render()
    assert [r.klass for r in report.results] == ["guardshadow"] * len(payloads_for("guardshadow"))
    text = report.render()
    lines = text.splitlines()
    assert lines[0].startswith(
        "emdash audit: escape corpus against the installed package (emdash: "
    )
    assert lines[2] == "class        payloads  passed  failed  seconds"
    assert lines[4].startswith(
        f"guardshadow  {len(report.results):>8} {len(report.results):>7}       0"
    )
    assert "The language layer held for every payload that was stopped." in lines
    assert lines[-1] == "Every payload was stopped by the layer it targets."


def test_render_lists_each_failure_with_its_reason(unsandboxed: AuditSession) -> None:
    r = unsandboxed.run(_payload('def handler(event, ctx):\n    return "OK native"\n'))
    text = AuditReport([r], {"python": "3"}, 1.0).render()
    assert "1 payload(s) were NOT stopped as expected:" in text
    assert (
        "[ctx] negative_control: expected SandboxViolation (runtime_denied), got no error at attack"
        in text
    )
    assert "  - escape: the payload returned evidence: OK native" in text
    assert AuditReport([r]).exit_code == 1


def test_unknown_class_is_refused() -> None:
    with pytest.raises(ValueError) as info:
        run_audit(classes=["import", "nope"])
    assert str(info.value) == "Unknown escape class 'nope'; choose from: " + ", ".join(CLASSES)


# -- which layer stopped each payload (the language layer separately from what contained it)


def _corpus(klass: str, name: str) -> Payload:
    return next(p for p in payloads_for(klass) if p.name == name)


def _restricted(name: str, code: str, expect: Expect, error: str, **kwargs: Any) -> Payload:
    return make_payload(name, "layer attribution", "test", code, expect, error, **kwargs)


@pytest.fixture(scope="module")
def layered(sandboxed: AuditSession) -> dict[str, PayloadResult]:
    """Real runs, one per kind of stop, shared by the attribution and report tests."""
    busy = "def handler(event, ctx):\n    while True:\n        pass\n"
    payloads = {
        "eperm": _corpus("os", "read_etc_passwd"),
        "sigsys": _corpus("os", "x32_abi_syscall"),
        "segv": _corpus("os", "crash_the_worker"),
        "compile": _restricted(
            "dunder_attribute",
            "def handler(event, ctx):\n    return ctx.__class__\n",
            "compile_error",
            "CompileError",
        ),
        "guard": _restricted(
            "import_os_at_runtime",
            "def handler(event, ctx):\n    import os\n    return 'OK ' + repr(os)\n",
            "runtime_denied",
            "SandboxViolation",
        ),
        "limit": _bomb("busy_loop", busy),
    }
    return {key: sandboxed.run(p) for key, p in payloads.items()}


def test_a_raw_worker_os_payload_bypasses_the_language_layer_and_l5_contains_it(
    layered: dict[str, PayloadResult],
) -> None:
    r = layered["eperm"]
    assert r.passed, r.describe()
    assert r.containment == Containment("L5", "a system call was refused: PermissionError", False)
    assert r.language_layer == "bypassed"
    assert r.layer_note == (
        "read_etc_passwd: language layer bypassed (raw worker); contained by L5 "
        "(a system call was refused: PermissionError)"
    )


def test_a_seccomp_kill_and_a_crash_are_told_apart(layered: dict[str, PayloadResult]) -> None:
    killed, crashed = layered["sigsys"], layered["segv"]
    assert killed.passed and crashed.passed, killed.describe() + crashed.describe()
    assert killed.containment == Containment(
        "L5", "worker killed by SIGSYS: a forbidden system call", True
    )
    assert crashed.containment == Containment("crash", "worker died with signal SIGSEGV", True)
    assert crashed.language_layer == "bypassed"
    assert crashed.layer_note == (
        "crash_the_worker: language layer bypassed (raw worker); contained (worker crashed) "
        "(worker died with signal SIGSEGV)"
    )


def test_a_compile_refused_payload_is_stopped_at_l1_and_the_language_layer_held(
    layered: dict[str, PayloadResult],
) -> None:
    r = layered["compile"]
    assert (r.passed, r.stage, r.origin) == (True, "load", "host"), r.describe()
    assert r.containment == Containment("L1", "CompileError", False)
    assert (r.language_layer, r.layer_note) == ("held", None)


def test_a_guard_refusal_is_l2(layered: dict[str, PayloadResult]) -> None:
    r = layered["guard"]
    assert (r.passed, r.stage) == (True, "attack"), r.describe()
    assert r.containment == Containment("L2", "SandboxViolation from a guard or builtin", False)
    assert r.language_layer == "held"


def test_limit_stops_are_l6(layered: dict[str, PayloadResult], sandboxed: AuditSession) -> None:
    # Which limit ends the busy loop depends on the machine (CPU or wall): both are L6.
    r = layered["limit"]
    assert r.passed, r.describe()
    assert r.containment.layer == "L6" and r.containment.evidence == r.error_name
    assert r.language_layer == "held"  # a resource bomb is expected to meet a limit
    asleep = sandboxed.run(_bomb("asleep", "import time\ntime.sleep(3600)\n", mode="raw-worker"))
    assert asleep.containment == Containment("L6", "WallTimeExceeded", False)
    assert asleep.language_layer == "bypassed"


def test_native_evidence_from_a_restricted_payload_is_a_broken_language_layer(
    layered: dict[str, PayloadResult],
) -> None:
    # No restricted payload gets past the language layer (that would be a finding), so the
    # result is built as the host would report one: the real SIGSYS report of the raw run,
    # wrapped the way emdash translates a sandbox error for a plugin.
    p = _restricted(
        "native_code", "def handler(event, ctx):\n    pass\n", "runtime_denied", "SandboxViolation"
    )
    sigsys = layered["sigsys"].message
    r = PayloadResult(
        "os",
        p,
        error_name="SandboxViolation",
        message=f"Plugin atk-os-999 was refused during route:attack: {sigsys}",
        origin="host",
    )
    assert r.passed  # the verdict is unchanged: the payload was stopped as specified
    assert r.containment.layer == "L5" and r.language_layer == "broken"
    assert r.layer_note == (
        "language layer broken by native_code; contained by L5 "
        "(worker killed by SIGSYS: a forbidden system call)"
    )
    # Plugin text quoted in a guard's message is not taken for the host's report.
    quoted = PayloadResult(
        "os",
        p,
        error_name="SandboxViolation",
        message="Plugin atk-os-999 was refused during route:attack: Access to attribute "
        f"'_{sigsys}' is not allowed (private name)",
        origin="host",
    )
    assert (quoted.containment.layer, quoted.language_layer) == ("L2", "held")
    # An EPERM where the language layer should have stopped the payload is a break too; a
    # payload that expects the OS layer (a shim probing the disk) is not.
    eperm = PayloadResult(
        "shim", p, error_name="PluginError", error_type="PermissionError", origin="plugin"
    )
    assert (eperm.containment.layer, eperm.language_layer) == ("L5", "broken")
    expected_at_l5 = PayloadResult(
        "shim",
        _restricted("probe", p.code, "os_denied", "PluginError", error_type="LookupError"),
        error_name="PluginError",
        error_type="PermissionError",
        origin="plugin",
    )
    assert expected_at_l5.language_layer == "held"


def test_the_report_shows_layers_and_every_language_layer_break(
    layered: dict[str, PayloadResult],
) -> None:
    results = list(layered.values())
    report = AuditReport(results, {"python": "3"}, 1.0)
    lines = report.render().splitlines()
    at = lines.index("stopped by layer:")
    assert lines[at + 1 : at + 6] == [
        "class           L1    L2    L3    L4    L5    L6 crash  none",
        "-" * 60,
        "os               1     1     0     0     2     1     1     0",
        "(L1 compile, L2 runtime guards, L3 capability surface, L4 protocol, L5 OS, L6 limits;",
        " crash: the worker died, contained; none: not stopped)",
    ]
    assert lines[at + 7] == (
        "3 payload(s) broke or bypassed the language layer (raw-worker payloads bypass it by "
        "construction); what contained each:"
    )
    assert lines[at + 8 : at + 11] == [
        f"  [os] {layered[k].layer_note}" for k in ("eperm", "sigsys", "segv")
    ]
    # The busy loop may meet its wall limit first on a busy machine: listed, still a pass.
    assert lines[-1] in (
        "Every payload was stopped by the layer it targets.",
        "Every payload was stopped (some by another limit, listed above).",
    )

    data = json.loads(json.dumps(report.to_json()))
    assert data["passed"] is True
    assert data["layers"]["L5"] == "OS"
    assert data["classes"]["os"]["stopped_by"] == {
        "L1": 1,
        "L2": 1,
        "L3": 0,
        "L4": 0,
        "L5": 2,
        "L6": 1,
        "crash": 1,
        "none": 0,
    }
    assert data["classes"]["os"]["language_layer"] == {"held": 3, "broken": 0, "bypassed": 3}
    assert data["language_layer_breaks"][0] == {
        "class": "os",
        "payload": "read_etc_passwd",
        "language_layer": "bypassed",
        "contained_by": "L5",
        "evidence": "a system call was refused: PermissionError",
        "passed": True,
        "text": layered["eperm"].layer_note,
    }
    compiled = next(r for r in data["results"] if r["payload"] == "dunder_attribute")
    assert {k: compiled[k] for k in ("stopped_by", "language_layer", "native", "note")} == {
        "stopped_by": "L1",
        "language_layer": "held",
        "native": False,
        "note": None,
    }
