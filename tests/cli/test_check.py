"""``emdash check`` runs the load path of ``emdash plugins add`` and warns about run-time-only failures."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from emdash._cli._config import load_config
from emdash.cli import main

ROOT = Path(__file__).resolve().parents[2]


def make_plugin(root: Path, code: str, capabilities: str = '["content:read"]') -> Path:
    plugin = root / "p"
    plugin.mkdir()
    (plugin / "emdash-plugin.toml").write_text(
        f'id = "p"\nversion = "1.0.0"\nentrypoint = "plugin.py"\ncapabilities = {capabilities}\n'
    )
    (plugin / "plugin.py").write_text(code)
    return plugin


def check(*args: str) -> Result:
    return CliRunner().invoke(main, ["check", *args])


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (
            "import os\nfrom emdash import define_plugin\nplugin = define_plugin()\n",
            'plugin.py:1: error: Plugin p was refused during load: Import of "os" is not allowed',
        ),
        (
            "from emdash import define_plugin\nimport requests\nplugin = define_plugin()\n",
            'plugin.py:2: error: Plugin p was refused during load: Import of "requests"',
        ),
        (
            "import unicodedata\nfrom emdash import define_plugin\nplugin = define_plugin()\n",
            'plugin.py:1: error: Plugin p was refused during load: Import of "unicodedata"',
        ),
        (
            "from emdash import define_plugin\nx = define_plugin()\n",
            "plugin.py:2: error: Plugin p: the entry module does not bind a module-level `plugin`",
        ),
        (
            "from emdash import define_plugin\n\n"
            'plugin = define_plugin(hooks={"content:beforesave": lambda e, c: None})\n',
            'plugin.py:3: error: Plugin p: unknown hook "content:beforesave" '
            '(did you mean "content:beforeSave"?)',
        ),
        (
            "from emdash import define_plugin\n\n"
            "plugin = define_plugin(hooks={\n"
            '    "content:beforeSave": lambda e, c: None,\n'
            "})\n",
            'plugin.py:4: error: hook content:beforeSave needs capability "content:write": add '
            "it to capabilities in emdash-plugin.toml, or remove the hook",
        ),
        (
            "from emdash import define_plugin\n\n"
            'plugin = define_plugin(routes={"r": {"handler": lambda r, c: 1, "input": 5}})\n',
            "error: Plugin p",
        ),
    ],
)
def test_check_refuses_what_add_refuses(tmp_path: Path, code: str, expected: str) -> None:
    plugin = make_plugin(tmp_path, code)
    result = check(str(plugin))
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[0].startswith(expected), result.stderr
    assert result.stderr.splitlines()[-1].endswith("emdash plugins add would refuse it")

    # add refuses the same plugin, and the site's config is left without it.
    (tmp_path / "emdash.toml").write_text('database = "site.db"\n')
    added = CliRunner().invoke(
        main, ["--config", str(tmp_path / "emdash.toml"), "plugins", "add", str(plugin)]
    )
    assert added.exit_code == 1
    assert added.stderr.startswith("Error: ")
    assert load_config(tmp_path / "emdash.toml").plugins == []


def test_capability_error_names_the_plugin_at_add(tmp_path: Path) -> None:
    plugin = make_plugin(
        tmp_path,
        "from emdash import define_plugin\n"
        'plugin = define_plugin(hooks={"content:beforeSave": lambda e, c: None})\n',
    )
    (tmp_path / "emdash.toml").write_text('database = "site.db"\n')
    added = CliRunner().invoke(
        main, ["--config", str(tmp_path / "emdash.toml"), "plugins", "add", str(plugin)]
    )
    assert added.stderr == (
        'Error: Plugin p cannot be added: hook content:beforeSave needs capability "content:write": '
        "add it to capabilities in emdash-plugin.toml, or remove the hook\n"
    )


def test_every_hook_problem_is_one_line(tmp_path: Path) -> None:
    plugin = make_plugin(
        tmp_path,
        "from emdash import define_plugin\n\n"
        "def h(e, ctx):\n"
        "    return None\n\n"
        "plugin = define_plugin(hooks={\n"
        '    "content:beforeSave": h,\n'
        '    "media:beforeUpload": h,\n'
        "})\n",
    )
    lines = check(str(plugin)).stderr.splitlines()
    assert [line.split(": error: ")[0] for line in lines[:2]] == ["plugin.py:7", "plugin.py:8"]
    assert '"media:write"' in lines[1]


def test_warnings_alone_exit_zero(tmp_path: Path) -> None:
    plugin = make_plugin(
        tmp_path,
        "from emdash import define_plugin\n\n"
        "def h(e, ctx):\n"
        '    print("saw {}".format(e))\n'
        '    open("x")\n'
        '    "{a}".format_map({})\n'
        "    return None\n\n"
        'plugin = define_plugin(hooks={"content:afterSave": h})\n',
    )
    result = check(str(plugin))
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert [line.split(": warning: ")[0] for line in lines] == [
        "plugin.py:4",
        "plugin.py:4",
        "plugin.py:5",
        "plugin.py:6",
    ]
    assert any("print() output becomes the plugin's log lines" in line for line in lines)
    assert any(".format() is refused at run time" in line for line in lines)
    assert any("open() is refused at run time" in line for line in lines)
    assert result.stdout.startswith("OK: p 1.0.0 (1 files, ")
    assert result.stdout.endswith("loads sandboxed, 4 warning(s)\n")


def test_a_local_function_named_open_is_no_warning(tmp_path: Path) -> None:
    plugin = make_plugin(
        tmp_path,
        "from emdash import define_plugin\n\n"
        "def open(x):\n"
        "    return x\n\n"
        "open(1)\n"
        "plugin = define_plugin()\n",
    )
    result = check(str(plugin))
    assert result.exit_code == 0 and result.stderr == "", result.output


def test_check_as_a_process_with_json(tmp_path: Path) -> None:
    plugin = make_plugin(
        tmp_path,
        "import os\nfrom emdash import define_plugin\nplugin = define_plugin()\n",
    )
    result = subprocess.run(
        [sys.executable, "-m", "emdash", "check", "--json", str(plugin)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["id"] == "p"
    assert report["errors"][0].startswith("plugin.py:1: Plugin p was refused during load: Import")
    assert report["warnings"] == []
    # check reads nothing of a site: no database appears where it ran.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


def test_trusted_check_loads_in_process(tmp_path: Path) -> None:
    plugin = make_plugin(
        tmp_path, "import os\nfrom emdash import define_plugin\nplugin = define_plugin()\n"
    )
    result = check("--trusted", str(plugin))
    assert result.exit_code == 0, result.output
    assert "loads trusted (in-process)" in result.stdout


def test_page_fragments_in_a_sandboxed_plugin_is_a_warning(tmp_path: Path) -> None:
    plugin = make_plugin(
        tmp_path,
        "from emdash import define_plugin\n\n"
        'plugin = define_plugin(hooks={"page:fragments": lambda e, c: None})\n',
        capabilities='["hooks.page-fragments:register"]',
    )
    sandboxed = check("--json", str(plugin))
    assert sandboxed.exit_code == 0
    (warning,) = json.loads(sandboxed.stdout)["warnings"]
    assert warning.startswith("plugin.py:3: page:fragments runs for trusted plugins only")
    trusted = check("--json", "--trusted", str(plugin))
    assert json.loads(trusted.stdout)["warnings"] == []


def test_a_host_that_cannot_sandbox_warns_what_was_not_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sandbox

    # The platform probe is the true edge (as in tests/runtime/test_no_sandbox_host.py).
    monkeypatch.setattr(
        sandbox, "is_available", lambda: sandbox.Availability(False, "no seccomp here")
    )
    plugin = make_plugin(tmp_path, "from emdash import define_plugin\nplugin = define_plugin()\n")
    result = check(str(plugin))
    assert result.exit_code == 0, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        "warning: not loaded, so imports, the plugin binding and hooks were not checked: "
        "Plugin sandboxing is not available on this host: no seccomp here."
    )


def test_restrictedpython_refusals_say_what_to_write_instead(tmp_path: Path) -> None:
    # RestrictedPython's own messages only say what is refused; check adds the rewrite.
    code = (
        "from emdash import define_plugin\n"
        "class C:\n"
        "    def __init__(self):\n"
        "        self.n = 0\n"
        "    def bump(self):\n"
        "        self.n += 1\n"
        "async def on_save(event, ctx):\n"
        "    return None\n"
        "def pick(x):\n"
        "    match x:\n"
        "        case 1:\n"
        "            return 1\n"
        "plugin = define_plugin()\n"
    )
    result = check(str(make_plugin(tmp_path, code)))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[:3] == [
        "plugin.py:6: error: Augmented assignment of attributes is not allowed; write a plain "
        "assignment: self.n = self.n + 1",
        "plugin.py:7: error: AsyncFunctionDef statements are not allowed; handlers are plain "
        "functions (every ctx call returns its answer): use def",
        "plugin.py:10: error: Match statements are not allowed; use if/elif",
    ]


def test_a_ctx_call_without_its_capability_is_a_warning(tmp_path: Path) -> None:
    # It loads, and raises CapabilityError every time it runs: check says so up front.
    code = (
        "from emdash import define_plugin\n"
        "def r(route_ctx, ctx):\n"
        "    ctx.content.get('posts', '1')\n"
        "    ctx.content.create('posts', {})\n"
        "    return ctx.http.fetch('https://api.example.com/').json()\n"
        "plugin = define_plugin(routes={'r': r})\n"
    )
    result = check(str(make_plugin(tmp_path, code)))  # declares content:read only
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        'plugin.py:4: warning: ctx.content.create() needs capability "content:write", which p '
        "does not declare: it raises CapabilityError when it runs; add it to capabilities in "
        "emdash-plugin.toml",
        'plugin.py:5: warning: ctx.http.fetch() needs capability "network:request", which p '
        "does not declare: it raises CapabilityError when it runs; add it to capabilities in "
        "emdash-plugin.toml",
    ]
    # A capability implied by a declared one counts (content:write implies content:read).
    (tmp_path / "w").mkdir()
    write = make_plugin(tmp_path / "w", code.replace("ctx.http.fetch", "str"), '["content:write"]')
    assert check(str(write)).stderr == ""


def test_a_bundle_is_checked_as_plugins_add_would_unpack_it(tmp_path: Path) -> None:
    plugin = make_plugin(tmp_path, "from emdash import define_plugin\nplugin = define_plugin()\n")
    good = tmp_path / "p-1.0.0.tar.gz"
    with tarfile.open(good, "w:gz") as tar:
        tar.add(plugin, arcname="p")
    result = check(str(good))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("OK: p 1.0.0 (1 files,")
    digest = hashlib.sha256(good.read_bytes()).hexdigest()
    assert result.stderr == f"Bundle p-1.0.0.tar.gz: sha256 {digest}\n"

    (plugin / "plugin.py").write_text("import os\nplugin = None\n")
    bad = tmp_path / "p-bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        for file in ("emdash-plugin.toml", "plugin.py"):
            zf.write(plugin / file, f"p/{file}")
    refused = check("--json", str(bad))
    assert refused.exit_code == 1
    report = json.loads(refused.stdout)
    assert report["id"] == "p" and report["sha256"] and report["path"] == str(bad)
    assert report["errors"][0].startswith(
        'plugin.py:1: Plugin p was refused during load: Import of "os"'
    )


def test_a_python_file_is_not_a_plugin(tmp_path: Path) -> None:
    plugin = make_plugin(tmp_path, "from emdash import define_plugin\nplugin = define_plugin()\n")
    result = check(str(plugin / "plugin.py"))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        "plugin.py: error: not a plugin: give the plugin's directory (the one holding "
        "emdash-plugin.toml), its emdash-plugin.toml, or a bundle (.tar.gz, .tgz, .tar, .zip)"
    )
    # Its descriptor is fine.
    assert check(str(plugin / "emdash-plugin.toml")).exit_code == 0


def test_admin_route_problems_point_at_the_code(tmp_path: Path) -> None:
    public = make_plugin(
        tmp_path,
        "from emdash import RouteConfig, define_plugin\n"
        "def admin(route_ctx, ctx):\n"
        "    return {'blocks': []}\n"
        "plugin = define_plugin(routes={'admin': RouteConfig(admin, public=True)})\n",
    )
    (public / "emdash-plugin.toml").write_text(
        (public / "emdash-plugin.toml").read_text() + '[admin]\nwidgets = [{ id = "w" }]\n'
    )
    result = check(str(public))
    assert result.exit_code == 1
    assert result.stderr.startswith('plugin.py:4: error: Plugin "p" declares its "admin" route')
    (public / "plugin.py").write_text(
        "from emdash import define_plugin\nplugin = define_plugin()\n"
    )
    result = check(str(public))
    assert result.exit_code == 1
    assert result.stderr.startswith('plugin.py: error: Plugin "p" declares admin pages or widgets')


def test_allowed_hosts_without_network_request_is_a_warning(tmp_path: Path) -> None:
    plugin = make_plugin(
        tmp_path, "from emdash import define_plugin\nplugin = define_plugin()\n", "[]"
    )
    (plugin / "emdash-plugin.toml").write_text(
        (plugin / "emdash-plugin.toml").read_text() + 'allowed_hosts = ["api.example.com"]\n'
    )
    result = check(str(plugin))
    assert result.exit_code == 0
    assert result.stderr == (
        "emdash-plugin.toml: warning: allowed_hosts is set but capabilities has no "
        "network:request, so ctx.http.fetch is refused for every host; add network:request "
        "to capabilities\n"
    )
