"""The plugin model the host checks before any code runs.

- ``_descriptor``: ``PluginDescriptor`` (identity, capabilities, allowed hosts, storage,
  limits) and ``Limits``.
- ``_capabilities``: the capability vocabulary, aliases and implications.
- ``_json``: the ``JSON`` type of everything that crosses a boundary.
"""
