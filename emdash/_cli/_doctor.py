"""``emdash doctor``: can this machine sandbox plugins, and with which versions? With
``--database PATH`` (or ``--check-db``, the site's configured database) it also checks a
site database: that it is emdash's, and SQLite's ``PRAGMA quick_check`` over every page; for
a PostgreSQL URL, that the server answers and the database's settings and schema suit emdash."""

from __future__ import annotations

import os
import platform
import sqlite3
import sys
from importlib import metadata
from typing import Any

from .._store._dialect import is_postgres_url
from ._output import installed_version

__all__ = ["check_database", "check_postgres", "diagnose", "render", "render_database"]

# How many problems quick_check lists at most (a badly damaged file has thousands).
_MAX_PROBLEMS = 20

# The CPython minor versions RestrictedPython 9.x is audited for (pyproject requires-python).
AUDITED_PYTHON = ((3, 11), (3, 12), (3, 13))


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def diagnose() -> dict[str, Any]:
    """Collect the facts as plain data; ``ok`` is true when untrusted plugins can run here."""
    import sandbox

    availability = sandbox.is_available()
    python = sys.version_info[:2]
    python_ok = python in AUDITED_PYTHON
    try:
        import pyseccomp  # noqa: F401

        seccomp_import: str | None = None
    except Exception as exc:  # an ImportError, or an OSError from a missing libseccomp
        seccomp_import = f"{type(exc).__name__}: {exc}"
    uname = platform.uname()
    bugs = [
        {
            "id": bug.ident,
            "kind": bug.kind,
            "closed": bug.closed,
            "handling": bug.handling,
            "fixed_in": [".".join(map(str, v)) for v in bug.fixed_in],
        }
        for bug in sandbox.INTERPRETER_BUGS
        if sandbox.interpreter_has_bug(bug)
    ]
    return {
        "ok": bool(availability.ok) and python_ok,
        "sandbox": {"available": bool(availability.ok), "reason": availability.reason or None},
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "audited": python_ok,
            "audited_range": ", ".join(f"{a}.{b}" for a, b in AUDITED_PYTHON),
            # Memory bugs of *this* interpreter that plugin code could reach, each with what
            # the sandbox does about it (closed at the language layer, or only contained by
            # the worker's confinement). See SECURITY.md, "Interpreter policy".
            "memory_bugs": bugs,
        },
        "restrictedpython": _version("RestrictedPython"),
        "pyseccomp": {"version": _version("pyseccomp"), "import_error": seccomp_import},
        "emdash": installed_version(),
        "platform": {"system": uname.system, "release": uname.release, "machine": uname.machine},
    }


def _bug_lines(bugs: list[dict[str, Any]]) -> list[str]:
    """One line per known memory bug of this interpreter: how plugin code is kept from it."""
    lines = []
    for bug in bugs:
        verdict = "closed by the sandbox" if bug["closed"] else "contained only (worker crash)"
        fixed = f"; fixed upstream in {', '.join(bug['fixed_in'])}" if bug["fixed_in"] else ""
        lines.append(f"  memory bug:     {bug['id']} {bug['kind']}: {verdict}{fixed}")
    if any(bug["fixed_in"] for bug in bugs):
        lines.append("  advice:         a newer patch release of this Python fixes some of these")
    return lines


def render(report: dict[str, Any]) -> str:
    sb = report["sandbox"]
    py = report["python"]
    seccomp = report["pyseccomp"]
    lines = [
        "sandbox:          "
        + ("available" if sb["available"] else f"NOT available: {sb['reason']}"),
        *([f"                  ({sb['reason']})"] if sb["available"] and sb["reason"] else []),
        f"python:           {py['implementation']} {py['version']} "
        + ("(audited)" if py["audited"] else f"(NOT audited; audited: {py['audited_range']})"),
        *_bug_lines(py["memory_bugs"]),
        f"RestrictedPython: {report['restrictedpython'] or 'not installed'}",
        f"pyseccomp:        {seccomp['version'] or 'not installed'}"
        + (f" (import fails: {seccomp['import_error']})" if seccomp["import_error"] else ""),
        f"emdash:           {report['emdash'] or 'not installed'}",
        f"platform:         {report['platform']['system']} {report['platform']['release']} "
        f"{report['platform']['machine']}",
    ]
    if report["ok"]:
        lines.append("OK: untrusted plugins will run sandboxed on this machine.")
    else:
        lines.append(
            "Untrusted plugins cannot run sandboxed here; loading one raises "
            "SandboxNotAvailableError. Fix the lines above, or add only plugins you trust "
            "with --trusted."
        )
    return "\n".join(lines)


def check_database(path: str, password: str | None = None) -> dict[str, Any]:
    """Check one site database without changing it; ``ok`` is true when it is sound.

    Opened with ``mode=rw`` (never created: a missing file is reported, not made), and only
    read: ``PRAGMA quick_check`` reads every page and checks the b-trees' structure (not
    index contents against tables, which ``integrity_check`` adds at many times the cost).
    """
    if is_postgres_url(path):
        return check_postgres(path, password)
    report: dict[str, Any] = {"path": path, "ok": False, "emdash": None, "problems": []}
    if not os.path.isfile(path):
        report["problems"].append(
            f"{path} does not exist or is not a regular file: check the path "
            "(emdash.toml's database) "
        )
        return report
    try:
        conn = sqlite3.connect(f"file:{_uri_path(path)}?mode=rw", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        report["problems"].append(f"cannot open it: {exc} (check its permissions)")
        return report
    try:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        }
        report["emdash"] = "_emdash_migrations" in tables
        if tables and not report["emdash"]:
            report["problems"].append(
                "not an emdash database (no _emdash_migrations table): emdash refuses to open it"
            )
        rows = [str(r[0]) for r in conn.execute(f"PRAGMA quick_check({_MAX_PROBLEMS})")]
        if rows != ["ok"]:
            report["problems"].extend(rows)
    except sqlite3.Error as exc:
        # A file that is not a database, or damage so bad the check itself cannot run.
        report["problems"].append(f"{exc}")
    finally:
        conn.close()
    report["ok"] = not report["problems"]
    return report


def _uri_path(path: str) -> str:
    # Characters that mean something in a URI, escaped so any file name works.
    return os.path.abspath(path).replace("%", "%25").replace("?", "%3f").replace("#", "%23")


def check_postgres(url: str, password: str | None = None) -> dict[str, Any]:
    """Check a PostgreSQL site database without changing it: the server answers, the
    database's encoding and collation suit emdash, and its schema is emdash's at the
    newest migration this version knows (or older: the next start applies the rest)."""
    from .._store._dialect import collation_problem, redact_url
    from .._store._migrations import MIGRATIONS

    report: dict[str, Any] = {
        "path": redact_url(url),
        "ok": False,
        "emdash": None,
        "problems": [],
        "backend": "postgresql",
    }
    try:
        import psycopg
    except ImportError:
        report["problems"].append(
            "psycopg is not installed: pip install 'emdash[postgres]' on every host"
        )
        return report
    secret = password or ""
    try:
        with psycopg.connect(url, connect_timeout=5, autocommit=True, password=password) as conn:
            row = conn.execute(
                "SELECT datcollate, datctype, pg_encoding_to_char(encoding) "
                "FROM pg_database WHERE datname = current_database()"
            ).fetchone()
            assert row is not None
            problem = collation_problem(str(row[0]), str(row[1]), str(row[2]))
            if problem:
                report["problems"].append(problem)
            tables = {
                str(r[0])
                for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = current_schema()"
                )
            }
            report["emdash"] = "_emdash_migrations" in tables
            if tables and not report["emdash"]:
                report["problems"].append(
                    "not an emdash database (no _emdash_migrations table): emdash refuses "
                    "to open it"
                )
            elif report["emdash"]:
                applied = {int(r[0]) for r in conn.execute("SELECT id FROM _emdash_migrations")}
                known = {n for n, _, _ in MIGRATIONS}
                report["schema"] = max(applied, default=0)
                if applied - known:
                    report["problems"].append(
                        f"written by a newer emdash (migration {max(applied)}; this version "
                        f"knows up to {max(known)}): upgrade emdash on this host"
                    )
                elif known - applied:
                    report["pending"] = sorted(known - applied)
    except psycopg.Error as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if secret:
            text = text.replace(secret, "***")
        report["problems"].append(
            f"cannot connect: {text} (check that the server runs and is reachable from "
            "this host, the database exists, and the user and password: the password "
            "comes from database_password in emdash.toml or PGPASSWORD)"
        )
    report["ok"] = not report["problems"]
    return report


def render_database(report: dict[str, Any]) -> str:
    if report.get("backend") == "postgresql":
        if report["ok"]:
            pending = report.get("pending")
            state = (
                f"schema at migration {report.get('schema', 0)}"
                + (f", {len(pending)} to apply at the next start" if pending else "")
                if report["emdash"]
                else "empty: the first start creates the schema"
            )
            return f"database:         {report['path']}: OK (connected; {state})"
        lines = [f"database:         {report['path']}: NOT USABLE"]
        lines.extend(f"  problem:        {p}" for p in report["problems"])
        return "\n".join(lines)
    if report["ok"]:
        return f"database:         {report['path']}: OK (quick_check passed)"
    lines = [f"database:         {report['path']}: DAMAGED or unusable"]
    lines.extend(f"  problem:        {p}" for p in report["problems"])
    lines.append(
        "  advice:         stop every process using it, copy the file and its -wal/-shm "
        "files aside, and restore the last good backup (sqlite3's .recover can salvage "
        "rows from a damaged copy)"
    )
    return "\n".join(lines)
