"""The pytest plugin, used the way a plugin author's own suite uses it (pytester sessions).

The inner sessions get the fixtures only through the ``pytest11`` entry point that
installing emdash registers: nothing in them imports or names the plugin module.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .conftest import HELLO

AUTHOR_SUITE = f"""
    from pathlib import Path

    import emdash
    from emdash.testing import PluginHarness, assert_capability_denied

    HELLO = Path({str(HELLO)!r})
    made = []


    def test_runtime_fixture(emdash_runtime):
        assert isinstance(emdash_runtime, emdash.Runtime)
        assert Path(emdash_runtime.store.db.conn.execute("PRAGMA database_list")
                    .fetchone()[2]).name == "emdash-site.db"
        made.append(emdash_runtime)


    def test_runtime_was_closed():
        assert made.pop().store.closed


    def test_hello_in_both_modes(plugin_harness, both_modes):
        h = plugin_harness(HELLO, sandbox=both_modes)
        assert isinstance(h, PluginHarness) and h.sandboxed is (both_modes == "sandboxed")
        item = h.runtime.content.create("posts", {{"title": "Hi"}})
        (event,) = h.route("recent")["events"]
        assert event["data"]["contentId"] == item["id"]
        made.append(h)


    def test_harnesses_were_closed():
        assert [h.closed for h in made] == [True, True]
        assert [h.runtime.store.closed for h in made] == [True, True]


    def test_denial(plugin_harness):
        h = plugin_harness({{"id": "bare", "version": "1.0.0"}}, source=(
            "from emdash import define_plugin\\n"
            "plugin = define_plugin(routes={{'peek': lambda r, ctx: ctx.content.list('posts')}})\\n"
        ))
        assert_capability_denied(lambda: h.route("peek"), "content:read")
"""


def test_fixtures_work_in_an_external_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_author=AUTHOR_SUITE)
    result = pytester.runpytest("-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(
        [
            "*test_hello_in_both_modes?sandboxed? PASSED*",
            "*test_hello_in_both_modes?native? PASSED*",
        ]
    )


def test_the_entry_point_loads_the_plugin_in_a_fresh_interpreter(
    pytester: pytest.Pytester,
    descendants: Callable[[], dict[int, str]],
    still_running: Callable[[dict[int, str]], list[int]],
) -> None:
    pytester.makepyfile(test_author=AUTHOR_SUITE)
    before = descendants()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)
    # The inner interpreter has exited; neither it nor any fork server or worker it
    # started survives it.
    assert still_running({p: s for p, s in descendants().items() if p not in before}) == []


def test_disabling_the_plugin_removes_the_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_author="def test_x(plugin_harness):\n    pass\n")
    result = pytester.runpytest("-p", "no:emdash", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'plugin_harness' not found*"])


def test_both_modes_skips_the_sandboxed_run_where_the_host_cannot_sandbox(
    pytester: pytest.Pytester,
) -> None:
    # The platform probe is the one thing replaced: this host can sandbox, and the branch
    # under test is the fixture's reaction to a host that cannot.
    pytester.makeconftest(
        """
        import pytest
        import sandbox


        @pytest.fixture(autouse=True)
        def no_seccomp(monkeypatch):
            monkeypatch.setattr(
                sandbox, "is_available", lambda: sandbox.Availability(False, "seccomp is missing")
            )
        """
    )
    pytester.makepyfile(
        test_author="def test_mode(both_modes):\n    assert both_modes == 'native'\n"
    )
    result = pytester.runpytest("-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*this host cannot sandbox plugins: seccomp is missing*"])


def test_a_failing_test_still_closes_its_harnesses(
    pytester: pytest.Pytester,
    descendants: Callable[[], dict[int, str]],
    still_running: Callable[[dict[int, str]], list[int]],
) -> None:
    pytester.makepyfile(
        test_author=f"""
        from pathlib import Path


        def test_fails(plugin_harness):
            plugin_harness(Path({str(HELLO)!r})).route("recent")
            plugin_harness(Path({str(HELLO)!r}), sandbox=False)
            raise AssertionError("the author's test failed")
        """
    )
    before = descendants()
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert still_running({p: s for p, s in descendants().items() if p not in before}) == []
