"""compile_bundle: bundle validation, error reporting, and the policy on top of RestrictedPython.

Mirrors RestrictedPython's tests/transformer categories (names, attributes, imports, function
arguments, try, async, global/nonlocal, print, classdef...) plus the syntax-level escapes of
docs/escape-corpus.md (059-066, 040-044, 053).
"""

from __future__ import annotations

import inspect
import sys
import types

import pytest

from sandbox import CompileError, SandboxViolation
from sandbox._compiler import MAX_AST_DEPTH, compile_bundle, module_name_for_path

UNDERSCORE = 'plugin.py:1: "_write_" is an invalid variable name because it starts with "_"'


def errors_of(files: dict[str, object], **kwargs: int) -> list[str]:
    with pytest.raises(CompileError) as info:
        compile_bundle(files, **kwargs)  # type: ignore[arg-type]
    return info.value.errors


def errors_for(source: str) -> list[str]:
    return errors_of({"plugin.py": source})


# -- bundle shape ----------------------------------------------------------------------


def test_compiles_every_file_to_a_code_object_keyed_by_module_name() -> None:
    code = compile_bundle(
        {"plugin.py": "x = 1\n", "lib/__init__.py": "", "lib/util.py": "def f():\n    return 2\n"}
    )
    assert list(code) == ["plugin", "lib", "lib.util"]
    assert all(type(c) is types.CodeType for c in code.values())
    # Angle brackets: linecache and syntax-error reporting never look for such a file.
    assert code["lib.util"].co_filename == "<plugin:lib/util.py>"
    assert code["lib"].co_filename == "<plugin:lib/__init__.py>"


@pytest.mark.parametrize(
    ("path", "module"),
    [
        ("plugin.py", "plugin"),
        ("lib/util.py", "lib.util"),
        ("lib/__init__.py", "lib"),
        ("a/b/c_2.py", "a.b.c_2"),
    ],
)
def test_module_names_derive_from_paths(path: str, module: str) -> None:
    assert module_name_for_path(path) == module


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/etc/plugin.py", "file names must be relative POSIX paths"),
        ("../plugin.py", 'file names must not contain "", "." or ".." segments'),
        ("lib//x.py", 'file names must not contain "", "." or ".." segments'),
        ("lib\\x.py", "file names must be relative POSIX paths"),
        ("plugin.txt", "only .py files can be part of a sandboxed plugin"),
        (
            "_private.py",
            '"_private" is not a valid module name: use ASCII letters, digits and "_", starting with a letter',
        ),
        (
            "class.py",
            '"class" is not a valid module name: use ASCII letters, digits and "_", starting with a letter',
        ),
        (
            "my-mod.py",
            '"my-mod" is not a valid module name: use ASCII letters, digits and "_", starting with a letter',
        ),
        (
            "café.py",
            '"café" is not a valid module name: use ASCII letters, digits and "_", starting with a letter',
        ),
        ("__init__.py", "the plugin root is not a package; remove the top-level __init__.py"),
    ],
)
def test_bad_paths_are_refused(path: str, reason: str) -> None:
    assert errors_of({path: "x = 1\n"}) == [f"{path}: invalid file name: {reason}"]


def test_bytes_source_is_refused_so_coding_cookies_are_never_honoured() -> None:
    # 063: bytes would be decoded per their PEP 263 cookie (utf-7 hides code in comments).
    source = b"# -*- coding: utf-7 -*-\n# +AAo-x = 1\n"
    assert errors_of({"plugin.py": source}) == ["plugin.py: source must be text (str), not bytes"]


def test_utf7_cookie_in_text_source_is_refused() -> None:
    source = "#!/usr/bin/env python\n# -*- coding: utf-7 -*-\nx = '+AGE-'\n"
    assert errors_for(source) == [
        'plugin.py:2: the encoding declaration "utf-7" is not allowed: plugin source must be UTF-8 (remove the coding line)'
    ]


def test_utf8_cookie_and_byte_order_mark_are_accepted() -> None:
    code = compile_bundle({"plugin.py": "\ufeff# -*- coding: utf-8 -*-\nx = 1\n"})
    assert list(code) == ["plugin"]


def test_total_size_limit_is_enforced_before_compiling() -> None:
    with pytest.raises(CompileError) as info:
        compile_bundle({"a.py": "x = 1\n" * 10, "b.py": "y = 2\n" * 10}, max_bytes=100)
    message = "The plugin source is too large: 120 bytes (the limit is 100 bytes)"
    assert str(info.value) == message
    assert info.value.errors == [message]


def test_size_counts_utf8_bytes_not_characters() -> None:
    source = "x = 'é'\n"  # 8 characters, 9 bytes
    assert compile_bundle({"p.py": source}, max_bytes=9)
    assert errors_of({"p.py": source}, max_bytes=8) == [
        "The plugin source is too large: 9 bytes (the limit is 8 bytes)"
    ]


def test_lone_surrogates_and_nul_characters_are_refused() -> None:
    assert errors_of({"a.py": "x = '\ud800'\n", "b.py": "x = 1\x00\n"}) == [
        "a.py: source is not valid Unicode text (it contains lone surrogates)",
        "b.py: source contains NUL characters",
    ]


def test_empty_bundle_is_refused() -> None:
    assert errors_of({}) == ["no .py files were given"]


def test_module_names_of_the_sandboxed_stdlib_are_taken() -> None:
    assert errors_of({"plugin.py": "", "json.py": "", "urllib/x.py": ""}) == [
        'json.py: the module name "json" is taken by the sandboxed standard library; rename it',
        'urllib/x.py: the module name "urllib" is taken by the sandboxed standard library; rename it',
    ]


def test_module_file_next_to_its_package_directory_is_refused() -> None:
    assert errors_of({"lib.py": "", "lib/util.py": ""}) == [
        "lib/util.py: module lib.py is not a package; move it to lib/__init__.py"
    ]


def test_all_errors_of_all_files_are_reported_at_once_with_an_exact_message() -> None:
    files = {
        "plugin.py": "import os\nx = y.__class__\n",
        "lib/util.py": "def f(_write_, /):\n    pass\nglobal g\n",
        "lib/broken.py": "def (:\n",
    }
    with pytest.raises(CompileError) as info:
        compile_bundle(files)
    errors = [
        'plugin.py:2: "__class__" is an invalid attribute name because it starts with "_".',
        'lib/util.py:1: "_write_" is an invalid variable name because it starts with "_"',
        "lib/util.py:3: global statements are not allowed in sandboxed plugins; keep shared state in a module-level dict or object instead.",
        "lib/broken.py:1: SyntaxError: invalid syntax",
    ]
    assert info.value.errors == errors
    assert str(info.value) == (
        "The plugin source was refused (4 problems); fix them and load the plugin again:\n"
        + "\n".join(f"  {e}" for e in errors)
    )
    # A compile error is a violation: hosts that catch SandboxViolation see it too.
    assert isinstance(info.value, SandboxViolation)


def test_syntax_errors_never_echo_the_whole_statement() -> None:
    source = "x = (" + "1, " * 5000 + "\n"
    [error] = errors_for(source)
    assert error.startswith("plugin.py:1: SyntaxError: ")
    assert len(error) < 200


# -- escapes that must fail at compile time ------------------------------------------


def test_1500_deep_expression_is_a_clean_compile_error() -> None:
    # 064: RestrictedPython's recursive transformer raises RecursionError on this.
    assert errors_for("x = " + "+".join(["a"] * 1500) + "\n") == [
        f"plugin.py:1: code is nested too deeply (more than {MAX_AST_DEPTH} levels); split it into smaller expressions or functions"
    ]


def test_deep_parentheses_are_a_clean_compile_error() -> None:
    assert errors_for("x = " + "(" * 1500 + ")" * 1500 + "\n") == [
        "plugin.py:1: SyntaxError: too many nested parentheses"
    ]


def test_moderate_nesting_still_compiles() -> None:
    assert compile_bundle({"p.py": "x = " + "+".join(["a"] * 90) + "\n"})


@pytest.mark.parametrize(
    ("source", "shown", "folded"),
    [
        ("x = 𝑒𝑣𝑎𝑙\n", "𝑒𝑣𝑎𝑙", "eval"),
        ("x = y._＿class＿＿\n", "_＿class＿＿", "__class__"),
        ("ｐｒｉｎｔ = 1\n", "ｐｒｉｎｔ", "print"),
    ],
)
def test_nfkc_confusable_identifiers_are_refused(source: str, shown: str, folded: str) -> None:
    # 059: the parser folds these to the ASCII name, so they would act as it.
    errors = errors_for(source)
    assert errors[0] == (
        f'plugin.py:1: identifier "{shown}" uses compatibility characters '
        f'(Python reads it as "{folded}"); write "{folded}" instead'
    )


def test_non_ascii_identifiers_in_normal_form_and_fullwidth_text_in_strings_are_fine() -> None:
    code = compile_bundle({"p.py": "café = 'Ｈｅｌｌｏ 𝑒𝑣𝑎𝑙'\n# ＿＿class＿＿ in a comment\n"})
    assert list(code) == ["p"]


@pytest.mark.parametrize(
    ("source", "error"),
    [
        (
            "try:\n    pass\nexcept* ValueError:\n    pass\n",
            "plugin.py:1: TryStar statements are not allowed.",
        ),
        ("x = 1\nreturn x\n", "plugin.py:2: SyntaxError: 'return' outside function"),
        (
            "def f(a, a):\n    pass\n",
            "plugin.py:1: SyntaxError: duplicate argument 'a' in function definition",
        ),
        ("match x:\n    case 1:\n        pass\n", "plugin.py:1: Match statements are not allowed."),
        ("async def f():\n    pass\n", "plugin.py:1: AsyncFunctionDef statements are not allowed."),
        ("def f():\n    nonlocal x\n", "plugin.py:2: Nonlocal statements are not allowed."),
        (
            "global x\n",
            "plugin.py:1: global statements are not allowed in sandboxed plugins; keep shared state in a module-level dict or object instead.",
        ),
        ("exec('1')\n", "plugin.py:1: Exec calls are not allowed."),
        ("eval('1')\n", "plugin.py:1: Eval calls are not allowed."),
        ("from json import *\n", 'plugin.py:1: "*" imports are not allowed.'),
        (
            "class A(metaclass=M):\n    pass\n",
            'plugin.py:1: The keyword argument "metaclass" is not allowed.',
        ),
        (
            "x = a.gi_frame\n",
            'plugin.py:1: "gi_frame" is a restricted name, that is forbidden to access in RestrictedPython.',
        ),
        (
            "x = a.f_back\n",
            'plugin.py:1: "f_back" is a restricted name, that is forbidden to access in RestrictedPython.',
        ),
        (
            "x = a.cr_frame\n",
            'plugin.py:1: "cr_frame" is a restricted name, that is forbidden to access in RestrictedPython.',
        ),
        (
            "x = a.__class__\n",
            'plugin.py:1: "__class__" is an invalid attribute name because it starts with "_".',
        ),
        (
            "x = __builtins__\n",
            'plugin.py:1: "__builtins__" is an invalid variable name because it starts with "_"',
        ),
        (
            "x = __import__('os')\n",
            'plugin.py:1: "__import__" is an invalid variable name because it starts with "_"',
        ),
        (
            "if __name__ == 'x':\n    pass\n",
            'plugin.py:1: "__name__" is an invalid variable name because it starts with "_"',
        ),
        ("printed = 1\n", 'plugin.py:1: "printed" is a reserved name.'),
        ("def breakpoint():\n    pass\n", 'plugin.py:1: "breakpoint" is a reserved name.'),
        (
            "f(_root=1)\n",
            'plugin.py:1: Keyword argument "_root" is not allowed: names starting with "_" are private.',
        ),
        (
            "class A(flag=1):\n    pass\n",
            "plugin.py:1: Keyword arguments in class definitions are not allowed.",
        ),
        (
            "import lib._private\n",
            'plugin.py:1: Importing "lib._private" is not allowed: module names starting with "_" are private.',
        ),
        (
            "from _thread import x\n",
            'plugin.py:1: Importing from "_thread" is not allowed: module names starting with "_" are private.',
        ),
        (
            "from __future__ import barry_as_FLUFL\n",
            'plugin.py:1: Only "from __future__ import annotations" is supported in sandboxed plugins.',
        ),
        (
            "x[1] += 2\n",
            "plugin.py:1: Augmented assignment of object items and slices is not allowed.",
        ),
        ("x.y += 2\n", "plugin.py:1: Augmented assignment of attributes is not allowed."),
    ],
)
def test_constructs_refused_at_compile_time(source: str, error: str) -> None:
    assert errors_for(source) == [error]


@pytest.mark.parametrize(
    "source",
    [
        "_write_ = 1",
        "def f(_write_):\n    pass",
        "def f(_write_, /):\n    pass",  # CVE-2026-55830 (040)
        "def f(*, _write_):\n    pass",
        "def f(*_write_):\n    pass",
        "def f(**_write_):\n    pass",
        "g = lambda _write_: 0",
        "g = lambda _write_, /: 0",
        "(_write_ := 1)",
        "for _write_ in []:\n    pass",
        "x = [0 for _write_ in []]",
        "x = {0 for _write_ in []}",
        "x = {0: 0 for _write_ in []}",
        "x = (0 for _write_ in [])",
        "with x as _write_:\n    pass",
        "with x as (a, _write_):\n    pass",
        "import json as _write_",
        "from json import dumps as _write_",
        "from json import _write_",
        "import _write_",
        "del _write_",
        "def _write_():\n    pass",
        "class _write_:\n    pass",
        "_write_ += 1",
        "a, _write_ = 1, 2",
        "[a, *_write_] = [1]",
        "_write_: int = 1",
    ],
)
def test_guard_hook_names_cannot_be_bound_in_any_form(source: str) -> None:
    # 040-043: hooks are resolved by name at run time; binding one disables its guard.
    assert errors_for(source) == [UNDERSCORE]


def test_except_as_binding_of_a_hook_name_is_refused() -> None:
    assert errors_for("try:\n    pass\nexcept Exception as _getattr_:\n    pass\n") == [
        'plugin.py:3: "_getattr_" is an invalid variable name because it starts with "_"'
    ]


@pytest.mark.parametrize(
    "source",
    [
        "x: int = 5\n",
        "x: int\n",
        "class A:\n    y: str = 'a'\n",
        "def f(self):\n    self.z: int = 1\n",
        "from __future__ import annotations\nx: Unknown = 1\n",
        "def f(a: int, *, b: 'str' = '') -> list:\n    return [a, b]\n",
    ],
)
def test_annotated_assignment_is_allowed(source: str) -> None:
    assert list(compile_bundle({"p.py": source})) == ["p"]


def test_annotated_assignment_parts_are_still_checked() -> None:
    assert errors_for("x: a.__class__ = 1\nself._y: int = 2\n") == [
        'plugin.py:1: "__class__" is an invalid attribute name because it starts with "_".',
        'plugin.py:2: "_y" is an invalid attribute name because it starts with "_".',
    ]


def test_ordinary_code_compiles() -> None:
    source = """
from __future__ import annotations
import json
from .lib import helper

def handler(event, ctx):
    items = [x * 2 for x in event["items"] if x]
    a, (b, *rest) = 1, (2, 3, 4)
    total = 0
    for i, v in enumerate(items):
        total += i * v
    try:
        data = json.loads(event.get("raw", "{}"))
    except ValueError as exc:
        data = {"error": str(exc)}
    finally:
        pass
    with something() as (x, y):
        pass
    print("done", total)
    return {"total": total, "data": data, "f": f"{total:>5}", "printed": printed}

class Thing(Exception):
    def __init__(self, v):
        self.v = v
    def __contains__(self, other):
        return self.v == other
"""
    assert list(compile_bundle({"plugin.py": source, "lib.py": "helper = 1\n"})) == [
        "plugin",
        "lib",
    ]


def test_deeply_nested_statements_are_refused_with_the_line_of_the_deepest_node() -> None:
    # Module (1) > If on line 2 (2) > ... > If on line 100 (100) > pass on line 101 (101).
    source = "x = 1\n" + "".join("    " * i + "if a:\n" for i in range(99)) + "    " * 99 + "pass\n"
    assert errors_for(source) == [
        f"plugin.py:101: code is nested too deeply (more than {MAX_AST_DEPTH} levels); split it into smaller expressions or functions"
    ]


def test_recursion_error_inside_restrictedpython_becomes_a_compile_error() -> None:
    # RestrictedPython's transformer recurses a few frames per AST level. Called with little
    # stack left, it raises RecursionError on a tree our depth check accepts; the caller
    # must still get a CompileError, never the raw exception.
    source = "x = " + "+".join(["a"] * 90) + "\n"
    budget = 250  # frames left for ast.parse (C, cheap) and the transformer (~4 per level)

    def descend(frames_left: int) -> list[str]:
        if frames_left <= budget:
            return errors_for(source)
        return descend(frames_left - 1)

    frames_used = len(inspect.stack(0))
    errors = descend(sys.getrecursionlimit() - frames_used)
    assert errors == [
        "plugin.py: code is nested too deeply to be compiled; split it into smaller parts"
    ]
