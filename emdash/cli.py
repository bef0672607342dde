"""The ``emdash`` command line (``emdash.cli:main``, also ``python -m emdash``).

The commands live in :mod:`emdash._cli`; this module is the stable entry point.
"""

from __future__ import annotations

from ._cli._main import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
