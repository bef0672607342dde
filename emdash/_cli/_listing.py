"""``emdash plugins list`` and ``emdash plugins show ID``: read-only views of a site.

Listing must not change the site: opening it would create a missing database and
install (``plugin:install``) every plugin not installed yet. So a listing reads
``emdash.toml`` for what is configured, the site's registry (read-only, when the
database exists) for what was installed and approved, and loads each plugin's code on a
throwaway in-memory site, as ``emdash check`` does, for its hooks and routes (loading runs
module-level code, sandboxed for a sandboxed plugin, and no hook). A plugin whose
descriptor now asks for more than was approved is not loaded at all (consent comes before
any of its code runs): it shows as needing an upgrade.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sandbox import SandboxError

from .._model._descriptor import PluginDescriptor
from .._runtime._consent import AccessDiff, Approval, refusal
from .._shared._errors import EmDashError
from .._store._readonly import read_cron_tasks, read_registry
from ._config import PluginEntry, SiteConfig, check_pinned_id, find_entry

if TYPE_CHECKING:
    from .._runtime._runtime import Runtime

__all__ = ["abbreviate", "plugin_detail", "plugin_rows", "render_detail", "state_text"]

#: Past this many characters the HOOKS / ROUTES cells of the table are summarised.
HOOKS_WIDTH = 40
ROUTES_WIDTH = 30


def plugin_rows(config: SiteConfig) -> list[dict[str, Any]]:
    """One row per configured plugin, in config order (see :func:`_row`)."""
    if not config.plugins:
        return []
    registry = read_registry(config.database_path())
    from .._runtime._runtime import Runtime

    # A throwaway site: loads here install nothing and audit nothing in the real one.
    with Runtime(
        ":memory:",
        media_dir=None,
        sandbox=config.sandbox,
        limits=config.limits,
        site=config.site_info(),
    ) as scratch:
        return [_row(config, entry, registry, scratch) for entry in config.plugins]


def plugin_detail(config: SiteConfig, plugin_id: str) -> dict[str, Any]:
    """The row of one plugin (an unknown id names the installed ones), with its storage
    collections and cron tasks."""
    index = find_entry(config, plugin_id)
    entry = config.plugins[index]
    from .._runtime._runtime import Runtime

    registry = read_registry(config.database_path())
    with Runtime(
        ":memory:",
        media_dir=None,
        sandbox=config.sandbox,
        limits=config.limits,
        site=config.site_info(),
    ) as scratch:
        row = _row(config, entry, registry, scratch)
    row["cron"] = read_cron_tasks(config.database_path(), row["id"])
    return row


def _row(
    config: SiteConfig,
    entry: PluginEntry,
    registry: dict[str, dict[str, Any]],
    scratch: Runtime,
) -> dict[str, Any]:
    """``{id, version, mode, trusted, enabled, state, path, capabilities, allowed_hosts, approved,
    bundle_sha256, hooks, routes, storage, error}``; ``state`` is ``ok``, ``new`` (not
    installed in the database yet), ``needs-upgrade`` or ``failed``."""
    path = config.plugin_path(entry)
    mode = "trusted" if entry.trusted else ("sandboxed" if config.sandbox else "unsandboxed")
    row: dict[str, Any] = {
        "id": entry.id or path.name,
        "version": None,
        "mode": mode,
        "trusted": entry.trusted,
        "enabled": entry.enabled,
        "state": "ok",
        "path": str(path),
        "capabilities": [],
        "allowed_hosts": [],
        "approved": None,
        "bundle_sha256": None,
        "hooks": [],
        "routes": [],
        "storage": {},
        "error": None,
    }
    try:
        desc = PluginDescriptor.from_file(path)
        check_pinned_id(entry, desc, path)
    except EmDashError as exc:
        return _failed(row, exc)
    row.update(
        id=desc.id,
        version=desc.version,
        capabilities=list(desc.capabilities),
        allowed_hosts=list(desc.allowed_hosts),
        storage={name: coll.model_dump(by_alias=True) for name, coll in desc.storage.items()},
    )
    known = registry.get(desc.id)
    if known is None:
        row["state"] = "new"
    else:
        row["bundle_sha256"] = known.get("bundleSha256")
        text = known.get("approved")
        if text is not None:
            try:
                approved = Approval.from_json(text)
            except (ValueError, KeyError, TypeError):
                # As the runtime says at load: never read as "nothing approved".
                return _failed(
                    row,
                    ValueError(
                        f"the approval recorded for {desc.id} in the site's database is "
                        f"unreadable; remove it (emdash plugins remove {desc.id}) and add it "
                        "again to approve its access afresh"
                    ),
                )
            row["approved"] = approved.as_dict()
            diff = AccessDiff.between(approved, Approval.of(desc), default_limits=config.limits)
            if diff.escalates:
                # Not loaded: consent comes before any of the plugin's code runs.
                row["state"] = "needs-upgrade"
                row["error"] = " ".join(refusal(desc.id, diff).message.split())
                return row
    try:
        host, _sandboxed = scratch.load_host(desc, trusted=entry.trusted)
    except (EmDashError, SandboxError) as exc:
        return _failed(row, exc)
    try:
        meta = host.definition_meta
        row["hooks"] = sorted(meta.get("hooks", {}))
        row["routes"] = sorted(meta.get("routes", {}))
    finally:
        host.close()
    return row


def _failed(row: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    message = getattr(exc, "message", None) or str(exc)
    row["state"] = "failed"
    row["error"] = " ".join(str(message).split())
    return row


def state_text(row: dict[str, Any]) -> str:
    """The STATE cell: what the plugin's state means and, when it is off, the fix."""
    pid = row["id"]
    state = row["state"]
    if state == "needs-upgrade":
        return f"needs upgrade (emdash plugins upgrade {pid})"
    if state == "failed":
        return f"failed to load (emdash plugins show {pid})"
    if state == "new":
        return "new (installs at the next start)"
    return "ok"


def abbreviate(names: list[str], width: int, noun: str) -> tuple[str, bool]:
    """``names`` for a table cell: all of them when they fit in ``width`` characters, else
    their count and a summary (hooks by family: ``8 hooks: content (4), media (2), ...``).
    Returns the text and whether it was shortened."""
    full = ", ".join(names) or "-"
    if len(full) <= width:
        return full, False
    if noun == "hooks":
        families: dict[str, int] = {}
        for name in names:
            families[name.split(":", 1)[0]] = families.get(name.split(":", 1)[0], 0) + 1
        parts = [f"{fam} ({n})" if n > 1 else fam for fam, n in families.items()]
        text = f"{len(names)} {noun}: " + ", ".join(parts)
        if len(text) <= width + 20:
            return text, True
    shown: list[str] = []
    for name in names:
        if len(", ".join([*shown, name])) > width - 10:
            break
        shown.append(name)
    return ", ".join([*shown, f"+{len(names) - len(shown)} more"]), True


def render_detail(row: dict[str, Any]) -> str:
    """``plugins show``: one ``label: value`` line each, lists in full."""

    def items(values: list[Any]) -> str:
        return ", ".join(str(v) for v in values) if values else "none"

    approved = row.get("approved")
    lines = [
        f"{row['id']} {row.get('version') or ''}".rstrip(),
        f"  state:          {state_text(row)}",
        f"  path:           {row['path']}",
        f"  mode:           {row['mode']}",
        f"  enabled:        {'yes' if row['enabled'] else 'no'}",
        f"  capabilities:   {items(row['capabilities'])}",
        f"  allowed hosts:  {items(row['allowed_hosts'])}",
    ]
    if approved is None:
        lines.append("  approved:       nothing recorded yet (recorded at its first start)")
    else:
        lines.append(f"  approved:       capabilities {items(approved['capabilities'])}")
        lines.append(f"                  allowed hosts {items(approved['allowedHosts'])}")
        if approved.get("limits"):
            limits = ", ".join(f"{k} {v}" for k, v in approved["limits"].items())
            lines.append(f"                  limits {limits}")
    lines.append(
        f"  bundle sha256:  {row.get('bundle_sha256') or 'none (installed from a directory)'}"
    )
    lines.append(f"  hooks:          {items(row['hooks'])}")
    lines.append(f"  routes:         {items(row['routes'])}")
    storage = row.get("storage") or {}
    lines.append(f"  storage:        {items(sorted(storage))}")
    cron = row.get("cron") or []
    if cron:
        lines.append("  cron tasks:")
        for task in cron:
            lines.append(
                f"    {task['name']}  {task['schedule']}  next {task.get('nextRunAt') or '-'}"
            )
    else:
        lines.append("  cron tasks:     none")
    if row.get("error"):
        lines.append(f"  error:          {row['error']}")
    return "\n".join(lines)
