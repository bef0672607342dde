"""``emdash audit``: the escape corpus, run against the installed package.

- ``_corpus``: the payloads, one module per escape class.
- ``_runner``: runs each payload as a sandboxed plugin next to a victim and judges the
  outcome.
- ``_canaries``: what a payload must never reach (secrets, a canary HTTP server, files).
"""
