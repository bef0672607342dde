"""The corpus itself: complete against docs/escape-corpus.md, well-formed, and labelled consistently.

These checks run without workers: they make sure the suite keeps covering what
docs/escape-corpus.md lists (every numbered payload, every RestrictedPython CVE of its
section 4) and that each payload's ``expect`` agrees with what the compiler alone decides.
"""

from __future__ import annotations

import re

import pytest

import emdash
import sandbox
from emdash._selfaudit._corpus import (
    CLASSES,
    EXPECTS,
    LIMIT_ERRORS,
    PLACEHOLDERS,
    Payload,
    all_payloads,
    is_limit_stop,
    payloads_for,
)
from sandbox import _compiler

# docs/escape-corpus.md (the classes): the numbered payloads of each class.
SPEC_RANGES = {
    "import": (1, 7),
    "builtins": (8, 16),
    "attr": (17, 22),
    "frame": (23, 29),
    "format": (30, 39),
    "guardshadow": (40, 44),
    "class": (45, 52),
    "exc": (53, 58),
    "syntax": (59, 66),
    "shim": (67, 74),
    "iter": (75, 78),
    "ctx": (79, 87),
    "serial": (88, 90),
    "os": (91, 106),
    "dos": (107, 120),
}
# The brief: at least 4 variants of our own per class, more for format/ctx/os/dos.
MIN_OWN = {klass: 4 for klass in CLASSES} | {"format": 6, "ctx": 8, "os": 6, "dos": 6}

# docs/escape-corpus.md (RestrictedPython's security history): every RestrictedPython security fix must have a payload.
RP_HISTORY = [
    "CVE-2023-37271",
    "CVE-2023-41039",
    "CVE-2024-47532",
    "CVE-2025-22153",
    "CVE-2026-55830",
    "CVE-2026-76825",
    "RP 7.2",
    "RP 8.5",
    "RP 9.0 #335",
    "Ronacher 2016",
]

PY_EXCEPTIONS = {
    "PermissionError",
    "LookupError",
    "RuntimeError",
    "SystemExit",
    "KeyboardInterrupt",
}
SANDBOX_ERRORS = {"WorkerCrashed", "SandboxViolation", "CpuLimitExceeded", "WallTimeExceeded"}


def test_the_classes_are_the_fifteen_of_the_spec() -> None:
    assert CLASSES == tuple(SPEC_RANGES)
    assert set(all_payloads()) == set(CLASSES)


@pytest.mark.parametrize("klass", CLASSES)
def test_every_numbered_payload_of_the_spec_is_present(klass: str) -> None:
    lo, hi = SPEC_RANGES[klass]
    refs = sorted(int(p.ref) for p in payloads_for(klass) if p.ref)
    assert refs == list(range(lo, hi + 1))


@pytest.mark.parametrize("klass", CLASSES)
def test_each_class_has_variants_of_our_own(klass: str) -> None:
    own = [p for p in payloads_for(klass) if not p.ref]
    assert len(own) >= MIN_OWN[klass]


def test_every_restrictedpython_fix_has_a_payload() -> None:
    sources = " ".join(p.source for ps in all_payloads().values() for p in ps)
    missing = [item for item in RP_HISTORY if item not in sources]
    assert missing == []


def test_unknown_class_is_refused_with_the_list_of_classes() -> None:
    with pytest.raises(ValueError) as info:
        payloads_for("nope")
    assert str(info.value) == "Unknown escape class 'nope'; choose one of: " + ", ".join(CLASSES)


@pytest.mark.parametrize("klass", CLASSES)
def test_payloads_are_well_formed(klass: str) -> None:
    names = set()
    for p in payloads_for(klass):
        assert p.name not in names and re.fullmatch(r"[a-z0-9_]+", p.name), p.name
        names.add(p.name)
        assert p.expect in EXPECTS
        assert p.technique and p.source
        for placeholder in re.findall(r"@@[A-Z_]+@@", p.code):
            assert placeholder in PLACEHOLDERS, (p.name, placeholder)
        if p.mode == "restricted":
            assert re.search(r"^def handler\b", p.code, re.M), p.name
            assert p.error in emdash.__all__, (p.name, p.error)
            if p.error_type is not None:
                assert p.error == "PluginError", p.name
            assert p.hook.startswith("route:") or p.hook in emdash.HOOK_NAMES, p.name
        else:
            assert "def handler" not in p.code, p.name
            assert p.error in PY_EXCEPTIONS | SANDBOX_ERRORS, (p.name, p.error)
            assert p.error_type is None and p.message == ()
        if p.expect == "contained":
            assert p.error != "CompileError", p.name


def _restricted() -> list[pytest.ParameterSet]:
    return [
        pytest.param(p, id=f"{klass}-{p.name}")
        for klass, ps in all_payloads().items()
        for p in ps
        if p.mode == "restricted"
    ]


@pytest.mark.parametrize("payload", _restricted())
def test_the_compiler_alone_agrees_with_the_label(payload: Payload) -> None:
    """compile_error payloads are refused by the compiler; all others compile."""
    files = {"plugin.py": payload.code}
    if payload.expect == "compile_error":
        with pytest.raises(sandbox.CompileError):
            _compiler.compile_bundle(files)
    else:
        assert set(_compiler.compile_bundle(files)) == {"plugin"}


def test_a_limit_stop_is_accepted_where_any_limit_contains_the_payload() -> None:
    by_name = {p.name: p for ps in all_payloads().values() for p in ps}
    busy_loop = by_name["busy_loop"]  # contained, targets the CPU limit
    assert busy_loop.any_limit_contains
    for error in LIMIT_ERRORS:
        assert busy_loop.accepts(error, None), error
    assert busy_loop.accepts("PluginError", "RecursionError")
    # Returning, or an error that is no limit, is not a stop by a limit.
    assert not busy_loop.accepts(None, None)
    assert not busy_loop.accepts("SandboxViolation", None)
    assert not busy_loop.accepts("PluginError", "ValueError")
    # A plugin-raised look-alike of a limit error stays a PluginError: not a stop.
    assert not busy_loop.accepts("PluginError", "CpuLimitExceeded")
    # runtime_denied, but the expected outcome is itself a limit stop (the recursion limit).
    ref_loop = by_name["route_schema_ref_loop"]
    assert ref_loop.expect == "runtime_denied" and ref_loop.any_limit_contains
    assert ref_loop.accepts("PluginError", "RecursionError")
    assert ref_loop.accepts("CpuLimitExceeded", None)
    assert ref_loop.accepts("WallTimeExceeded", None)
    # Elsewhere only the exact outcome counts: a forged limit error must stay a PluginError.
    forged = by_name["forged_limit_error"]
    assert not forged.any_limit_contains
    assert forged.accepts("PluginError", "SubrequestLimitExceeded")
    assert not forged.accepts("SubrequestLimitExceeded", None)
    assert not forged.accepts("CpuLimitExceeded", None)
    assert not by_name["import_os"].accepts("CpuLimitExceeded", None)


def test_interpreter_and_sandbox_limit_names() -> None:
    assert is_limit_stop("RecursionError", None)  # raw-worker code names its exception
    assert is_limit_stop("PluginError", "RecursionError")
    assert not is_limit_stop("PluginError", "MemoryLimitExceeded")
    assert not is_limit_stop("WorkerCrashed", None)
    assert not is_limit_stop(None, None)
