"""Plugin routes over HTTP: the request handling behind :mod:`emdash.asgi`.

- ``_app``: ``create_app`` / ``EmDashASGI``: routing ``/_emdash/api/plugins/<id>/<route>``,
  authentication, per-plugin admission in the event loop (503 + ``Retry-After`` when a
  plugin is full), mapping errors to HTTP answers.
- ``_io``: plain ASGI 3 plumbing: bodies, query strings, headers, replies.
"""
