"""The public surface is a contract (docs/design.md): it must not drift silently."""

import types

import emdash

# The names docs/design.md promises to hosts, plugin authors and reviewers' suites.
CONTRACT = {
    "Runtime",
    "PluginDescriptor",
    "define_plugin",
    "HookConfig",
    "PluginRouteError",
    "EmDashError",
    "ManifestError",
    "CapabilityError",
    "StorageQueryError",
    "InvalidCursorError",
    "HttpAccessError",
    "PluginError",
    "HookTimeoutError",
    "SandboxError",
    "SandboxViolation",
    "CpuLimitExceeded",
    "MemoryLimitExceeded",
    "WallTimeExceeded",
    "SubrequestLimitExceeded",
    "SandboxNotAvailableError",
    "SandboxUnavailableError",
}


def test_contract_names_are_exported() -> None:
    assert CONTRACT <= set(emdash.__all__)


def test_all_matches_the_real_public_names() -> None:
    # Submodules (emdash.asgi, emdash.cli) become attributes once imported; they are public
    # modules, not names of the package namespace.
    public = {
        n
        for n, v in vars(emdash).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType)
    }
    assert set(emdash.__all__) == public


def test_every_error_shares_one_root() -> None:
    for name in emdash.__all__:
        obj = getattr(emdash, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, emdash.EmDashError), name


def test_sandbox_errors_are_also_generic_sandbox_errors() -> None:
    import sandbox

    assert issubclass(emdash.CpuLimitExceeded, sandbox.CpuLimitExceeded)
    assert issubclass(emdash.SandboxViolation, sandbox.SandboxViolation)
    assert issubclass(emdash.SandboxError, sandbox.SandboxError)


def test_exported_objects_report_emdash_as_their_module() -> None:
    # Tracebacks and reprs name emdash.CapabilityError, not the private module it lives in.
    for name in emdash.__all__:
        obj = getattr(emdash, name)
        if isinstance(obj, type) or callable(obj) and hasattr(obj, "__code__"):
            assert obj.__module__ == "emdash", name


def test_plugin_facing_types_are_exported() -> None:
    from typing import get_args

    from emdash._shared._context import Context

    assert emdash.Context is Context
    assert get_args(emdash.HookName) == emdash.HOOK_NAMES
    assert set(get_args(emdash.JSON)) >= {bool, int, float, str}
