"""Plugin settings: the page generated from ``admin.settingsSchema``, and saving it.

Values live in the plugin's kv under ``settings:<key>`` (EmDash's layout), so a plugin reads
them with ``ctx.kv.get("settings:<key>")`` in both modes. Saving is all-or-nothing: every
submitted value is checked against the schema first, and only if all pass are they
written, in one transaction. A user's mistake (a number out of range, an option that does
not exist) comes back as field errors and an error toast, never as an exception.

Secrets are write-only: the page says whether one is set, never what it is, and an empty
submitted secret keeps the stored one.

Submitted values may be JSON values or the strings an HTML form posts: ``"42"`` for a
number, ``"on"``/``"true"``/``"1"`` and ``"off"``/``"false"``/``"0"``/``""`` for a boolean
(a checkbox posts nothing when unchecked, so a form without JavaScript should precede it
with a hidden input of the same name and the value ``"false"``). A key not submitted is
left unchanged; ``None`` (or ``""`` for a number) removes the stored value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import urlsplit

from .._model._descriptor import PluginDescriptor
from .._model._settings_schema import MAX_SETTING_TEXT
from .._shared import _blocks as bk
from .._store._options import KVEntries

__all__ = [
    "SAVE_ACTION",
    "SETTINGS_FORM",
    "SettingsStore",
]

SETTINGS_FORM = "emdash-settings"
SAVE_ACTION = "emdash:save_settings"
PREFIX = "settings:"
_TRUE = frozenset({"true", "on", "1", "yes"})
_FALSE = frozenset({"false", "off", "0", "no", ""})
_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INT_RE = re.compile(r"[+-]?[0-9]{1,15}")
_CONTROL_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class _Bad(Exception):
    """A submitted value the schema refuses (its message is shown next to the field)."""


class SettingsStore:
    """Reads, checks and writes one site's plugin settings (no knowledge of plugin hosts)."""

    def __init__(
        self, kv: KVEntries, transaction: Callable[[], AbstractContextManager[None]]
    ) -> None:
        self._kv = kv
        self._transaction = transaction

    # -- reading -----------------------------------------------------------------------

    def stored(self, plugin_id: str, key: str) -> Any:
        return self._kv.get(plugin_id, PREFIX + key)

    def values(self, desc: PluginDescriptor) -> dict[str, Any]:
        """``{"schema", "values", "secretsSet"}``: values of unset fields are their default
        (or ``None``); secrets appear only as a key in ``secretsSet`` when one is stored."""
        schema = desc.admin.settings_schema
        values: dict[str, Any] = {}
        secrets: list[str] = []
        for key, spec in schema.items():
            current = self.stored(desc.id, key)
            if spec["type"] == "secret":
                if current not in (None, ""):
                    secrets.append(key)
                continue
            values[key] = spec.get("default") if current is None else _valid_or(spec, current)
        return {"schema": schema, "values": values, "secretsSet": secrets}

    # -- the page ----------------------------------------------------------------------

    def page(
        self,
        desc: PluginDescriptor,
        *,
        submitted: Mapping[str, Any] | None = None,
        errors: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """The settings page's blocks: a header and one form with an input per field.

        After a refused save, ``submitted`` refills the form (secrets excepted) so the user
        corrects rather than retypes, and ``errors`` are listed in an error banner.
        """
        current = self.values(desc)
        title = f"{desc.name or desc.id} settings"
        out: list[dict[str, Any]] = [bk.header(title[:200])]
        if errors:
            listed = "; ".join(
                f"{desc.admin.settings_schema.get(k, {}).get('label', k)}: {msg}"
                for k, msg in errors.items()
            )
            out.append(bk.banner("Settings not saved", listed[:4000], variant="error"))
        fields = []
        for key, spec in desc.admin.settings_schema.items():
            shown = current["values"].get(key)
            if submitted is not None and key in submitted and spec["type"] != "secret":
                shown = _refill(spec, submitted[key], shown)
            fields.append(_input(key, spec, shown, key in current["secretsSet"]))
        out.append(bk.form(SETTINGS_FORM, fields, submit="Save settings", action_id=SAVE_ACTION))
        return out

    # -- saving ------------------------------------------------------------------------

    def save(self, desc: PluginDescriptor, values: Mapping[str, Any]) -> dict[str, str]:
        """Check and write ``values``; return ``{key: problem}`` (empty when saved)."""
        return self.save_changes(desc, values)[0]

    def save_changes(
        self, desc: PluginDescriptor, values: Mapping[str, Any]
    ) -> tuple[dict[str, str], list[str]]:
        """:meth:`save`, also returning the keys whose stored value changed (schema order;
        empty on errors). Only keys: the caller records them, never the values."""
        schema = desc.admin.settings_schema
        errors: dict[str, str] = {}
        writes: dict[str, Any] = {}
        for key, raw in values.items():
            spec = schema.get(key) if type(key) is str else None
            if spec is None:
                shown = key[:64] if type(key) is str else repr(key)[:64]
                errors[str(shown)] = f'Unknown setting "{shown}" for plugin "{desc.id}"'
                continue
            try:
                value = _coerce(spec, raw)
            except _Bad as bad:
                errors[key] = str(bad)
                continue
            if spec["type"] == "secret" and value == "":
                continue  # an empty secret keeps the stored one
            writes[key] = value
        for key, spec in schema.items():
            if not spec.get("required") or key in errors:
                continue
            after = writes[key] if key in writes else self.stored(desc.id, key)
            if after is None or after == "":
                if after is None and key not in writes and spec.get("default") not in (None, ""):
                    continue  # unset, and its default applies
                errors[key] = "is required"
        if errors:
            return errors, []
        changed: list[str] = []
        with self._transaction():
            for key, value in writes.items():
                if self.stored(desc.id, key) != value:
                    changed.append(key)
                if value is None:
                    self._kv.delete(desc.id, PREFIX + key)
                else:
                    self._kv.set(desc.id, PREFIX + key, value)
        order = list(schema)
        return {}, sorted(changed, key=order.index)


def _coerce(spec: Mapping[str, Any], raw: Any) -> Any:
    """The value to store for ``raw`` (``None``: remove it), or :class:`_Bad`."""
    if raw is None:
        return None
    kind = spec["type"]
    if kind == "boolean":
        if type(raw) is bool:
            return raw
        if type(raw) is str and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise _Bad("must be true or false")
    if kind == "number":
        return _number(spec, raw)
    if type(raw) is not str:
        raise _Bad("must be text")
    if len(raw) > MAX_SETTING_TEXT:
        raise _Bad(f"is longer than {MAX_SETTING_TEXT} characters")
    allowed_newlines = kind == "string" and spec.get("multiline") is True
    text = raw if allowed_newlines else raw.strip()
    if _CONTROL_RE.search(text) or (not allowed_newlines and ("\n" in text or "\t" in text)):
        raise _Bad("contains control characters")
    if kind == "select":
        if text not in {o["value"] for o in spec["options"]}:
            raise _Bad("is not one of the options")
    elif kind == "url" and text:
        parts = urlsplit(text)
        if parts.scheme not in ("https", "http") or not parts.netloc or " " in text:
            raise _Bad("must be an http:// or https:// URL")
    elif kind == "email" and text:
        if "@" not in text.strip("@") or " " in text or len(text) > 254:
            raise _Bad("must be an email address")
    return text


def _number(spec: Mapping[str, Any], raw: Any) -> int | float | None:
    if type(raw) is str:
        text = raw.strip()
        if not text:
            return None
        # ASCII decimal notation only: int()/float() also accept "1_0", other scripts'
        # digits ("١٢" is 12) and "inf", none of which a number input sends.
        if not _NUMBER_RE.fullmatch(text):
            raise _Bad("must be a number")
        value: int | float = int(text) if _INT_RE.fullmatch(text) else float(text)
    elif type(raw) is int:
        # Checked before math.isfinite, which raises OverflowError past a float's range;
        # int64 is what every store and encoder on the way carries exactly.
        if not -(2**63) <= raw < 2**63:
            raise _Bad("is too large a number")
        value = raw
    elif type(raw) is float:
        value = raw
    else:
        raise _Bad("must be a number")
    if not math.isfinite(value):
        raise _Bad("must be a finite number")
    low, high = spec.get("min"), spec.get("max")
    if low is not None and value < low:
        raise _Bad(f"must be at least {low}")
    if high is not None and value > high:
        raise _Bad(f"must be at most {high}")
    return value


def _valid_or(spec: Mapping[str, Any], stored: Any) -> Any:
    """A stored value if the schema accepts it, else the default: the plugin itself can
    write ``settings:<key>`` through ctx.kv, and the page must not show what it made up."""
    try:
        return _coerce(spec, stored)
    except _Bad:
        return spec.get("default")


def _refill(spec: Mapping[str, Any], raw: Any, fallback: Any) -> Any:
    """What a refused form shows for a submitted value (as typed, if it fits the input)."""
    try:
        return _coerce(spec, raw)
    except _Bad:
        shown_as_typed = (
            type(raw) is str
            and spec["type"] in ("string", "url", "email")
            and len(raw) <= MAX_SETTING_TEXT
            and not _CONTROL_RE.search(raw)
        )
        return raw if shown_as_typed else fallback


def _input(key: str, spec: Mapping[str, Any], value: Any, secret_set: bool) -> dict[str, Any]:
    """The form input of one setting; its action_id is the setting's key."""
    kind = spec["type"]
    label = spec["label"]
    el: dict[str, Any]
    if kind == "secret":
        el = bk.secret_input(
            key,
            label,
            has_value=secret_set,
            placeholder="set (leave empty to keep)" if secret_set else "not set",
        )
    elif kind == "number":
        el = bk.number_input(
            key,
            label,
            initial_value=value if type(value) in (int, float) else None,
            min=spec.get("min"),
            max=spec.get("max"),
        )
    elif kind == "boolean":
        el = bk.toggle(key, label, initial_value=value if type(value) is bool else False)
    elif kind == "select":
        options = [bk.option(o["label"], o["value"]) for o in spec["options"]]
        known = {o["value"] for o in spec["options"]}
        el = bk.select(key, label, options, initial_value=value if value in known else None)
    else:  # string, url, email
        el = bk.text_input(
            key,
            label,
            placeholder=spec.get("placeholder"),
            initial_value=value if type(value) is str else None,
            multiline=True if spec.get("multiline") else None,
        )
    if spec.get("description"):
        el["description"] = spec["description"]
    return el
