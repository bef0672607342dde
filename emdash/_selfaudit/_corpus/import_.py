"""Escape class ``import`` (docs/escape-corpus.md 001-007): reaching real modules through the import system.

Stopped by L1 (names, star imports, syntax) and by the sandbox's ``__import__``: only
shim facades and the plugin's own modules, fromlist checked, no relative imports out of
the bundle.
"""

from __future__ import annotations

from . import P, Payload

PAYLOADS: list[Payload] = [
    P(
        "import_os",
        "import os inside the handler; evidence is the real module object",
        "corpus 001; RP README: providing __import__ hands the boundary to the import policy",
        """
        def handler(event, ctx):
            import os
            return "OK import os: " + repr(os)
        """,
        "runtime_denied",
        "SandboxViolation",
        ref="001",
    ),
    P(
        "star_import",
        "from json import * (star imports can rebind any name, guard names included)",
        "corpus 002; RP 4.0 changelog #102 (star imports forbidden)",
        """
        from json import *

        def handler(event, ctx):
            return "OK star import ran"
        """,
        "compile_error",
        "CompileError",
        ref="002",
    ),
    P(
        "alias_rebinds_getattr",
        "import json as _getattr_ replaces the attribute guard in module scope",
        "corpus 003; RP transformer tests (import aliases)",
        """
        import json as _getattr_

        def handler(event, ctx):
            return "OK guard rebound: " + repr(ctx.kv)
        """,
        "compile_error",
        "CompileError",
        ref="003",
    ),
    P(
        "dunder_import_call",
        "call __import__('os') directly",
        "corpus 004; Ronacher 2016 sandbox escapes",
        """
        def handler(event, ctx):
            return "OK " + repr(__import__("os"))
        """,
        "compile_error",
        "CompileError",
        ref="004",
    ),
    P(
        "fromlist_json_codecs",
        "from json import codecs: the fromlist names a module attribute of the real json",
        "corpus 005; docs/escape-corpus.md, guard pitfalls (json.codecs.open)",
        """
        def handler(event, ctx):
            from json import codecs
            return "OK json.codecs: " + repr(codecs.open)
        """,
        "runtime_denied",
        "SandboxViolation",
        ref="005",
    ),
    P(
        "lazy_import",
        "PEP 810 lazy import statement",
        "corpus 006; RP 8.5 (deny lazy import)",
        """
        lazy import os

        def handler(event, ctx):
            return "OK " + repr(os)
        """,
        "compile_error",
        "CompileError",
        ref="006",
    ),
    P(
        "relative_import_parent",
        "from .. import emdash: a relative import climbing out of the plugin bundle",
        "corpus 007; __name__ as the anchor of relative imports",
        """
        def handler(event, ctx):
            from ... import emdash
            return "OK parent package: " + repr(emdash)
        """,
        "runtime_denied",
        "SandboxViolation",
        ref="007",
    ),
    # -- our own variants ----------------------------------------------------------------
    P(
        "import_os_module_level",
        "import os at module level: the denial must happen at load and fail the load",
        "own variant of 001",
        """
        import os

        def handler(event, ctx):
            return "OK " + repr(os)
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "import_private_host_module",
        "import emdash._bridge._dispatch: a dotted name whose private part RP does not check",
        "own; RP checks alias names only for a leading underscore (our compiler checks every part)",
        """
        def handler(event, ctx):
            import emdash._bridge._dispatch
            return "OK host bridge: " + repr(emdash)
        """,
        "compile_error",
        "CompileError",
    ),
    P(
        "import_submodule_of_shim",
        "import json.decoder: a real submodule behind an allowed shim name",
        "own; shims are facades, never packages",
        """
        def handler(event, ctx):
            import json.decoder
            return "OK json.decoder: " + repr(json.decoder)
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "from_os_import_system",
        "from os import system",
        "own variant of 001 through the fromlist",
        """
        def handler(event, ctx):
            from os import system
            return "OK os.system: " + repr(system)
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "import_importlib",
        "import importlib to import anything by name",
        "own",
        """
        def handler(event, ctx):
            import importlib
            return "OK " + repr(importlib.import_module("os"))
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "import_sandbox_package",
        "import sandbox: the sandbox's own package, with the worker serve loop",
        "own",
        """
        def handler(event, ctx):
            import sandbox
            return "OK sandbox: " + repr(sandbox)
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "import_shims_package",
        "import stdlib_shims.json: the package behind the facades, by its real name",
        "own",
        """
        def handler(event, ctx):
            import stdlib_shims
            return "OK stdlib_shims: " + repr(stdlib_shims)
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "import_builtins_module",
        "import builtins (the real builtins module: open, eval, exec)",
        "own; docs/escape-corpus.md, guard pitfalls (json.codecs.builtins)",
        """
        def handler(event, ctx):
            import builtins
            return "OK builtins.open: " + repr(builtins.open)
        """,
        "compile_error",
        "CompileError",
    ),
    P(
        "import_private_alias_from",
        "from emdash import _bridge",
        "own; underscore names in the fromlist",
        """
        from emdash import _bridge

        def handler(event, ctx):
            return "OK " + repr(_bridge)
        """,
        "compile_error",
        "CompileError",
    ),
    P(
        "import_os_in_hook",
        "import os in a content:afterSave handler run through rt.run_hook (the pipeline path)",
        "own variant of 001 (hooks, not routes)",
        """
        def handler(event, ctx):
            import os
            return "OK import os in a hook: " + repr(os)
        """,
        "runtime_denied",
        "SandboxViolation",
        message=("Plugin {pid} was refused during {op}",),
        hook="content:afterSave",
        capabilities=("content:read",),
    ),
]
