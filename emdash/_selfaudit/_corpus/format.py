"""Escape class ``format`` (docs/escape-corpus.md 030-039): attribute traversal inside format strings.

``str.format`` resolves ``{0.__class__}`` in C, never calling ``_getattr_``: the guard must
refuse ``format``/``format_map`` on every str (instances, the class, subclasses) and
``string.Formatter``; exceptions must not hand out the objects they carry; and the host must
never run ``.format`` on a plugin-supplied template.
"""

from __future__ import annotations

from . import P, Payload

_SCOPED = {"error_type": "LookupError"}

PAYLOADS: list[Payload] = [
    P(
        "str_format_traversal",
        "'{0.__class__.__mro__}'.format(x) walks attributes in C",
        "corpus 030; CVE-2023-41039 / GHSA-xjw2-6jm9-rf67; Ronacher 2016",
        """
        def handler(event, ctx):
            return "OK " + "{0.__class__.__mro__}".format(ctx)
        """,
        "runtime_denied",
        "SandboxViolation",
        ref="030",
    ),
    P(
        "format_map_traversal",
        "'{c.__init__.__globals__}'.format_map({'c': ctx})",
        "corpus 031; CVE-2023-41039",
        """
        def handler(event, ctx):
            return "OK " + "{c.__init__.__globals__}".format_map({"c": ctx})
        """,
        "runtime_denied",
        "SandboxViolation",
        ref="031",
    ),
    P(
        "unbound_str_format",
        "str.format('{0.__class__}', x): the unbound method on the class",
        "corpus 032; CVE-2023-41039 (the class, not only instances)",
        """
        def handler(event, ctx):
            f = str.format
            return "OK " + f("{0.__class__}", ctx)
        """,
        "runtime_denied",
        "SandboxViolation",
        ref="032",
    ),
    P(
        "str_subclass_format",
        "a str subclass instance's format: isinstance, not type() is str",
        "corpus 033; CVE-2023-41039",
        """
        class S(str):
            pass

        def handler(event, ctx):
            return "OK " + S("{0.__class__}").format(ctx)
        """,
        "runtime_denied",
        "SandboxViolation",
        ref="033",
    ),
    P(
        "string_formatter_get_field",
        "string.Formatter().get_field('0.__class__', [x], {}) returns live objects (the string shim "
        "has no Formatter; the guard refuses Formatter attributes as a second lock)",
        "corpus 034; CVE-2026-76825 / GHSA-hp3v-5vw7-fx9w",
        """
        def handler(event, ctx):
            import string
            obj, key = string.Formatter().get_field("0.__class__", [ctx], {})
            return "OK " + repr(obj)
        """,
        "runtime_denied",
        "PluginError",
        error_type="AttributeError",
        ref="034",
    ),
    P(
        "attributeerror_obj",
        "AttributeError.obj hands back the object the lookup failed on (the real module)",
        "corpus 035; CVE-2024-47532 / GHSA-5rfv-66g4-jr8h",
        """
        import json

        def handler(event, ctx):
            try:
                json.no_such_attribute
            except AttributeError as e:
                target = e.obj
                return "OK " + repr(target.codecs.open)
            raise LookupError("DENIED no AttributeError")
        """,
        "runtime_denied",
        "SandboxViolation",
        ref="035",
    ),
    P(
        "fstring_traversal",
        "f'{ctx.__class__}' (the compiler sees the attribute inside the f-string)",
        "corpus 036; RP transformer tests (fstring)",
        """
        def handler(event, ctx):
            return f"OK {ctx.__class__}"
        """,
        "compile_error",
        "CompileError",
        ref="036",
    ),
    P(
        "host_side_format_url",
        "ctx.url('/{site.__class__}'): the host must not format plugin text",
        "corpus 037; host-side template.format(**values) (CVE-2023-41039 moved into the host)",
        """
        def handler(event, ctx):
            u = ctx.url("/{site.__class__}/{0.__class__}")
            if "<class" in u:
                return "OK host formatted plugin text: " + u
            raise LookupError("DENIED url kept literally: " + u)
        """,
        "runtime_denied",
        "PluginError",
        ref="037",
        **_SCOPED,
    ),
    P(
        "tstring_template",
        "PEP 750 t-string (3.14): a template object carrying live values",
        "corpus 038; RP transformer tests (tstring)",
        """
        def handler(event, ctx):
            t = t"{ctx}"
            return "OK " + repr(t)
        """,
        "compile_error",
        "CompileError",
        ref="038",
    ),
    P(
        "host_side_format_log",
        "ctx.log.info('{0.__init__.__globals__}', data): the host must log the text as data",
        "corpus 039; host logs must never .format plugin text",
        """
        def handler(event, ctx):
            ctx.log.info("AUDIT-FMT {0.__init__.__globals__} {data}", {"data": "{0.__class__}"})
            raise LookupError("DENIED logged; the harness checks the host log text")
        """,
        "runtime_denied",
        "PluginError",
        ref="039",
        **_SCOPED,
    ),
    # -- our own variants ----------------------------------------------------------------
    P(
        "getattr_format_name",
        "getattr('{0.__class__}', 'format') built at run time",
        "own variant of 030",
        """
        def handler(event, ctx):
            f = getattr("{0.__class__}", "for" + "mat")
            return "OK " + f(ctx)
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "format_method_of_host_string",
        "a string that came from the host (ctx.site.name) formatting the ctx",
        "own variant of 030 (host-provided str instances)",
        """
        def handler(event, ctx):
            s = ctx.site.name + "{0.__class__}"
            return "OK " + s.format(ctx)
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "string_formatter_vformat",
        "string.Formatter().vformat with attribute fields",
        "own variant of 034",
        """
        def handler(event, ctx):
            import string
            return "OK " + string.Formatter().vformat("{0.__class__}", [ctx], {})
        """,
        "runtime_denied",
        "PluginError",
        error_type="AttributeError",
    ),
    P(
        "operator_attrgetter",
        "operator.attrgetter('__class__') resolves names in C (upstream PR #330 class)",
        "own; CVE-2026-76825 lesson (stdlib helpers resolving names)",
        """
        def handler(event, ctx):
            import operator
            return "OK " + repr(operator.attrgetter("__class__")(ctx))
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "format_builtin_spec",
        "format(ctx, spec): the format() builtin has no field lookup; object.__format__ refuses a spec",
        "own",
        """
        def handler(event, ctx):
            return "OK " + format(ctx, "{0.__class__}")
        """,
        "runtime_denied",
        "PluginError",
        error_type="TypeError",
    ),
    P(
        "storage_error_message_format",
        "an undeclared collection named '{0.__class__}': the error text must echo it literally",
        "own; host error messages built with .format around plugin text",
        """
        def handler(event, ctx):
            try:
                ctx.storage["{0.__class__}"].get("x")
            except Exception as e:
                text = str(e)
                if "<class" in text:
                    return "OK host formatted plugin text: " + text
                raise LookupError("DENIED literal: " + text[:100])
            return "OK undeclared collection accepted"
        """,
        "runtime_denied",
        "PluginError",
        **_SCOPED,
    ),
    P(
        "attributeerror_obj_on_ctx",
        "AttributeError.obj from a failed ctx lookup, then its private slot by getattr",
        "own variant of 035 (054 style proxy unwrap)",
        """
        def handler(event, ctx):
            try:
                ctx.kv.nothing_here
            except AttributeError as e:
                return "OK " + repr(getattr(e.obj, "_call"))
            raise LookupError("DENIED no AttributeError")
        """,
        "runtime_denied",
        "SandboxViolation",
    ),
    P(
        "str_format_traversal_in_hook",
        "'{0.__class__}'.format(event) in a content:afterSave handler",
        "own variant of 030 (hooks, not routes)",
        """
        def handler(event, ctx):
            return "OK " + "{0.__class__.__mro__}".format(event)
        """,
        "runtime_denied",
        "SandboxViolation",
        hook="content:afterSave",
        capabilities=("content:read",),
    ),
]
