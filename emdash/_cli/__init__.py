"""The ``emdash`` command line, behind :mod:`emdash.cli`.

- ``_main``: the click commands.
- ``_config``: the site configuration file, ``emdash.toml``.
- ``_check``: ``emdash check``; ``_doctor``: ``emdash doctor``; ``_demo``: ``emdash demo``.
- ``_output``: JSON, tables and one-line errors.
- ``_listing``: ``plugins list`` / ``plugins show``, read-only; ``_unloaded``: plugins a
  command runs the site without (they did not load); ``_help``: ``emdash help TOPIC``.
"""
