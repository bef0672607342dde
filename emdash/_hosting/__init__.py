"""The plugin-host seam: one interface, two ways to run a plugin.

The pipeline sees every plugin as a :class:`~._outcome.PluginHost` (``invoke_hook``,
``invoke_route``); whether the code runs in-process or in a sandbox worker is decided here.

- ``_outcome``: the interface and its result types.
- ``_native``: trusted plugins, in-process, under their hook timeouts.
- ``_sandboxed``: untrusted plugins, in forked seccomp-confined workers (host side).
- ``_loader``: locating a plugin's code, and loading it in-process for native plugins.
"""
