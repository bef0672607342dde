"""One emdash host, as a separate process, for the several-hosts tests.

Started as ``python -m tests.multihost.host_process <database URL> <media dir>``; reads one
JSON command per line on stdin and answers one JSON line on stdout. The plugin it loads
("counter", trusted, in-process) counts what happens to it in the shared database:

- ``plugin:install`` adds 1 to kv ``installs`` (increment: never conflicts);
- ``content:afterSave`` reads kv ``n`` and writes it back plus one (a read-modify-write
  that the store's isolation must keep from losing updates across hosts);
- the cron task ``once`` adds 1 to kv ``cron_once``; the task ``slow`` prints
  ``CRON-SLOW-STARTED`` on stderr and, on a host started with ``EMDASH_TEST_BLOCK=1``,
  never returns (the test kills that host there), else adds 1 to kv ``slow_done``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
from typing import Any

from emdash import ConflictError, define_plugin
from emdash._runtime._runtime import Runtime

DESCRIPTOR = {"id": "counter", "version": "1.0.0", "capabilities": ["content:read"]}
SAVE = {"content": {"id": "c1"}, "collection": "posts", "isNew": True}


def _install(event: Any, ctx: Any) -> None:
    ctx.kv.increment("installs")


def _after_save(event: Any, ctx: Any) -> None:
    ctx.kv.set("n", (ctx.kv.get("n") or 0) + 1)


def _cron(event: Any, ctx: Any) -> None:
    if event["name"] == "once":
        ctx.kv.increment("cron_once")
    elif event["name"] == "slow":
        print("CRON-SLOW-STARTED", file=sys.stderr, flush=True)
        if os.environ.get("EMDASH_TEST_BLOCK") == "1":
            while True:
                time.sleep(3600)
        ctx.kv.increment("slow_done")


PLUGIN = define_plugin(
    hooks={"plugin:install": _install, "content:afterSave": _after_save, "cron": _cron}
)


def main() -> None:
    url, media = sys.argv[1], sys.argv[2]
    rt = Runtime(url, media_dir=media, sandbox=False)
    try:
        for line in sys.stdin:
            cmd = json.loads(line)
            op = cmd["op"]
            out: Any = None
            if op == "add":
                rt.add_plugin(dict(DESCRIPTOR), source=PLUGIN, trusted=True)
            elif op == "hit":
                ok = 0
                for _ in range(cmd["times"]):
                    try:
                        outcome = rt.run_hook("content:afterSave", SAVE)
                    except ConflictError:
                        continue  # lost the race on every retry: nothing of it was kept
                    ok += sum(1 for r in outcome.results if r.success)
                out = ok
            elif op == "schedule":
                rt.cron.schedule("counter", cmd["name"], cmd["at"])
            elif op == "tick":
                runs = rt.cron.tick(datetime.fromisoformat(cmd["now"]))
                out = [[r.plugin_id, r.name] for r in runs]
            elif op == "disable":
                rt.disable_plugin("counter")
            elif op == "enabled":
                out = rt.get_plugin("counter").enabled
            elif op == "kv":
                out = rt.store.kv_entries.get("counter", cmd["key"])
            elif op == "exit":
                break
            print(json.dumps({"ok": True, "value": out}), flush=True)
    finally:
        rt.close()


if __name__ == "__main__":
    main()
