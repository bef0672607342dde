"""The reference docs' generated regions: written from the code's own tables.

The plugin-author docs in ``docs/`` are hand-written prose around *generated regions*::

    <!-- generated:hooks -->
    ... written by this package; never edit by hand ...
    <!-- /generated:hooks -->

Each region is rendered from a table the code itself uses (the hooks catalog, the
capability vocabulary, the bridge's ``METHODS``, the ``ctx`` classes, the descriptor model,
the sandbox's builtins and shims, the escape corpus), so the docs cannot drift from what the
runtime does: ``make docs`` (``python -m emdash._docgen``) rewrites the regions, and
``tests/docgen/test_docgen.py`` fails when a committed region differs from what the code
renders now. The restricted-Python examples are not descriptions but programs: each one is
compiled and run by the real sandbox compiler and guards when the docs are generated, and
the error text shown is the one the sandbox gave (see :mod:`emdash._docgen._rules`).

This package is a development tool: nothing in the runtime imports it.
"""

from __future__ import annotations

from ._render import (
    DOCS,
    REGIONS,
    GeneratedRegionError,
    render_file,
    stale_files,
)

__all__ = ["DOCS", "REGIONS", "GeneratedRegionError", "render_file", "stale_files"]
