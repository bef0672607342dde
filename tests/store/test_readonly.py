"""Reading a site without opening it: a missing or foreign database reads as empty and is
never created or written."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import emdash
from emdash._store._readonly import read_audit, read_cron_tasks, read_registry


def test_a_missing_or_foreign_database_reads_as_empty(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.db")
    assert read_registry(missing) == {}
    assert read_cron_tasks(missing, "p") == []
    assert read_audit(missing) == []
    assert list(tmp_path.iterdir()) == []  # not created

    foreign = tmp_path / "other.db"
    with closing(sqlite3.connect(foreign)) as db:  # closes, not only commits
        db.execute("CREATE TABLE t (x)")
        db.commit()
    data = foreign.read_bytes()
    assert read_registry(str(foreign)) == {} and read_audit(str(foreign)) == []
    assert foreign.read_bytes() == data  # not migrated


def test_it_reads_what_the_runtime_wrote(tmp_path: Path) -> None:
    site = str(tmp_path / "site.db")
    code = (
        "from emdash import define_plugin\n\ndef on(event, ctx):\n"
        '    ctx.cron.schedule("daily", schedule="@daily")\n\n'
        'plugin = define_plugin(hooks={"plugin:activate": on, "cron": lambda e, c: None},\n'
        '                       routes={"hi": lambda r, c: 1})\n'
    )
    with emdash.Runtime(site) as rt:
        rt.add_plugin({"id": "p", "version": "1.2.3"}, source=code, trusted=True)
        rt.invoke_route("p", "hi")
        expected_audit = rt.audit_log()
        expected_tasks = rt.cron.list("p")
    registry = read_registry(site)
    assert registry["p"]["version"] == "1.2.3" and registry["p"]["enabled"] is True
    assert read_cron_tasks(site, "p") == expected_tasks
    assert [r["name"] for r in read_cron_tasks(site, "p")] == ["daily"]
    assert read_audit(site) == expected_audit
    assert read_audit(site, plugin_id="other") == []
