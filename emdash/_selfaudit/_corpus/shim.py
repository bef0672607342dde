"""Escape class ``shim`` (docs/escape-corpus.md 067-074): the stdlib modules a plugin may import.

A shim must be a curated facade, never the real module: through public attributes only,
``json.codecs.open``, ``re.enum.bltns``, ``re.copyreg.dispatch_table`` and ``datetime.sys``
reach files, ``eval`` and pickling. Facades must not be writable (module poisoning), must
not share state (the PRNG), and the stdlib's lazy imports must never need the disk after
seccomp: everything is preloaded in the fork server, and a lookup that does reach the import
system anyway fails cleanly because L5 refuses the file-system calls.
"""

from __future__ import annotations

from . import P, Payload

_ATTR = {"error_type": "AttributeError"}

PAYLOADS: list[Payload] = [
    P(
        "json_codecs_open",
        "json.codecs.open('/etc/passwd'): the real json module imports codecs",
        "corpus 067; docs/escape-corpus.md, guard pitfalls (shims must be facades)",
        """
        import json

        def handler(event, ctx):
            return "OK " + json.codecs.open("/etc/passwd").read()[:60]
        """,
        "runtime_denied",
        "PluginError",
        ref="067",
        **_ATTR,
    ),
    P(
        "re_enum_builtins_eval",
        "re.enum.bltns.eval with a real builtins dict -> os.system",
        "corpus 068",
        """
        import re

        def handler(event, ctx):
            b = re.enum.bltns
            return "OK " + repr(b.eval("1+1", {"__builtins__": b}))
        """,
        "runtime_denied",
        "PluginError",
        ref="068",
        **_ATTR,
    ),
    P(
        "datetime_sys_modules",
        "datetime.sys.modules['os'] (3.11's datetime imports sys at module level)",
        "corpus 069",
        """
        import datetime

        def handler(event, ctx):
            return "OK " + repr(datetime.sys.modules["os"])
        """,
        "runtime_denied",
        "PluginError",
        ref="069",
        **_ATTR,
    ),
    P(
        "poison_shared_json_dumps",
        "json.dumps = fake: poison a module shared with the worker's own code",
        "corpus 070; dimagi assessment (shared module poisoning via a no-op _write_)",
        """
        import json

        def handler(event, ctx):
            json.dumps = lambda *a, **k: '"poisoned"'
            return "OK poisoned: " + json.dumps({"a": 1})
        """,
        "runtime_denied",
        "SandboxViolation",
        ref="070",
    ),
    P(
        "random_global_state",
        "random.getstate(): the process-global PRNG state inherited from the fork server",
        "corpus 071; docs/escape-corpus.md, guard pitfalls (utility_builtins random)",
        """
        import random

        def handler(event, ctx):
            return "OK PRNG state: " + repr(random.getstate())[:80]
        """,
        "runtime_denied",
        "PluginError",
        ref="071",
        **_ATTR,
    ),
    P(
        "logging_handlers_stream",
        "ctx.log.parent.handlers[0].stream: the host's log stream, writable",
        "corpus 072",
        """
        def handler(event, ctx):
            s = ctx.log.parent.handlers[0].stream
            s.write("AUDIT-STREAM written to the host log stream")
            return "OK wrote to " + repr(s)
        """,
        "runtime_denied",
        "PluginError",
        ref="072",
        **_ATTR,
    ),
    P(
        "lazy_c_imports_without_disk",
        "datetime.strptime (imports _strptime from C) and str.encode('idna') (encodings.idna, "
        "stringprep, unicodedata): after seccomp these work only if preloaded, never from disk",
        "corpus 073; docs/escape-corpus.md, guard pitfalls (lazy stdlib work touches the filesystem)",
        """
        import datetime

        def handler(event, ctx):
            d = datetime.datetime.strptime("2024-02-03", "%Y-%m-%d")
            host = "b\u00fccher.example".encode("idna")
            if d.year == 2024 and host == b"xn--bcher-kva.example":
                raise LookupError("DENIED nothing was read from disk: everything was preloaded")
            return "OK unexpected results " + repr(d) + repr(host)
        """,
        "os_denied",
        "PluginError",
        error_type="LookupError",
        ref="073",
    ),
    P(
        "codec_lookup_probes_disk",
        "'x'.encode('audit_no_such_codec'): the codec search runs the real import system, "
        "which stats and lists the stdlib directory; seccomp/Landlock refuse, lookup fails cleanly",
        "corpus 074; codec lookups import encodings.* from disk",
        """
        def handler(event, ctx):
            data = "x".encode("audit_no_such_codec")
            return "OK " + repr(data)
        """,
        "os_denied",
        "PluginError",
        error_type="LookupError",
        message=("unknown encoding: audit_no_such_codec",),
        ref="074",
    ),
    # -- our own variants ----------------------------------------------------------------
    P(
        "re_copyreg_dispatch_table",
        "re.copyreg.dispatch_table: register a pickle reducer for a plugin class",
        "own; corpus 089's gadget through the re shim",
        """
        import re

        def handler(event, ctx):
            t = re.copyreg.dispatch_table
            return "OK " + str(len(t))
        """,
        "runtime_denied",
        "PluginError",
        **_ATTR,
    ),
    P(
        "json_loads_globals_by_getattr",
        "getattr(json.loads, '__globals__'): a real stdlib function's module globals",
        "own",
        """
        import json

        def handler(event, ctx):
            g = getattr(json.loads, "__glo" + "bals__")
            return "OK " + repr(g["codecs"])
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "json_decoder_submodule_attr",
        "json.decoder / json.scanner: real submodules as attributes of the facade",
        "own",
        """
        import json

        def handler(event, ctx):
            return "OK " + repr(json.decoder.scanstring)
        """,
        "runtime_denied",
        "PluginError",
        **_ATTR,
    ),
    P(
        "math_constant_overwrite",
        "math.pi = 3: write to a shim attribute",
        "own variant of 070",
        """
        import math

        def handler(event, ctx):
            math.pi = 3
            return "OK math.pi is now " + str(math.pi)
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "setattr_shim_function",
        "setattr(json, 'loads', fake) through the setattr builtin",
        "own variant of 070",
        """
        import json

        def handler(event, ctx):
            setattr(json, "loads", lambda s: "poisoned")
            return "OK " + repr(json.loads("1"))
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "re_module_internals",
        "re.sre_compile / re.functools / re.enum: implementation modules of the real re",
        "own variant of 068",
        """
        import re

        def handler(event, ctx):
            return "OK " + repr(re.functools.partial)
        """,
        "runtime_denied",
        "PluginError",
        **_ATTR,
    ),
    P(
        "functools_wraps_code_swap",
        "functools.wraps(evil, assigned=('__code__',))(json.dumps): the real update_wrapper would "
        "setattr __code__ on a shared function, past _write_ (its globals hold the real builtins)",
        "own; stdlib helpers that write attributes on objects the plugin chooses",
        """
        import functools
        import json

        def evil(*args, **kwargs):
            return open

        def handler(event, ctx):
            try:
                functools.wraps(evil, assigned=("__code__",))(json.dumps)
            except Exception:
                pass
            got = json.dumps({"a": 1})
            if got != '{"a": 1}':
                return "OK json.dumps now runs plugin code with real builtins: " + repr(got)
            raise LookupError("DENIED json.dumps is unchanged")
        """,
        "runtime_denied",
        "PluginError",
        error_type="LookupError",
    ),
    P(
        "namedtuple_field_injection",
        "collections.namedtuple with field names that smuggle code into its generated source",
        "own; namedtuple builds code from field names with eval",
        """
        import collections

        def handler(event, ctx):
            T = collections.namedtuple("T", "a, b=__import__('os')")
            return "OK namedtuple accepted code in a field name: " + repr(T)
        """,
        "runtime_denied",
        "PluginError",
        error_type="ValueError",
    ),
]
