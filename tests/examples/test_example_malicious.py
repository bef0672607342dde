"""The hostile example plugin, sandboxed: every attempt is refused, and the host stays up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from emdash import (
    BridgeError,
    CapabilityError,
    CpuLimitExceeded,
    EmDashError,
    MemoryLimitExceeded,
    SandboxViolation,
    SubrequestLimitExceeded,
)
from emdash._runtime._runtime import Runtime

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
REFUSED = "Plugin malicious was refused during route:"


@pytest.fixture(scope="module")
def rt() -> Iterator[Runtime]:
    with Runtime(":memory:") as runtime:
        runtime.add_plugin(EXAMPLES / "audit-trail")
        runtime.add_plugin(EXAMPLES / "hello")
        runtime.add_plugin(EXAMPLES / "malicious")
        runtime.content.create("posts", {"title": "victim data"})
        yield runtime


@pytest.mark.parametrize(
    ("route", "error", "message"),
    [
        (
            "import-os",
            SandboxViolation,
            REFUSED + 'import-os: Import of "os" is not allowed in sandboxed plugins.',
        ),
        (
            "import-subprocess",
            SandboxViolation,
            REFUSED
            + 'import-subprocess: Import of "subprocess" is not allowed in sandboxed plugins.',
        ),
        (
            "read-file",
            SandboxViolation,
            REFUSED + 'read-file: "open" is not available in sandboxed plugins; plugins have no '
            "file system; use the storage and KV services of ctx",
        ),
        (
            "format-traversal",
            SandboxViolation,
            REFUSED + 'format-traversal: Access to attribute "format" is not allowed (format '
            "strings can reach private attributes; use f-strings or %)",
        ),
        (
            "dunder-walk",
            SandboxViolation,
            REFUSED + 'dunder-walk: Access to attribute "__class__" is not allowed (names '
            'starting with "_" are private)',
        ),
        (
            "other-storage",
            BridgeError,
            "Storage collection not declared: events (declare it under [storage] in the plugin "
            "descriptor)",
        ),
        (
            "exfiltrate",
            CapabilityError,
            'Missing capability: network:request (plugin "malicious" must declare '
            '"network:request" in its descriptor\'s capabilities to do this)',
        ),
        (
            "spin",
            CpuLimitExceeded,
            "Plugin malicious exceeded CPU limit of 200ms during route:spin. Do less work per "
            "invocation or raise limits.cpu_ms in the plugin descriptor.",
        ),
        (
            "hog",
            MemoryLimitExceeded,
            "Plugin malicious exceeded memory limit of 64 MB during route:hog. Use less memory or "
            "raise limits.memory_mb in the plugin descriptor.",
        ),
        (
            "flood",
            SubrequestLimitExceeded,
            "Plugin malicious exceeded its subrequest limit of 5 calls during this invocation. "
            "Make fewer ctx calls per invocation or raise limits.subrequests in the plugin "
            "descriptor.",
        ),
    ],
)
def test_each_attempt_is_refused(
    rt: Runtime, route: str, error: type[EmDashError], message: str
) -> None:
    with pytest.raises(error) as info:
        rt.invoke_route("malicious", route)
    assert type(info.value) is error
    assert str(info.value).startswith(message)
    assert info.value.plugin_id == "malicious"


def test_other_plugins_kv_is_invisible(rt: Runtime) -> None:
    # audit-trail keeps its sequence number in KV; the hostile plugin cannot see it.
    assert rt.invoke_route("audit-trail", "log", input={"limit": 1})["entries"][0]["seq"] >= 3
    assert rt.invoke_route("malicious", "other-kv") == {
        "audit_seq": None,
        "traversal": None,
        "listed": [],
    }


def test_the_site_keeps_working_after_the_attacks(rt: Runtime) -> None:
    for route in ("spin", "hog", "import-os"):
        with pytest.raises(EmDashError):
            rt.invoke_route("malicious", route)
    rt.content.create("posts", {"title": "after the storm"})
    events = rt.invoke_route("plugin-hello", "recent")["events"]
    assert len(events) == 2
    outcomes = {(r["pluginId"], r["name"], r["outcome"]) for r in rt.audit_log(limit=500)}
    assert ("malicious", "spin", "limit") in outcomes
    assert ("malicious", "hog", "limit") in outcomes


def test_the_plugin_cannot_be_sneaked_in_through_a_native_path() -> None:
    # A sandboxed add never imports the plugin in the host: a module with a top-level
    # escape is refused in the worker, and nothing ran here.
    source = "import os\nos.system('touch /tmp/emdash-pwned')\nplugin = None\n"
    with Runtime(":memory:") as runtime:
        with pytest.raises(SandboxViolation) as info:
            runtime.add_plugin({"id": "sneaky", "version": "1.0.0"}, source=source)
    assert 'Import of "os" is not allowed in sandboxed plugins' in str(info.value)
    assert not Path("/tmp/emdash-pwned").exists()
