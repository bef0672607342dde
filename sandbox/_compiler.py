"""The restricted compiler: plugin source text in, code objects out, or every problem at once.

``compile_bundle`` runs RestrictedPython's ``compile_restricted_exec`` with ``SandboxPolicy``,
RP's ``RestrictingNodeTransformer`` plus what RP 9.0 lets through but our escape corpus
(docs/escape-corpus.md) says must be refused before any code runs:

* ``global`` statements (RP allows them): module state stays in objects the guards see.
* ``_``-names where RP does not look: keyword-argument names (``f(_root=1)`` reaches private
  parameters of host functions, 044), class keywords, ``from _private import x`` and
  ``import a._b``.
* Identifiers spelled with compatibility characters. The parser folds identifiers to NFKC,
  so ``𝑒𝑣𝑎𝑙`` *is* ``eval`` and ``＿＿class＿＿`` *is* ``__class__`` (059); RP sees the folded
  names and mostly refuses them, but a disguise has no honest use, so it is refused outright.
* Encoding declarations other than UTF-8. Source is ``str`` (bytes are refused), so a PEP
  263 cookie is never honoured; a ``utf-7`` cookie (063) is still refused, because a tool
  that reads the same file as bytes would decode different code than we checked.
* Deep nesting, checked without recursion *before* RP's recursive transformer meets it: RP
  raises ``RecursionError`` at a few hundred levels (064). Any exception from parsing or
  compiling becomes a clean ``CompileError`` anyway.

RP itself refuses (and we keep): ``_``-names and attributes, ``exec``/``eval`` calls, every
async construct, ``match``, ``try/except*`` (CVE-2025-22153), ``nonlocal``, star imports,
``metaclass=``, positional-only parameters named like hooks (CVE-2026-55830), and every AST
node it has no ``visit_`` method for (new syntax is refused until reviewed).

Refused on top of RP because of CPython memory-safety bugs (see ``_guards.PLUGIN_DUNDERS``
and ``sandbox/_interpreters.py``): special methods other than ``__init__`` and
``__contains__``, in particular the rich comparisons RP allows.

Rewritten on top of RP, so that the guards see what the interpreter would do in C:

* ``x[a:b:c] = v`` calls ``_slice_write_(x)`` instead of ``_write_(x)`` (the right-hand side
  is consumed before the list sees it, gh-120384), and ``x[k] = v`` with a computed ``k``
  passes ``k`` through ``_store_key_`` (a slice *object* with a step is refused there).
* Every f-string field ``{v!r:spec}`` becomes ``{_format_value_(v, conversion, spec)}`` and
  every ``a % b`` becomes ``_mod_(a, b)``: text made from objects loses its heap addresses
  (``<function f at 0x7f...>``).

Allowed on top of RP: annotated assignment (``x: int = 1``, ``self.y: str = ""``). RP
refuses ``AnnAssign`` only because it has no visitor for it. Its parts are ordinary
expressions and targets that the normal rules rewrite (the target through ``_write_``, the
annotation through ``_getattr_``); the only side effect is the interpreter storing the
annotation in the module's or class's ``__annotations__`` dict, which plugin code cannot
name. ``from __future__ import annotations`` is allowed too (and nothing else from it).
"""

from __future__ import annotations

import ast
import io
import keyword
import re
import tokenize
import unicodedata
import warnings
from collections.abc import Iterable, Mapping
from types import CodeType

from RestrictedPython.compile import compile_restricted_exec
from RestrictedPython.transformer import (
    ALLOWED_FUNC_NAMES,
    RestrictingNodeTransformer,
    copy_locations,
)

from stdlib_shims import SHIM_NAMES

from ._errors import CompileError
from ._guards import PLUGIN_DUNDERS

#: Most files one bundle may contain.
MAX_FILES = 1000
#: Deepest AST nesting accepted (RP's transformer recurses ~4 Python frames per level).
MAX_AST_DEPTH = 100

_MODULE_PART = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
# PEP 263: "coding[:=]" in a comment on line 1 or 2.
_CODING_COOKIE = re.compile(r"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)", re.ASCII)
_UTF8_NAMES = frozenset({"utf-8", "utf8", "utf_8"})
_RP_ERROR = re.compile(r"Line (\d+|None): (.*)", re.DOTALL)

VisitResult = ast.AST | Iterable[ast.AST] | None

# Special methods RP would let a plugin define but we do not (the rich comparisons).
_REFUSED_SPECIAL_METHODS = ALLOWED_FUNC_NAMES - PLUGIN_DUNDERS


def _hook_call(name: str, args: list[ast.expr], like: ast.expr) -> ast.Call:
    call = ast.Call(func=ast.Name(name, ast.Load()), args=args, keywords=[])
    copy_locations(call, like)
    return call


def _is_private(name: str) -> bool:
    return name.startswith("_") or unicodedata.normalize("NFKC", name).startswith("_")


class SandboxPolicy(RestrictingNodeTransformer):
    """RestrictedPython's policy plus the checks listed in the module docstring."""

    def visit_AnnAssign(self, node: ast.AnnAssign) -> VisitResult:
        # Target, annotation and value are rewritten by the ordinary visitors.
        return self.node_contents_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> VisitResult:
        if node.name in _REFUSED_SPECIAL_METHODS:
            self.error(
                node,
                f'"{node.name}" cannot be defined in sandboxed plugins: comparison methods run '
                "inside list and dict operations, where they can corrupt memory; use key= "
                "functions and explicit methods instead.",
            )
        return super().visit_FunctionDef(node)

    def visit_Subscript(self, node: ast.Subscript) -> VisitResult:
        store = isinstance(node.ctx, ast.Store)
        result = super().visit_Subscript(node)
        if store and isinstance(result, ast.Subscript):
            guard = result.value
            if isinstance(result.slice, ast.Slice):
                # RP made the target _write_(x); the slice variant consumes the value first.
                assert isinstance(guard, ast.Call) and isinstance(guard.func, ast.Name)
                guard.func.id = "_slice_write_"
            elif not isinstance(result.slice, ast.Constant):
                result.slice = _hook_call("_store_key_", [result.slice], result.slice)
        return result

    def visit_FormattedValue(self, node: ast.FormattedValue) -> VisitResult:
        visited = self.node_contents_visit(node)
        assert isinstance(visited, ast.FormattedValue)
        args: list[ast.expr] = [visited.value, ast.Constant(visited.conversion)]
        if visited.format_spec is not None:
            args.append(visited.format_spec)
        field = ast.FormattedValue(
            value=_hook_call("_format_value_", args, visited.value), conversion=-1, format_spec=None
        )
        copy_locations(field, node)
        return field

    def visit_BinOp(self, node: ast.BinOp) -> VisitResult:
        visited = super().visit_BinOp(node)
        if (
            isinstance(visited, ast.BinOp)
            and isinstance(visited.op, ast.Mod)
            # "%d" % 5, i % 100: a literal operand means either arithmetic or formatting of
            # a literal, neither of which shows an address; those stay one instruction.
            and not isinstance(visited.right, ast.Constant)
            and not (
                isinstance(visited.left, ast.Constant)
                and not isinstance(visited.left.value, (str, bytes))
            )
        ):
            return _hook_call("_mod_", [visited.left, visited.right], visited)
        return visited

    def visit_Global(self, node: ast.Global) -> VisitResult:
        self.error(
            node,
            "global statements are not allowed in sandboxed plugins; "
            "keep shared state in a module-level dict or object instead.",
        )
        return node

    def visit_keyword(self, node: ast.keyword) -> VisitResult:
        if node.arg is not None and _is_private(node.arg):
            self.error(
                node,
                f'Keyword argument "{node.arg}" is not allowed: names starting with "_" are private.',
            )
        return self.node_contents_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> VisitResult:
        # RP refuses metaclass=; any other class keyword would reach __init_subclass__.
        for kw in node.keywords:
            if kw.arg != "metaclass":
                self.error(node, "Keyword arguments in class definitions are not allowed.")
        return super().visit_ClassDef(node)

    def visit_Import(self, node: ast.Import) -> VisitResult:
        for alias in node.names:
            # RP checks only the start of "a.b._c"; "import lib._private" binds "lib" fine.
            if any(part.startswith("_") for part in alias.name.split(".")[1:]):
                self.error(
                    node,
                    f'Importing "{alias.name}" is not allowed: module names starting with "_" are private.',
                )
        return super().visit_Import(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> VisitResult:
        module = node.module or ""
        if module == "__future__":
            if node.level == 0 and all(
                a.name == "annotations" and a.asname is None for a in node.names
            ):
                return node
            self.error(
                node, 'Only "from __future__ import annotations" is supported in sandboxed plugins.'
            )
            return node
        if any(part.startswith("_") for part in module.split(".")):
            self.error(
                node,
                f'Importing from "{module}" is not allowed: module names starting with "_" are private.',
            )
        return super().visit_ImportFrom(node)


def code_filename(path: str) -> str:
    """The ``co_filename`` of bundle file ``path``: ``"<plugin:lib/util.py>"``.

    Angle brackets mark it as no real file: ``linecache`` (tracebacks) and the interpreter
    (text of syntax errors) would otherwise look for ``lib/util.py`` in the current
    directory and along ``sys.path``, i.e. read host files named like plugin files.
    """
    return f"<plugin:{path}>"


def is_package_code(code: CodeType) -> bool:
    """True if ``code`` was compiled from a package's ``__init__.py``."""
    return code.co_filename.endswith("/__init__.py>")


def module_name_for_path(path: object) -> str:
    """The module name of bundle file ``path`` (``"lib/util.py"`` -> ``"lib.util"``).

    Raises ``ValueError`` saying what is wrong with the path.
    """
    if type(path) is not str:
        raise ValueError(f"file names must be str, not {type(path).__name__}")
    if not path:
        raise ValueError("empty file name")
    if path.startswith("/") or "\\" in path or "\x00" in path:
        raise ValueError("file names must be relative POSIX paths")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError('file names must not contain "", "." or ".." segments')
    if not parts[-1].endswith(".py"):
        raise ValueError("only .py files can be part of a sandboxed plugin")
    stem = parts[-1][: -len(".py")]
    if stem == "__init__":
        if len(parts) == 1:
            raise ValueError("the plugin root is not a package; remove the top-level __init__.py")
        module_parts = parts[:-1]
    else:
        module_parts = [*parts[:-1], stem]
    for part in module_parts:
        if not _MODULE_PART.match(part) or keyword.iskeyword(part):
            raise ValueError(
                f'"{part}" is not a valid module name: use ASCII letters, digits and "_", '
                "starting with a letter"
            )
    return ".".join(module_parts)


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_cookie(path: str, source: str, errors: list[str]) -> None:
    for lineno, line in enumerate(re.split(r"\r\n|\r|\n", source, maxsplit=2)[:2], start=1):
        match = _CODING_COOKIE.match(line)
        # The cookie is inert (the source is already str) but misleading: any tool that
        # reads the file as bytes honours it and sees other code than what was checked.
        if match and match.group(1).lower() not in _UTF8_NAMES:
            errors.append(
                f'{path}:{lineno}: the encoding declaration "{_short(match.group(1), 40)}" is not '
                "allowed: plugin source must be UTF-8 (remove the coding line)"
            )


def _check_depth(path: str, tree: ast.AST, errors: list[str]) -> bool:
    """Iterative depth check (no recursion, so it cannot overflow). True if acceptable."""
    stack: list[tuple[ast.AST, int, int]] = [(tree, 1, 1)]
    while stack:
        node, depth, line = stack.pop()
        line = getattr(node, "lineno", None) or line
        if depth > MAX_AST_DEPTH:
            errors.append(
                f"{path}:{line}: code is nested too deeply (more than {MAX_AST_DEPTH} levels); "
                "split it into smaller expressions or functions"
            )
            return False
        stack.extend((child, depth + 1, line) for child in ast.iter_child_nodes(node))
    return True


def _is_identifier_char(char: str) -> bool:
    return char.isalnum() or char == "_" or ("a" + char).isidentifier()


def _code_offsets(source: str) -> list[tuple[int, int]]:
    """Offsets of the spans of ``source`` outside string literals and comments."""
    # tokenize reads lines split at "\n" only (StringIO.readline); offsets must agree.
    line_starts = [0]
    for line in source.split("\n"):
        line_starts.append(line_starts[-1] + len(line) + 1)

    def offset(position: tuple[int, int]) -> int:
        row, col = position
        return line_starts[row - 1] + col if row - 1 < len(line_starts) else len(source)

    spans: list[tuple[int, int]] = []
    start = 0
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in (tokenize.STRING, tokenize.COMMENT):
            spans.append((start, offset(token.start)))
            start = offset(token.end)
    spans.append((start, len(source)))
    return spans


def _check_identifiers(path: str, source: str, errors: list[str]) -> None:
    """Refuse identifiers not spelled the way the parser reads them (NFKC, see above).

    Scans runs of identifier characters in code (outside strings and comments, where
    full-width letters are ordinary text). Python's own tokenize module does not help:
    it does not treat characters such as U+FF3F (full-width low line) as name characters.
    """
    if source.isascii():
        return
    try:
        spans = _code_offsets(source)
    except (tokenize.TokenError, SyntaxError):
        return  # the parser has already reported the problem
    seen: set[str] = set()
    for begin, end in spans:
        index = begin
        while index < end:
            if not _is_identifier_char(source[index]):
                index += 1
                continue
            run_end = index
            while run_end < end and _is_identifier_char(source[run_end]):
                run_end += 1
            word = source[index:run_end]
            folded = unicodedata.normalize("NFKC", word)
            if folded != word and word not in seen:
                seen.add(word)
                line = source.count("\n", 0, index) + 1
                errors.append(
                    f'{path}:{line}: identifier "{word}" uses compatibility characters '
                    f'(Python reads it as "{folded}"); write "{folded}" instead'
                )
            index = run_end


def _compile_one(path: str, source: str, errors: list[str]) -> CodeType | None:
    if source.startswith("\ufeff"):
        source = source[1:]  # a UTF-8 byte order mark some editors write
    if "\x00" in source:
        errors.append(f"{path}: source contains NUL characters")
        return None
    _check_cookie(path, source, errors)
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as exc:
        errors.append(f"{path}:{exc.lineno}: {type(exc).__name__}: {_short(str(exc.msg))}")
        return None
    except RecursionError:
        errors.append(
            f"{path}: code is nested too deeply to be parsed; split it into smaller parts"
        )
        return None
    except Exception as exc:  # MemoryError, ValueError...: refuse, never crash the caller
        errors.append(f"{path}: could not be parsed ({type(exc).__name__})")
        return None
    if not _check_depth(path, tree, errors):
        return None  # RP would only hit its recursion limit on this tree
    # Source-level check: the AST already holds the NFKC-folded names, the disguise is gone.
    _check_identifiers(path, source, errors)
    try:
        with warnings.catch_warnings():
            # SyntaxWarnings ("is" with a literal...) would go to the worker's stderr.
            warnings.simplefilter("ignore")
            result = compile_restricted_exec(
                tree, filename=code_filename(path), policy=SandboxPolicy
            )
    except SyntaxError as exc:
        # Raised by the bytecode compiler after RP's checks ("'return' outside function").
        errors.append(f"{path}:{exc.lineno}: {type(exc).__name__}: {_short(str(exc.msg))}")
        return None
    except RecursionError:
        errors.append(
            f"{path}: code is nested too deeply to be compiled; split it into smaller parts"
        )
        return None
    except Exception as exc:
        errors.append(
            f"{path}: refused by the compiler ({type(exc).__name__}: {_short(str(exc), 80)})"
        )
        return None
    # RP reports "Line N: message"; rewrite to "path:N: message" like every other error.
    for message in result.errors:
        match = _RP_ERROR.match(message)
        if match is None:
            errors.append(f"{path}: {_short(message, 200)}")
        elif match.group(1) == "None":
            errors.append(f"{path}: {_short(match.group(2), 200)}")
        else:
            errors.append(f"{path}:{match.group(1)}: {_short(match.group(2), 200)}")
    return result.code if not result.errors else None


def compile_bundle(files: Mapping[str, str], *, max_bytes: int = 1_000_000) -> dict[str, CodeType]:
    """Compile every file of a plugin bundle with the sandbox policy.

    ``files`` maps relative POSIX paths (``"plugin.py"``, ``"lib/util.py"``,
    ``"lib/__init__.py"``) to source text. Returns module name -> code object, in input
    order. Raises ``CompileError`` listing every problem in every file (``errors`` holds one
    ``"path:line: message"`` string per problem) when anything is refused.
    """
    if not isinstance(files, Mapping):
        raise CompileError(
            "Plugin source must be a mapping of file names to source text", errors=[]
        )
    if type(max_bytes) is not int or max_bytes <= 0:
        raise ValueError("max_bytes must be a positive int")
    if not files:
        raise CompileError("The plugin has no source files", errors=["no .py files were given"])
    if len(files) > MAX_FILES:
        message = f"The plugin has too many files: {len(files)} (the limit is {MAX_FILES})"
        raise CompileError(message, errors=[message])

    # Every problem of every file is collected and reported once: a plugin author fixing
    # errors one submission at a time would otherwise need as many round trips as errors.
    errors: list[str] = []
    names: dict[str, str] = {}  # module name -> path
    total = 0
    for path, source in files.items():
        shown = path if type(path) is str else repr(path)
        try:
            name = module_name_for_path(path)
        except ValueError as exc:
            errors.append(f"{_short(shown, 80)}: invalid file name: {exc}")
            continue
        if type(source) is not str:
            # bytes would be decoded by the parser according to their PEP 263 cookie (063).
            errors.append(f"{path}: source must be text (str), not {type(source).__name__}")
            continue
        try:
            # The limit is on UTF-8 bytes: what the host stores and ships to the worker.
            total += len(source.encode("utf-8"))
        except UnicodeEncodeError:
            errors.append(f"{path}: source is not valid Unicode text (it contains lone surrogates)")
            continue
        if name in names:
            errors.append(
                f'{path}: defines module "{name}" again (already defined by {names[name]})'
            )
            continue
        top = name.partition(".")[0]
        if top in SHIM_NAMES:
            # Imports of these names must reach the vetted shim, never plugin code posing as it.
            errors.append(
                f'{path}: the module name "{top}" is taken by the sandboxed standard library; rename it'
            )
            continue
        names[name] = path
    # "lib.py" next to "lib/util.py": CPython would refuse "import lib.util" (lib is no
    # package); refusing it here keeps the importer's package rules simple and unambiguous.
    for name, path in names.items():
        parent = name.rpartition(".")[0]
        while parent:
            if parent in names and not names[parent].endswith("__init__.py"):
                errors.append(
                    f"{path}: module {names[parent]} is not a package; move it to {parent.replace('.', '/')}/__init__.py"
                )
            parent = parent.rpartition(".")[0]
    # Checked before compiling anything: parsing a huge source is itself the cost to avoid.
    if total > max_bytes:
        message = f"The plugin source is too large: {total} bytes (the limit is {max_bytes} bytes)"
        raise CompileError(message, errors=[message])

    compiled: dict[str, CodeType] = {}
    for name, path in names.items():
        code = _compile_one(path, files[path], errors)
        if code is not None:
            compiled[name] = code
    if errors:
        count = f"{len(errors)} problem" + ("s" if len(errors) != 1 else "")
        message = (
            f"The plugin source was refused ({count}); fix them and load the plugin again:\n"
            + "\n".join(f"  {error}" for error in errors)
        )
        raise CompileError(message, errors=errors)
    return compiled
