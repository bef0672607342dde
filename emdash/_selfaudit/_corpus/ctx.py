"""Escape class ``ctx`` (docs/escape-corpus.md 079-087): abusing the capabilities the plugin legitimately holds.

The bridge is the only place capabilities are enforced and data is scoped by the host-known
plugin id: other plugins' KV and storage are unreachable whatever key or collection name is
sent; outbound HTTP refuses loopback/private targets in every spelling, on every redirect
hop, and CRLF in headers; the host log gets plugin text as data; a ctx does not outlive its
invocation; and host objects never leave the worker as results.

The harness runs a canary HTTP server on 127.0.0.1:@@CANARY_PORT@@; a single request reaching
it is a failure whatever the plugin saw.
"""

from __future__ import annotations

from typing import Any

from . import P, Payload

_SCOPED: dict[str, Any] = {"error_type": "LookupError"}
_NET: dict[str, Any] = {"capabilities": ("network:request",), "allowed_hosts": ("*",)}
_BLOCKED = ('Plugin "{pid}": blocked fetch to',)


def _ssrf(name: str, technique: str, source: str, url: str, ref: str = "") -> Payload:
    """An SSRF attempt: fetch ``url`` with allowed_hosts ["*"]; the host must refuse it."""
    return P(
        name,
        technique,
        source,
        f"""
        def handler(event, ctx):
            r = ctx.http.fetch("{url}")
            return "OK fetched an internal address: " + str(r.status) + " " + r.text()[:40]
        """,
        "runtime_denied",
        "HttpAccessError",
        message=_BLOCKED,
        ref=ref,
        **_NET,
    )


PAYLOADS: list[Payload] = [
    P(
        "storage_path_traversal",
        "storage collection names and ids with ../ to reach the victim's rows",
        "corpus 079; codejail TestSymlinks",
        """
        def handler(event, ctx):
            found = []
            for coll in ["../@@VICTIM_ID@@/notes", "events/../../notes"]:
                try:
                    found.append(ctx.storage[coll].get("n1"))
                except Exception:
                    pass
            found.append(ctx.storage["events"].get("../../@@VICTIM_ID@@/notes/n1"))
            found.append(ctx.kv.get("../@@VICTIM_ID@@/secret"))
            for v in found:
                if v is not None:
                    return "OK traversal reached: " + repr(v)
            raise LookupError("DENIED every traversal stayed inside this plugin")
        """,
        "runtime_denied",
        "PluginError",
        ref="079",
        **_SCOPED,
    ),
    P(
        "proxy_attribute_rewrite",
        "rewrite ctx.plugin.id to the victim's id, then read 'its' KV",
        "corpus 080; docs/escape-corpus.md, guard pitfalls (identity _write_ enables proxy rewrite)",
        """
        def handler(event, ctx):
            try:
                ctx.plugin.id = "@@VICTIM_ID@@"
            except Exception:
                pass
            v = ctx.kv.get("secret")
            if v is not None:
                return "OK read the victim's KV after rewriting the id: " + repr(v)
            raise LookupError("DENIED identity is bound host-side")
        """,
        "runtime_denied",
        "PluginError",
        ref="080",
        **_SCOPED,
    ),
    _ssrf(
        "ssrf_loopback_literal",
        "http://127.0.0.1:@@CANARY_PORT@@/ with allowed_hosts ['*']",
        "corpus 081; docs/plugin-reference.md, outbound HTTP",
        "http://127.0.0.1:@@CANARY_PORT@@/ssrf-literal",
        ref="081",
    ),
    _ssrf(
        "ssrf_hex_short_form",
        "http://0x7f.1:@@CANARY_PORT@@/ (inet_aton spelling the URL parser does not canonicalise)",
        "corpus 082; docs/plugin-reference.md, outbound HTTP (decimal/octal/hex/short IPv4)",
        "http://0x7f.1:@@CANARY_PORT@@/ssrf-hex",
        ref="082",
    ),
    P(
        "ssrf_redirect_to_loopback",
        "an allowed server answers 302 Location: http://127.0.0.1:@@CANARY_PORT@@/",
        "corpus 083; docs/plugin-reference.md, outbound HTTP (every hop re-validated)",
        """
        def handler(event, ctx):
            r = ctx.http.fetch("@@REDIRECT_URL@@")
            return "OK followed the redirect: " + str(r.status) + " " + r.text()[:40]
        """,
        "runtime_denied",
        "HttpAccessError",
        message=_BLOCKED,
        ref="083",
        **_NET,
    ),
    P(
        "crlf_header_injection",
        "a header value with CRLF to smuggle a second header / request line",
        "corpus 084; docs/plugin-reference.md, outbound HTTP",
        """
        def handler(event, ctx):
            r = ctx.http.fetch(
                "http://example.com/",
                headers={"X-Audit": "a\\r\\nHost: 127.0.0.1:@@CANARY_PORT@@"},
            )
            return "OK header sent: " + str(r.status)
        """,
        "runtime_denied",
        "BridgeError",
        message=("has a line break or NUL in its value",),
        ref="084",
        **_NET,
    ),
    P(
        "idor_victim_kv_and_storage",
        "read another plugin's KV by its in-process row name and its storage by collection name",
        "corpus 085; docs/plugin-reference.md, KV (plugin:<id>:<key> row names)",
        """
        def handler(event, ctx):
            got = [
                ctx.kv.get("plugin:@@VICTIM_ID@@:secret"),
                ctx.kv.get("@@VICTIM_ID@@:secret"),
                ctx.kv.get("secret"),
            ]
            listed = ctx.kv.list("")
            for v in got:
                if v is not None:
                    return "OK read another plugin's KV: " + repr(v)
            if listed:
                return "OK listed keys that are not ours: " + repr(listed)
            raise LookupError("DENIED own namespace only")
        """,
        "runtime_denied",
        "PluginError",
        ref="085",
        **_SCOPED,
    ),
    P(
        "stash_ctx_for_later",
        "keep the ctx in a module global and use it in a later invocation",
        "corpus 086; docs/escape-corpus.md, guard pitfalls (revoke ctx at the end of the invocation)",
        """
        STASH = []

        def handler(event, ctx):
            STASH.append(ctx)
            return "stashed"

        def followup(event, ctx):
            if not STASH:
                raise LookupError("DENIED no stash in this worker")
            try:
                STASH[0].kv.set("deferred", "OK the stale ctx still works")
            except Exception:
                pass
            if ctx.kv.get("deferred") is not None:
                return str(ctx.kv.get("deferred"))
            raise LookupError("DENIED the stale ctx was revoked")
        """,
        "runtime_denied",
        "PluginError",
        ref="086",
        **_SCOPED,
    ),
    P(
        "return_host_object",
        "return the ctx itself (a host object) as the route's result",
        "corpus 087; codejail json_safe results",
        """
        def handler(event, ctx):
            return ctx
        """,
        "runtime_denied",
        "SandboxViolation",
        message=("not JSON-serialisable",),
        ref="087",
    ),
    # -- our own variants ----------------------------------------------------------------
    _ssrf(
        "ssrf_ipv4_mapped_ipv6",
        "http://[::ffff:127.0.0.1]:@@CANARY_PORT@@/",
        "own; docs/plugin-reference.md, outbound HTTP (IPv4-mapped IPv6)",
        "http://[::ffff:127.0.0.1]:@@CANARY_PORT@@/ssrf-mapped",
    ),
    _ssrf(
        "ssrf_decimal_integer",
        "http://2130706433:@@CANARY_PORT@@/ (127.0.0.1 as one decimal number)",
        "own; docs/plugin-reference.md, outbound HTTP",
        "http://2130706433:@@CANARY_PORT@@/ssrf-decimal",
    ),
    _ssrf(
        "ssrf_octal",
        "http://0177.0.0.1:@@CANARY_PORT@@/",
        "own; docs/plugin-reference.md, outbound HTTP",
        "http://0177.0.0.1:@@CANARY_PORT@@/ssrf-octal",
    ),
    _ssrf(
        "ssrf_localhost_trailing_dot",
        "http://localhost.:@@CANARY_PORT@@/ (trailing dot defeats exact-name checks)",
        "own; docs/plugin-reference.md, outbound HTTP (trailing dots)",
        "http://localhost.:@@CANARY_PORT@@/ssrf-dot",
    ),
    _ssrf(
        "ssrf_ipv6_loopback",
        "http://[::1]:@@CANARY_PORT@@/",
        "own",
        "http://[::1]:@@CANARY_PORT@@/ssrf-v6",
    ),
    _ssrf(
        "ssrf_zero_address",
        "http://0.0.0.0:@@CANARY_PORT@@/ (connects to the local host on Linux)",
        "own",
        "http://0.0.0.0:@@CANARY_PORT@@/ssrf-zero",
    ),
    _ssrf(
        "ssrf_wildcard_dns",
        "http://127.0.0.1.nip.io:@@CANARY_PORT@@/ (wildcard DNS maps the name to loopback)",
        "own; docs/plugin-reference.md, outbound HTTP (wildcard-DNS services)",
        "http://127.0.0.1.nip.io:@@CANARY_PORT@@/ssrf-nip",
    ),
    _ssrf(
        "ssrf_subdomain_localhost",
        "http://audit.localhost:@@CANARY_PORT@@/ (RFC 6761)",
        "own",
        "http://audit.localhost:@@CANARY_PORT@@/ssrf-sublocal",
    ),
    _ssrf(
        "ssrf_file_scheme",
        "file:///etc/passwd through ctx.http.fetch",
        "own; docs/plugin-reference.md, outbound HTTP (schemes)",
        "file:///etc/passwd",
    ),
    _ssrf(
        "ssrf_userinfo_confusion",
        "http://example.com@127.0.0.1:@@CANARY_PORT@@/ (parser confusion over userinfo)",
        "own; URL parser differentials",
        "http://example.com@127.0.0.1:@@CANARY_PORT@@/ssrf-userinfo",
    ),
    P(
        "ssrf_without_capability",
        "ctx.http.fetch from a plugin that did not declare network:request",
        "own; capability check at the bridge",
        """
        def handler(event, ctx):
            r = ctx.http.fetch("http://127.0.0.1:@@CANARY_PORT@@/ssrf-nocap")
            return "OK " + str(r.status)
        """,
        "runtime_denied",
        "CapabilityError",
        message=("Missing capability: network:request",),
    ),
    P(
        "storage_reserved_kv_collection",
        "ctx.storage['__kv'] / the victim's collection name: internal and foreign collections",
        "own; docs/escape-corpus.md, API mapping (collection='__kv')",
        """
        def handler(event, ctx):
            for name in ["__kv", "notes"]:
                try:
                    v = ctx.storage[name].get("secret")
                    return "OK opened collection " + name + ": " + repr(v)
                except Exception:
                    pass
            raise LookupError("DENIED internal and foreign collections are refused")
        """,
        "runtime_denied",
        "PluginError",
        **_SCOPED,
    ),
    P(
        "kv_list_like_wildcards",
        "ctx.kv.list('%') / list('_'): SQL LIKE wildcards in the prefix",
        "own; docs/plugin-reference.md, KV (LIKE without escaping)",
        """
        def handler(event, ctx):
            ctx.kv.set("own-key", 1)
            for prefix in ["%", "_", "%secret", "\\\\"]:
                items = ctx.kv.list(prefix)
                if items:
                    return "OK wildcard prefix " + repr(prefix) + " matched " + repr(items)
            raise LookupError("DENIED prefixes are literal")
        """,
        "runtime_denied",
        "PluginError",
        **_SCOPED,
    ),
    P(
        "log_injection_control_chars",
        "ctx.log.info with CR/LF and ANSI escapes to forge another plugin's log line",
        "own; docs/escape-corpus.md, hygiene (log facade escapes control characters)",
        """
        def handler(event, ctx):
            ctx.log.info("benign\\n[plugin:@@VICTIM_ID@@] AUDIT-FORGED admin password reset\\x1b[2K\\r")
            raise LookupError("DENIED logged; the harness checks the host log text")
        """,
        "runtime_denied",
        "PluginError",
        **_SCOPED,
    ),
    P(
        "content_write_without_capability",
        "ctx.content.create without content:write (confused deputy)",
        "own; capability check at the bridge",
        """
        def handler(event, ctx):
            item = ctx.content.create("posts", {"title": "AUDIT-DEFACED"})
            return "OK created " + repr(item)
        """,
        "runtime_denied",
        "CapabilityError",
        message=("Missing capability: content:write",),
    ),
    P(
        "email_without_capability",
        "ctx.email.send without email:send",
        "own; capability check at the bridge",
        """
        def handler(event, ctx):
            ctx.email.send({"to": "a@example.com", "subject": "AUDIT", "text": "x"})
            return "OK sent"
        """,
        "runtime_denied",
        "CapabilityError",
        message=("Missing capability: email:send",),
    ),
    P(
        "forged_storage_cursor",
        "a hand-made pagination cursor naming the victim's collection",
        "own; cursors are opaque and must be bound to the plugin and collection",
        """
        def handler(event, ctx):
            forged = [
                "eyJwbHVnaW4iOiJ2aWN0aW0iLCJjb2xsZWN0aW9uIjoibm90ZXMiLCJhZnRlciI6IiJ9",
                "eyJwIjoidmljdGltIiwiYyI6Im5vdGVzIn0",
                "W10=",
            ]
            for c in forged:
                try:
                    page = ctx.storage["events"].query(cursor=c)
                except Exception:
                    continue
                if page.get("items"):
                    return "OK forged cursor returned rows: " + repr(page["items"])[:120]
            raise LookupError("DENIED forged cursors returned nothing")
        """,
        "runtime_denied",
        "PluginError",
        **_SCOPED,
    ),
    P(
        "repr_reconnaissance",
        "repr() of ctx and its members: addresses, module paths or internals must not show",
        "own; docs/escape-corpus.md, hygiene (opaque __repr__)",
        """
        def handler(event, ctx):
            text = " ".join([
                repr(ctx), repr(ctx.kv), repr(ctx.kv.get), repr(ctx.log), repr(ctx.storage),
                repr(ctx.storage["events"]), repr(ctx.http), repr(ctx.http.fetch),
                repr(ctx.plugin), repr(ctx.site), repr(ctx.url), str(ctx.content),
            ])
            for leak in ["0x", "/", "emdash.", "sandbox.", "_call", "function"]:
                if leak in text:
                    return "OK repr leaks " + repr(leak) + ": " + text[:300]
            raise LookupError("DENIED reprs are opaque")
        """,
        "runtime_denied",
        "PluginError",
        **_SCOPED,
    ),
    P(
        "return_bound_method",
        "return {'m': ctx.kv.get}: a host callable nested inside a plain result",
        "own variant of 087",
        """
        def handler(event, ctx):
            return {"m": ctx.kv.get, "ok": "OK"}
        """,
        "runtime_denied",
        "SandboxViolation",
        message=("not JSON-serialisable",),
    ),
    P(
        "storage_query_field_injection",
        "a where-clause field name carrying SQL / JSON-path syntax to widen the query",
        "own; storage query language (indexed fields only)",
        """
        def handler(event, ctx):
            page = ctx.storage["events"].query(where={"kind') OR 1=1 OR ('": 1})
            return "OK injected field accepted: " + repr(page)[:120]
        """,
        "runtime_denied",
        "StorageQueryError",
    ),
    P(
        "storage_order_by_injection",
        "an order_by carrying SQL to reach other plugins' rows",
        "own; storage query language",
        """
        def handler(event, ctx):
            page = ctx.storage["events"].query(order_by={"kind; DROP TABLE _plugin_storage --": "asc"})
            return "OK injected order accepted: " + repr(page)[:120]
        """,
        "runtime_denied",
        "StorageQueryError",
    ),
    P(
        "media_upload_path_traversal",
        "ctx.media.upload with a ../ filename: the stored file must stay in the media directory, "
        "and a failed invocation must leave no file behind",
        "own; corpus 079 family (path traversal) through media storage",
        """
        def handler(event, ctx):
            item = ctx.media.upload("../../../../../@@CANARY_TOKEN@@.png", "image/png", b"PNG-bytes")
            raise LookupError("DENIED stored as " + str(item["storageKey"]))
        """,
        "runtime_denied",
        "PluginError",
        capabilities=("media:write",),
        **_SCOPED,
    ),
    P(
        "ssrf_loopback_in_hook",
        "ctx.http.fetch of the loopback canary from a content:afterSave handler",
        "own variant of 081 (hooks, not routes)",
        """
        def handler(event, ctx):
            r = ctx.http.fetch("http://127.0.0.1:@@CANARY_PORT@@/ssrf-hook")
            return "OK " + str(r.status)
        """,
        "runtime_denied",
        "HttpAccessError",
        message=_BLOCKED,
        hook="content:afterSave",
        capabilities=("content:read", "network:request"),
        allowed_hosts=("*",),
    ),
]
