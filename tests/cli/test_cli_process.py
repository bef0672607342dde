"""The CLI as a user runs it: real processes (the demo, the development server)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def emdash(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emdash.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_demo_runs_sandboxed_end_to_end(tmp_path: Path) -> None:
    result = emdash("demo", "--keep", str(tmp_path / "site"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Mode: SANDBOXED" in out
    for line in (
        "plugin-hello      0.1.0    sandboxed  content:afterSave",
        "refused an untitled post: Plugin seo-check raised ValueError during "
        "hook:content:beforeSave: seo-check: every posts item needs a non-",
        "tried to delete the pinned page: Delete blocked by plugin hook (vetoed by seo-check)",
        "GET plugin-hello/recent (no token) -> 401 ",
        "POST forms/submit (no token) -> 409 ",
        "forms: cleanup (@weekly), next run ",
        "a tick eight days from now ran 1 task(s): forms:cleanup (ok; rescheduled",
        '<meta property="og:site_name" content="Demo site">',
        "import os                                     refused: SandboxViolation: ",
        "while True: ... (CPU limit)                   refused: CpuLimitExceeded: ",
    ):
        assert line in out, line
    assert "NOT REFUSED" not in out
    assert "Traceback" not in out + result.stderr
    assert (tmp_path / "site" / "site.db").is_file()
    assert f"Done. The site was kept in {tmp_path / 'site'}." in out


def test_demo_trusted_mode_runs_the_same_plugins_in_process(tmp_path: Path) -> None:
    result = emdash("demo", "--trusted", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Mode: TRUSTED, the example plugins run in-process (--trusted was given)." in out
    assert "plugin-hello      0.1.0    trusted  content:afterSave" in out
    assert (
        "tried to delete the pinned page: Delete blocked by plugin hook (vetoed by seo-check)"
        in out
    )
    assert "forms: cleanup (@weekly), next run " in out
    assert "a tick eight days from now ran 1 task(s): forms:cleanup (ok; rescheduled" in out
    # The only error logged is the deliberate refusal of the untitled post.
    assert [
        line.split("handler failed")[0] for line in out.splitlines() if "log error" in line
    ] == [
        '   log error   [hooks] Plugin "seo-check" content:beforeSave ',
    ]
    # The hostile plugin is never loaded trusted.
    assert "malicious" not in out
    assert "Done. (Run `emdash demo --keep DIR` to keep the site.)" in out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_answers_over_http(tmp_path: Path) -> None:
    (tmp_path / "emdash.toml").write_text(
        'database = "site.db"\napi_token = { "$env" = "EMDASH_API_TOKEN" }\n\n'
        f'[[plugins]]\npath = "{EXAMPLES / "hello"}"\n\n[[plugins]]\npath = "{EXAMPLES / "forms"}"\n'
    )
    port = free_port()
    env = {**os.environ, "EMDASH_API_TOKEN": "serve-test-token-0123456789"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "emdash.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}/_emdash/api/plugins"
        deadline = time.monotonic() + 60
        with httpx.Client(trust_env=False, timeout=10) as client:
            while True:
                try:
                    denied = client.get(f"{base}/plugin-hello/recent")
                    break
                except httpx.ConnectError:
                    assert proc.poll() is None, proc.communicate()
                    assert time.monotonic() < deadline, "server did not start"
                    time.sleep(0.1)
            assert denied.status_code == 401
            ok = client.get(
                f"{base}/plugin-hello/recent",
                headers={"authorization": "Bearer serve-test-token-0123456789"},
            )
            assert ok.json() == {"success": True, "data": {"events": []}}
            sent = client.post(
                f"{base}/forms/submit", json={"form": "f", "email": "a@b.example", "message": "m"}
            )
            assert sent.status_code == 200
            assert sent.json()["data"]["received"] is True
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"Serving plugin routes on http://127.0.0.1:{port}/_emdash/api/plugins/" in err


def test_serve_without_the_token_variable_fails_cleanly(tmp_path: Path) -> None:
    (tmp_path / "emdash.toml").write_text('api_token = { "$env" = "EMDASH_API_TOKEN" }\n')
    env = {k: v for k, v in os.environ.items() if k != "EMDASH_API_TOKEN"}
    result = emdash("serve", cwd=tmp_path, env=env, timeout=60)
    assert result.returncode == 1
    assert result.stderr == (
        f"Error: {tmp_path / 'emdash.toml'}: api_token refers to environment variable "
        "EMDASH_API_TOKEN, which is not set; export it or remove api_token\n"
    )


def test_audit_runs_the_corpus_against_the_installed_package(tmp_path: Path) -> None:
    # One small class end to end (the whole corpus runs in tests/escapes); from any
    # directory, since the corpus ships inside the package.
    result = emdash("audit", "--class", "import", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "escape corpus against the installed package" in result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith("import "))
    payloads, passed, failed = row.split()[1:4]
    assert (passed, failed) == (payloads, "0") and int(payloads) >= 7
    assert "Every payload was stopped by the layer it targets." in result.stdout


def test_audit_json_reports_the_layer_that_stopped_each_payload(tmp_path: Path) -> None:
    result = emdash("audit", "--class", "os", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["passed"] is True
    counts = report["classes"]["os"]
    assert sum(counts["stopped_by"].values()) == counts["payloads"]
    assert counts["stopped_by"]["none"] == 0
    # Every os payload runs in a raw worker: the language layer is bypassed by construction.
    assert counts["language_layer"]["bypassed"] == counts["payloads"]
    breaks = {b["payload"]: b for b in report["language_layer_breaks"]}
    assert breaks["read_etc_passwd"]["contained_by"] == "L5"
    assert breaks["read_etc_passwd"]["text"] == (
        "read_etc_passwd: language layer bypassed (raw worker); contained by L5 "
        "(a system call was refused: PermissionError)"
    )
    assert breaks["crash_the_worker"]["contained_by"] == "crash"


def test_audit_refuses_an_unknown_class(tmp_path: Path) -> None:
    result = emdash("audit", "--class", "nope", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: Unknown escape class 'nope'; choose from: import,")
