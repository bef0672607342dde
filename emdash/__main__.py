"""``python -m emdash``: the ``emdash`` command line."""

from .cli import main

main()
