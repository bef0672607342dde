"""The 25 hooks: event shape, required capability and family rule of each.

Event keys are camelCase, exactly as on EmDash's wire, so payloads cross the worker boundary
unchanged. The *family* decides how the pipeline combines handler results:

- ``lifecycle``  dispatched to one target plugin only; return value ignored; never raises.
- ``chain``      each non-``None`` result replaces the value handed to the next handler.
- ``veto``       a result that ``is False`` vetoes; every handler still runs.
- ``middleware`` ``False`` cancels and stops; a dict replaces the event; ``None`` keeps it.
- ``notify``     return ignored; errors follow the handler's ``error_policy``.
- ``observe``    return ignored; errors are logged and never propagate (policy ignored).
- ``collect``    results are gathered (page contributions); errors logged, never propagated.
- ``exclusive``  only the selected provider runs; errors are reported in the result.
- ``cron``       dispatched to the plugin that owns the task.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, TypeAlias

__all__ = ["HOOKS", "HOOK_NAMES", "HookName", "HookSpec", "hook_spec"]

Family = Literal[
    "lifecycle", "chain", "veto", "middleware", "notify", "observe", "collect", "exclusive", "cron"
]


@dataclass(frozen=True, slots=True)
class HookSpec:
    """What the runtime knows about one hook name."""

    name: str
    family: Family
    capability: str | None
    event_keys: tuple[str, ...]
    summary: str
    deferred: bool = False
    """After-hooks that EmDash runs after the response; we run them after the commit."""
    chain_key: str | None = None
    """For chain/middleware hooks: the event key whose value is handed on (None: the event)."""


def _h(
    name: str,
    family: Family,
    capability: str | None,
    keys: str,
    summary: str,
    deferred: bool = False,
    chain_key: str | None = None,
) -> HookSpec:
    return HookSpec(name, family, capability, tuple(keys.split()), summary, deferred, chain_key)


_ALL = (
    _h("plugin:install", "lifecycle", None, "", "once, when the plugin is first added"),
    _h("plugin:activate", "lifecycle", None, "", "when the plugin is enabled (after install too)"),
    _h("plugin:deactivate", "lifecycle", None, "", "when the plugin is disabled"),
    _h("plugin:uninstall", "lifecycle", None, "deleteData", "when the plugin is removed"),
    _h(
        "content:beforeSave",
        "chain",
        "content:write",
        "content collection isNew",
        "before a content item is created or updated; may return new field data",
        chain_key="content",
    ),
    _h(
        "content:afterSave",
        "notify",
        "content:read",
        "content collection isNew",
        "after a content item was saved",
        deferred=True,
    ),
    _h(
        "content:beforeDelete",
        "veto",
        "content:read",
        "id collection permanent",
        "before a soft delete; returning False vetoes it",
    ),
    _h(
        "content:afterDelete",
        "notify",
        "content:read",
        "id collection permanent",
        "after a soft or permanent delete",
        deferred=True,
    ),
    _h(
        "content:afterPublish",
        "notify",
        "content:read",
        "content collection",
        "after an item was published",
        deferred=True,
    ),
    _h(
        "content:afterUnpublish",
        "notify",
        "content:read",
        "content collection",
        "after an item was unpublished",
        deferred=True,
    ),
    _h(
        "content:afterRestore",
        "notify",
        "content:read",
        "content collection",
        "after an item was restored from the trash",
        deferred=True,
    ),
    _h(
        "content:afterSchedule",
        "notify",
        "content:read",
        "content collection",
        "after an item was scheduled",
        deferred=True,
    ),
    _h(
        "content:afterUnschedule",
        "notify",
        "content:read",
        "content collection",
        "after an item was unscheduled",
        deferred=True,
    ),
    _h(
        "media:beforeUpload",
        "chain",
        "media:write",
        "file",
        "before a media record is created; may return new {name, type, size}",
        chain_key="file",
    ),
    _h("media:afterUpload", "observe", "media:read", "media", "after a media record was created"),
    _h("cron", "cron", None, "name data scheduledAt", "a scheduled task of this plugin is due"),
    _h(
        "email:beforeSend",
        "middleware",
        "hooks.email-events:register",
        "message source",
        "before a non-system email is delivered; False cancels, a dict replaces the message",
        chain_key="message",
    ),
    _h(
        "email:deliver",
        "exclusive",
        "hooks.email-transport:register",
        "message source",
        "the selected transport delivers the message",
    ),
    _h(
        "email:afterSend",
        "observe",
        "hooks.email-events:register",
        "message source",
        "after a non-system email was delivered",
    ),
    _h(
        "comment:beforeCreate",
        "middleware",
        "users:read",
        "comment metadata",
        "a comment was submitted; False rejects it, a dict replaces the event",
    ),
    _h(
        "comment:moderate",
        "exclusive",
        "users:read",
        "comment metadata collectionSettings priorApprovedCount",
        "decides the initial status of a new comment",
    ),
    _h(
        "comment:afterCreate",
        "observe",
        "users:read",
        "comment metadata content contentAuthor",
        "after a comment was stored",
    ),
    _h(
        "comment:afterModerate",
        "observe",
        "users:read",
        "comment previousStatus newStatus moderator",
        "an admin changed a comment's status",
    ),
    _h(
        "page:metadata",
        "collect",
        None,
        "page",
        "a public page head is rendered; returns metadata contributions",
    ),
    _h(
        "page:fragments",
        "collect",
        "hooks.page-fragments:register",
        "page",
        "a public page is rendered; returns script/html fragments (trusted plugins only)",
    ),
)

HOOKS: MappingProxyType[str, HookSpec] = MappingProxyType({h.name: h for h in _ALL})
HOOK_NAMES: tuple[str, ...] = tuple(HOOKS)

# The 25 names as a type, for annotating handlers and host calls. Kept equal to
# HOOK_NAMES by tests/model/test_hooks_catalog.py (a Literal cannot be built from a tuple).
HookName: TypeAlias = Literal[
    "plugin:install",
    "plugin:activate",
    "plugin:deactivate",
    "plugin:uninstall",
    "content:beforeSave",
    "content:afterSave",
    "content:beforeDelete",
    "content:afterDelete",
    "content:afterPublish",
    "content:afterUnpublish",
    "content:afterRestore",
    "content:afterSchedule",
    "content:afterUnschedule",
    "media:beforeUpload",
    "media:afterUpload",
    "cron",
    "email:beforeSend",
    "email:deliver",
    "email:afterSend",
    "comment:beforeCreate",
    "comment:moderate",
    "comment:afterCreate",
    "comment:afterModerate",
    "page:metadata",
    "page:fragments",
]


def hook_spec(name: str) -> HookSpec:
    """Look up a hook by name; raise ``KeyError`` with the valid names for an unknown one."""
    try:
        return HOOKS[name]
    except KeyError:
        raise KeyError(f'Unknown hook "{name}". Valid hooks: {", ".join(HOOK_NAMES)}') from None
