"""A small cookie-keeping HTTP client for the admin UI, over httpx.ASGITransport."""

from __future__ import annotations

import re
from typing import Any

import anyio
import httpx

ADMIN = "/_emdash/admin/"
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_CSRF_RE = re.compile(r'name="_csrf" value="([^"]+)"')
_KEY_RE = re.compile(r'name="_key" value="([^"]+)"')


class AdminClient:
    """Requests as one browser: keeps its cookies, sends its own Origin on POST."""

    def __init__(self, app: Any, *, origin: str = "http://testserver") -> None:
        self.app = app
        self.origin = origin
        self.cookies: dict[str, str] = {}
        self.csrf = ""

    def request(
        self,
        method: str,
        path: str,
        *,
        data: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        origin: str | None = "",
    ) -> httpx.Response:
        sent = dict(headers or {})
        if method == "POST" and origin is not None:
            sent.setdefault("origin", origin or self.origin)
        if self.cookies:
            sent["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url=self.origin) as c:
                return await c.request(method, path, data=data, headers=sent)

        response = anyio.run(go)
        for line in response.headers.get_list("set-cookie"):
            name, _, rest = line.partition("=")
            value = rest.split(";", 1)[0]
            if "Max-Age=0" in line:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        found = _CSRF_RE.search(response.text)
        if found:
            self.csrf = found.group(1)
        return response

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", ADMIN + path)

    def post(self, path: str, data: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
        form = {"_csrf": self.csrf, **(data or {})}
        return self.request("POST", ADMIN + path, data=form, **kw)

    def sign_in(self, token: str) -> httpx.Response:
        return self.request("POST", ADMIN + "login", data={"token": token})


def form_keys(html: str) -> list[str]:
    """The remembered-action keys of the forms on a page, in page order."""
    return _KEY_RE.findall(html)
