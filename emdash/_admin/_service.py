"""``rt.admin``: the server half of the plugin admin (Block Kit pages, widgets, settings).

The admin UI (or any host code) talks to plugins' admin surfaces only through
:class:`AdminService`:

- :meth:`AdminService.catalog` lists what to show: per enabled plugin its pages, dashboard
  widgets and whether it has settings;
- :meth:`AdminService.interact` forwards one *validated* interaction to the plugin's
  private ``admin`` route and returns the plugin's answer *validated* against the Block
  Kit schema (:mod:`emdash._admin._blockkit`), or raises :class:`AdminResponseError`;
- :meth:`AdminService.settings_page` / :meth:`AdminService.save_settings` serve the
  settings page the host generates from ``admin.settingsSchema`` (no plugin code runs);
  every save is audited (kind ``admin``: the changed keys, never a value).

:meth:`AdminService.interact` is stateless: it cannot know which options the page that
produced a ``form_submit`` offered. The built-in UI remembers them and refuses a value
that was not offered (:mod:`emdash._asgi._admin_forms`); another UI must do the same.

Security contract (see docs/admin.md, "Security"):

- The ``admin`` route is private: a plugin may not declare it ``public`` (refused at load),
  so the plugin route URL answers it only to a caller holding the API token. The admin UI
  calls :meth:`interact`, never the route URL, so every answer it renders went through the
  schema check.
- CSRF is the UI's side: :meth:`interact` and :meth:`save_settings` act with the
  authority of whoever the UI authenticated, so the UI must only call them for a request
  that carries its per-session CSRF token (a hidden form field compared in constant time
  with the session's) and comes from its own origin (``Origin``/``Sec-Fetch-Site``); its
  session cookie is ``HttpOnly; SameSite=Strict``. That also covers ``page_load``: a
  plugin may do anything when a page loads (EmDash's GET-can-mutate lesson, #1853).
- Every string in a response is plugin-chosen text: the UI escapes all of it and uses
  URLs only in ``href``/``src`` (they are already limited to http(s) and site paths).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from .._model._descriptor import PluginDescriptor
from .._shared._errors import ManifestError, NotFoundError, QuotaExceededError
from .._store._options import KVEntries
from ._blockkit import (
    MAX_ID,
    AdminInteractionError,
    validate_blocks,
    validate_response,
)
from ._settings import SettingsStore

if TYPE_CHECKING:  # the runtime imports this module: no import back at run time
    from .._hosting._outcome import PluginHost
    from .._runtime._plugin_info import PluginInfo

__all__ = ["ADMIN_ROUTE", "AdminService", "check_admin_surface"]

log = logging.getLogger("emdash.admin")

ADMIN_ROUTE = "admin"
MAX_INTERACTION_BYTES = 64 * 1024  # submitted form values / an action's value, as JSON
WIDGET_PREFIX = "widget:"


def check_admin_surface(host: PluginHost) -> None:
    """Refuse at load a plugin whose admin declaration and code disagree.

    Declaring pages or widgets needs an ``admin`` route to serve them (EmDash's bundler
    rule), and that route must stay private: its answers are meant for the admin only.
    """
    desc = host.descriptor
    routes = host.definition_meta.get("routes", {})
    if desc.admin.has_surface and ADMIN_ROUTE not in routes:
        declared = [p.path for p in desc.admin.pages] + [
            WIDGET_PREFIX + w.id for w in desc.admin.widgets
        ]
        raise ManifestError(
            f'Plugin "{desc.id}" declares admin pages or widgets ({", ".join(declared[:10])}) '
            'but has no "admin" route to serve them: add routes={"admin": handler} to its '
            "define_plugin(...) (the handler receives the interaction as route_ctx['input'] "
            "and returns Block Kit; see: emdash help admin), or remove admin.pages/admin.widgets "
            "from its descriptor",
            plugin_id=desc.id,
        )
    meta = routes.get(ADMIN_ROUTE)
    if isinstance(meta, Mapping) and meta.get("public") is True:
        raise ManifestError(
            f'Plugin "{desc.id}" declares its "admin" route public: the admin route answers '
            "admin interactions and must be private; drop public=True from it",
            plugin_id=desc.id,
        )


class AdminService:
    """The plugin admin's server half; one per :class:`~emdash.Runtime` (``rt.admin``).

    Built by the runtime with narrow collaborators: ``plugins`` lists the added plugins,
    ``invoke_route`` is ``Runtime.invoke_route`` (admission, auditing, both modes),
    ``kv`` and ``transaction`` come from the store.
    """

    def __init__(
        self,
        *,
        plugins: Callable[[], list[PluginInfo]],
        invoke_route: Callable[..., Any],
        kv: KVEntries,
        transaction: Callable[[], AbstractContextManager[None]],
        audit: Callable[..., None] | None = None,
    ) -> None:
        self._plugins = plugins
        self._invoke_route = invoke_route
        self._settings = SettingsStore(kv, transaction)
        # AuditRecords.record: a settings save is an administrator's change to what a
        # plugin does, so it is audited like the plugin's own invocations (kind "admin").
        self._audit = audit

    # -- what to show ------------------------------------------------------------------

    def catalog(self) -> list[dict[str, Any]]:
        """Per enabled plugin with an admin surface, in the order they were added::

            {"plugin_id", "name", "mode",            # mode: sandboxed|trusted|unsandboxed
             "pages": [{"path", "label", "icon"?}],
             "widgets": [{"id", "title", "size"}],   # title defaults to the id, size "full"
             "has_settings": bool}

        Plugins with neither pages, widgets nor settings are left out; so are disabled ones.
        """
        out: list[dict[str, Any]] = []
        for info in self._plugins():
            desc = info.descriptor
            admin = desc.admin
            if not info.enabled or not (admin.has_surface or admin.settings_schema):
                continue
            pages = []
            for page in admin.pages:
                entry = {"path": page.path, "label": page.label}
                if page.icon is not None:
                    entry["icon"] = page.icon
                pages.append(entry)
            out.append(
                {
                    "plugin_id": desc.id,
                    "name": desc.name or desc.id,
                    "mode": info["mode"],
                    "pages": pages,
                    "widgets": [
                        {"id": w.id, "title": w.title or w.id, "size": w.size or "full"}
                        for w in admin.widgets
                    ],
                    "has_settings": bool(admin.settings_schema),
                }
            )
        return out

    # -- interactions ------------------------------------------------------------------

    def interact(
        self, plugin_id: str, interaction: Mapping[str, Any], *, user: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Run the plugin's ``admin`` route with ``interaction``; its validated answer.

        ``interaction`` is one of::

            {"type": "page_load", "page": "/path" | "widget:<id>"}    # a declared one
            {"type": "form_submit", "action_id": str, "block_id"?: str, "values": {...}}
            {"type": "block_action", "action_id": str, "block_id"?: str, "value"?: JSON}

        Returns ``{"blocks": [...], "toast": {"message", "type"} | None}``, a private copy
        that passed the Block Kit schema. Raises :class:`AdminInteractionError` for a
        malformed interaction (the caller's bug), ``NotFoundError`` for a plugin that is
        unknown, disabled or has no pages/widgets, :class:`AdminResponseError` for an
        invalid answer; the plugin's own errors (``PluginRouteError``, limits...) propagate
        as from ``rt.invoke_route``. ``user`` is passed to the route as ``route_ctx["user"]``.
        """
        info = self._admin_plugin(plugin_id)
        checked = _check_interaction(info.descriptor, interaction)
        answer = self._invoke_route(
            plugin_id,
            ADMIN_ROUTE,
            input=checked,
            request={"method": "POST", "headers": {"content-type": "application/json"}},
            user=user,
        )
        return validate_response(plugin_id, answer)

    def _admin_plugin(self, plugin_id: str) -> PluginInfo:
        info = self._find(plugin_id)
        if not info.descriptor.admin.has_surface:
            raise NotFoundError(
                f'Plugin "{plugin_id}" has no admin pages or widgets; declare admin.pages or '
                "admin.widgets in its descriptor (and an admin route) to give it some",
                plugin_id=plugin_id,
            )
        return info

    def _find(self, plugin_id: str) -> PluginInfo:
        for info in self._plugins():
            if info.plugin_id == plugin_id:
                if not info.enabled:
                    raise NotFoundError(
                        f'Plugin "{plugin_id}" is disabled; enable it to use its admin pages',
                        plugin_id=plugin_id,
                    )
                return info
        raise NotFoundError(
            f'No plugin "{str(plugin_id)[:100]}" is added to this site; rt.admin.catalog() '
            "lists the plugins with an admin surface"
        )

    # -- settings ----------------------------------------------------------------------

    def settings(self, plugin_id: str) -> dict[str, Any]:
        """``{"schema", "values", "secretsSet"}`` (EmDash's settings GET): unset values are
        the default or ``None``; secrets are only listed by key in ``secretsSet``."""
        return self._settings.values(self._settings_plugin(plugin_id))

    def settings_page(self, plugin_id: str) -> dict[str, Any]:
        """The generated settings page: ``{"blocks", "toast": None, "errors": {}}``.

        One form (``block_id`` ``"emdash-settings"``, submit ``action_id``
        ``"emdash:save_settings"``) with one input per schema field, its ``action_id`` the
        setting's key. Secrets show only whether they are set. Its submit goes to
        :meth:`save_settings`, not to the plugin.
        """
        desc = self._settings_plugin(plugin_id)
        return {"blocks": self._blocks(desc), "toast": None, "errors": {}}

    def save_settings(self, plugin_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Validate and store submitted settings; the page again, with a toast.

        ``values`` maps setting keys to submitted values (see :mod:`._settings` for the
        accepted forms). All-or-nothing: on any problem nothing is written and the answer
        is ``{"blocks" (the form refilled), "toast": {"type": "error", ...}, "errors":
        {key: problem}}``; on success ``errors`` is empty and the toast says so.
        """
        desc = self._settings_plugin(plugin_id)
        if not isinstance(values, Mapping):
            raise AdminInteractionError(
                f"save_settings({plugin_id!r}, values): values must be a mapping of setting "
                f"keys to values, not {type(values).__name__}",
                plugin_id=plugin_id,
            )
        started = time.perf_counter()
        try:
            errors, changed = self._settings.save_changes(desc, values)
        except QuotaExceededError as exc:
            self._record_save(desc, started, "error", [], error=str(exc))
            return {
                "blocks": self._blocks(desc),
                "toast": {"message": str(exc)[:500], "type": "error"},
                "errors": {},
            }
        if errors:
            count = len(errors)
            self._record_save(
                desc, started, "error", [], error=f"refused: {count} field(s) did not validate"
            )
            return {
                "blocks": self._blocks(desc, submitted=values, errors=errors),
                "toast": {
                    "message": f"Settings not saved: {count} "
                    + ("field needs" if count == 1 else "fields need")
                    + " attention",
                    "type": "error",
                },
                "errors": errors,
            }
        self._record_save(desc, started, "ok", changed)
        return {
            "blocks": self._blocks(desc),
            "toast": {"message": "Settings saved", "type": "success"},
            "errors": {},
        }

    def _record_save(
        self,
        desc: PluginDescriptor,
        started: float,
        outcome: str,
        changed: list[str],
        *,
        error: str | None = None,
    ) -> None:
        """Audit one settings save: which keys changed, never a value.

        Keys come from the plugin's schema (validated ids of at most 64 characters); the
        submitted values, secrets above all, and any key the schema does not have (a
        client's text) stay out of the record."""
        if self._audit is None:
            return
        schema = desc.admin.settings_schema
        secrets = [k for k in changed if schema.get(k, {}).get("type") == "secret"]
        listed = ", ".join(changed) if changed else ("no change" if outcome == "ok" else "none")
        name = f"settings: {listed}"
        if len(name) > 200:
            name = name[:199] + "…"
        message = f"changed settings: {listed}"
        if secrets:
            message += f" (secret, value not recorded: {', '.join(secrets)})"
        try:
            self._audit(
                desc.id,
                "admin",
                name,
                outcome,
                (time.perf_counter() - started) * 1000,
                error=error,
                logs=json.dumps([{"level": "info", "message": message}]),
            )
        except Exception:
            # The save happened; a failing audit write must not turn it into an error page.
            log.exception("Could not record the audit entry of a settings save for %s", desc.id)

    def _settings_plugin(self, plugin_id: str) -> PluginDescriptor:
        desc = self._find(plugin_id).descriptor
        if not desc.admin.settings_schema:
            raise NotFoundError(
                f'Plugin "{plugin_id}" has no settings; declare admin.settingsSchema in its '
                "descriptor to give it a settings page",
                plugin_id=plugin_id,
            )
        return desc

    def _blocks(
        self,
        desc: PluginDescriptor,
        submitted: Mapping[str, Any] | None = None,
        errors: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        # The same schema check as a plugin's answer: labels and stored values are the
        # plugin author's text too.
        return validate_blocks(
            desc.id, self._settings.page(desc, submitted=submitted, errors=errors)
        )


def _check_interaction(desc: PluginDescriptor, interaction: Any) -> dict[str, Any]:
    """A clean copy of ``interaction``, or :class:`AdminInteractionError`.

    Deny-by-default: a page must be one the descriptor declares, ids are bounded strings,
    values bounded JSON; unknown fields are refused, so the plugin sees only this shape.
    """
    pid = desc.id

    def bad(problem: str) -> AdminInteractionError:
        return AdminInteractionError(
            f'Invalid admin interaction for plugin "{pid}": {problem}', plugin_id=pid
        )

    if not isinstance(interaction, Mapping):
        raise bad(f"must be a mapping, not {type(interaction).__name__}")
    kind = interaction.get("type")
    allowed = {
        "page_load": ({"type", "page"}, {"type", "page"}),
        "form_submit": (
            {"type", "action_id", "block_id", "values"},
            {"type", "action_id", "values"},
        ),
        "block_action": ({"type", "action_id", "block_id", "value"}, {"type", "action_id"}),
    }
    if kind not in allowed:
        raise bad('type must be "page_load", "form_submit" or "block_action"')
    fields, required = allowed[kind]
    unknown = sorted(str(k)[:40] for k in interaction if k not in fields)
    if unknown:
        raise bad(f"unknown field(s) {', '.join(unknown)} for {kind}")
    missing = sorted(required - set(interaction))
    if missing:
        raise bad(f"{kind} needs {', '.join(missing)}")
    out: dict[str, Any] = {"type": kind}
    if kind == "page_load":
        page = interaction["page"]
        pages = {p.path for p in desc.admin.pages} | {
            WIDGET_PREFIX + w.id for w in desc.admin.widgets
        }
        if type(page) is not str or page not in pages:
            raise bad(
                "page must be one of the plugin's declared pages or widgets: "
                + ", ".join(sorted(pages))
            )
        out["page"] = page
        return out
    for key in ("action_id", "block_id"):
        if key in interaction:
            value = interaction[key]
            if type(value) is not str or not value or len(value) > MAX_ID:
                raise bad(f"{key} must be a non-empty string of at most {MAX_ID} characters")
            out[key] = value
    if kind == "form_submit":
        values = interaction["values"]
        if not isinstance(values, Mapping) or not all(type(k) is str for k in values):
            raise bad("values must be a mapping of field action_ids to values")
        out["values"] = _bounded_json(dict(values), bad)
    elif "value" in interaction:
        out["value"] = _bounded_json(interaction["value"], bad)
    return out


def _bounded_json(value: Any, bad: Callable[[str], Exception]) -> Any:
    """A copy of ``value`` as plain JSON of at most MAX_INTERACTION_BYTES, or ``bad``."""
    try:
        text = json.dumps(value, allow_nan=False)
        copied = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        raise bad("values must be JSON data (strings, numbers, booleans, lists, objects)") from None
    if len(text) > MAX_INTERACTION_BYTES:
        raise bad(f"the submitted values exceed {MAX_INTERACTION_BYTES} bytes as JSON")
    return copied
