"""Plugin routes over HTTP: a plain ASGI app any host can mount.

``create_app(runtime, token=...)`` serves ``/_emdash/api/plugins/<plugin id>/<route>``;
see :mod:`emdash._asgi` for how requests are read, checked and answered.
"""

from __future__ import annotations

from ._asgi._app import EmDashASGI, create_app

__all__ = ["EmDashASGI", "create_app"]
