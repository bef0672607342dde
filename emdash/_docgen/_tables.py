"""Renderers of the generated regions that come straight from the code's tables.

Each function returns Markdown (no markers). They read the same objects the runtime uses:
nothing here restates a fact that the code also states, except the short texts of
:data:`AT_LIMIT` (what happens at each limit), which are checked against the descriptor's
``Limits`` fields so that a new limit cannot be added without saying what it does.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from annotated_types import Ge, Gt, Le
from pydantic.fields import FieldInfo

from sandbox import _builtins as sandbox_builtins
from sandbox._call import MIN_WORKER_CPU_S, WORKER_CPU_CALLS, SandboxLimits
from stdlib_shims import RANDOM_NAME, SHIMS, facade_members, make_random

from .._bridge._dispatch import METHODS
from .._model import _descriptor
from .._model._capabilities import CAPABILITIES, CAPABILITY_ALIASES, CAPABILITY_IMPLICATIONS
from .._model._descriptor import Limits, PluginDescriptor, StorageCollection
from .._selfaudit._corpus import CLASSES, payloads_for
from .._shared import _context, _errors, _hooks_catalog
from .._shared._hooks_catalog import HOOKS

__all__ = [
    "AT_LIMIT",
    "aliases",
    "bridge_methods",
    "builtins",
    "capabilities",
    "corpus",
    "ctx_members",
    "descriptor_fields",
    "errors",
    "families",
    "hooks",
    "limits",
    "modules",
    "route_errors",
]


def _cell(value: object) -> str:
    """One table cell: pipes escaped, newlines folded, empty shown as a dash."""
    text = " ".join(str(value).split())
    return text.replace("|", "\\|") if text else "—"


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _code(items: Iterable[str]) -> str:
    return ", ".join(f"`{item}`" for item in items)


def _first_sentence(doc: str | None) -> str:
    """The docstring's first paragraph, on one line."""
    if not doc:
        return ""
    text = " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())
    return text.replace("``", "`")


# --- hooks -------------------------------------------------------------------------------


def hooks() -> str:
    rows = []
    for number, spec in enumerate(HOOKS.values(), 1):
        notes = []
        if spec.chain_key:
            notes.append(f"hands on `{spec.chain_key}`")
        if spec.deferred:
            notes.append("runs after the commit")
        rows.append(
            (
                number,
                f"`{spec.name}`",
                spec.family,
                _code(spec.event_keys) or "`{}`",
                f"`{spec.capability}`" if spec.capability else "none",
                spec.summary + ("; " + ", ".join(notes) if notes else ""),
            )
        )
    return _table(
        (
            "#",
            "Hook",
            "Family",
            "Event keys",
            "Capability to register",
            "When, and what it may return",
        ),
        rows,
    )


_FAMILY_LINE = re.compile(r"^- ``([a-z]+)``\s+(.*)$")


def families() -> str:
    """The family rules, as the hooks catalog's docstring states them."""
    doc = inspect.cleandoc(_hooks_catalog.__doc__ or "")
    rules: dict[str, list[str]] = {}
    current = ""
    for line in doc.splitlines():
        match = _FAMILY_LINE.match(line)
        if match:
            current = match.group(1)
            rules[current] = [match.group(2)]
        elif current and line.startswith("  ") and line.strip():
            rules[current].append(line.strip())
        else:
            current = ""
    used: dict[str, list[str]] = {}
    for spec in HOOKS.values():
        used.setdefault(spec.family, []).append(spec.name)
    missing = set(used) - set(rules)
    if missing:
        raise RuntimeError(f"hooks catalog docstring does not describe families {missing}")
    rows = [
        (f"`{family}`", " ".join(rules[family]).replace("``", "`"), _code(used[family]))
        for family in rules
        if family in used
    ]
    return _table(("Family", "Rule", "Hooks"), rows)


# --- capabilities --------------------------------------------------------------------------


def _ctx_calls() -> dict[str, list[str]]:
    """Bridge method -> the ``ctx`` calls that send it."""
    out: dict[str, list[str]] = {}
    for member, _, methods in _ctx_table():
        for name, _sig, _doc, bridge in methods:
            if bridge:
                out.setdefault(bridge, []).append(f"{member}.{name}")
    return out


def capabilities() -> str:
    calls = _ctx_calls()
    implied_by: dict[str, list[str]] = {}
    for cap, implied in CAPABILITY_IMPLICATIONS.items():
        for target in implied:
            implied_by.setdefault(target, []).append(cap)
    rows = []
    for cap in CAPABILITIES:
        methods = [m for m, (needed, _) in METHODS.items() if needed == cap]
        ctx = [c for m in methods for c in calls.get(m, [m])]
        hooks_needing = [h.name for h in HOOKS.values() if h.capability == cap]
        rows.append(
            (
                f"`{cap}`",
                _code(ctx) or "—",
                _code(hooks_needing) or "—",
                _code(CAPABILITY_IMPLICATIONS.get(cap, ())) or "—",
                _code(implied_by.get(cap, ())) or "—",
            )
        )
    return _table(
        ("Capability", "ctx calls it allows", "Hooks it allows", "Implies", "Implied by"), rows
    )


def aliases() -> str:
    return _table(
        ("Deprecated name (accepted)", "Canonical name it becomes"),
        ((f"`{alias}`", f"`{canonical}`") for alias, canonical in CAPABILITY_ALIASES.items()),
    )


# --- ctx ---------------------------------------------------------------------------------

_SEND = re.compile(r'_send\(\s*"([^"]+)"')
_STORAGE_OP = re.compile(r'_op\(\s*"([^"]+)"')


def _signature(fn: Callable[..., Any]) -> str:
    """``(a, b=None, *, limit=None)``: the call as an author writes it, without types."""
    parts: list[str] = []
    star = False
    for param in list(inspect.signature(fn).parameters.values())[1:]:  # drop self
        if param.kind is param.VAR_POSITIONAL:
            parts.append(f"*{param.name}")
            star = True
            continue
        if param.kind is param.VAR_KEYWORD:
            parts.append(f"**{param.name}")
            continue
        if param.kind is param.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        text = param.name
        if param.default is not param.empty:
            text += f"={param.default!r}"
        parts.append(text)
    return "(" + ", ".join(parts) + ")"


def _bridge_method(fn: Callable[..., Any]) -> str | None:
    source = inspect.getsource(fn)
    match = _SEND.search(source)
    if match:
        return match.group(1)
    match = _STORAGE_OP.search(source)
    if match:
        return f"storage/{match.group(1)}"
    if "self._log(" in source:
        return "log"
    return None


def _methods(cls: type) -> list[tuple[str, str, str, str | None]]:
    """Public methods and properties of a ctx class: (name, signature, doc, bridge method)."""
    out: list[tuple[str, str, str, str | None]] = []
    seen: dict[object, str] = {}
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, property) and value.fget is not None:
            out.append((name, "", _first_sentence(value.fget.__doc__), None))
        elif inspect.isfunction(value):
            if value in seen:
                out.append((name, "", f"the same as `{seen[value]}`", _bridge_method(value)))
                continue
            seen[value] = name
            out.append(
                (name, _signature(value), _first_sentence(value.__doc__), _bridge_method(value))
            )
    return out


def _attributes(cls: type) -> list[tuple[str, str, str, str | None]]:
    slots: tuple[str, ...] = getattr(cls, "__slots__", ())
    return [(name, "", "an attribute (`str`)", None) for name in slots if not name.startswith("_")]


def _ctx_table() -> list[tuple[str, str, list[tuple[str, str, str, str | None]]]]:
    """(how it is reached, what it is, its members) for every part of ``ctx``."""
    context = _context.Context
    rows: list[tuple[str, str, list[tuple[str, str, str, str | None]]]] = []
    for name, value in vars(context).items():
        if not isinstance(value, property) or value.fget is None:
            continue
        cls = getattr(_context, str(inspect.signature(value.fget).return_annotation))
        members = _attributes(cls) if cls in (_context.PluginInfo, _context.SiteInfo) else []
        members += _methods(cls)
        rows.append((f"ctx.{name}", _first_sentence(cls.__doc__), members))
        if cls is _context.Storage:
            rows.append(
                (
                    'ctx.storage["name"]',
                    _first_sentence(_context.StorageCollection.__doc__),
                    _methods(_context.StorageCollection),
                )
            )
    url = vars(context)["url"]
    rows.append(
        (
            "ctx",
            "the ctx object itself",
            [("url", _signature(url), _first_sentence(url.__doc__), None)],
        )
    )
    rows.append(
        (
            "response",
            _first_sentence(_context.HttpResponse.__doc__),
            _methods(_context.HttpResponse),
        )
    )
    rows.append(
        (
            "response.headers",
            _first_sentence(_context.ResponseHeaders.__doc__),
            _methods(_context.ResponseHeaders),
        )
    )
    return rows


def ctx_members() -> str:
    parts: list[str] = []
    for member, doc, methods in _ctx_table():
        parts.append(f"#### `{member}`\n\n{doc}\n")
        if not methods:
            continue
        rows = []
        for name, sig, mdoc, bridge in methods:
            needed = METHODS[bridge][0] if bridge else None
            rows.append(
                (
                    f"`{name}{sig}`",
                    mdoc,
                    f"`{bridge}`" if bridge else "— (local)",
                    f"`{needed}`" if needed else ("none" if bridge else "—"),
                )
            )
        parts.append(_table(("Member", "What", "Bridge method", "Capability"), rows) + "\n")
    return "\n".join(parts)


def bridge_methods() -> str:
    calls = _ctx_calls()
    rows = [
        (
            f"`{method}`",
            f"`{needed}`" if needed else "none",
            _code(calls.get(method, [])) or "—",
        )
        for method, (needed, _) in METHODS.items()
    ]
    return _table(("Bridge method", "Capability", "Sent by"), rows)


# --- descriptor and limits -----------------------------------------------------------------


_MODULE_PATH = re.compile(r"\b(?:[a-z_][a-z0-9_]*\.)+([A-Za-z_][A-Za-z0-9_]*)")


def _type_name(annotation: object) -> str:
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    return _MODULE_PATH.sub(r"\1", text.replace("typing.", ""))


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        made = field.default_factory()  # type: ignore[call-arg]
        return "`[]`" if made == [] else ("`{}`" if made == {} else "(empty)")
    if field.is_required():
        return "required"
    return f"`{field.default!r}`"


# The descriptor's own validation patterns, shown next to the keys they check.
_FIELD_PATTERNS: dict[str, str] = {
    "id": f"`{_descriptor.PLUGIN_ID_RE.pattern}`, at most 64 characters",
    "version": f"semver: `{_descriptor.VERSION_RE.pattern}`",
    "allowed_hosts": f"each `{_descriptor.HOST_RE.pattern}`: a name, `*.name` or `*`, optional `:port`",
    "storage": f"collection names `{_descriptor.COLLECTION_RE.pattern}`, at most 64 characters",
    "indexes": f"field names `{_descriptor.FIELD_RE.pattern}`; a list is a composite index",
    "unique_indexes": f"field names `{_descriptor.FIELD_RE.pattern}`; a list is a composite index",
    "capabilities": "canonical names or deprecated aliases (see capabilities)",
    "entrypoint": "a `.py` file or directory inside the plugin directory, or a module path",
    "limits": "see limits; sandboxed plugins only",
}


def descriptor_fields() -> str:
    parts = []
    for model, title in (
        (PluginDescriptor, "`emdash-plugin.toml` (top level)"),
        (StorageCollection, "`[storage.<collection>]`"),
    ):
        rows = [
            (
                f"`{name}`" + (f" (or `{field.alias}`)" if field.alias else ""),
                f"`{_type_name(field.annotation)}`",
                _default(field),
                field.description or _FIELD_PATTERNS.get(name, ""),
            )
            for name, field in model.model_fields.items()
        ]
        parts.append(f"{title}:\n\n" + _table(("Key", "Type", "Default", "Notes"), rows))
    return "\n\n".join(parts)


#: What happens when an invocation reaches each limit (the texts of this table only).
AT_LIMIT: dict[str, str] = {
    "cpu_ms": "`CpuLimitExceeded`; the worker is killed and replaced",
    "memory_mb": "`MemoryLimitExceeded`; the worker is killed and replaced",
    "wall_ms": "`WallTimeExceeded`; the worker is killed; the call returns once it is gone",
    "subrequests": "`SubrequestLimitExceeded`; the invocation fails even if the plugin caught it, its writes roll back",
    "load_cpu_ms": "`CpuLimitExceeded` while loading (module-level code, `define_plugin`): the plugin cannot start",
    "fresh_worker": "a setting, not a limit: each invocation gets a new worker, killed afterwards",
}


def _bounds(field: FieldInfo) -> str:
    parts = []
    for item in field.metadata:
        if isinstance(item, Gt):
            parts.append(f"> {item.gt}")
        elif isinstance(item, Ge):
            parts.append(f"≥ {item.ge}")
        elif isinstance(item, Le):
            parts.append(f"≤ {item.le:,}".replace(",", " "))
    return ", ".join(parts)


def limits() -> str:
    fields = Limits.model_fields
    if set(fields) != set(AT_LIMIT):
        raise RuntimeError(
            "emdash._docgen._tables.AT_LIMIT must say what happens at every descriptor limit; "
            f"it has {sorted(AT_LIMIT)}, Limits has {sorted(fields)}"
        )
    rows = [
        (f"`{name}`", _default(field), _bounds(field), field.description or "", AT_LIMIT[name])
        for name, field in fields.items()
    ]
    table = _table(("`[limits]` key", "Default", "Allowed", "What", "At the limit"), rows)
    defaults = SandboxLimits()
    lifetime = defaults.lifetime_cpu_s()
    return (
        table
        + "\n\nA worker's lifetime CPU (`RLIMIT_CPU`, not a descriptor key) is "
        + f"`max({MIN_WORKER_CPU_S} s, load_cpu_ms + {WORKER_CPU_CALLS} × cpu_ms)`: "
        + f"{lifetime} s with the defaults."
    )


# --- errors -------------------------------------------------------------------------------


def errors() -> str:
    rows = []
    for name, value in vars(_errors).items():
        if (
            not isinstance(value, type)
            or not issubclass(value, _errors.EmDashError)
            or name.startswith("_")
        ):
            continue
        base = next(
            (b.__name__ for b in value.__bases__ if issubclass(b, _errors.EmDashError)),
            "Exception",
        )
        rows.append((f"`{name}`", f"`{base}`", _first_sentence(value.__doc__)))
    return _table(("Error", "Base", "Meaning"), rows)


def route_errors() -> str:
    cls = _errors.PluginRouteError
    rows = []
    for name, value in vars(cls).items():
        if not isinstance(value, classmethod):
            continue
        fn = getattr(cls, name)
        params = inspect.signature(fn).parameters
        message = params["message"].default
        made = fn("…") if message is inspect.Parameter.empty else fn()
        rows.append(
            (
                f"`PluginRouteError.{name}{_signature_of_classmethod(fn)}`",
                f"`{made.code}`",
                made.status,
                "—" if message is inspect.Parameter.empty else f'"{message}"',
            )
        )
    return _table(("Constructor", "Code", "HTTP status", "Default message"), rows)


def _signature_of_classmethod(fn: Callable[..., Any]) -> str:
    parts = []
    for param in inspect.signature(fn).parameters.values():
        parts.append(
            param.name if param.default is param.empty else f"{param.name}={param.default!r}"
        )
    return "(" + ", ".join(parts) + ")"


# --- the restricted language ---------------------------------------------------------------


def builtins() -> str:
    table = sandbox_builtins.make_builtins(lambda *args, **kwargs: None)
    wrapped = set(sandbox_builtins._WRAPPERS)
    forbidden = sandbox_builtins._FORBIDDEN
    plain = [
        n
        for n in table
        if not n.startswith("_") and n not in forbidden and n not in sandbox_builtins._EXCEPTIONS
    ]
    rows = [
        (
            "available as in Python",
            _code(sorted(n for n in plain if n not in wrapped and not _is_guarded_type(table[n]))),
        ),
        (
            "available, checked by the sandbox (same behaviour for honest code)",
            _code(sorted(wrapped)),
        ),
        (
            "types: constructors check what they iterate; usable in `isinstance` and annotations, not as base classes",
            _code(sorted(n for n in plain if _is_guarded_type(table[n]))),
        ),
        (
            "exceptions (raise, catch and subclass; `UnicodeError` can only be caught)",
            _code(sandbox_builtins._EXCEPTIONS),
        ),
    ]
    out = _table(("Builtins", "Names"), rows)
    refused = [(f"`{name}`", hint) for name, hint in forbidden.items()]
    return (
        out
        + "\n\nRefused (the error says what to do instead):\n\n"
        + _table(("Name", "Instead"), refused)
    )


def _is_guarded_type(value: object) -> bool:
    return isinstance(value, sandbox_builtins.GuardedType)


def _kind(value: object) -> str:
    if isinstance(value, type) or _is_guarded_type(value):
        return "class"
    if callable(value):
        return "function"
    return "constant"


# Annotation-only names are neither functions nor constants in any useful sense.
_UNGROUPED = frozenset({"typing"})
_PLURAL = {"class": "classes", "function": "functions", "constant": "constants"}


def modules() -> str:
    facades = dict(SHIMS)
    facades[RANDOM_NAME] = make_random(0)
    rows = []
    for name in sorted(facades):
        members = facade_members(facades[name])
        if name in _UNGROUPED:
            rows.append((f"`{name}`", _code(sorted(members))))
            continue
        by_kind: dict[str, list[str]] = {}
        for member in sorted(members):
            by_kind.setdefault(_kind(getattr(facades[name], member)), []).append(member)
        text = "; ".join(
            f"{_PLURAL[kind]}: {_code(names)}" for kind, names in sorted(by_kind.items()) if names
        )
        rows.append((f"`{name}`", text))
    return _table(("Module", "Members"), rows)


# --- the escape corpus ---------------------------------------------------------------------


_CORPUS_NUMBER = re.compile(r"\bcorpus (\d{3})\b")


def _corpus_number(ref: str, source: str) -> str:
    """The catalogue number of a payload (``ref``, or the one its source names), or "own"."""
    if ref:
        return ref
    match = _CORPUS_NUMBER.search(source)
    return match.group(1) if match else "own"


def corpus() -> str:
    parts = []
    for cls in CLASSES:
        payloads = payloads_for(cls)
        rows = [
            (
                _corpus_number(p.ref, p.source),
                f"`{p.name}`",
                p.technique,
                p.expect.replace("_", " "),
            )
            for p in payloads
        ]
        parts.append(
            f"#### `{cls}` ({len(payloads)} payloads)\n\n"
            + _table(("Number", "Payload", "What it tries", "Expected"), rows)
        )
    return "\n\n".join(parts)
