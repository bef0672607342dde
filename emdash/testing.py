"""Testing kit for plugin authors: run one plugin in a throw-away site, in either mode.

From a plugin's own test suite (``pip install 'emdash-runtime[test]'`` in its dev environment)::

    # tests/test_my_plugin.py
    from pathlib import Path

    from emdash.testing import assert_capability_denied

    PLUGIN = Path(__file__).parents[1]          # the directory holding emdash-plugin.toml

    def test_saves_are_recorded(plugin_harness, both_modes):
        h = plugin_harness(PLUGIN, sandbox=both_modes)   # runs twice: sandboxed, native
        h.runtime.content.create("posts", {"title": "Hi"})
        assert len(h.route("recent")["events"]) == 1

Installing emdash registers this module as a pytest plugin (entry point ``pytest11``,
name ``emdash``; ``-p no:emdash`` turns it off), which provides three fixtures:

- ``emdash_runtime``: a :class:`~emdash.Runtime` on a SQLite file in ``tmp_path``;
- ``plugin_harness``: a factory of :class:`PluginHarness` objects;
- ``both_modes``: ``"sandboxed"`` then ``"native"``, so a test learns early when code works
  in-process but not in the sandbox (it skips the sandboxed run, saying why, on a host that
  cannot sandbox).

Outbound HTTP without a network: ``resolver=fake_dns({"api.example.com": "93.184.216.34"})``
with ``http_transport=httpx.MockTransport(handler)`` (see :func:`fake_dns` and
docs/testing-plugins.md).

Everything the fixtures create is closed at teardown: runtimes, their fork servers and
sandbox workers, HTTP clients and temporary databases. Without pytest, use
:class:`PluginHarness` as a context manager. The harness drives real parts only: a real
SQLite store, real forked and seccomp-confined workers for sandboxed plugins, the real
ASGI app behind :meth:`PluginHarness.client`.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import anyio
import httpx

from ._asgi._app import EmDashASGI, create_app
from ._hosting._outcome import ExclusiveOutcome, HookOutcome, HookResult
from ._model._capabilities import CAPABILITIES, normalize_capability
from ._model._descriptor import Limits, PluginDescriptor
from ._runtime._runtime import Runtime
from ._shared._errors import (
    CapabilityError,
    CommentRejectedError,
    DeleteBlockedError,
    EmDashError,
    NotFoundError,
)
from ._shared._hooks_catalog import HOOKS

__all__ = [
    "HarnessFactory",
    "KVView",
    "Mode",
    "PluginHarness",
    "FakeDNS",
    "StorageView",
    "assert_capability_denied",
    "assert_vetoed",
    "fake_dns",
]

Mode = Literal["sandboxed", "native"]
MODES: tuple[Mode, Mode] = ("sandboxed", "native")
# Hooks that target one plugin rather than broadcasting: the harness names its plugin.
_TARGETED_FAMILIES = frozenset({"lifecycle", "cron", "exclusive"})


class PluginHarness:
    """A fresh :class:`~emdash.Runtime` in which exactly one plugin is loaded.

    ``plugin`` is a plugin directory, an ``emdash-plugin.toml`` path, a
    :class:`~emdash.PluginDescriptor`, a descriptor dict or JSON text; ``source`` is passed
    to ``Runtime.add_plugin`` (e.g. Python source text for a descriptor dict). The plugin is
    sandboxed by default; ``sandbox=False`` (or ``"native"``) adds it trusted, in-process.
    ``capabilities`` replaces the descriptor's list (to test denials), ``limits`` its
    sandbox limits (a :class:`~emdash.Limits` or a dict). ``settings`` pre-fills KV keys
    ``settings:<key>`` before the plugin is installed. ``database`` defaults to a SQLite
    file in a temporary directory removed by :meth:`close`; other keyword arguments
    (``site=``, ``http_transport=``...) go to :class:`~emdash.Runtime`.

    ::

        with PluginHarness("examples/hello") as h:
            h.runtime.content.create("posts", {"title": "Hi"})
            assert h.route("recent")["events"][0]["data"]["collection"] == "posts"
            assert len(h.storage("events")) == 1
    """

    def __init__(
        self,
        plugin: PluginDescriptor | Mapping[str, Any] | str | os.PathLike[str],
        *,
        source: Any = None,
        sandbox: bool | Mode = True,
        capabilities: Sequence[str] | None = None,
        settings: Mapping[str, Any] | None = None,
        database: str | os.PathLike[str] | None = None,
        limits: Limits | Mapping[str, Any] | None = None,
        **runtime_options: Any,
    ) -> None:
        self.sandboxed = _sandboxed(sandbox)
        self.descriptor = _descriptor(plugin, capabilities, limits)
        self.plugin_id = self.descriptor.id
        self.token = secrets.token_urlsafe(32)
        self._clients: list[httpx.Client] = []
        self._app: EmDashASGI | None = None
        self._closed = False
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if database is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="emdash-harness-")
            database = Path(self._tmp.name) / "site.db"
        self.database: str | Path = database if isinstance(database, str) else Path(database)
        try:
            self.runtime = Runtime(self.database, **runtime_options)
        except BaseException:
            self._cleanup_tmp()
            raise
        try:
            for key, value in (settings or {}).items():
                self.runtime.store.kv_entries.set(self.plugin_id, f"settings:{key}", value)
            # enabled=True: a database that remembers the plugin as disabled still gets
            # it enabled, since a harness exists to exercise it.
            self.runtime.add_plugin(
                self.descriptor, source=source, trusted=not self.sandboxed, enabled=True
            )
        except BaseException:
            # A plugin that fails to load must not leave a fork server or a temp dir behind.
            self.close()
            raise

    # -- lifetime ----------------------------------------------------------------------

    def __enter__(self) -> PluginHarness:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the HTTP clients, the runtime (its fork server and every sandbox worker
        with it) and remove the temporary database. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            for client in self._clients:
                client.close()
            self._clients.clear()
            self.runtime.close()
        finally:
            self._cleanup_tmp()

    def _cleanup_tmp(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _check_open(self) -> None:
        if self._closed:
            raise EmDashError(
                f"The PluginHarness of plugin {self.plugin_id} is closed; create a new one"
            )

    def __repr__(self) -> str:
        mode = "sandboxed" if self.sandboxed else "native"
        state = ", closed" if self._closed else ""
        return f"<PluginHarness {self.plugin_id!r} {mode}{state}>"

    # -- driving the plugin ------------------------------------------------------------

    def hook(self, name: str, event: Any) -> HookOutcome:
        """Run hook ``name`` with ``event`` and return the :class:`~emdash.HookOutcome`.

        Lifecycle, cron and exclusive hooks are sent to this plugin directly (no provider
        selection needed); the other hooks run through the site's pipeline as in
        production. With ``error_policy="abort"`` (the default) a failing handler's
        error is raised; with ``"continue"`` it is in ``outcome.errors``.
        """
        self._check_open()
        spec = HOOKS.get(name)
        targeted = spec is not None and spec.family in _TARGETED_FAMILIES
        return self.runtime.run_hook(name, event, plugin_id=self.plugin_id if targeted else None)

    def route(
        self,
        name: str,
        input: Any = None,
        *,
        request: dict[str, Any] | None = None,
        user: dict[str, Any] | None = None,
    ) -> Any:
        """Call route ``name`` of the plugin and return its data (errors are raised).

        ``name`` may also be the route's path: ``/name`` or ``/_emdash/api/plugins/<id>/name``.
        """
        self._check_open()
        prefix = f"/_emdash/api/plugins/{self.plugin_id}/"
        name = name.removeprefix(prefix).removeprefix(prefix[1:]).removeprefix("/")
        return self.runtime.invoke_route(
            self.plugin_id, name, input=input, request=request, user=user
        )

    # -- looking at what the plugin did -----------------------------------------------

    @property
    def kv(self) -> KVView:
        """The plugin's KV store, read-only: ``h.kv["key"]``, ``h.kv == {...}``."""
        self._check_open()
        return KVView(self.runtime, self.plugin_id)

    def storage(self, collection: str) -> StorageView:
        """One declared storage collection, read-only (see :class:`StorageView`)."""
        self._check_open()
        spec = self.descriptor.storage.get(collection)
        if spec is None:
            declared = ", ".join(self.descriptor.storage) or "none"
            raise NotFoundError(
                f'Plugin {self.plugin_id} declares no storage collection "{collection}" '
                f"(declared: {declared})",
                plugin_id=self.plugin_id,
            )
        return StorageView(self.runtime, self.plugin_id, collection)

    def audit(self, limit: int = 100) -> list[dict[str, Any]]:
        """This plugin's audit records, newest first (every hook, route, lifecycle call and sandboxed load)."""
        self._check_open()
        return self.runtime.audit_log(limit=limit, plugin_id=self.plugin_id)

    # -- HTTP --------------------------------------------------------------------------

    @property
    def app(self) -> EmDashASGI:
        """The ASGI app serving the plugin's routes, with :attr:`token` as its API token."""
        self._check_open()
        if self._app is None:
            self._app = create_app(self.runtime, token=self.token)
        return self._app

    @property
    def base_url(self) -> str:
        return f"http://testserver/_emdash/api/plugins/{self.plugin_id}/"

    def client(self, *, authenticated: bool = True) -> httpx.Client:
        """A synchronous ``httpx.Client`` over the ASGI app; no socket is opened.

        URLs are route names or the route's path as a user types it:
        ``h.client().post("submit", json={...})``, ``.post("/submit")`` and
        ``.post("/_emdash/api/plugins/<id>/submit")`` call the same route. It sends
        ``Authorization: Bearer <token>`` unless ``authenticated=False`` (to test public
        routes and the 401 of private ones). Each request runs the app on a private event
        loop, so call it from synchronous code; in async tests use :meth:`async_client`.
        The harness closes it.
        """
        headers = {"authorization": f"Bearer {self.token}"} if authenticated else {}
        client = httpx.Client(
            transport=_SyncASGITransport(self.app, self.plugin_id),
            base_url=self.base_url,
            headers=headers,
        )
        self._clients.append(client)
        return client

    def async_client(self, *, authenticated: bool = True) -> httpx.AsyncClient:
        """Like :meth:`client`, for async code: ``async with h.async_client() as c: ...``."""
        headers = {"authorization": f"Bearer {self.token}"} if authenticated else {}
        return httpx.AsyncClient(
            transport=_AsyncPathForms(httpx.ASGITransport(app=self.app), self.plugin_id),
            base_url=self.base_url,
            headers=headers,
        )


class _SyncASGITransport(httpx.BaseTransport):
    """Runs each request through ``httpx.ASGITransport`` on a fresh event loop.

    httpx's ASGI transport is async-only; a loop per request keeps the sync client free of
    background threads to leak (the app itself hands plugin calls to worker threads).
    """

    def __init__(self, app: EmDashASGI, plugin_id: str) -> None:
        self._inner = httpx.ASGITransport(app=app)
        self._plugin_id = plugin_id

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        _absolute_path(request, self._plugin_id)
        # A streaming sync body cannot be read from async code: buffer it first.
        request.read()

        async def exchange() -> httpx.Response:
            response = await self._inner.handle_async_request(request)
            body = await response.aread()
            return httpx.Response(
                response.status_code,
                headers=response.headers,
                content=body,
                extensions=response.extensions,
                request=request,
            )

        return anyio.run(exchange)


# Where the app serves routes (emdash._asgi._app.PREFIXES), without the leading slash.
_SERVED_AT = (b"_emdash/api/plugins/", b"api/plugins/")


def _absolute_path(request: httpx.Request, plugin_id: str) -> None:
    """Undo httpx's joining of an absolute route path onto the client's base URL.

    httpx appends every non-absolute URL to ``base_url``, so ``/_emdash/api/plugins/x/r``
    becomes ``.../plugins/x/_emdash/api/plugins/x/r``: a 404 for the path a user copied
    from the docs or a browser. A path that names the route's full location is used as is.
    """
    base = f"/_emdash/api/plugins/{plugin_id}/".encode()
    raw = request.url.raw_path
    if raw.startswith(base) and raw[len(base) :].startswith(_SERVED_AT):
        request.url = request.url.copy_with(raw_path=raw[len(base) - 1 :])


class _AsyncPathForms(httpx.AsyncBaseTransport):
    """The async client's transport: the same path forms as the sync one."""

    def __init__(self, inner: httpx.AsyncBaseTransport, plugin_id: str) -> None:
        self._inner = inner
        self._plugin_id = plugin_id

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        _absolute_path(request, self._plugin_id)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class KVView(Mapping[str, Any]):
    """A read-only view of one plugin's KV keys (settings included), live on the store."""

    def __init__(self, runtime: Runtime, plugin_id: str) -> None:
        self._kv = runtime.store.kv_entries
        self._pid = plugin_id

    def list(self, prefix: str = "") -> dict[str, Any]:
        """``{key: value}`` of the keys starting with ``prefix``, sorted by key."""
        return {e["key"]: e["value"] for e in self._kv.list(self._pid, prefix)}

    def __getitem__(self, key: str) -> Any:
        # A stored JSON null and a missing key both read as None through get(); the
        # prefix listing tells them apart.
        for entry in self._kv.list(self._pid, key):
            if entry["key"] == key:
                return entry["value"]
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __len__(self) -> int:
        return len(self._kv.list(self._pid))

    def __repr__(self) -> str:
        return f"KVView({self._pid!r}, {self.list()!r})"


class StorageView(Mapping[str, Any]):
    """A read-only view of one storage collection: ``{document id: data}``, live.

    Iteration follows creation order. :meth:`query` takes the plugin API's arguments
    (``where``, ``order_by``, ``limit``, ``cursor``) and returns the same page dict.
    """

    def __init__(self, runtime: Runtime, plugin_id: str, collection: str) -> None:
        self._storage = runtime.store.plugin_documents
        self._spec = runtime.get_plugin(plugin_id).descriptor.storage[collection]
        self._pid = plugin_id
        self._coll = collection

    def query(
        self,
        *,
        where: Any = None,
        order_by: Any = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        return self._storage.query(
            self._pid,
            self._coll,
            self._spec,
            where=where,
            order_by=order_by,
            limit=limit,
            cursor=cursor,
        )

    def count(self, where: Any = None) -> int:
        return self._storage.count(self._pid, self._coll, self._spec, where)

    def __getitem__(self, doc_id: str) -> Any:
        if not self._storage.exists(self._pid, self._coll, doc_id):
            raise KeyError(doc_id)
        return self._storage.get(self._pid, self._coll, doc_id)

    def __iter__(self) -> Iterator[str]:
        cursor: str | None = None
        while True:
            page = self.query(limit=100, cursor=cursor)
            yield from (item["id"] for item in page["items"])
            cursor = page.get("cursor")
            if not page["hasMore"] or cursor is None:
                return

    def __len__(self) -> int:
        return self.count()

    def __repr__(self) -> str:
        return f"StorageView({self._pid!r}, {self._coll!r}, {len(self)} documents)"


# -- assertions ------------------------------------------------------------------------

_Outcomes = HookOutcome | HookResult | ExclusiveOutcome | BaseException


def assert_capability_denied(
    target: Callable[[], Any] | _Outcomes, capability: str
) -> CapabilityError:
    """Assert that ``capability`` was refused; return the :class:`~emdash.CapabilityError`.

    ``target`` is a callable (called with no arguments: it must raise the error, or
    return an outcome holding it), a hook outcome or result, or an exception::

        h = PluginHarness(path, capabilities=[])
        assert_capability_denied(lambda: h.route("latest"), "content:read")
        # A hook needs its own capability to load at all (content:afterSave: content:read);
        # deny what its handler reaches through ctx instead:
        h = PluginHarness(path, capabilities=["content:read"])
        assert_capability_denied(h.hook("content:afterSave", event), "users:read")
    """
    wanted = _canonical(capability)
    found = _outcome_of(target)
    errors = _errors_in(found)
    for err in errors:
        if isinstance(err, CapabilityError) and err.capability == wanted:
            return err
    if isinstance(found, HookOutcome) and not found.results:
        raise AssertionError(
            f"Expected {wanted} to be denied, but no handler ran for {found.hook}: the "
            "plugin has no handler for it (a hook whose own required capability is missing "
            "is refused when the plugin loads, never denied at run time); call something "
            "the handler does with ctx instead."
        )
    if errors:
        shown = "; ".join(f"{type(e).__name__}: {e}" for e in errors)
        raise AssertionError(f"Expected CapabilityError for {wanted}, got {shown}")
    raise AssertionError(
        f"Expected CapabilityError for {wanted}, but nothing was denied: {_describe(found)}"
    )


def assert_vetoed(target: Callable[[], Any] | _Outcomes, by: str | None = None) -> None:
    """Assert that a veto or middleware hook was stopped (by plugin ``by``, if given).

    ``target`` is a :class:`~emdash.HookOutcome`, a ``DeleteBlockedError`` /
    ``CommentRejectedError``, or a callable returning or raising one::

        assert_vetoed(h.hook("content:beforeDelete", event), by="guard")
        assert_vetoed(lambda: h.runtime.content.delete("posts", item_id), by="guard")
    """
    found = _outcome_of(target)
    if isinstance(found, HookOutcome):
        if found.cancelled_by is None:
            raise AssertionError(
                f"Expected {found.hook} to be vetoed{_by(by)}, but every handler allowed it: "
                f"{found.results!r}"
            )
        stoppers = [found.cancelled_by]
    elif isinstance(found, DeleteBlockedError) and found.plugin_ids:
        stoppers = list(found.plugin_ids)
    elif isinstance(found, CommentRejectedError) and found.plugin_id is not None:
        stoppers = [found.plugin_id]
    else:
        raise AssertionError(f"Expected a veto{_by(by)}, but {_describe(found)}")
    if by is not None and by not in stoppers:
        raise AssertionError(
            f"Expected a veto by {by!r}, but it was vetoed by {', '.join(map(repr, stoppers))}"
        )


def _outcome_of(target: Callable[[], Any] | _Outcomes) -> Any:
    if isinstance(target, (HookOutcome, HookResult, ExclusiveOutcome, BaseException)):
        return target
    if not callable(target):
        raise EmDashError(
            f"Pass an outcome, an exception or a callable, not {type(target).__name__}"
        )
    try:
        return target()
    except Exception as exc:
        return exc


def _errors_in(found: Any) -> list[BaseException]:
    if isinstance(found, HookOutcome):
        return list(found.errors)
    if isinstance(found, (HookResult, ExclusiveOutcome)):
        return [] if found.error is None else [found.error]
    return [found] if isinstance(found, BaseException) else []


def _describe(found: Any) -> str:
    if isinstance(found, BaseException):
        return f"it raised {type(found).__name__}: {found}"
    if isinstance(found, HookOutcome | HookResult | ExclusiveOutcome):
        return f"got {found!r}"
    text = repr(found)
    return "the call returned " + (text if len(text) <= 200 else text[:197] + "...")


def _by(plugin_id: str | None) -> str:
    return "" if plugin_id is None else f" by {plugin_id!r}"


def _canonical(capability: str) -> str:
    name = normalize_capability(capability)
    if name not in CAPABILITIES:
        raise EmDashError(
            f'Unknown capability "{capability}". Valid capabilities: ' + ", ".join(CAPABILITIES)
        )
    return name


def _sandboxed(mode: bool | str) -> bool:
    if isinstance(mode, bool):
        return mode
    if mode in MODES:
        return mode == "sandboxed"
    raise EmDashError(f'sandbox must be True, False, "sandboxed" or "native", not {mode!r}')


def _descriptor(
    plugin: Any, capabilities: Sequence[str] | None, limits: Limits | Mapping[str, Any] | None
) -> PluginDescriptor:
    if isinstance(plugin, os.PathLike):
        plugin = Path(plugin)
    desc = PluginDescriptor.load(dict(plugin) if isinstance(plugin, Mapping) else plugin)
    if capabilities is None and limits is None:
        return desc
    if isinstance(capabilities, str):
        raise EmDashError("capabilities must be a list of names, not one string")
    # Rebuilt through validation, so the override is normalised (aliases, implications)
    # and checked exactly as a descriptor file would be.
    data = desc.model_dump()
    if capabilities is not None:
        data["capabilities"] = list(capabilities)
    if limits is not None:
        data["limits"] = limits.model_dump() if isinstance(limits, Limits) else dict(limits)
    return PluginDescriptor.from_dict(data)


# -- offline HTTP ----------------------------------------------------------------------


class FakeDNS:
    """A resolver answering from a fixed table; see :func:`fake_dns`.

    ``lookups`` records every ``(host, port)`` asked, in order, for assertions.
    """

    def __init__(self, answers: Mapping[str, str | Sequence[str]]) -> None:
        table: dict[str, tuple[str, ...]] = {}
        for name, value in answers.items():
            addresses = (value,) if isinstance(value, str) else tuple(value)
            if not addresses or not all(isinstance(a, str) for a in addresses):
                raise EmDashError(
                    f"fake_dns: {name!r} must map to an address or a list of addresses, "
                    f"e.g. {{{name!r}: '93.184.216.34'}}"
                )
            table[name.strip().lower().rstrip(".")] = addresses
        self._table = table
        self.lookups: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append((host, port))
        found = self._table.get(host.strip().lower().rstrip("."))
        if found is None:
            # What a real resolver says for a name that does not exist: the fetch fails
            # with "Could not resolve hostname", and nothing goes to the network.
            raise OSError(f"fake_dns has no answer for {host!r}")
        return list(found)


def fake_dns(answers: Mapping[str, str | Sequence[str]]) -> FakeDNS:
    """A resolver for ``Runtime(resolver=...)`` / ``plugin_harness(..., resolver=...)``.

    Together with ``http_transport=httpx.MockTransport(handler)`` it tests a plugin's
    outbound HTTP without any network: the name resolves to the addresses given (nothing
    asks real DNS; an unknown name fails as a real one would), and the mock transport
    answers the request. The SSRF rules still apply to those addresses, so map public
    names to public addresses (``93.184.216.34``, the documentation ranges are refused);
    an answer such as ``127.0.0.1`` is refused exactly as in production unless the host is
    in ``allow_private_hosts``. The plugin's ``allowedHosts`` still decide which names it
    may fetch. Only host code passes a resolver: a plugin or a descriptor cannot.

    ::

        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, json={"temp": 21})

        h = plugin_harness(PLUGIN, sandbox=both_modes,
                           resolver=fake_dns({"api.example.com": "93.184.216.34"}),
                           http_transport=httpx.MockTransport(handler))
    """
    return FakeDNS(answers)


# -- the pytest plugin -----------------------------------------------------------------


class HarnessFactory:
    """What the ``plugin_harness`` fixture gives: ``plugin_harness(path, **options)``.

    Takes :class:`PluginHarness`'s arguments; the database defaults to a file in the test's
    ``tmp_path`` (kept for inspection). Every harness it made is closed at teardown.
    """

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._made: list[PluginHarness] = []

    def __call__(self, plugin: Any, **options: Any) -> PluginHarness:
        if options.get("database") is None:
            options["database"] = self._dir / f"emdash-harness-{len(self._made) + 1}.db"
        harness = PluginHarness(plugin, **options)
        self._made.append(harness)
        return harness

    def close_all(self) -> None:
        """Close every harness, even when one of them fails to close; re-raise the first."""
        first: BaseException | None = None
        for harness in self._made:
            try:
                harness.close()
            except BaseException as exc:
                first = first or exc
        self._made.clear()
        if first is not None:
            raise first


if importlib.util.find_spec("pytest") is not None:  # the harness itself works without pytest
    import pytest

    import sandbox as _sandbox

    @pytest.fixture
    def emdash_runtime(tmp_path: Path) -> Iterator[Runtime]:
        """A :class:`~emdash.Runtime` on ``tmp_path/emdash-site.db``, closed after the test."""
        with Runtime(tmp_path / "emdash-site.db") as runtime:
            yield runtime

    @pytest.fixture
    def plugin_harness(tmp_path: Path) -> Iterator[HarnessFactory]:
        """``plugin_harness(path, sandbox=..., ...)`` -> :class:`PluginHarness`; each one is
        closed (runtime, fork server, workers) at teardown."""
        factory = HarnessFactory(tmp_path)
        try:
            yield factory
        finally:
            factory.close_all()

    @pytest.fixture(params=MODES)
    def both_modes(request: pytest.FixtureRequest) -> Mode:
        """``"sandboxed"`` then ``"native"``: pass it as ``sandbox=`` to run a test both ways."""
        mode: Mode = request.param
        if mode == "sandboxed":
            available = _sandbox.is_available()
            if not available.ok:
                pytest.skip(f"this host cannot sandbox plugins: {available.reason}")
        return mode
