"""The site configuration file, ``emdash.toml``.

One file says what a site is made of: where its SQLite database and media live, what the
site is called, whether untrusted plugins run sandboxed, the default limits, the API token
that guards private plugin routes, and which plugins are installed::

    database = "site.db"          # relative paths resolve against this file's directory
    media_dir = "media"
    sandbox = true                # false: run sandboxed plugins in-process (debugging only)
    api_token = { "$env" = "EMDASH_API_TOKEN" }   # or a literal string; never printed
    environment = "production"    # or "development" (the default is production)

    [site]
    name = "My site"
    url = "https://example.com"
    locale = "en"                 # the default content locale
    locales = ["en", "zh-TW"]     # optional: the only locales content is written in

    [limits]                      # defaults for sandboxed plugins; a descriptor may override
    cpu_ms = 100

    [cron]                        # per-plugin cron quotas (defaults shown)
    max_tasks_per_plugin = 100
    min_interval_s = 60

    [quotas]                      # per-plugin quotas, for every plugin (these are the defaults)
    stored_bytes = 67108864       # KV + storage bytes (keys, ids, collection names, JSON)
    stored_rows = 100000          # KV entries + storage documents
    log_bytes_per_minute = 1048576

    [audit]                       # audit log retention (site-wide; these are the defaults)
    max_age_days = 30
    max_rows = 1000000

    [dev]                         # development only: refused unless environment = "development"
    allow_private_hosts = ["localhost:8080", "10.0.0.5"]   # SSRF checks off for these hosts

    [[plugins]]
    path = "plugins/hello"        # a directory holding emdash-plugin.toml
    trusted = false
    enabled = true
    quotas = { stored_bytes = 268435456 }   # this plugin's own; unset keys use [quotas]
    max_concurrency = 4           # optional: route calls running at once (admission)
    max_queue = 8                 # optional: callers waiting for a turn; beyond: 503
    queue_timeout_ms = 5000       # optional: the longest wait for a turn; then 503

Quotas live here, with the operator, and never in a plugin's descriptor: a plugin must not
be able to raise its own.

Admission defaults (emdash._runtime._admission): a sandboxed plugin runs as many route
calls at once as it has workers (2), a trusted one 8; twice that many may wait, each at
most the plugin's ``wall_ms``.

The file is validated strictly (unknown keys are errors, so a typo never silently does
nothing) and loaded with stdlib ``tomllib``. The CLI edits the ``[[plugins]]`` list with
``tomlkit`` so that comments and layout the operator wrote survive.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import tomlkit
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from sandbox import SandboxError

from .._model._descriptor import Limits, PluginDescriptor
from .._services._cron import CronLimits
from .._shared._errors import ConfigError, EmDashError
from .._store._dialect import is_postgres_url, redact_url
from .._store._quotas import AuditRetention, Quotas
from .._store._values import Locales
from ._unloaded import Unloaded, unloaded_from_error

if TYPE_CHECKING:
    from .._runtime._runtime import Runtime

__all__ = [
    "DEFAULT_CONFIG_NAME",
    "ConfigError",
    "DevSettings",
    "EnvRef",
    "PluginEntry",
    "SiteConfig",
    "SiteSettings",
    "add_plugin_entry",
    "check_new_entry",
    "entry_id",
    "load_config",
    "open_runtime",
    "remove_new_site",
    "remove_plugin_entry",
    "set_plugin_enabled",
    "site_exists",
]

DEFAULT_CONFIG_NAME = "emdash.toml"

_log = logging.getLogger("emdash")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class EnvRef(_Strict):
    """A secret read from the environment at startup: ``{ "$env" = "VAR" }``."""

    env: str = Field(alias="$env", min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class SiteSettings(_Strict):
    """What plugins see as ``ctx.site``, and the site's locales.

    ``locale`` is the default content locale (``en``, or the first of ``locales``);
    ``locales``, when given, are the only ones content is written in.
    """

    name: str = ""
    url: str = ""
    locale: str | None = None
    locales: list[str] | None = None

    @property
    def default_locale(self) -> str:
        return self.locale or (self.locales[0] if self.locales else "en")

    @model_validator(mode="after")
    def _check_locales(self) -> SiteSettings:
        try:
            Locales(self.default_locale, self.locales)
        except EmDashError as exc:
            raise ValueError(f"site locale: {exc}") from None
        return self

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"site url {value!r} must start with http:// or https://")
        # EmDash strips one trailing slash so ctx.url("/x") never yields "//x".
        return value[:-1] if value.endswith("/") else value


class DevSettings(_Strict):
    """``[dev]``: settings for a local development site, refused in production.

    ``allow_private_hosts`` lists exact hosts (``localhost:8080``, ``10.0.0.5``,
    ``[::1]:3000``) plugins may fetch although the SSRF policy refuses private addresses
    and internal names; the first request per plugin and host is logged as a WARNING.
    """

    allow_private_hosts: list[str] = Field(default_factory=list)

    @field_validator("allow_private_hosts")
    @classmethod
    def _check_hosts(cls, value: list[str]) -> list[str]:
        from .._bridge._hosts import PrivateHosts

        try:
            PrivateHosts(value)
        except EmDashError as exc:
            raise ValueError(str(exc)) from None
        return value


class PluginEntry(_Strict):
    """One installed plugin: where its directory is, and how it runs."""

    path: str = Field(min_length=1)
    #: The plugin id approved at ``plugins add`` (written by the CLI). The descriptor in
    #: ``path`` is the author's file: if its id changed, loading it would install a new
    #: plugin whose access nobody approved, so a pinned id that no longer matches refuses
    #: to load. ``None`` (a hand-written entry): whatever id the descriptor has.
    id: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_-]*$", max_length=64)
    trusted: bool = False
    enabled: bool = True
    #: This plugin's quotas; keys left out take the site's ``[quotas]`` value.
    quotas: Quotas | None = None

    # Route admission (see emdash._runtime._admission); None keeps the runtime's default.
    max_concurrency: int | None = Field(default=None, ge=1, le=10_000, strict=True)
    max_queue: int | None = Field(default=None, ge=0, le=10_000, strict=True)
    queue_timeout_ms: int | None = Field(default=None, ge=1, le=3_600_000, strict=True)

    def admission(self) -> dict[str, int]:
        """The admission bounds this entry sets (``rt.admission.configure`` keywords)."""
        bounds = {
            "max_concurrency": self.max_concurrency,
            "max_queue": self.max_queue,
            "queue_timeout_ms": self.queue_timeout_ms,
        }
        return {k: v for k, v in bounds.items() if v is not None}


class SiteConfig(_Strict):
    """A validated ``emdash.toml``. ``base_dir`` is the directory paths resolve against."""

    database: str = "emdash.db"
    # PostgreSQL only (database = "postgresql://user@host/site"): the password, never in
    # the URL of a shared file (a literal or { "$env" = "VAR" }; PGPASSWORD works too),
    # and the connections this host keeps.
    database_password: str | EnvRef | None = None
    database_pool_size: int | None = Field(default=None, ge=1, le=1000)
    media_dir: str | None = "media"
    sandbox: bool = True
    api_token: str | EnvRef | None = None
    #: Production unless said otherwise: development-only settings ([dev]) are then refused.
    environment: Literal["production", "development"] = "production"
    dev: DevSettings = Field(default_factory=DevSettings)
    site: SiteSettings = Field(default_factory=SiteSettings)
    limits: Limits | None = None
    cron: CronLimits | None = None
    quotas: Quotas = Field(default_factory=Quotas)
    audit: AuditRetention = Field(default_factory=AuditRetention)
    plugins: list[PluginEntry] = Field(default_factory=list)
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("api_token")
    @classmethod
    def _token_not_empty(cls, value: str | EnvRef | None) -> str | EnvRef | None:
        if isinstance(value, str) and len(value) < 16:
            raise ValueError('api_token must be at least 16 characters (or use { "$env" = "VAR" })')
        return value

    @model_validator(mode="after")
    def _dev_only_in_development(self) -> SiteConfig:
        if self.dev.allow_private_hosts and self.environment != "development":
            # A config that reaches production with the exemption on must not start:
            # it would let plugins reach the machine's own services and the local network.
            raise ValueError(
                "dev.allow_private_hosts is refused in production: set "
                'environment = "development" for a local site, or remove [dev]'
            )
        return self

    # -- resolved values ---------------------------------------------------------------

    def database_path(self) -> str:
        """The database location, ``:memory:`` kept as is, anything else made absolute."""
        if self.database == ":memory:" or is_postgres_url(self.database):
            return self.database
        return str(self._resolve(self.database))

    def database_secret(self) -> str | None:
        """The PostgreSQL password: an ``$env`` reference is read now and must be set."""
        ref = self.database_password
        if ref is None or isinstance(ref, str):
            return ref
        value = os.environ.get(ref.env)
        if not value:
            raise ConfigError(
                f"{self._where()}: database_password refers to environment variable "
                f"{ref.env}, which is not set; export it or remove database_password"
            )
        return value

    def media_path(self) -> Path | None:
        return None if self.media_dir is None else self._resolve(self.media_dir)

    def plugin_path(self, entry: PluginEntry) -> Path:
        return self._resolve(entry.path)

    def plugin_quotas(self) -> dict[str, Quotas]:
        """The quotas of every plugin whose entry sets some, by plugin id (merged over
        ``[quotas]``). Reads the descriptors of those entries for their ids."""
        out: dict[str, Quotas] = {}
        for entry in self.plugins:
            if entry.quotas is None:
                continue
            pid = _descriptor_id(self.plugin_path(entry))
            if pid is not None:  # an unreadable descriptor fails later, naming its path
                out[pid] = self.quotas.model_copy(
                    update=entry.quotas.model_dump(exclude_unset=True)
                )
        return out

    def token(self) -> str | None:
        """The API token; an ``$env`` reference is read now and must be set and non-empty."""
        if self.api_token is None or isinstance(self.api_token, str):
            return self.api_token
        value = os.environ.get(self.api_token.env)
        if not value:
            raise ConfigError(
                f"{self._where()}: api_token refers to environment variable "
                f"{self.api_token.env}, which is not set; export it or remove api_token"
            )
        if len(value) < 16:
            raise ConfigError(
                f"{self._where()}: api_token (environment variable {self.api_token.env}) is "
                f"{len(value)} characters; it must be at least 16 (a long random string)"
            )
        return value

    def site_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "name": self.site.name,
            "url": self.site.url,
            "locale": self.site.default_locale,
        }
        if self.site.locales is not None:
            info["locales"] = list(self.site.locales)
        return info

    def describe(self) -> dict[str, Any]:
        """Plain data for ``--json`` output, with the token redacted."""
        data = self.model_dump(mode="json", by_alias=True)
        if self.api_token is not None:
            data["api_token"] = (
                "(redacted)" if isinstance(self.api_token, str) else {"$env": self.api_token.env}
            )
        data["database"] = redact_url(self.database_path())
        if self.database_password is not None:
            data["database_password"] = (
                "(redacted)"
                if isinstance(self.database_password, str)
                else {"$env": self.database_password.env}
            )
        media = self.media_path()
        data["media_dir"] = None if media is None else str(media)
        data["config_file"] = None if self.source is None else str(self.source)
        return data

    def _resolve(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    def _where(self) -> str:
        return str(self.source) if self.source is not None else DEFAULT_CONFIG_NAME


def load_config(path: Path | str | None = None) -> SiteConfig:
    """Read and validate a site config.

    ``path=None`` means ``./emdash.toml`` and, when that file does not exist, the defaults
    (a site in the current directory with no plugins). An explicit path must exist.
    """
    explicit = path is not None
    file = Path(path) if path is not None else Path.cwd() / DEFAULT_CONFIG_NAME
    if not file.exists():
        if explicit:
            raise ConfigError(f"Config file {file} does not exist; create it or drop --config")
        return SiteConfig(base_dir=Path.cwd())
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {file}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Config file {file} is not valid TOML: {exc}") from None
    return _validate(data, file)


def _validate(data: dict[str, Any], file: Path) -> SiteConfig:
    # base_dir and source are computed from the file's location, never read from it.
    computed = sorted({"base_dir", "source"} & data.keys())
    if computed:
        raise ConfigError(
            f"Invalid config file {file}: {computed[0]}: unknown key (check the spelling; "
            "see: emdash help config)"
        )
    try:
        return SiteConfig.model_validate(
            {**data, "base_dir": file.resolve().parent, "source": file.resolve()}
        )
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(root)"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check the spelling; see: emdash help config)"
            problems.append(f"{loc}: {msg}")
        raise ConfigError(f"Invalid config file {file}: " + "; ".join(problems)) from None


# -- opening a site -----------------------------------------------------------------------


def open_runtime(
    config: SiteConfig, *, sandbox: bool | None = None, unloaded: list[Unloaded] | None = None
) -> Runtime:
    """Build a :class:`Runtime` for the site and add every configured plugin.

    Without ``unloaded``, a plugin that fails to load closes the runtime and raises its
    error (the message names the plugin). With a list, such a plugin is left out, appended
    to it and logged as a WARNING naming the fix (see :mod:`._unloaded`): the site runs
    without it, never with it silently missing.
    """
    from .._runtime._runtime import Runtime

    runtime = Runtime(
        config.database_path(),
        sandbox=config.sandbox if sandbox is None else sandbox,
        limits=config.limits,
        site=config.site_info(),
        media_dir=config.media_path(),
        quotas=config.quotas,
        plugin_quotas=config.plugin_quotas(),
        audit_retention=config.audit,
        allow_private_hosts=config.dev.allow_private_hosts,
        database_password=config.database_secret(),
        database_pool_size=config.database_pool_size,
    )
    if config.cron is not None:
        runtime.cron.limits = config.cron
    try:
        for entry in config.plugins:
            path = config.plugin_path(entry)
            try:
                # Read once, checked, and that very descriptor is what gets loaded.
                descriptor = PluginDescriptor.from_file(path)
                check_pinned_id(entry, descriptor, path)
                info = runtime.add_plugin(descriptor, trusted=entry.trusted, enabled=entry.enabled)
            except (EmDashError, SandboxError) as exc:
                if unloaded is None:
                    raise
                _leave_out(exc, entry, path, unloaded)
                continue
            if entry.admission():
                runtime.admission.configure(info.plugin_id, **entry.admission())
    except BaseException:
        runtime.close()
        raise
    return runtime


def _leave_out(exc: BaseException, entry: PluginEntry, path: Path, out: list[Unloaded]) -> None:
    pid = entry.id or _descriptor_id(path) or path.name
    item = unloaded_from_error(
        exc, plugin_id=pid, path=str(path), trusted=entry.trusted, enabled=entry.enabled
    )
    out.append(item)
    _log.warning(
        "PLUGIN NOT LOADED: %s is left out (its hooks and routes are off; the other "
        "plugins run): %s. Fix: %s",
        pid,
        item.error,
        item.hint,
    )


# -- editing the [[plugins]] list -------------------------------------------------------------
#
# tomlkit keeps the operator's comments and layout. Every edit is re-validated before the
# file is replaced (write to a temporary file, then rename), so a failed edit loses nothing.


def site_exists(config: SiteConfig) -> bool:
    """Whether the site's database is there (read-only commands never create it)."""
    database = config.database_path()
    return database == ":memory:" or Path(database).exists()


def check_pinned_id(entry: PluginEntry, descriptor: PluginDescriptor, path: Path) -> None:
    """Refuse a descriptor whose id is not the one this entry was installed with."""
    if entry.id is None or entry.id == descriptor.id:
        return
    raise ConfigError(
        f'The plugin installed from {path} as "{entry.id}" now says id "{descriptor.id}" in '
        "its descriptor; an id is never changed in place (the new id would start with "
        f'access nobody approved). Put id = "{entry.id}" back; to replace the plugin, then '
        f"remove it (emdash plugins remove {entry.id}) and add the new one "
        f"(emdash plugins add {path})",
        plugin_id=entry.id,
    )


def remove_new_site(config: SiteConfig) -> None:
    """Undo the files that opening a new site created (its database, the database's
    journal files, and its media directory while empty), after the command that created
    it failed. Only call it when neither a config file nor the database existed before."""
    database = config.database_path()
    if database != ":memory:":
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(database + suffix)
    media = config.media_path()
    if media is not None:
        with contextlib.suppress(OSError):  # not there, or not empty: keep it
            media.rmdir()


def check_new_entry(
    config: SiteConfig, path: Path, *, plugin_id: str | None = None
) -> PluginDescriptor:
    """The descriptor at ``path``, if no installed plugin has its directory or its id.
    ``plugin_id`` is the id the caller just loaded (refused if the descriptor on disk says
    otherwise by now)."""
    descriptor = PluginDescriptor.from_file(path)
    if plugin_id is not None and descriptor.id != plugin_id:
        raise ConfigError(
            f'{path} said id "{plugin_id}" when it was loaded and "{descriptor.id}" now; '
            "make sure nothing edits the plugin while it is added, then add it again",
            plugin_id=plugin_id,
        )
    for entry in config.plugins:
        existing = config.plugin_path(entry)
        if existing == path.resolve():
            pid = entry.id or _descriptor_id(existing) or descriptor.id
            raise ConfigError(
                f"Plugin directory {path} is already in {config._where()} (plugin {pid}); "
                f"to change how it runs (--trusted or not), emdash plugins remove {pid} "
                "(its data stays), then add it again; for a new version: "
                f"emdash plugins upgrade {pid}"
            )
        if (entry.id or _descriptor_id(existing)) == descriptor.id:
            raise ConfigError(
                f'A plugin with id "{descriptor.id}" is already installed (from {existing}); '
                f"to install this copy as its new version: emdash plugins upgrade "
                f"{descriptor.id} {path}; or remove it first with: emdash plugins remove "
                f"{descriptor.id}"
            )
    return descriptor


def add_plugin_entry(
    config: SiteConfig, path: Path, *, trusted: bool, plugin_id: str | None = None
) -> PluginDescriptor:
    """Append a plugin to the config file (creating the file if needed); return its
    descriptor. The entry pins the descriptor's id (see :func:`check_new_entry`)."""
    descriptor = check_new_entry(config, path, plugin_id=plugin_id)
    doc = _read_document(config)
    plugins = doc.get("plugins")
    if plugins is None:
        plugins = tomlkit.aot()
        doc.append("plugins", plugins)
    table = tomlkit.table()
    table.add("path", _relative(path, config.base_dir))
    table.add("id", descriptor.id)
    table.add("trusted", trusted)
    table.add("enabled", True)
    plugins.append(table)
    _write_document(config, doc)
    return descriptor


def remove_plugin_entry(config: SiteConfig, plugin_id: str) -> PluginEntry:
    """Delete the plugin with this id from the config file; return the removed entry."""
    index = find_entry(config, plugin_id)
    doc = _read_document(config)
    del doc["plugins"][index]
    if not doc["plugins"]:
        del doc["plugins"]
    _write_document(config, doc)
    return config.plugins[index]


def set_plugin_enabled(config: SiteConfig, plugin_id: str, enabled: bool) -> None:
    """Set ``enabled`` for the plugin with this id in the config file."""
    index = find_entry(config, plugin_id)
    doc = _read_document(config)
    doc["plugins"][index]["enabled"] = enabled
    _write_document(config, doc)


def find_entry(config: SiteConfig, plugin_id: str) -> int:
    """Index in ``config.plugins`` of the plugin whose descriptor has this id."""
    # A pinned id names its entry even when the descriptor on disk says another one, so
    # such a plugin can still be removed or upgraded by the id it was approved under.
    for i, entry in enumerate(config.plugins):
        if (entry.id or _descriptor_id(config.plugin_path(entry))) == plugin_id:
            return i
    installed = ", ".join(
        filter(None, (e.id or _descriptor_id(config.plugin_path(e)) for e in config.plugins))
    )
    raise ConfigError(
        f'No plugin with id "{plugin_id}" in {config._where()} '
        f"(installed: {installed or 'none'}); see: emdash plugins list"
    )


def entry_id(config: SiteConfig, entry: PluginEntry) -> str:
    """The id of an entry: the pinned one, else its descriptor's, else its directory's name."""
    path = config.plugin_path(entry)
    return entry.id or _descriptor_id(path) or path.name


def _descriptor_id(path: Path) -> str | None:
    try:
        return PluginDescriptor.from_file(path).id
    except EmDashError:
        return None


def _relative(path: Path, base: Path) -> str:
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(base))
    except ValueError:
        return str(resolved)


def _read_document(config: SiteConfig) -> tomlkit.TOMLDocument:
    if config.source is None or not config.source.exists():
        return tomlkit.document()
    return tomlkit.parse(config.source.read_text(encoding="utf-8"))


def _write_document(config: SiteConfig, doc: tomlkit.TOMLDocument) -> None:
    target = config.source or (config.base_dir / DEFAULT_CONFIG_NAME)
    text = tomlkit.dumps(doc)
    _validate(tomllib.loads(text), target)  # never write a file we would refuse to load
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
