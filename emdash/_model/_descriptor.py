"""``PluginDescriptor``: a plugin's identity and trust contract, as data.

A descriptor is what the site operator approves: id, version, capabilities, allowed hosts,
storage collections, where the code is, and optional per-plugin limits. It never contains
code. It loads from a dict, JSON text, or an ``emdash-plugin.toml`` file, rejects unknown
fields, and normalises capabilities once (aliases, duplicates, implications).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from .._shared._errors import ManifestError
from .._shared._hooks_catalog import HOOK_NAMES
from .._shared._suggest import did_you_mean
from ._capabilities import CAPABILITIES, CAPABILITY_ALIASES, expand_capabilities
from ._settings_schema import SettingsSchemaError, check_settings_schema

__all__ = ["DescriptorError", "Limits", "PluginDescriptor", "StorageCollection"]

PLUGIN_ID_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
FIELD_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]*$")
COLLECTION_RE = re.compile(r"^[a-z][a-z0-9_]*$")
# Semver, with pre-release / build suffixes in their own alphabet. The whole string is
# matched (fullmatch): the version is printed in the upgrade review the operator approves
# from, so it must not carry control characters or text of its own after the number.
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+[0-9A-Za-z.+-]*$")
HOST_RE = re.compile(r"^(\*|(\*\.)?[A-Za-z0-9.-]+(:\d+)?)$")
# Text a plugin shows to the site's administrator (its name in every list and title, its
# description, its admin page labels and widget titles): bounded, so a name cannot fill a
# page or push the real controls out of view, and free of controls and bidirectional
# overrides, so "Safe\u202etxt.exe" cannot read as something else. The renderer escapes
# all of it anyway; refusing it at load tells the plugin's author, with the field named.
MAX_NAME = 100
MAX_DESCRIPTION = 1000
MAX_LABEL = 128  # EmDash's manifest limit for page labels and widget titles
MAX_ICON = 64
_UNSHOWABLE_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _shown_text(value: str | None, what: str, limit: int, *, lines: bool = False) -> str | None:
    """``value`` if it fits ``limit`` characters and shows as itself, else ValueError."""
    if value is None:
        return None
    if not value.strip():
        raise ValueError(f"{what} is empty; give a short text or leave the field out")
    if len(value) > limit:
        raise ValueError(
            f"{what} is {len(value)} characters long; at most {limit} are allowed (it is "
            "shown in the admin's lists and titles): shorten it"
        )
    bad = _UNSHOWABLE_RE.search(value) or (None if lines else re.search("[\t\n]", value))
    if bad:
        raise ValueError(
            f"{what} contains the character U+{ord(bad.group()):04X} (a control or "
            "bidirectional-override character"
            + ("" if lines else ", or a tab or line break")
            + "); remove it"
        )
    return value


class DescriptorError(ManifestError):
    """An invalid descriptor: ``problems`` lists every problem found, one each (``path:
    message``), so that a command can print one per line; the message joins them."""

    def __init__(self, headline: str, problems: list[str], *, plugin_id: str | None) -> None:
        super().__init__(f"{headline}: " + "; ".join(problems), plugin_id=plugin_id)
        #: ``Invalid plugin "x"``: what the problems are about.
        self.headline = headline
        self.problems = problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Limits(_Strict):
    """Per-invocation resource limits of sandboxed code (all four are enforced).

    ``load_cpu_ms`` bounds the other place a plugin's code runs: loading it. Every sandbox
    worker the host starts for the plugin (the first one, and each replacement after a
    limit kill or a crash) compiles the plugin and runs its module-level code and
    ``define_plugin`` again, under this CPU budget; each load is audited (kind ``load``)
    with the host's measurement of its CPU time.

    ``fresh_worker`` is no limit but a setting of the same kind: every invocation of the
    plugin runs in a new sandbox worker, killed afterwards, so nothing one invocation
    leaves in the worker (module state, anything a breakout planted) reaches the next. For
    the most hostile plugins; it costs a fork and a load of the plugin per invocation.
    """

    # `default=` as a keyword: type checkers (PEP 681) see only that spelling as a default, so
    # `Limits(cpu_ms=200)` type-checks without the pydantic mypy plugin.
    cpu_ms: int = Field(default=50, gt=0, le=600_000, description="CPU time per invocation")
    memory_mb: int = Field(
        default=128, gt=0, le=16_384, description="memory above the worker baseline"
    )
    wall_ms: int = Field(
        default=30_000, gt=0, le=3_600_000, description="wall-clock time per invocation"
    )
    subrequests: int = Field(
        default=10, ge=0, le=100_000, description="bridge calls per invocation"
    )
    # 2 s. Measured on the 2-CPU development VM: the bundled examples load in 8-12 ms;
    # compiling costs ~0.1 ms per line (a 5000-line module: ~520 ms), so 2 s leaves room
    # for well over 10 000 lines. A plugin that burns the whole budget costs the host 2 s
    # per worker started; limit kills back off after the third within a minute.
    load_cpu_ms: int = Field(
        default=2_000,
        gt=0,
        le=60_000,
        description="CPU time for loading the plugin's code in each new sandbox worker",
    )
    fresh_worker: bool = Field(
        default=False, strict=True, description="a new sandbox worker for every invocation"
    )


class StorageCollection(_Strict):
    """A declared document collection and the fields it can be queried and ordered by."""

    indexes: list[str | list[str]] = Field(default_factory=list)
    unique_indexes: list[str | list[str]] = Field(default_factory=list, alias="uniqueIndexes")

    @field_validator("indexes", "unique_indexes")
    @classmethod
    def _fields_are_identifiers(cls, value: list[str | list[str]]) -> list[str | list[str]]:
        for entry in value:
            fields = [entry] if isinstance(entry, str) else entry
            if not fields:
                raise ValueError("an index must name at least one field")
            for f in fields:
                if not FIELD_RE.fullmatch(f) or len(f) > 128:
                    raise ValueError(
                        f"invalid index field {f!r}: use letters, digits and '_', starting with a letter"
                    )
        return value

    def index_field_sets(self) -> list[tuple[tuple[str, ...], bool]]:
        """Each declared index as (fields, unique); a set declared both ways is unique only."""
        unique = [tuple([e] if isinstance(e, str) else e) for e in self.unique_indexes]
        plain = [tuple([e] if isinstance(e, str) else e) for e in self.indexes]
        out: list[tuple[tuple[str, ...], bool]] = [(u, True) for u in dict.fromkeys(unique)]
        out += [(p, False) for p in dict.fromkeys(plain) if p not in unique]
        return out

    def queryable_fields(self) -> frozenset[str]:
        """Every field named by any index, composite parts included."""
        return frozenset(f for fields, _ in self.index_field_sets() for f in fields)


class AdminPage(_Strict):
    path: str = Field(pattern=r"^/[A-Za-z0-9][A-Za-z0-9/_-]*$", min_length=2, max_length=128)
    label: str
    icon: str | None = None

    @field_validator("label")
    @classmethod
    def _label(cls, value: str) -> str:
        return _shown_text(value, "the page label", MAX_LABEL) or value

    @field_validator("icon")
    @classmethod
    def _icon(cls, value: str | None) -> str | None:
        return _shown_text(value, "the page icon", MAX_ICON)


class AdminWidget(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_-]*$", max_length=64)
    title: str | None = None
    size: Literal["full", "half", "third"] | None = None

    @field_validator("title")
    @classmethod
    def _title(cls, value: str | None) -> str | None:
        return _shown_text(value, "the widget title", MAX_LABEL)


class AdminConfig(_Strict):
    """Admin pages and dashboard widgets (served by the plugin's ``admin`` route, which a
    plugin declaring any must define) and the settings schema (a host-generated page)."""

    pages: list[AdminPage] = Field(default_factory=list, max_length=32)
    widgets: list[AdminWidget] = Field(default_factory=list, max_length=32)
    settings_schema: dict[str, dict[str, Any]] = Field(default_factory=dict, alias="settingsSchema")

    @field_validator("settings_schema")
    @classmethod
    def _check_settings(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return check_settings_schema(value)

    @model_validator(mode="after")
    def _unique(self) -> AdminConfig:
        # Pages are found by path and widgets by id when an interaction comes in.
        paths = [p.path for p in self.pages]
        ids = [w.id for w in self.widgets]
        for what, names in (("page path", paths), ("widget id", ids)):
            doubled = sorted({n for n in names if names.count(n) > 1})
            if doubled:
                raise ValueError(f"admin {what} declared twice: {', '.join(doubled)}")
        return self

    @property
    def has_surface(self) -> bool:
        """Whether the plugin has pages or widgets (which its ``admin`` route serves)."""
        return bool(self.pages or self.widgets)


class PluginDescriptor(_Strict):
    """A plugin's identity and trust contract.

    ``entrypoint`` is a module path (``my_plugin.entry``) or a file/directory path (relative
    paths resolve against the descriptor file's directory). ``capabilities`` accepts the 12
    canonical names and the 10 deprecated aliases; after loading it holds the canonical,
    de-duplicated, implication-closed list.
    """

    id: str
    version: str = "0.0.0"
    name: str | None = None
    description: str | None = None
    capabilities: list[str] = Field(default_factory=list)
    allowed_hosts: list[str] = Field(default_factory=list, alias="allowedHosts")
    storage: dict[str, StorageCollection] = Field(default_factory=dict)
    entrypoint: str | None = None
    admin: AdminConfig = Field(default_factory=AdminConfig)
    limits: Limits | None = None
    preferred: list[str] = Field(
        default_factory=list, description="exclusive hooks this plugin prefers to provide"
    )
    # Set by from_dict(base_dir=...) (so by from_file): see plugin_root.
    _root: Path | None = PrivateAttr(default=None)

    @property
    def plugin_root(self) -> Path | None:
        """The plugin's directory when this descriptor was read from a file, else ``None``.

        A path ``entrypoint`` then lies inside it (checked when loading), and the loader
        follows no symbolic link below it: the operator chose the directory, the plugin's
        author chose everything inside it.
        """
        return self._root

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        return _shown_text(value, "name", MAX_NAME)

    @field_validator("description")
    @classmethod
    def _check_description(cls, value: str | None) -> str | None:
        return _shown_text(value, "description", MAX_DESCRIPTION, lines=True)

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not PLUGIN_ID_RE.fullmatch(value) or len(value) > 64:
            raise ValueError(
                f'Invalid plugin id "{value}": must match ^[a-z][a-z0-9_-]*$ (at most 64 chars), '
                'e.g. "my-plugin"'
            )
        return value

    @field_validator("version")
    @classmethod
    def _check_version(cls, value: str) -> str:
        if not VERSION_RE.fullmatch(value) or len(value) > 64:
            raise ValueError(
                f'Invalid plugin version {value[:80]!r}: must be semver, e.g. "1.0.0" or '
                '"1.2.0-rc.1" (letters, digits, ".", "-", "+" after the number)'
            )
        return value

    @field_validator("storage")
    @classmethod
    def _check_collections(
        cls, value: dict[str, StorageCollection]
    ) -> dict[str, StorageCollection]:
        for name in value:
            if not COLLECTION_RE.fullmatch(name) or len(name) > 64:
                raise ValueError(
                    f"invalid storage collection name {name!r}: use lowercase letters, digits "
                    "and '_', starting with a letter"
                )
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _check_hosts(cls, value: list[str]) -> list[str]:
        for host in value:
            if not HOST_RE.fullmatch(host) or len(host) > 256:
                raise ValueError(
                    f"invalid allowed host {host!r}: give a hostname such as 'api.example.com' "
                    "or '*.example.com' (no scheme, no path)"
                )
        return [h.lower().rstrip(".") for h in value]

    @field_validator("preferred")
    @classmethod
    def _check_preferred(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in HOOK_NAMES:
                raise ValueError(f"preferred names unknown hook {name!r}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _normalize_capabilities(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "capabilities" not in data:
            return data
        caps = data["capabilities"]
        if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
            return data  # let field validation report the type error
        pid = data.get("id", "?")
        for cap in caps:
            if cap not in CAPABILITIES and cap not in CAPABILITY_ALIASES:
                raise ValueError(
                    f'Invalid capability "{cap}"{did_you_mean(cap, CAPABILITIES)} in plugin '
                    f'"{pid}". Valid capabilities: ' + ", ".join(CAPABILITIES)
                )
        return {**data, "capabilities": expand_capabilities(caps)}

    # -- loading ----------------------------------------------------------------------

    @classmethod
    def load(cls, source: Any, *, base_dir: Path | None = None) -> PluginDescriptor:
        """Build a descriptor from a dict, a descriptor, JSON text, or a path to a file.

        Raises :class:`ManifestError` naming the plugin and every problem found.
        """
        if isinstance(source, PluginDescriptor):
            return source
        if isinstance(source, Path) or (
            isinstance(source, str) and not source.lstrip().startswith("{")
        ):
            return cls.from_file(Path(source))
        if isinstance(source, (str, bytes)):
            try:
                data = json.loads(source)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"Plugin descriptor is not valid JSON: {exc}") from None
            return cls.from_dict(data, base_dir=base_dir)
        if isinstance(source, dict):
            return cls.from_dict(source, base_dir=base_dir)
        raise ManifestError(
            f"Cannot load a plugin descriptor from {type(source).__name__}; pass a dict, "
            "JSON text, or a path to emdash-plugin.toml / .json"
        )

    @classmethod
    def from_dict(cls, data: Any, *, base_dir: Path | None = None) -> PluginDescriptor:
        """Validate ``data``; with ``base_dir`` (the plugin's directory) a path entrypoint is
        relative to it and must stay inside it (see :attr:`plugin_root`)."""
        if not isinstance(data, dict):
            raise ManifestError(f"Plugin descriptor must be an object, got {type(data).__name__}")
        data = dict(data)
        entry = data.get("entrypoint")
        root = None
        if base_dir is not None and isinstance(entry, str) and _looks_like_path(entry):
            root = base_dir.resolve()
            data["entrypoint"] = str(_inside(root, entry, _str_or_none(data.get("id"))))
        try:
            descriptor = cls.model_validate(data)
        except ValidationError as exc:
            headline, problems = _describe(exc, data.get("id"))
            raise DescriptorError(
                headline, problems, plugin_id=_str_or_none(data.get("id"))
            ) from None
        except ValueError as exc:  # raised by the capability pre-validator
            raise ManifestError(str(exc), plugin_id=_str_or_none(data.get("id"))) from None
        descriptor._root = root
        return descriptor

    @classmethod
    def from_file(cls, path: Path) -> PluginDescriptor:
        """Load ``emdash-plugin.toml`` / ``.json``; a directory means its emdash-plugin.toml.

        The file is read like every plugin file (regular file, no symbolic link, size
        capped before reading); its directory becomes :attr:`plugin_root`.
        """
        # Imported here: the loader imports this module, and owns reading plugin files.
        from .._hosting._loader import read_descriptor

        raw, shown = read_descriptor(Path(path))
        try:
            if shown.suffix == ".json":
                data = json.loads(raw)
            else:
                data = tomllib.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ManifestError(f"Plugin descriptor {shown} is not valid: {exc}") from None
        return cls.from_dict(data, base_dir=shown.parent)

    def effective_limits(self, default: Limits) -> Limits:
        return self.limits or default

    def has(self, capability: str) -> bool:
        return capability in self.capabilities


def _looks_like_path(entry: str) -> bool:
    return entry.endswith(".py") or "/" in entry or entry.startswith(".")


def _inside(root: Path, entry: str, plugin_id: str | None) -> Path:
    """``root / entry``, normalised without touching the disk; refused if it leaves ``root``.

    Lexical on purpose: ``Path.resolve()`` would follow a symbolic link the plugin ships
    (``entrypoint = "plugin.py"`` linking to a host file) before the loader could refuse it.
    """
    normal = os.path.normpath(entry)
    if os.path.isabs(normal) or normal == ".." or normal.startswith("../"):
        who = f'Plugin "{plugin_id}"' if plugin_id else "Plugin descriptor"
        raise ManifestError(
            f'{who}: entrypoint "{entry}" is outside the plugin directory {root}; give a path '
            "inside the directory of emdash-plugin.toml (or a module path such as my_plugin.entry)",
            plugin_id=plugin_id,
        )
    return root if normal == "." else root / normal


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _describe(exc: ValidationError, plugin_id: Any) -> tuple[str, list[str]]:
    """The headline (``Invalid plugin "x"``) and every problem, one by one."""
    who = f'plugin "{plugin_id}"' if isinstance(plugin_id, str) else "plugin descriptor"
    problems: list[str] = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, SettingsSchemaError):
            # Every problem of the schema, each with its field's path.
            problems.extend(
                f"{loc}.{path}: {msg}" if path else f"{loc}: {msg}" for path, msg in cause.problems
            )
            continue
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = (
                "unknown field (remove it; valid fields: "
                + ", ".join(sorted(PluginDescriptor.model_fields))
                + ")"
            )
        problems.append(f"{loc}: {msg}" if loc else msg)
    return f"Invalid {who}", problems
