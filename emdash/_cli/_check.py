"""``emdash check PATH``: would ``emdash plugins add PATH`` accept this plugin, and what
will only fail once it runs?

Errors (exit 1), in order, every one found rather than the first:

1. the descriptor (``emdash-plugin.toml``) is valid;
2. the code can be located and its source is at most 1 MB (the sandbox's per-plugin cap);
3. every file compiles under the sandbox's restricted compiler (``file:line: message``);
4. the plugin *loads* exactly as ``plugins add`` loads it: the same function,
   :meth:`Runtime.load_host`, on a throwaway in-memory site (allowed imports, the
   module-level ``plugin`` binding, hook names, route schemas, each hook's capability).
   Loading runs the plugin's module-level code, confined in a sandbox worker as it would be
   at ``add`` (``--trusted``: in-process, as ``add --trusted`` would); no hook runs.

Warnings (exit 0 when there are only warnings): what compiles and loads but fails or
surprises at run time, found statically (``str.format``, ``open``, ``print``, a
``ctx.content.create(...)`` whose capability the descriptor does not declare ...).
"""

from __future__ import annotations

import ast
import re
import tempfile
from pathlib import Path
from typing import Any

# Builtins the sandbox refuses when called, with the advice it gives (the sandbox's own
# table: a warning here says the same thing the run-time error will).
from sandbox._builtins import _FORBIDDEN as _REFUSED_BUILTINS

from .._bridge._hosts import unreachable_allowed_hosts
from .._hosting._bundle import extract_bundle, is_bundle, open_bundle
from .._hosting._loader import locate, sandbox_files
from .._model._descriptor import DescriptorError, PluginDescriptor
from .._shared._errors import EmDashError, SandboxNotAvailableError

__all__ = ["MAX_SOURCE_BYTES", "check_plugin"]

# The sandbox's own cap (sandbox.compile_bundle), reported here up front.
MAX_SOURCE_BYTES = 1_000_000


_FILE_LINE = re.compile(r"^(?:File \"?)?([\w./-]+\.py)\"?(?:, line |:)(\d+)")


def check_plugin(path: Path, *, trusted: bool = False) -> dict[str, Any]:
    """Return ``{"ok", "id", "version", "files", "bytes", "errors": [str], "warnings": [str]}``.

    ``ok`` is true when there is no error (warnings do not count). ``path`` may be a
    plugin directory, its descriptor, or a bundle (checked as ``plugins add`` unpacks it:
    the report then has its ``sha256``).
    """
    if is_bundle(path):
        return _check_bundle(path, trusted=trusted)
    report: dict[str, Any] = {
        "ok": False,
        "path": str(path),
        "id": None,
        "version": None,
        "files": 0,
        "bytes": 0,
        "errors": [],
        "warnings": [],
    }
    errors: list[str] = report["errors"]
    where = _descriptor_file(path).name
    if not path.is_dir() and path.suffix != ".toml":
        errors.append(
            f"{path.name}: not a plugin: give the plugin's directory (the one holding "
            "emdash-plugin.toml), its emdash-plugin.toml, or a bundle (.tar.gz, .tgz, .tar, .zip)"
        )
        return report
    try:
        descriptor = PluginDescriptor.from_file(path)
    except DescriptorError as exc:
        errors.extend(f"{where}: {problem}" for problem in exc.problems)  # one per line
        return report
    except EmDashError as exc:
        errors.append(f"{where}: {exc.message}")
        return report
    report["id"] = descriptor.id
    report["version"] = descriptor.version
    # allowedHosts entries no request can ever reach (valid descriptor, useless entry).
    host_warnings = [
        f"{where}: {line}" for line in unreachable_allowed_hosts(descriptor.allowed_hosts)
    ]
    if descriptor.allowed_hosts and not descriptor.has("network:request"):
        # The allowlist only narrows network:request; without it every fetch is refused.
        host_warnings.append(
            f"{where}: allowed_hosts is set but capabilities has no network:request, so "
            "ctx.http.fetch is refused for every host; add network:request to capabilities"
        )
    try:
        code = locate(descriptor)
        files, _entry = sandbox_files(code, descriptor.id)
    except EmDashError as exc:
        errors.append(f"{where}: {exc.message}")
        return report
    size = sum(len(text.encode("utf-8")) for text in files.values())
    report["files"] = len(files)
    report["bytes"] = size
    errors.extend(_compile_errors(files))
    if errors:
        return report  # code that does not compile cannot be loaded
    load_errors, load_warnings = _load_problems(path, files, code.entry, trusted)
    errors.extend(load_errors)
    report["warnings"] = [
        *host_warnings,
        *load_warnings,
        *sorted(static_warnings(files) + capability_warnings(files, descriptor), key=_sort_key),
    ]
    report["ok"] = not errors
    return report


# RestrictedPython's own refusals say what is refused, not what to write instead; the
# sandbox's messages (special methods, global, ...) already do. Matched on the message's
# start, the hint is the rewrite from docs/restricted-python.md.
_REWRITES: tuple[tuple[str, str], ...] = (
    (
        "Augmented assignment of attributes",
        "write a plain assignment: self.n = self.n + 1",
    ),
    (
        "Augmented assignment of object items",
        'write a plain assignment: counts["a"] = counts["a"] + 1',
    ),
    (
        "AsyncFunctionDef statements",
        "handlers are plain functions (every ctx call returns its answer): use def",
    ),
    ("Await statements", "ctx calls return their answer: call them without await"),
    ("AsyncFor statements", "use a plain for loop"),
    ("AsyncWith statements", "use try/finally"),
    ("Match statements", "use if/elif"),
    ("TryStar statements", "use try/except"),
    ("Eval calls", "there is no eval, exec or compile in sandboxed plugins"),
    ("Exec calls", "there is no eval, exec or compile in sandboxed plugins"),
    ('"*" imports', "import the names you use: from module import a, b"),
)


def _with_rewrite(line: str) -> str:
    """``line`` with what to write instead, when it is a bare RestrictedPython refusal."""
    message = line.split(": ", 1)[1] if re.match(r"^[^:\s]+\.py:\d+: ", line) else line
    for start, hint in _REWRITES:
        if message.startswith(start):
            return f"{line.rstrip('.')}; {hint}"
    if re.match(r'^"[^"]*" is an invalid variable name because it starts with "_"', message):
        return f"{line}; rename it without the leading underscore"
    return line


def _check_bundle(path: Path, *, trusted: bool) -> dict[str, Any]:
    """Check a bundle the way ``plugins add`` installs it: read and vetted by the same
    code (size, members, no links or paths outside), unpacked into a throwaway
    directory, then checked as a directory."""
    try:
        bundle = open_bundle(path)
        with tempfile.TemporaryDirectory(prefix="emdash-check-") as tmp:
            unpacked, _descriptor = extract_bundle(bundle, Path(tmp))
            report = check_plugin(unpacked, trusted=trusted)
    except EmDashError as exc:
        return {
            "ok": False,
            "path": str(path),
            "id": None,
            "version": None,
            "files": 0,
            "bytes": 0,
            "errors": [f"{path.name}: {exc.message}"],
            "warnings": [],
        }
    report["path"] = str(path)
    report["sha256"] = bundle.sha256
    return report


def _compile_errors(files: dict[str, str]) -> list[str]:
    from sandbox import CompileError, compile_bundle

    try:
        compile_bundle(files, max_bytes=MAX_SOURCE_BYTES)
    except CompileError as exc:
        return [_with_rewrite(line) for line in exc.errors] or [str(exc)]
    return []


def _load_problems(
    path: Path, files: dict[str, str], entry: str, trusted: bool
) -> tuple[list[str], list[str]]:
    """Load the plugin through ``Runtime.load_host`` (the ``add`` path) on a throwaway site."""
    from .._runtime._runtime import Runtime

    errors: list[str] = []
    warnings: list[str] = []
    descriptor = PluginDescriptor.from_file(path)
    with Runtime(":memory:", media_dir=None) as rt:
        try:
            host, _sandboxed = rt.load_host(descriptor, trusted=trusted, problems=errors)
        except SandboxNotAvailableError as exc:
            # Not the plugin's problem: say what was not checked rather than fail it.
            warnings.append(
                f"not loaded, so imports, the plugin binding and hooks were not checked: "
                f"{' '.join(exc.message.split())}"
            )
            return errors, warnings
        except EmDashError as exc:
            errors.append(_with_location(" ".join(exc.message.split()), files, entry))
            return errors, warnings
        try:
            hooks = host.definition_meta.get("hooks", {})
            if "page:fragments" in hooks and not trusted:
                warnings.append(
                    _at(files, '"page:fragments"')
                    + "page:fragments runs for trusted plugins only (its HTML is not "
                    "escaped); sandboxed, the hook is skipped. Add the plugin with --trusted "
                    "or remove the hook"
                )
        finally:
            host.close()
    # Hook problems name the hook: point at the line that declares it.
    errors[:] = [_at(files, _quoted_hook(line)) + line for line in errors]
    return errors, warnings


def _quoted_hook(line: str) -> str:
    match = re.match(r"hook (\S+) ", line)
    return f'"{match.group(1)}"' if match else "\0"


def _at(files: dict[str, str], needle: str) -> str:
    """``file:line: `` of the first line holding ``needle`` (either quote style), or ``""``."""
    alternatives = {needle, needle.replace('"', "'")}
    for rel, text in sorted(files.items()):
        for n, line in enumerate(text.splitlines(), start=1):
            if any(a in line for a in alternatives):
                return f"{rel}:{n}: "
    return ""


def _with_location(message: str, files: dict[str, str], entry: str) -> str:
    """Put a load error's ``file:line`` first: the line its text points at, when it does."""
    for rel in sorted(files, key=len, reverse=True):
        match = re.search(re.escape(rel) + r"\"?(?:, line |:)(\d+)", message)
        if match:
            return f"{rel}:{match.group(1)}: {message}"
    imported = re.search(r'Import of "([\w.]+)" is not allowed', message)
    if imported:
        return _import_line(files, imported.group(1)) + message
    hook = re.search(r'unknown hook "([^"]{1,200})"', message)
    if hook:
        return _at(files, f'"{hook.group(1)}"') + message
    if 'declares its "admin" route public' in message:
        return _at(files, '"admin"') + message
    if 'has no "admin" route' in message and entry in files:
        return f"{entry}: {message}"
    if "does not bind a module-level `plugin`" in message and entry in files:
        return f"{entry}:{max(1, len(files[entry].splitlines()))}: {message}"
    return message


def _import_line(files: dict[str, str], module: str) -> str:
    """``file:line: `` of the first statement importing ``module`` (or a submodule of it)."""
    for rel, text in sorted(files.items()):
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            if any(n == module or n.startswith(module + ".") for n in names):
                return f"{rel}:{node.lineno}: "
    return ""


# -- static warnings --------------------------------------------------------------------


def static_warnings(files: dict[str, str]) -> list[str]:
    """What only fails (or surprises) at run time, as ``file:line: message`` lines."""
    out: list[str] = []
    for rel, text in sorted(files.items()):
        try:
            tree = ast.parse(text, filename=rel)
        except SyntaxError:
            continue  # the restricted compiler has reported it
        assigned = {
            node.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)
        } | {
            node.name
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            message = _call_warning(node.func, assigned)
            if message is not None:
                out.append(f"{rel}:{node.lineno}: {message}")
    return sorted(out, key=_sort_key)


def _ctx_capabilities() -> dict[str, str]:
    """``"ctx.content.create"`` -> the capability its bridge method needs (only those that
    need one), from the bridge's method table and the ctx classes, as the reference shows."""
    from .._bridge._dispatch import METHODS
    from .._docgen._tables import _ctx_calls

    return {
        call: needed
        for method, calls in _ctx_calls().items()
        if (needed := METHODS[method][0]) is not None
        for call in calls
    }


def capability_warnings(files: dict[str, str], descriptor: PluginDescriptor) -> list[str]:
    """``ctx.X.y(...)`` calls whose capability the descriptor does not declare: they load
    fine and raise ``CapabilityError`` each time they run. Found by name (a handler's
    ``ctx`` parameter called something else is not followed)."""
    needs = _ctx_capabilities()
    out: list[str] = []
    for rel, text in sorted(files.items()):
        try:
            tree = ast.parse(text, filename=rel)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            call = _dotted(node.func)
            needed = needs.get(call or "")
            if needed is not None and not descriptor.has(needed):
                out.append(
                    f'{rel}:{node.lineno}: {call}() needs capability "{needed}", which '
                    f"{descriptor.id} does not declare: it raises CapabilityError when it "
                    "runs; add it to capabilities in emdash-plugin.toml"
                )
    return out


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for an attribute chain on a plain name, else ``None``."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _call_warning(func: ast.expr, assigned: set[str]) -> str | None:
    if isinstance(func, ast.Attribute) and func.attr in ("format", "format_map"):
        return (
            f".{func.attr}() is refused at run time (it can reach attributes the sandbox "
            'hides); use an f-string: f"{x}"'
        )
    if not isinstance(func, ast.Name) or func.id in assigned:
        return None
    if func.id == "print":
        return (
            'print() output becomes the plugin\'s log lines at info level ("print: ..."), '
            "shown by emdash run-hook/route/serve; prefer ctx.log.info(...)"
        )
    advice = _REFUSED_BUILTINS.get(func.id)
    if advice is not None:
        return f"{func.id}() is refused at run time in sandboxed plugins: {advice}"
    return None


def _sort_key(line: str) -> tuple[str, int]:
    match = _FILE_LINE.match(line)
    return (match.group(1), int(match.group(2))) if match else (line, 0)


def _descriptor_file(path: Path) -> Path:
    return path / "emdash-plugin.toml" if path.is_dir() else path
