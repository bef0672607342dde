"""Plugin routes over HTTP: the request handling behind :mod:`emdash.asgi`.

- ``_app``: ``create_app`` / ``EmDashASGI``: routing ``/_emdash/api/plugins/<id>/<route>``,
  authentication, per-plugin admission in the event loop (503 + ``Retry-After`` when a
  plugin is full), mapping errors to HTTP answers.
- ``_io``: plain ASGI 3 plumbing: bodies, query strings, headers, replies.
- ``_admin_app``: the admin web UI under ``/_emdash/admin/`` (sign-in, CSRF and Origin
  checks, security headers, the pages); ``_admin_session``: its server-side sessions;
  ``_admin_html``: the Block Kit renderer and page frame; ``_admin_pages``: the admin's own
  pages; ``static/admin.css``: its only stylesheet.
"""
