"""On a host that cannot sandbox, untrusted plugins are refused — never run unsandboxed."""

from __future__ import annotations

from pathlib import Path

import pytest

import emdash
import sandbox

SOURCE = (
    "from emdash import define_plugin\nplugin = define_plugin(routes={'r': lambda r, ctx: 1})\n"
)


@pytest.fixture
def no_seccomp(monkeypatch: pytest.MonkeyPatch) -> None:
    # The platform probe is the true edge here: pretend this kernel has no seccomp.
    monkeypatch.setattr(
        sandbox,
        "is_available",
        lambda: sandbox.Availability(False, "seccomp is not supported by this kernel"),
    )


@pytest.mark.usefixtures("no_seccomp")
def test_untrusted_plugin_is_refused_with_the_reason(tmp_path: Path) -> None:
    with emdash.Runtime(tmp_path / "site.db") as rt:
        with pytest.raises(emdash.SandboxNotAvailableError) as info:
            rt.add_plugin({"id": "x"}, source={"plugin.py": SOURCE})
        assert "seccomp is not supported by this kernel" in str(info.value)
        assert "trusted=True" in str(info.value)
        assert [p.plugin_id for p in rt.plugins()] == []
        # a trusted plugin still works on such a host
        rt.add_plugin({"id": "t"}, source={"plugin.py": SOURCE}, trusted=True)
        assert rt.invoke_route("t", "r") == 1


@pytest.mark.usefixtures("no_seccomp")
def test_the_explicit_bypass_runs_it_in_process_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with emdash.Runtime(tmp_path / "site.db", sandbox=False) as rt:
        rt.add_plugin({"id": "x"}, source={"plugin.py": SOURCE})
        assert rt.invoke_route("x", "r") == 1
        assert not rt.get_plugin("x").sandboxed
    assert any(
        r.levelname == "WARNING" and "sandbox=False" in r.getMessage() for r in caplog.records
    )
