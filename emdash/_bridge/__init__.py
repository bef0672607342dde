"""The bridge: the one place a plugin's ``ctx`` calls are checked and executed.

Everything a plugin does to the site, natively or from a sandbox worker, arrives here as
``Bridge.dispatch(plugin_id, method, params)``; the plugin id comes from the host, never
from the plugin.

- ``_dispatch``: ``Bridge`` and the ``METHODS`` table (method -> capability, handler).
- ``_params``: validation of call parameters (hostile input), with EmDash's texts.
- ``_cms``: the content, media, user and taxonomy methods.
- ``_budget``: per-invocation budgets (subrequests, log lines).
- ``_http``: outbound HTTP for ``http/fetch``; ``_ssrf``: which hosts and addresses a
  plugin may never reach.
"""
