"""``Runtime``, the composition root, and what it keeps: the plugin set and the pipeline.

- ``_runtime``: ``Runtime``: builds the store, HTTP client, bridge, services and plugin
  hosts, and hands each only what it needs.
- ``_pipeline``: ``HookPipeline``: handler order and the family rules of the 25 hooks.
- ``_live_pipeline``: ``LivePipeline``, the current pipeline behind the services'
  ``HookRunner`` interface (swapped when the plugin set changes).
- ``_plugin_info``: ``PluginInfo``, what ``rt.plugins()`` returns.
- ``_routes``: route context, input validation and route schema checks.
"""
